//! `load "<source>"`: picks the reader for a source (GGUF file, safetensors folder, hf-hub id),
//! checks the weights against the config, and shares one `Arc<Model>` per (source, device, dtype).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use candle_core::{DType, Device};
use serde::Serialize;

use super::checkpoint::check_float_dtype;
use super::{gguf, hub, safetensors_dir};
use crate::model::config::{Family, ModelConfig};
use crate::model::error::{ModelError, Result};
use crate::model::text::tokenizer::TextTokenizer;
use crate::model::weights::Weights;
use crate::model::Model;

// The checkpoint vocabulary, also at its old path (`model::load::expected_weights`).
pub use super::checkpoint::{
    check_manifest, expected_weights, validate_weights, Checkpoint, PresentTensor,
};

/// Where and in which precision the weights should live.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    /// Keep a GGUF's quantized weight matrices quantized in memory and dequantize them block by
    /// block inside each matmul (CPU and f32 only; elsewhere they are dequantized at load).
    /// The f32 values are the same either way; this keeps memory near the file size.
    pub keep_quantized: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            keep_quantized: true,
        }
    }
}

/// A summary of a loaded model, for printing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub family: Family,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub n_params: usize,
    pub dtype: String,
    pub device: String,
    pub source: String,
    /// Bytes the weights occupy in memory (quantized matrices at their stored size).
    pub weight_bytes: usize,
    /// Whether weight matrices are kept quantized (see `LoadOptions::keep_quantized`).
    pub quantized: bool,
}

impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {} layers, {} heads ({} kv), d_model {}, vocab {}, {:.1}M params, {} on {}, \
             weights {:.0} MB{}",
            self.source,
            self.family.name(),
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.d_model,
            self.vocab_size,
            self.n_params as f64 / 1e6,
            self.dtype,
            self.device,
            self.weight_bytes as f64 / 1e6,
            if self.quantized { " (quantized)" } else { "" }
        )
    }
}

impl Model {
    /// A model assembled in code (no tokenizer, no chat template), e.g. random test models.
    pub fn from_parts(
        config: ModelConfig,
        weights: Weights,
        source: impl Into<String>,
        device: Device,
        dtype: DType,
    ) -> Self {
        Self {
            config,
            weights,
            source: source.into(),
            device,
            dtype,
            tokenizer: TextTokenizer::empty(),
            chat_template: None,
        }
    }

    pub fn info(&self) -> ModelInfo {
        let c = &self.config;
        ModelInfo {
            family: c.family,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            d_model: c.d_model,
            vocab_size: c.vocab_size,
            n_params: c.n_params(),
            dtype: dtype_name(self.dtype).to_string(),
            device: device_name(&self.device),
            source: self.source.clone(),
            weight_bytes: self.weights.storage_bytes(),
            quantized: self.weights.names().any(|n| self.weights.is_quantized(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// device / dtype strings

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
pub fn device_from_str(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let ordinal = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:") {
            Some(n) => n.parse::<usize>().map_err(|_| {
                ModelError::Device(format!("bad device `{s}`: expected cpu, cuda or cuda:N"))
            })?,
            None => {
                return Err(ModelError::Device(format!(
                    "unknown device `{s}`: expected cpu, cuda or cuda:N"
                )))
            }
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(ModelError::Device(format!(
            "device `{s}` needs CUDA, but this rlq was built without the `cuda` feature \
             (rebuild with `cargo build --features cuda`) or no GPU is visible"
        )));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| ModelError::Device(format!("cannot open CUDA device {ordinal}: {e}")))
}

/// `f32`, `f64`, `bf16`, `f16` (also `float32`, `bfloat16`, `float16`, `half`).
pub fn dtype_from_str(s: &str) -> Result<DType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" => Ok(DType::F32),
        "f64" | "float64" | "double" => Ok(DType::F64),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "half" => Ok(DType::F16),
        other => Err(ModelError::Device(format!(
            "unsupported dtype `{other}`: expected f32, f64, bf16 or f16"
        ))),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        other => other.as_str(),
    }
}

pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

// ---------------------------------------------------------------------------------------------
// load + cache

/// What a source string points at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Gguf(PathBuf),
    Folder(PathBuf),
    Hub(String),
}

fn classify(source: &str) -> Result<Source> {
    let path = Path::new(source);
    if source.to_ascii_lowercase().ends_with(".gguf") {
        // Says what the path is instead (a directory, a FIFO, a link loop) if not a file.
        crate::model::files::check_regular(path, "GGUF file")?;
        return Ok(Source::Gguf(canonical(path)));
    }
    if path.is_dir() {
        return Ok(Source::Folder(canonical(path)));
    }
    if crate::model::files::exists(path) && std::fs::metadata(path).is_err() {
        // A dangling link or a link loop: say so rather than take it for a hub id.
        crate::model::files::check_regular(path, "model source")?;
    }
    if path.exists() {
        return Err(ModelError::Io(format!(
            "`{source}` is a file but not a .gguf; give a .gguf file, a folder with config.json \
             and *.safetensors, or a hub id like HuggingFaceTB/SmolLM2-135M-Instruct"
        )));
    }
    if hub::looks_like_repo_id(source) {
        return Ok(Source::Hub(source.to_string()));
    }
    Err(ModelError::Io(format!(
        "`{source}` is neither an existing .gguf file, a folder, nor a hub id (owner/name[@revision])"
    )))
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

type CacheKey = (String, String, String, bool);

fn cache() -> &'static Mutex<HashMap<CacheKey, Weak<Model>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Weak<Model>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads a model from a `.gguf` path, a safetensors folder, or an hf-hub id (`owner/name[@rev]`).
/// A model still alive elsewhere in the process is returned again instead of being re-read.
pub fn load(source: &str, opts: &LoadOptions) -> Result<Arc<Model>> {
    check_float_dtype(opts.dtype)?;
    let src = classify(source)?;
    let canon = match &src {
        Source::Gguf(p) | Source::Folder(p) => p.display().to_string(),
        Source::Hub(id) => format!("hf:{id}"),
    };
    let key = (
        canon,
        device_name(&opts.device),
        dtype_name(opts.dtype).to_string(),
        opts.keep_quantized,
    );
    if let Some(m) = cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .and_then(Weak::upgrade)
    {
        return Ok(m);
    }
    let ckpt = match &src {
        Source::Gguf(p) => gguf::load_gguf(p, &opts.device, opts.dtype, opts.keep_quantized)?,
        Source::Folder(p) => safetensors_dir::load_dir(p, &opts.device, opts.dtype)?,
        Source::Hub(id) => {
            // Say how the string was read: a mistyped local path also lands here.
            let dir = hub::resolve(id).map_err(|e| match e {
                ModelError::Hub(msg) => ModelError::Hub(format!(
                    "no local file or folder `{id}` exists, so it was taken as a hub id: {msg}"
                )),
                other => other,
            })?;
            safetensors_dir::load_dir(&dir, &opts.device, opts.dtype)?
        }
    };
    validate_weights(&ckpt.config, &ckpt.weights)?;
    let model = Arc::new(Model {
        config: ckpt.config,
        weights: ckpt.weights,
        source: source.to_string(),
        device: opts.device.clone(),
        dtype: opts.dtype,
        tokenizer: ckpt.tokenizer,
        chat_template: ckpt.chat_template,
    });
    let mut guard = cache().lock().unwrap_or_else(|e| e.into_inner());
    // Another thread may have loaded the same model meanwhile; keep the first.
    if let Some(m) = guard.get(&key).and_then(Weak::upgrade) {
        return Ok(m);
    }
    guard.retain(|_, w| w.strong_count() > 0);
    guard.insert(key, Arc::downgrade(&model));
    Ok(model)
}
