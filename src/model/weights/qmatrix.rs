//! Weight matrices kept in their GGUF quantized form, dequantized a block of rows at a time.
//!
//! A 4-bit GGUF is ~6× smaller than its f32 dequantization, and attribution never needs all of
//! the f32 weights at once: each matmul needs one matrix, and the backward needs it again. So a
//! [`QMatrix`] holds the quantized bytes and hands out f32 rows on demand. The f32 values are the
//! ones `QTensor::dequantize` gives for the whole tensor (the same `to_float` per block), so
//! results equal those of the dense f32 weights up to the summation order of the matmul.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

/// A `[rows, cols]` quantized matrix on the CPU; rows are whole quantization blocks.
pub struct QMatrix {
    q: QTensor,
    rows: usize,
    cols: usize,
    row_bytes: usize,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QMatrix({:?}, {}×{})",
            self.q.dtype(),
            self.rows,
            self.cols
        )
    }
}

/// Whether a GGUF tensor type is a block quantization (not a plain float array).
pub fn is_block_quantized(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

impl QMatrix {
    /// Wraps a 2-D CPU `QTensor` whose rows hold a whole number of blocks.
    pub fn new(q: QTensor) -> Result<Self> {
        let (rows, cols) = q.shape().dims2()?;
        let dtype = q.dtype();
        if !cols.is_multiple_of(dtype.block_size()) {
            candle_core::bail!(
                "quantized matrix rows of {cols} are not a whole number of {dtype:?} blocks"
            );
        }
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        if q.storage_size_in_bytes() != rows * row_bytes {
            candle_core::bail!("quantized matrix storage does not match its shape");
        }
        if !is_block_quantized(dtype) || !matches!(q.data()?, Cow::Borrowed(_)) {
            candle_core::bail!("quantized matrices must be block-quantized and live on the CPU");
        }
        Ok(Self {
            q,
            rows,
            cols,
            row_bytes,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn ggml_dtype(&self) -> GgmlDType {
        self.q.dtype()
    }
    /// Bytes held in memory.
    pub fn storage_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// Decodes rows `r0..r0+n` into `out` (`n · cols` floats), row groups in parallel.
    pub fn dequantize_rows_into(&self, r0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        if r0 + n > self.rows || out.len() != n * self.cols {
            candle_core::bail!("rows {r0}..{} out of range for {} rows", r0 + n, self.rows);
        }
        let data = self.q.data()?;
        let bytes = &data[r0 * self.row_bytes..(r0 + n) * self.row_bytes];
        let (rb, cols, dtype) = (self.row_bytes, self.cols, self.q.dtype());
        // ~64 Ki values per task: enough work to amortise scheduling, small enough to balance.
        let rows_per_task = (65536 / cols.max(1)).max(1);
        out.par_chunks_mut(rows_per_task * cols)
            .zip(bytes.par_chunks(rows_per_task * rb))
            .try_for_each(|(o, b)| decode(dtype, b, o))
    }

    /// f32 rows `r0..r0+n`, `[n, cols]`.
    pub fn dequantize_rows(&self, r0: usize, n: usize) -> Result<Tensor> {
        let mut out = vec![0f32; n * self.cols];
        self.dequantize_rows_into(r0, n, &mut out)?;
        Tensor::from_vec(out, (n, self.cols), &Device::Cpu)
    }

    /// The whole matrix in f32.
    pub fn dequantize(&self) -> Result<Tensor> {
        self.dequantize_rows(0, self.rows)
    }

    /// f32 rows picked by index (an embedding lookup), `[ids.len(), cols]`.
    pub fn gather_rows(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            candle_core::bail!("index {bad} out of range for {} rows", self.rows);
        }
        let data = self.q.data()?;
        let (rb, cols, dtype) = (self.row_bytes, self.cols, self.q.dtype());
        let mut out = vec![0f32; ids.len() * cols];
        out.par_chunks_mut(cols.max(1))
            .zip(ids.par_iter())
            .try_for_each(|(o, &i)| {
                decode(dtype, &data[i as usize * rb..(i as usize + 1) * rb], o)
            })?;
        Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)
    }

    /// The matrix with its rows reordered: row `i` of the result is row `perm[i]` of `self`.
    /// Rows are whole blocks, so this moves bytes and never requantizes.
    pub fn permute_rows(&self, perm: &[usize]) -> Result<Self> {
        if perm.len() != self.rows || perm.iter().any(|&p| p >= self.rows) {
            candle_core::bail!("bad row permutation for {} rows", self.rows);
        }
        let data = self.q.data()?;
        let rb = self.row_bytes;
        // u64 backing keeps the bytes aligned for every block type (all align to ≤ 8).
        let mut buf = vec![0u64; (self.rows * rb).div_ceil(8)];
        let bytes = as_bytes_mut(&mut buf, self.rows * rb);
        for (i, &p) in perm.iter().enumerate() {
            bytes[i * rb..(i + 1) * rb].copy_from_slice(&data[p * rb..(p + 1) * rb]);
        }
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, self.q.dtype())?;
        Self::new(QTensor::new(storage, (self.rows, self.cols))?)
    }
}

/// Decodes whole blocks of `dtype` from `bytes` into `out` with candle's own `to_float`, so the
/// values are exactly those of `QTensor::dequantize`.
fn decode(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    fn go<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> Result<()> {
        let size = std::mem::size_of::<T>();
        if !bytes.len().is_multiple_of(size)
            || out.len() != bytes.len() / size * T::BLCK_SIZE
            || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0
        {
            candle_core::bail!("quantized rows are misaligned or do not match the output");
        }
        // SAFETY: the length is a whole number of `T`s and the pointer is aligned for `T` (both
        // checked above); blocks are plain old data (integers and floats) valid for any bits.
        let blocks =
            unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) };
        T::to_float(blocks, out);
        Ok(())
    }
    use candle_core::quantized::k_quants::*;
    match dtype {
        GgmlDType::Q4_0 => go::<BlockQ4_0>(bytes, out),
        GgmlDType::Q4_1 => go::<BlockQ4_1>(bytes, out),
        GgmlDType::Q5_0 => go::<BlockQ5_0>(bytes, out),
        GgmlDType::Q5_1 => go::<BlockQ5_1>(bytes, out),
        GgmlDType::Q8_0 => go::<BlockQ8_0>(bytes, out),
        GgmlDType::Q8_1 => go::<BlockQ8_1>(bytes, out),
        GgmlDType::Q2K => go::<BlockQ2K>(bytes, out),
        GgmlDType::Q3K => go::<BlockQ3K>(bytes, out),
        GgmlDType::Q4K => go::<BlockQ4K>(bytes, out),
        GgmlDType::Q5K => go::<BlockQ5K>(bytes, out),
        GgmlDType::Q6K => go::<BlockQ6K>(bytes, out),
        GgmlDType::Q8K => go::<BlockQ8K>(bytes, out),
        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
            candle_core::bail!("{dtype:?} is not block-quantized")
        }
    }
}

/// The first `len` bytes of a `u64` buffer.
fn as_bytes_mut(buf: &mut [u64], len: usize) -> &mut [u8] {
    assert!(len <= buf.len() * 8);
    // SAFETY: u8 has alignment 1 and no invalid bit patterns; the length is within the buffer,
    // and the returned slice borrows `buf` mutably for its whole life.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn sample(rows: usize, cols: usize, dtype: GgmlDType) -> (QMatrix, Tensor) {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let t = Tensor::from_vec(vals, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let full = q.dequantize(&Device::Cpu).unwrap();
        (QMatrix::new(q).unwrap(), full)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    // Row blocks must dequantize to exactly the rows of the whole-tensor dequantization:
    // both run the same per-block `to_float`, so the tolerance is 0.
    #[test]
    fn row_blocks_equal_whole_dequantization() {
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
        ] {
            let (m, full) = sample(10, 512, dtype);
            for (r0, n) in [(0, 10), (3, 4), (9, 1), (0, 1)] {
                let got = m.dequantize_rows(r0, n).unwrap();
                assert_eq!(max_abs_diff(&got, &full.narrow(0, r0, n).unwrap()), 0.0);
            }
            let got = m.gather_rows(&[7, 0, 7, 2]).unwrap();
            let idx = Tensor::new(&[7u32, 0, 7, 2], &Device::Cpu).unwrap();
            let want = full.index_select(&idx, 0).unwrap();
            assert_eq!(max_abs_diff(&got, &want), 0.0, "{dtype:?}");
            assert!(m.dequantize_rows(8, 3).is_err());
            assert!(m.gather_rows(&[10]).is_err());
        }
    }

    #[test]
    fn permuting_rows_moves_whole_rows() {
        let (m, full) = sample(6, 64, GgmlDType::Q4_1);
        let perm = [5, 0, 3, 1, 2, 4];
        let p = m.permute_rows(&perm).unwrap();
        let idx = Tensor::new(&[5u32, 0, 3, 1, 2, 4], &Device::Cpu).unwrap();
        let want = full.index_select(&idx, 0).unwrap();
        assert_eq!(max_abs_diff(&p.dequantize().unwrap(), &want), 0.0);
        assert_eq!(p.dequantize().unwrap().dtype(), DType::F32);
        assert!(m.permute_rows(&[0, 1]).is_err());
        assert!(m.permute_rows(&[0, 1, 2, 3, 4, 6]).is_err());
    }
}
