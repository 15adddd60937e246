//! The interpreter state ([`EvalContext`]) and the evaluation of statements and expressions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::bind::{bind, Bound, Names};
use super::error::{suggestion, suggestion_among, EvalError, EvalResult, SourceFile};
use super::registry::{Arg, ArgValue, Args, ColumnArg, Registry, Shape, Signature};
use super::value::{Function, Table, Value};
use crate::syntax::{
    self, BinaryOp, Command, Expr, ExprKind, Ident, Span, Stmt, StmtKind, UnaryOp,
};

/// Deepest expression / call nesting evaluated before giving up with an error.
const MAX_DEPTH: usize = 150;

/// Everything evaluation needs: variables, verbs, where relative paths point, the interrupt flag.
/// Verbs receive `&mut EvalContext` and may poll [`EvalContext::interrupted`].
pub struct EvalContext {
    registry: Registry,
    globals: BTreeMap<String, Value>,
    /// Parameter scopes of the user functions being called; only the top one is visible.
    frames: Vec<HashMap<String, Value>>,
    base_dir: Option<PathBuf>,
    interrupt: Arc<AtomicBool>,
    imported: HashSet<PathBuf>,
    source: Arc<SourceFile>,
    depth: usize,
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
            imported: HashSet::new(),
            source: SourceFile::new("<input>", "", None),
            depth: 0,
        }
    }

    /// True once Ctrl-C was pressed during this statement. Long-running verbs poll this.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
    /// An "interrupted" error when the flag is set.
    pub fn check_interrupt(&self, span: Span) -> EvalResult<()> {
        if self.interrupted() {
            Err(EvalError::at(span, "interrupted").with_code("rlq::interrupted"))
        } else {
            Ok(())
        }
    }
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = flag;
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

    /// Parse and evaluate a source, statement by statement. `on_value` sees each bare-expression
    /// statement's value. A failing statement leaves variables as they were before it.
    /// Returns the last statement's value (`Null` for `let`/`fn`/`import`).
    pub fn eval_source(
        &mut self,
        text: &str,
        name: &str,
        dir: Option<PathBuf>,
        on_value: &mut dyn FnMut(&Value),
    ) -> EvalResult<Value> {
        let source = SourceFile::new(name, text, dir);
        let program = syntax::parse(text).map_err(|e| EvalError::from_syntax(e, &source))?;
        let previous = std::mem::replace(&mut self.source, source.clone());
        let result = self.eval_statements(&program.stmts, on_value);
        self.source = previous;
        result.map_err(|e| e.in_source(&source))
    }

    fn eval_statements(
        &mut self,
        stmts: &[Stmt],
        on_value: &mut dyn FnMut(&Value),
    ) -> EvalResult<Value> {
        let mut last = Value::Null;
        for stmt in stmts {
            let globals = self.globals.clone();
            let imported = self.imported.clone();
            match self.eval_stmt(stmt) {
                Ok(Some(v)) => {
                    on_value(&v);
                    last = v;
                }
                Ok(None) => last = Value::Null,
                Err(e) => {
                    // Roll back: a failing statement changes nothing.
                    self.globals = globals;
                    self.imported = imported;
                    self.frames.clear();
                    self.depth = 0;
                    return Err(e.in_source(&self.source));
                }
            }
        }
        Ok(last)
    }

    /// Evaluates one statement; `Some(value)` for a bare expression.
    fn eval_stmt(&mut self, stmt: &Stmt) -> EvalResult<Option<Value>> {
        self.check_interrupt(stmt.span)?;
        match &stmt.kind {
            StmtKind::Let { name, value } => {
                let v = materialize(self.eval_expr(value)?, value.span)?;
                self.globals.insert(name.name.clone(), v);
                Ok(None)
            }
            StmtKind::Fn { name, params, body } => {
                let f = Function {
                    name: name.name.clone(),
                    params: params.iter().map(|p| p.name.clone()).collect(),
                    body: body.clone(),
                    source: self.source.clone(),
                };
                self.globals
                    .insert(name.name.clone(), Value::Func(Arc::new(f)));
                Ok(None)
            }
            StmtKind::Import { path, path_span } => {
                self.import(path, *path_span)?;
                Ok(None)
            }
            StmtKind::Expr(e) => Ok(Some(materialize(self.eval_expr(e)?, e.span)?)),
        }
    }

    fn import(&mut self, path: &str, span: Span) -> EvalResult<()> {
        let full = self.resolve_path(path);
        let canonical = full.canonicalize().map_err(|e| {
            EvalError::at(span, format!("cannot import `{}`: {e}", full.display()))
                .with_code("rlq::io")
        })?;
        if !self.imported.insert(canonical.clone()) {
            return Ok(()); // each file is evaluated once
        }
        let text = std::fs::read_to_string(&canonical).map_err(|e| {
            EvalError::at(span, format!("cannot read `{}`: {e}", full.display()))
                .with_code("rlq::io")
        })?;
        let dir = canonical.parent().map(Path::to_path_buf);
        let name = full.display().to_string();
        self.eval_source(&text, &name, dir, &mut |_| {}).map(|_| ())
    }

    /// Evaluates an expression to a value (tables may stay lazy).
    pub fn eval_expr(&mut self, e: &Expr) -> EvalResult<Value> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(EvalError::at(
                e.span,
                format!(
                    "nested too deeply (over {MAX_DEPTH} levels; is a function calling itself?)"
                ),
            ))
        } else {
            self.eval_expr_inner(e)
        };
        self.depth -= 1;
        result
    }

    fn eval_expr_inner(&mut self, e: &Expr) -> EvalResult<Value> {
        match &e.kind {
            ExprKind::Null => Ok(Value::Null),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Number { value, .. } => Ok(Value::Number(*value)),
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(self.eval_expr(it)?);
                }
                Ok(Value::List(out))
            }
            ExprKind::Var(name) => {
                if let Some(v) = self.lookup(name) {
                    return Ok(v.clone());
                }
                if self.registry.contains(name) {
                    let cmd = bare_command(name, e.span);
                    return self.eval_command(&cmd, None);
                }
                Err(self.unknown_name(name, e.span))
            }
            ExprKind::Unary(op, inner) => {
                let v = self.eval_expr(inner)?;
                match (op, v) {
                    (UnaryOp::Neg, Value::Number(n)) => Ok(Value::Number(-n)),
                    (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
                    (UnaryOp::Neg, v) => Err(EvalError::type_mismatch(
                        "number",
                        v.type_name(),
                        inner.span,
                    )),
                    (UnaryOp::Not, v) => {
                        Err(EvalError::type_mismatch("bool", v.type_name(), inner.span))
                    }
                }
            }
            ExprKind::Binary(op, l, r) => self.eval_binary(*op, l, r, e.span),
            ExprKind::Index(target, index) => {
                let t = self.eval_expr(target)?;
                let i = self.eval_expr(index)?;
                index_value(t, i, target.span, index.span)
            }
            ExprKind::Command(cmd) => self.eval_command(cmd, None),
            ExprKind::Pipeline(stages) => {
                let Some((first, rest)) = stages.split_first() else {
                    return Ok(Value::Null);
                };
                let mut v = self.eval_expr(first)?;
                for stage in rest {
                    self.check_interrupt(stage.span)?;
                    v = self.eval_stage(stage, v)?;
                }
                Ok(v)
            }
        }
    }

    /// One `| stage`: a command, a bare verb name, or a user function taking the value first.
    fn eval_stage(&mut self, stage: &Expr, input: Value) -> EvalResult<Value> {
        match &stage.kind {
            ExprKind::Command(cmd) => self.eval_command(cmd, Some(input)),
            ExprKind::Var(name) => {
                let cmd = bare_command(name, stage.span);
                self.eval_command(&cmd, Some(input))
            }
            _ => Err(EvalError::at(
                stage.span,
                "after `|` comes a verb, like `| where …` or `| top 10`",
            )
            .with_label("not a verb")),
        }
    }

    fn unknown_name(&self, name: &str, span: Span) -> EvalError {
        let vars = self.visible_names();
        let mut candidates = vars.clone();
        candidates.extend(self.registry.names());
        EvalError::at(span, format!("unknown variable `{name}`"))
            .with_label("not defined")
            .with_help(suggestion_among(name, "variable", &candidates, &vars))
            .with_code("rlq::name")
    }

    /// Runs a command: a user function if the name holds one, else the registered verb.
    pub fn eval_command(&mut self, cmd: &Command, input: Option<Value>) -> EvalResult<Value> {
        let name = &cmd.verb.name;
        match self.lookup(name) {
            Some(Value::Func(f)) => {
                let f = f.clone();
                let mut values = Vec::new();
                values.extend(input);
                for item in &cmd.items {
                    if let Some(alias) = item.alias() {
                        return Err(EvalError::at(
                            alias.span,
                            "`as` / `=` are not allowed in function arguments",
                        ));
                    }
                    values.push(self.eval_expr(item.expr())?);
                }
                return self.call_function(&f, values, cmd.span);
            }
            Some(v) if !self.registry.contains(name) => {
                return Err(EvalError::at(
                    cmd.verb.span,
                    format!("`{name}` is a {}, not a verb or function", v.type_name()),
                )
                .with_label("not callable"));
            }
            _ => {}
        }
        let Some(entry) = self.registry.get(name).cloned() else {
            let mut known = self.registry.names();
            known.extend(
                self.globals
                    .iter()
                    .filter(|(_, v)| matches!(v, Value::Func(_)))
                    .map(|(k, _)| k.clone()),
            );
            return Err(
                EvalError::at(cmd.verb.span, format!("unknown verb `{name}`"))
                    .with_label("not a verb")
                    .with_help(suggestion(name, "verb", &known))
                    .with_code("rlq::verb"),
            );
        };
        let binding = bind(cmd, &entry.signature, input.is_some(), self)?;
        let args = self.build_args(cmd, &entry.signature, binding, input)?;
        self.check_interrupt(cmd.span)?;
        let out = entry
            .verb
            .run(self, args)
            .map_err(|e| e.with_span(cmd.span))?;
        // Resolve a lazy result's schema now, so a type error names this step, not the end of
        // the pipeline (no data is computed).
        if let Value::Table(Table::Lazy(lf)) = &out {
            lf.clone()
                .collect_schema()
                .map_err(|e| EvalError::polars(e, cmd.span))?;
        }
        Ok(out)
    }

    /// Evaluates the value arguments of a binding and fills defaults.
    fn build_args(
        &mut self,
        cmd: &Command,
        sig: &Signature,
        binding: super::bind::Binding<'_>,
        input: Option<Value>,
    ) -> EvalResult<Args> {
        let mut args = Args {
            verb: sig.name.clone(),
            span: cmd.span,
            ..Args::default()
        };
        if let Some(v) = input {
            let ty = match &binding.piped_param {
                Some(p) => {
                    sig.positional
                        .first()
                        .filter(|fp| &fp.name == p)
                        .and_then(|fp| match fp.shape {
                            Shape::Value(t) => Some(t),
                            _ => None,
                        })
                }
                None => sig.input,
            };
            let v = match ty {
                Some(t) => t.coerce(v).map_err(|v| {
                    EvalError::type_mismatch(t.name(), v.type_name(), cmd.verb.span).with_label(
                        format!(
                            "`{}` takes a {}; a {} was piped in",
                            sig.name,
                            t.name(),
                            v.type_name()
                        ),
                    )
                })?,
                None => v,
            };
            match &binding.piped_param {
                Some(p) => {
                    args.named.insert(
                        p.clone(),
                        vec![Arg {
                            value: ArgValue::Value(v),
                            span: cmd.verb.span,
                        }],
                    );
                }
                None => args.input = Some(v),
            }
        }
        for (name, (param, bounds)) in binding.named {
            let mut out = Vec::with_capacity(bounds.len());
            for (bound, span) in bounds {
                let value = match bound {
                    Bound::Flag => ArgValue::Flag,
                    Bound::Word(w) => ArgValue::Word(w),
                    Bound::Order(item, descending) => ArgValue::Column(ColumnArg {
                        expr: item.expr().clone(),
                        alias: item.alias().map(|a| a.name.clone()),
                        descending,
                        span,
                    }),
                    Bound::Item(item) if param.shape == Shape::Column => {
                        ArgValue::Column(ColumnArg {
                            expr: item.expr().clone(),
                            alias: item.alias().map(|a| a.name.clone()),
                            descending: false,
                            span,
                        })
                    }
                    Bound::Item(item) => {
                        if let Some(alias) = item.alias() {
                            return Err(EvalError::at(
                                alias.span,
                                format!(
                                    "`as` is not allowed for `{}` of `{}`",
                                    param.name, sig.name
                                ),
                            ));
                        }
                        let v = self.eval_expr(item.expr())?;
                        ArgValue::Value(check_type(&param.shape, v, span, &param.name, sig)?)
                    }
                    Bound::Nested(nested) => {
                        let v = materialize(self.eval_command(&nested, None)?, span)?;
                        ArgValue::Value(check_type(&param.shape, v, span, &param.name, sig)?)
                    }
                };
                out.push(Arg { value, span });
            }
            args.named.insert(name, out);
        }
        for p in sig.positional.iter().chain(&sig.keywords) {
            if let (Some(d), false) = (&p.default, args.named.contains_key(&p.name)) {
                let value = match (&p.shape, d) {
                    (Shape::Word, Value::Str(s)) => ArgValue::Word(s.clone()),
                    _ => ArgValue::Value(d.clone()),
                };
                args.named.insert(
                    p.name.clone(),
                    vec![Arg {
                        value,
                        span: cmd.span,
                    }],
                );
            }
        }
        for name in &binding.positional_order {
            for a in args.all(name).to_vec() {
                if let ArgValue::Value(v) = a.value {
                    args.positional.push(v);
                }
            }
        }
        Ok(args)
    }

    /// Calls a user function with positional values.
    pub fn call_function(
        &mut self,
        f: &Arc<Function>,
        values: Vec<Value>,
        span: Span,
    ) -> EvalResult<Value> {
        if values.len() != f.params.len() {
            return Err(EvalError::at(
                span,
                format!(
                    "`{}` takes {} argument(s) ({}), got {}",
                    f.name,
                    f.params.len(),
                    f.params.join(", "),
                    values.len()
                ),
            )
            .with_code("rlq::args"));
        }
        let frame: HashMap<String, Value> = f.params.iter().cloned().zip(values).collect();
        self.frames.push(frame);
        let previous = std::mem::replace(&mut self.source, f.source.clone());
        let result = self.eval_expr(&f.body);
        self.source = previous;
        self.frames.pop();
        result.map_err(|mut e| {
            // Only the innermost function names itself (its source is the one still missing).
            if e.source.is_none() {
                let note = format!("in function `{}`", f.name);
                e.help = Some(match e.help.take() {
                    Some(h) => format!("{h}\n{note}"),
                    None => note,
                });
            }
            e.in_source(&f.source)
        })
    }

    /// Calls any callable value (user function) with positional values; for verbs taking callbacks.
    pub fn call(&mut self, f: &Value, values: Vec<Value>, span: Span) -> EvalResult<Value> {
        match f {
            Value::Func(func) => self.call_function(&func.clone(), values, span),
            other => Err(EvalError::type_mismatch(
                "function",
                other.type_name(),
                span,
            )),
        }
    }

    fn eval_binary(&mut self, op: BinaryOp, l: &Expr, r: &Expr, span: Span) -> EvalResult<Value> {
        // `and` / `or` short-circuit.
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let lv = self.eval_expr(l)?;
            let Value::Bool(lb) = lv else {
                return Err(EvalError::type_mismatch("bool", lv.type_name(), l.span));
            };
            if (op == BinaryOp::And && !lb) || (op == BinaryOp::Or && lb) {
                return Ok(Value::Bool(lb));
            }
            let rv = self.eval_expr(r)?;
            return match rv {
                Value::Bool(b) => Ok(Value::Bool(b)),
                other => Err(EvalError::type_mismatch("bool", other.type_name(), r.span)),
            };
        }
        let lv = self.eval_expr(l)?;
        let rv = self.eval_expr(r)?;
        binary_values(op, lv, rv, l.span, r.span, span)
    }
}

fn bare_command(name: &str, span: Span) -> Command {
    Command {
        verb: Ident {
            name: name.to_string(),
            span,
        },
        items: Vec::new(),
        call_syntax: false,
        span,
    }
}

/// Collects a lazy table (statement results and variables hold eager frames).
pub(crate) fn materialize(v: Value, span: Span) -> EvalResult<Value> {
    match v {
        Value::Table(t @ Table::Lazy(_)) => t
            .collect()
            .map(|df| Value::Table(Table::Eager(df)))
            .map_err(|e| EvalError::polars(e, span)),
        other => Ok(other),
    }
}

fn check_type(
    shape: &Shape,
    v: Value,
    span: Span,
    param: &str,
    sig: &Signature,
) -> EvalResult<Value> {
    match shape {
        Shape::Value(t) => t.coerce(v).map_err(|v| {
            EvalError::type_mismatch(t.name(), v.type_name(), span).with_help(format!(
                "`{param}` of `{}` is a {}; usage: {}",
                sig.name,
                t.name(),
                sig.usage()
            ))
        }),
        _ => Ok(v),
    }
}

fn index_value(t: Value, i: Value, tspan: Span, ispan: Span) -> EvalResult<Value> {
    let idx = |n: f64, len: usize| -> EvalResult<usize> {
        if n.fract() != 0.0 || !n.is_finite() {
            return Err(EvalError::at(
                ispan,
                format!("index must be a whole number, got {n}"),
            ));
        }
        let k = if n < 0.0 { len as f64 + n } else { n };
        if k < 0.0 || k >= len as f64 {
            return Err(
                EvalError::at(ispan, format!("index {n} out of range (length {len})"))
                    .with_label("out of range"),
            );
        }
        Ok(k as usize)
    };
    match (t, i) {
        (Value::List(items), Value::Number(n)) => {
            let k = idx(n, items.len())?;
            Ok(items[k].clone())
        }
        (Value::Str(s), Value::Number(n)) => {
            let chars: Vec<char> = s.chars().collect();
            let k = idx(n, chars.len())?;
            Ok(Value::Str(chars[k].to_string()))
        }
        (Value::List(_) | Value::Str(_), other) => {
            Err(EvalError::type_mismatch("number", other.type_name(), ispan))
        }
        (other, _) => Err(EvalError::type_mismatch(
            "list or string",
            other.type_name(),
            tspan,
        )),
    }
}

/// Arithmetic, concatenation and comparison on plain values.
pub(crate) fn binary_values(
    op: BinaryOp,
    lv: Value,
    rv: Value,
    ls: Span,
    rs: Span,
    _span: Span,
) -> EvalResult<Value> {
    use BinaryOp::*;
    use Value::*;
    Ok(match (op, lv, rv) {
        (Eq, a, b) => Bool(a == b),
        (Ne, a, b) => Bool(a != b),
        (Add, Number(a), Number(b)) => Number(a + b),
        (Add, Str(a), Str(b)) => Str(a + &b),
        (Add, Str(a), b) if !matches!(b, Table(_) | Graph(_)) => Str(format!("{a}{b}")),
        (Add, a, Str(b)) if !matches!(a, Table(_) | Graph(_)) => Str(format!("{a}{b}")),
        (Add, List(mut a), List(b)) => {
            a.extend(b);
            List(a)
        }
        (Sub, Number(a), Number(b)) => Number(a - b),
        (Mul, Number(a), Number(b)) => Number(a * b),
        (Div | Rem, Number(_), Number(b)) if b == 0.0 => {
            return Err(EvalError::at(rs, "division by zero").with_label("this is zero"))
        }
        (Div, Number(a), Number(b)) => Number(a / b),
        (Rem, Number(a), Number(b)) => Number(a % b),
        (Lt | Le | Gt | Ge, Number(a), Number(b)) => Bool(compare(op, a.partial_cmp(&b))),
        (Lt | Le | Gt | Ge, Str(a), Str(b)) => Bool(compare(op, a.partial_cmp(&b))),
        (In, a, List(items)) => Bool(items.contains(&a)),
        (In, Str(a), Str(b)) => Bool(b.contains(&a)),
        (op, a, b) => {
            let want = match op {
                Add => "numbers, strings or lists",
                Lt | Le | Gt | Ge => "two numbers or two strings",
                In => "a list (or a string) on the right",
                _ => "numbers",
            };
            let (bad, bad_span) = if matches!(a, Number(_)) || matches!(a, Str(_)) && op == Add {
                (&b, rs)
            } else {
                (&a, ls)
            };
            return Err(EvalError::at(
                bad_span,
                format!(
                    "type error: `{}` needs {want}, got {} and {}",
                    op.symbol(),
                    a.type_name(),
                    b.type_name()
                ),
            )
            .with_label(format!("this is a {}", bad.type_name()))
            .with_code("rlq::type"));
        }
    })
}

fn compare(op: BinaryOp, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (op, ord) {
        (_, None) => false,
        (BinaryOp::Lt, Some(o)) => o == Less,
        (BinaryOp::Le, Some(o)) => o != Greater,
        (BinaryOp::Gt, Some(o)) => o == Greater,
        (BinaryOp::Ge, Some(o)) => o != Less,
        _ => false,
    }
}
