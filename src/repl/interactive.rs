//! The interactive REPL on a terminal.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor, EventHandler, KeyCode, KeyEvent, Modifiers};

use super::helper::{ContinueOnEnter, ReplHelper};
use super::meta::{self, MetaOutcome, Settings};
use super::statements::is_meta;
use super::{continuation, eval_and_print};
use crate::cli::output::Format;
use crate::Session;

const PROMPT: &str = "rlq> ";

pub fn run(session: Session, format: Format) -> ExitCode {
    let session = Rc::new(RefCell::new(session));
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ReplHelper, FileHistory> = match Editor::with_config(config) {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("rlq: cannot start the line editor: {e}");
            return ExitCode::FAILURE;
        }
    };
    editor.set_helper(Some(ReplHelper::new(session.clone())));
    editor.bind_sequence(
        KeyEvent(KeyCode::Enter, Modifiers::NONE),
        EventHandler::Conditional(Box::new(ContinueOnEnter)),
    );
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(path);
    }
    println!(
        "rlq {} — :help for help, Ctrl-D to quit",
        env!("CARGO_PKG_VERSION")
    );
    let mut settings = Settings {
        format,
        ..Settings::default()
    };
    loop {
        let text = match editor.readline(PROMPT) {
            Ok(text) => text,
            // Ctrl-C at the prompt cancels the line being typed.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("rlq: {e}");
                return ExitCode::FAILURE;
            }
        };
        let src = continuation::strip(&text);
        if src.trim().is_empty() {
            continue;
        }
        // History keeps the markers so a recalled statement looks as it was typed.
        let _ = editor.add_history_entry(text.as_str());
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        let mut session = session.borrow_mut();
        if is_meta(&src) {
            if meta::run(&mut session, &mut settings, &src) == MetaOutcome::Quit {
                break;
            }
            continue;
        }
        meta::timed(&settings, || {
            eval_and_print(&mut session, &src, "<repl>", settings.format)
        });
    }
    ExitCode::SUCCESS
}

/// `$XDG_DATA_HOME/rlq/history` (or the platform's data dir), created if missing.
fn history_path() -> Option<PathBuf> {
    let dir = dirs::data_dir()?.join("rlq");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}
