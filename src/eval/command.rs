//! Running a command: a user function, or a verb with its arguments bound and evaluated.

use std::sync::Arc;

use super::bind::{bind, split_keyword_minus, Binding, Bound, CommandRef};
use super::context::EvalContext;
use super::error::{suggestion, ErrorCode, EvalError, EvalResult};
use super::interp::{materialize, MAX_DEPTH};
use super::registry::{Arg, ArgValue, Args, ColumnArg, Param, Shape, Signature};
use super::value::{Table, Value};
use crate::syntax::{Command, Span};

impl EvalContext {
    /// Runs a command: a user function if the name holds one, else the registered verb.
    pub fn eval_command(&mut self, cmd: &Command, input: Option<Value>) -> EvalResult<Value> {
        self.eval_command_ref(cmd.into(), input)
    }

    /// A nested command (`abs abs abs 1`) recurses here, not through `eval_expr`, so it counts
    /// against the same depth limit itself.
    fn eval_nested(&mut self, cmd: CommandRef<'_>) -> EvalResult<Value> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(EvalError::nested_too_deep(cmd.verb_span, MAX_DEPTH))
        } else {
            self.eval_command_ref(cmd, None)
        };
        self.depth -= 1;
        result
    }

    fn eval_command_ref(&mut self, cmd: CommandRef<'_>, input: Option<Value>) -> EvalResult<Value> {
        let name = cmd.verb;
        match self.lookup(name) {
            Some(Value::Func(f)) => {
                let f = f.clone();
                let mut values = Vec::new();
                values.extend(input);
                for item in cmd.items {
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
                    cmd.verb_span,
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
                EvalError::at(cmd.verb_span, format!("unknown verb `{name}`"))
                    .with_label("not a verb")
                    .with_help(suggestion(name, "verb", &known))
                    .with_code(ErrorCode::Verb),
            );
        };
        let split = split_keyword_minus(cmd.items, &entry.signature);
        let cmd = match &split {
            Some(items) => CommandRef { items, ..cmd },
            None => cmd,
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
        if let Value::Table(t @ Table::Lazy(_)) = &out {
            t.schema().map_err(|e| EvalError::polars(e, cmd.span))?;
        }
        Ok(out)
    }

    /// Evaluates the value arguments of a binding and fills defaults.
    fn build_args(
        &mut self,
        cmd: CommandRef<'_>,
        sig: &Signature,
        binding: Binding<'_>,
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
                    EvalError::type_mismatch(t.name(), v.type_name(), cmd.verb_span).with_label(
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
                            span: cmd.verb_span,
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
                    Bound::Verb(verb) => {
                        ArgValue::Value(Value::Func(Arc::new(self.verb_function(verb, span)?)))
                    }
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
                        ArgValue::Value(check_type(&param, v, span, sig)?)
                    }
                    Bound::Nested(nested) => {
                        let v = materialize(self.eval_nested(nested)?, span)?;
                        ArgValue::Value(check_type(&param, v, span, sig)?)
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
}

/// The value's type, and its range where the parameter declares one: the one place ranges
/// are checked.
fn check_type(param: &Param, v: Value, span: Span, sig: &Signature) -> EvalResult<Value> {
    let Shape::Value(t) = &param.shape else {
        return Ok(v);
    };
    let v = t.coerce(v).map_err(|v| {
        EvalError::type_mismatch(t.name(), v.type_name(), span).with_help(format!(
            "`{}` of `{}` is a {}; usage: {}",
            param.name,
            sig.name,
            t.name(),
            sig.usage()
        ))
    })?;
    if let (Some(range), Value::Number(n)) = (&param.range, &v) {
        range.check(*n).map_err(|why| {
            EvalError::at(
                span,
                format!("`{}` of `{}` must be {why}", param.name, sig.name),
            )
            .with_label("out of range")
            .with_help(format!("usage: {}", sig.usage()))
            .with_code(ErrorCode::Args)
        })?;
    }
    Ok(v)
}
