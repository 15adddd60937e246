//! `rlq check`: parse and resolve without evaluating. Verbs and keywords must exist and
//! variables must be defined before use; columns cannot be known and are not checked.

use std::collections::HashSet;
use std::sync::Arc;

use super::bind::{bind, split_keyword_minus, Bound, CommandRef, Names};
use super::context::EvalContext;
use super::error::{suggestion, suggestion_among, ErrorCode, EvalError, EvalResult, SourceFile};
use super::interp::MAX_DEPTH;
use super::registry::{Registry, Shape};
use crate::syntax::{self, Command, Expr, ExprKind, Ident, StmtKind};

struct Scope<'a> {
    registry: &'a Registry,
    defined: HashSet<String>,
    /// Nested commands being checked now (`abs abs abs 1`), bounded like evaluation's.
    nesting: std::cell::Cell<usize>,
}

impl Names for Scope<'_> {
    fn is_var(&self, name: &str) -> bool {
        self.defined.contains(name)
    }
    fn is_verb(&self, name: &str) -> bool {
        self.registry.contains(name)
    }
}

impl EvalContext {
    /// Checks a source against the current variables and verbs; defines nothing.
    pub fn check_source(&self, text: &str, name: &str) -> EvalResult<()> {
        let dir = self.dir_for_source_name(name);
        let source = SourceFile::new(name, text, dir.clone());
        let program = syntax::parse(text).map_err(|e| EvalError::from_syntax(e, &source))?;
        let mut scope = Scope {
            registry: self.registry(),
            defined: self.globals().keys().cloned().collect(),
            nesting: Default::default(),
        };
        for stmt in &program.stmts {
            let r = match &stmt.kind {
                StmtKind::Let { name, value } => {
                    let r = check_expr(&scope, value);
                    scope.defined.insert(name.name.clone());
                    r
                }
                StmtKind::Fn { name, params, body } => {
                    scope.defined.insert(name.name.clone());
                    check_fn_body(&scope, params, body)
                }
                StmtKind::Import { path, path_span } => {
                    // Names an import defines are its top-level `let`s and `fn`s.
                    let p = match &dir {
                        Some(d) if !std::path::Path::new(path).is_absolute() => d.join(path),
                        _ => self.resolve_path(path),
                    };
                    match crate::files::read_text_capped(&p, crate::files::MAX_SCRIPT_BYTES) {
                        Ok(t) => {
                            if let Ok(prog) = syntax::parse(&t) {
                                for s in prog.stmts {
                                    match s.kind {
                                        StmtKind::Let { name, .. } | StmtKind::Fn { name, .. } => {
                                            scope.defined.insert(name.name);
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            Ok(())
                        }
                        Err(e) => Err(EvalError::at(
                            *path_span,
                            format!("cannot import `{}`: {e}", p.display()),
                        )
                        .with_cause(e)),
                    }
                }
                StmtKind::Expr(e) => check_expr(&scope, e),
            };
            r.map_err(|e| e.in_source(&source))?;
        }
        Ok(())
    }
}

/// A function's body (`fn f(a) = …` or `fn(a) = …`), with its parameters defined.
fn check_fn_body(scope: &Scope, params: &[Ident], body: &Expr) -> EvalResult<()> {
    let mut inner = Scope {
        registry: scope.registry,
        defined: scope.defined.clone(),
        nesting: Default::default(),
    };
    inner.defined.extend(params.iter().map(|p| p.name.clone()));
    check_expr(&inner, body)
}

fn check_expr(scope: &Scope, e: &Expr) -> EvalResult<()> {
    match &e.kind {
        ExprKind::Null | ExprKind::Bool(_) | ExprKind::Number { .. } | ExprKind::Str(_) => Ok(()),
        ExprKind::List(items) => items.iter().try_for_each(|i| check_expr(scope, i)),
        ExprKind::Record(fields) => fields.iter().try_for_each(|(_, v)| check_expr(scope, v)),
        ExprKind::Var(name) => {
            if scope.is_var(name) || scope.is_verb(name) {
                Ok(())
            } else {
                let vars: Vec<String> = scope.defined.iter().cloned().collect();
                let mut candidates = vars.clone();
                candidates.extend(scope.registry.names());
                Err(EvalError::at(e.span, format!("unknown variable `{name}`"))
                    .with_label("not defined before this")
                    .with_help(suggestion_among(name, "variable", &candidates, &vars))
                    .with_code(ErrorCode::Name))
            }
        }
        ExprKind::Unary(_, inner) => check_expr(scope, inner),
        ExprKind::Lambda { params, body } => check_fn_body(scope, params, body),
        ExprKind::Binary(_, l, r) | ExprKind::Index(l, r) => {
            check_expr(scope, l)?;
            check_expr(scope, r)
        }
        ExprKind::Command(cmd) => check_command(scope, cmd.into(), false),
        ExprKind::Pipeline(stages) => {
            let Some((first, rest)) = stages.split_first() else {
                return Ok(());
            };
            check_expr(scope, first)?;
            for stage in rest {
                match &stage.kind {
                    ExprKind::Command(cmd) => check_command(scope, cmd.into(), true)?,
                    ExprKind::Var(name) => {
                        let cmd = Command {
                            verb: syntax::Ident {
                                name: name.clone(),
                                span: stage.span,
                            },
                            items: Vec::new(),
                            call_syntax: false,
                            span: stage.span,
                        };
                        check_command(scope, (&cmd).into(), true)?
                    }
                    _ => {
                        return Err(EvalError::at(stage.span, "after `|` comes a verb")
                            .with_label("not a verb"))
                    }
                }
            }
            Ok(())
        }
    }
}

fn check_command(scope: &Scope, cmd: CommandRef<'_>, has_input: bool) -> EvalResult<()> {
    let name = cmd.verb;
    if scope.is_var(name) {
        // A user function (or a value; evaluation reports that): check the argument expressions.
        return cmd
            .items
            .iter()
            .try_for_each(|i| check_expr(scope, i.expr()));
    }
    let Some(entry) = scope.registry.get(name) else {
        let known = scope.registry.names();
        return Err(
            EvalError::at(cmd.verb_span, format!("unknown verb `{name}`"))
                .with_label("not a verb")
                .with_help(suggestion(name, "verb", &known))
                .with_code(ErrorCode::Verb),
        );
    };
    let sig: Arc<_> = entry.signature.clone();
    let split = split_keyword_minus(cmd.items, &sig);
    let cmd = match &split {
        Some(items) => CommandRef { items, ..cmd },
        None => cmd,
    };
    let binding = bind(cmd, &sig, has_input, scope)?;
    for (param, bounds) in binding.named.values() {
        for (bound, _) in bounds {
            match bound {
                Bound::Item(item) if matches!(param.shape, Shape::Value(_)) => {
                    check_expr(scope, item.expr())?
                }
                Bound::Nested(nested) => check_nested(scope, *nested)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// A nested command, counted against evaluation's depth limit (`rlq check` recurses the same way).
fn check_nested(scope: &Scope, cmd: CommandRef<'_>) -> EvalResult<()> {
    let depth = scope.nesting.get() + 1;
    if depth > MAX_DEPTH {
        return Err(EvalError::nested_too_deep(cmd.verb_span, MAX_DEPTH));
    }
    scope.nesting.set(depth);
    let result = check_command(scope, cmd, false);
    scope.nesting.set(depth - 1);
    result
}
