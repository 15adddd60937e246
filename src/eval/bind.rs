//! Binding a generically parsed command to a verb's signature: which items are keywords, which
//! fill which parameter. Shared by evaluation and `rlq check`; evaluates nothing.

use std::collections::BTreeMap;

use super::error::{suggestion, EvalError, EvalResult};
use super::registry::{Param, Shape, Signature};
use crate::syntax::{Command, ExprKind, Ident, Item, ItemKind, Span};

/// How one parameter's item was taken.
#[derive(Debug, Clone)]
pub(crate) enum Bound<'a> {
    Item(&'a Item),
    /// A verb name inside the arguments starts a nested command that takes the rest of the
    /// section: `save compare g0, g1 to "x"`.
    Nested(Command),
    Word(String),
    Flag,
    /// A `desc`/`asc` after a sort key.
    Order(&'a Item, bool),
}

pub(crate) struct Binding<'a> {
    /// Parameter name → (shape, items).
    pub named: BTreeMap<String, (Param, Vec<(Bound<'a>, Span)>)>,
    /// The positional parameter the piped value fills, if any.
    pub piped_param: Option<String>,
    /// Positional parameter names in order (for `Args::positional`).
    pub positional_order: Vec<String>,
}

/// Names in scope, for deciding whether a word is a variable or a nested verb.
pub(crate) trait Names {
    fn is_var(&self, name: &str) -> bool;
    fn is_verb(&self, name: &str) -> bool;
}

pub(crate) fn bind<'a>(
    cmd: &'a Command,
    sig: &Signature,
    has_input: bool,
    names: &dyn Names,
) -> EvalResult<Binding<'a>> {
    // 1. Split into the positional section and keyword sections.
    let mut sections: Vec<(Option<&Param>, Span, Vec<&'a Item>)> =
        vec![(None, cmd.verb.span, Vec::new())];
    for item in &cmd.items {
        // A keyword that still waits for its value takes the next word as that value, even
        // when the word is itself a keyword: `seed seed` is the keyword `seed` given the
        // variable `seed`.
        let awaiting_value = matches!(
            sections.last(),
            Some((Some(p), _, items)) if items.is_empty() && !matches!(p.shape, Shape::Flag)
        );
        if let (Some(word), false) = (item.bare_word(), awaiting_value) {
            if let Some(kw) = sig.keyword_param(word) {
                if sections
                    .iter()
                    .any(|(p, _, _)| p.map(|p| p.name == word).unwrap_or(false))
                {
                    return Err(EvalError::at(
                        item.span,
                        format!("keyword `{word}` given twice to `{}`", sig.name),
                    )
                    .with_label("again here"));
                }
                sections.push((Some(kw), item.span, Vec::new()));
                continue;
            }
        }
        if let Some(last) = sections.last_mut() {
            last.2.push(item);
        }
    }

    let mut binding = Binding {
        named: BTreeMap::new(),
        piped_param: None,
        positional_order: Vec::new(),
    };

    // 2. Positional parameters.
    let (_, _, positional_items) = &sections[0];
    let mut params: &[Param] = &sig.positional;
    if has_input {
        match params.first() {
            Some(p) if p.piped => {
                binding.piped_param = Some(p.name.clone());
                binding.positional_order.push(p.name.clone());
                params = &params[1..];
            }
            _ if sig.input.is_some() => {}
            _ => {
                return Err(EvalError::at(
                    cmd.verb.span,
                    format!("`{}` does not take piped input", sig.name),
                )
                .with_help(format!("usage: {}", sig.usage())))
            }
        }
    } else if sig.input.is_some() {
        return Err(EvalError::at(
            cmd.verb.span,
            format!(
                "`{}` needs a {} piped into it, like `t | {} …`",
                sig.name,
                sig.input.map(|t| t.name()).unwrap_or("value"),
                sig.name
            ),
        )
        .with_help(format!("usage: {}", sig.usage())));
    }
    let mut rest: &[&'a Item] = positional_items;
    for p in params {
        binding.positional_order.push(p.name.clone());
        let (taken, remaining) = take(p, rest, sig, names)?;
        rest = remaining;
        if taken.is_empty() {
            if !p.optional && p.default.is_none() {
                return Err(missing(cmd, sig, p));
            }
            continue;
        }
        binding.named.insert(p.name.clone(), (p.clone(), taken));
    }
    if let Some(extra) = rest.first() {
        return Err(leftover(extra, sig));
    }

    // 3. Keyword sections.
    for (kw, kw_span, items) in &sections[1..] {
        let Some(kw) = kw else { continue };
        if kw.shape == Shape::Flag {
            if let Some(extra) = items.first() {
                return Err(leftover(extra, sig));
            }
            binding.named.insert(
                kw.name.clone(),
                ((*kw).clone(), vec![(Bound::Flag, *kw_span)]),
            );
            continue;
        }
        let (taken, remaining) = take(kw, items, sig, names)?;
        if taken.is_empty() {
            return Err(EvalError::at(
                *kw_span,
                format!("keyword `{}` of `{}` needs a value", kw.name, sig.name),
            )
            .with_label("no value after this")
            .with_help(format!("usage: {}", sig.usage())));
        }
        if let Some(extra) = remaining.first() {
            return Err(leftover(extra, sig));
        }
        binding
            .named
            .insert(kw.name.clone(), ((*kw).clone(), taken));
    }
    for kw in &sig.keywords {
        if !kw.optional && kw.default.is_none() && !binding.named.contains_key(&kw.name) {
            return Err(missing(cmd, sig, kw));
        }
    }
    Ok(binding)
}

type Taken<'a, 'b> = (Vec<(Bound<'a>, Span)>, &'b [&'a Item]);

/// Takes the items one parameter consumes from the front of `items`.
fn take<'a, 'b>(
    p: &Param,
    items: &'b [&'a Item],
    sig: &Signature,
    names: &dyn Names,
) -> EvalResult<Taken<'a, 'b>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let item = items[i];
        match &p.shape {
            Shape::Flag => break,
            Shape::Word => match (&item.kind, item.bare_word()) {
                (_, Some(w)) => out.push((Bound::Word(w.to_string()), item.span)),
                (ItemKind::Expr { expr, alias: None }, _)
                    if matches!(expr.kind, ExprKind::Str(_)) =>
                {
                    if let ExprKind::Str(s) = &expr.kind {
                        out.push((Bound::Word(s.clone()), item.span));
                    }
                }
                _ => {
                    return Err(EvalError::at(
                        item.span,
                        format!("`{}` of `{}` expects a word", p.name, sig.name),
                    )
                    .with_help(format!("usage: {}", sig.usage())))
                }
            },
            Shape::Column => {
                let order = item.bare_word().and_then(|w| match w {
                    "desc" => Some(true),
                    "asc" => Some(false),
                    _ => None,
                });
                match (order, out.last()) {
                    (Some(desc), Some((Bound::Item(prev), span))) if p.ordered => {
                        let span = span.to(item.span);
                        let prev = *prev;
                        out.pop();
                        out.push((Bound::Order(prev, desc), span));
                    }
                    _ => out.push((Bound::Item(item), item.span)),
                }
            }
            Shape::Value(_) => {
                if let Some(w) = item.bare_word() {
                    if !names.is_var(w) && names.is_verb(w) {
                        // A nested command takes the rest of this section.
                        let rest: Vec<Item> =
                            items[i + 1..].iter().map(|it| (*it).clone()).collect();
                        let end = items.last().map(|it| it.span).unwrap_or(item.span);
                        let nested = Command {
                            verb: Ident {
                                name: w.to_string(),
                                span: item.span,
                            },
                            items: rest,
                            call_syntax: false,
                            span: item.span.to(end),
                        };
                        out.push((Bound::Nested(nested), item.span.to(end)));
                        return Ok((out, &items[items.len()..]));
                    }
                }
                if let ItemKind::Assign { name, .. } = &item.kind {
                    return Err(EvalError::at(
                        name.span,
                        format!(
                            "`{} = …` is only allowed where `{}` takes column expressions",
                            name.name, sig.name
                        ),
                    ));
                }
                out.push((Bound::Item(item), item.span));
            }
        }
        i += 1;
        if !p.many {
            break;
        }
    }
    Ok((out, &items[i..]))
}

fn missing(cmd: &Command, sig: &Signature, p: &Param) -> EvalError {
    let what = if sig.keyword_param(&p.name).is_some() {
        "keyword"
    } else {
        "argument"
    };
    EvalError::at(
        cmd.span,
        format!(
            "`{}` is missing its {what} `{}` ({})",
            sig.name, p.name, p.description
        ),
    )
    .with_label("in this command")
    .with_help(format!("usage: {}", sig.usage()))
    .with_code("rlq::args")
}

/// An item nothing takes: an unknown keyword if it is a word, else one argument too many.
fn leftover(item: &Item, sig: &Signature) -> EvalError {
    match item.bare_word() {
        Some(w) if !sig.keywords.is_empty() => {
            let known = sig.keyword_names();
            EvalError::at(
                item.span,
                format!("unknown keyword `{w}` for `{}`", sig.name),
            )
            .with_label("not a keyword of this verb")
            .with_help(format!(
                "{}\nusage: {}",
                suggestion(w, "keyword", &known),
                sig.usage()
            ))
            .with_code("rlq::keyword")
        }
        _ => EvalError::at(item.span, format!("too many arguments for `{}`", sig.name))
            .with_label("unexpected argument")
            .with_help(format!("usage: {}", sig.usage()))
            .with_code("rlq::args"),
    }
}
