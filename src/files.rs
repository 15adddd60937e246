//! Files on disk, defensively: atomic writes that never follow a planted link and never leave
//! litter for long, reads that open only regular files and stop at a stated size.
//!
//! Every writer of rlq (tables, graphs, reports, plots) goes through [`write_atomic`]; every
//! whole-file read of user-named text (scripts, imports) through [`read_text_capped`].

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest script (or imported file) read whole: 64 MiB. Scripts are typed by people; a
/// bigger one is a mistake (or `/dev/zero`), not a program.
pub const MAX_SCRIPT_BYTES: u64 = 64 << 20;

/// Temp files are named `.rlq-<target hash>-<pid>-<random>.<ext>` in the target's folder: short
/// (a 251-byte target name still leaves room under the 255-byte limit), unpredictable and
/// created with `O_EXCL` by `tempfile` (a planted symlink is never followed), and traceable to
/// their target and process so a later save of the same target can sweep what a killed one
/// left behind.
const TEMP_PREFIX: &str = ".rlq-";

/// Why an atomic write failed: around the write (folder, temp file, rename) or in it.
#[derive(Debug)]
pub enum WriteError<E> {
    Io(io::Error),
    Write(E),
}

impl<E: std::fmt::Display> std::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io(e) => e.fmt(f),
            WriteError::Write(e) => e.fmt(f),
        }
    }
}

/// Writes `path` atomically: `write` fills a fresh temp file in the same folder (given as a
/// file and by its path, for writers that insist on opening a path themselves), which is then
/// synced and renamed over `path`. A failed or interrupted write never touches the old file; on
/// failure the temp file is removed, and one left by a killed process is removed by the next
/// write of the same target (see [`sweep_stale`]). `extension` is the temp file's (some
/// encoders pick the format from it).
pub fn write_atomic<E>(
    path: &Path,
    extension: &str,
    write: impl FnOnce(&mut File, &Path) -> Result<(), E>,
) -> Result<(), WriteError<E>> {
    let dir = folder_of(path);
    std::fs::create_dir_all(&dir).map_err(WriteError::Io)?;
    let prefix = temp_prefix(path);
    sweep_stale(&dir, &prefix);
    let suffix = if extension.is_empty() {
        ".tmp".to_string()
    } else {
        format!(".{extension}")
    };
    let temp_name = format!("{prefix}{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&temp_name).suffix(&suffix).rand_bytes(6);
    // The saved file gets the usual mode (0666 less the umask, as `File::create` gives), not
    // tempfile's private 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(WriteError::Io)?;
    // The temp file is deleted when `tmp` drops, on every early return below.
    let tmp_path = tmp.path().to_path_buf();
    write(tmp.as_file_mut(), &tmp_path).map_err(WriteError::Write)?;
    // Writers that reopened the path wrote through their own handle; fsync on ours still
    // flushes the file (same inode).
    tmp.as_file().sync_all().map_err(WriteError::Io)?;
    tmp.persist(path).map_err(|e| WriteError::Io(e.error))?;
    Ok(())
}

/// Writes `text` to `path` atomically (see [`write_atomic`]).
pub fn write_text_atomic(path: &Path, text: &str) -> Result<(), WriteError<io::Error>> {
    use std::io::Write;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    write_atomic(path, ext, |f, _| f.write_all(text.as_bytes()))
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The name prefix of the temp files of writes to `path`, in `path`'s folder:
/// `.rlq-<8 hex digits of FNV-1a of the target's file name>-`, then the writing process's id.
/// This is how leftovers of a killed save are found (by the next save, or by hand:
/// `ls -a <folder> | grep '^\.rlq-'`).
pub fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or(b"");
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{TEMP_PREFIX}{h:08x}-")
}

/// Removes temp files of earlier writes of the same target whose process is gone (killed
/// mid-save: kill -9, a second Ctrl-C). Where processes cannot be looked up (no `/proc`), a
/// temp file untouched for a day counts as abandoned. Failures are ignored: sweeping is tidying,
/// never a reason to refuse the save.
fn sweep_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let proc_fs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Only plain files (never follow or remove a link or a folder someone put there).
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let abandoned = if proc_fs {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            meta.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600)
        };
        if abandoned {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a path is, for messages: "a folder", "a FIFO (named pipe)", … (one wording for the
/// language's files and a model's).
pub fn kind_of(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, ft: std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` is {}, not a regular file",
            path.display(),
            kind_of(ft)
        ),
    )
}

/// Opens `path` for reading only if it is a regular file (after following links): a FIFO would
/// block for ever in `open`, a device like `/dev/zero` never ends, a folder is no data.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    let file = File::open(path)?;
    // The path may have been swapped between the check and the open: check what was opened.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    Ok(file)
}

/// Reads a regular file whole, refusing one over `limit` bytes (checked before reading, and
/// again while reading in case it grows).
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let too_big = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "`{}` is {size} bytes, over the limit of {limit} bytes ({} MiB) for a file read whole",
                path.display(),
                limit >> 20
            ),
        )
    };
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_big(size));
    }
    read_at_most(file, limit)?.map_err(too_big)
}

/// Reads an opened file to its end unless it holds more than `limit` bytes: `Err(n)` then, with
/// the `n > limit` bytes seen. Callers check the size first; this catches a file that grows
/// between the check and the read (one byte past the cap is enough to know).
pub fn read_at_most(file: File, limit: u64) -> io::Result<Result<Vec<u8>, u64>> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    Ok(if read > limit { Err(read) } else { Ok(bytes) })
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, limit)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "`{}` is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_short_and_per_target() {
        let a = temp_prefix(Path::new("d/out.csv"));
        assert_eq!(a, temp_prefix(Path::new("other/out.csv")));
        assert_ne!(a, temp_prefix(Path::new("d/out2.csv")));
        assert_eq!(a.len(), TEMP_PREFIX.len() + 9);
    }
}
