//! Peak memory after loading SmolLM2, and after one EAP sample (VmHWM), to see where memory goes.
fn hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .collect::<Vec<_>>()
        .join(" ")
}
fn main() {
    let m = rlq::model::load(
        "models/smollm2-135m-instruct.q4_1.gguf",
        &Default::default(),
    )
    .unwrap();
    println!("after load: {}", hwm());
    let tf = rlq::model::hooked::HookedTransformer::new(&m).unwrap();
    let c = &m.config;
    let lay = rlq::model::hooks::HookLayout::new(
        rlq::model::hooks::Granularity::Block,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
    );
    let ids: Vec<u32> = (0..128u32).map(|i| (i * 7919) % 49152).collect();
    let s = rlq::attribution::Sample {
        id: 0,
        tokens: ids.clone(),
        corrupt: None,
        loss: rlq::attribution::SampleLoss::Tokens {
            start: 64,
            targets: ids[65..].iter().copied().chain([0]).collect(),
        },
    };
    rlq::attribution::score_sample(
        &tf,
        &lay,
        &lay.edges(),
        &s,
        rlq::attribution::Method::Eap,
        &|| false,
    )
    .unwrap();
    println!("after sample: {}", hwm());
}
