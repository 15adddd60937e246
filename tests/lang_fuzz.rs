//! No input, however malformed, panics the parser, the checker or the evaluator.

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
        let _ = miette::GraphicalReportHandler::new().render_report(&mut out, e.as_ref());
    }
    let _ = s.completions(src, src.len() / 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

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
