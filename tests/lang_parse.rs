//! Parser tests: every construct, multi-line statements, comments, errors with positions.

use rlq::syntax::*;

fn parse_ok(src: &str) -> Program {
    match parse(src) {
        Ok(p) => p,
        Err(e) => panic!("parse failed for {src:?}: {e} at {:?}", e.span),
    }
}

fn one_expr(src: &str) -> Expr {
    let p = parse_ok(src);
    assert_eq!(p.stmts.len(), 1, "{src}");
    match p.stmts.into_iter().next().map(|s| s.kind) {
        Some(StmtKind::Expr(e)) => e,
        other => panic!("not an expression: {other:?}"),
    }
}

fn command(src: &str) -> Command {
    match one_expr(src).kind {
        ExprKind::Command(c) => c,
        other => panic!("not a command: {other:?}"),
    }
}

fn words(c: &Command) -> Vec<String> {
    c.items
        .iter()
        .map(|i| match &i.kind {
            ItemKind::Expr { expr, alias } => {
                let base = match &expr.kind {
                    ExprKind::Var(v) => v.clone(),
                    ExprKind::Number { value, .. } => format!("{value}"),
                    ExprKind::Str(s) => format!("{s:?}"),
                    ExprKind::Command(c) => format!("{}()", c.verb.name),
                    ExprKind::Binary(op, ..) => format!("<{}>", op.symbol()),
                    other => format!("{other:?}"),
                };
                match alias {
                    Some(a) => format!("{base} as {}", a.name),
                    None => base,
                }
            }
            ItemKind::Assign { name, .. } => format!("{}=", name.name),
        })
        .collect()
}

#[test]
fn literals() {
    assert_eq!(
        one_expr("42").kind,
        ExprKind::Number {
            value: 42.0,
            is_int: true
        }
    );
    assert_eq!(
        one_expr("4.5e1").kind,
        ExprKind::Number {
            value: 45.0,
            is_int: false
        }
    );
    assert_eq!(
        one_expr("-3").kind,
        ExprKind::Number {
            value: -3.0,
            is_int: true
        }
    );
    assert_eq!(
        one_expr(r#""a\n\"b\" \u{e9}""#).kind,
        ExprKind::Str("a\n\"b\" é".into())
    );
    assert_eq!(one_expr("'single'").kind, ExprKind::Str("single".into()));
    assert_eq!(one_expr("true").kind, ExprKind::Bool(true));
    assert_eq!(one_expr("null").kind, ExprKind::Null);
    match one_expr("[1, \"x\", [2]]").kind {
        ExprKind::List(items) => assert_eq!(items.len(), 3),
        other => panic!("{other:?}"),
    }
    assert!(matches!(one_expr("[]").kind, ExprKind::List(ref v) if v.is_empty()));
}

#[test]
fn precedence() {
    // 1 + 2 * 3 == 7 and not false or x
    let e = one_expr("1 + 2 * 3 == 7 and not false or x");
    let ExprKind::Binary(BinaryOp::Or, l, r) = e.kind else {
        panic!()
    };
    assert_eq!(r.kind, ExprKind::Var("x".into()));
    let ExprKind::Binary(BinaryOp::And, l2, r2) = l.kind else {
        panic!()
    };
    assert!(matches!(r2.kind, ExprKind::Unary(UnaryOp::Not, _)));
    let ExprKind::Binary(BinaryOp::Eq, sum, _) = l2.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Add, _, prod) = sum.kind else {
        panic!()
    };
    assert!(matches!(prod.kind, ExprKind::Binary(BinaryOp::Mul, ..)));
    // left associativity
    let ExprKind::Binary(BinaryOp::Sub, l, _) = one_expr("a - b - c").kind else {
        panic!()
    };
    assert!(matches!(l.kind, ExprKind::Binary(BinaryOp::Sub, ..)));
    // parentheses
    let ExprKind::Binary(BinaryOp::Mul, l, _) = one_expr("(1 + 2) * 3").kind else {
        panic!()
    };
    assert!(matches!(l.kind, ExprKind::Binary(BinaryOp::Add, ..)));
    // unary minus on a name, modulo
    assert!(matches!(
        one_expr("-x % 2").kind,
        ExprKind::Binary(BinaryOp::Rem, ..)
    ));
    for op in ["==", "!=", "<", "<=", ">", ">="] {
        let ExprKind::Binary(got, ..) = one_expr(&format!("a {op} b")).kind else {
            panic!()
        };
        assert_eq!(got.symbol(), op);
    }
}

#[test]
fn statements() {
    let p = parse_ok("let x = 1\nfn f(a, b) = a + b\nimport \"lib.rlq\"\nf(x, 2); x");
    assert_eq!(p.stmts.len(), 5);
    assert!(matches!(&p.stmts[0].kind, StmtKind::Let { name, .. } if name.name == "x"));
    match &p.stmts[1].kind {
        StmtKind::Fn { name, params, .. } => {
            assert_eq!(name.name, "f");
            assert_eq!(
                params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                ["a", "b"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&p.stmts[2].kind, StmtKind::Import { path, .. } if path == "lib.rlq"));
    assert!(
        matches!(&p.stmts[3].kind, StmtKind::Expr(Expr { kind: ExprKind::Command(c), .. }) if c.call_syntax)
    );
    // spans are byte offsets into the source
    assert_eq!(p.stmts[0].span, Span::new(0, 9));
    let p = parse_ok("fn zero() = 0");
    assert!(matches!(&p.stmts[0].kind, StmtKind::Fn { params, .. } if params.is_empty()));
}

/// `fn(params) = body` is a function value: an expression, anywhere an item may stand; its body
/// is a whole pipeline, so parentheses end it; `fn name(…)` at the start stays a definition.
#[test]
fn function_values_parse_as_expressions() {
    let lambda = |e: &Expr| match &e.kind {
        ExprKind::Lambda { params, body } => (
            params.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            (**body).clone(),
        ),
        other => panic!("not a function value: {other:?}"),
    };
    let c = command("map xs (fn(k) = t | head k) 3");
    assert_eq!(c.verb.name, "map");
    assert_eq!(c.items.len(), 3);
    let (params, body) = lambda(c.items[1].expr());
    assert_eq!(params, ["k"]);
    assert!(matches!(body.kind, ExprKind::Pipeline(ref stages) if stages.len() == 2));
    // Without parentheses the body takes the rest of the item, commas and all.
    let c = command("map xs fn(a, b) = f a, b");
    assert_eq!(c.items.len(), 2);
    let (params, body) = lambda(c.items[1].expr());
    assert_eq!(params, ["a", "b"]);
    assert!(matches!(body.kind, ExprKind::Command(ref f) if f.items.len() == 2));
    let (params, _) = lambda(&one_expr("fn() = 0"));
    assert!(params.is_empty());
    let src = "let f = fn(x) = x * 2";
    let p = parse_ok(src);
    match &p.stmts[0].kind {
        StmtKind::Let { value, .. } => {
            assert_eq!(&src[value.span.start..value.span.end], "fn(x) = x * 2")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_ok("fn g(x) = fn(y) = x + y").stmts[0].kind,
        StmtKind::Fn { .. }
    ));
    assert!(
        parse("map xs fn(x)").is_err(),
        "a function value needs `= body`"
    );
}

#[test]
fn commands_parse_generically() {
    let c = command("patch m on qs loss self_entropy steps 4");
    assert_eq!(c.verb.name, "patch");
    assert_eq!(
        words(&c),
        ["m", "on", "qs", "loss", "self_entropy", "steps", "4"]
    );
    assert_eq!(
        words(&command("entropy g0, g1 by layer")),
        ["g0", "g1", "by", "layer"]
    );
    assert_eq!(
        words(&command("save t to \"x.parquet\"")),
        ["t", "to", "\"x.parquet\""]
    );
    assert_eq!(
        words(&command("sort by abs_score desc")),
        ["by", "abs_score", "desc"]
    );
    assert_eq!(words(&command("top 20 by score")), ["20", "by", "score"]);
    assert_eq!(
        words(&command(
            "group by dst_layer agg sum(score) as total, count()"
        )),
        ["by", "dst_layer", "agg", "sum() as total", "count()"]
    );
    assert_eq!(words(&command("join other on key")), ["other", "on", "key"]);
    assert_eq!(words(&command("with z = score * 2")), ["z="]);
    assert_eq!(
        words(&command("where score > 0.1 and dst_layer < 4")),
        ["<and>"]
    );
    assert_eq!(
        words(&command("select src, dst, score * 2 as s2")),
        ["src", "dst", "<*> as s2"]
    );
    assert_eq!(words(&command("read \"f.csv\"")), ["\"f.csv\""]);
    assert_eq!(words(&command("help where")), ["where"]);
    // `x - 1` is arithmetic, not the command `x` with argument -1
    assert!(matches!(
        one_expr("x - 1").kind,
        ExprKind::Binary(BinaryOp::Sub, ..)
    ));
    // a bare word is a variable (resolved to a verb later if it is one)
    assert_eq!(one_expr("describe").kind, ExprKind::Var("describe".into()));
    // calls
    let c = command("count()");
    assert!(c.call_syntax && c.items.is_empty());
}

#[test]
fn pipelines() {
    let e = one_expr("t | where x > 1 | sort by x desc | top 5");
    let ExprKind::Pipeline(stages) = e.kind else {
        panic!()
    };
    assert_eq!(stages.len(), 4);
    assert_eq!(stages[0].kind, ExprKind::Var("t".into()));
    assert!(matches!(&stages[3].kind, ExprKind::Command(c) if c.verb.name == "top"));
    let e = one_expr("t | describe");
    let ExprKind::Pipeline(stages) = e.kind else {
        panic!()
    };
    assert_eq!(stages[1].kind, ExprKind::Var("describe".into()));
    // nested pipelines in parentheses
    let c = command("compare (patch a on d), (patch b on d)");
    assert_eq!(c.items.len(), 2);
}

#[test]
fn multi_line_and_comments() {
    let src = "# header comment\nlet t = read \"a.csv\" |\n  where x > 1   # trailing comment\nt\n  | top 3\nlet xs = [1,\n  2,\n  3]\n\n;;\nf(1,\n 2)";
    let p = parse_ok(src);
    assert_eq!(p.stmts.len(), 4, "{:#?}", p.stmts);
    assert!(
        matches!(&p.stmts[0].kind, StmtKind::Let { value: Expr { kind: ExprKind::Pipeline(s), .. }, .. } if s.len() == 2)
    );
    assert!(
        matches!(&p.stmts[1].kind, StmtKind::Expr(Expr { kind: ExprKind::Pipeline(s), .. }) if s.len() == 2)
    );
    // `#` inside a string is not a comment
    assert_eq!(one_expr("\"a # b\"").kind, ExprKind::Str("a # b".into()));
    assert!(parse_ok("").stmts.is_empty());
    assert!(parse_ok("# only a comment\n\n").stmts.is_empty());
    assert_eq!(parse_ok("1; 2; 3").stmts.len(), 3);
}

#[test]
fn incomplete_input() {
    assert!(is_incomplete("t | where (x > 1"));
    assert!(is_incomplete("let xs = [1, 2,"));
    assert!(is_incomplete("t |"));
    assert!(is_incomplete("t |   # comment"));
    assert!(is_incomplete("\"open string"));
    assert!(!is_incomplete("t | top 5"));
    assert!(!is_incomplete("\"a | b\""));
    assert!(!is_incomplete("x)"));
    assert!(is_incomplete("t | select a,"));
    assert!(is_incomplete("let x ="));
    assert_eq!(parse_ok("t | select a,\n  b\nlet y =\n  2").stmts.len(), 2);
}

#[test]
fn errors_have_positions_and_expectations() {
    let e = parse("let = 5").unwrap_err();
    assert_eq!(e.span.start, 4);
    assert!(e.message.contains("expected a name"), "{}", e.message);

    let e = parse("1 +").unwrap_err();
    assert_eq!(e.span.start, 3);
    assert!(
        e.message.contains("expected an expression"),
        "{}",
        e.message
    );
    assert!(e.message.contains("found end of input"), "{}", e.message);

    let e = parse("let x = (1 + 2\nlet y = 3").unwrap_err();
    assert!(e.message.starts_with("syntax error"), "{}", e.message);

    let e = parse("x = 1").unwrap_err();
    assert_eq!(e.span.start, 2);

    let e = parse(r#""bad \q escape""#).unwrap_err();
    assert_eq!(e.span, Span::new(5, 7));
    assert!(e.message.contains("escape"));

    let deep = "(".repeat(200) + &")".repeat(200);
    assert!(parse(&deep).unwrap_err().message.contains("nested"));
    let long = vec!["1"; 2000].join(" + ");
    assert!(parse(&long).unwrap_err().message.contains("too complex"));
}

// ---- hostile input (issue 13) ----

/// A script saved by a Windows editor starts with a UTF-8 byte-order mark; it parses as if the
/// mark were not there, and spans still point into the text as given.
#[test]
fn a_leading_bom_is_skipped() {
    let src = "\u{feff}let x = 1\nx + oops";
    let p = parse_ok(src);
    assert_eq!(p.stmts.len(), 2);
    let StmtKind::Expr(e) = &p.stmts[1].kind else {
        panic!("not an expression")
    };
    let ExprKind::Binary(_, _, r) = &e.kind else {
        panic!("not binary: {e:?}")
    };
    assert_eq!(&src[r.span.start..r.span.end], "oops");
    assert!(!is_incomplete("\u{feff}1"));
    // Only a leading mark: elsewhere it is a character like any other, and refused.
    assert!(parse("1\n\u{feff}2").is_err());
}

/// Number literals beyond f64 used to become `inf` silently.
#[test]
fn literals_too_large_for_a_number_are_refused() {
    let e = parse("alpha 1e999").unwrap_err();
    assert!(
        e.message.contains("`1e999` is too large for a number"),
        "{}",
        e.message
    );
    assert_eq!(e.span, Span::new(6, 11));
    assert!(e
        .help
        .as_deref()
        .is_some_and(|h| h.contains("1.7976931348623157e308")));
    assert!(parse("1e308").is_ok());
    let digits = "9".repeat(400);
    assert!(parse(&digits).unwrap_err().message.contains("too large"));
}

/// After `|` only a verb can come, so a minus written tight against a number is that verb's
/// negative argument (`t | top -1` used to parse as `top - 1`); elsewhere `x -1` is arithmetic.
#[test]
fn a_tight_minus_after_a_pipe_is_a_negative_argument() {
    let e = one_expr("t | top -1 by score");
    let ExprKind::Pipeline(stages) = &e.kind else {
        panic!("not a pipeline: {e:?}")
    };
    let ExprKind::Command(c) = &stages[1].kind else {
        panic!("not a command: {:?}", stages[1])
    };
    assert_eq!(c.verb.name, "top");
    assert!(matches!(
        c.items[0].expr().kind,
        ExprKind::Number { value, .. } if value == -1.0
    ));
    assert_eq!(c.items.len(), 3);
    // Spaced, it stays a subtraction (evaluation says so); at the start it is arithmetic.
    let e = one_expr("t | top - 1");
    let ExprKind::Pipeline(stages) = &e.kind else {
        panic!("not a pipeline")
    };
    assert!(matches!(
        stages[1].kind,
        ExprKind::Binary(BinaryOp::Sub, _, _)
    ));
    assert!(matches!(
        one_expr("x -1").kind,
        ExprKind::Binary(BinaryOp::Sub, _, _)
    ));
}

/// The line-by-line continuation scanner agrees with `is_incomplete` on the joined text.
#[test]
fn continuation_agrees_with_is_incomplete() {
    let cases: &[&[&str]] = &[
        &["t | where (a > 1", ")"],
        &["\"open", "still", "closed\" + 1"],
        &["\"a\\", "b\""],
        &["let x =", "  2"],
        &["t |  # comment", "top 1"],
        &["[1, 2, # ] not a bracket", "3]"],
        &["'it''s'"],
        &["x = \"#\" |"],
        &["\u{feff}(", ")"],
    ];
    for lines in cases {
        let mut c = Continuation::default();
        for (i, line) in lines.iter().enumerate() {
            c.push_line(line);
            let joined = lines[..=i].join("\n");
            assert_eq!(
                c.is_incomplete(),
                is_incomplete(&joined),
                "after {:?}",
                &lines[..=i]
            );
        }
    }
}

/// Brackets 64 deep parse; one more is refused, and the message states the limit.
#[test]
fn nesting_within_the_bracket_limit_parses() {
    let src = "(".repeat(64) + "1" + &")".repeat(64);
    parse_ok(&src);
    let deep = "[".repeat(65) + &"]".repeat(65);
    let e = parse(&deep).unwrap_err();
    assert!(e.message.contains("deeper than 64"), "{}", e.message);
}

#[test]
fn record_literals_parse_with_names_or_strings() {
    match one_expr("{a: 1, \"b c\": [2, 3],}").kind {
        ExprKind::Record(fields) => {
            let names: Vec<&str> = fields.iter().map(|(n, _)| n.name.as_str()).collect();
            assert_eq!(names, ["a", "b c"]);
            assert!(matches!(fields[1].1.kind, ExprKind::List(ref v) if v.len() == 2));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(one_expr("{}").kind, ExprKind::Record(ref v) if v.is_empty()));
    assert!(matches!(one_expr("[{a: 1}, {a: 2}]").kind, ExprKind::List(ref v) if v.len() == 2));
    assert!(rlq::syntax::parse("{a 1}").is_err());
    assert!(rlq::syntax::is_incomplete("{a: [1,"));
}
