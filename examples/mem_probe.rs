//! Peak memory after loading SmolLM2, and after one EAP sample: the process's peak RSS (VmHWM)
//! and the peak of live heap bytes (a counting allocator), to see where memory goes and how much
//! of the RSS is allocator slack.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `alloc` (a non-zero-size layout) are passed on.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `alloc` above, i.e. by `System`, with this layout.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> String {
    format!(
        "heap live {} MB, peak {} MB",
        LIVE.load(Relaxed) / 1_000_000,
        PEAK.load(Relaxed) / 1_000_000
    )
}
fn hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .collect::<Vec<_>>()
        .join(" ")
}
fn main() {
    rlq::tune_cpu_threads(); // as the rlq binary does
    let m = rlq::model::load(
        "models/smollm2-135m-instruct.q4_1.gguf",
        &Default::default(),
    )
    .unwrap();
    println!("after load: {}; {}", hwm(), heap());
    let tf = rlq::model::hooked::HookedTransformer::new(&m).unwrap();
    let c = &m.config;
    let lay = rlq::model::hooks::HookLayout::new(
        rlq::model::hooks::Granularity::Block,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
    );
    // Tokens: the first argument (default 128); the loss covers the second half.
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    let ids: Vec<u32> = (0..n).map(|i| (i * 7919) % 49152).collect();
    let s = rlq::attribution::Sample {
        id: 0,
        tokens: ids.clone(),
        corrupt: None,
        loss: rlq::attribution::SampleLoss::Tokens {
            start: ids.len() / 2,
            targets: ids[ids.len() / 2 + 1..]
                .iter()
                .copied()
                .chain([0])
                .collect(),
        },
    };
    // The same steps as `score_sample`, with the heap measured between them.
    {
        use rlq::model::hooked::{DestOffsets, ForwardInput, Hooks};
        let (offsets, vars) = DestOffsets::zero_vars(
            &lay,
            ids.len(),
            c.d_model,
            candle_core::DType::F32,
            tf.device(),
        )
        .unwrap();
        println!("offsets: {}", heap());
        let t0 = std::time::Instant::now();
        let out = tf
            .forward(
                ForwardInput::Ids(&ids),
                &Hooks {
                    layout: Some(&lay),
                    dest_offsets: Some(&offsets),
                    record_sources: true,
                    logits_from: ids.len() / 2,
                },
                None,
            )
            .unwrap();
        println!("forward: {} ({:.3} s)", heap(), t0.elapsed().as_secs_f64());
        let t0 = std::time::Instant::now();
        let target = rlq::attribution::loss::LossTarget::Tokens {
            start: 0,
            targets: ids[ids.len() / 2 + 1..]
                .iter()
                .copied()
                .chain([0])
                .collect(),
        };
        let l = rlq::attribution::loss::loss(&out.logits, &target).unwrap();
        println!("loss: {}", heap());
        let g = l.backward().unwrap();
        println!("backward: {} ({:.3} s)", heap(), t0.elapsed().as_secs_f64());
        drop((g, l, out, vars, offsets));
        println!("dropped: {}", heap());
    }
    let t0 = std::time::Instant::now();
    rlq::attribution::score_sample(
        &tf,
        &lay,
        &lay.edges(),
        &s,
        rlq::attribution::Method::Eap,
        &|| false,
    )
    .unwrap();
    println!(
        "after sample: {}; {} ({:.3} s)",
        hwm(),
        heap(),
        t0.elapsed().as_secs_f64()
    );
}
