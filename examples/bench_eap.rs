//! Benchmark (run by scripts/bench-eap.sh, never by the tests): one sample of `--tokens` tokens
//! through the full EAP computation (forward + backward + every block edge score) on a GGUF model,
//! printing samples/s and peak RSS as JSON. Also `scores` mode, which writes rlq's scores for
//! given exact tokens so they can be compared with the independent PyTorch implementation.

use candle_core::{DType, Device};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rlq::attribution::{score_sample, Method, Sample, SampleLoss};
use rlq::model::hooked::HookedTransformer;
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    rlq::tune_allocator();
    rlq::tune_cpu_threads(); // as the rlq binary does
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_eap bench|scores MODEL.gguf [--tokens N] [--repeats R] [--dtype f32|f64] [--weights quantized|dense] [--ids a,b --start K --targets c,d --out F]");
        std::process::exit(2);
    }
    let dtype = match arg(&args, "--dtype").as_deref() {
        Some("f64") => DType::F64,
        _ => DType::F32,
    };
    let m = load(
        &args[2],
        &LoadOptions {
            device: Device::Cpu,
            dtype,
            keep_quantized: arg(&args, "--weights").as_deref() != Some("dense"),
        },
    )
    .expect("load");
    let weights = if m.weights.is_quantized("model.layers.0.mlp.up_proj.weight") {
        "quantized"
    } else {
        "dense"
    };
    let tf = HookedTransformer::new(&m).expect("hooked");
    let c = &m.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    let parse = |s: String| -> Vec<u32> {
        s.split(',')
            .map(|x| x.trim().parse().expect("id"))
            .collect()
    };
    if args[1] == "scores" {
        let tokens = parse(arg(&args, "--ids").expect("--ids"));
        let targets = parse(arg(&args, "--targets").expect("--targets"));
        let start: usize = arg(&args, "--start")
            .expect("--start")
            .parse()
            .expect("start");
        let s = Sample {
            id: 0,
            tokens,
            corrupt: None,
            loss: SampleLoss::Tokens { start, targets },
        };
        let r = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).expect("scores");
        let map: serde_json::Map<String, serde_json::Value> = edges
            .iter()
            .zip(&r.scores)
            .map(|(&(u, v), x)| {
                (
                    format!("{}->{}", lay.sources[u].name, lay.dests[v].name),
                    (*x).into(),
                )
            })
            .collect();
        let out = serde_json::json!({"loss": r.loss, "scores": map});
        std::fs::write(arg(&args, "--out").expect("--out"), out.to_string()).expect("write");
        return;
    }
    let n: usize = arg(&args, "--tokens").map_or(128, |s| s.parse().expect("tokens"));
    let repeats: usize = arg(&args, "--repeats").map_or(3, |s| s.parse().expect("repeats"));
    let mut rng = StdRng::seed_from_u64(0);
    let ids: Vec<u32> = (0..n)
        .map(|_| rng.gen_range(0..c.vocab_size as u32))
        .collect();
    let start = n / 2;
    let mut targets: Vec<u32> = ids[start + 1..].to_vec();
    targets.push(0);
    let s = Sample {
        id: 0,
        tokens: ids,
        corrupt: None,
        loss: SampleLoss::Tokens { start, targets },
    };
    score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).expect("warm-up");
    let t0 = std::time::Instant::now();
    for _ in 0..repeats {
        score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).expect("score");
    }
    let dt = t0.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{}",
        serde_json::json!({"impl": "rlq", "weights": weights, "samples_per_s": 1.0 / dt, "peak_rss_mib": peak_rss_mib()})
    );
}
