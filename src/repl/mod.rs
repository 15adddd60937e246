//! `rlq` with no arguments: the interactive REPL on a terminal, or a statement reader on a pipe.

pub mod continuation;
pub mod helper;
pub mod interactive;
pub mod meta;
pub mod paths;
pub mod piped;
pub mod statements;

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::{diagnostics, interrupt, output};
use crate::Session;

/// Starts the REPL, or reads stdin statement by statement when it is not a terminal. Values
/// print in `format` (`--format`).
pub fn run(mut session: Session, format: output::Format) -> ExitCode {
    interrupt::install(&mut session);
    if std::io::stdin().is_terminal() {
        interactive::run(session, format)
    } else {
        piped::run(session, format)
    }
}

/// Evaluates one chunk of input, printing values and diagnostics; true if it succeeded.
pub(crate) fn eval_and_print(
    session: &mut Session,
    src: &str,
    name: &str,
    format: output::Format,
) -> bool {
    let mut out = output::Printer::stdout(format);
    match session.eval_statements(src, name, &mut |v| out.print(v)) {
        Ok(()) => true,
        Err(report) => {
            diagnostics::eprint(&report);
            false
        }
    }
}
