//! The pre-scanner: makes newlines unambiguous before pest sees the text.
//!
//! It blanks `#` comments and replaces each newline that ends a statement with `;`, byte for byte,
//! so every span into the scanned text is also a span into the original. A newline continues the
//! statement when brackets are open, when the line ends with `|`, `,` or `=` (no statement can end
//! there), or when the next line starts with `|`.

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

pub(crate) fn scan(src: &str) -> Scanned {
    let bytes = src.as_bytes();
    let mut out = bytes.to_vec();
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
            b'(' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH && too_deep.is_none() {
                    too_deep = Some(i);
                }
            }
            b')' | b']' => depth = depth.saturating_sub(1),
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
    // Only ASCII bytes and whole comment runs were replaced by ASCII, so this stays UTF-8.
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
