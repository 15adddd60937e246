//! The GGUF header (metadata and tensor table) read as untrusted input, the way llama.cpp's
//! `gguf_init_from_file` validates it: every count is bounded by the bytes left in the file and a
//! hard cap before anything is allocated, every tensor's shape, type, offset and size is checked,
//! and the tensors must tile the data section exactly (aligned, no overlap, no gap, inside the
//! file). What comes out is candle's [`Content`], whose tensor reads are then safe.
//!
//! Memory while reading is bounded by the caps below: at most [`MAX_VALUES`] metadata values
//! (~48 bytes each in memory, ~200 MB at the cap) plus string bytes, which cannot exceed the file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;

use crate::model::error::{ModelError, Result};

/// At most this many tensors (the largest real models have ~2,000).
pub const MAX_TENSORS: u64 = 1 << 16;
/// At most this many metadata keys (real files: 20–60).
pub const MAX_KEYS: u64 = 1 << 16;
/// At most this many metadata values in all, array elements included (a 262k-token vocabulary
/// with scores, types and merges is ~1M).
pub const MAX_VALUES: u64 = 1 << 22;
/// Longest metadata string (chat templates, the longest real ones, are tens of KB).
pub const MAX_STRING_BYTES: u64 = 16 << 20;
/// Longest tensor or key name (ggml's own limit for tensor names is 64).
pub const MAX_NAME_BYTES: u64 = 1 << 10;
/// Arrays nest at most this deep (real files: 1).
pub const MAX_DEPTH: usize = 4;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Largest `general.alignment` accepted (the default is 32).
pub const MAX_ALIGNMENT: u64 = 1 << 16;
const DEFAULT_ALIGNMENT: u64 = 32;

/// A reader that knows how many bytes are left and what it may still allocate.
struct Cursor<'r, R> {
    r: &'r mut R,
    pos: u64,
    size: u64,
    wide: bool,
    values: u64,
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::Format(msg.into())
}

impl<R: Read> Cursor<'_, R> {
    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| {
            bad(format!(
                "the header ends inside {what} at byte {} (truncated or corrupted?): {e}",
                self.pos
            ))
        })?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }
    /// A length or count: u32 in GGUF v1, u64 after.
    fn len(&mut self, what: &str) -> Result<u64> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }
    fn prefix_bytes(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }
    fn string(&mut self, what: &str, max: u64) -> Result<String> {
        let n = self.len(what)?;
        if n > max {
            return Err(bad(format!("{what} is {n} bytes long; the limit is {max}")));
        }
        if n > self.left() {
            return Err(bad(format!(
                "{what} is {n} bytes long, but only {} bytes are left in the file (truncated or corrupted?)",
                self.left()
            )));
        }
        // Bounded by `max` and by the file: safe to allocate.
        let mut v = vec![0u8; usize::try_from(n).map_err(|_| bad("string too long"))?];
        self.r.read_exact(&mut v).map_err(|e| {
            bad(format!(
                "the header ends inside {what} (truncated or corrupted?): {e}"
            ))
        })?;
        self.pos += n;
        // As candle and llama.cpp: some writers NUL-terminate, some strings are not UTF-8.
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }
    fn count_value(&mut self, key: &str) -> Result<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(bad(format!(
                "GGUF metadata holds more than {MAX_VALUES} values (at `{key}`); the limit is {MAX_VALUES}"
            )));
        }
        Ok(())
    }
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        self.count_value(key)?;
        let what = format!("the value of `{key}`");
        Ok(match ty {
            0 => Value::U8(self.u8(&what)?),
            1 => Value::I8(i8::from_le_bytes(self.bytes(&what)?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(&what)?)),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(self.bytes(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(&what)?)),
            7 => match self.u8(&what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(bad(format!(
                        "GGUF `{key}` is a bool of value {b} (not 0 or 1)"
                    )))
                }
            },
            8 => Value::String(self.string(&what, MAX_STRING_BYTES)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(bad(format!(
                        "GGUF `{key}` nests arrays deeper than {MAX_DEPTH}"
                    )));
                }
                let elem = self.u32(&what)?;
                let n = self.len(&what)?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    8 => self.prefix_bytes(),
                    9 => 4 + self.prefix_bytes(),
                    other => {
                        return Err(bad(format!(
                            "GGUF `{key}` is an array of unknown value type {other}"
                        )))
                    }
                };
                let room = self.left() / min;
                if n > room || n > MAX_VALUES {
                    return Err(bad(format!(
                        "GGUF `{key}` claims {n} elements, but the {} bytes left in the file hold at \
                         most {room} (and the limit is {MAX_VALUES})",
                        self.left()
                    )));
                }
                // Grown as read, not reserved from the claimed count.
                let mut vs = Vec::new();
                for _ in 0..n {
                    vs.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(vs)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(&what)?)),
            other => return Err(bad(format!("GGUF `{key}` has unknown value type {other}"))),
        })
    }
}

/// ggml type ids (ggml.h `enum ggml_type`) that candle reads.
fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// One entry of the tensor table, checked on its own.
struct Entry {
    name: String,
    info: TensorInfo,
    bytes: u64,
}

fn read_tensor_entry<R: Read>(c: &mut Cursor<'_, R>, index: u64) -> Result<Entry> {
    let name = c.string(&format!("the name of tensor #{index}"), MAX_NAME_BYTES)?;
    let t = |msg: String| bad(format!("GGUF tensor `{name}`: {msg}"));
    let n_dims = c.u32(&format!("tensor `{name}`"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(t(format!(
            "has {n_dims} dimensions; a tensor has 1 to {MAX_DIMS}"
        )));
    }
    // GGUF lists dimensions innermost first.
    let mut ne = Vec::with_capacity(MAX_DIMS as usize);
    for _ in 0..n_dims {
        let d = if c.wide {
            c.u64(&format!("tensor `{name}`"))?
        } else {
            u64::from(c.u32(&format!("tensor `{name}`"))?)
        };
        ne.push(d);
    }
    let dtype_id = c.u32(&format!("tensor `{name}`"))?;
    let offset = c.u64(&format!("tensor `{name}`"))?;
    let shown: Vec<u64> = ne.iter().rev().copied().collect();
    if ne.contains(&0) {
        return Err(t(format!("has shape {shown:?} with a zero dimension")));
    }
    let elems = ne
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            t(format!(
                "has shape {shown:?}, whose element count overflows"
            ))
        })?;
    let dtype = ggml_dtype(dtype_id)
        .ok_or_else(|| t(format!("has ggml type {dtype_id}, which rlq cannot read")))?;
    let block = dtype.block_size() as u64;
    if ne[0] % block != 0 {
        return Err(t(format!(
            "has rows of {} elements, not a multiple of {dtype:?}'s block of {block}",
            ne[0]
        )));
    }
    let bytes = (elems / block)
        .checked_mul(dtype.type_size() as u64)
        .ok_or_else(|| t(format!("{dtype:?} of shape {shown:?} overflows in bytes")))?;
    let dims = shown
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| t(format!("has shape {shown:?}, too large for this machine")))?;
    Ok(Entry {
        info: TensorInfo {
            ggml_dtype: dtype,
            shape: candle_core::Shape::from(dims),
            offset,
        },
        name,
        bytes,
    })
}

fn alignment_of(metadata: &HashMap<String, Value>) -> Result<u64> {
    let Some(v) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let a = match v {
        Value::U8(x) => u64::from(*x),
        Value::U16(x) => u64::from(*x),
        Value::U32(x) => u64::from(*x),
        Value::U64(x) => *x,
        Value::I8(x) => u64::try_from(*x).unwrap_or(0),
        Value::I16(x) => u64::try_from(*x).unwrap_or(0),
        Value::I32(x) => u64::try_from(*x).unwrap_or(0),
        Value::I64(x) => u64::try_from(*x).unwrap_or(0),
        other => {
            return Err(bad(format!(
                "GGUF `general.alignment` should be an integer, got {other:?}"
            )))
        }
    };
    if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
        return Err(bad(format!(
            "GGUF `general.alignment` is {v:?}; it must be a power of two from 1 to {MAX_ALIGNMENT}"
        )));
    }
    Ok(a)
}

/// The tensors must tile the data section: each starts aligned, exactly where the one before
/// it (by offset) ends after padding, and the last ends inside the file. A tensor whose type or
/// shape was changed without moving the data then shows as an overlap or a gap.
fn check_layout(entries: &mut [Entry], data_start: u64, file_size: u64, align: u64) -> Result<()> {
    let data_len = file_size.saturating_sub(data_start);
    let desc = |e: &Entry| {
        format!(
            "`{}` ({:?} {:?}, {} bytes at data offset {})",
            e.name,
            e.info.ggml_dtype,
            e.info.shape.dims(),
            e.bytes,
            e.info.offset
        )
    };
    // Each tensor on its own: aligned, and inside the file.
    for e in entries.iter() {
        if e.info.offset % align != 0 {
            return Err(bad(format!(
                "GGUF tensor {} is not aligned to {align} bytes",
                desc(e)
            )));
        }
        if e.info
            .offset
            .checked_add(e.bytes)
            .is_none_or(|end| end > data_len)
        {
            return Err(bad(format!(
                "GGUF tensor {} runs past the end of the file ({data_len} bytes of tensor data; \
                 truncated or corrupted?)",
                desc(e)
            )));
        }
    }
    // Together: they tile the data section (offsets and sizes cannot overflow any more).
    entries.sort_by_key(|e| e.info.offset);
    let mut expected = 0u64;
    let mut prev: Option<&Entry> = None;
    for e in entries.iter() {
        match prev {
            Some(p) if e.info.offset < expected => {
                return Err(bad(format!(
                    "GGUF tensors {} and {} overlap: a tensor's type or shape is wrong, or two \
                     tensors share bytes",
                    desc(p),
                    desc(e)
                )))
            }
            Some(p) if e.info.offset > expected => {
                return Err(bad(format!(
                    "GGUF tensor {} is followed by {} unused bytes before {}: its type or shape \
                     does not match its data",
                    desc(p),
                    e.info.offset - expected,
                    desc(e)
                )))
            }
            None if e.info.offset > 0 => {
                return Err(bad(format!(
                    "GGUF tensor data starts with {} unused bytes before {}",
                    e.info.offset,
                    desc(e)
                )))
            }
            _ => {}
        }
        expected = (e.info.offset + e.bytes).div_ceil(align) * align;
        prev = Some(e);
    }
    let slack = data_len.saturating_sub(expected);
    if let (Some(p), true) = (prev, slack >= align) {
        return Err(bad(format!(
            "the last GGUF tensor {} is followed by {slack} bytes that belong to no tensor: its \
             type or shape does not match its data",
            desc(p)
        )));
    }
    Ok(())
}

/// Reads and checks a GGUF header from the start of `r`; `file_size` is the file's length.
pub fn read_header<R: Read + Seek>(r: &mut R, file_size: u64) -> Result<Content> {
    r.seek(SeekFrom::Start(0))
        .map_err(|e| ModelError::Io(e.to_string()))?;
    let mut c = Cursor {
        r,
        pos: 0,
        size: file_size,
        wide: true,
        values: 0,
    };
    let magic = c.bytes::<4>("the magic number")?;
    if &magic != b"GGUF" {
        return Err(bad(format!(
            "not a GGUF file: it starts with {magic:02x?}, not `GGUF`"
        )));
    }
    let version = c.u32("the version")?;
    let magic = match version {
        1 => VersionedMagic::GgufV1,
        2 => VersionedMagic::GgufV2,
        3 => VersionedMagic::GgufV3,
        v => {
            return Err(bad(format!(
                "GGUF version {v} is not supported (1 to 3 are)"
            )))
        }
    };
    c.wide = version >= 2;
    let n_tensors = c.len("the tensor count")?;
    let n_keys = c.len("the metadata count")?;
    // Smallest possible entries: a key (length prefix, type, 1 byte) and a tensor (name prefix,
    // dimension count, one dimension, type, offset).
    let min_key = c.prefix_bytes() + 4 + 1;
    let min_tensor = c.prefix_bytes() + 4 + 4 + 4 + 8;
    let needed = n_keys
        .saturating_mul(min_key)
        .saturating_add(n_tensors.saturating_mul(min_tensor));
    if n_tensors > MAX_TENSORS || n_keys > MAX_KEYS || needed > c.left() {
        return Err(bad(format!(
            "GGUF header claims {n_tensors} tensors and {n_keys} metadata keys, but the file has \
             {} bytes left (truncated or corrupted?); the limits are {MAX_TENSORS} and {MAX_KEYS}",
            c.left()
        )));
    }
    let mut metadata = HashMap::new();
    for i in 0..n_keys {
        let key = c.string(&format!("metadata key #{i}"), MAX_NAME_BYTES)?;
        let ty = c.u32(&format!("the type of `{key}`"))?;
        let value = c.value(ty, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(bad(format!("GGUF metadata key `{key}` appears twice")));
        }
    }
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let e = read_tensor_entry(&mut c, i)?;
        if !seen.insert(e.name.clone()) {
            return Err(bad(format!("GGUF tensor `{}` appears twice", e.name)));
        }
        entries.push(e);
    }
    let align = alignment_of(&metadata)?;
    let data_start = c
        .pos
        .div_ceil(align)
        .checked_mul(align)
        .ok_or_else(|| bad("GGUF data section offset overflows"))?;
    check_layout(&mut entries, data_start, file_size, align)?;
    Ok(Content {
        magic,
        metadata,
        tensor_infos: entries.into_iter().map(|e| (e.name, e.info)).collect(),
        tensor_data_offset: data_start,
    })
}
