//! The pre-scanner: makes newlines unambiguous before pest sees the text.
//!
//! It blanks `#` comments and replaces each newline that ends a statement with `;`, byte for byte,
//! so every span into the scanned text is also a span into the original. A newline continues the
//! statement when brackets are open, when the line ends with `|`, `,` or `=` (no statement can end
//! there), or when the next line starts with `|`.
//!
//! A leading UTF-8 byte-order mark (Windows editors write one) is blanked too, so a script saved
//! with one parses like the same script without it.

/// What the scan found.
pub(crate) struct Scanned {
    /// Same length as the input; comments blanked, statement-ending newlines turned into `;`.
    pub text: String,
    /// Open `(`/`[` left at the end.
    pub open_brackets: usize,
    /// The text ends inside a string literal.
    pub open_string: bool,
    /// The last significant character is `|`, `,` or `=`.
    pub trailing_pipe: bool,
    /// Byte offset where brackets nest deeper than [`MAX_DEPTH`], if they do.
    pub too_deep: Option<usize>,
}

/// Deeper nesting than this is refused (the parser and evaluator recurse on it).
pub(crate) const MAX_DEPTH: usize = 64;

/// The UTF-8 byte-order mark, as the bytes it is in a file.
const BOM: &str = "\u{feff}";

pub(crate) fn scan(src: &str) -> Scanned {
    let bytes = src.as_bytes();
    let mut out = bytes.to_vec();
    if src.starts_with(BOM) {
        out[..BOM.len()].fill(b' ');
    }
    // Newlines outside strings and comments, with the bracket depth at that point.
    let mut newlines: Vec<(usize, usize)> = Vec::new();
    let mut depth: usize = 0;
    let mut too_deep = None;
    let mut i = 0;
    let mut in_string: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = in_string {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' | b'\'' => in_string = Some(b),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH && too_deep.is_none() {
                    too_deep = Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => newlines.push((i, depth)),
            _ => {}
        }
        i += 1;
    }
    let open_string = in_string.is_some();
    let significant = |c: u8| !matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    // prev_sig[i]: last significant byte before i; next_sig[i]: first significant byte after i.
    let n = out.len();
    let mut prev_sig = vec![0u8; n];
    let mut last = 0u8;
    for (k, &c) in out.iter().enumerate() {
        prev_sig[k] = last;
        if significant(c) {
            last = c;
        }
    }
    let continues = |c: u8| matches!(c, b'|' | b',' | b'=');
    let trailing_pipe = continues(last);
    let mut next_sig = vec![0u8; n];
    let mut next = 0u8;
    for k in (0..n).rev() {
        next_sig[k] = next;
        if significant(out[k]) {
            next = out[k];
        }
    }
    for (pos, d) in newlines {
        if d == 0 && !continues(prev_sig[pos]) && next_sig[pos] != b'|' {
            out[pos] = b';';
        }
    }
    // Only ASCII bytes, whole comment runs and the whole BOM were replaced by ASCII, so this
    // stays UTF-8.
    let text = String::from_utf8(out).unwrap_or_else(|_| src.to_string());
    Scanned {
        text,
        open_brackets: depth,
        open_string,
        trailing_pipe,
        too_deep,
    }
}

/// True when `src` cannot be a whole statement yet: an open bracket or string, or a trailing
/// `|`, `,` or `=`.
/// The REPL reads another line while this holds.
pub fn is_incomplete(src: &str) -> bool {
    let s = scan(src);
    s.open_brackets > 0 || s.open_string || s.trailing_pipe
}

/// [`is_incomplete`] for text that arrives line by line: each line is scanned once, so joining
/// the lines of a long statement costs time linear in its length (re-scanning the whole buffer
/// on every line made a stray `"` before megabytes of input quadratic).
///
/// ```
/// use rlq::syntax::Continuation;
/// let mut c = Continuation::default();
/// c.push_line("t | where (a > 1");
/// assert!(c.is_incomplete());
/// c.push_line(") |");
/// assert!(c.is_incomplete());
/// c.push_line("top 1 # done");
/// assert!(!c.is_incomplete());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Continuation {
    depth: usize,
    in_string: Option<u8>,
    /// The previous byte was a `\` inside a string.
    escaped: bool,
    /// The last byte that is neither whitespace nor inside a comment.
    last: u8,
    /// No line pushed yet (a BOM is skipped only at the very start).
    started: bool,
}

impl Continuation {
    /// Appends one line (a newline is assumed between it and the line before).
    pub fn push_line(&mut self, line: &str) {
        let line = if self.started {
            // The newline that joins it to the previous line; inside a string an escape eats it.
            self.escaped = false;
            line
        } else {
            self.started = true;
            line.strip_prefix(BOM).unwrap_or(line)
        };
        for &b in line.as_bytes() {
            if let Some(q) = self.in_string {
                self.last = b;
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == q {
                    self.in_string = None;
                }
                continue;
            }
            match b {
                b'#' => break, // a comment runs to the end of the line
                b'"' | b'\'' => self.in_string = Some(b),
                b'(' | b'[' | b'{' => self.depth += 1,
                b')' | b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
            if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                self.last = b;
            }
        }
    }

    /// Same answer as [`is_incomplete`] on the lines pushed so far, joined by newlines.
    pub fn is_incomplete(&self) -> bool {
        self.depth > 0 || self.in_string.is_some() || matches!(self.last, b'|' | b',' | b'=')
    }
}
