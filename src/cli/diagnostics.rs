//! Rendering errors for people: miette's graphical report on stderr, coloured only on a terminal.

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

use super::exit;
use crate::eval::{ErrorCode, EvalError};

/// 2 for syntax errors, 1 for everything else (an interrupted statement too).
pub fn exit_code(error: &EvalError) -> u8 {
    match error.code {
        ErrorCode::Syntax => exit::USAGE,
        _ => exit::RUNTIME,
    }
}

/// The report as text: source line, underline and label, help. The cause chain is left out:
/// an [`EvalError`]'s message already says what its cause said.
pub fn render(error: &dyn Diagnostic, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(theme).without_cause_chain();
    if handler.render_report(&mut out, error).is_err() {
        // Rendering only fails on a broken formatter; the message alone still helps.
        out = format!("error: {error}\n");
    }
    out
}

/// Prints the report to stderr.
pub fn eprint(error: &dyn Diagnostic) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", render(error, color));
}
