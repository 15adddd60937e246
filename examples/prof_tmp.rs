use candle_core::{DType, Device, Tensor};
use rlq::attribution::loss::{loss, LossTarget};
use rlq::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks};
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions};
use std::time::Instant;
fn main() {
    let m = load("models/smollm2-135m-instruct.q4_1.gguf", &LoadOptions { device: Device::Cpu, dtype: DType::F32 }).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let c = &m.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let ids: Vec<u32> = (0..128u32).map(|i| (i * 7919) % 49152).collect();
    for _ in 0..2 {
        let t = Instant::now();
        let _ = tf.logits(&ids).unwrap();
        println!("plain fwd {:?}", t.elapsed());
        let t = Instant::now();
        let (off, vars) = DestOffsets::zero_vars(&lay, 128, c.d_model, DType::F32, &Device::Cpu).unwrap();
        let out = tf.forward(ForwardInput::Ids(&ids), &Hooks { layout: Some(&lay), dest_offsets: Some(&off), record_sources: true }, None).unwrap();
        println!("hooked fwd {:?}", t.elapsed());
        let t = Instant::now();
        let l = loss(&out.logits, &LossTarget::Tokens { start: 64, targets: ids[65..].iter().copied().chain([0]).collect() }).unwrap();
        println!("loss {:?}", t.elapsed());
        let t = Instant::now();
        let g = l.backward().unwrap();
        println!("backward {:?}", t.elapsed());
        let t = Instant::now();
        let gs = DestOffsets::stack_grads(&g, &vars).unwrap();
        let o = out.sources.unwrap().to_dtype(DType::F64).unwrap().reshape((61, 128 * 576)).unwrap();
        let s = o.matmul(&gs.to_dtype(DType::F64).unwrap().reshape((121, 128 * 576)).unwrap().t().unwrap()).unwrap();
        let _ = s.to_vec2::<f64>().unwrap();
        println!("scores {:?}", t.elapsed());
        let _ = Tensor::zeros(1, DType::F32, &Device::Cpu);
    }
}
