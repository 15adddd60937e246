//! Checkpoint folders: `dir/step-000040/` holds the model as an HF folder (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json with the chat template), the
//! optimiser's moments (`optimizer.safetensors`), and `trainer_state.json` (settings, step, the
//! start model's hash, the log so far without timings), and for a LoRA run its factors
//! (`lora.safetensors`; the model file holds the merged weights, so readers see a plain model,
//! and a resume continues from the factors). Timings, which differ between runs,
//! live apart in `timing.json`, so the same seed on the same machine gives byte-identical files
//! everywhere else.
//!
//! A folder is written under a temporary name in the same parent and renamed into place when
//! complete: an interrupted save never leaves a half-written `step-…`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::log::LogRow;
use super::settings::TuneSettings;
use super::TuneError;
use crate::model::deferred::{self, Deferred};
use crate::model::save::{write_hf_folder_deferred, write_json};
use crate::model::Model;

/// The format tag of `trainer_state.json`.
pub const STATE_FORMAT: &str = "rlq-tune/1";

/// A LoRA run's factors inside a checkpoint, under PEFT's tensor names (`base_model.model.` +
/// the factor's name). Not `adapter_model.safetensors` with an `adapter_config.json`: HF would
/// then read the folder as an adapter instead of the merged model beside it; and the prefix
/// keeps rlq's folder loader, which reads every `*.safetensors`, from taking them for weights.
pub const LORA_FILE: &str = "lora.safetensors";
const PEFT_PREFIX: &str = "base_model.model.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: String,
    pub settings: TuneSettings,
    /// Optimiser steps done.
    pub step: usize,
    pub start_source: String,
    pub start_hash: String,
    /// Hash of the training items (prompt and answer ids), so a resume uses the same data.
    pub data_hash: String,
    pub n_items: usize,
    /// Log rows so far, `seconds`, `tokens_per_s` and `sample_s` left out (see `timing.json`).
    pub log: Vec<LogRow>,
}

/// Per-step wall-clock figures, kept out of the deterministic files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub seconds: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    /// Per step, GRPO's sampling seconds (absent from checkpoints written before it existed).
    #[serde(default)]
    pub sample_s: Vec<Option<f64>>,
}

pub fn step_dir_name(step: usize) -> String {
    format!("step-{step:06}")
}

/// Write one checkpoint into `out/step-NNNNNN`, atomically. Refuses to replace an existing one.
pub fn save(
    out: &Path,
    start: &Model,
    weights: &[Deferred<'_>],
    optimizer: &[Deferred<'_>],
    adapters: Option<&HashMap<String, Tensor>>,
    state: &TrainerState,
    timing: &Timing,
) -> Result<PathBuf, TuneError> {
    let io = |e: &dyn std::fmt::Display| TuneError::Checkpoint(format!("`{}`: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(|e| io(&e))?;
    let target = out.join(step_dir_name(state.step));
    if target.exists() {
        return Err(TuneError::Checkpoint(format!(
            "`{}` already exists; a checkpoint is never overwritten",
            target.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".rlq-step-")
        .tempdir_in(out)
        .map_err(|e| io(&e))?;
    // Weights and moments are made one tensor at a time as they are written (LoRA's merged
    // weights, moments parked on disk): saving holds no second copy of either.
    write_hf_folder_deferred(start, weights, tmp.path()).map_err(|e| io(&e))?;
    deferred::save(optimizer, &tmp.path().join("optimizer.safetensors")).map_err(|e| io(&e))?;
    if let Some(a) = adapters {
        let peft: Vec<Deferred> = a
            .iter()
            .map(|(k, t)| Deferred::of(format!("{PEFT_PREFIX}{k}"), t))
            .collect();
        deferred::save(&peft, &tmp.path().join(LORA_FILE)).map_err(|e| io(&e))?;
    }
    let st = serde_json::to_value(state).map_err(|e| io(&e))?;
    write_json(&tmp.path().join("trainer_state.json"), &st).map_err(|e| io(&e))?;
    let tm = serde_json::to_value(timing).map_err(|e| io(&e))?;
    write_json(&tmp.path().join("timing.json"), &tm).map_err(|e| io(&e))?;
    let kept = tmp.keep();
    std::fs::rename(&kept, &target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        io(&e)
    })?;
    Ok(target)
}

/// The trainer state, weights and optimiser moments of a checkpoint folder.
pub struct Loaded {
    pub state: TrainerState,
    pub timing: Timing,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    /// A LoRA run's factors.
    pub adapters: Option<HashMap<String, Tensor>>,
}

pub fn load(dir: &Path, device: &Device) -> Result<Loaded, TuneError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        TuneError::Checkpoint(format!("`{}`: {what}: {e}", dir.display()))
    };
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).map_err(|e| {
        bad(
            "no readable trainer_state.json (is this a tune checkpoint?)",
            &e,
        )
    })?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| bad("trainer_state.json", &e))?;
    if state.format != STATE_FORMAT {
        return Err(bad(
            "trainer_state.json",
            &format!("format `{}`, expected `{STATE_FORMAT}`", state.format),
        ));
    }
    let timing = std::fs::read_to_string(dir.join("timing.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), device)
        .map_err(|e| bad("model.safetensors", &e))?;
    let optimizer = candle_core::safetensors::load(dir.join("optimizer.safetensors"), device)
        .map_err(|e| bad("optimizer.safetensors", &e))?;
    let adapters = if state.settings.lora.is_some() {
        let peft = candle_core::safetensors::load(dir.join(LORA_FILE), device)
            .map_err(|e| bad(LORA_FILE, &e))?;
        let factors = peft
            .into_iter()
            .map(|(k, t)| match k.strip_prefix(PEFT_PREFIX) {
                Some(name) => Ok((name.to_string(), t)),
                None => Err(bad(LORA_FILE, &format!("`{k}` is not a PEFT factor name"))),
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        Some(factors)
    } else {
        None
    };
    Ok(Loaded {
        state,
        timing,
        weights,
        optimizer,
        adapters,
    })
}

/// Checkpoint folders already in `out`, sorted.
pub fn existing(out: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    v.sort();
    v
}
