//! The interpreter state: variables, verbs, source files, paths, the interrupt flag, the
//! reporter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::bind::Names;
use super::error::{ErrorCode, EvalError, EvalResult, SourceFile};
use super::registry::Registry;
use super::value::Value;
use crate::report::{Event, Reporter, Silent, Task};
use crate::syntax::Span;

/// Everything evaluation needs: variables, verbs, where relative paths point, the interrupt flag,
/// where progress and messages go. Verbs receive `&mut EvalContext`, may poll
/// [`EvalContext::interrupted`] and report through [`EvalContext::task`] / [`EvalContext::warn`]
/// (never by printing).
pub struct EvalContext {
    pub(super) registry: Registry,
    pub(super) globals: BTreeMap<String, Value>,
    /// Parameter scopes of the user functions being called; only the top one is visible.
    pub(super) frames: Vec<HashMap<String, Value>>,
    pub(super) base_dir: Option<PathBuf>,
    pub(super) interrupt: Arc<AtomicBool>,
    /// Where progress and messages go (the host's; silent by default).
    pub(super) reporter: Arc<dyn Reporter>,
    pub(super) imported: HashSet<PathBuf>,
    /// The source being evaluated (spans in errors point into it).
    pub(super) source: Arc<SourceFile>,
    /// Current expression nesting, bounded by `interp::MAX_DEPTH`.
    pub(super) depth: usize,
    /// Files being imported now, bounded by `interp::MAX_IMPORT_DEPTH`.
    pub(super) import_depth: usize,
}

impl Names for EvalContext {
    fn is_var(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }
    fn is_verb(&self, name: &str) -> bool {
        self.registry.contains(name)
    }
}

impl EvalContext {
    pub fn new(registry: Registry) -> EvalContext {
        EvalContext {
            registry,
            globals: BTreeMap::new(),
            frames: Vec::new(),
            base_dir: None,
            interrupt: Arc::new(AtomicBool::new(false)),
            reporter: Arc::new(Silent),
            imported: HashSet::new(),
            source: SourceFile::new("<input>", "", None),
            depth: 0,
            import_depth: 0,
        }
    }

    /// True once Ctrl-C was pressed during this statement. Long-running verbs poll this.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
    /// An "interrupted" error when the flag is set.
    pub fn check_interrupt(&self, span: Span) -> EvalResult<()> {
        if self.interrupted() {
            Err(EvalError::at(span, "interrupted").with_code(ErrorCode::Interrupted))
        } else {
            Ok(())
        }
    }
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = flag;
    }
    pub fn set_reporter(&mut self, reporter: Arc<dyn Reporter>) {
        self.reporter = reporter;
    }
    pub fn reporter(&self) -> &Arc<dyn Reporter> {
        &self.reporter
    }
    /// Starts a task of `total` `unit`s; it finishes when dropped.
    pub fn task(&self, name: impl Into<String>, total: usize, unit: &'static str) -> Task {
        Task::start(&self.reporter, name, total, unit)
    }
    /// Something the user must know about the result being returned (it is partial, …).
    pub fn warn(&self, text: impl Into<String>) {
        self.reporter.report(&Event::Warning(text.into()));
    }
    /// Something worth knowing (a saved result was reused).
    pub fn info(&self, text: impl Into<String>) {
        self.reporter.report(&Event::Info(text.into()));
    }
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
    /// A variable: the current function's parameters first, then globals.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.frames
            .last()
            .and_then(|f| f.get(name))
            .or_else(|| self.globals.get(name))
    }
    pub fn globals(&self) -> &BTreeMap<String, Value> {
        &self.globals
    }
    pub fn set_global(&mut self, name: &str, value: Value) {
        self.globals.insert(name.to_string(), value);
    }
    /// Names visible now (for suggestions).
    pub fn visible_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.globals.keys().cloned().collect();
        if let Some(f) = self.frames.last() {
            names.extend(f.keys().cloned());
        }
        names
    }
    pub fn set_base_dir(&mut self, dir: Option<PathBuf>) {
        self.base_dir = dir;
    }
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }
    /// The source being evaluated.
    pub fn current_source(&self) -> &Arc<SourceFile> {
        &self.source
    }
    /// Resolve a user-given path: absolute as is; relative against the current file's folder,
    /// else the session's base dir, else the working directory.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match (&self.source.dir, &self.base_dir) {
            (Some(dir), _) => dir.join(p),
            (None, Some(base)) => base.join(p),
            (None, None) => p.to_path_buf(),
        }
    }

    /// The folder relative paths inside a source called `name` resolve against.
    pub fn dir_for_source_name(&self, name: &str) -> Option<PathBuf> {
        let parent = Path::new(name)
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        match (parent, &self.base_dir) {
            (Some(p), _) if p.is_absolute() => Some(p.to_path_buf()),
            (Some(p), Some(base)) => Some(base.join(p)),
            (Some(p), None) => Some(p.to_path_buf()),
            (None, base) => base.clone(),
        }
    }
}
