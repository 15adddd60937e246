//! The README's quickstart (scripts/quickstart.rlq) through the Rust API, without the language:
//! which edges of SmolLM2-135M carry its answers to two arithmetic questions?
//!
//! `cargo run --example quickstart [MODEL.gguf]` (default: the model scripts/fetch-models.sh
//! brings). Every step is the function the matching verb calls: `load`, `patch` (prepare +
//! run), `edges … top`, `entropy … by layer`.

use polars::prelude::*;
use rlq::analysis::{entropy, By, HistOpts};
use rlq::attribution::prepare::{prepare, PrepareOptions, SampleSpec, TCut};
use rlq::attribution::{run, GraphMeta, LossKind, Method};
use rlq::model::hooked::HookedTransformer;
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rlq::tune_allocator();
    rlq::tune_cpu_threads();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/smollm2-135m-instruct.q4_1.gguf".to_string());
    // let m = load "…"
    let m = load(&path, &LoadOptions::default())?;
    let c = &m.config;
    println!(
        "{}: {} layers, {} heads, d_model {}",
        m.source, c.n_layers, c.n_heads, c.d_model
    );

    // let qs = read "quickstart.jsonl"
    let specs: Vec<SampleSpec> = ["What is 3 plus 4?", "What is 12 minus 5?"]
        .iter()
        .enumerate()
        .map(|(row, q)| SampleSpec {
            id: row as i64,
            prompt: Some(q.to_string()),
            row,
            ..SampleSpec::default()
        })
        .collect();

    // let g = patch m on qs t_cut 4: the model's own greedy answers (chat template on), then
    // zero-ablation EAP with the self-entropy loss on the first 4 answer tokens.
    let tf = HookedTransformer::new(&m)?;
    let layout = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let opts = PrepareOptions {
        loss: LossKind::SelfEntropy,
        t_cut: TCut::Fixed(4),
        ..PrepareOptions::default()
    };
    let never = || false;
    let prepared = prepare(
        &m,
        &tf,
        &specs,
        &opts,
        &mut |_, _| {},
        &mut |_, _| {},
        &never,
    )?;
    for (spec, answer) in specs.iter().zip(prepared.answers()) {
        let text = m.tokenizer.decode(answer, true).unwrap_or_default();
        println!("{:?} → {text:?}", spec.prompt.as_deref().unwrap_or(""));
    }
    let meta = GraphMeta {
        model: m.source.clone(),
        n_layers: c.n_layers,
        loss: LossKind::SelfEntropy.name().into(),
        method: Method::Eap.name().into(),
        granularity: Granularity::Block.name().into(),
        t_cut: prepared.t_cut,
        ..GraphMeta::default()
    };
    let outcome = run(
        &tf,
        &layout,
        &prepared.samples,
        &prepared.windows,
        Method::Eap,
        meta,
        None,
        &mut |done, total| eprintln!("scored {done}/{total}"),
        &mut |_, _| {},
        &never,
    );
    if let Some(e) = outcome.stopped {
        return Err(e.into());
    }
    let g = outcome.graph;

    // edges g where abs_score > 0.01 | sort by abs_score desc | top 10
    let top = g
        .edge_table()?
        .lazy()
        .filter(col("abs_score").gt(lit(0.01)))
        .sort(
            ["abs_score"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .limit(10)
        .collect()?;
    println!("{top}");

    // entropy g by layer | top 5
    let by_layer = entropy(&g.sample_table()?, By::Layer, HistOpts::default())?;
    println!("{}", by_layer.head(Some(5)));
    Ok(())
}
