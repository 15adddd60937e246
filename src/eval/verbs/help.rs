//! `help` and `help <verb>`, generated from the registry.

use crate::eval::context::EvalContext;
use crate::eval::error::{suggestion, EvalError, EvalResult};
use crate::eval::registry::{Args, Param, Registry, Shape, Signature, Verb};
use crate::eval::value::Value;

pub struct HelpVerb;

impl Verb for HelpVerb {
    fn signature(&self) -> Signature {
        Signature::new("help", "list the verbs, or describe one")
            .category("session")
            .positional(Param {
                optional: true,
                ..Param::new("topic", Shape::Word, "a verb name")
            })
            .example("help", "all verbs")
            .example("help where", "how to use `where`")
    }
    fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
        let topic = args.word("topic");
        // A user function: its signature.
        if let Some(Value::Func(f)) = topic.and_then(|t| ctx.lookup(t)) {
            return Ok(Value::Str(format!(
                "fn {}({}) — a function defined in {}\n",
                f.name,
                f.params.join(", "),
                f.source.name
            )));
        }
        help_text(ctx.registry(), topic)
            .map(Value::Str)
            .map_err(|msg| EvalError::at(args.span_of("topic"), msg.0).with_help(msg.1))
    }
}

/// The help text for everything (`None`) or one verb. Error: (message, suggestion).
pub fn help_text(reg: &Registry, topic: Option<&str>) -> Result<String, (String, String)> {
    match topic {
        None => {
            let mut by_cat: std::collections::BTreeMap<&str, Vec<&Signature>> = Default::default();
            for s in reg.signatures() {
                by_cat.entry(s.category.as_str()).or_default().push(s);
            }
            let width = reg.signatures().map(|s| s.name.len()).max().unwrap_or(0);
            let mut out = String::from("rlq verbs (help <verb> for details)\n");
            for (cat, sigs) in by_cat {
                out.push_str(&format!("\n{cat}:\n"));
                for s in sigs {
                    out.push_str(&format!("  {:width$}  {}\n", s.name, s.description));
                }
            }
            out.push_str("\nstatements: let x = expr · fn f(a, b) = expr · import \"file.rlq\" · a | verb …\n");
            Ok(out)
        }
        Some(name) => {
            let Some(entry) = reg.get(name) else {
                return Err((
                    format!("no verb called `{name}`"),
                    suggestion(name, "verb", &reg.names()),
                ));
            };
            let s = &entry.signature;
            let mut out = format!("{} — {}\n\nusage: {}\n", s.name, s.description, s.usage());
            if !s.positional.is_empty() || !s.keywords.is_empty() {
                out.push_str("\narguments:\n");
                for p in s.positional.iter().chain(&s.keywords) {
                    let default = p
                        .default
                        .as_ref()
                        .map(|d| format!(" (default {d})"))
                        .unwrap_or_default();
                    // The signature's choices are the one list (binding checks them too).
                    let choices = if p.choices.is_empty() {
                        String::new()
                    } else {
                        format!(" — one of: {}", p.choices.join(", "))
                    };
                    // The declared range, which binding enforces.
                    let range = p
                        .range
                        .map(|r| format!(" — {}", r.describe()))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "  {:10} {}{choices}{range}{default}\n",
                        p.name, p.description
                    ));
                }
            }
            if !s.examples.is_empty() {
                out.push_str("\nexamples:\n");
                for ex in &s.examples {
                    if ex.note.is_empty() {
                        out.push_str(&format!("  {}\n", ex.source));
                    } else {
                        out.push_str(&format!("  {}    # {}\n", ex.source, ex.note));
                    }
                }
            }
            Ok(out)
        }
    }
}
