//! Joins input lines into whole statements, with the parser's continuation rules: open brackets
//! or strings, a trailing `|`, `,` or `=`, or a next line that starts with `|`.
//!
//! Each line is scanned once ([`Continuation`]), so a statement that never closes (a stray `"`
//! before megabytes of input) costs linear time, and it is cut off at [`MAX_STATEMENT_BYTES`].

use std::iter::Peekable;

use crate::syntax::Continuation;

/// The longest statement read from a stream. Longer means an unclosed string or bracket, almost
/// always; the rest of the input cannot be read as statements then.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// One line of input: its text, or why it has none (e.g. it is not UTF-8).
pub type Line = Result<String, String>;

/// A complete statement (possibly several, `;`-separated) and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    pub first_line: usize,
}

/// A line that could not be read, or a statement that grew past [`MAX_STATEMENT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Yields chunks of source that are complete statements. Blank lines between statements are
/// skipped. A bad line is reported in order (and the statement it was part of is dropped); a
/// statement over [`MAX_STATEMENT_BYTES`] is reported and ends the stream.
///
/// ```
/// use rlq::repl::statements::Statements;
/// let lines = ["1 + 2", "", "[1,", "2]", "t", "| top 1"].map(|l| Ok(l.to_string()));
/// let got: Vec<String> = Statements::new(lines.into_iter()).map(|c| c.unwrap().text).collect();
/// assert_eq!(got, ["1 + 2", "[1,\n2]", "t\n| top 1"]);
/// ```
pub struct Statements<I: Iterator<Item = Line>> {
    lines: Peekable<I>,
    /// Lines consumed so far.
    line_no: usize,
    /// Set after a statement ran past the limit: nothing more is read.
    done: bool,
}

impl<I: Iterator<Item = Line>> Statements<I> {
    pub fn new(lines: I) -> Statements<I> {
        Statements {
            lines: lines.peekable(),
            line_no: 0,
            done: false,
        }
    }
}

/// A line that starts a meta-command (`:vars`); these are never joined with others.
pub fn is_meta(line: &str) -> bool {
    line.trim_start().starts_with(':')
}

impl<I: Iterator<Item = Line>> Iterator for Statements<I> {
    type Item = Result<Chunk, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = String::new();
        let mut first_line = self.line_no + 1;
        let mut scan = Continuation::default();
        loop {
            let Some(line) = self.lines.next() else {
                return (!buf.trim().is_empty()).then_some(Ok(Chunk {
                    text: buf,
                    first_line,
                }));
            };
            self.line_no += 1;
            let line = match line {
                Ok(line) => line,
                Err(message) => {
                    let message = if buf.is_empty() {
                        format!("{message}; the line is skipped")
                    } else {
                        format!(
                            "{message}; the statement from line {first_line} to here is skipped"
                        )
                    };
                    return Some(Err(ChunkError {
                        line: self.line_no,
                        message,
                    }));
                }
            };
            if buf.is_empty() {
                if line.trim().is_empty() {
                    first_line = self.line_no + 1;
                    continue;
                }
                if is_meta(&line) {
                    return Some(Ok(Chunk {
                        text: line,
                        first_line,
                    }));
                }
            } else {
                buf.push('\n');
            }
            buf.push_str(&line);
            scan.push_line(&line);
            if scan.is_incomplete() {
                if buf.len() > MAX_STATEMENT_BYTES {
                    self.done = true;
                    return Some(Err(ChunkError {
                        line: first_line,
                        message: format!(
                            "the statement starting here is still open after {} MiB (an \
                             unclosed string or bracket?); the rest of the input is not read",
                            MAX_STATEMENT_BYTES >> 20
                        ),
                    }));
                }
                continue;
            }
            // Looking ahead blocks until the next line arrives (or stdin closes).
            let next_continues = self
                .lines
                .peek()
                .is_some_and(|next| next.as_ref().is_ok_and(|n| n.trim_start().starts_with('|')));
            if !next_continues {
                return Some(Ok(Chunk {
                    text: buf,
                    first_line,
                }));
            }
        }
    }
}
