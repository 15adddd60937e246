//! Evaluation of statements, expressions, pipelines and user functions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::context::EvalContext;
use super::error::{suggestion_among, ErrorCode, EvalError, EvalResult, SourceFile};
use super::ops::{binary_values, index_value};
use super::registry::Shape;
use super::value::{Function, Table, Value};
use crate::syntax::{
    self, BinaryOp, Command, Expr, ExprKind, Ident, Item, ItemKind, Span, Stmt, StmtKind, UnaryOp,
};

/// Deepest expression / call / nested-command nesting evaluated before giving up with an error
/// (each level is a few stack frames; 150 fit well inside a 2 MiB thread stack).
pub(crate) const MAX_DEPTH: usize = 150;

/// Lazy table stages a pipeline stacks up before it collects (see the pipeline loop).
const MAX_LAZY_STAGES: usize = 16;

/// Deepest chain of imports (a file importing a file importing …).
pub(crate) const MAX_IMPORT_DEPTH: usize = 64;

impl EvalContext {
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
                    captured: HashMap::new(),
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
                .with_code(ErrorCode::Io)
        })?;
        if !self.imported.insert(canonical.clone()) {
            return Ok(()); // each file is evaluated once
        }
        if self.import_depth >= MAX_IMPORT_DEPTH {
            return Err(EvalError::at(
                span,
                format!(
                    "imports nested more than {MAX_IMPORT_DEPTH} files deep (`{}` would be \
                     the {}th file in the chain)",
                    full.display(),
                    MAX_IMPORT_DEPTH + 1
                ),
            )
            .with_label("imported too deep")
            .with_help("import the files from one top-level file instead of in a chain")
            .with_code(ErrorCode::Import));
        }
        let text = crate::files::read_text_capped(&canonical, crate::files::MAX_SCRIPT_BYTES)
            .map_err(|e| {
                EvalError::at(span, format!("cannot read `{}`: {e}", full.display()))
                    .with_code(ErrorCode::Io)
            })?;
        let dir = canonical.parent().map(Path::to_path_buf);
        let name = full.display().to_string();
        self.import_depth += 1;
        let result = self.eval_source(&text, &name, dir, &mut |_| {}).map(|_| ());
        self.import_depth -= 1;
        result
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
            ExprKind::List(items)
                if !items.is_empty()
                    && items.iter().all(|i| matches!(i.kind, ExprKind::Record(_))) =>
            {
                let mut rows = Vec::with_capacity(items.len());
                for it in items {
                    if let ExprKind::Record(fields) = &it.kind {
                        rows.push(self.eval_fields(fields)?);
                    }
                }
                Ok(super::record::rows_table(rows, e.span)?.into())
            }
            ExprKind::Record(fields) => {
                let fields = self.eval_fields(fields)?;
                Ok(super::record::columns_table(fields)?.into())
            }
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
            ExprKind::Lambda { params, body } => Ok(Value::Func(Arc::new(Function {
                name: Function::ANONYMOUS.into(),
                params: params.iter().map(|p| p.name.clone()).collect(),
                body: (**body).clone(),
                source: self.source.clone(),
                captured: self.frames.last().cloned().unwrap_or_default(),
            }))),
            ExprKind::Pipeline(stages) => {
                let Some((first, rest)) = stages.split_first() else {
                    return Ok(Value::Null);
                };
                let mut v = self.eval_expr(first)?;
                let mut lazy_stages = 0;
                for stage in rest {
                    self.check_interrupt(stage.span)?;
                    v = self.eval_stage(stage, v)?;
                    // Each stage adds to the lazy plan, and resolving its schema (every stage
                    // does) walks the whole plan: collecting every so often keeps the plan
                    // short, so a pipeline costs time linear in its stages.
                    if matches!(v, Value::Table(Table::Lazy(_))) {
                        lazy_stages += 1;
                        if lazy_stages >= MAX_LAZY_STAGES {
                            v = materialize(v, stage.span)?;
                            lazy_stages = 0;
                        }
                    } else {
                        lazy_stages = 0;
                    }
                }
                Ok(v)
            }
        }
    }

    fn eval_fields(&mut self, fields: &[(Ident, Expr)]) -> EvalResult<Vec<super::record::Field>> {
        let mut out = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            out.push(super::record::Field {
                name: name.name.clone(),
                value: self.eval_expr(value)?,
                span: value.span,
            });
        }
        Ok(out)
    }

    /// One `| stage`: a command, a bare verb name, or a user function taking the value first.
    fn eval_stage(&mut self, stage: &Expr, input: Value) -> EvalResult<Value> {
        match &stage.kind {
            ExprKind::Command(cmd) => self.eval_command(cmd, Some(input)),
            ExprKind::Var(name) => {
                let cmd = bare_command(name, stage.span);
                self.eval_command(&cmd, Some(input))
            }
            // `t | top - 1`: the spaced minus made it a subtraction.
            ExprKind::Binary(BinaryOp::Sub, l, _) if matches!(&l.kind, ExprKind::Var(v) if self.is_callable(v)) => {
                Err(EvalError::at(
                    stage.span,
                    "after `|` comes a verb, and this reads as a subtraction",
                )
                .with_label("a verb minus something")
                .with_help(
                    "to give the verb a negative number, write the minus against it: `| top -1`",
                ))
            }
            _ => Err(EvalError::at(
                stage.span,
                "after `|` comes a verb, like `| where …` or `| top 10`",
            )
            .with_label("not a verb")),
        }
    }

    /// A verb, or a variable holding a user function.
    fn is_callable(&self, name: &str) -> bool {
        match self.lookup(name) {
            Some(v) => matches!(v, Value::Func(_)),
            None => self.registry.contains(name),
        }
    }

    fn unknown_name(&self, name: &str, span: Span) -> EvalError {
        let vars = self.visible_names();
        let mut candidates = vars.clone();
        candidates.extend(self.registry.names());
        EvalError::at(span, format!("unknown variable `{name}`"))
            .with_label("not defined")
            .with_help(suggestion_among(name, "variable", &candidates, &vars))
            .with_code(ErrorCode::Name)
    }

    /// Calls a user function with positional values.
    pub fn call_function(
        &mut self,
        f: &Arc<Function>,
        values: Vec<Value>,
        span: Span,
    ) -> EvalResult<Value> {
        if values.len() != f.params.len() {
            let message = if f.params == [VERB_ARG] {
                format!(
                    "the verb `{}`, used as a function, takes one value (got {})",
                    f.name,
                    values.len()
                )
            } else {
                format!(
                    "`{}` takes {} argument(s) ({}), got {}",
                    f.title(),
                    f.params.len(),
                    f.params.join(", "),
                    values.len()
                )
            };
            return Err(EvalError::at(span, message).with_code(ErrorCode::Args));
        }
        let mut frame = f.captured.clone();
        frame.extend(f.params.iter().cloned().zip(values));
        self.frames.push(frame);
        let previous = std::mem::replace(&mut self.source, f.source.clone());
        let result = self.eval_expr(&f.body);
        self.source = previous;
        self.frames.pop();
        result.map_err(|mut e| {
            // Only the innermost function names itself (its source is the one still missing).
            if e.source.is_none() {
                let note = format!("in function `{}`", f.title());
                e.help = Some(match e.help.take() {
                    Some(h) => format!("{h}\n{note}"),
                    None => note,
                });
            }
            e.in_source(&f.source)
        })
    }

    /// A verb used where a function is expected (`map xs abs`): a function of one value that
    /// pipes the value into the verb, or gives it as the first argument to a verb that takes no
    /// piped input. Spans point at `span`, where the verb was named.
    pub(crate) fn verb_function(&self, verb: &str, span: Span) -> EvalResult<Function> {
        let Some(entry) = self.registry.get(verb) else {
            return Err(self.unknown_name(verb, span));
        };
        let sig = &entry.signature;
        let value = Expr {
            kind: ExprKind::Var(VERB_ARG.into()),
            span,
        };
        let first = sig.positional.first();
        let body = if sig.input.is_some() || first.is_some_and(|p| p.piped) {
            ExprKind::Pipeline(vec![
                value,
                Expr {
                    kind: ExprKind::Var(verb.into()),
                    span,
                },
            ])
        } else if first.is_some_and(|p| matches!(p.shape, Shape::Value(_))) {
            let mut cmd = bare_command(verb, span);
            cmd.items.push(Item {
                kind: ItemKind::Expr {
                    expr: value,
                    alias: None,
                },
                span,
            });
            ExprKind::Command(cmd)
        } else {
            return Err(EvalError::at(
                span,
                format!("`{verb}` takes no value first, so it cannot be used as a function"),
            )
            .with_label("not a function of one value")
            .with_help(format!(
                "write the call out: `fn(x) = {verb} …`; usage: {}",
                sig.usage()
            ))
            .with_code(ErrorCode::Args));
        };
        Ok(Function {
            name: verb.into(),
            params: vec![VERB_ARG.into()],
            body: Expr { kind: body, span },
            source: self.source.clone(),
            captured: HashMap::new(),
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

/// The parameter name of a verb used as a function: not an identifier, so neither a variable
/// nor one of the verb's keywords can be mistaken for it.
const VERB_ARG: &str = "·value";

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
