//! Rendering errors for people: miette's graphical report on stderr, coloured only on a terminal.

use std::io::IsTerminal;

use miette::{GraphicalReportHandler, GraphicalTheme, Report};

use super::exit;

/// The miette code of syntax errors (see `EvalError::from_syntax`).
const SYNTAX_CODE: &str = "rlq::syntax";

/// True when the report is a parse error rather than a failure while running.
pub fn is_syntax_error(report: &Report) -> bool {
    report
        .code()
        .is_some_and(|code| code.to_string() == SYNTAX_CODE)
}

/// 2 for syntax errors, 1 for everything else.
pub fn exit_code(report: &Report) -> u8 {
    if is_syntax_error(report) {
        exit::USAGE
    } else {
        exit::RUNTIME
    }
}

/// The report as text: source line, underline and label, help.
pub fn render(report: &Report, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(theme);
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        // Rendering only fails on a broken formatter; the message alone still helps.
        out = format!("error: {report}\n");
    }
    out
}

/// Prints the report to stderr.
pub fn eprint(report: &Report) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", render(report, color));
}
