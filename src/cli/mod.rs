//! `rlq run`, `rlq -e`, `rlq check`: the command-line front-end. No logic of its own beyond
//! reading files, binding `--set` variables and printing what the session returns.

pub mod args;
pub mod bindings;
pub mod diagnostics;
pub mod interrupt;
pub mod output;

use std::path::Path;
use std::process::ExitCode;

use crate::Session;
use args::{Cli, Command};
use output::Format;

/// Exit statuses: 0 success, 1 runtime error, 2 syntax or usage error.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const USAGE: u8 = 2;
    /// A second Ctrl-C: the conventional 128 + SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs the parsed command line; with no command and no `-e`, starts the REPL.
pub fn run(cli: Cli) -> ExitCode {
    let mut session = Session::new();
    for b in &cli.set {
        session.set(&b.name, b.value.clone());
    }
    let code = match (&cli.command, &cli.eval) {
        (Some(Command::Run { file }), _) => run_file(&mut session, file, cli.format),
        (Some(Command::Check { file }), _) => check_file(&mut session, file),
        (None, Some(src)) => run_source(&mut session, src, "<-e>", cli.format),
        (None, None) => return crate::repl::run(session, cli.format),
    };
    ExitCode::from(code)
}

fn run_file(session: &mut Session, file: &Path, format: Format) -> u8 {
    let Some(src) = read_script(file) else {
        return exit::USAGE;
    };
    run_source(session, &src, &file.to_string_lossy(), format)
}

/// Evaluates statement by statement, printing each bare expression's value as it comes.
fn run_source(session: &mut Session, src: &str, name: &str, format: Format) -> u8 {
    interrupt::install(session);
    let mut out = output::Printer::stdout(format);
    match session.eval_statements(src, name, &mut |v| out.print(v)) {
        Ok(()) => exit::OK,
        Err(report) => {
            diagnostics::eprint(&report);
            diagnostics::exit_code(&report)
        }
    }
}

fn check_file(session: &mut Session, file: &Path) -> u8 {
    let Some(src) = read_script(file) else {
        return exit::USAGE;
    };
    match session.check(&src, &file.to_string_lossy()) {
        Ok(()) => {
            println!("{}: ok", file.display());
            exit::OK
        }
        Err(report) => {
            diagnostics::eprint(&report);
            diagnostics::exit_code(&report)
        }
    }
}

/// A script named on the command line: a regular file, read whole up to the same cap as an
/// `import` (a FIFO or `/dev/zero` named by mistake is refused, not read for ever).
fn read_script(file: &Path) -> Option<String> {
    match crate::files::read_text_capped(file, crate::files::MAX_SCRIPT_BYTES) {
        Ok(src) => Some(src),
        Err(e) => {
            eprintln!("rlq: cannot read {}: {e}", file.display());
            None
        }
    }
}
