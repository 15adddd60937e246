//! pest parse tree → [`ast`](super::ast). No evaluation, no knowledge of verbs.

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use super::scan::{scan, MAX_DEPTH};
use super::SyntaxError;

/// Most operator/call/index nodes one statement may have: bounds the tree depth, so evaluation,
/// cloning and dropping never recurse deep enough to overflow a stack.
const MAX_NODES_PER_STMT: usize = 400;

thread_local! {
    static NODES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one nested node; errors once a statement has too many.
fn count_node(span: Span) -> Result<(), SyntaxError> {
    let n = NODES.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    if n > MAX_NODES_PER_STMT {
        return Err(SyntaxError::at(span, format!("statement too complex (over {MAX_NODES_PER_STMT} operators and calls); split it with `let`")));
    }
    Ok(())
}

#[derive(pest_derive::Parser)]
#[grammar = "grammar/rlq.pest"]
struct RlqParser;

/// Parse a whole source text into statements.
pub fn parse(src: &str) -> Result<Program, SyntaxError> {
    let scanned = scan(src);
    if let Some(pos) = scanned.too_deep {
        return Err(SyntaxError {
            message: format!("brackets nested deeper than {MAX_DEPTH} levels"),
            span: Span::new(pos, pos + 1),
            label: "too deep".into(),
            help: None,
        });
    }
    let mut pairs =
        RlqParser::parse(Rule::program, &scanned.text).map_err(|e| from_pest(e, src))?;
    let program = pairs
        .next()
        .ok_or_else(|| SyntaxError::at(Span::default(), "empty parse"))?;
    let mut stmts = Vec::new();
    for pair in program.into_inner() {
        match pair.as_rule() {
            Rule::EOI => {}
            _ => stmts.push(build_stmt(pair)?),
        }
    }
    Ok(Program { stmts })
}

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn ident(pair: Pair<Rule>) -> Ident {
    Ident {
        name: pair.as_str().to_string(),
        span: span_of(&pair),
    }
}

fn build_stmt(pair: Pair<Rule>) -> Result<Stmt, SyntaxError> {
    let span = span_of(&pair);
    NODES.with(|c| c.set(0));
    let rule = pair.as_rule();
    let mut inner = pair.into_inner().filter(|p| !is_keyword(p.as_rule()));
    let mut next = || {
        inner
            .next()
            .ok_or_else(|| SyntaxError::at(span, "incomplete statement"))
    };
    let kind = match rule {
        Rule::let_stmt => {
            let name = ident(next()?);
            let value = build_pipeline(next()?)?;
            StmtKind::Let { name, value }
        }
        Rule::fn_stmt => {
            let name = ident(next()?);
            let params = next()?.into_inner().map(ident).collect();
            let body = build_pipeline(next()?)?;
            StmtKind::Fn { name, params, body }
        }
        Rule::import_stmt => {
            let lit = next()?;
            let path_span = span_of(&lit);
            StmtKind::Import {
                path: build_string(lit)?,
                path_span,
            }
        }
        Rule::expr_stmt => StmtKind::Expr(build_pipeline(next()?)?),
        other => return Err(SyntaxError::at(span, format!("unexpected {other:?}"))),
    };
    Ok(Stmt { kind, span })
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_let | Rule::kw_fn | Rule::kw_import | Rule::kw_as
    )
}

fn build_pipeline(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let span = span_of(&pair);
    let mut stages = pair
        .into_inner()
        .map(build_stage)
        .collect::<Result<Vec<_>, _>>()?;
    if stages.len() == 1 {
        return stages
            .pop()
            .ok_or_else(|| SyntaxError::at(span, "empty pipeline"));
    }
    Ok(Expr {
        kind: ExprKind::Pipeline(stages),
        span,
    })
}

fn build_stage(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    match pair.as_rule() {
        Rule::command | Rule::neg_command => {
            let span = span_of(&pair);
            let mut inner = pair.into_inner();
            let verb = inner
                .next()
                .map(ident)
                .ok_or_else(|| SyntaxError::at(span, "missing verb"))?;
            let items = inner.map(build_item).collect::<Result<Vec<_>, _>>()?;
            Ok(Expr {
                kind: ExprKind::Command(Command {
                    verb,
                    items,
                    call_syntax: false,
                    span,
                }),
                span,
            })
        }
        _ => build_expr(pair),
    }
}

fn build_item(pair: Pair<Rule>) -> Result<Item, SyntaxError> {
    let span = span_of(&pair);
    let inner = pair
        .into_inner()
        .next()
        .ok_or_else(|| SyntaxError::at(span, "empty argument"))?;
    let rule = inner.as_rule();
    let mut parts = inner.into_inner().filter(|p| p.as_rule() != Rule::kw_as);
    let first = parts
        .next()
        .ok_or_else(|| SyntaxError::at(span, "empty argument"))?;
    let kind = match rule {
        Rule::assign_item => {
            let name = ident(first);
            let expr = build_expr(
                parts
                    .next()
                    .ok_or_else(|| SyntaxError::at(span, "missing value"))?,
            )?;
            ItemKind::Assign { name, expr }
        }
        _ => {
            let expr = build_expr(first)?;
            ItemKind::Expr {
                expr,
                alias: parts.next().map(ident),
            }
        }
    };
    Ok(Item { kind, span })
}

/// Builds any expression-level rule (the precedence chain collapses single children).
fn build_expr(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::expr => {
            let inner = pair
                .into_inner()
                .next()
                .ok_or_else(|| SyntaxError::at(span, "empty expression"))?;
            build_expr(inner)
        }
        Rule::or_expr | Rule::and_expr | Rule::sum_expr | Rule::prod_expr | Rule::cmp_expr => {
            build_binary_chain(pair)
        }
        Rule::not_expr => {
            let mut nots = 0usize;
            let mut operand = None;
            for p in pair.into_inner() {
                match p.as_rule() {
                    Rule::not_op => {
                        count_node(span)?;
                        nots += 1
                    }
                    _ => operand = Some(build_expr(p)?),
                }
            }
            let mut e = operand.ok_or_else(|| SyntaxError::at(span, "missing operand"))?;
            for _ in 0..nots {
                e = Expr {
                    kind: ExprKind::Unary(UnaryOp::Not, Box::new(e)),
                    span,
                };
            }
            Ok(e)
        }
        Rule::unary => {
            let mut negs = Vec::new();
            let mut operand = None;
            for p in pair.into_inner() {
                match p.as_rule() {
                    Rule::neg => {
                        count_node(span)?;
                        negs.push(span_of(&p))
                    }
                    _ => operand = Some(build_expr(p)?),
                }
            }
            let mut e = operand.ok_or_else(|| SyntaxError::at(span, "missing operand"))?;
            for neg in negs.into_iter().rev() {
                let s = neg.to(e.span);
                // Fold `-3` into a literal so `-3` stays a number in column expressions too.
                e = match e.kind {
                    ExprKind::Number { value, is_int } => Expr {
                        kind: ExprKind::Number {
                            value: -value,
                            is_int,
                        },
                        span: s,
                    },
                    _ => Expr {
                        kind: ExprKind::Unary(UnaryOp::Neg, Box::new(e)),
                        span: s,
                    },
                };
            }
            Ok(e)
        }
        Rule::postfix => {
            let mut inner = pair.into_inner();
            let first = inner
                .next()
                .ok_or_else(|| SyntaxError::at(span, "missing operand"))?;
            let mut e = build_expr(first)?;
            for idx in inner {
                count_node(span)?;
                let s = e.span.to(span_of(&idx));
                let i = idx
                    .into_inner()
                    .next()
                    .ok_or_else(|| SyntaxError::at(s, "missing index"))?;
                e = Expr {
                    kind: ExprKind::Index(Box::new(e), Box::new(build_expr(i)?)),
                    span: s,
                };
            }
            Ok(e)
        }
        Rule::number => {
            let text = pair.as_str();
            let value: f64 = text
                .parse()
                .map_err(|_| SyntaxError::at(span, format!("`{text}` is not a number")))?;
            if !value.is_finite() {
                return Err(SyntaxError {
                    help: Some(format!("numbers are 64-bit floats, at most {:e}", f64::MAX)),
                    ..SyntaxError::at(span, format!("`{text}` is too large for a number"))
                });
            }
            let is_int = !text.contains(['.', 'e', 'E']);
            Ok(Expr {
                kind: ExprKind::Number { value, is_int },
                span,
            })
        }
        Rule::string => Ok(Expr {
            kind: ExprKind::Str(build_string(pair)?),
            span,
        }),
        Rule::kw_true => Ok(Expr {
            kind: ExprKind::Bool(true),
            span,
        }),
        Rule::kw_false => Ok(Expr {
            kind: ExprKind::Bool(false),
            span,
        }),
        Rule::kw_null => Ok(Expr {
            kind: ExprKind::Null,
            span,
        }),
        Rule::list => {
            count_node(span)?;
            let items = pair
                .into_inner()
                .map(build_expr)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Expr {
                kind: ExprKind::List(items),
                span,
            })
        }
        Rule::record => {
            count_node(span)?;
            let mut fields: Vec<(Ident, Expr)> = Vec::new();
            for field in pair.into_inner() {
                let mut parts = field.into_inner();
                let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                    return Err(SyntaxError::at(span, "a field needs `name: value`"));
                };
                let name = match name.as_rule() {
                    Rule::string => Ident {
                        span: span_of(&name),
                        name: build_string(name)?,
                    },
                    _ => ident(name),
                };
                if fields.iter().any(|(n, _)| n.name == name.name) {
                    return Err(SyntaxError::at(
                        name.span,
                        format!("field `{}` is given twice", name.name),
                    ));
                }
                fields.push((name, build_expr(value)?));
            }
            Ok(Expr {
                kind: ExprKind::Record(fields),
                span,
            })
        }
        Rule::call => {
            count_node(span)?;
            let mut inner = pair.into_inner();
            let verb = inner
                .next()
                .map(ident)
                .ok_or_else(|| SyntaxError::at(span, "missing name"))?;
            let items = inner.map(build_item).collect::<Result<Vec<_>, _>>()?;
            Ok(Expr {
                kind: ExprKind::Command(Command {
                    verb,
                    items,
                    call_syntax: true,
                    span,
                }),
                span,
            })
        }
        Rule::paren => {
            count_node(span)?;
            let inner = pair
                .into_inner()
                .next()
                .ok_or_else(|| SyntaxError::at(span, "empty parentheses"))?;
            let mut e = build_pipeline(inner)?;
            e.span = span;
            Ok(e)
        }
        Rule::var => Ok(Expr {
            kind: ExprKind::Var(pair.as_str().to_string()),
            span,
        }),
        Rule::lambda => {
            count_node(span)?;
            let mut inner = pair.into_inner().filter(|p| !is_keyword(p.as_rule()));
            let (Some(params), Some(body)) = (inner.next(), inner.next()) else {
                return Err(SyntaxError::at(
                    span,
                    "a function needs `fn(params) = body`",
                ));
            };
            Ok(Expr {
                kind: ExprKind::Lambda {
                    params: params.into_inner().map(ident).collect(),
                    body: Box::new(build_pipeline(body)?),
                },
                span,
            })
        }
        Rule::pipeline => build_pipeline(pair),
        Rule::command | Rule::neg_command => build_stage(pair),
        other => Err(SyntaxError::at(span, format!("unexpected {other:?}"))),
    }
}

/// `a op b op c` → left-nested binary nodes.
fn build_binary_chain(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let span = span_of(&pair);
    let mut inner = pair.into_inner();
    let first = inner
        .next()
        .ok_or_else(|| SyntaxError::at(span, "missing operand"))?;
    let mut lhs = build_expr(first)?;
    while let Some(op_pair) = inner.next() {
        let op = match (op_pair.as_rule(), op_pair.as_str()) {
            (Rule::kw_or, _) => BinaryOp::Or,
            (Rule::kw_and, _) => BinaryOp::And,
            (_, "+") => BinaryOp::Add,
            (_, "-") => BinaryOp::Sub,
            (_, "*") => BinaryOp::Mul,
            (_, "/") => BinaryOp::Div,
            (_, "%") => BinaryOp::Rem,
            (_, "==") => BinaryOp::Eq,
            (_, "!=") => BinaryOp::Ne,
            (_, "<") => BinaryOp::Lt,
            (_, "<=") => BinaryOp::Le,
            (_, ">") => BinaryOp::Gt,
            (_, ">=") => BinaryOp::Ge,
            (_, "in") => BinaryOp::In,
            (_, other) => {
                return Err(SyntaxError::at(
                    span_of(&op_pair),
                    format!("unknown operator `{other}`"),
                ))
            }
        };
        count_node(span)?;
        let rhs_pair = inner
            .next()
            .ok_or_else(|| SyntaxError::at(span, "missing right operand"))?;
        let rhs = build_expr(rhs_pair)?;
        let s = lhs.span.to(rhs.span);
        lhs = Expr {
            kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
            span: s,
        };
    }
    Ok(lhs)
}

/// Unescape a string literal: `\n \t \r \0 \\ \" \' \u{hex}`.
fn build_string(pair: Pair<Rule>) -> Result<String, SyntaxError> {
    let span = span_of(&pair);
    let inner = pair.into_inner().next();
    let (raw, base) = match &inner {
        Some(p) => (p.as_str(), p.as_span().start()),
        None => ("", span.start),
    };
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let bad = |len: usize| SyntaxError {
            message: "unknown escape in string".into(),
            span: Span::new(base + i, base + i + len),
            label: "this escape".into(),
            help: Some("known escapes: \\n \\t \\r \\0 \\\\ \\\" \\' \\u{…}".into()),
        };
        match chars.next() {
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, '0')) => out.push('\0'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, '"')) => out.push('"'),
            Some((_, '\'')) => out.push('\''),
            Some((_, 'u')) => {
                let rest = &raw[i + 2..];
                let close = rest.find('}');
                let code = match (rest.starts_with('{'), close) {
                    (true, Some(end)) => u32::from_str_radix(&rest[1..end], 16)
                        .ok()
                        .and_then(char::from_u32),
                    _ => None,
                };
                match (code, close) {
                    (Some(ch), Some(end)) => {
                        out.push(ch);
                        // skip `{hex}`
                        for _ in 0..=end {
                            chars.next();
                        }
                    }
                    _ => return Err(bad(2)),
                }
            }
            Some((_, other)) => return Err(bad(1 + other.len_utf8())),
            None => return Err(bad(1)),
        }
    }
    Ok(out)
}

/// Turn a pest error into one that says, in words, what was expected.
fn from_pest(err: pest::error::Error<Rule>, src: &str) -> SyntaxError {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let mut start = start.min(src.len());
    while !src.is_char_boundary(start) {
        start -= 1;
    }
    // Point at the offending character (or the end of input).
    let end = if end > start && src.is_char_boundary(end.min(src.len())) {
        end.min(src.len())
    } else {
        src[start..]
            .chars()
            .next()
            .map(|c| start + c.len_utf8())
            .unwrap_or(start)
    };
    let found = match src[start..].chars().next() {
        None => "end of input".to_string(),
        Some('\n') | Some(';') => "end of statement".to_string(),
        Some(c) => format!(
            "`{}`",
            src[start..]
                .split(|ch: char| ch.is_whitespace())
                .next()
                .unwrap_or(&c.to_string())
        ),
    };
    let (message, label) = match &err.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => {
            let mut names: Vec<&'static str> =
                positives.iter().filter_map(|r| rule_name(*r)).collect();
            names.sort();
            names.dedup();
            let expected = if names.is_empty() && !negatives.is_empty() {
                "something else".to_string()
            } else if names.is_empty() {
                "more input".to_string()
            } else {
                join_or(&names)
            };
            (
                format!("syntax error: expected {expected}, found {found}"),
                format!("expected {expected}"),
            )
        }
        // pest's own guards: the input nests deeper than the parser's stack allows.
        ErrorVariant::CustomError { message } if message.contains("limit reached") => (
            format!("syntax error: too deeply nested to parse ({message})"),
            "nested too deeply".to_string(),
        ),
        ErrorVariant::CustomError { message } => {
            (format!("syntax error: {message}"), message.clone())
        }
    };
    SyntaxError {
        message,
        span: Span::new(start, end),
        label,
        help: None,
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Readable names for the rules pest reports as expected.
fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of input",
        Rule::ident | Rule::ident_raw | Rule::var | Rule::verb | Rule::call_name => "a name",
        Rule::number => "a number",
        Rule::string | Rule::dq_inner | Rule::sq_inner => "a string",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::not_expr
        | Rule::cmp_expr
        | Rule::sum_expr
        | Rule::prod_expr
        | Rule::unary
        | Rule::postfix
        | Rule::paren
        | Rule::list
        | Rule::record
        | Rule::call
        | Rule::lambda
        | Rule::kw_true
        | Rule::kw_false
        | Rule::kw_null
        | Rule::pipeline
        | Rule::command
        | Rule::neg_command
        | Rule::neg_number => "an expression",
        Rule::item | Rule::assign_item | Rule::expr_item => "an argument",
        Rule::params => "parameter names",
        Rule::field => "a field (`name: value`)",
        Rule::cmp_op => "a comparison",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::kw_and | Rule::kw_or => "`and`/`or`",
        Rule::kw_in => "`in`",
        Rule::kw_as => "`as`",
        Rule::index => "`[`",
        Rule::let_stmt | Rule::fn_stmt | Rule::import_stmt | Rule::expr_stmt => "a statement",
        _ => return None,
    })
}
