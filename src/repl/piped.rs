//! stdin is not a terminal: read statements line by line, print results, no prompt or history.
//! Keeps going after errors; the exit status says whether any statement failed (or any line
//! could not be read).

use std::io::BufRead;
use std::process::ExitCode;

use super::meta::{self, MetaOutcome};
use super::statements::{is_meta, Line, Statements};
use crate::cli::{exit, output::Format};
use crate::Session;

pub fn run(mut session: Session, format: Format) -> ExitCode {
    let stdin = std::io::stdin().lock();
    let mut all_ok = true;
    let mut settings = meta::Settings {
        format,
        ..meta::Settings::default()
    };
    for chunk in Statements::new(ByteLines::new(stdin)) {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                eprintln!("rlq: <stdin> {e}");
                all_ok = false;
                continue;
            }
        };
        if is_meta(&chunk.text) {
            match meta::run(&mut session, &mut settings, &chunk.text) {
                MetaOutcome::Quit => break,
                MetaOutcome::Failed => all_ok = false,
                MetaOutcome::Done => {}
            }
            continue;
        }
        // Diagnostics count lines from the statement's first line; the name says which it is.
        let name = if chunk.first_line == 1 {
            "<stdin>".to_string()
        } else {
            format!("<stdin> line {}", chunk.first_line)
        };
        all_ok &= meta::timed(&settings, || {
            super::eval_and_print(&mut session, &chunk.text, &name, settings.format)
        });
    }
    ExitCode::from(if all_ok { exit::OK } else { exit::RUNTIME })
}

/// Lines of a byte stream: a line that is not UTF-8 is an `Err` naming the first bad byte (and
/// reading goes on), where `BufRead::lines` would end the stream there.
pub struct ByteLines<R: BufRead> {
    reader: R,
    failed: bool,
}

impl<R: BufRead> ByteLines<R> {
    pub fn new(reader: R) -> ByteLines<R> {
        ByteLines {
            reader,
            failed: false,
        }
    }
}

impl<R: BufRead> Iterator for ByteLines<R> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.failed {
            return None;
        }
        let mut bytes = Vec::new();
        match self.reader.read_until(b'\n', &mut bytes) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(format!("cannot read stdin: {e}")));
            }
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Some(String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes().get(at).copied().unwrap_or(0);
            format!(
                "is not valid UTF-8 (byte 0x{byte:02x} at column {})",
                at + 1
            )
        }))
    }
}
