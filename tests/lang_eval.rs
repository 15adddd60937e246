//! Evaluator tests: table verbs against the same query written directly in polars, scalars,
//! functions, imports, read/save round trips.

use polars::prelude::*;
use rlq::eval::Value;
use rlq::Session;

fn edges() -> DataFrame {
    df!(
        "src" => ["input", "a0", "m0", "a1", "m1", "a0", "input", "m0"],
        "dst" => ["a0<q>", "m0", "a1<q>", "m1", "logits", "logits", "m0", "logits"],
        "dst_layer" => [0i64, 0, 1, 1, 2, 2, 0, 2],
        "score" => [0.5f64, -0.2, 0.05, 0.3, -0.7, 0.01, 0.2, 0.4],
    )
    .unwrap()
}

fn session() -> Session {
    let mut s = Session::new();
    s.set("t", edges());
    s
}

fn eval(s: &mut Session, src: &str) -> Value {
    match s.eval(src) {
        Ok(v) => v,
        Err(e) => panic!("{src}: {e:?}"),
    }
}

fn table(s: &mut Session, src: &str) -> DataFrame {
    eval(s, src)
        .as_table()
        .unwrap_or_else(|| panic!("{src}: not a table"))
}

fn same(a: &DataFrame, b: &DataFrame) {
    assert!(a.equals_missing(b), "rlq:\n{a}\npolars:\n{b}");
}

#[test]
fn where_matches_polars() {
    let mut s = session();
    let got = table(&mut s, "t | where score > 0.1 and dst_layer < 2");
    let want = edges()
        .lazy()
        .filter(
            col("score")
                .gt(lit(0.1))
                .and(col("dst_layer").lt(lit(2i64))),
        )
        .collect()
        .unwrap();
    same(&got, &want);
    // variables that are not columns become literals
    s.eval("let k = 1").unwrap();
    let got = table(&mut s, "t | where dst_layer == k or src == \"m1\"");
    let want = edges()
        .lazy()
        .filter(col("dst_layer").eq(lit(1i64)).or(col("src").eq(lit("m1"))))
        .collect()
        .unwrap();
    same(&got, &want);
    let got = table(
        &mut s,
        "t | where src in [\"a0\", \"m1\"] and dst_layer in [0, 2]",
    );
    let want = edges()
        .lazy()
        .filter(
            col("src").eq(lit("a0")).or(col("src").eq(lit("m1"))).and(
                col("dst_layer")
                    .eq(lit(0i64))
                    .or(col("dst_layer").eq(lit(2i64))),
            ),
        )
        .collect()
        .unwrap();
    same(&got, &want);
    s.eval("let layers = [1]").unwrap();
    assert_eq!(table(&mut s, "t | where dst_layer in layers").height(), 2);
    assert_eq!(
        eval(
            &mut s,
            "2 in [1, 2] and \"ell\" in \"hello\" and not (3 in [])"
        )
        .as_bool(),
        Some(true)
    );
    let got = table(&mut s, "t | where not (abs(score) < 0.3)");
    let want = edges()
        .lazy()
        .filter(col("score").abs().lt(lit(0.3)).not())
        .collect()
        .unwrap();
    same(&got, &want);
}

#[test]
fn select_with_sort_top() {
    let mut s = session();
    let got = table(&mut s, "t | select src, score * 2 as double");
    let want = edges()
        .lazy()
        .select([col("src"), (col("score") * lit(2i64)).alias("double")])
        .collect()
        .unwrap();
    same(&got, &want);

    let got = table(&mut s, "t | with z = score * 2, w = z + 1");
    let want = edges()
        .lazy()
        .with_columns([(col("score") * lit(2i64)).alias("z")])
        .with_columns([(col("z") + lit(1i64)).alias("w")])
        .collect()
        .unwrap();
    same(&got, &want);

    let got = table(&mut s, "t | sort by dst_layer desc, score");
    let opts = SortMultipleOptions::default()
        .with_order_descending_multi([true, false])
        .with_nulls_last(true)
        .with_maintain_order(true);
    let want = edges()
        .lazy()
        .sort_by_exprs([col("dst_layer"), col("score")], opts)
        .collect()
        .unwrap();
    same(&got, &want);

    same(&table(&mut s, "t | sort dst_layer desc, score"), &want);
    let got = table(
        &mut s,
        "t | with abs_score = abs(score) | top 3 by abs_score",
    );
    let want = edges()
        .lazy()
        .with_columns([col("score").abs().alias("abs_score")])
        .sort_by_exprs(
            [col("abs_score")],
            SortMultipleOptions::default()
                .with_order_descending(true)
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .limit(3)
        .collect()
        .unwrap();
    same(&got, &want);
    assert_eq!(table(&mut s, "t | top 2").height(), 2);
    assert_eq!(table(&mut s, "t | head").height(), 8);
    assert_eq!(table(&mut s, "t | head 3").height(), 3);
}

#[test]
fn group_agg_matches_polars() {
    let mut s = session();
    let got = table(
        &mut s,
        "t | group by dst_layer agg sum(score) as total, count(), mean(score), max(score)",
    );
    let want = edges()
        .lazy()
        .group_by_stable([col("dst_layer")])
        .agg([
            col("score").sum().alias("total"),
            len().alias("count"),
            col("score").mean().alias("mean_score"),
            col("score").max().alias("max_score"),
        ])
        .collect()
        .unwrap();
    same(&got, &want);

    let got = table(&mut s, "t | group by src, dst_layer agg std(score), median(score), first(dst), last(dst), n_unique(dst)");
    let want = edges()
        .lazy()
        .group_by_stable([col("src"), col("dst_layer")])
        .agg([
            col("score").std(1).alias("std_score"),
            col("score").median().alias("median_score"),
            col("dst").first().alias("first_dst"),
            col("dst").last().alias("last_dst"),
            col("dst").n_unique().alias("n_unique_dst"),
        ])
        .collect()
        .unwrap();
    same(&got, &want);
}

#[test]
fn join_matches_polars() {
    let mut s = session();
    let kinds = df!("src" => ["input", "a0", "m0"], "kind" => ["embed", "attn", "mlp"]).unwrap();
    s.set("kinds", kinds.clone());
    let got = table(&mut s, "t | join kinds on src");
    let want = edges()
        .lazy()
        .join(
            kinds.clone().lazy(),
            [col("src")],
            [col("src")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()
        .unwrap();
    same(&got, &want);
    let got = table(&mut s, "t | join kinds on src how left");
    let want = edges()
        .lazy()
        .join(
            kinds.clone().lazy(),
            [col("src")],
            [col("src")],
            JoinArgs::new(JoinType::Left),
        )
        .collect()
        .unwrap();
    same(&got, &want);
    let renamed = df!("node" => ["input", "a0"], "kind" => ["embed", "attn"]).unwrap();
    s.set("renamed", renamed);
    assert_eq!(table(&mut s, "t | join renamed on src = node").height(), 4);
}

#[test]
fn describe_unique_count_columns() {
    let mut s = session();
    let d = table(&mut s, "t | describe");
    assert_eq!(
        d.get_column_names(),
        ["column", "count", "mean", "std", "min", "max", "null_count"]
    );
    assert_eq!(d.height(), 2); // dst_layer and score
    let mean = d.column("mean").unwrap().f64().unwrap().get(1).unwrap();
    assert!(
        (mean
            - edges()
                .column("score")
                .unwrap()
                .f64()
                .unwrap()
                .mean()
                .unwrap())
        .abs()
            < 1e-12
    );
    assert_eq!(table(&mut s, "describe t").height(), 2);
    assert_eq!(table(&mut s, "t | unique src").height(), 5);
    assert_eq!(table(&mut s, "t | unique").height(), 8);
    assert_eq!(
        table(&mut s, "t | drop src, dst").get_column_names(),
        ["dst_layer", "score"]
    );
    assert_eq!(
        table(&mut s, "t | rename weight = score, dst_layer as layer").get_column_names(),
        ["src", "dst", "layer", "weight"]
    );
    assert!(s.eval("t | drop nope").is_err());
    // several predicates are and-ed
    assert_eq!(
        table(&mut s, "t | where score > 0, dst_layer == 2").height(),
        table(&mut s, "t | where score > 0 and dst_layer == 2").height()
    );
    assert_eq!(eval(&mut s, "t | count").as_number(), Some(8.0));
    assert_eq!(eval(&mut s, "t | len").as_number(), Some(8.0));
    assert_eq!(eval(&mut s, "count(t)").as_number(), Some(8.0));
    assert_eq!(
        eval(&mut s, "t | columns").to_string(),
        r#"["src", "dst", "dst_layer", "score"]"#
    );
}

#[test]
#[allow(clippy::approx_constant)] // 3.14 is round(3.14159, 2), not π
fn scalars_lists_functions() {
    let mut s = Session::new();
    let n = |s: &mut Session, src: &str| eval(s, src).as_number().unwrap_or(f64::NAN);
    assert_eq!(n(&mut s, "1 + 2 * 3 - 4 / 2"), 5.0);
    assert_eq!(n(&mut s, "7 % 4"), 3.0);
    assert_eq!(n(&mut s, "-(2 + 3)"), -5.0);
    assert_eq!(n(&mut s, "abs(-3) + sqrt(16)"), 7.0);
    assert_eq!(n(&mut s, "round(3.14159, 2)"), 3.14);
    assert_eq!(n(&mut s, "log(8, 2)"), 3.0);
    assert!((n(&mut s, "exp(1)") - std::f64::consts::E).abs() < 1e-12);
    assert_eq!(n(&mut s, "min(3, 1, 2) + max([3, 1, 2])"), 4.0);
    assert_eq!(n(&mut s, "len([1, 2, 3])"), 3.0);
    assert_eq!(n(&mut s, "len(\"héllo\")"), 5.0);
    assert_eq!(n(&mut s, "[10, 20, 30][1]"), 20.0);
    assert_eq!(n(&mut s, "let xs = range(5); xs[-1]"), 4.0);
    assert_eq!(eval(&mut s, "range(2, 5)").to_string(), "[2, 3, 4]");
    assert_eq!(eval(&mut s, "\"a\" + \"b\" + 1").to_string(), "ab1");
    assert_eq!(
        eval(&mut s, "1 < 2 and \"a\" < \"b\"").as_bool(),
        Some(true)
    );
    assert_eq!(
        eval(&mut s, "1 == 1.0 and [1, 2] != [2]").as_bool(),
        Some(true)
    );
    assert_eq!(eval(&mut s, "type(null)").as_str(), Some("null"));
    assert_eq!(n(&mut s, "16 | sqrt"), 4.0);
    // user functions: lexical parameters, calls with parens, command form and pipes
    s.eval("fn add(a, b) = a + b\nfn twice(x) = add(x, x)")
        .unwrap();
    assert_eq!(n(&mut s, "twice(21)"), 42.0);
    assert_eq!(n(&mut s, "add 1, 2"), 3.0);
    assert_eq!(n(&mut s, "5 | twice"), 10.0);
    s.eval("let a = 100").unwrap();
    assert_eq!(n(&mut s, "add(1, 2) + a"), 103.0);
    assert!(s.get("x").is_none(), "parameters do not leak");
    // prelude
    assert_eq!(n(&mut s, "clamp(5, 0, 3)"), 3.0);
    assert_eq!(n(&mut s, "pct_change(2, 3)"), 50.0);
    // value of the last statement; Null for let
    assert!(eval(&mut s, "let q = 1").is_null());
    assert_eq!(eval(&mut s, "1\n2\n3").as_number(), Some(3.0));
}

#[test]
fn functions_over_tables() {
    let mut s = session();
    s.eval("fn strong(tbl, cut) = tbl | where abs(score) > cut | sort by score desc")
        .unwrap();
    let got = table(&mut s, "strong(t, 0.3)");
    assert_eq!(
        got.column("score").unwrap().f64().unwrap().to_vec(),
        [Some(0.5), Some(0.4), Some(-0.7)]
    );
    let got = table(&mut s, "t | strong 0.3");
    assert_eq!(got.height(), 3);
}

#[test]
fn dataframe_in_and_out_unchanged() {
    let mut s = Session::new();
    s.set("d", edges());
    same(&s.get("d").unwrap().as_table().unwrap(), &edges());
    s.eval("let e = d").unwrap();
    same(&s.get("e").unwrap().as_table().unwrap(), &edges());
    s.set("name", "x");
    s.set("flag", true);
    s.set("owned", String::from("y"));
    assert_eq!(s.eval("name + owned").unwrap().as_str(), Some("xy"));
    assert_eq!(s.get("flag").unwrap().as_bool(), Some(true));
    let vars = s.vars();
    assert!(vars.contains(&("d".into(), "table".into())));
    assert!(vars.contains(&("name".into(), "string".into())));
}

fn round_trip(ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session();
    s.set_base_dir(dir.path());
    s.eval(&format!("save t to \"out/t.{ext}\"")).unwrap();
    assert!(dir.path().join(format!("out/t.{ext}")).exists());
    let back = table(&mut s, &format!("read \"out/t.{ext}\""));
    same(&back, &edges());
    // piped form
    s.eval(&format!("t | where score > 0 | save to \"pos.{ext}\""))
        .unwrap();
    let n = eval(&mut s, &format!("read \"pos.{ext}\" | count"));
    assert_eq!(n.as_number(), Some(6.0));
}

#[test]
fn read_save_csv() {
    round_trip("csv");
}
#[test]
fn read_save_parquet() {
    round_trip("parquet");
}
#[test]
fn read_save_json() {
    round_trip("json");
}
#[test]
fn read_save_jsonl() {
    round_trip("jsonl");
}

#[test]
fn failed_save_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session();
    s.set_base_dir(dir.path());
    s.eval("save t to \"keep.csv\"").unwrap();
    let before = std::fs::read(dir.path().join("keep.csv")).unwrap();
    // Saving a non-table fails before anything is written.
    assert!(s.eval("save 5 to \"keep.csv\"").is_err());
    // Saving into a path whose parent is a file fails too.
    assert!(s.eval("save t to \"keep.csv/inner.csv\"").is_err());
    // A table whose computation fails (unknown column) fails before writing.
    assert!(s.eval("t | where nope > 1 | save to \"keep.csv\"").is_err());
    assert_eq!(std::fs::read(dir.path().join("keep.csv")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(leftovers, ["keep.csv"], "no temp files left");
}

#[test]
fn failing_statement_leaves_variables() {
    let mut s = session();
    s.eval("let a = 1").unwrap();
    assert!(s.eval("let a = 2; let b = 3; let c = nope").is_err());
    assert_eq!(
        s.get("a").unwrap().as_number(),
        Some(2.0),
        "statements before the failing one stay"
    );
    assert_eq!(s.get("b").unwrap().as_number(), Some(3.0));
    assert!(s.get("c").is_none());
    assert!(s.eval("let a = t | where missing > 1").is_err());
    assert_eq!(s.get("a").unwrap().as_number(), Some(2.0));
    assert!(s.eval("fn a() = 1 +").is_err());
    assert_eq!(s.get("a").unwrap().as_number(), Some(2.0));
}

#[test]
fn imports_once_relative_to_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("lib/util.rlq"),
        "import \"more.rlq\"\nfn triple(x) = 3 * x\nlet loaded = loaded_count + 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("lib/more.rlq"), "let from_more = 7\n").unwrap();
    std::fs::write(
        dir.path().join("main.rlq"),
        "import \"lib/util.rlq\"\nimport \"lib/util.rlq\"\ntriple(from_more)",
    )
    .unwrap();
    let mut s = Session::new();
    s.set("loaded_count", 0.0);
    let main_path = dir.path().join("main.rlq");
    let src = std::fs::read_to_string(&main_path).unwrap();
    let v = s.eval_named(&src, main_path.to_str().unwrap()).unwrap();
    assert_eq!(v.as_number(), Some(21.0));
    assert_eq!(
        s.get("loaded").unwrap().as_number(),
        Some(1.0),
        "imported once"
    );
}

#[test]
fn eval_statements_reports_each_expression() {
    let mut s = Session::new();
    let mut seen = Vec::new();
    s.eval_statements("let x = 1\nx\nfn f(a) = a\nf(2)\n", "run.rlq", &mut |v| {
        seen.push(v.to_string())
    })
    .unwrap();
    assert_eq!(seen, ["1", "2"]);
}

#[test]
fn host_functions_and_help() {
    use rlq::eval::{Signature, Type};
    let mut s = session();
    s.register_fn(
        "scale",
        Signature::new("scale", "multiply a table's score")
            .input(Type::Table)
            .named_default("by", Type::Number, 2.0, "factor"),
        |ctx, args| {
            let t = args.input_table()?;
            let k = args.number("by").unwrap_or(1.0);
            assert!(!ctx.interrupted());
            Ok(t.lazy().with_columns([col("score") * lit(k)]).into())
        },
    );
    let got = table(&mut s, "t | scale by 10");
    assert_eq!(
        got.column("score").unwrap().f64().unwrap().get(0),
        Some(5.0)
    );
    let got = table(&mut s, "t | scale");
    assert_eq!(
        got.column("score").unwrap().f64().unwrap().get(0),
        Some(1.0)
    );
    assert!(s.help(None).contains("scale"));
    assert!(s.help(Some("scale")).contains("multiply"));
    assert!(eval(&mut s, "help top")
        .to_string()
        .contains("usage: <table> | top <n:number> [by expr]"));
    assert!(s.help(Some("wher")).contains("did you mean `where`"));
    assert!(eval(&mut s, "help pct_change")
        .to_string()
        .starts_with("fn pct_change(a, b)"));
    assert_eq!(s.keywords_of("join"), ["on", "how", "max_rows"]);
}

#[test]
fn completions() {
    let mut s = session();
    let c = s.completions("t | gr", 6);
    assert_eq!(c, ["grade", "group"]);
    assert_eq!(s.completions("t | group b", 11), ["by"]);
    let c = s.completions("t | where sc", 12);
    assert!(c.contains(&"score".to_string()), "{c:?}");
    let c = s.completions("t | sort by score d", 19);
    assert!(
        c.contains(&"desc".to_string()) && c.contains(&"dst".to_string()),
        "{c:?}"
    );
    s.eval("let long_name = 1").unwrap();
    assert_eq!(s.completions("long", 4), ["long_name"]);
    assert_eq!(s.completions("let y = lon", 11), ["long_name"]);
}

#[test]
fn check_without_evaluating() {
    let mut s = Session::new();
    assert!(s
        .check(
            "let t = read \"nowhere.csv\"\nt | where x > 1 | top 3 by x",
            "a.rlq"
        )
        .is_ok());
    assert!(
        s.check("t | where x > 1", "a.rlq").is_err(),
        "t is not defined"
    );
    assert!(s.check("fn f(a) = a + 1\nf(2)", "a.rlq").is_ok());
    assert!(
        s.check("let t = 1\nt | top 3 bye x", "a.rlq").is_err(),
        "unknown keyword"
    );
    assert!(s.get("t").is_none(), "check defines nothing");
}

#[test]
fn interrupt_stops_statement() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut s = Session::new();
    let flag = Arc::new(AtomicBool::new(false));
    s.set_interrupt(flag.clone());
    let f2 = flag.clone();
    s.register_fn(
        "ctrl_c",
        rlq::eval::Signature::new("ctrl_c", "simulate Ctrl-C"),
        move |_, _| {
            f2.store(true, Ordering::Relaxed);
            Ok(Value::Null)
        },
    );
    let err = s.eval("ctrl_c\nlet after = 1").unwrap_err();
    assert!(err.to_string().contains("interrupted"));
    assert!(s.get("after").is_none());
    assert!(s.eval("1").is_ok(), "flag is cleared for the next eval");
}

#[test]
fn every_example_checks_and_runs() {
    // An edge table like a graph's, so the examples have the columns they name.
    let graph_like = df!(
        "src" => ["input", "a0", "m0"],
        "dst" => ["a0<q>", "m0", "logits"],
        "src_layer" => [-1i64, 0, 0],
        "dst_layer" => [0i64, 0, 1],
        "src_kind" => ["embed", "attn", "mlp"],
        "dst_kind" => ["q", "mlp", "logits"],
        "score" => [0.5f64, -0.2, 0.3],
        "abs_score" => [0.5f64, 0.2, 0.3],
    )
    .unwrap();
    let mut s = Session::new();
    s.set("t", graph_like.clone());
    s.set("names", graph_like.clone());
    // Values the model, graph and study examples name: a random model (no tokenizer), graphs
    // with known scores, and small tables.
    let m =
        rlq::model::synthetic::random_model(rlq::model::Family::Llama, 1, candle_core::DType::F32)
            .unwrap();
    s.set("m", Value::Model(std::sync::Arc::new(m)));
    for (name, seed) in [("g", 1u64), ("g0", 2), ("g1", 3)] {
        let n_edges = 4 * 2 * 2 + 3 * 2 + 1;
        let scores: Vec<Vec<f64>> = (0..3)
            .map(|k| {
                (0..n_edges)
                    .map(|e| ((e as u64 * 7 + k * 3 + seed) % 11) as f64 - 5.0)
                    .collect()
            })
            .collect();
        let mut g = rlq::analysis::synthetic::block_graph(2, scores);
        // what `patch` records of each sample (`samples g` shows it)
        g.meta.samples = (0..g.scores.len())
            .map(|k| rlq::attribution::SampleRecord {
                answer_ids: vec![3, 4, 5],
                loss_positions: vec![0, 1],
                loss_ids: vec![3, 4],
                t_cut: Some(2),
                loss: 1.0 + k as f64,
                grad_norm: 0.5,
                ..Default::default()
            })
            .collect();
        s.set(name, Value::Graph(std::sync::Arc::new(g)));
    }
    for name in ["qs", "pairs", "a0", "a1", "cmp", "by_layer", "sel"] {
        s.set(name, graph_like.clone());
    }
    // Two shards of one graph: the same scores' layout, disjoint samples.
    for (name, first) in [("part1", 0i64), ("part2", 3)] {
        let mut g = rlq::analysis::synthetic::block_graph(2, vec![vec![1.0; 23]; 3]);
        g.meta.prompt_ids = (first..first + 3).collect();
        s.set(name, Value::Graph(std::sync::Arc::new(g)));
    }
    s.eval("fn make_qs() = arith 20 seed 1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    s.set_base_dir(dir.path());
    let mut ran = 0;
    for sig in s.registry().signatures().cloned().collect::<Vec<_>>() {
        for ex in &sig.examples {
            if let Err(e) = s.check(&ex.source, "example") {
                panic!("example of {}: {}: {e:?}", sig.name, ex.source);
            }
            // Examples double as tests; the io ones need files that are not here, and the
            // model ones real weights with a tokenizer (tests/graph_verbs.rs runs those).
            let needs_real_model = ["patch", "grade", "select_questions", "questions", "tune"]
                .contains(&sig.name.as_str());
            if sig.category != "io" && sig.category != "model" && !needs_real_model {
                if let Err(e) = s.eval(&ex.source) {
                    panic!("example of {} fails: {}: {e:?}", sig.name, ex.source);
                }
                ran += 1;
            }
        }
    }
    assert!(ran > 20, "ran {ran} examples");
}

/// `map` calls a user function, a function value or a verb on each element, in order.
#[test]
fn map_applies_functions_and_verbs_to_each_element() {
    let mut s = session();
    let list = |s: &mut Session, src: &str| eval(s, src).to_string();
    s.eval("fn double(x) = x * 2").unwrap();
    assert_eq!(list(&mut s, "map [1, 2, 3] double"), "[2, 4, 6]");
    assert_eq!(list(&mut s, "[1, 2, 3] | map double"), "[2, 4, 6]");
    assert_eq!(
        list(&mut s, "map (range(3)) (fn(x) = x * x + 1)"),
        "[1, 2, 5]"
    );
    assert_eq!(
        list(&mut s, "map [\"a\", \"b\"] (fn(x) = x + \"!\")"),
        "[\"a!\", \"b!\"]"
    );
    // A function value keeps the parameters of the function it was written in.
    s.eval("fn scaled(xs, k) = map xs (fn(x) = x * k)").unwrap();
    assert_eq!(list(&mut s, "scaled([1, 2], 10)"), "[10, 20]");
    assert_eq!(
        list(&mut s, "map [1, 2] (fn(k) = scaled([1, 2], k))"),
        "[[1, 2], [2, 4]]"
    );
    // Verbs: the element is piped in (`abs`, `count` on tables) or given first (`range`).
    assert_eq!(list(&mut s, "map [-1, 4, -9] abs"), "[1, 4, 9]");
    assert_eq!(list(&mut s, "[4, 9] | map sqrt"), "[2, 3]");
    assert_eq!(list(&mut s, "map [t, (t | head 3)] count"), "[8, 3]");
    assert_eq!(list(&mut s, "map [2, 3] range"), "[[0, 1], [0, 1, 2]]");
    // An empty list maps to an empty list without calling anything.
    assert_eq!(list(&mut s, "map [] (fn(x) = 1 / 0)"), "[]");
    assert_eq!(list(&mut s, "map [] abs"), "[]");
    // The same calls, written out, give the same values.
    assert_eq!(
        eval(&mut s, "map [-2.5, 3] abs"),
        eval(&mut s, "[abs(-2.5), abs(3)]")
    );
    // Not a function: said so, naming the parameter.
    let e = format!("{:?}", s.eval("map [1] 5").unwrap_err());
    assert!(e.contains("function"), "{e}");
    let e = format!("{:?}", s.eval("map 5 abs").unwrap_err());
    assert!(e.contains("list"), "{e}");
    // `rlq check` knows a function value's parameters, and nothing else.
    s.check("map [1] (fn(x) = x + 1)", "c").unwrap();
    let e = format!("{:?}", s.check("map [1] (fn(x) = x + y)", "c").unwrap_err());
    assert!(e.contains("unknown variable `y`"), "{e}");
}

/// A failure inside the mapped function names the element it failed on (its index as `xs[i]`
/// counts, and its value), and keeps the function's own message and span.
#[test]
fn map_error_names_the_failing_element() {
    let mut s = session();
    s.eval("fn inv(x) = 1 / x").unwrap();
    let e = s.eval("map [1, 2, 0, 4] inv").unwrap_err();
    assert!(e.message.contains("element [2] of 4 (0)"), "{}", e.message);
    assert!(e.message.contains("division by zero"), "{}", e.message);
    // The span is the `x` in the function's body, in the source the function was written in.
    let span = e.span.expect("span");
    let src = e.source.as_ref().expect("source");
    assert_eq!(&src.text[span.start..span.end], "x", "{}", src.text);
    // A verb's failure names the element too (a string is not a number).
    let e = s.eval("map [1, \"two\"] abs").unwrap_err();
    assert!(
        e.message.contains("element [1] of 2 (\"two\")"),
        "{}",
        e.message
    );
    // Nested maps name both indices, outermost first.
    let e = s
        .eval("map [[1], [2, 0]] (fn(xs) = map xs inv)")
        .unwrap_err();
    assert!(
        e.message
            .contains("element [1] of 2 ([2, 0]): map, element [1] of 2 (0)"),
        "{}",
        e.message
    );
    // A function of another arity is refused with its own message.
    let e = s.eval("map [1] (fn(a, b) = a + b)").unwrap_err();
    assert!(e.message.contains("takes 2 argument(s)"), "{}", e.message);
    // A verb given where a function of no arguments is called says what it is.
    let e = s.eval("reuse \"x.parquet\" count key [1]").unwrap_err();
    assert!(
        e.message
            .contains("the verb `count`, used as a function, takes one value (got 0)"),
        "{}",
        e.message
    );
}

/// `concat` stacks a list of tables (what `map` returns) as it stacks separate items: the
/// same rows as polars' own concatenation of the same frames.
#[test]
fn concat_stacks_a_mapped_list_of_tables() {
    let mut s = session();
    let got = table(
        &mut s,
        "concat (map [1, 2, 3] (fn(k) = t | head k | with k = k))",
    );
    let part = |k: usize| {
        edges()
            .head(Some(k))
            .lazy()
            .with_column(lit(k as i64).alias("k"))
    };
    let want = concat([part(1), part(2), part(3)], UnionArgs::default())
        .unwrap()
        .collect()
        .unwrap();
    same(&got, &want);
    // Lists and single tables mix, in order; a list literal works as well.
    let mixed = table(
        &mut s,
        "concat (t | head 1 | with k = 1), (map [2, 3] (fn(k) = t | head k | with k = k))",
    );
    same(&mixed, &want);
    same(&table(&mut s, "concat [(t | head 2), (t | head 2)]"), &{
        let h = edges().head(Some(2));
        let mut v = h.clone();
        v.vstack_mut(&h).unwrap();
        v
    });
    // An element that is not a table is named; an empty list leaves nothing to stack.
    let e = format!("{:?}", s.eval("concat [t, 1]").unwrap_err());
    assert!(e.contains("element [1] of this list is a number"), "{e}");
    let e = format!("{:?}", s.eval("concat (map [] (fn(k) = t))").unwrap_err());
    assert!(e.contains("at least one table"), "{e}");
    let e = format!(
        "{:?}",
        s.eval("concat t, (map [1] (fn(k) = t | select src))")
            .unwrap_err()
    );
    assert!(
        e.contains("table 2 (element [0] of a list) has other columns"),
        "{e}"
    );
}

/// A function value given to `reuse` sees the parameters around it, so one function makes and
/// keeps a table per element under a name of its own (as scripts/rl_dynamics.rlq does per
/// checkpoint); a second pass reads every file back instead of calling `make`.
#[test]
fn reuse_with_a_function_value_keeps_one_file_per_element() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session();
    s.set_base_dir(dir.path());
    s.eval("fn kept(k) = reuse (\"t_\" + k + \".parquet\") (fn() = t | head k) key [\"t\", k]")
        .unwrap();
    let first = table(&mut s, "concat (map [1, 3] kept)");
    assert_eq!(first.height(), 4);
    for k in [1, 3] {
        assert!(dir.path().join(format!("t_{k}.parquet")).is_file());
    }
    // Second pass: `t` is gone, so only reading the files back can give the same rows.
    s.set("t", df!("other" => [1i64]).unwrap());
    let again = table(&mut s, "concat (map [1, 3] kept)");
    same(&first, &again);
}

/// stdlib/dynamics.rlq's `key_unless_default`: nothing at the default (so `reuse` keys made
/// before a setting existed still match), the setting named with its value otherwise.
#[test]
fn a_setting_joins_a_reuse_key_only_away_from_its_default() {
    let mut s = Session::new();
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib/dynamics.rlq");
    s.eval(&format!("import {lib:?}")).unwrap();
    let key = |s: &mut Session, v: &str| {
        eval(s, &format!("key_unless_default(\"train_max\", {v}, 50)")).to_string()
    };
    assert_eq!(key(&mut s, "50"), "[]");
    assert_eq!(key(&mut s, "5"), "[\"train_max 5\"]");
    assert_eq!(key(&mut s, "50.5"), "[\"train_max 50.5\"]");
    assert_eq!(key(&mut s, "1000"), "[\"train_max 1000\"]");
}

/// `range a b step`: a, a + step, … short of b (a negative step counts down); without a step,
/// the old whole-number ranges.
#[test]
fn range_takes_a_step() {
    let mut s = Session::new();
    let list = |s: &mut Session, src: &str| eval(s, src).to_string();
    assert_eq!(list(&mut s, "range(8, 17, 8)"), "[8, 16]");
    assert_eq!(list(&mut s, "range(8, 16, 8)"), "[8]");
    assert_eq!(list(&mut s, "range(3, 0, -1)"), "[3, 2, 1]");
    assert_eq!(list(&mut s, "range(0, 1, 0.25)"), "[0, 0.25, 0.5, 0.75]");
    assert_eq!(list(&mut s, "range(5, 1, 2)"), "[]");
    assert_eq!(list(&mut s, "range 1 (6 + 1) 3"), "[1, 4]");
    assert_eq!(list(&mut s, "range(2.5, 5)"), "[3, 4]");
    let e = format!("{:?}", s.eval("range(0, 5, 0)").unwrap_err());
    assert!(e.contains("other than 0"), "{e}");
    let e = format!("{:?}", s.eval("range(0, 1, 1e-9)").unwrap_err());
    assert!(e.contains("range too large"), "{e}");
    // round's decimals are declared: a whole number from 0 to 15, refused otherwise.
    assert_eq!(eval(&mut s, "round(2.5)").as_number(), Some(3.0));
    let e = format!("{:?}", s.eval("round(1, 1e9)").unwrap_err());
    assert!(e.contains("a whole number from 0 to 15"), "{e}");
}

#[test]
fn graph_pipes_as_its_table() {
    use rlq::attribution::graph::{EdgeInfo, Graph, GraphMeta};
    let edge = |src: &str, dst: &str, sl: i64, dl: i64| EdgeInfo {
        src: src.into(),
        dst: dst.into(),
        src_layer: sl,
        dst_layer: dl,
        src_kind: "attn",
        dst_kind: "mlp",
    };
    let g = Graph {
        edges: vec![
            edge("input", "m0", -1, 0),
            edge("a0", "m0", 0, 0),
            edge("m0", "logits", 0, 1),
        ],
        scores: vec![vec![0.1, -0.4, 0.2], vec![0.3, -0.2, 0.0]],
        meta: GraphMeta {
            model: "tiny".into(),
            n_layers: 1,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: "block".into(),
            t_cut: None,
            prompt_ids: vec![0, 1],
            per_sample: false,
            ..GraphMeta::default()
        },
        positions: None,
    };
    let want = g.table().unwrap();
    let mut s = Session::new();
    s.set("g", g);
    assert_eq!(s.get("g").unwrap().type_name(), "graph");
    assert_eq!(eval(&mut s, "g").to_string(), want.to_string());
    let got = table(
        &mut s,
        "g | where abs_score > 0.15 | sort by abs_score desc",
    );
    assert_eq!(got.column("src").unwrap().str().unwrap().get(0), Some("a0"));
    assert_eq!(eval(&mut s, "g | count").as_number(), Some(3.0));
    assert_eq!(table(&mut s, "describe g").height(), 4);
    assert!(s
        .completions("g | where abs", 13)
        .contains(&"abs_score".to_string()));
}

/// The command form is generic: words, flags, defaults, variadic values and nested commands all
/// come from the signature.
#[test]
fn signatures_drive_binding() {
    use rlq::eval::{Signature, Type};
    let mut s = session();
    s.register_fn(
        "patch",
        Signature::new("patch", "fake attribution")
            .required("model", Type::Any, "a model")
            .named_required("on", Type::Table, "prompts")
            .word("loss", Some("self_entropy"), "loss name")
            .named_default("steps", Type::Number, 1.0, "steps")
            .flag("per_sample", "keep samples"),
        |_ctx, args| {
            let rows = args
                .table("on")
                .map(|t| t.collect().unwrap().height())
                .unwrap_or(0);
            Ok(Value::from(format!(
                "{} rows={rows} loss={} steps={} per_sample={}",
                args.value("model").unwrap(),
                args.word("loss").unwrap(),
                args.number("steps").unwrap(),
                args.flag("per_sample")
            )))
        },
    );
    assert_eq!(
        eval(&mut s, "patch 1 on t").to_string(),
        "1 rows=8 loss=self_entropy steps=1 per_sample=false"
    );
    assert_eq!(
        eval(
            &mut s,
            "patch \"m\" on (t | where score > 0) loss kl steps 4 per_sample"
        )
        .to_string(),
        "m rows=6 loss=kl steps=4 per_sample=true"
    );
    // keyword order is free; a string works where a word is expected
    assert_eq!(
        eval(&mut s, "patch 2 steps 3 loss \"x\" on t").to_string(),
        "2 rows=8 loss=x steps=3 per_sample=false"
    );
    assert!(s.eval("patch 1").is_err(), "missing required keyword");
    assert!(
        s.eval("patch 1 on t loss").is_err(),
        "keyword without value"
    );
    assert!(s.eval("patch 1 on t on t").is_err(), "keyword twice");
    assert!(s.eval("patch 1 on 5").is_err(), "wrong type");

    // variadic values and a nested command inside another command's arguments
    s.register_fn(
        "compare",
        Signature::new("compare", "stack tables").rest("tables", Type::Table, "tables"),
        |_ctx, args| {
            let mut out: Option<DataFrame> = None;
            for v in args.values("tables") {
                let df = v.as_table().unwrap();
                out = Some(match out {
                    None => df,
                    Some(mut acc) => {
                        acc.vstack_mut(&df).unwrap();
                        acc
                    }
                });
            }
            Ok(out.map(Value::from).unwrap_or(Value::Null))
        },
    );
    assert_eq!(eval(&mut s, "compare t, t | count").as_number(), Some(16.0));
    let dir = tempfile::tempdir().unwrap();
    s.set_base_dir(dir.path());
    s.eval("save compare t, t, t to \"c.csv\"").unwrap();
    assert_eq!(
        eval(&mut s, "read \"c.csv\" | count").as_number(),
        Some(24.0)
    );
    assert!(s.check("save compare t, t to \"c.csv\"", "x.rlq").is_ok());
}

#[test]
fn session_is_send_and_paths_follow_the_script() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    assert_send::<Value>();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts/data")).unwrap();
    std::fs::write(dir.path().join("scripts/data/x.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let mut s = Session::new();
    let script = dir.path().join("scripts/run.rlq");
    let v = s
        .eval_named(
            "read \"data/x.csv\" | where a > 1 | count",
            script.to_str().unwrap(),
        )
        .unwrap();
    assert_eq!(v.as_number(), Some(1.0));
    // a relative script name resolves against the base dir
    s.set_base_dir(dir.path());
    let v = s
        .eval_named("read \"data/x.csv\" | count", "scripts/run.rlq")
        .unwrap();
    assert_eq!(v.as_number(), Some(2.0));
}

#[test]
fn simple_host_functions() {
    let mut s = Session::new();
    s.register_simple_fn("add_all", "sum of numbers", |args| {
        let mut total = 0.0;
        for a in args {
            total += a
                .as_number()
                .ok_or_else(|| format!("expected numbers, got {}", a.type_name()))?;
        }
        Ok(Value::Number(total))
    });
    assert_eq!(eval(&mut s, "add_all(1, 2, 3)").as_number(), Some(6.0));
    assert_eq!(eval(&mut s, "add_all 1, 2").as_number(), Some(3.0));
    assert_eq!(eval(&mut s, "5 | add_all").as_number(), Some(5.0));
    assert_eq!(eval(&mut s, "add_all()").as_number(), Some(0.0));
    let err = s.eval("add_all(1, \"x\")").unwrap_err();
    assert!(err.to_string().contains("expected numbers, got string"));
    assert!(s.help(Some("add_all")).contains("sum of numbers"));
}

#[test]
fn read_column_oriented_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cols.json"),
        r#"{"a": [1, 2, null], "b": ["x", "y", "z"], "c": [0.5, 1, 2]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("polars.json"),
        r#"{"columns": [{"name": "a", "datatype": "Int64", "values": [1, 2]}, {"name": "ok", "values": [true, false]}]}"#,
    )
    .unwrap();
    let mut s = Session::new();
    s.set_base_dir(dir.path());
    let df = table(&mut s, "read \"cols.json\"");
    assert_eq!(df.shape(), (3, 3));
    assert_eq!(df.column("a").unwrap().dtype(), &DataType::Int64);
    assert_eq!(df.column("c").unwrap().dtype(), &DataType::Float64);
    let df = table(&mut s, "read \"polars.json\"");
    assert_eq!(df.get_column_names(), ["a", "ok"]);
    assert_eq!(df.column("ok").unwrap().dtype(), &DataType::Boolean);
}

/// The whole DESIGN.md session, with stand-in verbs declared the way the model / attribution /
/// analysis layers will declare theirs: the generic command form needs no grammar changes.
#[test]
fn design_example_resolves_with_stub_verbs() {
    use rlq::eval::{Signature, Type};
    let mut s = session();
    let edge_table =
        |_: &mut rlq::eval::EvalContext, _: rlq::eval::Args| -> rlq::eval::EvalResult<Value> {
            Ok(Value::from(
            df!("score" => [0.5f64, -0.02], "abs_score" => [0.5f64, 0.02], "layer" => [0i64, 1])
                .unwrap(),
        ))
        };
    s.register_fn(
        "load",
        Signature::new("load", "load a model")
            .required("source", Type::Str, "repo id, folder or .gguf")
            .word("device", Some("cpu"), "cpu or cuda")
            .word("dtype", Some("f32"), "f32, bf16, f16"),
        |_, args| {
            Ok(Value::from(format!(
                "model {}",
                args.str("source").unwrap_or("")
            )))
        },
    );
    s.register_fn(
        "patch",
        Signature::new("patch", "EAP")
            .required("model", Type::Any, "model")
            .named_required("on", Type::Table, "prompts")
            .word("loss", Some("self_entropy"), "loss"),
        edge_table,
    );
    s.register_fn(
        "edges",
        Signature::new("edges", "edge table")
            .piped("graph", Type::Table, "graph")
            .named_columns("where", false, "filter"),
        |ctx, args| {
            let t = args.table("graph").unwrap();
            let schema = t.schema().unwrap();
            let mut lf = t.lazy();
            for c in args.columns("where") {
                lf = lf.filter(ctx.compile_column(c, &schema)?);
            }
            Ok(lf.into())
        },
    );
    for verb in ["entropy", "intensity"] {
        s.register_fn(
            verb,
            Signature::new(verb, "per-layer statistic")
                .rest("graphs", Type::Table, "graphs")
                .word("by", None, "grouping"),
            edge_table,
        );
    }
    s.register_fn(
        "compare",
        Signature::new("compare", "paired comparison").rest("graphs", Type::Table, "graphs"),
        edge_table,
    );
    s.register_fn(
        "plot",
        Signature::new("plot", "chart")
            .positional(rlq::eval::Param::new(
                "kind",
                rlq::eval::Shape::Word,
                "chart kind",
            ))
            .required("graph", Type::Table, "data")
            .named_required("to", Type::Str, "file"),
        |_, _| Ok(Value::Null),
    );
    let script = r#"
# models
let base  = load "models/smollm2-135m-instruct.q4_1.gguf"
let tuned = load "HuggingFaceTB/SmolLM2-135M-Instruct" device cuda dtype bf16
let qs = t | top 64
let g0 = patch base on qs loss self_entropy
let g1 = patch tuned on qs loss self_entropy

g1 | edges where abs_score > 0.01 | sort by abs_score desc | top 20
entropy g1 by layer                      # one row per layer
intensity g0, g1 by layer                # side by side
compare g0, g1
save compare g0, g1 to "out/compare.parquet"
plot heatmap g1 to "out/g1.svg"

fn rl_effect(a, b, data) = compare (patch a on data), (patch b on data)
rl_effect(base, tuned, qs)
"#;
    s.check(script, "design.rlq").unwrap();
    let dir = tempfile::tempdir().unwrap();
    s.set_base_dir(dir.path());
    let mut shown = Vec::new();
    s.eval_statements(script, "design.rlq", &mut |v| shown.push(v.type_name()))
        .unwrap();
    assert_eq!(
        shown,
        ["table", "table", "table", "table", "null", "null", "table"]
    );
    assert!(dir.path().join("out/compare.parquet").exists());
    assert_eq!(
        table(&mut s, "g1 | edges where abs_score > 0.1").height(),
        1
    );
}

// ---- hostile input: saves -------------------------------------------------------------------

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// The old temp name was `.<name>.<pid>.tmp`, opened with `File::create`: a symlink planted
/// there made `save` overwrite the file it pointed to. Temp files are now random and created
/// with O_EXCL; the planted links (at the old names and at a guess of the new prefix) and
/// their target stay untouched.
#[cfg(unix)]
#[test]
fn save_never_writes_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let pid = std::process::id();
    let prefix = rlq::files::temp_prefix(&dir.path().join("out.csv"));
    let planted = [
        format!(".out.csv.{pid}.tmp"),
        format!("{prefix}{pid}-000000.csv"),
    ];
    for name in &planted {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    let mut s = session();
    s.set_base_dir(dir.path());
    for ext in ["csv", "parquet", "json", "jsonl", "md"] {
        s.eval(&format!("save t to \"out.{ext}\"")).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let back = table(&mut s, "read \"out.csv\"");
    same(&back, &edges());
    let mut expected: Vec<String> = ["out.csv", "out.json", "out.jsonl", "out.md", "out.parquet"]
        .iter()
        .map(|s| s.to_string())
        .chain(planted.iter().cloned())
        .chain(["victim.txt".to_string()])
        .collect();
    expected.sort();
    assert_eq!(names_in(dir.path()), expected, "no temp files left behind");
}

/// A 251-byte file name is legal (255 is the limit); the temp name no longer grows with it.
#[test]
fn save_accepts_a_251_byte_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}.csv", "a".repeat(247));
    assert_eq!(name.len(), 251);
    let mut s = session();
    s.set_base_dir(dir.path());
    s.eval(&format!("save t to \"{name}\"")).unwrap();
    same(&table(&mut s, &format!("read \"{name}\"")), &edges());
    assert_eq!(names_in(dir.path()), [name]);
}

/// A save killed mid-write (kill -9) leaves its temp file; the next save of the same target
/// removes it. Temp files of live processes and of other targets stay.
#[test]
fn next_save_sweeps_temp_files_of_killed_saves() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = rlq::files::temp_prefix(&dir.path().join("out.csv"));
    let other = rlq::files::temp_prefix(&dir.path().join("other.csv"));
    // pid 99999999 is above Linux's largest (2^22): a process that is surely gone.
    let dead = format!("{prefix}99999999-a1b2c3.csv");
    let live = format!("{prefix}{}-a1b2c3.csv", std::process::id());
    let other_dead = format!("{other}99999999-a1b2c3.csv");
    for n in [&dead, &live, &other_dead] {
        std::fs::write(dir.path().join(n), "half a table").unwrap();
    }
    let mut s = session();
    s.set_base_dir(dir.path());
    s.eval("save t to \"out.csv\"").unwrap();
    let mut expected = vec![live, other_dead, "out.csv".to_string()];
    expected.sort();
    assert_eq!(names_in(dir.path()), expected);
}

#[test]
fn help_save_lists_every_format() {
    let s = Session::new();
    let help = s.help(Some("save"));
    for ext in [".csv", ".parquet", ".json", ".jsonl", ".md"] {
        assert!(help.contains(ext), "help save lacks {ext}:\n{help}");
    }
}

// ---- hostile input: reads and imports -------------------------------------------------------

fn eval_err(s: &mut Session, src: &str) -> String {
    match s.eval(src) {
        Ok(v) => panic!("`{src}` should fail, gave {v}"),
        // The message itself: the rendered report wraps long lines.
        Err(e) => e.to_string(),
    }
}

/// Runs `src` on another thread and fails the test instead of hanging when it does not finish.
fn eval_err_within(dir: &std::path::Path, src: &str, secs: u64) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let (dir, src2) = (dir.to_path_buf(), src.to_string());
    std::thread::spawn(move || {
        let mut s = Session::new();
        s.set_base_dir(&dir);
        let _ = tx.send(eval_err(&mut s, &src2));
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("`{src}` hung (over {secs} s)"))
}

/// A FIFO with no writer blocked `read` and `import` for ever in open(); `/dev/zero` was read
/// until memory ran out. Only regular files are opened, and the message says what the path is.
#[cfg(unix)]
#[test]
fn read_and_import_open_only_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["pipe.csv", "pipe.rlq"] {
        let ok = std::process::Command::new("mkfifo")
            .arg(dir.path().join(name))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.rlq")).unwrap();
    std::fs::create_dir(dir.path().join("folder.csv")).unwrap();
    for (src, what) in [
        (
            "read \"pipe.csv\"",
            "is a FIFO (named pipe), not a regular file",
        ),
        (
            "import \"pipe.rlq\"",
            "is a FIFO (named pipe), not a regular file",
        ),
        (
            "read \"zero.jsonl\"",
            "is a character device, not a regular file",
        ),
        (
            "import \"zero.rlq\"",
            "is a character device, not a regular file",
        ),
        (
            "import \"/dev/zero\"",
            "is a character device, not a regular file",
        ),
        ("read \"folder.csv\"", "is a folder, not a regular file"),
    ] {
        let e = eval_err_within(dir.path(), src, 20);
        assert!(e.contains(what), "{src}: {e}");
    }
}

/// Scripts are read whole, so their size is capped (64 MiB); a sparse 65 MiB file costs no
/// disk and is refused before a byte is read (peak RSS stays that of the test, ~tens of MB).
#[test]
fn import_refuses_a_script_over_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("huge.rlq")).unwrap();
    f.set_len(rlq::files::MAX_SCRIPT_BYTES + 1).unwrap();
    let mut s = Session::new();
    s.set_base_dir(dir.path());
    let e = eval_err(&mut s, "import \"huge.rlq\"");
    assert!(
        e.contains("over the limit of 67108864 bytes (64 MiB)"),
        "{e}"
    );
}

/// JSON nested 50 000–100 000 levels deep overflowed the stack inside the parser (abort).
/// The depth is scanned first; the message states the limit. Shallow nesting still reads.
#[test]
fn read_refuses_json_nested_too_deep() {
    let dir = tempfile::tempdir().unwrap();
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    std::fs::write(dir.path().join("deep.json"), deep(100_000)).unwrap();
    std::fs::write(
        dir.path().join("deep.jsonl"),
        format!("{{\"a\": 1}}\n{{\"a\": {}}}\n", deep(50_000)),
    )
    .unwrap();
    // Brackets inside strings are text, not nesting.
    std::fs::write(
        dir.path().join("fine.jsonl"),
        format!("{{\"a\": \"{}\", \"b\": [[1]]}}\n", "[".repeat(500)),
    )
    .unwrap();
    let mut s = Session::new();
    s.set_base_dir(dir.path());
    let e = eval_err(&mut s, "read \"deep.json\"");
    assert!(
        e.contains("JSON nested deeper than 100 levels (line 1)"),
        "{e}"
    );
    let e = eval_err(&mut s, "read \"deep.jsonl\"");
    assert!(
        e.contains("JSON nested deeper than 100 levels (line 2)"),
        "{e}"
    );
    let t = table(&mut s, "read \"fine.jsonl\"");
    assert_eq!(t.height(), 1);
}

// ---- hostile input: joins that explode ------------------------------------------------------

/// `a | join a on expected` with few distinct keys has ~n²/k rows: 100 000 rows gave a 6.5 GB
/// allocation and an abort. The size is counted from the keys first and refused over
/// `max_rows`, with the limit and how to raise it in the message.
#[test]
fn exploding_join_is_refused_with_its_limit() {
    let mut s = Session::new();
    s.eval("let a = arith 100000 max 2").unwrap();
    let e = eval_err(&mut s, "a | join a on expected | count");
    assert!(
        e.contains("over the limit of max_rows 50000000") && e.contains("max_rows"),
        "{e}"
    );
}

/// The count is exact for every kind of join: the limit at the true size passes, one below
/// refuses.
#[test]
fn join_row_count_is_exact_for_each_kind() {
    let mut s = session();
    s.set(
        "names",
        df!("src" => ["input", "input", "a0", "zz"], "n" => [1i64, 2, 3, 4]).unwrap(),
    );
    for how in ["inner", "left", "right", "full"] {
        let rows = eval(&mut s, &format!("t | join names on src how {how} | count"))
            .as_number()
            .unwrap();
        let ok = format!("t | join names on src how {how} max_rows {rows} | count");
        assert_eq!(eval(&mut s, &ok).as_number(), Some(rows), "{how}");
        let e = eval_err(
            &mut s,
            &format!("t | join names on src how {how} max_rows {}", rows - 1.0),
        );
        assert!(
            e.contains(&format!("this join would give {rows} rows")),
            "{how}: {e}"
        );
    }
}
// ---- hostile input (issue 13) ----

fn error(s: &mut Session, src: &str) -> String {
    match s.eval(src) {
        Ok(v) => panic!("{}… should fail, got {v}", &src[..src.len().min(80)]),
        Err(e) => format!("{e:?}"),
    }
}

/// Thousands of nested verb words (`abs abs abs … 1`: each starts a command inside the one
/// before) overflowed the stack and aborted; now the depth limit is an error that states it,
/// in evaluation and in `check`, and the session goes on.
#[test]
fn deeply_nested_commands_are_refused_with_the_limit() {
    let mut s = session();
    let nested = |verb: &str, n: usize| format!("{}1", format!("{verb} ").repeat(n));
    for src in [
        nested("abs", 3000),
        nested("count", 5000),
        format!("arith 3 | top {}", nested("abs", 3000)),
    ] {
        let e = error(&mut s, &src);
        assert!(e.contains("commands nested more than 150 deep"), "{e}");
        let e = format!("{:?}", s.check(&src, "deep.rlq").unwrap_err());
        assert!(e.contains("commands nested more than 150 deep"), "{e}");
    }
    assert_eq!(eval(&mut s, &nested("abs", 100)).as_number(), Some(1.0));
    assert_eq!(eval(&mut s, "1 + 1").as_number(), Some(2.0));
}

/// A chain of 3000 imports, each file well formed, ended in pest's "stack limit reached" syntax
/// error; now the chain is cut at a stated depth.
#[test]
fn import_chains_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let chain = |n: usize| {
        for i in 0..n {
            let next = if i + 1 < n {
                format!("import \"f{}.rlq\"\n", i + 1)
            } else {
                String::new()
            };
            std::fs::write(
                dir.path().join(format!("f{i}.rlq")),
                format!("{next}let v{i} = {i}\n"),
            )
            .unwrap();
        }
    };
    let main = dir.path().join("main.rlq");
    std::fs::write(&main, "import \"f0.rlq\"\nv0").unwrap();
    let src = std::fs::read_to_string(&main).unwrap();
    chain(60);
    let mut s = Session::new();
    let v = s.eval_named(&src, main.to_str().unwrap()).unwrap();
    assert_eq!(v.as_number(), Some(0.0));
    assert_eq!(s.get("v59").unwrap().as_number(), Some(59.0));
    chain(3000);
    let mut s = Session::new();
    let e = format!(
        "{:?}",
        s.eval_named(&src, main.to_str().unwrap()).unwrap_err()
    );
    assert!(e.contains("imports nested more than 64 files deep"), "{e}");
    assert!(!e.contains("syntax error"), "{e}");
    assert!(s.get("v0").is_none(), "a failing import defines nothing");
}

/// A script with a UTF-8 byte-order mark, run or imported, behaves as without it.
#[test]
fn scripts_with_a_bom_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rlq"), "\u{feff}let from_lib = 2\n").unwrap();
    let main = dir.path().join("main.rlq");
    let src = "\u{feff}import \"lib.rlq\"\nfrom_lib * 3";
    let mut s = Session::new();
    let v = s.eval_named(src, main.to_str().unwrap()).unwrap();
    assert_eq!(v.as_number(), Some(6.0));
    assert!(s.check(src, main.to_str().unwrap()).is_ok());
}

/// A verb with declared ranges, for the binding tests below.
fn ranged_session() -> Session {
    use rlq::eval::{Range, Signature, Type};
    let mut s = session();
    s.register_fn(
        "tune",
        Signature::new("tune", "range test")
            .optional("x", Type::Number, "a positional number")
            .named("alpha", Type::Number, "a fraction")
            .named("steps", Type::Number, "steps")
            .named("t_cut", Type::Number, "tokens")
            .named("seed", Type::Number, "a seed")
            .range("alpha", Range::positive(1000.0))
            .range("steps", Range::whole(1.0, 10_000.0))
            .range("t_cut", Range::whole(1.0, 1e6)),
        |_ctx, args| {
            Ok(Value::from(format!(
                "x={:?} alpha={:?} steps={:?} t_cut={:?} seed={:?}",
                args.number("x"),
                args.number("alpha"),
                args.number("steps"),
                args.number("t_cut"),
                args.number("seed")
            )))
        },
    );
    s
}

/// `t_cut -1` parsed as `t_cut - 1` and was reported as "too many arguments"; now a keyword
/// followed by a minus takes the negative value, which the keyword's range then refuses.
#[test]
fn a_negative_keyword_value_is_that_value() {
    let mut s = ranged_session();
    for (src, want) in [
        (
            "tune t_cut -1",
            "`t_cut` of `tune` must be a whole number from 1 to 1000000, got -1",
        ),
        (
            "tune alpha -1",
            "`alpha` of `tune` must be a finite number > 0 and ≤ 1000, got -1",
        ),
        (
            "tune 3 steps - 2 * 3",
            "`steps` of `tune` must be a whole number from 1 to 10000, got -6",
        ),
    ] {
        let e = error(&mut s, src);
        assert!(e.contains(want), "{src}: {e}");
    }
    // Where the value is in range, it is taken as written: `seed -1 + 3` is 2.
    assert_eq!(
        eval(&mut s, "tune 3 seed -1 + 3 steps 2").to_string(),
        "x=Some(3.0) alpha=None steps=Some(2.0) t_cut=None seed=Some(2.0)"
    );
    // A keyword waiting for its value takes the subtraction whole: `seed` is the variable.
    s.eval("let seed = 10").unwrap();
    assert_eq!(
        eval(&mut s, "tune seed seed - 1").to_string(),
        "x=None alpha=None steps=None t_cut=None seed=Some(9.0)"
    );
    // After a pipe, `top -1` is `top` given -1 (its own check refuses it) ...
    let e = error(&mut s, "arith 3 | top -1");
    assert!(e.contains("got -1"), "{e}");
    assert!(!e.contains("after `|` comes a verb"), "{e}");
    // ... and `top - 1`, spaced, is a subtraction, which the message says.
    let e = error(&mut s, "arith 3 | top - 1");
    assert!(e.contains("reads as a subtraction"), "{e}");
    assert!(e.contains("write the minus"), "{e}");
    assert!(
        s.check("tune alpha -1", "x.rlq").is_ok(),
        "check binds it the same way"
    );
}

/// `alpha 1e999` said "alpha must be > 0" and `steps 1e9` "must be ≥ 1"; range messages now
/// state finiteness and both bounds, for every ranged parameter.
#[test]
fn range_messages_state_finiteness_and_bounds() {
    let mut s = ranged_session();
    for (src, want) in [
        (
            "tune alpha 1e308 * 10",
            "must be a finite number > 0 and ≤ 1000, got inf",
        ),
        ("tune alpha 1e308 * 10 - 1e308 * 10", "got NaN"),
        ("tune alpha 1001", "≤ 1000, got 1001"),
        (
            "tune steps 1e9",
            "must be a whole number from 1 to 10000, got 1000000000",
        ),
        ("tune steps 2.5", "whole number from 1 to 10000, got 2.5"),
    ] {
        let e = error(&mut s, src);
        assert!(e.contains(want), "{src}: {e}");
    }
    let e = error(&mut s, "tune alpha 1e999");
    assert!(e.contains("`1e999` is too large for a number"), "{e}");
    assert_eq!(
        eval(&mut s, "tune alpha 1000 steps 10000").to_string(),
        "x=None alpha=Some(1000.0) steps=Some(10000.0) t_cut=None seed=None"
    );
}

/// A session with a tiny random Llama as `m` and two arith questions as `qs`: for checks
/// that are refused at binding, before any model work.
fn session_with_tiny_model() -> Session {
    let m = rlq::model::synthetic::random_model(
        rlq::model::config::Family::Llama,
        1,
        candle_core::DType::F32,
    )
    .unwrap();
    let mut s = session();
    s.set("m", m);
    s.eval("let qs = arith 2 seed 1").unwrap();
    s
}

/// The real `patch` declares its ranges, so they are refused before any work is done.
#[test]
fn patch_keywords_are_range_checked() {
    let mut s = session_with_tiny_model();
    for (src, want) in [
        (
            "patch m on qs alpha -1",
            "`alpha` of `patch` must be a finite number > 0 and ≤ 1000, got -1",
        ),
        ("patch m on qs alpha 1e308 * 10", "got inf"),
        (
            "patch m on qs t_cut -1",
            "`t_cut` of `patch` must be a whole number from 1 to 1000000, got -1",
        ),
        (
            "patch m on qs method eap_ig steps 1e9",
            "`steps` of `patch` must be a whole number from 1 to 10000, got 1000000000",
        ),
        // `positions [-1]` parses as indexing a variable `positions`: bound as the keyword
        // and a one-element list, which the keyword's own check then judges
        (
            "patch m on qs positions [-1]",
            "positions: -1 is not an answer-token index",
        ),
        (
            "patch m on qs positions [0, 2.5]",
            "positions: 2.5 is not an answer-token index",
        ),
    ] {
        let e = error(&mut s, src);
        assert!(e.contains(want), "{src}: {e}");
    }
}

/// Long pipelines of cheap verbs on a 5-row table: 280 stages took over 15 s (40–80 took
/// 20 ms), as each stage resolved the schema of the whole lazy plan before it. With the plan
/// collected every few stages the cost is linear; a quadratic (or worse) pipeline of 1000 stages
/// would take minutes, so finishing inside the test harness is itself the check (time budgets
/// belong in benches).
#[test]
fn a_thousand_stage_pipeline_completes() {
    let mut s = Session::new();
    s.eval("let t = arith 5 seed 1").unwrap();
    let stages = [
        "top 3",
        "where expected > 0",
        "sort by expected",
        "with y = expected",
        "unique",
        "head 2",
    ];
    let mut src = "t".to_string();
    for i in 0..1000 {
        src.push_str(" | ");
        src.push_str(stages[i % stages.len()]);
    }
    let got = table(&mut s, &src);
    assert!(got.height() <= 2, "{got}");
    assert!(got.column("y").is_ok(), "{got}");
    // The same thing, collected: the periodic collect changes no result.
    let short = table(
        &mut s,
        "t | top 3 | where expected > 0 | sort by expected | with y = expected | unique | head 2",
    );
    assert!(short.height() <= 2);
}

/// The README's tour pipes a graph into `edges`; `edges` (and `nodes`, `circuit`, `show`,
/// `export`) take the graph piped or as an argument.
#[test]
fn graph_verbs_take_a_piped_graph() {
    use rlq::attribution::graph::{EdgeInfo, Graph, GraphMeta};
    let edge = |src: &str, dst: &str, sl: i64, dl: i64| EdgeInfo {
        src: src.into(),
        dst: dst.into(),
        src_layer: sl,
        dst_layer: dl,
        src_kind: "attn",
        dst_kind: "mlp",
    };
    let g = Graph {
        edges: vec![
            edge("input", "m0", -1, 0),
            edge("a0", "m0", 0, 0),
            edge("m0", "logits", 0, 1),
        ],
        scores: vec![vec![0.1, -0.4, 0.2]],
        meta: GraphMeta {
            model: "tiny".into(),
            n_layers: 1,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: "block".into(),
            t_cut: None,
            prompt_ids: vec![0],
            per_sample: false,
            ..GraphMeta::default()
        },
        positions: None,
    };
    let mut s = Session::new();
    s.set("g", g);
    let piped = table(
        &mut s,
        "g | edges where abs_score > 0.15 | sort by abs_score desc | top 20",
    );
    let direct = table(
        &mut s,
        "edges g where abs_score > 0.15 | sort by abs_score desc | top 20",
    );
    assert!(piped.equals_missing(&direct));
    assert_eq!(piped.height(), 2);
    assert_eq!(
        piped.column("src").unwrap().str().unwrap().get(0),
        Some("a0")
    );
    assert_eq!(
        table(&mut s, "g | nodes").height(),
        table(&mut s, "nodes g").height()
    );
    assert_eq!(
        eval(&mut s, "g | circuit top 1 | edges | count").as_number(),
        Some(1.0)
    );
    let e = error(&mut s, "arith 2 | edges");
    assert!(
        e.contains("`edges` takes a graph; a table was piped in"),
        "{e}"
    );
}

#[test]
fn table_literals_by_columns_and_by_rows() {
    let mut s = Session::new();
    let t = table(
        &mut s,
        "{prompt: [\"2+2?\", \"3+4?\"], expected: [4, 7], chat: false}",
    );
    let want = df!(
        "prompt" => ["2+2?", "3+4?"],
        "expected" => [4i64, 7],
        "chat" => [false, false],
    )
    .unwrap();
    same(&t, &want);
    // Rows: a field a record lacks is null; whole and fractional numbers together are f64.
    let t = table(&mut s, "[{a: 1, b: \"x\"}, {a: 2.5}]");
    let want = df!("a" => [1.0f64, 2.5], "b" => [Some("x"), None]).unwrap();
    same(&t, &want);
    // `table` accepts the literal (as the issue wrote it) and list columns of ids.
    let t = table(
        &mut s,
        "table {prompt_ids: [[1, 2], [3]], 'the answer': [\"a\", \"b\"]}",
    );
    assert_eq!(t.height(), 2);
    let ids = t.column("prompt_ids").unwrap().list().unwrap();
    let first: Vec<i64> = ids
        .get_as_series(0)
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(first, [1, 2]);
    assert!(t.column("the answer").is_ok());
    // Over newlines, like lists.
    let t = table(&mut s, "{a: [1,\n 2],\n b: [3, 4]}");
    assert_eq!(t.shape(), (2, 2));
    // A table literal pipes like any table.
    let v = eval(&mut s, "{x: [1, 2, 3]} | where x > 1 | count");
    assert_eq!(v.as_number(), Some(2.0));
}

#[test]
fn table_literal_mistakes_name_the_column() {
    let mut s = Session::new();
    for (src, needle) in [
        (
            "{a: [1, 2], b: [1]}",
            "column `b` has 1 values, column `a` 2",
        ),
        ("{a: [1, \"x\"]}", "column `a` mixes number and string"),
        (
            "[{a: [1]}, {a: [\"x\"]}]",
            "column `a` holds lists of i64 and lists of str",
        ),
    ] {
        let e = s.eval(src).expect_err(src);
        assert!(format!("{e:?}").contains(needle), "{src}: {e:?}");
    }
    let e = s.eval("{a: 1, a: 2}").expect_err("duplicate");
    assert!(
        format!("{e:?}").contains("field `a` is given twice"),
        "{e:?}"
    );
}

#[test]
fn a_whole_table_aggregate_needs_no_group() {
    let mut s = session();
    let t = table(&mut s, "t | group agg sum(score) as total, count()");
    let want = edges()
        .lazy()
        .select([col("score").sum().alias("total"), len().alias("count")])
        .collect()
        .unwrap();
    assert_eq!(t.height(), 1);
    assert_eq!(
        t.column("total").unwrap().f64().unwrap().get(0),
        want.column("total").unwrap().f64().unwrap().get(0)
    );
    assert_eq!(
        t.column("count")
            .unwrap()
            .cast(&DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(8)
    );
}

#[test]
fn truncated_answers_are_never_graded_correct() {
    let mut s = Session::new();
    // Row 0 was cut mid-sum: its last number (4) equals the expected one by accident.
    let t = table(
        &mut s,
        "{answer: [\"12 + 30 = 4\", \"so 7\"], expected: [4, 7], truncated: [true, false]} | grade",
    );
    let correct: Vec<bool> = t
        .column("correct")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(|b| b.unwrap_or(false))
        .collect();
    assert_eq!(correct, [false, true]);
    assert_eq!(t.column("extracted").unwrap().f64().unwrap().get(0), None);
    // Without the column, grading is as before.
    let t = table(&mut s, "{answer: [\"12 + 30 = 4\"], expected: [4]} | grade");
    assert_eq!(
        t.column("correct").unwrap().bool().unwrap().get(0),
        Some(true)
    );
}

fn dot_graph(
    edges: &[(&str, &str, i64, i64, &'static str, &'static str)],
    scores: Vec<f64>,
) -> rlq::attribution::graph::Graph {
    use rlq::attribution::graph::{EdgeInfo, Graph, GraphMeta};
    Graph {
        edges: edges
            .iter()
            .map(|&(src, dst, sl, dl, sk, dk)| EdgeInfo {
                src: src.into(),
                dst: dst.into(),
                src_layer: sl,
                dst_layer: dl,
                src_kind: sk,
                dst_kind: dk,
            })
            .collect(),
        scores: vec![scores],
        meta: GraphMeta {
            model: "tiny".into(),
            n_layers: 2,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: "block".into(),
            t_cut: Some(3),
            prompt_ids: vec![0],
            per_sample: false,
            ..GraphMeta::default()
        },
        positions: None,
    }
}

#[test]
fn dot_export_ranks_layers_attaches_ports_and_has_a_legend() {
    use rlq::attribution::export::to_dot;
    let g = dot_graph(
        &[
            ("m0", "a1<q>", 0, 1, "mlp", "q"),
            ("input", "a1<k>", -1, 1, "embed", "k"),
            ("a1", "logits", 1, 2, "attn", "logits"),
            ("input", "m0", -1, 0, "embed", "mlp"),
            ("a0", "m0", 0, 0, "attn", "mlp"),
            ("input", "a0<v>", -1, 0, "embed", "v"),
        ],
        vec![0.5, -0.25, 1.0, 0.1, 0.2, 0.3],
    );
    let dot = to_dot(&g);
    // q/k/v are ports of their head's node, and edges enter them there.
    assert!(
        dot.contains("\"a1\" [shape=record") && dot.contains("label=\"{{<q> q|<k> k}|a1}\""),
        "{dot}"
    );
    assert!(dot.contains("\"m0\" -> \"a1\":q"), "{dot}");
    assert!(dot.contains("\"input\" -> \"a0\":v"), "{dot}");
    assert!(!dot.contains("a1<q>\" ["), "{dot}");
    // Ranks chained in layer order: input, layer 0, layer 0's MLP, layer 1, output.
    assert!(
        dot.contains("\"rank_-1_0\" -> \"rank_0_1\" -> \"rank_0_2\" -> \"rank_1_1\" -> \"rank_2_3\" [style=invis]"),
        "{dot}"
    );
    assert!(
        dot.contains("cluster_legend") && dot.contains("showing all 6 edges"),
        "{dot}"
    );
    assert_eq!(dot.lines().filter(|l| l.contains("penwidth")).count(), 6);
}

#[test]
fn dot_export_of_a_large_graph_keeps_its_strongest_edges() {
    use rlq::attribution::export::{to_dot, to_dot_limited, DOT_MAX_EDGES};
    let names: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let edges: Vec<(&str, &str, i64, i64, &'static str, &'static str)> = names
        .iter()
        .map(|n| ("input", n.as_str(), -1, 0, "embed", "mlp"))
        .collect();
    // Edge i has |score| i (sign alternating): the strongest 200 are edges 100..300.
    let scores: Vec<f64> = (0..300)
        .map(|i| if i % 2 == 0 { i as f64 } else { -(i as f64) })
        .collect();
    let g = dot_graph(&edges, scores);
    let dot = to_dot(&g);
    let drawn: Vec<&str> = dot.lines().filter(|l| l.contains("penwidth")).collect();
    assert_eq!(drawn.len(), DOT_MAX_EDGES);
    assert!(dot.contains("the 200 strongest of 300 edges"), "{dot}");
    assert!(
        drawn.iter().any(|l| l.contains("\"m100\""))
            && !drawn.iter().any(|l| l.contains("\"m99\""))
    );
    assert_eq!(
        to_dot_limited(&g, usize::MAX)
            .lines()
            .filter(|l| l.contains("penwidth"))
            .count(),
        300
    );
}

#[test]
fn keyword_values_complete_after_their_keyword() {
    let s = Session::new();
    assert_eq!(
        s.completions("patch m on qs loss ", 19),
        ["kl", "logit_diff", "nll", "self_entropy"]
    );
    assert_eq!(
        s.completions("let g = patch m on qs method eap", 32),
        ["eap", "eap_ig"]
    );
    assert_eq!(s.completions("patch m on qs granularity h", 27), ["head"]);
    // Elsewhere the keywords themselves.
    assert!(s
        .completions("patch m on qs gr", 16)
        .contains(&"granularity".to_string()));
}

#[test]
fn a_list_of_tables_stacks_into_one() {
    let mut s = Session::new();
    let t = table(&mut s, "table [{a: [1, 2]}, {a: [3]}]");
    // A list of records is already a table (rows): each record here holds a column.
    assert_eq!(t.height(), 2);
    let t = table(
        &mut s,
        "let x = {a: [1, 2]}\nlet y = {a: [3], b: [\"z\"]}\ntable [x, y]",
    );
    let want = df!("a" => [1i64, 2, 3], "b" => [None, None, Some("z")]).unwrap();
    same(&t, &want);
}

/// A word outside a keyword's declared choices is refused by `check` (before anything runs) and
/// by evaluation, with the choices listed: the Signature is the one list of them.
#[test]
fn keyword_choices_are_checked_before_running() {
    let mut s = Session::new();
    s.set("qs", Value::Null);
    s.set("m", Value::Null);
    let e = format!(
        "{:?}",
        s.check("patch m on qs loss foo", "a.rlq").unwrap_err()
    );
    assert!(e.contains("unknown loss `foo`"), "{e}");
    for name in rlq::attribution::LossKind::NAMES {
        assert!(e.contains(name), "the help lists `{name}`: {e}");
    }
    let e = format!(
        "{:?}",
        s.check("patch m on qs method \"eapp\"", "a.rlq")
            .unwrap_err()
    );
    assert!(
        e.contains("unknown method `eapp`") && e.contains("eap_ig"),
        "{e}"
    );
    assert!(s
        .check("patch m on qs loss nll method eap_ig", "a.rlq")
        .is_ok());
}

/// The library never prints: what a verb reports goes to the session's reporter, and a session
/// made without one keeps the messages for its caller.
#[test]
fn messages_go_to_the_session_not_the_terminal() {
    use rlq::eval::{Signature, Type};
    use rlq::report::{Collect, Event};
    use std::sync::Arc;
    let verb = |s: &mut Session| {
        s.register_fn(
            "careful",
            Signature::new("careful", "warns").piped("x", Type::Number, "a number"),
            |ctx, args| {
                let task = ctx.task("careful", 2, "steps");
                task.within(1, 2, "halves");
                task.done(1);
                drop(task);
                ctx.warn("only an estimate");
                Ok(Value::Number(args.number("x").unwrap_or(0.0)))
            },
        );
    };
    let mut s = Session::new();
    verb(&mut s);
    assert_eq!(s.eval("careful(1)").unwrap().as_number(), Some(1.0));
    assert_eq!(s.messages(), [Event::Warning("only an estimate".into())]);
    assert!(s.messages().is_empty(), "read once");

    let log = Arc::new(Collect::all());
    let mut s = Session::with_reporter(log.clone());
    verb(&mut s);
    s.eval("careful(1)").unwrap();
    assert_eq!(
        log.events(),
        [
            Event::Start {
                task: "careful".into(),
                total: 2,
                unit: "steps"
            },
            Event::Within {
                done: 1,
                total: 2,
                unit: "halves"
            },
            Event::Done { done: 1 },
            Event::Finish,
            Event::Warning("only an estimate".into()),
        ]
    );
    assert!(s.messages().is_empty(), "the host's reporter has them");
}

/// `Session::eval`'s error is typed: its code is an enum a host branches on (the binary's exit
/// status), and a layer's error is kept as its source, not only as text.
#[test]
fn errors_carry_a_code_and_their_cause() {
    use rlq::eval::ErrorCode;
    let mut s = Session::new();
    assert_eq!(s.eval("1 +").unwrap_err().code, ErrorCode::Syntax);
    assert_eq!(s.eval("nope").unwrap_err().code, ErrorCode::Name);
    let e = s.eval("load \"no/such/model.gguf\"").unwrap_err();
    assert_eq!(e.code, ErrorCode::Model);
    let cause = std::error::Error::source(&e).expect("the model layer's error is kept");
    assert!(cause.downcast_ref::<rlq::model::ModelError>().is_some());
    assert_eq!(
        cause.to_string(),
        e.message,
        "the message says what the cause said"
    );
    // What a person sees names the cause once: the message already says it, so the cause
    // chain (miette's `╰─▶` lines, there by default) is left out.
    let mut with_chain = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut with_chain, &e)
        .unwrap();
    assert!(with_chain.contains("╰─▶"), "{with_chain}");
    let shown = rlq::cli::diagnostics::render(&e, false);
    assert!(!shown.contains("╰─▶"), "{shown}");
}

/// A session with two synthetic block graphs (3 layers, 6 samples; g1 = 2·g0 + noise).
fn graph_session() -> Session {
    use rlq::analysis::synthetic::block_graph;
    let n_edges = 4 * 3 * 3 + 3 * 3 + 1;
    let scores = |seed: u64| -> Vec<Vec<f64>> {
        (0..6u64)
            .map(|i| {
                (0..n_edges as u64)
                    .map(|e| (((i * 31 + e * 17 + seed) % 23) as f64 - 11.0) / 7.0)
                    .collect()
            })
            .collect()
    };
    let mut s = session();
    s.set(
        "g0",
        Value::Graph(std::sync::Arc::new(block_graph(3, scores(0)))),
    );
    s.set(
        "g1",
        Value::Graph(std::sync::Arc::new(block_graph(3, scores(5)))),
    );
    s
}

/// The converted verbs declare their keywords' ranges in their Signature, so a bad value is
/// refused while binding, with the one message every ranged keyword gives (and `help` shows
/// the same declaration).
#[test]
fn converted_verbs_refuse_bad_values_at_binding() {
    let mut s = graph_session();
    for (src, want) in [
        (
            "t | top -1",
            "`n` of `top` must be a whole number ≥ 0, got -1",
        ),
        (
            "t | head 2.5",
            "`n` of `head` must be a whole number ≥ 0, got 2.5",
        ),
        (
            "t | join t on src max_rows -1",
            "`max_rows` of `join` must be a finite number ≥ 0, got -1",
        ),
        (
            "topk_mass g0 k 2.5",
            "`k` of `topk_mass` must be a whole number ≥ 1, got 2.5",
        ),
        (
            "compare g0, g1 k 0",
            "`k` of `compare` must be a whole number ≥ 1, got 0",
        ),
        (
            "compare g0, g1 resamples 2.5",
            "`resamples` of `compare` must be a whole number from 0 to 1000000, got 2.5",
        ),
        (
            "compare g0, g1 resamples -1",
            "`resamples` of `compare` must be a whole number from 0 to 1000000, got -1",
        ),
        (
            "compare g0, g1 seed 0.5",
            "`seed` of `compare` must be a whole number from 0 to 9007199254740992, got 0.5",
        ),
        (
            "overlap g0, g1 top 0",
            "`top` of `overlap` must be a whole number ≥ 1, got 0",
        ),
        (
            "entropy g0 bins 0",
            "`bins` of `entropy` must be a whole number from 1 to 10000000, got 0",
        ),
        (
            "entropy g0 base -2",
            "`base` of `entropy` must be a finite number > 0, got -2",
        ),
        (
            "show g0 top -1",
            "`top` of `show` must be a whole number ≥ 0, got -1",
        ),
        (
            "circuit g0 top 2.5",
            "`top` of `circuit` must be a whole number from 0 to 1000000000000, got 2.5",
        ),
        (
            "checkpoint \"d\" 1.5",
            "`step` of `checkpoint` must be a whole number from 0 to 1000000, got 1.5",
        ),
    ] {
        let e = s.eval(src).expect_err(src);
        assert_eq!(e.code, rlq::eval::ErrorCode::Args, "{src}: {e:?}");
        assert!(e.message.contains(want), "{src}: {e:?}");
    }
    // `base 1` is in the declared range (> 0) but has no logarithm: the verb says so.
    let e = error(&mut s, "entropy g0 base 1");
    assert!(e.contains("the log base must be > 0 and ≠ 1"), "{e}");
    // Help shows the declared ranges and defaults the binding enforces.
    let help = eval(&mut s, "help compare").to_string();
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("resamples"))
        .unwrap_or_else(|| panic!("{help}"));
    assert!(
        line.ends_with("— a whole number from 0 to 1000000 (default 1000)"),
        "{line}"
    );
}

/// `tune`'s whole-number keywords are declared too: refused at binding, before the model or
/// the questions are looked at.
#[test]
fn tune_keywords_are_range_checked_at_binding() {
    let mut s = session_with_tiny_model();
    for (kw, want) in [
        (
            "steps 0",
            "`steps` of `tune` must be a whole number from 1 to 1000000, got 0",
        ),
        (
            "batch 2.5",
            "`batch` of `tune` must be a whole number from 1 to 4096, got 2.5",
        ),
        (
            "group 2000",
            "`group` of `tune` must be a whole number from 1 to 1024, got 2000",
        ),
        (
            "lora 0",
            "`lora` of `tune` must be a whole number from 1 to 4096, got 0",
        ),
        (
            "seed -1",
            "`seed` of `tune` must be a whole number from 0 to 4294967295, got -1",
        ),
        (
            "save_every 0.5",
            "`save_every` of `tune` must be a whole number from 0 to 1000000, got 0.5",
        ),
    ] {
        let e = s
            .eval(&format!("tune m on qs to \"unused\" {kw}"))
            .expect_err(kw);
        assert_eq!(e.code, rlq::eval::ErrorCode::Args, "{kw}: {e:?}");
        assert!(e.message.contains(want), "{kw}: {e:?}");
    }
    assert!(!std::path::Path::new("unused").exists());
}

/// A keyword left out takes the default its Signature declares: the result equals passing that
/// default explicitly (and a different value changes it, so the comparison means something).
#[test]
fn declared_defaults_apply_when_a_keyword_is_left_out() {
    let mut s = graph_session();
    s.eval("let qs = arith 30 seed 2").unwrap();
    let pairs = [
        ("qs | head", "qs | head 10", "qs | head 3"),
        ("show g0", "show g0 top 10", "show g0 top 2"),
        ("topk_mass g0", "topk_mass g0 k 10", "topk_mass g0 k 3"),
        (
            "entropy g0 by layer",
            "entropy g0 by layer bins 100 zeros false",
            "entropy g0 by layer bins 7",
        ),
        (
            "overlap g0, g1",
            "overlap g0, g1 top 100",
            "overlap g0, g1 top 5",
        ),
        (
            "compare g0, g1 resamples 50",
            "compare g0, g1 resamples 50 seed 0 paired true k 10 same_tokens false",
            "compare g0, g1 resamples 50 seed 3",
        ),
        (
            "compare g0, g1",
            "compare g0, g1 resamples 1000",
            "compare g0, g1 resamples 20",
        ),
    ];
    // Tables compare cell by cell (nulls equal), text as text.
    let result = |s: &mut Session, src: &str| -> Result<DataFrame, String> {
        match eval(s, src) {
            Value::Table(t) => Ok(t.collect().unwrap()),
            v => Err(v.to_string()),
        }
    };
    let equal = |a: &Result<DataFrame, String>, b: &Result<DataFrame, String>| match (a, b) {
        (Ok(a), Ok(b)) => a.equals_missing(b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    for (default, explicit, other) in pairs {
        let d = result(&mut s, default);
        let e = result(&mut s, explicit);
        assert!(equal(&d, &e), "{default}: {d:?}\n{explicit}: {e:?}");
        let o = result(&mut s, other);
        assert!(
            !equal(&d, &o),
            "{other} should differ from {default}: {d:?}"
        );
    }
}

/// A layer's failure keeps the layer's error as the `source()` of the EvalError (a host can
/// downcast it), with the layer's code, and the message people see is the layer's own text.
#[test]
fn analysis_io_study_and_tune_failures_keep_their_cause() {
    use rlq::eval::ErrorCode;
    fn cause<T: std::error::Error + 'static>(e: &rlq::eval::EvalError) -> &T {
        std::error::Error::source(e)
            .unwrap_or_else(|| panic!("no source: {e:?}"))
            .downcast_ref::<T>()
            .unwrap_or_else(|| panic!("source of another type: {e:?}"))
    }
    let mut s = graph_session();
    let dir = tempfile::tempdir().unwrap();

    // analysis: a table without the columns a statistic needs
    let e = s.eval("entropy (table {a: [1, 2]})").unwrap_err();
    assert_eq!(e.code, ErrorCode::Analysis);
    let a = cause::<rlq::analysis::AnalysisError>(&e);
    assert!(
        matches!(a, rlq::analysis::AnalysisError::MissingColumn { .. }),
        "{a:?}"
    );
    assert_eq!(a.to_string(), e.message);

    // io: reading a missing file, saving under a file (not a folder)
    let missing = dir.path().join("missing.csv");
    let e = s
        .eval(&format!("read \"{}\"", missing.display()))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert_eq!(
        cause::<std::io::Error>(&e).kind(),
        std::io::ErrorKind::NotFound
    );
    assert!(e.message.starts_with("cannot read `"), "{}", e.message);
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = s
        .eval(&format!("save t to \"{}/t.csv\"", file.display()))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    cause::<std::io::Error>(&e);
    assert!(e.message.starts_with("cannot save to `"), "{}", e.message);

    // polars, under a table verb: the `table error:` text, the PolarsError kept
    let e = s.eval("t | join (table {src: [1]}) on src").unwrap_err();
    assert_eq!(e.code, ErrorCode::Table, "{e:?}");
    cause::<polars::prelude::PolarsError>(&e);
    assert!(e.message.starts_with("table error: "), "{}", e.message);

    // study: a `correct` column that is not true/false
    let e = s
        .eval(
            "select_questions (table {prompt_id: [1], answer_ids: [1], n_tokens: [3], correct: [1]}), \
             (table {prompt_id: [1], answer_ids: [1], n_tokens: [3], correct: [1]}) alpha 0.5 n 1",
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Study, "{e:?}");
    cause::<polars::prelude::PolarsError>(&e);

    // tune: resuming from a checkpoint that is not there (found before any training; the
    // synthetic model has no tokenizer, so the prompt is given as ids)
    let m = rlq::model::synthetic::random_model(
        rlq::model::config::Family::Llama,
        1,
        candle_core::DType::F32,
    )
    .unwrap();
    s.set("m", m);
    let e = s
        .eval(&format!(
            "tune m on (table {{prompt_ids: [[1, 2]], expected: [\"3\"]}}) to \"{}\" resume \"{}\"",
            dir.path().join("run").display(),
            dir.path().join("no-checkpoint").display()
        ))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Tune, "{e:?}");
    let t = cause::<rlq::tuning::TuneError>(&e);
    assert_eq!(t.to_string(), e.message);
}
