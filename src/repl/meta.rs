//! Meta-commands: `:help [verb]`, `:vars`, `:time on|off`, `:load file.rlq`, `:quit`.

use std::time::Instant;

use crate::cli::output::Format;
use crate::Session;

/// REPL settings the meta-commands change.
#[derive(Debug, Default)]
pub struct Settings {
    /// Print how long each statement took.
    pub time: bool,
    /// How values print (`--format`).
    pub format: Format,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MetaOutcome {
    Done,
    Failed,
    Quit,
}

const USAGE: &str = "meta-commands:
  :help [verb]     all verbs, or one verb's usage and examples
  :vars            variables and their types
  :time on|off     print elapsed time after each statement
  :load file.rlq   run a script in this session
  :quit            leave (Ctrl-D does too)";

/// Runs one meta-command line (starting with `:`).
pub fn run(session: &mut Session, settings: &mut Settings, line: &str) -> MetaOutcome {
    let line = line.trim().trim_start_matches(':');
    let (cmd, arg) = match line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (line, ""),
    };
    match (cmd, arg) {
        ("help" | "h" | "?", "") => {
            println!("{USAGE}\n");
            print!("{}", session.help(None));
        }
        ("help" | "h" | "?", verb) => print!("{}", session.help(Some(verb))),
        ("vars" | "v", _) => print_vars(session),
        ("time", "on") => settings.time = true,
        ("time", "off") => settings.time = false,
        ("time", "") => println!("time is {}", if settings.time { "on" } else { "off" }),
        ("load" | "l", path) if !path.is_empty() => return load(session, settings, path),
        ("quit" | "q" | "exit", _) => return MetaOutcome::Quit,
        _ => {
            eprintln!("unknown meta-command `:{line}`\n{USAGE}");
            return MetaOutcome::Failed;
        }
    }
    MetaOutcome::Done
}

fn print_vars(session: &Session) {
    let vars = session.vars();
    if vars.is_empty() {
        println!("no variables");
    }
    let width = vars.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, type_name) in vars {
        println!("{name:width$}  {type_name}");
    }
}

/// `:load file.rlq`: runs the script (printing its values); relative paths in it resolve
/// against its folder.
fn load(session: &mut Session, settings: &Settings, path: &str) -> MetaOutcome {
    let path = path.trim_matches(['"', '\'']);
    // Capped and regular files only, as `import` and `rlq run` read scripts.
    let src = match crate::files::read_text_capped(
        std::path::Path::new(path),
        crate::files::MAX_SCRIPT_BYTES,
    ) {
        Ok(src) => src,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return MetaOutcome::Failed;
        }
    };
    if timed(settings, || {
        super::eval_and_print(session, &src, path, settings.format)
    }) {
        MetaOutcome::Done
    } else {
        MetaOutcome::Failed
    }
}

/// Runs `f`, then prints the elapsed time if `:time on`.
pub fn timed<T>(settings: &Settings, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    if settings.time {
        println!("time: {:.3?}", start.elapsed());
    }
    out
}
