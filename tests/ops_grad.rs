//! The fused CPU ops in `rlq::model::ops` against their compositions (`*_composed`) and against
//! central finite differences: forward to 1e-12 and gradients to 1e-10 in f64, gradients to 1e-6
//! (relative) of finite differences, and forward to 1e-5 in f32.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rlq::model::ops;

type Op = Box<dyn Fn(&Tensor) -> Result<Tensor>>;

fn rand_tensor(rng: &mut StdRng, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0) * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// max |a − b| / max(max |b|, 1e-300)
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Gradient of `sum(op(x) * r)` with respect to `x`.
fn grad(op: &Op, x: &Tensor, r: &Tensor) -> Vec<f64> {
    let v = Var::from_tensor(x).unwrap();
    let loss = op(v.as_tensor())
        .unwrap()
        .mul(r)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    flat(g.get(v.as_tensor()).expect("no gradient reached x"))
}

fn loss_value(op: &Op, x: &[f64], shape: &[usize], r: &Tensor) -> f64 {
    let x = Tensor::from_slice(x, shape, &Device::Cpu).unwrap();
    op(&x)
        .unwrap()
        .mul(r)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Central finite differences of `sum(op(x) * r)` for every element of `x`.
fn fd_grad(op: &Op, x: &Tensor, r: &Tensor) -> Vec<f64> {
    let shape = x.dims().to_vec();
    let mut xs = flat(x);
    let h = 1e-5;
    (0..xs.len())
        .map(|i| {
            let x0 = xs[i];
            let hi = h * x0.abs().max(1.0);
            xs[i] = x0 + hi;
            let up = loss_value(op, &xs, &shape, r);
            xs[i] = x0 - hi;
            let down = loss_value(op, &xs, &shape, r);
            xs[i] = x0;
            (up - down) / (2.0 * hi)
        })
        .collect()
}

/// Every check for one op: `fused` (the public op) against `composed`, at `shape`, with inputs
/// drawn in `[-scale, scale]` plus `add` (e.g. a mask) when given.
fn check(name: &str, fused: Op, composed: Op, shape: &[usize], scale: f64, add: Option<Tensor>) {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ name.len() as u64);
    let mut x = rand_tensor(&mut rng, shape, scale, DType::F64);
    if let Some(a) = &add {
        x = x.broadcast_add(a).unwrap();
    }
    let r = rand_tensor(&mut rng, shape, 1.0, DType::F64);

    // f64 forward.
    let yf = flat(&fused(&x).unwrap());
    let yc = flat(&composed(&x).unwrap());
    let e = rel_err(&yf, &yc);
    assert!(
        e <= 1e-12,
        "{name}: f64 forward differs from the composition by {e:e}"
    );

    // f64 backward against the composition's gradient.
    let gf = grad(&fused, &x, &r);
    let gc = grad(&composed, &x, &r);
    let e = rel_err(&gf, &gc);
    assert!(
        e <= 1e-10,
        "{name}: gradient differs from the composition's by {e:e}"
    );

    // ... and against finite differences of the fused forward.
    let gd = fd_grad(&fused, &x, &r);
    let e = rel_err(&gf, &gd);
    assert!(
        e <= 1e-6,
        "{name}: gradient differs from finite differences by {e:e}"
    );

    // f32 forward.
    let x32 = x.to_dtype(DType::F32).unwrap();
    let yf = flat(&fused(&x32).unwrap());
    let yc = flat(&composed(&x32).unwrap());
    let e = rel_err(&yf, &yc);
    assert!(
        e <= 1e-5,
        "{name}: f32 forward differs from the composition by {e:e}"
    );
    // The f32 result agrees with the f64 one up to f32 rounding.
    let y64 = flat(&fused(&x).unwrap());
    let e = rel_err(&yf, &y64);
    assert!(e <= 1e-5, "{name}: f32 forward differs from f64 by {e:e}");

    // f32 backward against the composition (loosely: rounding only).
    let r32 = r.to_dtype(DType::F32).unwrap();
    let gf = grad(&fused, &x32, &r32);
    let gc = grad(&composed, &x32, &r32);
    let e = rel_err(&gf, &gc);
    assert!(
        e <= 1e-4,
        "{name}: f32 gradient differs from the composition's by {e:e}"
    );
}

fn weight(n: usize, seed: u64, dtype: DType) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(0.5..1.5)).collect();
    Tensor::from_vec(v, n, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn rms_case(name: &str, shape: &[usize], offset: f64) {
    let n = *shape.last().unwrap();
    let w64 = weight(n, 7, DType::F64);
    let w32 = weight(n, 7, DType::F32);
    let pick = move |x: &Tensor| {
        if x.dtype() == DType::F32 {
            w32.clone()
        } else {
            w64.clone()
        }
    };
    let p2 = pick.clone();
    check(
        name,
        Box::new(move |x| ops::rms_norm(x, &pick(x), 1e-5, offset)),
        Box::new(move |x| ops::rms_norm_composed(x, &p2(x), 1e-5, offset)),
        shape,
        2.0,
        None,
    );
}

#[test]
fn rms_norm_residual_copies() {
    // [n, seq, d] as the q/k/v/mlp residual copies.
    rms_case("rms_norm [3,6,24]", &[3, 6, 24], 0.0);
}

#[test]
fn rms_norm_heads_and_gemma_offset() {
    // [heads, seq, dh] as q/k norm; Gemma's `w + 1`.
    rms_case("rms_norm [4,5,8] offset 1", &[4, 5, 8], 1.0);
    rms_case("rms_norm [5,16]", &[5, 16], 0.0);
}

#[test]
fn softmax_with_causal_mask() {
    let (h, q) = (3, 7);
    let mask = ops::causal_mask(q, q, 0, None, DType::F64, &Device::Cpu).unwrap();
    check(
        "softmax [3,7,7] masked",
        Box::new(ops::softmax_last_dim),
        Box::new(ops::softmax_last_dim_composed),
        &[h, q, q],
        4.0,
        Some(mask),
    );
    check(
        "softmax [2,5,9]",
        Box::new(ops::softmax_last_dim),
        Box::new(ops::softmax_last_dim_composed),
        &[2, 5, 9],
        4.0,
        None,
    );
}

#[test]
fn log_softmax() {
    check(
        "log_softmax [6,40]",
        Box::new(ops::log_softmax_last_dim),
        Box::new(ops::log_softmax_last_dim_composed),
        &[6, 40],
        5.0,
        None,
    );
}

#[test]
fn silu() {
    check(
        "silu [7,30]",
        Box::new(ops::silu),
        Box::new(ops::silu_composed),
        &[7, 30],
        6.0,
        None,
    );
}

#[test]
fn gelu_tanh() {
    check(
        "gelu_tanh [7,30]",
        Box::new(ops::gelu_tanh),
        Box::new(ops::gelu_tanh_composed),
        &[7, 30],
        4.0,
        None,
    );
}

#[test]
fn rope() {
    let (h, seq, dh) = (3, 6, 8);
    for offset in [0, 5] {
        let t = |dt| ops::rope_tables(seq, offset, dh, 10000.0, dt, &Device::Cpu).unwrap();
        let (c64, s64) = t(DType::F64);
        let (c32, s32) = t(DType::F32);
        let tables = move |x: &Tensor| {
            if x.dtype() == DType::F32 {
                (c32.clone(), s32.clone())
            } else {
                (c64.clone(), s64.clone())
            }
        };
        let t2 = tables.clone();
        check(
            "rope [3,6,8]",
            Box::new(move |x| {
                let (c, s) = tables(x);
                ops::rope(x, &c, &s)
            }),
            Box::new(move |x| {
                let (c, s) = t2(x);
                ops::rope_composed(x, &c, &s)
            }),
            &[h, seq, dh],
            2.0,
            None,
        );
    }
}

/// Non-contiguous inputs (a transpose, a narrow) give the same values and gradients as the
/// composition, and the fused ops work without any tracked input.
#[test]
fn non_contiguous_and_untracked_inputs() {
    let mut rng = StdRng::seed_from_u64(3);
    let base = rand_tensor(&mut rng, &[6, 4, 8], 2.0, DType::F64);
    let w = weight(4, 1, DType::F64);
    let cases: Vec<(&str, Op, Op)> = vec![
        (
            "rms_norm",
            Box::new({
                let w = w.clone();
                move |x| ops::rms_norm(&x.transpose(1, 2)?, &w, 1e-6, 0.0)
            }),
            Box::new(move |x| ops::rms_norm_composed(&x.transpose(1, 2)?, &w, 1e-6, 0.0)),
        ),
        (
            "softmax",
            Box::new(|x| ops::softmax_last_dim(&x.transpose(0, 2)?)),
            Box::new(|x| ops::softmax_last_dim_composed(&x.transpose(0, 2)?)),
        ),
        (
            "log_softmax",
            Box::new(|x| ops::log_softmax_last_dim(&x.narrow(0, 1, 3)?)),
            Box::new(|x| ops::log_softmax_last_dim_composed(&x.narrow(0, 1, 3)?)),
        ),
        (
            "silu",
            Box::new(|x| ops::silu(&x.transpose(0, 1)?)),
            Box::new(|x| ops::silu_composed(&x.transpose(0, 1)?)),
        ),
        (
            "gelu",
            Box::new(|x| ops::gelu_tanh(&x.narrow(2, 2, 5)?)),
            Box::new(|x| ops::gelu_tanh_composed(&x.narrow(2, 2, 5)?)),
        ),
    ];
    for (name, f, c) in cases {
        let yf = f(&base).unwrap();
        let yc = c(&base).unwrap();
        assert!(
            max_abs_diff(&flat(&yf), &flat(&yc)) <= 1e-12,
            "{name}: forward"
        );
        let r = rand_tensor(&mut rng, yf.dims(), 1.0, DType::F64);
        let e = rel_err(&grad(&f, &base, &r), &grad(&c, &base, &r));
        assert!(e <= 1e-10, "{name}: gradient differs by {e:e}");
    }
}

/// Gradients flow through chains of fused ops and accumulate with other uses of the input.
#[test]
fn chained_ops_gradient() {
    let mut rng = StdRng::seed_from_u64(11);
    let x = rand_tensor(&mut rng, &[2, 5, 8], 1.5, DType::F64);
    let r = rand_tensor(&mut rng, &[2, 5, 8], 1.0, DType::F64);
    let w = weight(8, 2, DType::F64);
    let (c, s) = ops::rope_tables(5, 0, 8, 10000.0, DType::F64, &Device::Cpu).unwrap();
    let chain = |norm: fn(&Tensor, &Tensor, f64, f64) -> Result<Tensor>,
                 rope: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
                 sm: fn(&Tensor) -> Result<Tensor>,
                 act: fn(&Tensor) -> Result<Tensor>|
     -> Op {
        let (w, c, s) = (w.clone(), c.clone(), s.clone());
        Box::new(move |x: &Tensor| {
            let h = norm(x, &w, 1e-6, 0.0)?;
            let h = rope(&h, &c, &s)?;
            let h = (sm(&h)? + act(&h)?)?;
            h + x
        })
    };
    let f = chain(ops::rms_norm, ops::rope, ops::softmax_last_dim, ops::silu);
    let comp = chain(
        ops::rms_norm_composed,
        ops::rope_composed,
        ops::softmax_last_dim_composed,
        ops::silu_composed,
    );
    let e = rel_err(&flat(&f(&x).unwrap()), &flat(&comp(&x).unwrap()));
    assert!(e <= 1e-12, "forward differs by {e:e}");
    let gf = grad(&f, &x, &r);
    let e = rel_err(&gf, &grad(&comp, &x, &r));
    assert!(
        e <= 1e-10,
        "gradient differs from the composition's by {e:e}"
    );
    let e = rel_err(&gf, &fd_grad(&f, &x, &r));
    assert!(
        e <= 1e-6,
        "gradient differs from finite differences by {e:e}"
    );
}

/// Attention `(q, k, v)` packed along the head axis into one input `[hq + 2·hk, T, dh]`, so the
/// single-input harness differentiates all three at once.
fn attention_case(name: &str, hq: usize, hk: usize, t: usize, dh: usize, window: Option<usize>) {
    let mask64 = ops::causal_mask(t, t, 0, window, DType::F64, &Device::Cpu).unwrap();
    let scale = 1.0 / (dh as f64).sqrt();
    let split = move |x: &Tensor| -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let mask = mask64.to_dtype(x.dtype())?;
        Ok((
            x.narrow(0, 0, hq)?,
            x.narrow(0, hq, hk)?,
            x.narrow(0, hq + hk, hk)?,
            mask,
        ))
    };
    let s2 = split.clone();
    let fused: Op = Box::new(move |x| {
        let (q, k, v, m) = split(x)?;
        rlq::model::attention::attention(&q, &k, &v, &m, scale)
    });
    let composed: Op = Box::new(move |x| {
        let (q, k, v, m) = s2(x)?;
        rlq::model::attention::attention_composed(&q, &k, &v, &m, scale)
    });
    // The op's output is [hq, T, dh]: the harness's random weights `r` take the input's shape,
    // so compare through a fixed projection back onto it.
    let wrap = |f: Op| -> Op {
        Box::new(move |x: &Tensor| {
            let z = f(x)?;
            let pad = x.narrow(0, 0, 2 * hk)?.zeros_like()?;
            Tensor::cat(&[z, pad], 0)
        })
    };
    check(
        name,
        wrap(fused),
        wrap(composed),
        &[hq + 2 * hk, t, dh],
        1.5,
        None,
    );
}

#[test]
fn attention_grouped_query() {
    attention_case("attention gqa", 4, 2, 6, 4, None);
}

#[test]
fn attention_multi_head_with_window() {
    attention_case("attention window", 3, 3, 7, 2, Some(3));
}

#[test]
fn attention_with_cached_keys_matches_composition() {
    // Decoding: 2 new queries against 5 keys (3 cached), offset 3.
    let mut rng = StdRng::seed_from_u64(11);
    for dtype in [DType::F64, DType::F32] {
        let q = rand_tensor(&mut rng, &[4, 2, 8], 1.0, dtype);
        let k = rand_tensor(&mut rng, &[2, 5, 8], 1.0, dtype);
        let v = rand_tensor(&mut rng, &[2, 5, 8], 1.0, dtype);
        let m = ops::causal_mask(2, 5, 3, None, dtype, &Device::Cpu).unwrap();
        let a = rlq::model::attention::attention(&q, &k, &v, &m, 0.35).unwrap();
        let b = rlq::model::attention::attention_composed(&q, &k, &v, &m, 0.35).unwrap();
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        let e = rel_err(&flat(&a), &flat(&b));
        assert!(e <= tol, "{dtype:?}: {e:e}");
    }
}

/// An op whose output is smaller than its input, flattened and zero-padded to the input's shape
/// (the harness weights the output with a random tensor of the input's shape).
fn padded(f: impl Fn(&Tensor) -> Result<Tensor> + 'static) -> Op {
    Box::new(move |x: &Tensor| {
        let y = f(x)?.flatten_all()?;
        let pad = Tensor::zeros(x.elem_count() - y.elem_count(), x.dtype(), x.device())?;
        Tensor::cat(&[y, pad], 0)?.reshape(x.shape())
    })
}

#[test]
fn rms_norm_of_residual_copies_with_offsets() {
    // [h; off_1..off_3] packed along the first axis: h [1, 5, 8] broadcast over 3 offsets.
    let w = weight(8, 3, DType::F64);
    for offset in [0.0, 1.0] {
        let (w1, w2) = (w.clone(), w.clone());
        let fused = padded(move |x| {
            let w = w1.to_dtype(x.dtype())?;
            ops::rms_norm_of_sum(&x.narrow(0, 0, 1)?, &x.narrow(0, 1, 3)?, &w, 1e-6, offset)
        });
        let composed = padded(move |x| {
            let w = w2.to_dtype(x.dtype())?;
            let sum = x.narrow(0, 0, 1)?.broadcast_add(&x.narrow(0, 1, 3)?)?;
            ops::rms_norm_composed(&sum, &w, 1e-6, offset)
        });
        check("rms_norm_of_sum", fused, composed, &[4, 5, 8], 2.0, None);
    }
}

fn glu_case(act: rlq::model::mlp::GluActivation) {
    use rlq::model::linear::Linear;
    use rlq::model::mlp::{glu_down, glu_down_composed};
    // gate and up [6, 12] packed as [2, 6, 12]; W_down [5, 12].
    let mut rng = StdRng::seed_from_u64(17);
    let w = rand_tensor(&mut rng, &[5, 12], 0.5, DType::F64);
    let (w1, w2) = (w.clone(), w);
    let fused = padded(move |x| {
        let down = Linear::Dense(w1.to_dtype(x.dtype())?);
        glu_down(&x.get(0)?, &x.get(1)?, act, &down)
    });
    let composed = padded(move |x| {
        let down = Linear::Dense(w2.to_dtype(x.dtype())?);
        glu_down_composed(&x.get(0)?, &x.get(1)?, act, &down)
    });
    check(
        &format!("glu_down {act:?}"),
        fused,
        composed,
        &[2, 6, 12],
        3.0,
        None,
    );
}

#[test]
fn glu_down_silu() {
    glu_case(rlq::model::mlp::GluActivation::Silu);
}

#[test]
fn glu_down_gelu_tanh() {
    glu_case(rlq::model::mlp::GluActivation::GeluTanh);
}

/// A trained dense `W_down` (a full fine-tune) is the fused op's third input: in f64 its
/// gradient, and gate's and up's, equal the composition's (autograd through primitive ops and
/// a matmul) to 1e-12 relative — the same sums in another order — and match central finite
/// differences of the loss to 1e-7 relative (step 1e-5: truncation ~1e-10, rounding ~1e-11
/// over a loss of size ~1, far below a wrong term's O(1)).
#[test]
fn glu_down_with_a_trained_down_weight_matches_the_composition_and_finite_differences() {
    use rlq::model::linear::Linear;
    use rlq::model::mlp::{glu_down, glu_down_composed, GluActivation};
    let mut rng = StdRng::seed_from_u64(29);
    let gate = rand_tensor(&mut rng, &[7, 12], 2.0, DType::F64);
    let up = rand_tensor(&mut rng, &[7, 12], 2.0, DType::F64);
    let w = rand_tensor(&mut rng, &[5, 12], 0.5, DType::F64);
    let r = rand_tensor(&mut rng, &[7, 5], 1.0, DType::F64);
    for act in [GluActivation::Silu, GluActivation::GeluTanh] {
        type Glu = fn(&Tensor, &Tensor, GluActivation, &Linear) -> Result<Tensor>;
        let run = |f: Glu, w: &Tensor| {
            let (g, u, wv) = (
                Var::from_tensor(&gate).unwrap(),
                Var::from_tensor(&up).unwrap(),
                Var::from_tensor(w).unwrap(),
            );
            let down = Linear::Dense(wv.as_tensor().clone());
            let y = f(g.as_tensor(), u.as_tensor(), act, &down).unwrap();
            let loss = (&y * &r).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let get = |v: &Var| flat(grads.get(v.as_tensor()).expect("a gradient"));
            (
                loss.to_scalar::<f64>().unwrap(),
                [get(&g), get(&u), get(&wv)],
            )
        };
        let (l_fused, fused) = run(glu_down, &w);
        let (l_comp, composed) = run(glu_down_composed, &w);
        assert!(
            (l_fused - l_comp).abs() < 1e-12 * l_comp.abs().max(1.0),
            "{act:?}: loss"
        );
        for (name, (a, b)) in ["gate", "up", "W_down"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            let e = rel_err(a, b);
            assert!(e < 1e-12, "{act:?}: d{name} fused vs composed {e:e}");
        }
        let wv = flat(&w);
        let eps = 1e-5;
        let mut fd = Vec::with_capacity(wv.len());
        for i in 0..wv.len() {
            let at = |d: f64| {
                let mut v = wv.clone();
                v[i] += d;
                let t = Tensor::from_vec(v, (5, 12), &Device::Cpu).unwrap();
                run(glu_down, &t).0
            };
            fd.push((at(eps) - at(-eps)) / (2.0 * eps));
        }
        let e = rel_err(&fused[2], &fd);
        assert!(e < 1e-7, "{act:?}: dW_down vs finite differences {e:e}");
    }
}

#[test]
fn glu_down_with_quantized_weights_matches_dense() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use rlq::model::linear::Linear;
    use rlq::model::mlp::{glu_down, GluActivation};
    use rlq::model::qmatrix::QMatrix;
    use std::sync::Arc;
    let mut rng = StdRng::seed_from_u64(23);
    let w = rand_tensor(&mut rng, &[64, 96], 0.5, DType::F32);
    let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
    let dense = Linear::Dense(q.dequantize(&Device::Cpu).unwrap());
    let quant = Linear::quantized(Arc::new(QMatrix::new(q).unwrap()));
    let gate = rand_tensor(&mut rng, &[20, 96], 2.0, DType::F32);
    let up = rand_tensor(&mut rng, &[20, 96], 2.0, DType::F32);
    let r = rand_tensor(&mut rng, &[20, 64], 1.0, DType::F32);
    let run = |down: &Linear| {
        let (g, u) = (
            Var::from_tensor(&gate).unwrap(),
            Var::from_tensor(&up).unwrap(),
        );
        let y = glu_down(g.as_tensor(), u.as_tensor(), GluActivation::Silu, down).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gg = flat(grads.get(g.as_tensor()).unwrap());
        let gu = flat(grads.get(u.as_tensor()).unwrap());
        (flat(&y), gg, gu)
    };
    let (a, b) = (run(&quant), run(&dense));
    // Same f32 weights, different summation order: f32 rounding over 96-term sums.
    assert!(rel_err(&a.0, &b.0) < 1e-5);
    assert!(rel_err(&a.1, &b.1) < 1e-5);
    assert!(rel_err(&a.2, &b.2) < 1e-5);
}

/// The `[out, in]` weight shapes SmolLM2-135M multiplies: hidden 576, k/v 192, MLP 1536, the
/// 49152-token unembedding.
const SMOLLM2_WEIGHT_SHAPES: &[(usize, usize)] = &[
    (576, 576),
    (192, 576),
    (1536, 576),
    (576, 1536),
    (49152, 576),
];

/// `matmul_weight_t` (`(W·xᵀ)ᵀ`, which spares gemm repacking the weight) must give the very bits
/// of `x·Wᵀ` — attribution's scores are compared bitwise against earlier releases — on the
/// shapes SmolLM2-135M multiplies (hidden 576, MLP 1536, k/v 192, vocabulary 49152) at the row
/// counts of decoding (1–16 sequences) and of prompts (up to 130 tokens). Tolerance: none.
#[test]
fn weight_transposed_matmul_keeps_the_bits_of_x_times_w_transposed() {
    let mut rng = StdRng::seed_from_u64(7);
    for &(out, inp) in SMOLLM2_WEIGHT_SHAPES {
        let w = rand_tensor(&mut rng, &[out, inp], 0.05, DType::F32);
        let rows: &[usize] = if out == 49152 {
            &[1, 8, 37]
        } else {
            &[1, 2, 8, 16, 33, 64, 130]
        };
        for &m in rows {
            let x = rand_tensor(&mut rng, &[m, inp], 1.0, DType::F32);
            let plain = x.matmul(&w.t().unwrap()).unwrap();
            let fast = ops::matmul_weight_t(&x, &w).unwrap();
            let (a, b) = (
                plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                fast.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(fast.dims(), plain.dims());
            let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(
                same,
                "rows {m}, W [{out}, {inp}]: (W·xᵀ)ᵀ differs from x·Wᵀ"
            );
            // The constant-weight op (attribution's path, input tracked) agrees too, forward and
            // backward (its input gradient is g·W, as matmul_const's with Wᵀ).
            let xv = Var::from_tensor(&x).unwrap();
            let y = ops::matmul_const_t(xv.as_tensor(), &w).unwrap();
            assert_eq!(flat(&y), flat(&plain));
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(xv.as_tensor()).unwrap();
            let expect = (plain * 2.0).unwrap().matmul(&w).unwrap();
            assert_eq!(flat(gx), flat(&expect));
        }
    }
}

#[test]
fn log_softmax_pick() {
    let ids = [3u32, 0, 39, 17, 3, 8];
    check(
        "log_softmax_pick [6,40]",
        padded(move |x| ops::log_softmax_pick(x, &ids)),
        padded(move |x| ops::log_softmax_pick_composed(x, &ids)),
        &[6, 40],
        5.0,
        None,
    );
}

#[test]
fn log_softmax_pick_keeps_the_bits_of_log_softmax_then_gather() {
    // Values and gradients are those of the fused log-softmax followed by a gather, bit for bit
    // (tolerance none): the trainer's log-probabilities did not change when it moved to the op.
    let mut rng = StdRng::seed_from_u64(21);
    for dtype in [DType::F32, DType::F64] {
        let x = rand_tensor(&mut rng, &[5, 300], 6.0, dtype);
        let r = rand_tensor(&mut rng, &[5], 1.0, dtype);
        let ids = [7u32, 0, 299, 7, 123];
        let old: Op = Box::new(move |x: &Tensor| {
            let idx = Tensor::new(&ids, x.device())?.unsqueeze(1)?;
            ops::log_softmax_last_dim(x)?.gather(&idx, 1)?.squeeze(1)
        });
        let new: Op = Box::new(move |x: &Tensor| ops::log_softmax_pick(x, &ids));
        assert_eq!(
            flat(&old(&x).unwrap()),
            flat(&new(&x).unwrap()),
            "{dtype:?}"
        );
        assert_eq!(grad(&old, &x, &r), grad(&new, &x, &r), "{dtype:?} gradient");
    }
    // A bad id is an error, not a read out of bounds.
    let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(ops::log_softmax_pick(&x, &[0, 4]).is_err());
    assert!(ops::log_softmax_pick(&x, &[0]).is_err());
}

/// Packed attention (a prefix, then tails that each see the prefix and themselves) against an
/// independent reference: each segment's attention composed on its own from `narrow`/`cat`.
fn packed_attention_case(name: &str, prefix: usize, tails: Vec<usize>, window: Option<usize>) {
    use rlq::model::attention::{attention_composed, attention_packed};
    use rlq::model::packing::Packing;
    let (hq, hk, dh) = (4, 2, 3);
    let packing = Packing::new(prefix, tails.clone()).unwrap();
    let n = packing.rows();
    let scale = 1.0 / (dh as f64).sqrt();
    let split = move |x: &Tensor| -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            x.narrow(0, 0, hq)?,
            x.narrow(0, hq, hk)?,
            x.narrow(0, hq + hk, hk)?,
        ))
    };
    let p1 = packing.clone();
    let fused: Op = Box::new(move |x| {
        let (q, k, v) = split(x)?;
        let z = attention_packed(&q, &k, &v, &p1, window, scale)?;
        Tensor::cat(&[z, x.narrow(0, 0, 2 * hk)?.zeros_like()?], 0)
    });
    let reference: Op = Box::new(move |x| {
        let (q, k, v) = split(x)?;
        let mut parts = Vec::new();
        if prefix > 0 {
            let m = ops::causal_mask(prefix, prefix, 0, window, x.dtype(), x.device())?;
            let p = |t: &Tensor| t.narrow(1, 0, prefix);
            parts.push(attention_composed(&p(&q)?, &p(&k)?, &p(&v)?, &m, scale)?);
        }
        let mut start = prefix;
        for &len in &tails {
            if len == 0 {
                continue;
            }
            let kv = |t: &Tensor| -> Result<Tensor> {
                let own = t.narrow(1, start, len)?;
                if prefix == 0 {
                    return Ok(own);
                }
                Tensor::cat(&[&t.narrow(1, 0, prefix)?, &own], 1)
            };
            let m = ops::causal_mask(len, prefix + len, prefix, window, x.dtype(), x.device())?;
            parts.push(attention_composed(
                &q.narrow(1, start, len)?,
                &kv(&k)?,
                &kv(&v)?,
                &m,
                scale,
            )?);
            start += len;
        }
        let z = Tensor::cat(&parts, 1)?;
        Tensor::cat(&[z, x.narrow(0, 0, 2 * hk)?.zeros_like()?], 0)
    });
    check(name, fused, reference, &[hq + 2 * hk, n, dh], 1.5, None);
}

#[test]
fn packed_attention_shared_prefix() {
    packed_attention_case("packed attention", 3, vec![2, 1, 0, 3], None);
}

#[test]
fn packed_attention_with_window() {
    packed_attention_case("packed attention window", 4, vec![3, 2], Some(3));
}

#[test]
fn packed_attention_without_prefix() {
    // Independent sequences side by side (SFT's packing).
    packed_attention_case("packed attention no prefix", 0, vec![3, 2, 4], None);
}

/// Decoding's few-rows product (a constant weight, no graph, at most 16 rows): within f32
/// rounding of `x·Wᵀ` (1e-5 of the largest output, on SmolLM2's shapes), and each row's values
/// are the same bits whether it is multiplied alone or with others — a sequence's logits do
/// not depend on how many sequences are decoded beside it.
#[test]
fn few_rows_product_is_the_matmul_to_rounding_and_independent_of_the_batch() {
    let mut rng = StdRng::seed_from_u64(17);
    for &(out, inp) in SMOLLM2_WEIGHT_SHAPES {
        let w = rand_tensor(&mut rng, &[out, inp], 0.05, DType::F32);
        let x = rand_tensor(&mut rng, &[8, inp], 1.0, DType::F32);
        let plain = flat(&x.matmul(&w.t().unwrap()).unwrap());
        let few = ops::matmul_const_t(&x, &w).unwrap();
        assert_eq!(few.dims(), &[8, out]);
        let e = rel_err(&flat(&few), &plain);
        assert!(e <= 1e-5, "W [{out}, {inp}]: {e:e} from x·Wᵀ");
        for r in [0usize, 5] {
            let alone = ops::matmul_const_t(&x.narrow(0, r, 1).unwrap(), &w).unwrap();
            let in_batch = few.narrow(0, r, 1).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&alone), bits(&in_batch), "W [{out}, {inp}] row {r}");
        }
    }
}

/// The optional CBLAS path of dense layers (`model::kernels::blas`, `RLQ_BLAS`) against candle's
/// matmul and its backward, through the library named by `RLQ_TEST_BLAS` (scripts/test.sh
/// installs MKL from PyPI and sets it, so CI runs this; without it there is nothing to test and
/// the test says so). In f64 values and both gradients agree to 1e-12 of their scale (sums of
/// ≤ 1536 products in another order); in f32 to 1e-5 (on SmolLM2's shapes, 300 rows); an
/// untracked weight gets no gradient, and the pool's threads give the same bits as one
/// thread's.
#[test]
fn blas_dense_products_and_their_gradients_are_candles() {
    use rlq::model::kernels::blas;
    let Some(path) = std::env::var("RLQ_TEST_BLAS")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!(
            "RLQ_TEST_BLAS is not set: the CBLAS path is not tested (scripts/test.sh sets it)"
        );
        return;
    };
    let scalar = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    let lib: &'static blas::Blas = Box::leak(Box::new(blas::open(&path).unwrap()));
    let mut rng = StdRng::seed_from_u64(23);
    let rel = |a: &Tensor, b: &Tensor| -> f64 {
        let d = scalar(&(a - b).unwrap().abs().unwrap().max_all().unwrap());
        d / scalar(&b.abs().unwrap().max_all().unwrap()).max(1e-300)
    };
    for (dtype, tol, shapes) in [
        (
            DType::F64,
            1e-12,
            &[(40usize, 96usize, 64usize), (129, 33, 70)][..],
        ),
        (
            DType::F32,
            1e-5,
            &[(300, 1536, 576), (300, 576, 1536), (70, 192, 576)][..],
        ),
    ] {
        for &(rows, out, inp) in shapes {
            let x = Var::from_tensor(&rand_tensor(&mut rng, &[rows, inp], 1.0, dtype)).unwrap();
            let w = Var::from_tensor(&rand_tensor(&mut rng, &[out, inp], 0.05, dtype)).unwrap();
            let dy = rand_tensor(&mut rng, &[rows, out], 1.0, dtype);
            let want = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            let got = blas::linear_t_with(lib, x.as_tensor(), w.as_tensor())
                .unwrap()
                .expect("qualifies");
            assert!(
                rel(&got, &want) < tol,
                "{dtype:?} {rows}x{out}x{inp}: values {:e}",
                rel(&got, &want)
            );
            let gw = (&want * &dy)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gg = (&got * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w", &w)] {
                let (a, b) = (
                    gg.get(v.as_tensor()).unwrap(),
                    gw.get(v.as_tensor()).unwrap(),
                );
                assert!(
                    rel(a, b) < tol,
                    "{dtype:?} {rows}x{out}x{inp}: d{name} {:e}",
                    rel(a, b)
                );
            }
            // A constant weight: only the input's gradient.
            let c = w.as_tensor().detach();
            let y = blas::linear_t_with(lib, x.as_tensor(), &c)
                .unwrap()
                .unwrap();
            let g = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(g.get(&c).is_none() && g.get(x.as_tensor()).is_some());
            // Row blocks are fixed, not per thread: one thread gives the pool's bits.
            if dtype == DType::F32 {
                let xs: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let ws: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let split = lib
                    .gemm(blas::Op::N, blas::Op::T, rows, out, inp, &xs, &ws)
                    .unwrap();
                let one = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap()
                    .install(|| {
                        lib.gemm(blas::Op::N, blas::Op::T, rows, out, inp, &xs, &ws)
                            .unwrap()
                    });
                assert!(split
                    .iter()
                    .zip(&one)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }
}
