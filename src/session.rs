//! `rlq::Session`: the embedding API. Everything a front-end (REPL, `rlq run`, `rlq check`) or a
//! Rust program needs: evaluate source, move values in and out, register verbs, complete, help.
//! Errors are [`EvalError`]s (a `miette::Diagnostic`, with a typed [`eval::ErrorCode`]);
//! progress and messages go to the session's [`Reporter`], never to the terminal.
//!
//! ```
//! let mut s = rlq::Session::new();
//! s.eval("let x = 20 + 1").unwrap();
//! assert_eq!(s.eval("x * 2").unwrap().as_number(), Some(42.0));
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::eval::{self, Args, EvalContext, EvalError, Registry, Signature, Value, Verb};
use crate::report::{Collect, Event, Reporter};

const PRELUDE: &str = include_str!("../stdlib/prelude.rlq");

/// An rlq session: variables, verbs, and where relative paths resolve.
pub struct Session {
    ctx: EvalContext,
    interrupt: Arc<AtomicBool>,
    /// The messages of a session made without a reporter of the host's ([`Session::messages`]).
    messages: Option<Arc<Collect>>,
}

impl Default for Session {
    /// Same as [`Session::new`].
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    /// A session with every built-in verb and the prelude loaded.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// assert!(s.verb_names().contains(&"where".to_string()));
    /// assert_eq!(s.eval("pct_change(50, 75)").unwrap().as_number(), Some(50.0));
    /// ```
    /// Progress goes nowhere; warnings and info messages are kept for [`Session::messages`].
    pub fn new() -> Session {
        let messages = Arc::new(Collect::messages());
        let mut s = Session::with_reporter(messages.clone());
        s.messages = Some(messages);
        s
    }

    /// A session that reports progress and messages to `reporter` (the `rlq` binary's draws
    /// progress bars on stderr).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rlq::report::Collect;
    /// let log = Arc::new(Collect::all());
    /// let mut s = rlq::Session::with_reporter(log.clone());
    /// s.eval("1 + 1").unwrap();
    /// assert!(log.events().is_empty(), "arithmetic reports nothing");
    /// ```
    pub fn with_reporter(reporter: Arc<dyn Reporter>) -> Session {
        let mut ctx = EvalContext::new(eval::builtin_registry());
        let interrupt = Arc::new(AtomicBool::new(false));
        ctx.set_interrupt(interrupt.clone());
        ctx.set_reporter(reporter);
        if let Err(e) = ctx.eval_source(PRELUDE, "stdlib/prelude.rlq", None, &mut |_| {}) {
            // The prelude is ours and tested; never fail a session over it.
            ctx.warn(format!("rlq: prelude failed: {e}"));
        }
        Session {
            ctx,
            interrupt,
            messages: None,
        }
    }

    /// Sends progress and messages to `reporter` from now on ([`Session::messages`] then keeps
    /// nothing new).
    pub fn set_reporter(&mut self, reporter: Arc<dyn Reporter>) {
        self.messages = None;
        self.ctx.set_reporter(reporter);
    }

    /// The warnings and info messages reported so far, emptying the list, for a session made
    /// with [`Session::new`] (empty when the host gave its own reporter).
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// s.eval("1").unwrap();
    /// assert!(s.messages().is_empty());
    /// ```
    pub fn messages(&self) -> Vec<Event> {
        self.messages.as_ref().map(|m| m.take()).unwrap_or_default()
    }

    /// Evaluates source; returns the value of the last statement (`Null` for `let`/`fn`/`import`).
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// assert_eq!(s.eval("let a = 2; a + 3").unwrap().as_number(), Some(5.0));
    /// let err = s.eval("a +").unwrap_err();
    /// assert!(err.to_string().contains("syntax error"));
    /// assert_eq!(err.code, rlq::eval::ErrorCode::Syntax);
    /// ```
    pub fn eval(&mut self, src: &str) -> Result<Value, EvalError> {
        self.eval_named(src, "<input>")
    }

    /// Like [`Session::eval`], with a name for diagnostics (e.g. the script path). Relative
    /// `import` / `read` / `save` paths resolve against that file's folder.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// let err = s.eval_named("nope", "script.rlq").unwrap_err();
    /// assert!(format!("{err:?}").contains("unknown variable"));
    /// ```
    pub fn eval_named(&mut self, src: &str, name: &str) -> Result<Value, EvalError> {
        self.eval_inner(src, name, &mut |_| {})
    }

    /// Evaluates statement by statement, calling `on_value` with each bare-expression statement's
    /// value (what `rlq run` prints). Stops at the first error.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// let mut seen = Vec::new();
    /// s.eval_statements("1\nlet x = 2\nx + 1", "run.rlq", &mut |v| seen.push(v.to_string())).unwrap();
    /// assert_eq!(seen, ["1", "3"]);
    /// ```
    pub fn eval_statements(
        &mut self,
        src: &str,
        name: &str,
        on_value: &mut dyn FnMut(&Value),
    ) -> Result<(), EvalError> {
        self.eval_inner(src, name, on_value).map(|_| ())
    }

    fn eval_inner(
        &mut self,
        src: &str,
        name: &str,
        on_value: &mut dyn FnMut(&Value),
    ) -> Result<Value, EvalError> {
        self.interrupt.store(false, Ordering::Relaxed);
        let dir = self.ctx.dir_for_source_name(name);
        self.ctx
            .eval_source(src, name, dir, on_value)
            .map_err(EvalError::excerpted)
    }

    /// Parses and resolves without evaluating: verbs and keywords exist, variables are defined
    /// before use. Defines nothing.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// assert!(s.check("let t = read \"x.csv\"\nt | where a > 1", "x.rlq").is_ok());
    /// assert!(s.check("t | wher a > 1", "x.rlq").is_err());
    /// ```
    pub fn check(&mut self, src: &str, name: &str) -> Result<(), EvalError> {
        self.ctx
            .check_source(src, name)
            .map_err(EvalError::excerpted)
    }

    /// Sets a variable.
    ///
    /// ```
    /// use polars::prelude::*;
    /// let mut s = rlq::Session::new();
    /// let df = df!("a" => [1i64, 2, 3]).unwrap();
    /// s.set("t", df.clone());
    /// assert!(s.get("t").unwrap().as_table().unwrap().equals(&df));
    /// s.set("k", 2.0);
    /// assert_eq!(s.eval("t | where a >= k | count").unwrap().as_number(), Some(2.0));
    /// ```
    pub fn set(&mut self, name: &str, v: impl Into<Value>) {
        self.ctx.set_global(name, v.into());
    }

    /// A variable's value.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// s.eval("let name = \"rlq\"").unwrap();
    /// assert_eq!(s.get("name").unwrap().as_str(), Some("rlq"));
    /// assert!(s.get("missing").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<Value> {
        self.ctx.lookup(name).cloned()
    }

    /// Registers a host-defined verb from a signature and a function. The verb is callable as
    /// `name arg…`, `name(arg, …)` and `x | name`, and shows in `help` and completion.
    ///
    /// ```
    /// use rlq::eval::{Signature, Type, Value};
    /// let mut s = rlq::Session::new();
    /// s.register_fn(
    ///     "double",
    ///     Signature::new("double", "twice a number").piped("x", Type::Number, "a number"),
    ///     |_ctx, args| Ok(Value::Number(args.real("x")? * 2.0)),
    /// );
    /// assert_eq!(s.eval("double(21)").unwrap().as_number(), Some(42.0));
    /// assert_eq!(s.eval("20 | double").unwrap().as_number(), Some(40.0));
    /// ```
    pub fn register_fn(
        &mut self,
        name: &str,
        signature: Signature,
        f: impl Fn(&mut EvalContext, Args) -> Result<Value, EvalError> + Send + Sync + 'static,
    ) {
        let signature = Signature {
            name: name.to_string(),
            ..signature
        };
        self.ctx.registry_mut().register_fn(signature, f);
    }

    /// The one-line form: a function of positional values, callable as `name(a, b)`, `name a, b`
    /// or `x | name`. Returned `Err` strings become diagnostics pointing at the call.
    ///
    /// ```
    /// use rlq::eval::Value;
    /// let mut s = rlq::Session::new();
    /// s.register_simple_fn("double", "twice a number", |args| match args {
    ///     [Value::Number(x)] => Ok(Value::Number(2.0 * x)),
    ///     _ => Err("double takes one number".into()),
    /// });
    /// assert_eq!(s.eval("double(21)").unwrap().as_number(), Some(42.0));
    /// assert!(s.eval("double(\"x\")").is_err());
    /// ```
    pub fn register_simple_fn(
        &mut self,
        name: &str,
        description: &str,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        let signature = Signature::new(name, description)
            .category("host")
            .positional(eval::Param {
                piped: true,
                optional: true,
                many: true,
                ..eval::Param::new("values", eval::Shape::Value(eval::Type::Any), "arguments")
            });
        self.ctx
            .registry_mut()
            .register_fn(signature, move |_ctx, args| {
                f(&args.positional).map_err(|msg| EvalError::at(args.span, msg))
            });
    }

    /// Registers a verb type (see [`Verb`]).
    pub fn register_verb(&mut self, verb: Box<dyn Verb>) {
        self.ctx.registry_mut().register(verb);
    }

    /// The verbs.
    pub fn registry(&self) -> &Registry {
        self.ctx.registry()
    }

    /// The interpreter state, for host code that needs it.
    pub fn context_mut(&mut self) -> &mut EvalContext {
        &mut self.ctx
    }

    /// Variables and their type names, sorted by name.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// s.eval("let n = 1").unwrap();
    /// assert!(s.vars().contains(&("n".to_string(), "number".to_string())));
    /// ```
    pub fn vars(&self) -> Vec<(String, String)> {
        self.ctx
            .globals()
            .iter()
            .map(|(k, v)| (k.clone(), v.type_name().to_string()))
            .collect()
    }

    /// All verb names, sorted.
    ///
    /// ```
    /// assert!(rlq::Session::new().verb_names().contains(&"group".to_string()));
    /// ```
    pub fn verb_names(&self) -> Vec<String> {
        self.ctx.registry().names()
    }

    /// The keywords of a verb (empty if there is no such verb).
    ///
    /// ```
    /// let s = rlq::Session::new();
    /// assert_eq!(s.keywords_of("group"), ["by", "agg"]);
    /// ```
    pub fn keywords_of(&self, verb: &str) -> Vec<String> {
        self.ctx
            .registry()
            .get(verb)
            .map(|e| e.signature.keyword_names())
            .unwrap_or_default()
    }

    /// Completions for the word under the cursor at byte `pos` of `line`: verbs at the start of
    /// a statement or pipe stage; after a verb, its keywords, variables and the columns of tables
    /// in scope. (File paths are the REPL's job.)
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// s.eval("let scores = 1").unwrap();
    /// assert!(s.completions("t | wh", 6).contains(&"where".to_string()));
    /// assert!(s.completions("t | top 5 b", 11).contains(&"by".to_string()));
    /// assert!(s.completions("sco", 3).contains(&"scores".to_string()));
    /// ```
    pub fn completions(&self, line: &str, pos: usize) -> Vec<String> {
        let mut pos = pos.min(line.len());
        while !line.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = &line[..pos];
        let word_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let prefix = &before[word_start..];
        let head = &before[..word_start];
        let mut stage = head.rsplit(['|', ';', '(', '\n']).next().unwrap_or("");
        if let Some(rest) = stage.trim_start().strip_prefix("let ") {
            stage = rest.split_once('=').map(|(_, r)| r).unwrap_or("");
        }
        let words: Vec<&str> = stage.split_whitespace().collect();
        let mut out: Vec<String> = Vec::new();
        let vars = self.ctx.globals().keys().cloned();
        match words.first() {
            None => {
                out.extend(self.verb_names());
                out.extend(vars);
            }
            // Right after a word keyword with known values (`patch m loss <TAB>`): those values.
            Some(verb) if self.keyword_choices(verb, words.last().copied()).is_some() => {
                out.extend(
                    self.keyword_choices(verb, words.last().copied())
                        .unwrap_or_default(),
                );
            }
            Some(verb) => {
                out.extend(self.keywords_of(verb));
                if *verb == "sort" {
                    out.extend(["desc".to_string(), "asc".to_string()]);
                }
                if *verb == "help" {
                    out.extend(self.verb_names());
                }
                out.extend(vars);
                out.extend(self.column_names());
            }
        }
        out.retain(|c| c.starts_with(prefix));
        out.sort();
        out.dedup();
        out
    }

    /// Column names of the tables (and graphs) held in variables.
    /// The values the keyword `word` of `verb` takes, when its signature lists them.
    fn keyword_choices(&self, verb: &str, word: Option<&str>) -> Option<Vec<String>> {
        let sig = &self.ctx.registry().get(verb)?.signature;
        let choices = sig.choices_of(word?);
        (!choices.is_empty()).then(|| choices.to_vec())
    }

    fn column_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.ctx.globals().values() {
            match v {
                Value::Table(eval::Table::Eager(df)) => {
                    out.extend(df.get_column_names().iter().map(|n| n.to_string()));
                }
                Value::Graph(g) => {
                    if g.meta.per_sample {
                        out.push("prompt_id".to_string());
                    }
                    for c in [
                        "src",
                        "dst",
                        "src_layer",
                        "dst_layer",
                        "src_kind",
                        "dst_kind",
                        "score",
                        "abs_score",
                    ] {
                        out.push(c.to_string());
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Help text: all verbs (`None`) or one verb's usage, arguments and examples.
    ///
    /// ```
    /// let s = rlq::Session::new();
    /// assert!(s.help(None).contains("where"));
    /// assert!(s.help(Some("top")).contains("usage: <table> | top"));
    /// ```
    pub fn help(&self, topic: Option<&str>) -> String {
        match eval::verbs::help_text(self.ctx.registry(), topic) {
            Ok(text) => text,
            Err((msg, hint)) => format!("{msg}\n{hint}\n"),
        }
    }

    /// Uses `flag` as the interrupt: set it (e.g. from a Ctrl-C handler) to stop the running
    /// statement at its next check. It is cleared when each `eval` starts.
    ///
    /// ```
    /// use std::sync::{atomic::AtomicBool, Arc};
    /// let mut s = rlq::Session::new();
    /// s.set_interrupt(Arc::new(AtomicBool::new(false)));
    /// assert!(s.eval("1").is_ok());
    /// ```
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = flag.clone();
        self.ctx.set_interrupt(flag);
    }

    /// The folder relative paths resolve against when the source has no folder of its own.
    ///
    /// ```
    /// let mut s = rlq::Session::new();
    /// s.set_base_dir(std::env::temp_dir());
    /// ```
    pub fn set_base_dir(&mut self, path: impl Into<PathBuf>) {
        self.ctx.set_base_dir(Some(path.into()));
    }
}
