//! No input, however malformed, panics the parser, the checker or the evaluator: random text,
//! token soup, deep nesting, huge literals, long pipelines and mixed verbs.
//!
//! A longer campaign (outside CI) uses proptest's environment variables, e.g.
//! `PROPTEST_CASES=200000 PROPTEST_RNG_SEED=13 nice cargo test --test lang lang_fuzz`: a panic fails
//! the test (and is shrunk); a stack overflow aborts the binary, which is just as visible.

use polars::prelude::*;
use proptest::prelude::*;
use rlq::Session;

const TOKENS: &[&str] = &[
    "let",
    "fn",
    "import",
    "x",
    "t",
    "score",
    "src",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "and",
    "or",
    "not",
    "(",
    ")",
    "[",
    "]",
    ",",
    "|",
    ";",
    "\n",
    "#c\n",
    "1",
    "0",
    "-1",
    "2.5",
    "1e308",
    "\"s\"",
    "\"a\\n\"",
    "'q'",
    "\"",
    "true",
    "false",
    "null",
    "as",
    "where",
    "select",
    "sort",
    "by",
    "desc",
    "top",
    "head",
    "group",
    "agg",
    "sum(score)",
    "count()",
    "join",
    "on",
    "how",
    "with",
    "describe",
    "count",
    "len",
    "unique",
    "save",
    "to",
    "read",
    "\"x.csv\"",
    "help",
    "range",
    "abs",
    "f",
    "f(",
    "xs",
    "xs[0]",
    "[1, 2]",
    "columns",
    "type",
    "log",
    "round",
    "min",
    "max",
    "mean",
    "\\",
    "é",
    "💥",
    " ",
];

fn session() -> Session {
    let mut s = Session::new();
    s.set(
        "t",
        df!("score" => [0.5f64, -0.2, 0.0], "src" => ["a", "b", "c"]).unwrap(),
    );
    s.set("xs", vec![rlq::eval::Value::Number(1.0)]);
    s.eval("fn f(a) = a").unwrap();
    let dir = std::env::temp_dir().join(format!("rlq-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    s.set_base_dir(dir);
    s
}

fn exercise(src: &str) {
    let _ = rlq::syntax::parse(src);
    let _ = rlq::syntax::is_incomplete(src);
    let mut s = session();
    let _ = s.check(src, "fuzz.rlq");
    if let Err(e) = s.eval(src) {
        // Rendering must not panic either (spans stay inside the source).
        let mut out = String::new();
        let _ = miette::GraphicalReportHandler::new().render_report(&mut out, &e);
    }
    let _ = s.completions(src, src.len() / 2);
}

/// Verbs and words that start nested commands (`abs abs abs 1`).
const VERBS: &[&str] = &[
    "abs", "count", "top", "head", "unique", "sort", "where", "select", "with", "describe", "len",
    "round", "log", "min", "max", "mean", "type", "columns", "range", "help", "save", "read",
    "join", "group", "edges", "nodes", "arith", "circuit", "show", "f", "not", "-",
];

/// Cheap table stages, and a few bad ones, for long pipelines.
const STAGES: &[&str] = &[
    "top 3",
    "where score > 0",
    "sort by score",
    "with y = score",
    "unique",
    "head 2",
    "select score, src",
    "sort by score desc",
    "group by src agg n = count()",
    "top -1",
    "head 1e300",
    "count",
    "f",
    "describe",
    "where nope > 1",
];

/// Keyword values that used to be misread, and out-of-range values.
const KEYWORD_VALUES: &[&str] = &[
    "top -1",
    "alpha -1",
    "t_cut -1",
    "steps 1e9",
    "alpha 1e999",
    "seed -1",
    "by -1",
    "n -1",
    "max -2",
    "alpha 1e308 * 10",
    "alpha 0 / 0",
    "- 1",
    "-1",
    "to -1",
];

/// Cases per property: `default` in CI, `PROPTEST_CASES` for a longer campaign.
fn config(default: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig { cases, ..base }
}

/// `v v v … leaf`: up to 4000 nested verb words.
fn deep_verbs() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(VERBS), 1..4),
        0usize..4000,
        prop::sample::select(&["1", "t", "\"s\"", "[1]", "", "-1", "t |"][..]),
        prop::bool::ANY,
    )
        .prop_map(|(verbs, n, leaf, piped)| {
            let mut src = String::with_capacity(n * 6);
            if piped {
                src.push_str("t | ");
            }
            for i in 0..n {
                src.push_str(verbs[i % verbs.len()]);
                src.push(' ');
            }
            src.push_str(leaf);
            src
        })
}

/// Brackets and calls nested around the bracket limit (64), balanced or not.
fn deep_brackets() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["(", "[", "f(", "abs(", "(t | "][..]),
        0usize..200,
        prop::bool::ANY,
    )
        .prop_map(|(open, n, balanced)| {
            let close = if open.starts_with('[') { "]" } else { ")" };
            let mut src = open.repeat(n) + "1";
            if balanced {
                src.push_str(&close.repeat(n));
            }
            src
        })
}

/// Long strings (past column 65 535), long numbers, long names, long lists, long chains.
fn huge_literal() -> impl Strategy<Value = String> {
    let text = (
        0usize..100_000,
        prop::sample::select(&["x", "é", "💥", "\\n", " ", "|"][..]),
    )
        .prop_map(|(n, c)| format!("\"{}\"", c.repeat(n)));
    let digits = (1usize..2000).prop_map(|n| "9".repeat(n));
    let exponent = (0u32..100_000).prop_map(|e| format!("1e{e}"));
    let name = (1usize..100_000).prop_map(|n| "a".repeat(n));
    let list = (0usize..5000).prop_map(|n| format!("[{}]", vec!["1"; n].join(", ")));
    let chain = (0usize..3000).prop_map(|n| vec!["1"; n + 1].join(" + "));
    (
        prop_oneof![text, digits, exponent, name, list, chain],
        prop::sample::select(&["", " + zz", " | top 1", "\nzz", " - 1", " *"][..]),
    )
        .prop_map(|(lit, tail)| lit + tail)
}

/// `t | stage | stage …`: up to 400 stages.
fn long_pipeline() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(STAGES), 0..400).prop_map(|stages| {
        std::iter::once("t")
            .chain(stages)
            .collect::<Vec<_>>()
            .join(" | ")
    })
}

/// Verbs, keyword values and tokens mixed.
fn mixed_verbs() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(TOKENS),
        prop::sample::select(VERBS),
        prop::sample::select(KEYWORD_VALUES),
        prop::sample::select(STAGES),
    ];
    prop::collection::vec(word, 0..40).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn deep_nesting_never_panics(src in prop_oneof![deep_verbs(), deep_brackets()]) {
        exercise(&src);
    }

    #[test]
    fn huge_literals_never_panic(src in huge_literal()) {
        exercise(&src);
    }

    #[test]
    fn long_pipelines_never_panic(src in long_pipeline()) {
        exercise(&src);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn mixed_verbs_never_panic(src in mixed_verbs()) {
        exercise(&src);
    }

    #[test]
    fn random_strings_never_panic(src in "\\PC{0,60}") {
        exercise(&src);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..24)) {
        exercise(&tokens.join(" "));
        exercise(&tokens.concat());
    }
}

#[test]
fn pathological_inputs() {
    for src in [
        "(".repeat(100).as_str(),
        &"[".repeat(70),
        &"-".repeat(500),
        &"not ".repeat(500),
        &vec!["1"; 500].join("+"),
        "fn f(a) = f(a)\nf(1)",
        "fn g(a) = g(a) + 1\ng(1)",
        "range(1e300)",
        "range(1e17, 1e17 + 1000)",
        "t | top 1e300",
        "t | top -1",
        "t | head 0.5",
        "xs[1e300]",
        "round(1, 1e9)",
        "\"\\u{110000}\"",
        "\"\\u{zz}\"",
        "t | where score / 0 > 1",
        "t | sort by",
        "t | join t on score how sideways",
        "help nothing_here",
        "save t to \"\"",
        "read \"\"",
        "t | group by src agg sum(src, score)",
        "t | select col(1)",
        "t | with log(score, 0) as l",
    ] {
        exercise(src);
    }
    // Issue 13's crashes and hangs, as they were reported.
    let long = "x".repeat(70_000);
    for src in [
        format!("{}1", "abs ".repeat(3000)),
        format!("{}t", "count ".repeat(5000)),
        format!("arith 3 | top {}1", "abs ".repeat(3000)),
        format!("\"{long}\" + zz"),
        format!("\"{}", "y\n".repeat(100_000)),
        "\u{feff}t | top 1".to_string(),
        "arith 3 | top -1".to_string(),
        "t | sort by score | top -1 by score".to_string(),
    ] {
        exercise(&src);
    }
}

#[test]
fn malformed_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    s.set_base_dir(dir.path());
    for (name, bytes) in [
        ("bad.parquet", &b"PAR1 not really parquet"[..]),
        ("bad.json", &b"{\"a\": [1, 2"[..]),
        ("bad.jsonl", &b"{\"a\": 1}\n{oops}\n"[..]),
        ("bad.csv", &b"a,b\n1,2,3,4\n\"unterminated\n"[..]),
        ("empty.parquet", &b""[..]),
        ("empty.json", &b""[..]),
    ] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let _ = s.eval(&format!("read \"{name}\""));
    }
}
