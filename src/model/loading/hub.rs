//! hf-hub ids (`owner/name[@revision]`) resolved to a snapshot folder in the standard HF cache
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), downloading what is
//! missing unless `HF_HUB_OFFLINE=1`. The folder is then read like any safetensors folder.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::model::error::{ModelError, Result};

/// How long we wait to learn that the hub is unreachable before giving up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
const OPTIONAL: [&str; 2] = ["tokenizer_config.json", "chat_template.jinja"];
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// `owner/name` or `owner/name@revision`, with hub-legal characters.
pub fn looks_like_repo_id(s: &str) -> bool {
    let id = s.split_once('@').map_or(s, |(id, _)| id);
    let mut parts = id.split('/');
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}

/// Splits `owner/name@rev` into id and revision (default `main`).
pub fn parse_repo_id(s: &str) -> (String, String) {
    match s.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id.to_string(), rev.to_string()),
        _ => (s.trim_end_matches('@').to_string(), "main".to_string()),
    }
}

/// Where and how the hub is reached: read from the environment once per load
/// ([`HubSettings::from_env`]) and passed down as a value, so nothing below reads a variable
/// another thread may be setting, and a host (or a test) can supply its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The HF cache folder (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// `HF_HUB_OFFLINE`: never download, use the cache or fail.
    pub offline: bool,
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the file at `HF_TOKEN_PATH`, or `HF_HOME/token`.
    pub token: Option<String>,
}

impl HubSettings {
    /// The settings the `HF_*` variables give, as huggingface_hub reads them.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let cache = match var("HF_HUB_CACHE") {
            Some(p) => PathBuf::from(p),
            None => Cache::from_env().path().clone(),
        };
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let token = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .into_iter()
            .find_map(|name| var(name).map(|t| t.trim().to_string()))
            .or_else(|| {
                let path = match (var("HF_TOKEN_PATH"), var("HF_HOME")) {
                    (Some(p), _) => PathBuf::from(p),
                    (None, Some(h)) => PathBuf::from(h).join("token"),
                    (None, None) => dirs::home_dir()?.join(".cache/huggingface/token"),
                };
                let t = crate::model::files::read_text_capped(&path, "HF token", 64 << 10).ok()?;
                let t = t.trim();
                (!t.is_empty()).then(|| t.to_string())
            });
        HubSettings {
            cache,
            offline,
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".to_string()),
            token,
        }
    }
}

/// Whether a TCP connection to the hub can be opened within [`PROBE_TIMEOUT`].
fn hub_reachable(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("https://")
        .map(|r| (r, 443))
        .or_else(|| endpoint.strip_prefix("http://").map(|r| (r, 80)));
    let Some((rest, default_port)) = rest else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:{default_port}")
    };
    let Ok(addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, PROBE_TIMEOUT).is_ok())
}

/// The snapshot folder of `repo` in the cache: `refs/<revision>` names the commit; a revision
/// that is itself a commit hash names its folder directly.
fn cached_snapshot(cache: &Cache, repo: &Repo) -> Option<PathBuf> {
    let root = cache.path().join(repo.folder_name());
    let commit = match std::fs::read_to_string(root.join("refs").join(repo.revision())) {
        Ok(c) => c.trim().to_string(),
        Err(_) => repo.revision().to_string(),
    };
    let dir = root.join("snapshots").join(commit);
    dir.is_dir().then_some(dir)
}

/// The cached snapshot folder if it holds everything a folder load needs; else the first
/// missing file's name.
fn from_cache(cache: &Cache, repo: &Repo) -> std::result::Result<PathBuf, String> {
    let dir = cached_snapshot(cache, repo).ok_or_else(|| "the whole repo".to_string())?;
    let has = |f: &str| dir.join(f).is_file();
    for f in REQUIRED {
        if !has(f) {
            return Err(f.to_string());
        }
    }
    let index = dir.join(INDEX);
    if index.is_file() {
        let text = crate::model::files::read_text_capped(
            &index,
            INDEX,
            crate::model::files::CONFIG_MAX_BYTES,
        )
        .map_err(|_| INDEX.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| INDEX.to_string())?;
        let shards: std::collections::BTreeSet<&str> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if let Some(s) = shards.iter().find(|s| !has(s)) {
            return Err(s.to_string());
        }
    } else if !has(SINGLE) {
        return Err(SINGLE.to_string());
    }
    Ok(dir)
}

/// Resolves `owner/name[@revision]` to a local snapshot folder, downloading if allowed, with
/// the settings of the `HF_*` variables.
pub fn resolve(source: &str) -> Result<PathBuf> {
    resolve_with(source, &HubSettings::from_env())
}

/// [`resolve`] with given settings.
pub fn resolve_with(source: &str, settings: &HubSettings) -> Result<PathBuf> {
    let (id, revision) = parse_repo_id(source);
    let repo = Repo::with_revision(id.clone(), RepoType::Model, revision.clone());
    let cache = Cache::new(settings.cache.clone());
    let missing = match from_cache(&cache, &repo) {
        Ok(dir) => return Ok(dir),
        Err(missing) => missing,
    };
    let where_ = cache.path().display().to_string();
    if settings.offline {
        return Err(ModelError::Hub(format!(
            "HF_HUB_OFFLINE is set and `{id}@{revision}` is not (fully) in the HF cache at {where_} \
             (missing {missing}); download it first or unset HF_HUB_OFFLINE"
        )));
    }
    let endpoint = settings.endpoint.clone();
    if !hub_reachable(&endpoint) {
        return Err(ModelError::Hub(format!(
            "cannot reach {endpoint} (no network?) and `{id}@{revision}` is not (fully) in the HF \
             cache at {where_} (missing {missing})"
        )));
    }
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint)
        .with_token(settings.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| ModelError::Hub(e.to_string()))?;
    let r = api.repo(repo);
    let get = |f: &str| {
        r.get(f)
            .map_err(|e| ModelError::Hub(format!("`{id}@{revision}`: cannot fetch {f}: {e}")))
    };
    let config = get("config.json")?;
    get("tokenizer.json")?;
    for f in OPTIONAL {
        let _ = r.get(f); // absent in many repos
    }
    match r.get(INDEX) {
        Ok(index) => {
            let text = crate::model::files::read_text_capped(
                &index,
                INDEX,
                crate::model::files::CONFIG_MAX_BYTES,
            )?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Format(format!("{INDEX}: {e}")))?;
            let shards: std::collections::BTreeSet<String> = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| {
                    m.values()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for s in shards {
                get(&s)?;
            }
        }
        Err(_) => {
            get(SINGLE)?;
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| ModelError::Hub("cache path has no parent".into()))
}
