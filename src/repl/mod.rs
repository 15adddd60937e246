//! `rlq` with no arguments: the interactive REPL on a terminal, or a statement reader on a pipe.
//! It prints through `crate::cli`'s pieces (values, diagnostics, Ctrl-C); `cli` never uses it.

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

/// The variable holding the last printed value, as in Python's REPL: `top 20` then `_ | plot …`.
pub const LAST: &str = "_";

/// Evaluates one chunk of input, printing values and diagnostics; true if it succeeded. The last
/// value printed (even before an error) becomes `_`.
pub(crate) fn eval_and_print(
    session: &mut Session,
    src: &str,
    name: &str,
    format: output::Format,
) -> bool {
    let mut out = output::Printer::stdout(format);
    let mut last = None;
    let result = session.eval_statements(src, name, &mut |v| {
        out.print(v);
        last = Some(v.clone());
    });
    if let Some(v) = last {
        session.set(LAST, v);
    }
    match result {
        Ok(()) => true,
        Err(error) => {
            diagnostics::eprint(&error);
            false
        }
    }
}
