//! An optional CBLAS library for the large products of dense f32/f64 layers on the CPU, loaded at
//! run time from the path in `RLQ_BLAS` (MKL's `libmkl_rt`, from PyPI's `mkl` wheel, or
//! OpenBLAS's `libopenblas`). Unset, nothing is loaded and every product is candle's (the gemm
//! crate).
//!
//! Why: on the products of a tuning step (a few hundred rows against SmolLM2's weights) the gemm
//! crate reached ~34 GFLOP/s per core here, MKL ~100 — the same arithmetic, a better kernel.
//! Linked at build time it would make every build and every user depend on a 200 MB library;
//! opened at run time it is the user's choice, said in the environment, and a build without it
//! runs everywhere.
//!
//! The library runs single-threaded (MKL's sequential layer, OpenBLAS at one thread) and the
//! output rows are split over rayon's threads in fixed blocks: the thread count stays rlq's
//! (`RAYON_NUM_THREADS`) and a run's results depend only on the library, the CPU and that count.
//! MKL is put in its conditional-reproducibility mode (`MKL_CBWR_Set(AUTO)`) so that its results
//! do not depend on the arrays' alignment either.

use std::sync::OnceLock;

use rayon::prelude::*;

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;
/// `MKL_Set_Threading_Layer(MKL_THREADING_SEQUENTIAL)`.
const MKL_THREADING_SEQUENTIAL: i32 = 1;
/// `MKL_CBWR_Set(MKL_CBWR_AUTO)`.
const MKL_CBWR_AUTO: i32 = 2;

type Gemm<T> = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    T,
    *const T,
    i32,
    *const T,
    i32,
    T,
    *mut T,
    i32,
);

/// A loaded CBLAS: its `sgemm` and `dgemm`.
pub struct Blas {
    path: String,
    sgemm: Gemm<f32>,
    dgemm: Gemm<f64>,
    /// Keeps the functions' code mapped.
    _lib: libloading::Library,
}

static LOADED: OnceLock<Result<Option<Blas>, String>> = OnceLock::new();

/// The library named by `RLQ_BLAS`, loaded once: `Ok(None)` when the variable is unset or empty,
/// an error naming the path when it cannot be loaded or lacks `cblas_sgemm`/`cblas_dgemm` (asked
/// for explicitly, so never silently ignored).
pub fn loaded() -> Result<Option<&'static Blas>, String> {
    let r = LOADED.get_or_init(|| match std::env::var("RLQ_BLAS") {
        Ok(path) if !path.trim().is_empty() => open(path.trim()).map(Some),
        _ => Ok(None),
    });
    match r {
        Ok(b) => Ok(b.as_ref()),
        Err(e) => Err(e.clone()),
    }
}

/// Opens the CBLAS at `path` (what [`loaded`] does with `RLQ_BLAS`; tests name one directly).
pub fn open(path: &str) -> Result<Blas, String> {
    let fail = |e: libloading::Error| format!("RLQ_BLAS={path}: {e}");
    // SAFETY: loading a library runs its initialisers; the user named this one as a CBLAS
    // (documented in the README). The symbols are read with CBLAS's C signatures.
    unsafe {
        let lib = libloading::Library::new(path).map_err(fail)?;
        let sgemm = *lib.get::<Gemm<f32>>(b"cblas_sgemm\0").map_err(fail)?;
        let dgemm = *lib.get::<Gemm<f64>>(b"cblas_dgemm\0").map_err(fail)?;
        if let Ok(set) = lib.get::<unsafe extern "C" fn(i32) -> i32>(b"MKL_Set_Threading_Layer\0") {
            set(MKL_THREADING_SEQUENTIAL);
        }
        if let Ok(set) = lib.get::<unsafe extern "C" fn(i32) -> i32>(b"MKL_CBWR_Set\0") {
            set(MKL_CBWR_AUTO);
        }
        if let Ok(set) = lib.get::<unsafe extern "C" fn(i32)>(b"openblas_set_num_threads\0") {
            set(1);
        }
        Ok(Blas {
            path: path.to_string(),
            sgemm,
            dgemm,
            _lib: lib,
        })
    }
}

/// How a row-major operand is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// The element types a CBLAS multiplies.
pub trait Float: Copy + Send + Sync + Default + 'static {
    fn gemm(b: &Blas) -> Gemm<Self>;
    const ONE: Self;
    const ZERO: Self;
}

impl Float for f32 {
    fn gemm(b: &Blas) -> Gemm<f32> {
        b.sgemm
    }
    const ONE: f32 = 1.0;
    const ZERO: f32 = 0.0;
}

impl Float for f64 {
    fn gemm(b: &Blas) -> Gemm<f64> {
        b.dgemm
    }
    const ONE: f64 = 1.0;
    const ZERO: f64 = 0.0;
}

/// Output rows per task: large enough for the library's blocking, small enough for two threads
/// to share a few-hundred-row product evenly.
const ROWS_PER_TASK: usize = 64;

impl Blas {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `C = op_a(A) · op_b(B)` for row-major `A` (`[m, k]`, or `[k, m]` when transposed) and `B`
    /// (`[k, n]`, or `[n, k]`), `C: [m, n]`. Blocks of output rows run on rayon's threads.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Float>(
        &self,
        op_a: Op,
        op_b: Op,
        m: usize,
        n: usize,
        k: usize,
        a: &[T],
        b: &[T],
    ) -> Result<Vec<T>, String> {
        if a.len() != m * k || b.len() != k * n {
            return Err(format!(
                "blas gemm: operands of {} and {} values for [{m}, {k}]·[{k}, {n}]",
                a.len(),
                b.len()
            ));
        }
        let int =
            |x: usize| i32::try_from(x).map_err(|_| format!("blas gemm: dimension {x} over 2^31"));
        let (ni, ki) = (int(n)?, int(k)?);
        int(m)?;
        let mut c = vec![T::ZERO; m * n];
        if m == 0 || n == 0 {
            return Ok(c);
        }
        let lda = match op_a {
            Op::N => ki,
            Op::T => int(m)?,
        };
        let ldb = match op_b {
            Op::N => ni,
            Op::T => ki,
        };
        let f = T::gemm(self);
        let flag = |o: Op| if o == Op::N { NO_TRANS } else { TRANS };
        c.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(t, cb)| {
                let r0 = t * ROWS_PER_TASK;
                let rows = cb.len() / n;
                // Row r0 of op(A): row r0 of A as stored, or column r0 of A (transposed).
                let a0 = match op_a {
                    Op::N => &a[r0 * k..],
                    Op::T => &a[r0..],
                };
                // SAFETY: the pointers and leading dimensions describe slices of the checked
                // lengths (op(A) rows r0..r0+rows of k values, op(B) k×n, this block of C);
                // every dimension fits an i32 (checked above); the library reads A and B only.
                unsafe {
                    f(
                        ROW_MAJOR,
                        flag(op_a),
                        flag(op_b),
                        rows as i32,
                        ni,
                        ki,
                        T::ONE,
                        a0.as_ptr(),
                        lda,
                        b.as_ptr(),
                        ldb,
                        T::ZERO,
                        cb.as_mut_ptr(),
                        ni,
                    )
                };
            });
        Ok(c)
    }
}

/// `x · wᵀ` (`x: [rows, in]`, `w: [out, in]`, contiguous, CPU, both f32 or both f64) through the
/// loaded library, differentiable in both: the backward forms `dx = dy·w` and `dw = dyᵀ·x` with
/// it too, each only for an operand that tracks a gradient. `None` when no library is loaded or
/// the operands do not qualify (the caller takes candle's product).
pub fn linear_t(
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    match loaded().map_err(candle_core::Error::Msg)? {
        Some(blas) => linear_t_with(blas, x, w),
        None => Ok(None),
    }
}

/// [`linear_t`] through a given library.
pub fn linear_t_with(
    blas: &'static Blas,
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    use candle_core::DType;
    let ok = x.device().is_cpu()
        && w.device().is_cpu()
        && x.dtype() == w.dtype()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.rank() == 2
        && w.rank() == 2
        && x.dim(1)? == w.dim(1)?;
    if !ok {
        return Ok(None);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, LinearT { blas }).map(Some)
    } else {
        x.apply_op2_no_bwd(&w, &LinearT { blas }).map(Some)
    }
}

/// `op_a(a) · op_b(b)` for 2-D CPU tensors of one float dtype (f32/f64), no graph, through the
/// loaded library; `None` when none is loaded or the operands do not qualify (the caller takes
/// candle's product). For the products inside fused ops' backwards.
pub fn product(
    a: &candle_core::Tensor,
    op_a: Op,
    b: &candle_core::Tensor,
    op_b: Op,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    use candle_core::DType;
    let Some(blas) = loaded().map_err(candle_core::Error::Msg)? else {
        return Ok(None);
    };
    let ok = a.device().is_cpu()
        && b.device().is_cpu()
        && a.dtype() == b.dtype()
        && matches!(a.dtype(), DType::F32 | DType::F64)
        && a.rank() == 2
        && b.rank() == 2;
    if !ok {
        return Ok(None);
    }
    let (ar, ac) = a.dims2()?;
    let (br, bc) = b.dims2()?;
    let (m, k) = if op_a == Op::N { (ar, ac) } else { (ac, ar) };
    let (kb, n) = if op_b == Op::N { (br, bc) } else { (bc, br) };
    if k != kb {
        candle_core::bail!(
            "blas product: {:?} by {:?} ({op_a:?}, {op_b:?})",
            a.dims(),
            b.dims()
        );
    }
    let (a, b) = (a.detach(), b.detach());
    match a.dtype() {
        DType::F32 => gemm_tensor::<f32>(blas, &a, op_a, &b, op_b, (m, n, k)).map(Some),
        _ => gemm_tensor::<f64>(blas, &a, op_a, &b, op_b, (m, n, k)).map(Some),
    }
}

/// [`Blas::gemm`] of two contiguous CPU tensors of `T` (`m`, `n`, `k` as there): `[m, n]`.
fn gemm_tensor<T: Float + candle_core::WithDType>(
    blas: &Blas,
    a: &candle_core::Tensor,
    op_a: Op,
    b: &candle_core::Tensor,
    op_b: Op,
    (m, n, k): (usize, usize, usize),
) -> candle_core::Result<candle_core::Tensor> {
    let v = with_slice::<T, _>(a, |a| {
        with_slice::<T, _>(b, |b| {
            blas.gemm(op_a, op_b, m, n, k, a, b)
                .map_err(candle_core::Error::Msg)
        })
    })?;
    candle_core::Tensor::from_vec(v, (m, n), a.device())
}

struct LinearT {
    blas: &'static Blas,
}

/// A contiguous CPU tensor's values, borrowed.
fn with_slice<T: candle_core::WithDType, R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(c) = &*st else {
        candle_core::bail!("blas: expected a CPU tensor");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("blas: expected a contiguous tensor");
    };
    f(&T::cpu_storage_as_slice(c)?[a..b])
}

impl LinearT {
    fn fwd<T: Float + candle_core::WithDType>(
        &self,
        x: &[T],
        w: &[T],
        rows: usize,
        out: usize,
        inp: usize,
    ) -> candle_core::Result<Vec<T>> {
        self.blas
            .gemm(Op::N, Op::T, rows, out, inp, x, w)
            .map_err(candle_core::Error::Msg)
    }

    fn grads<T: Float + candle_core::WithDType>(
        &self,
        x: &candle_core::Tensor,
        w: &candle_core::Tensor,
        dy: &candle_core::Tensor,
    ) -> candle_core::Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
        let (rows, inp) = x.dims2()?;
        let out = w.dim(0)?;
        let (blas, dims) = (self.blas, (rows, inp, out));
        let dx = x
            .track_op()
            .then(|| gemm_tensor::<T>(blas, dy, Op::N, w, Op::N, dims))
            .transpose()?;
        let dw = w
            .track_op()
            .then(|| gemm_tensor::<T>(blas, dy, Op::T, x, Op::N, (out, inp, rows)))
            .transpose()?;
        Ok((dx, dw))
    }
}

impl candle_core::CustomOp2 for LinearT {
    fn name(&self) -> &'static str {
        "blas-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage as S;
        let (rows, inp) = l1.shape().dims2()?;
        let (out, w_in) = l2.shape().dims2()?;
        if inp != w_in {
            candle_core::bail!("blas linear: x [{rows}, {inp}] for w [{out}, {w_in}]");
        }
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("blas linear: expected contiguous operands");
        };
        let y = match (s1, s2) {
            (S::F32(x), S::F32(w)) => S::F32(self.fwd(&x[a1..b1], &w[a2..b2], rows, out, inp)?),
            (S::F64(x), S::F64(w)) => S::F64(self.fwd(&x[a1..b1], &w[a2..b2], rows, out, inp)?),
            _ => candle_core::bail!("blas linear: f32 or f64 operands of one dtype"),
        };
        Ok((y, candle_core::Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &candle_core::Tensor,
        w: &candle_core::Tensor,
        _y: &candle_core::Tensor,
        dy: &candle_core::Tensor,
    ) -> candle_core::Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
        match x.dtype() {
            candle_core::DType::F32 => self.grads::<f32>(x, w, dy),
            _ => self.grads::<f64>(x, w, dy),
        }
    }
}
