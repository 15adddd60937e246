//! `rlq run`, `rlq -e`, `rlq check`, `rlq help`: the command-line front-end, and what the REPL
//! shares with it (printing values and diagnostics, Ctrl-C, progress bars, exit statuses). No
//! logic of its own beyond reading files, binding `--set` variables and printing what the
//! session returns. The REPL (`crate::repl`) uses this module, never the other way: the binary's
//! `main` starts one or the other.

pub mod args;
pub mod bindings;
pub mod diagnostics;
pub mod display;
pub mod interrupt;
pub mod output;
pub mod progress;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

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

/// The session the command line asks for: progress bars and messages on stderr, `--set`
/// variables bound, `--rows` applied.
pub fn session(cli: &Cli) -> Session {
    display::apply(cli.rows);
    let mut session = Session::with_reporter(Arc::new(progress::Terminal::new()));
    for b in &cli.set {
        session.set(&b.name, b.value.clone());
    }
    session
}

/// Runs the parsed command line's command or `-e` sources; `None` when there is neither (the
/// REPL's turn: `main` starts it).
pub fn run(cli: &Cli, session: &mut Session) -> Option<ExitCode> {
    let code = match &cli.command {
        Some(Command::Run { file }) => run_file(session, file, cli.format),
        Some(Command::Check { file }) => check_file(session, file),
        Some(Command::Help { verb }) => help(session, verb.as_deref()),
        None if !cli.eval.is_empty() => run_sources(session, &cli.eval, cli.format),
        None => return None,
    };
    Some(ExitCode::from(code))
}

/// `-e a -e b`: each source in turn, in one session; the first failure stops the rest.
fn run_sources(session: &mut Session, sources: &[String], format: Format) -> u8 {
    for src in sources {
        let code = run_source(session, src, "<-e>", format);
        if code != exit::OK {
            return code;
        }
    }
    exit::OK
}

/// `rlq help [verb]`: the REPL's `help`, from the shell.
fn help(session: &Session, verb: Option<&str>) -> u8 {
    match verb.map(|v| session.registry().get(v).is_some()) {
        Some(false) => {
            eprint!("{}", session.help(verb));
            exit::USAGE
        }
        _ => {
            print!("{}", session.help(verb));
            exit::OK
        }
    }
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
        Err(error) => {
            diagnostics::eprint(&error);
            diagnostics::exit_code(&error)
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
        Err(error) => {
            diagnostics::eprint(&error);
            diagnostics::exit_code(&error)
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
