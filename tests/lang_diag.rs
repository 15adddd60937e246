//! Diagnostic rendering: message, label and suggestion text, without colour.

use miette::{GraphicalReportHandler, GraphicalTheme};
use polars::prelude::*;
use rlq::Session;

/// As the `rlq` binary shows an error (`cli::diagnostics`): without the cause chain, whose
/// text the message already gives (a polars cause would add its query plan).
fn render(report: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .without_cause_chain()
        .with_width(120)
        .render_report(&mut out, report)
        .expect("render");
    out
}

fn error_of(s: &mut Session, src: &str) -> String {
    match s.eval_named(src, "test.rlq") {
        Ok(v) => panic!("{src} should fail, got {v}"),
        Err(e) => render(&e),
    }
}

fn session() -> Session {
    let mut s = Session::new();
    s.set(
        "t",
        df!("score" => [0.5f64, -0.2], "dst_layer" => [0i64, 1], "src" => ["a0", "m0"]).unwrap(),
    );
    s
}

fn has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "missing {p:?} in:\n{text}");
    }
}

#[test]
fn syntax_error_says_what_was_expected() {
    let mut s = session();
    let out = error_of(&mut s, "let x = (1 +\n");
    has(
        &out,
        &["syntax error: expected", "test.rlq", "let x = (1 +"],
    );
    let out = error_of(&mut s, "let = 3");
    has(&out, &["expected a name, found `=`", "[test.rlq:1:5]"]);
}

#[test]
fn unknown_variable_suggests_closest() {
    let mut s = session();
    s.eval("let threshold = 0.1").unwrap();
    let out = error_of(&mut s, "threshhold * 2");
    has(
        &out,
        &[
            "unknown variable `threshhold`",
            "not defined",
            "did you mean `threshold`?",
        ],
    );
}

#[test]
fn unknown_verb_suggests_closest() {
    let mut s = session();
    let out = error_of(&mut s, "t | wher score > 0");
    has(
        &out,
        &[
            "unknown verb `wher`",
            "not a verb",
            "did you mean `where`?",
            "verbs: ",
        ],
    );
}

#[test]
fn unknown_keyword_suggests_closest() {
    let mut s = session();
    let out = error_of(&mut s, "t | top 3 bye score");
    has(
        &out,
        &[
            "unknown keyword `bye` for `top`",
            "not a keyword of this verb",
            "did you mean `by`?",
            "usage: <table> | top",
        ],
    );
}

#[test]
fn unknown_column_lists_columns() {
    let mut s = session();
    let out = error_of(&mut s, "t | where scroe > 0.1");
    has(
        &out,
        &[
            "unknown column `scroe`",
            "not a column of the input table",
            "did you mean `score`?",
            "columns: dst_layer, score, src",
            "t | where scroe > 0.1",
        ],
    );
}

#[test]
fn type_errors_name_both_types() {
    let mut s = session();
    let out = error_of(&mut s, "5 | where score > 0");
    has(&out, &["type error: expected table, got number"]);
    let out = error_of(&mut s, "1 + [1]");
    has(&out, &["type error", "number and list"]);
    let out = error_of(&mut s, "join_me = 1");
    has(&out, &["syntax error"]);
    let out = error_of(&mut s, "t | join 5 on src");
    has(&out, &["expected table, got number"]);
}

#[test]
fn error_inside_function_points_into_its_body() {
    let mut s = session();
    s.eval_named("fn bad(x) = x + nope", "lib.rlq").unwrap();
    let out = error_of(&mut s, "bad(1)");
    has(
        &out,
        &[
            "unknown variable `nope`",
            "lib.rlq",
            "fn bad(x) = x + nope",
            "in function `bad`",
        ],
    );
}

#[test]
fn missing_argument_shows_usage() {
    let mut s = session();
    let out = error_of(&mut s, "t | top");
    has(
        &out,
        &[
            "`top` is missing its argument `n`",
            "usage: <table> | top <n:number> [by expr]",
        ],
    );
    let out = error_of(&mut s, "t | group by src");
    has(&out, &["missing its keyword `agg`"]);
}

#[test]
fn io_errors_are_diagnostics() {
    let mut s = session();
    let out = error_of(&mut s, "read \"/definitely/not/here.csv\"");
    has(&out, &["cannot read", "here.csv"]);
    let out = error_of(&mut s, "read \"file.xyz\"");
    has(&out, &["cannot tell the format", ".parquet"]);
}

#[test]
fn polars_errors_become_diagnostics() {
    let mut s = session();
    let out = error_of(&mut s, "t | where src + 1 > 2");
    has(&out, &["table error", "test.rlq"]);
}

#[test]
fn table_errors_name_the_step() {
    let mut s = session();
    let out = error_of(
        &mut s,
        "t | where score > 0 | group by dst_layer agg sum(src) | top 1",
    );
    has(
        &out,
        &[
            "table error",
            "`sum` operation not supported",
            "group by dst_layer agg sum(src)",
            "while computing this",
        ],
    );
    assert!(!out.contains("Resolved plan"), "{out}");
    // the label sits under the failing step only
    assert!(
        out.contains("·                     ──────────────┬──────────────") || out.contains("1:23"),
        "{out}"
    );
}

/// A span past column 65 535 of a line panicked miette's renderer (it pads with `{:width$}`,
/// which Rust limits to u16); a span on a long line is now shown in an excerpt that says which
/// line and columns it is.
#[test]
fn spans_on_very_long_lines_render_as_an_excerpt() {
    let mut s = session();
    let long = "x".repeat(70_000);
    let out = error_of(&mut s, &format!("\"{long}\" + zz"));
    has(
        &out,
        &[
            "unknown variable `zz`",
            "test.rlq, line 1 columns 69946-70007 of 70007",
            "…xxxx",
        ],
    );
    assert!(
        out.len() < 2_000,
        "the excerpt is short: {} bytes",
        out.len()
    );
    // A span that itself covers the long line, a long line before the error, and one after.
    for src in [
        format!("\"{long}\" - 1"),
        format!("let s = \"{long}\"\nzz"),
        format!("zz\nlet s = \"{long}\""),
        format!("[1, 2] + \"{}é\" * 2", "é".repeat(40_000)),
    ] {
        let out = error_of(&mut s, &src);
        assert!(out.contains("error") || out.contains("×"), "{out}");
    }
}
