//! From sample descriptions (text or exact ids) to exact-token [`Sample`]s (METHOD.md section 3):
//! chat template on text prompts, the model's own greedy answer when none is given, T_cut.

use super::eap::{Sample, SampleLoss};
use super::graph::AnswerPositions;
use super::loss::LossKind;
use crate::model::generate::{generate_batch_observed, GenerateOptions};
use crate::model::hooked::HookedTransformer;
use crate::model::Model;

/// One sample as a user describes it; exact ids win over text.
#[derive(Debug, Clone, Default)]
pub struct SampleSpec {
    pub id: i64,
    pub prompt: Option<String>,
    pub prompt_ids: Option<Vec<u32>>,
    pub answer: Option<String>,
    pub answer_ids: Option<Vec<u32>>,
    pub corrupt: Option<String>,
    pub corrupt_ids: Option<Vec<u32>>,
    /// logit_diff: the correct and the wrong next token (text of one token, or an id).
    pub target: Option<String>,
    pub wrong: Option<String>,
    pub target_id: Option<u32>,
    pub wrong_id: Option<u32>,
    /// This sample's T_cut, overriding the run's (e.g. a study's shared T_cut in a column).
    pub t_cut: Option<usize>,
    /// The table row it came from (0-based), for messages.
    pub row: usize,
}

/// Which answer tokens enter the loss.
#[derive(Debug, Clone, PartialEq)]
pub enum TCut {
    /// The first max(⌊α·T̄⌋, 1), T̄ the mean answer length over the samples.
    Alpha(f64),
    /// The first n.
    Fixed(usize),
    /// The whole answer.
    Full,
    /// Chosen ones (`positions [0, 2]`, `positions "last"`): the loss is the mean NLL of those
    /// answer tokens only, the answer fed up to the last of them. self_entropy and nll only.
    Positions(AnswerPositions),
}

/// What one prepared sample's loss reads of its answer: the fields of
/// [`super::graph::SampleRecord`] known before scoring.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LossWindow {
    /// The whole answer (given or generated); empty for logit_diff.
    pub answer_ids: Vec<u32>,
    /// `answer_ids` decoded (special tokens kept, so the text is exactly the ids).
    pub answer: String,
    /// Indices into `answer_ids` whose prediction enters the loss.
    pub loss_positions: Vec<usize>,
    /// The tokens there (logit_diff: the target and the wrong token).
    pub loss_ids: Vec<u32>,
    /// Answer tokens the window spans (last loss position + 1); None for logit_diff.
    pub t_cut: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub loss: LossKind,
    pub t_cut: TCut,
    /// Apply the model's chat template to text prompts.
    pub chat: bool,
    /// Longest greedy answer generated when a sample has none.
    pub max_answer_tokens: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            loss: LossKind::SelfEntropy,
            t_cut: TCut::Alpha(0.1),
            chat: true,
            max_answer_tokens: 256,
        }
    }
}

/// Prepared samples and the T_cut that was applied (None when it varies, does not apply or
/// positions were chosen).
pub struct Prepared {
    pub samples: Vec<Sample>,
    pub t_cut: Option<usize>,
    /// Per sample: its whole answer and what of it the loss reads (for the graph's records).
    pub windows: Vec<LossWindow>,
}

impl Prepared {
    /// Answer tokens per sample (generated or given).
    pub fn answers(&self) -> impl Iterator<Item = &[u32]> {
        self.windows.iter().map(|w| w.answer_ids.as_slice())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("sample {id}: {msg}")]
    Sample { id: i64, msg: String },
    /// Options that do not go together, whatever the samples.
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    #[error("generation: {0}")]
    Candle(#[from] candle_core::Error),
    /// Ctrl-C while answers were generated: the complete answers so far, (sample id, tokens),
    /// so a caller can keep them (an answer cut short by the interrupt is not among them).
    #[error("interrupted while generating answers ({} done)", answers.len())]
    Interrupted { answers: Vec<(i64, Vec<u32>)> },
}

fn err(id: i64, msg: impl Into<String>) -> PrepareError {
    PrepareError::Sample {
        id,
        msg: msg.into(),
    }
}

/// Text prompt → ids: through the chat template (as a single user turn) when asked and
/// available; never an extra BOS beyond what the template writes.
fn encode_prompt(model: &Model, text: &str, chat: bool) -> Result<Vec<u32>, PrepareError> {
    let rendered = if chat && model.chat_template.is_some() {
        model.apply_chat_template(&[("user", text)], true)?
    } else {
        text.to_string()
    };
    Ok(model.tokenizer.encode(&rendered, false)?)
}

/// Every id of `ids` (from `column` of the sample's row) must be in the model's vocabulary:
/// candle would otherwise fail deep inside with "index-select invalid index".
fn check_vocab(
    model: &Model,
    s: &SampleSpec,
    column: &str,
    ids: &[u32],
) -> Result<(), PrepareError> {
    let vocab = model.config.vocab_size;
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(t) => Err(err(
            s.id,
            format!(
                "column `{column}`, row {}: token id {t} is outside the model's vocabulary \
                 ({vocab} ids, 0 to {})",
                s.row,
                vocab.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}

/// A sequence the model reads must fit its context (`max_position`).
fn check_context(
    model: &Model,
    s: &SampleSpec,
    what: &str,
    len: usize,
) -> Result<(), PrepareError> {
    let context = model.config.max_position;
    if len > context {
        return Err(err(
            s.id,
            format!(
                "row {}: {what} is {len} tokens, over the model's context of {context} tokens",
                s.row
            ),
        ));
    }
    Ok(())
}

fn one_token(model: &Model, id: i64, text: &str, what: &str) -> Result<u32, PrepareError> {
    let ids = model.tokenizer.encode(text, false)?;
    match ids.as_slice() {
        [t] => Ok(*t),
        _ => Err(err(
            id,
            format!(
                "{what} `{text}` is {} tokens; logit_diff needs exactly one (give `{what}_id`)",
                ids.len()
            ),
        )),
    }
}

/// Prepare every sample. Answers are generated (greedy, KV cache) only when a loss needs one
/// and the sample has none; `on_progress(done, total)` reports that generation by answers,
/// `on_within(tokens, max_tokens)` by tokens of the answer being generated.
pub fn prepare(
    model: &Model,
    tf: &HookedTransformer,
    specs: &[SampleSpec],
    opts: &PrepareOptions,
    on_progress: &mut dyn FnMut(usize, usize),
    on_within: &mut dyn FnMut(usize, usize),
    interrupted: &dyn Fn() -> bool,
) -> Result<Prepared, PrepareError> {
    let mut prompts = Vec::with_capacity(specs.len());
    for s in specs {
        let (p, column) = match (&s.prompt_ids, &s.prompt) {
            (Some(ids), _) => (ids.clone(), "prompt_ids"),
            (None, Some(text)) => (encode_prompt(model, text, opts.chat)?, "prompt"),
            (None, None) => return Err(err(s.id, "needs `prompt` or `prompt_ids`")),
        };
        if p.is_empty() {
            return Err(err(s.id, "the prompt is empty"));
        }
        check_vocab(model, s, column, &p)?;
        check_context(model, s, "the prompt", p.len())?;
        prompts.push(p);
    }

    if opts.loss == LossKind::LogitDiff {
        if let TCut::Positions(_) = &opts.t_cut {
            return Err(PrepareError::Options(
                "positions choose answer tokens; logit_diff reads the last prompt position only"
                    .into(),
            ));
        }
        let mut samples = Vec::with_capacity(specs.len());
        let mut windows = Vec::with_capacity(specs.len());
        for (s, p) in specs.iter().zip(&prompts) {
            let target = match (s.target_id, &s.target) {
                (Some(t), _) => t,
                (None, Some(t)) => one_token(model, s.id, t, "target")?,
                _ => return Err(err(s.id, "logit_diff needs a `target` column")),
            };
            let column = if s.target_id.is_some() {
                "target_id"
            } else {
                "target"
            };
            check_vocab(model, s, column, &[target])?;
            let wrong = match (s.wrong_id, &s.wrong) {
                (Some(t), _) => t,
                (None, Some(t)) => one_token(model, s.id, t, "wrong")?,
                _ => return Err(err(s.id, "logit_diff needs a `wrong` column")),
            };
            let column = if s.wrong_id.is_some() {
                "wrong_id"
            } else {
                "wrong"
            };
            check_vocab(model, s, column, &[wrong])?;
            samples.push(Sample {
                id: s.id,
                tokens: p.clone(),
                corrupt: corrupt_tokens(model, s, opts, &[])?,
                loss: SampleLoss::LogitDiff {
                    position: p.len() - 1,
                    target,
                    wrong,
                },
            });
            windows.push(LossWindow {
                loss_ids: vec![target, wrong],
                ..LossWindow::default()
            });
        }
        return Ok(Prepared {
            samples,
            t_cut: None,
            windows,
        });
    }
    if let TCut::Positions(_) = &opts.t_cut {
        if matches!(opts.loss, LossKind::Kl) {
            return Err(PrepareError::Options(
                "positions choose answer tokens for self_entropy or nll; kl reads a window \
                 (use t_cut)"
                    .into(),
            ));
        }
        if let Some(s) = specs.iter().find(|s| s.t_cut.is_some()) {
            return Err(err(
                s.id,
                format!(
                    "row {}: the table has a `t_cut` column and positions were given: say \
                     which tokens enter the loss one way",
                    s.row
                ),
            ));
        }
    }

    // Answers: given, or (self-entropy / kl) the model's own greedy continuation.
    let gen_len = match &opts.t_cut {
        TCut::Fixed(n) => (*n).max(1),
        TCut::Positions(AnswerPositions::Indices(v)) => {
            v.iter().max().map_or(opts.max_answer_tokens, |m| m + 1)
        }
        _ => opts.max_answer_tokens,
    };
    let mut answers = Vec::with_capacity(specs.len());
    let mut generated: Vec<(i64, Vec<u32>)> = Vec::new();
    let total = specs.len();
    for (i, (s, p)) in specs.iter().zip(&prompts).enumerate() {
        let a = match (&s.answer_ids, &s.answer) {
            (Some(ids), _) => ids.clone(),
            (None, Some(text)) => model.tokenizer.encode(text, false)?,
            (None, None) if opts.loss == LossKind::Nll => {
                return Err(err(
                    s.id,
                    "loss nll needs an `answer` (or `answer_ids`) column",
                ))
            }
            (None, None) => {
                if interrupted() {
                    return Err(PrepareError::Interrupted { answers: generated });
                }
                let g = GenerateOptions {
                    max_tokens: gen_len,
                    stop_tokens: model.config.eos_token_ids.clone(),
                    ..Default::default()
                };
                let out = generate_batch_observed(
                    tf,
                    std::slice::from_ref(p),
                    &g,
                    &[g.seed],
                    interrupted,
                    on_within,
                )?
                .pop()
                .map(|g| g.tokens)
                .unwrap_or_default();
                if interrupted() {
                    // Generation stops at the interrupt: this answer may be cut short.
                    return Err(PrepareError::Interrupted { answers: generated });
                }
                generated.push((s.id, out.clone()));
                on_progress(i + 1, total);
                out
            }
        };
        if a.is_empty() {
            return Err(err(s.id, "the answer is empty"));
        }
        let column = if s.answer_ids.is_some() {
            "answer_ids"
        } else {
            "answer"
        };
        check_vocab(model, s, column, &a)?;
        answers.push(a);
    }

    let t_cut = match &opts.t_cut {
        TCut::Alpha(alpha) => {
            let mean = answers.iter().map(|a| a.len() as f64).sum::<f64>() / answers.len() as f64;
            Some(((alpha * mean).floor() as usize).max(1))
        }
        TCut::Fixed(n) => Some((*n).max(1)),
        TCut::Full | TCut::Positions(_) => None,
    };

    let mut samples = Vec::with_capacity(specs.len());
    let mut windows = Vec::with_capacity(specs.len());
    let mut used = std::collections::BTreeSet::new();
    for ((s, p), a) in specs.iter().zip(&prompts).zip(&answers) {
        // Answer indices whose prediction enters the loss, ascending; a contiguous 0..n is
        // the paper's T_cut window.
        let (picked, chosen) = match &opts.t_cut {
            TCut::Positions(which) => (answer_positions(model, s, which, a)?, true),
            _ => {
                let n = s.t_cut.or(t_cut).map_or(a.len(), |t| t.max(1).min(a.len()));
                used.insert(s.t_cut.or(t_cut));
                ((0..n).collect::<Vec<_>>(), false)
            }
        };
        // At least one position, checked above or by construction (answers are never empty).
        let n = picked.last().map_or(1, |last| last + 1);
        // Feed p ++ s[0 .. n−1]; position |p|−1+t predicts s_t.
        let mut tokens = p.clone();
        tokens.extend_from_slice(&a[..n - 1]);
        check_context(model, s, "the prompt with its answer", tokens.len())?;
        let start = p.len() - 1;
        let loss = match opts.loss {
            LossKind::Kl => SampleLoss::Kl { start, len: n },
            _ if chosen => SampleLoss::Picked {
                positions: picked.iter().map(|i| start + i).collect(),
                targets: picked.iter().map(|&i| a[i]).collect(),
            },
            _ => SampleLoss::Tokens {
                start,
                targets: a[..n].to_vec(),
            },
        };
        samples.push(Sample {
            id: s.id,
            corrupt: corrupt_tokens(model, s, opts, &a[..n - 1])?,
            tokens,
            loss,
        });
        windows.push(LossWindow {
            answer_ids: a.clone(),
            // Special tokens kept: the text is exactly the ids (a stop token shows).
            answer: model.tokenizer.decode(a, false).unwrap_or_default(),
            loss_ids: picked.iter().map(|&i| a[i]).collect(),
            loss_positions: picked,
            t_cut: Some(n),
        });
    }
    // One T_cut for the whole run, when there is one.
    let t_cut = match used.len() {
        1 => used.into_iter().next().flatten(),
        _ => None,
    };
    Ok(Prepared {
        samples,
        t_cut,
        windows,
    })
}

/// The answer indices `which` names for one sample's answer `a`, checked against its length.
/// `last` is the answer's last token, not counting a final stop token (the end-of-turn a
/// generated answer ends with), unless the answer is nothing else.
fn answer_positions(
    model: &Model,
    s: &SampleSpec,
    which: &AnswerPositions,
    a: &[u32],
) -> Result<Vec<usize>, PrepareError> {
    match which {
        AnswerPositions::Last => {
            let stops = &model.config.eos_token_ids;
            let ends_in_stop = a.last().is_some_and(|t| stops.contains(t));
            let last = if ends_in_stop && a.len() > 1 {
                a.len() - 2
            } else {
                a.len().saturating_sub(1)
            };
            Ok(vec![last])
        }
        AnswerPositions::Indices(v) => {
            if v.is_empty() {
                return Err(err(s.id, "positions: name at least one answer token"));
            }
            if let Some(&bad) = v.iter().find(|&&i| i >= a.len()) {
                return Err(err(
                    s.id,
                    format!(
                        "row {}: position {bad} is past the answer, which has {} tokens \
                         (positions 0 to {})",
                        s.row,
                        a.len(),
                        a.len().saturating_sub(1)
                    ),
                ));
            }
            let mut sorted = v.clone();
            sorted.sort_unstable();
            sorted.dedup();
            Ok(sorted)
        }
    }
}

/// The corrupted input: its prompt (ids or text) followed by the same answer tokens as the clean.
fn corrupt_tokens(
    model: &Model,
    s: &SampleSpec,
    opts: &PrepareOptions,
    answer_part: &[u32],
) -> Result<Option<Vec<u32>>, PrepareError> {
    let (mut c, column) = match (&s.corrupt_ids, &s.corrupt) {
        (Some(ids), _) => (ids.clone(), "corrupt_ids"),
        (None, Some(text)) => (encode_prompt(model, text, opts.chat)?, "corrupt"),
        (None, None) => return Ok(None),
    };
    check_vocab(model, s, column, &c)?;
    c.extend_from_slice(answer_part);
    check_context(model, s, "the corrupted prompt with the answer", c.len())?;
    Ok(Some(c))
}
