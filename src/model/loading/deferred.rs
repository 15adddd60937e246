//! A safetensors file written one tensor at a time. Each [`Deferred`] tensor is made when the
//! writer reaches it and dropped once its bytes are out, so writing a model never holds a second
//! copy of its weights: LoRA's merged weights (`W₀ + B·A·s`, formed per weight) and parked
//! optimizer moments (read from their file per weight) stream to disk. The bytes are those of
//! `candle_core::safetensors::save` of the same tensors: the same `safetensors` writer lays the
//! file out (ordered by dtype, then name) from the shapes and dtypes given up front.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use safetensors::tensor::View;

type Make<'a> = Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>;

/// A named tensor of a known dtype and shape, made on demand.
pub struct Deferred<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    make: Make<'a>,
    /// Why making it failed while writing ([`View::data`] cannot return an error).
    failed: RefCell<Option<String>>,
}

impl<'a> Deferred<'a> {
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
        make: impl Fn() -> candle_core::Result<Tensor> + 'a,
    ) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
            make: Box::new(make),
            failed: RefCell::new(None),
        }
    }

    /// A tensor already in memory (shared storage; its bytes are copied out when written).
    pub fn of(name: impl Into<String>, t: &'a Tensor) -> Self {
        Self::new(name, t.dtype(), t.dims().to_vec(), move || Ok(t.detach()))
    }

    /// The tensor, checked against the dtype and shape the file's header promised.
    pub fn make(&self) -> candle_core::Result<Tensor> {
        let t = (self.make)()?;
        if t.dtype() != self.dtype || t.dims() != self.shape.as_slice() {
            candle_core::bail!(
                "tensor `{}` was announced as {:?} {:?} but is {:?} {:?}",
                self.name,
                self.dtype,
                self.shape,
                t.dtype(),
                t.dims()
            );
        }
        Ok(t)
    }
}

impl View for &Deferred<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.into()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.make() {
            Ok(t) => Cow::Owned(<Tensor as View>::data(&t).into_owned()),
            Err(e) => {
                *self.failed.borrow_mut() = Some(e.to_string());
                // Bytes of the announced length keep the writer's layout; the caller discards
                // the file (below).
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// Writes `tensors` to `path`, making each in turn. Names must be distinct. The file appears
/// whole or not at all: written beside `path` and renamed onto it once every tensor was made,
/// so a failure leaves what was at `path` before.
pub fn save(tensors: &[Deferred<'_>], path: &Path) -> candle_core::Result<()> {
    let at =
        |e: &dyn std::fmt::Display| candle_core::Error::Msg(format!("`{}`: {e}", path.display()));
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = tensors.iter().find(|d| !seen.insert(d.name.as_str())) {
        candle_core::bail!("tensor `{}` given twice", d.name);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".rlq-tensors-")
        .tempfile_in(dir)
        .map_err(|e| at(&e))?;
    let named = tensors.iter().map(|d| (d.name.as_str(), d));
    safetensors::tensor::serialize_to_file(named, None, tmp.path()).map_err(|e| at(&e))?;
    if let Some(e) = tensors.iter().find_map(|d| d.failed.borrow_mut().take()) {
        return Err(at(&e));
    }
    tmp.persist(path).map_err(|e| at(&e.error))?;
    Ok(())
}

/// Every tensor made, under its name: the in-memory form of a deferred list.
pub fn materialize(tensors: &[Deferred<'_>]) -> candle_core::Result<HashMap<String, Tensor>> {
    tensors
        .iter()
        .map(|d| Ok((d.name.clone(), d.make()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn sample() -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let mut m = HashMap::new();
        let a = Tensor::arange(0f32, 12.0, &dev).unwrap();
        m.insert("b.w".to_string(), a.reshape((3, 4)).unwrap());
        m.insert(
            "a.w".to_string(),
            (a.narrow(0, 2, 6).unwrap() * 0.5).unwrap(),
        );
        let d = Tensor::arange(0f64, 5.0, &dev).unwrap();
        m.insert("c.moment".to_string(), d);
        // A transposed view: not contiguous, written in its logical order.
        let t = Tensor::arange(0f32, 6.0, &dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        m.insert("d.t".to_string(), t.t().unwrap());
        m
    }

    #[test]
    fn same_bytes_as_candles_writer() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        let theirs = dir.path().join("candle.safetensors");
        candle_core::safetensors::save(&m, &theirs).unwrap();
        let list: Vec<Deferred> = m.iter().map(|(n, t)| Deferred::of(n.clone(), t)).collect();
        let ours = dir.path().join("deferred.safetensors");
        save(&list, &ours).unwrap();
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            std::fs::read(&ours).unwrap()
        );
    }

    #[test]
    fn each_tensor_is_made_once_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let made = RefCell::new(Vec::new());
        let dev = Device::Cpu;
        let list: Vec<Deferred> = ["z", "a", "m"]
            .iter()
            .map(|n| {
                let made = &made;
                let dev = dev.clone();
                Deferred::new(*n, DType::F32, vec![2], move || {
                    made.borrow_mut().push(n.to_string());
                    Tensor::zeros(2, DType::F32, &dev)
                })
            })
            .collect();
        save(&list, &dir.path().join("x.safetensors")).unwrap();
        assert_eq!(*made.borrow(), ["a", "m", "z"]);
    }

    #[test]
    fn a_failure_or_a_wrong_shape_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        std::fs::write(&path, b"before").unwrap();
        let dev = Device::Cpu;
        let ok = Deferred::new("ok", DType::F32, vec![2], || {
            Tensor::zeros(2, DType::F32, &dev)
        });
        let fails = Deferred::new("bad", DType::F32, vec![2], || candle_core::bail!("no"));
        let err = save(&[ok, fails], &path).unwrap_err().to_string();
        assert!(err.contains("no"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"before");
        let wrong = Deferred::new("w", DType::F32, vec![3], || {
            Tensor::zeros(2, DType::F32, &dev)
        });
        let err = save(&[wrong], &path).unwrap_err().to_string();
        assert!(err.contains("announced as F32 [3]"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"before");
        let twice = [
            Deferred::new("t", DType::F32, vec![2], || {
                Tensor::zeros(2, DType::F32, &dev)
            }),
            Deferred::new("t", DType::F32, vec![2], || {
                Tensor::zeros(2, DType::F32, &dev)
            }),
        ];
        assert!(save(&twice, &path)
            .unwrap_err()
            .to_string()
            .contains("given twice"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
