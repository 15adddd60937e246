//! The one user-facing error type: a miette diagnostic with a labelled span into its source, a
//! typed [`ErrorCode`], and the layer error it came from, when there was one.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::syntax::{Span, SyntaxError};

/// A piece of source text: the REPL line, a script, an imported file, the prelude.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    /// Relative `import` / `read` / `save` paths in this source resolve against this folder.
    pub dir: Option<PathBuf>,
    named: NamedSource<String>,
}

impl SourceFile {
    pub fn new(name: &str, text: &str, dir: Option<PathBuf>) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
            dir,
            named: NamedSource::new(name, text.to_string()),
        })
    }
}

/// What kind of failure an [`EvalError`] is: its miette code (`rlq::syntax`, …), and what a host
/// branches on (the `rlq` binary's exit status: 2 for [`ErrorCode::Syntax`], else 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Anything not classified below.
    Error,
    /// The text does not parse.
    Syntax,
    /// A value of the wrong type.
    Type,
    /// An unknown variable or function.
    Name,
    /// An unknown verb, or a verb used wrongly.
    Verb,
    /// An unknown, repeated or missing keyword.
    Keyword,
    /// Arguments that do not fit the verb's signature.
    Args,
    /// A missing or wrongly typed column.
    Column,
    /// polars failed computing a table.
    Table,
    /// A malformed inline table literal.
    TableLiteral,
    /// Reading or writing a file.
    Io,
    /// An `import` that fails (missing file, cycle, too deep).
    Import,
    /// A size limit (nesting, file size, …).
    Limit,
    /// Expressions nested too deeply.
    Depth,
    /// Ctrl-C stopped the statement.
    Interrupted,
    /// Loading or running a model.
    Model,
    /// Attribution (EAP, EAP-IG, exact patching).
    Attribution,
    /// Circuit evaluation.
    Circuit,
    /// Statistics and comparisons.
    Analysis,
    /// The study engine (questions, grading).
    Study,
    /// Tuning.
    Tune,
}

impl ErrorCode {
    /// The miette code, as diagnostics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Error => "rlq::error",
            ErrorCode::Syntax => "rlq::syntax",
            ErrorCode::Type => "rlq::type",
            ErrorCode::Name => "rlq::name",
            ErrorCode::Verb => "rlq::verb",
            ErrorCode::Keyword => "rlq::keyword",
            ErrorCode::Args => "rlq::args",
            ErrorCode::Column => "rlq::column",
            ErrorCode::Table => "rlq::table",
            ErrorCode::TableLiteral => "rlq::table_literal",
            ErrorCode::Io => "rlq::io",
            ErrorCode::Import => "rlq::import",
            ErrorCode::Limit => "rlq::limit",
            ErrorCode::Depth => "rlq::depth",
            ErrorCode::Interrupted => "rlq::interrupted",
            ErrorCode::Model => "rlq::model",
            ErrorCode::Attribution => "rlq::attribution",
            ErrorCode::Circuit => "rlq::circuit",
            ErrorCode::Analysis => "rlq::analysis",
            ErrorCode::Study => "rlq::study",
            ErrorCode::Tune => "rlq::tune",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a lower layer (model, attribution, polars, …) an [`EvalError`] was made from,
/// kept whole so a host can inspect it ([`std::error::Error::source`], downcasting).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error in user input (syntax, name, type, table or I/O), with where it happened.
#[derive(Clone)]
pub struct EvalError {
    pub message: String,
    pub span: Option<Span>,
    /// Text under the span; defaults to "here".
    pub label: Option<String>,
    /// Suggestions: closest names, what exists.
    pub help: Option<String>,
    /// Which source `span` points into; filled in on the way out when missing.
    pub source: Option<Arc<SourceFile>>,
    pub code: ErrorCode,
    /// The layer error this one was made from. Its text is already in `message`, so reports
    /// for people leave it out (`cli::diagnostics` renders without the cause chain).
    pub cause: Option<Cause>,
}

pub type EvalResult<T> = Result<T, EvalError>;

impl EvalError {
    pub fn new(message: impl Into<String>) -> EvalError {
        EvalError {
            message: message.into(),
            span: None,
            label: None,
            help: None,
            source: None,
            code: ErrorCode::Error,
            cause: None,
        }
    }
    /// An error made from a lower layer's `cause`: its text as the message, the error itself
    /// kept as the source.
    ///
    /// ```
    /// use rlq::eval::{EvalError, ErrorCode};
    /// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    /// let e = EvalError::caused_by(io).with_code(ErrorCode::Io);
    /// assert_eq!(e.to_string(), "no such file");
    /// let source = std::error::Error::source(&e).unwrap();
    /// assert!(source.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn caused_by(cause: impl std::error::Error + Send + Sync + 'static) -> EvalError {
        EvalError::new(cause.to_string()).with_cause(cause)
    }
    /// A lower layer's error at `span`: its text as the message (what people see is unchanged),
    /// `code`, and the error itself kept as the source, for a host to downcast.
    pub fn from_layer(
        span: Span,
        code: ErrorCode,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> EvalError {
        EvalError::at(span, cause.to_string())
            .with_code(code)
            .with_cause(cause)
    }
    /// Keeps `cause` as this error's source (the message stays as it is).
    pub fn with_cause(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> EvalError {
        self.cause = Some(Arc::new(cause));
        self
    }
    pub fn at(span: Span, message: impl Into<String>) -> EvalError {
        EvalError::new(message).with_span(span)
    }
    /// Sets the span unless one is already set (the innermost span is the most precise).
    pub fn with_span(mut self, span: Span) -> EvalError {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }
    pub fn with_label(mut self, label: impl Into<String>) -> EvalError {
        self.label = Some(label.into());
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> EvalError {
        self.help = Some(help.into());
        self
    }
    pub fn with_code(mut self, code: ErrorCode) -> EvalError {
        self.code = code;
        self
    }
    /// Attaches the source the span refers to, unless one is attached already.
    pub fn in_source(mut self, source: &Arc<SourceFile>) -> EvalError {
        if self.source.is_none() {
            self.source = Some(source.clone());
        }
        self
    }
    /// `expected table, got number`
    pub fn type_mismatch(expected: &str, got: &str, span: Span) -> EvalError {
        EvalError::at(span, format!("type error: expected {expected}, got {got}"))
            .with_label(format!("this is a {got}"))
            .with_code(ErrorCode::Type)
    }
    /// A chain of nested commands (`abs abs abs … 1`) deeper than `limit`.
    pub fn nested_too_deep(span: Span, limit: usize) -> EvalError {
        EvalError::at(
            span,
            format!(
                "commands nested more than {limit} deep: each verb name among the arguments \
                 starts a command inside the one before"
            ),
        )
        .with_label("nested too deeply")
        .with_help("give the inner results names with `let`, or put them in parentheses")
        .with_code(ErrorCode::Depth)
    }
    pub fn from_syntax(e: SyntaxError, source: &Arc<SourceFile>) -> EvalError {
        EvalError {
            message: e.message,
            span: Some(e.span),
            label: Some(e.label),
            help: e.help,
            source: Some(source.clone()),
            code: ErrorCode::Syntax,
            cause: None,
        }
    }
    /// A polars error, without the query plan polars appends (the error itself, plan and all,
    /// is kept as the source).
    pub fn polars(e: polars::prelude::PolarsError, span: Span) -> EvalError {
        let text = e.to_string();
        let text = text
            .split("\n\nResolved plan")
            .next()
            .unwrap_or(&text)
            .trim_end();
        EvalError::at(span, format!("table error: {text}"))
            .with_label("while computing this")
            .with_code(ErrorCode::Table)
            .with_cause(e)
    }
    /// The report a person sees; a span on a very long line is re-anchored to an excerpt of
    /// it first ([`EvalError::excerpted`]).
    pub fn into_report(self) -> miette::Report {
        miette::Report::new(self.excerpted())
    }

    /// When the span's line is longer than [`MAX_SHOWN_LINE`] bytes, points into a window of
    /// that line instead (the source is renamed to say which line and columns it shows). Long
    /// lines are unreadable in a terminal, and miette pads with `{:width$}`, which panics past
    /// column 65 535.
    pub fn excerpted(mut self) -> EvalError {
        let (Some(span), Some(source)) = (self.span, self.source.clone()) else {
            return self;
        };
        let text = source.text.as_str();
        let start = floor_char(text, span.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        if line_end - line_start <= MAX_SHOWN_LINE {
            return self;
        }
        // The span, cut to its first line and to a readable length.
        let end = floor_char(
            text,
            span.end
                .clamp(start, line_end)
                .min(start + MAX_SHOWN_LINE / 2),
        );
        let from = floor_char(text, start.saturating_sub(EXCERPT_CONTEXT).max(line_start));
        let to = ceil_char(text, (end + EXCERPT_CONTEXT).min(line_end));
        let lead = if from > line_start { "…" } else { "" };
        let trail = if to < line_end { "…" } else { "" };
        let excerpt = format!("{lead}{}{trail}", &text[from..to]);
        let line_no = text[..line_start].matches('\n').count() + 1;
        let column = |at: usize| text[line_start..at].chars().count() + 1;
        let name = format!(
            "{}, line {line_no} columns {}-{} of {}",
            source.name,
            column(from),
            column(to) - 1,
            column(line_end) - 1
        );
        let shift = |at: usize| lead.len() + (at - from);
        self.span = Some(Span::new(shift(start), shift(end)));
        self.source = Some(SourceFile::new(&name, &excerpt, source.dir.clone()));
        self
    }
}

/// Longest line a diagnostic shows whole (bytes).
pub const MAX_SHOWN_LINE: usize = 400;
/// Bytes shown on each side of the span in an excerpt of a long line.
const EXCERPT_CONTEXT: usize = 60;

/// The char boundary at or before `at`.
fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The char boundary at or after `at` (at most the end).
fn ceil_char(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// As a `miette::Report` prints: the rendered diagnostic, so `unwrap()` on a failed `eval`
/// shows the message, the source line and the help (`{:#?}` gives the fields).
impl fmt::Debug for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            // miette's handlers print `{:#?}` of the diagnostic itself: fields, never a Report
            // (which would come back here).
            return f
                .debug_struct("EvalError")
                .field("message", &self.message)
                .field("code", &self.code)
                .field("span", &self.span)
                .field("label", &self.label)
                .field("help", &self.help)
                .field("source", &self.source.as_ref().map(|s| &s.name))
                .field("cause", &self.cause)
                .finish();
        }
        fmt::Debug::fmt(&miette::Report::new(self.clone()), f)
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl Diagnostic for EvalError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| &s.named as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (span, source) = (self.span?, self.source.as_ref()?);
        let len = source.text.len();
        let start = span.start.min(len);
        let end = span.end.clamp(start, len);
        let label = self.label.clone().unwrap_or_else(|| "here".to_string());
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(label),
            start,
            end - start,
        ))))
    }
}

/// Closest names to `name` among `candidates` by edit distance (at most 3, and at most a third
/// of the name), best first.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let len = name.chars().count();
    // One- and two-letter names are too short for a typo to be recognisable.
    let limit = if len < 3 { 0 } else { (len / 3).clamp(1, 3) };
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= limit || (c.starts_with(name) && !name.is_empty()))
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().map(|(_, c)| c).take(3).collect()
}

/// "did you mean `x`? known names: a, b, c" for an unknown `name`.
pub fn suggestion(name: &str, kind: &str, known: &[String]) -> String {
    suggestion_among(name, kind, known, known)
}

/// Like [`suggestion`], suggesting from `candidates` but listing only `known`.
pub fn suggestion_among(name: &str, kind: &str, candidates: &[String], known: &[String]) -> String {
    let near = closest(name, candidates.iter().map(|s| s.as_str()));
    let mut list: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
    list.sort();
    list.dedup();
    let shown = if list.len() > 40 {
        format!("{}, … ({} in all)", list[..40].join(", "), list.len())
    } else {
        list.join(", ")
    };
    let listing = if list.is_empty() {
        format!("there are no {kind}s")
    } else {
        format!("{kind}s: {shown}")
    };
    match near.first() {
        Some(best) => format!("did you mean `{best}`? {listing}"),
        None => listing,
    }
}

/// Edit distance over chars, counting a swap of neighbours as one edit (optimal string
/// alignment), so `scroe` is one edit from `score`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}
