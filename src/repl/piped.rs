//! stdin is not a terminal: read statements line by line, print results, no prompt or history.
//! Keeps going after errors; the exit status says whether any statement failed.

use std::io::BufRead;
use std::process::ExitCode;

use super::meta::{self, MetaOutcome};
use super::statements::{is_meta, Statements};
use crate::cli::exit;
use crate::Session;

pub fn run(mut session: Session) -> ExitCode {
    let lines = std::io::stdin().lock().lines().map_while(Result::ok);
    let mut all_ok = true;
    let mut settings = meta::Settings::default();
    for chunk in Statements::new(lines) {
        if is_meta(&chunk) {
            match meta::run(&mut session, &mut settings, &chunk) {
                MetaOutcome::Quit => break,
                MetaOutcome::Failed => all_ok = false,
                MetaOutcome::Done => {}
            }
            continue;
        }
        all_ok &= meta::timed(&settings, || {
            super::eval_and_print(&mut session, &chunk, "<stdin>")
        });
    }
    ExitCode::from(if all_ok { exit::OK } else { exit::RUNTIME })
}
