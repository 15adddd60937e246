//! The verb registry (nushell-style): every verb declares its signature once, and that one
//! declaration drives argument resolution, `help`, completion and `rlq check`.
//!
//! # Adding a verb
//! Either implement [`Verb`] on a type, or register a plain function with a [`Signature`]:
//! ```
//! use rlq::eval::{Registry, Signature, Type, Value};
//! let mut registry = Registry::default();
//! registry.register_fn(
//!     Signature::new("double", "twice a number")
//!         .required("x", Type::Number, "the number")
//!         .example("double 21", "42"),
//!     |_ctx, args| Ok(Value::Number(args.real("x")? * 2.0)),
//! );
//! assert!(registry.get("double").is_some());
//! ```
//! or, for a verb with more to it, a type:
//! ```
//! use rlq::eval::{Args, EvalContext, EvalResult, Range, Signature, Type, Value, Verb};
//!
//! /// `t | sample 5`: the first n rows (a stand-in for something cleverer).
//! struct Sample;
//!
//! impl Verb for Sample {
//!     fn signature(&self) -> Signature {
//!         Signature::new("sample", "n rows of a table")
//!             .category("table")
//!             .input(Type::Table)
//!             .required("n", Type::Number, "how many rows")
//!             .range("n", Range::whole(0.0, 1e9)) // checked where arguments are bound
//!             .example("t | sample 5", "five rows")
//!     }
//!     fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
//!         ctx.check_interrupt(args.span)?; // long loops poll this (Ctrl-C)
//!         // The bound value: declared range checked, no default restated, no `as` cast.
//!         let n = u32::try_from(args.count("n")?).unwrap_or(u32::MAX);
//!         Ok(args.input_table()?.lazy().limit(n.into()).into())
//!     }
//! }
//!
//! let mut s = rlq::Session::new();
//! s.register_verb(Box::new(Sample));
//! s.set("t", polars::prelude::df!("a" => [1, 2, 3]).unwrap());
//! assert_eq!(s.eval("t | sample 2 | count").unwrap().as_number(), Some(2.0));
//! ```
//! Built-in verbs are added in [`crate::eval::verbs::register_builtins`]; a layer with its own
//! verbs (e.g. `analysis`) exposes `fn register(reg: &mut Registry)` and gets one line there.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::EvalContext;
use super::error::EvalResult;
use super::value::Value;

// Everything a verb author needs, from one module.
pub use super::args::{Arg, ArgValue, Args, ColumnArg};
pub use super::signature::{Example, Param, Range, Shape, Signature, Type};

/// A verb: one type per verb, or a function registered with [`Registry::register_fn`].
pub trait Verb: Send + Sync {
    fn signature(&self) -> Signature;
    /// Examples for `help`; they default to the ones in the signature.
    fn examples(&self) -> Vec<Example> {
        self.signature().examples
    }
    fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value>;
}

/// The function type host-defined verbs use.
pub type VerbFn = dyn Fn(&mut EvalContext, Args) -> EvalResult<Value> + Send + Sync;

/// A verb made of a signature and a function.
pub struct FnVerb {
    pub signature: Signature,
    pub run: Arc<VerbFn>,
}

impl Verb for FnVerb {
    fn signature(&self) -> Signature {
        self.signature.clone()
    }
    fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
        (self.run)(ctx, args)
    }
}

/// A registered verb with its signature computed once.
#[derive(Clone)]
pub struct Entry {
    pub verb: Arc<dyn Verb>,
    pub signature: Arc<Signature>,
}

/// All verbs by name. Registering a name again replaces the old verb.
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl Registry {
    pub fn register(&mut self, verb: Box<dyn Verb>) {
        let mut signature = verb.signature();
        signature.examples = verb.examples();
        self.entries.insert(
            signature.name.clone(),
            Entry {
                verb: Arc::from(verb),
                signature: Arc::new(signature),
            },
        );
    }
    pub fn register_fn(
        &mut self,
        signature: Signature,
        run: impl Fn(&mut EvalContext, Args) -> EvalResult<Value> + Send + Sync + 'static,
    ) {
        self.register(Box::new(FnVerb {
            signature,
            run: Arc::new(run),
        }));
    }
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
    pub fn signatures(&self) -> impl Iterator<Item = &Signature> {
        self.entries.values().map(|e| e.signature.as_ref())
    }
}
