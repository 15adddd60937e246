//! Chat templates: the Jinja template a checkpoint ships, rendered with HF `apply_chat_template`
//! semantics (trim/lstrip blocks, `messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
//! `raise_exception`, `strftime_now`, a non-escaping `tojson`, and Python string/dict methods).

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, State, Value};

use super::tokenizer::TextTokenizer;
use crate::model::error::{ModelError, Result};

/// A compiled chat template plus the special-token strings it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat";

/// Templates come with downloaded models, so rendering is bounded: at most this many engine
/// instructions (a real template on a long conversation uses tens of thousands)...
pub const TEMPLATE_FUEL: u64 = 20_000_000;
/// ...this deep in nested loops, macros and includes...
pub const TEMPLATE_RECURSION: usize = 100;
/// ...and at most this much output (a prompt is text the model reads: far below this).
pub const TEMPLATE_MAX_OUTPUT: usize = 16 << 20;
/// Largest `tojson(indent=N)` (Python allows any; templates use 2 or 4).
const MAX_JSON_INDENT: usize = 64;

/// A writer that fails once more than [`TEMPLATE_MAX_OUTPUT`] bytes were written.
struct CappedOutput {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > TEMPLATE_MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are taken from the tokenizer.
    pub fn new(source: &str, tokenizer: &TextTokenizer) -> Result<Self> {
        let piece = |id: Option<u32>| {
            id.and_then(|i| tokenizer.id_to_piece(i))
                .unwrap_or_default()
        };
        let bos = piece(tokenizer.bos_id);
        let eos = piece(tokenizer.eos_ids.first().copied());
        Self::with_tokens(source, &bos, &eos)
    }

    pub fn with_tokens(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let max = crate::model::files::TEMPLATE_MAX_BYTES;
        if source.len() as u64 > max {
            return Err(ModelError::ChatTemplate(format!(
                "the template is {} bytes; rlq accepts templates of at most {max} bytes",
                source.len()
            )));
        }
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        // transformers renders with trim_blocks + lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_unknown_method_callback(python_method);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| ModelError::ChatTemplate(format!("cannot parse template: {e:#}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders `(role, content)` messages; with `add_generation_prompt` the result ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[(&str, &str)], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| {
                Value::from_serialize(serde_json::json!({"role": role, "content": content}))
            })
            .collect();
        let tpl = self
            .env
            .get_template(NAME)
            .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
        let mut out = CappedOutput {
            buf: Vec::new(),
            over: false,
        };
        let rendered = tpl.render_captured_to(
            minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.clone(),
                eos_token => self.eos_token.clone(),
            },
            &mut out,
        );
        match rendered {
            Ok(_) => String::from_utf8(out.buf)
                .map_err(|e| ModelError::ChatTemplate(format!("rendered non-UTF-8 text: {e}"))),
            Err(_) if out.over => Err(ModelError::ChatTemplate(format!(
                "rendering stopped: the output passed the limit of {TEMPLATE_MAX_OUTPUT} bytes"
            ))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(ModelError::ChatTemplate(format!(
                "rendering stopped: the template ran past the limit of {TEMPLATE_FUEL} steps \
                 (a loop that never ends or is far too long?)"
            ))),
            Err(e) => Err(ModelError::ChatTemplate(format!("rendering failed: {e:#}"))),
        }
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Python's `json.dumps(x, ensure_ascii=False)` (HF's `tojson`): no HTML escaping.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let indent = match indent.filter(|v| !v.is_none() && !v.is_undefined()) {
        None => None,
        Some(v) => match usize::try_from(v.clone()) {
            Ok(n) if n <= MAX_JSON_INDENT => Some(n),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "tojson indent must be an integer from 0 to {MAX_JSON_INDENT}, got {v}"
                    ),
                ))
            }
        },
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let text = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut buf = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&json, &mut ser)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            String::from_utf8(buf).unwrap_or_default()
        }
        None => python_json_compact(&json),
    };
    Ok(Value::from_safe_string(text))
}

/// Python's default separators are `", "` and `": "`.
fn python_json_compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(xs) => {
            let items: Vec<String> = xs.iter().map(python_json_compact).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        serde_json::Value::String(k.clone()),
                        python_json_compact(v)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `strftime_now(fmt)` in UTC, supporting the directives chat templates use.
fn strftime_now(fmt: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime_utc(&fmt, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats a Unix time (UTC) with `%Y %m %d %e %B %b %A %a %H %M %S %y %j %%`.
pub fn strftime_utc(fmt: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &y.to_string(),
            Some('y') => out += &format!("{:02}", y.rem_euclid(100)),
            Some('m') => out += &format!("{m:02}"),
            Some('d') => out += &format!("{d:02}"),
            Some('e') => out += &format!("{d:>2}"),
            Some('B') => out += MONTHS[(m - 1) as usize],
            Some('b') => out += &MONTHS[(m - 1) as usize][..3],
            Some('A') => out += WEEKDAYS[weekday],
            Some('a') => out += &WEEKDAYS[weekday][..3],
            Some('H') => out += &format!("{:02}", sod / 3600),
            Some('M') => out += &format!("{:02}", sod % 3600 / 60),
            Some('S') => out += &format!("{:02}", sod % 60),
            Some('j') => out += &format!("{yday:03}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

// Howard Hinnant's days <-> civil date algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Python methods templates call on strings and dicts (`x.strip()`, `d.items()`, ...): minijinja's
// own pycompat, plus `str.rsplit`, which it lacks (Qwen-style templates split reasoning off the
// end of a message with it).

fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, Error> {
    match (value.as_str(), method) {
        (Some(s), "rsplit") => rsplit(s, args),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// `s.rsplit(sep=None, maxsplit=-1)` as Python: from the right, at most `maxsplit` splits.
fn rsplit(s: &str, args: &[Value]) -> std::result::Result<Value, Error> {
    let sep = args
        .first()
        .filter(|v| !v.is_none() && !v.is_undefined())
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        });
    let maxsplit = args
        .get(1)
        .and_then(|v| i64::try_from(v.clone()).ok())
        .and_then(|n| usize::try_from(n).ok());
    let mut parts: Vec<String> = match (&sep, maxsplit) {
        (Some(sep), _) if sep.is_empty() => {
            return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"))
        }
        (Some(sep), Some(n)) => s.rsplitn(n + 1, sep.as_str()).map(str::to_string).collect(),
        (Some(sep), None) => s.rsplit(sep.as_str()).map(str::to_string).collect(),
        (None, Some(n)) => {
            // Whitespace runs from the right; the rest (left part) keeps its inner spacing.
            let mut out = Vec::new();
            let mut rest = s.trim_end();
            while out.len() < n {
                match rest.rfind(char::is_whitespace) {
                    Some(i) => {
                        out.push(rest[i..].trim_start().to_string());
                        rest = rest[..i].trim_end();
                    }
                    None => break,
                }
            }
            if !rest.is_empty() {
                out.push(rest.to_string());
            }
            out
        }
        (None, None) => s.split_whitespace().rev().map(str::to_string).collect(),
    };
    parts.reverse();
    Ok(Value::from(parts))
}
