//! Binding a generically parsed command to a verb's signature: which items are keywords, which
//! fill which parameter. Shared by evaluation and `rlq check`; evaluates nothing.

use std::collections::BTreeMap;

use super::error::{suggestion, ErrorCode, EvalError, EvalResult};
use super::registry::{Param, Shape, Signature, Type};
use crate::syntax::{BinaryOp, Command, Expr, ExprKind, Ident, Item, ItemKind, Span};

/// A command as binding sees it: a verb and a run of items. A nested command (`save compare
/// g0, g1 to "x"`) is a view of the rest of its parent's items, not a copy, so a long chain of
/// nested verb words costs no more memory than the statement itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommandRef<'a> {
    pub verb: &'a str,
    pub verb_span: Span,
    pub items: &'a [Item],
    pub span: Span,
}

impl<'a> From<&'a Command> for CommandRef<'a> {
    fn from(cmd: &'a Command) -> CommandRef<'a> {
        CommandRef {
            verb: &cmd.verb.name,
            verb_span: cmd.verb.span,
            items: &cmd.items,
            span: cmd.span,
        }
    }
}

/// How one parameter's item was taken.
#[derive(Debug, Clone)]
pub(crate) enum Bound<'a> {
    Item(&'a Item),
    /// A verb name inside the arguments starts a nested command that takes the rest of the
    /// section: `save compare g0, g1 to "x"`.
    Nested(CommandRef<'a>),
    Word(String),
    /// A verb's name where a function is expected (`map xs abs`): the verb as a function.
    Verb(&'a str),
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
    cmd: CommandRef<'a>,
    sig: &Signature,
    has_input: bool,
    names: &dyn Names,
) -> EvalResult<Binding<'a>> {
    // 1. Split into the positional section and keyword sections: runs of `cmd.items`, as the
    //    index range each covers (a keyword word ends one run and starts the next).
    let mut sections: Vec<(Option<&Param>, Span, std::ops::Range<usize>)> =
        vec![(None, cmd.verb_span, 0..0)];
    for (at, item) in cmd.items.iter().enumerate() {
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
                sections.push((Some(kw), item.span, at + 1..at + 1));
                continue;
            }
        }
        if let Some(last) = sections.last_mut() {
            last.2.end = at + 1;
        }
    }

    let mut binding = Binding {
        named: BTreeMap::new(),
        piped_param: None,
        positional_order: Vec::new(),
    };

    // 2. Positional parameters.
    let positional_items = &cmd.items[sections[0].2.clone()];
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
                    cmd.verb_span,
                    format!("`{}` does not take piped input", sig.name),
                )
                .with_help(format!("usage: {}", sig.usage())))
            }
        }
    } else if sig.input.is_some() {
        return Err(EvalError::at(
            cmd.verb_span,
            format!(
                "`{}` needs a {} piped into it, like `t | {} …`",
                sig.name,
                sig.input.map(|t| t.name()).unwrap_or("value"),
                sig.name
            ),
        )
        .with_help(format!("usage: {}", sig.usage())));
    }
    let mut rest: &'a [Item] = positional_items;
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
    for (kw, kw_span, range) in &sections[1..] {
        let Some(kw) = kw else { continue };
        let items = &cmd.items[range.clone()];
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

type Taken<'a> = (Vec<(Bound<'a>, Span)>, &'a [Item]);

/// A word outside the choices the signature declares for its keyword (`loss foo`) is refused
/// while binding, so `rlq check` and completion agree with the verb before anything runs.
fn check_choice(p: &Param, sig: &Signature, w: &str, span: Span) -> EvalResult<()> {
    if p.choices.is_empty() || p.choices.iter().any(|c| c == w) {
        return Ok(());
    }
    Err(
        EvalError::at(span, format!("unknown {} `{w}` for `{}`", p.name, sig.name))
            .with_help(format!("choose one of: {}", p.choices.join(", ")))
            .with_code(ErrorCode::Keyword),
    )
}

/// Takes the items one parameter consumes from the front of `items`.
fn take<'a>(
    p: &Param,
    items: &'a [Item],
    sig: &Signature,
    names: &dyn Names,
) -> EvalResult<Taken<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let item = &items[i];
        match &p.shape {
            Shape::Flag => break,
            Shape::Word => match (&item.kind, item.bare_word()) {
                (_, Some(w)) => {
                    check_choice(p, sig, w, item.span)?;
                    out.push((Bound::Word(w.to_string()), item.span))
                }
                (ItemKind::Expr { expr, alias: None }, _)
                    if matches!(expr.kind, ExprKind::Str(_)) =>
                {
                    if let ExprKind::Str(s) = &expr.kind {
                        check_choice(p, sig, s, item.span)?;
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
            Shape::Value(ty) => {
                let verb = item
                    .bare_word()
                    .filter(|w| !names.is_var(w) && names.is_verb(w));
                match (verb, &item.kind) {
                    // Where a function is expected, a verb's name is that verb, not a call.
                    (Some(w), _) if *ty == Type::Func => out.push((Bound::Verb(w), item.span)),
                    (Some(w), _) => {
                        // A nested command takes the rest of this section.
                        let end = items.last().map(|it| it.span).unwrap_or(item.span);
                        let nested = CommandRef {
                            verb: w,
                            verb_span: item.span,
                            items: &items[i + 1..],
                            span: item.span.to(end),
                        };
                        out.push((Bound::Nested(nested), item.span.to(end)));
                        return Ok((out, &items[items.len()..]));
                    }
                    (None, ItemKind::Assign { name, .. }) => {
                        return Err(EvalError::at(
                            name.span,
                            format!(
                                "`{} = …` is only allowed where `{}` takes column expressions",
                                name.name, sig.name
                            ),
                        ));
                    }
                    (None, _) => out.push((Bound::Item(item), item.span)),
                }
            }
        }
        i += 1;
        if !p.many {
            break;
        }
    }
    Ok((out, &items[i..]))
}

fn missing(cmd: CommandRef<'_>, sig: &Signature, p: &Param) -> EvalError {
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
    .with_code(ErrorCode::Args)
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
            .with_code(ErrorCode::Keyword)
        }
        _ => EvalError::at(item.span, format!("too many arguments for `{}`", sig.name))
            .with_label("unexpected argument")
            .with_help(format!("usage: {}", sig.usage()))
            .with_code(ErrorCode::Args),
    }
}

/// `t_cut -1` parses as the subtraction `t_cut - 1`: the parser does not know which words are a
/// verb's keywords. A keyword minus something means nothing, so where an item's leftmost operand
/// is a keyword of `sig` (and no keyword is waiting for a value), the item is split into the
/// keyword and the negated rest; the keyword's own range check then judges the negative value.
/// Likewise `positions [1]` parses as indexing a variable `positions`: where the indexed name is
/// a keyword of `sig`, the item is split into the keyword and the one-element list.
/// `None` when no item needs it (the common case; nothing is copied).
pub(crate) fn split_keyword_minus(items: &[Item], sig: &Signature) -> Option<Vec<Item>> {
    let mut out: Option<Vec<Item>> = None;
    let mut awaiting = false;
    for (i, item) in items.iter().enumerate() {
        if !awaiting {
            if let Some(kw) = item.bare_word().and_then(|w| sig.keyword_param(w)) {
                awaiting = kw.shape != Shape::Flag;
                if let Some(out) = &mut out {
                    out.push(item.clone());
                }
                continue;
            }
            if let ItemKind::Expr { expr, alias } = &item.kind {
                let split = strip_keyword_minus(expr, sig).or_else(|| keyword_index(expr, sig));
                if let Some((keyword, value)) = split {
                    let out = out.get_or_insert_with(|| items[..i].to_vec());
                    out.push(Item {
                        span: keyword.span,
                        kind: ItemKind::Expr {
                            expr: Expr {
                                span: keyword.span,
                                kind: ExprKind::Var(keyword.name),
                            },
                            alias: None,
                        },
                    });
                    out.push(Item {
                        span: value.span.to(alias.as_ref().map_or(value.span, |a| a.span)),
                        kind: ItemKind::Expr {
                            expr: value,
                            alias: alias.clone(),
                        },
                    });
                    continue;
                }
            }
        }
        awaiting = false;
        if let Some(out) = &mut out {
            out.push(item.clone());
        }
    }
    out
}

/// `kw [x]` → (`kw`, `[x]`) for a keyword `kw` that takes a value.
fn keyword_index(e: &Expr, sig: &Signature) -> Option<(Ident, Expr)> {
    let ExprKind::Index(target, index) = &e.kind else {
        return None;
    };
    let ExprKind::Var(name) = &target.kind else {
        return None;
    };
    if sig.keyword_param(name)?.shape == Shape::Flag {
        return None;
    }
    let keyword = Ident {
        name: name.clone(),
        span: target.span,
    };
    // The list's span runs from after the keyword to the closing bracket.
    let span = Span::new(target.span.end, e.span.end);
    let list = Expr {
        kind: ExprKind::List(vec![(**index).clone()]),
        span,
    };
    Some((keyword, list))
}

/// `kw - x op …` → (`kw`, `-x op …`), descending the left operands. Recursion is bounded by the
/// parser's node limit per statement.
fn strip_keyword_minus(e: &Expr, sig: &Signature) -> Option<(Ident, Expr)> {
    let ExprKind::Binary(op, l, r) = &e.kind else {
        return None;
    };
    if let (BinaryOp::Sub, ExprKind::Var(name)) = (op, &l.kind) {
        let kw = sig.keyword_param(name)?;
        if kw.shape == Shape::Flag {
            return None;
        }
        let keyword = Ident {
            name: name.clone(),
            span: l.span,
        };
        let value = match r.kind {
            ExprKind::Number { value, is_int } => Expr {
                kind: ExprKind::Number {
                    value: -value,
                    is_int,
                },
                span: r.span,
            },
            _ => Expr {
                kind: ExprKind::Unary(crate::syntax::UnaryOp::Neg, r.clone()),
                span: r.span,
            },
        };
        return Some((keyword, value));
    }
    let (keyword, left) = strip_keyword_minus(l, sig)?;
    let span = left.span.to(r.span);
    Some((
        keyword,
        Expr {
            kind: ExprKind::Binary(*op, Box::new(left), r.clone()),
            span,
        },
    ))
}
