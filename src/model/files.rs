//! Opening the files of a checkpoint, which come from the internet: only regular files are
//! opened (opening a FIFO with no writer blocks for ever; `/dev/zero` never ends), and files that
//! are read whole (configs, tokenizers, templates) are capped at a stated size.

use std::fs::File;
use std::path::Path;

use super::{ModelError, Result};

/// Largest `config.json`, `tokenizer_config.json`, shard index or `chat_template.json` read.
/// Real ones are a few KB (tokenizer_config.json with added tokens: up to ~1 MB).
pub const CONFIG_MAX_BYTES: u64 = 16 << 20;
/// Largest `tokenizer.json` read (Gemma 3's, the largest common one, is ~33 MB).
pub const TOKENIZER_MAX_BYTES: u64 = 64 << 20;
/// Largest chat template accepted from any source (real ones are under 64 KB).
pub const TEMPLATE_MAX_BYTES: u64 = 1 << 20;

/// Whether anything (even a dangling or looping link) exists at `path`.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Checks that `path` is a regular file (following links) and returns its size. `what` names the
/// file for messages ("config.json", "GGUF file").
pub fn check_regular(path: &Path, what: &str) -> Result<u64> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !exists(path) => {
            return Err(ModelError::Io(format!(
                "{what} `{}` not found",
                path.display()
            )))
        }
        // A link that cannot be followed: dangling, or a loop (the OS says which).
        Err(e) if exists(path) => {
            return Err(ModelError::Io(format!(
                "{what} `{}` is a symbolic link that cannot be followed: {e}",
                path.display()
            )))
        }
        Err(e) => {
            return Err(ModelError::Io(format!(
                "cannot use {what} `{}`: {e}",
                path.display()
            )))
        }
    };
    if !meta.is_file() {
        return Err(ModelError::Io(format!(
            "{what} `{}` is {}, not a regular file",
            path.display(),
            crate::files::kind_of(meta.file_type())
        )));
    }
    Ok(meta.len())
}

/// Opens a regular file (see [`check_regular`]); returns it with its size.
pub fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    let len = check_regular(path, what)?;
    let file = File::open(path)
        .map_err(|e| ModelError::Io(format!("cannot open {what} `{}`: {e}", path.display())))?;
    Ok((file, len))
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Reads a regular file whole, refusing one larger than `cap` bytes.
pub fn read_capped(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, what)?;
    let too_big = |n: u64| {
        ModelError::Io(format!(
            "{what} `{}` is {n} bytes; rlq reads at most {} for a {what}",
            path.display(),
            mib(cap)
        ))
    };
    if len > cap {
        return Err(too_big(len));
    }
    crate::files::read_at_most(file, cap)
        .map_err(|e| ModelError::Io(format!("cannot read {what} `{}`: {e}", path.display())))?
        .map_err(too_big)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, what: &str, cap: u64) -> Result<String> {
    String::from_utf8(read_capped(path, what, cap)?).map_err(|e| {
        ModelError::Format(format!(
            "{what} `{}` is not UTF-8 text: {e}",
            path.display()
        ))
    })
}
