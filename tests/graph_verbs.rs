//! The model and graph verbs through the language, on the real SmolLM2 (skipped with a notice
//! when scripts/fetch-models.sh has not been run).

use std::path::Path;

use polars::prelude::*;
use rlq::attribution::{score_sample, Method, Sample, SampleLoss};
use rlq::model::hooked::HookedTransformer;
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions};
use rlq::Session;

const GGUF: &str = "models/smollm2-135m-instruct.q4_1.gguf";

fn session() -> Option<Session> {
    if !Path::new(GGUF).exists() {
        eprintln!("SKIP: {GGUF} missing; run scripts/fetch-models.sh");
        return None;
    }
    let mut s = Session::new();
    s.eval(&format!("let m = load \"{GGUF}\"")).unwrap();
    Some(s)
}

fn table(s: &mut Session, src: &str) -> DataFrame {
    match s.eval(src) {
        Ok(v) => v
            .as_table()
            .unwrap_or_else(|| panic!("`{src}` gave {v}, not a table")),
        Err(e) => panic!("`{src}` failed: {e:?}"),
    }
}

#[test]
fn info_tokens_logits_perplexity() {
    let Some(mut s) = session() else { return };
    let info = table(&mut s, "info m");
    assert_eq!(
        info.column("layers").unwrap().i64().unwrap().get(0),
        Some(30)
    );
    assert_eq!(
        info.column("edges_block").unwrap().i64().unwrap().get(0),
        Some(3691)
    );
    // SmolLM2's Q4_1 matrices kept quantized: ~100 MB in memory, not the 540 MB of f32.
    assert_eq!(
        info.column("quantized").unwrap().bool().unwrap().get(0),
        Some(true)
    );
    let mb = info
        .column("weights_mb")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!(mb > 50.0 && mb < 150.0, "{mb}");
    let toks = table(&mut s, "tokens m \"Hello world\"");
    assert_eq!(toks.height(), 2);
    let top = table(&mut s, "logits m \"The capital of France is\" top 5");
    assert_eq!(top.height(), 5);
    let pieces: Vec<String> = top
        .column("piece")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|p| p.unwrap_or("").to_string())
        .collect();
    assert!(pieces.iter().any(|p| p.contains("Paris")), "{pieces:?}");
    let ppl = s
        .eval("perplexity m on \"The cat sat on the mat and looked out of the window.\"")
        .unwrap()
        .as_number()
        .unwrap();
    assert!(ppl > 1.0 && ppl < 200.0, "{ppl}");
}

/// `patch` on exact token ids gives exactly the engine's scores for the same tokens: the
/// language adds nothing (no BOS, ids as given).
#[test]
fn patch_on_exact_ids_equals_the_engine() {
    let Some(mut s) = session() else { return };
    let prompt: Vec<i64> = vec![
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let answer: Vec<i64> = vec![504, 3575, 282, 4649, 314];
    let df = df!(
        "prompt_ids" => [Series::new("".into(), prompt.clone())],
        "answer_ids" => [Series::new("".into(), answer.clone())],
    )
    .unwrap();
    s.set("qs", df);
    let edges = table(&mut s, "let g = patch m on qs t_cut 3\nedges g");
    assert_eq!(edges.height(), 3691);
    // the engine directly
    let m = load(GGUF, &LoadOptions::default()).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let c = &m.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let p: Vec<u32> = prompt.iter().map(|&x| x as u32).collect();
    let a: Vec<u32> = answer.iter().map(|&x| x as u32).collect();
    let mut tokens = p.clone();
    tokens.extend_from_slice(&a[..2]);
    let want = score_sample(
        &tf,
        &lay,
        &lay.edges(),
        &Sample {
            id: 0,
            tokens,
            corrupt: None,
            loss: SampleLoss::Tokens {
                start: p.len() - 1,
                targets: a[..3].to_vec(),
            },
        },
        Method::Eap,
        &|| false,
    )
    .unwrap();
    let got: Vec<f64> = edges
        .column("score")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(got, want.scores);
}

/// The thin path of the README: two text samples, the model's own greedy answers, T_cut,
/// then filtering, circuits, nodes and per-sample tables.
#[test]
fn patch_text_samples_then_query_the_graph() {
    let Some(mut s) = session() else { return };
    s.set(
        "qs",
        df!("prompt" => ["What is 2 plus 3?", "Name a color."]).unwrap(),
    );
    s.eval("let g = patch m on qs t_cut 2 per_sample true")
        .unwrap();
    let long = table(&mut s, "edges g");
    assert_eq!(long.height(), 2 * 3691);
    assert!(long.column("prompt_id").is_ok());
    let strong = table(
        &mut s,
        "edges g where abs_score > 0.01 and dst_kind == \"logits\"",
    );
    assert!(strong.height() > 0);
    assert!(strong
        .column("dst")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .all(|d| d == Some("logits")));
    let c = s.eval("circuit g top 25").unwrap();
    let g = c.as_graph().unwrap();
    assert_eq!(g.edges.len(), 25);
    assert_eq!(g.scores.len(), 2);
    let nodes = table(&mut s, "nodes g");
    // m{l} is both a source and a destination; a{l} and a{l}<q> are different nodes
    assert_eq!(nodes.height(), 61 + 121 - 30);
    // export: DOT text and the EAP-IG JSON layout, with the circuit's scores
    let dir = tempfile::tempdir().unwrap();
    let (dot, json) = (dir.path().join("c.dot"), dir.path().join("c.json"));
    s.eval(&format!(
        "let c = circuit g top 25\nexport c to \"{}\"\nexport c to \"{}\"",
        dot.display(),
        json.display()
    ))
    .unwrap();
    let dot = std::fs::read_to_string(dot).unwrap();
    assert!(dot.starts_with("digraph") && dot.matches("->").count() == 25);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let edges = j["edges"].as_object().unwrap();
    assert_eq!(edges.len(), 25);
    let mean = g.mean_scores();
    let first = format!("{}->{}", g.edges[0].src, g.edges[0].dst);
    // serde_json's default float parser may differ from the written value in the last ulp
    let back = edges[&first]["score"].as_f64().unwrap();
    assert!((back - mean[0]).abs() <= 1e-15 * mean[0].abs());
    let e = format!("{:?}", s.eval("export c to \"x.png\"").unwrap_err());
    assert!(e.contains(".dot or .json"), "{e}");
    let shown = s.eval("show g top 3").unwrap();
    let text = shown.as_str().unwrap();
    assert!(text.contains("3691 edges, 2 samples, 30 layers"), "{text}");
    assert_eq!(text.matches("->").count(), 3);
    // Statistics on the real graph against the formulas computed here from the saved CSV,
    // parsed by hand (no polars): intensity, edge entropy and kurtosis.
    let csv = dir.path().join("g.csv");
    s.eval(&format!("save g to \"{}\"", csv.display())).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (ip, is, isc) = (
        header.iter().position(|h| *h == "prompt_id").unwrap(),
        header.iter().position(|h| *h == "src").unwrap(),
        header.iter().position(|h| *h == "score").unwrap(),
    );
    let mut per_sample: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut per_edge: std::collections::HashMap<String, f64> = Default::default();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let v: f64 = f[isc].parse().unwrap();
        per_sample.entry(f[ip].to_string()).or_default().push(v);
        *per_edge
            .entry(format!("{}|{}", f[is], f[is + 1]))
            .or_default() += v / 2.0;
    }
    let all: Vec<f64> = per_sample.values().flatten().copied().collect();
    let intensity_here = all.iter().map(|x| x.abs()).sum::<f64>() / all.len() as f64;
    let total: f64 = per_edge.values().map(|x| x.abs()).sum();
    let entropy_here: f64 = per_edge
        .values()
        .map(|x| x.abs() / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    let kurt_here = per_sample
        .values()
        .map(|v| {
            let n = v.len() as f64;
            let mu = v.iter().sum::<f64>() / n;
            let m2 = v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / n;
            let m4 = v.iter().map(|x| (x - mu).powi(4)).sum::<f64>() / n;
            m4 / (m2 * m2)
        })
        .sum::<f64>()
        / per_sample.len() as f64;
    let mut one = |src: &str| -> f64 {
        let t = table(&mut s, src);
        t.column("value").unwrap().f64().unwrap().get(0).unwrap()
    };
    // CSV keeps ~17 significant digits: agreement to 1e-9 relative.
    for (verb, here) in [
        ("intensity g", intensity_here),
        ("edge_entropy g", entropy_here),
        ("kurtosis g", kurt_here),
    ] {
        let got = one(verb);
        assert!(
            (got - here).abs() <= 1e-9 * here.abs(),
            "{verb}: {got} vs {here}"
        );
    }
    // generated answers exist and are used: the graph records T_cut
    assert_eq!(s.eval("g").unwrap().as_graph().unwrap().meta.t_cut, Some(2));
}

#[test]
fn patch_reports_bad_options_clearly() {
    let Some(mut s) = session() else { return };
    s.set("qs", df!("prompt" => ["Hi"]).unwrap());
    let e = format!("{:?}", s.eval("patch m on qs loss entropyy").unwrap_err());
    assert!(e.contains("self_entropy"), "{e}");
    let e = format!("{:?}", s.eval("patch m on qs loss nll").unwrap_err());
    assert!(e.contains("answer"), "{e}");
    s.set("bad", df!("question" => ["Hi"]).unwrap());
    let e = format!("{:?}", s.eval("patch m on bad").unwrap_err());
    assert!(e.contains("prompt"), "{e}");
    let e = format!(
        "{:?}",
        s.eval("patch m on qs alpha 0.1 t_cut 2").unwrap_err()
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn resume_continues_from_a_saved_partial_table() {
    let Some(mut s) = session() else { return };
    s.set(
        "qs",
        df!(
            "prompt_id" => [10i64, 11],
            "prompt" => ["What is 2 plus 3?", "Name a color."],
            "answer" => ["5", "Red"],
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.parquet");
    s.eval(&format!(
        "let first = patch m on (qs | where prompt_id == 10) loss nll per_sample true\nsave first to \"{}\"",
        part.display()
    ))
    .unwrap();
    s.eval(&format!(
        "let all = patch m on qs loss nll resume (read \"{}\")\nlet direct = patch m on qs loss nll",
        part.display()
    ))
    .unwrap();
    let a = s.get("all").unwrap();
    let d = s.get("direct").unwrap();
    let (a, d) = (a.as_graph().unwrap(), d.as_graph().unwrap());
    assert_eq!(a.meta.prompt_ids, vec![10, 11]);
    for (x, y) in a.scores.iter().flatten().zip(d.scores.iter().flatten()) {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1e-12), "{x} vs {y}");
    }
}

/// A rendered error as one line: miette wraps long lines and draws `│` margins.
fn flat(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn two_questions(s: &mut Session) {
    s.set(
        "qs",
        df!(
            "prompt_id" => [10i64, 11],
            "prompt" => ["What is 2 plus 3?", "Name a color."],
            "answer" => ["The answer is 5.", "Red is a color."],
        )
        .unwrap(),
    );
}

/// A resume under other settings is refused with every difference listed (the issue: a run
/// interrupted at t_cut 8 and resumed at t_cut 4, or with eap_ig, was accepted and mislabelled).
#[test]
fn resume_refuses_other_settings_listing_each() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    s.eval("let part = patch m on (qs | where prompt_id == 10) loss nll t_cut 3")
        .unwrap();
    let e = flat(
        s.eval("patch m on qs loss nll t_cut 2 method eap_ig steps 2 dtype f64 resume part")
            .unwrap_err(),
    );
    for part in [
        "cannot resume",
        "method: eap in the partial graph, eap_ig in this run",
        "steps: none in the partial graph, 2 in this run",
        "T_cut rule: fixed 3 in the partial graph, fixed 2 in this run",
        "T_cut: 3 in the partial graph, 2 in this run",
        "dtype: f32 in the partial graph, f64 in this run",
        "prompt_id 10 scored other tokens",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    // Other samples under the same settings: the partial graph's sample is not among them.
    s.set(
        "other",
        df!("prompt_id" => [12i64], "prompt" => ["Hi"], "answer" => ["Hello there."]).unwrap(),
    );
    let e = flat(
        s.eval("patch m on other loss nll t_cut 3 resume part")
            .unwrap_err(),
    );
    assert!(
        e.contains("prompt_id 10 in the partial graph but not among"),
        "{e}"
    );
    // The same settings resume.
    let g = s
        .eval("patch m on qs loss nll t_cut 3 resume part")
        .unwrap();
    assert_eq!(g.as_graph().unwrap().meta.prompt_ids, vec![10, 11]);
}

/// A graph saved to parquet or csv reads back as the same graph: settings, samples' hashes and
/// scores (parquet: bit for bit; csv: the decimal text polars writes, 1e-15 relative), and
/// `compare` works from the files.
#[test]
fn saved_graphs_read_back_with_their_settings() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    s.eval("let g = patch m on qs loss nll t_cut 2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pq, csv) = (dir.path().join("g.parquet"), dir.path().join("g.csv"));
    s.eval(&format!(
        "save g to \"{}\"\nsave g to \"{}\"\nlet p = read \"{}\"\nlet c = read \"{}\"",
        pq.display(),
        csv.display(),
        pq.display(),
        csv.display()
    ))
    .unwrap();
    assert!(dir.path().join("g.csv.rlq-graph.json").is_file());
    let g = s.get("g").unwrap();
    let g = g.as_graph().unwrap();
    assert!(!g.meta.model_hash.is_empty() && g.meta.sample_hashes.len() == 2);
    assert_eq!(g.meta.t_cut_rule, "fixed 2");
    for (name, tol) in [("p", 0.0), ("c", 1e-15)] {
        let v = s.get(name).unwrap();
        let back = v
            .as_graph()
            .unwrap_or_else(|| panic!("{name} is not a graph"));
        assert_eq!(back.meta, g.meta, "{name}");
        assert_eq!(back.edges, g.edges, "{name}");
        for (x, y) in back.scores.iter().flatten().zip(g.scores.iter().flatten()) {
            assert!((x - y).abs() <= tol * y.abs(), "{name}: {x} vs {y}");
        }
    }
    let from_files = table(&mut s, "compare p, c resamples 20");
    let in_memory = table(&mut s, "compare g, g resamples 20");
    assert!(from_files.equals_missing(&in_memory));
    // a resume from the file is checked like one from memory
    let e = flat(
        s.eval("patch m on qs loss nll t_cut 1 resume p")
            .unwrap_err(),
    );
    assert!(
        e.contains("T_cut: 2 in the partial graph, 1 in this run"),
        "{e}"
    );
    // a table saved over the csv drops the stale sidecar: it reads back as a table
    s.eval(&format!("save (edges g) to \"{}\"", csv.display()))
        .unwrap();
    assert!(!dir.path().join("g.csv.rlq-graph.json").exists());
    let t = s.eval(&format!("read \"{}\"", csv.display())).unwrap();
    assert!(t.as_graph().is_none() && t.as_table().is_some());
}

/// Shards with disjoint samples and the same settings merge into the graph of all samples;
/// other settings or shared samples are refused.
#[test]
fn merge_joins_shards_and_refuses_mixed_ones() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    s.eval(
        "let a = patch m on (qs | where prompt_id == 10) loss nll t_cut 2\n\
         let b = patch m on (qs | where prompt_id == 11) loss nll t_cut 2\n\
         let both = patch m on qs loss nll t_cut 2\n\
         let merged = merge a, b",
    )
    .unwrap();
    let (m, d) = (s.get("merged").unwrap(), s.get("both").unwrap());
    let (m, d) = (m.as_graph().unwrap(), d.as_graph().unwrap());
    assert_eq!(m.meta, d.meta);
    // same samples, same code path: equal to the last bit
    assert_eq!(m.scores, d.scores);
    let e = flat(s.eval("merge a, a").unwrap_err());
    assert!(e.contains("prompt_id 10 in both shards"), "{e}");
    s.eval("let c = patch m on (qs | where prompt_id == 11) loss nll t_cut 1")
        .unwrap();
    let e = flat(s.eval("merge a, c").unwrap_err());
    assert!(
        e.contains("T_cut: 2 in the first shard, 1 in this shard"),
        "{e}"
    );
}

/// loss kl under plain EAP would score every edge ~1e-8 (the KL's gradient is zero at the
/// clean input): refused, pointing to eap_ig.
#[test]
fn kl_with_plain_eap_is_refused() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    let e = flat(s.eval("patch m on qs loss kl").unwrap_err());
    assert!(
        e.contains("gradient of the KL is zero") && e.contains("eap_ig"),
        "{e}"
    );
}

/// Ctrl-C while `patch` generates answers keeps the answers already generated: the samples
/// table comes back with `answer_ids` for them, and patching it again generates only the rest.
#[test]
fn ctrl_c_while_generating_keeps_the_answers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(mut s) = session() else { return };
    let flag = Arc::new(AtomicBool::new(false));
    s.set_interrupt(flag.clone());
    s.set(
        "qs",
        df!(
            "prompt_id" => [1i64, 2, 3],
            "prompt" => ["Count from 1 to 20.", "List ten fruits.", "Name five colors."],
        )
        .unwrap(),
    );
    // Interrupt while answers are generated: each takes ~1 s (16 tokens at ~20 tok/s).
    let f = flag.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        f.store(true, Ordering::Relaxed);
    });
    s.eval("let a = patch m on qs max_tokens 16").unwrap();
    t.join().unwrap();
    let v = s.get("a").unwrap();
    assert!(
        v.as_graph().is_none(),
        "the interrupt came after every answer"
    );
    let kept = v
        .as_table()
        .expect("an interrupted generation returns the samples table");
    let ids = kept.column("answer_ids").unwrap().list().unwrap().clone();
    let done = (0..ids.len())
        .filter(|&r| ids.get_as_series(r).is_some())
        .count();
    assert!(done < 3, "the interrupt came after every answer: {done}");
    // Continue: the kept answers are used as given, the rest generated.
    flag.store(false, Ordering::Relaxed);
    let g = s.eval("patch m on a max_tokens 16").unwrap();
    let fresh = s.eval("patch m on qs max_tokens 16").unwrap();
    let (g, fresh) = (g.as_graph().unwrap(), fresh.as_graph().unwrap());
    // Greedy answers are the same tokens either way: the same samples were scored.
    assert_eq!(g.meta.sample_hashes, fresh.meta.sample_hashes);
    assert_eq!(g.scores, fresh.scores);
    eprintln!("answers kept at the interrupt: {done} of 3");
}

/// The library keeps exactly the answers completed before the interrupt: here it fires once two
/// answers are in, so two come back, equal to the answers of an uninterrupted run.
#[test]
fn prepare_returns_the_answers_done_at_an_interrupt() {
    use rlq::attribution::prepare::{prepare, PrepareError, PrepareOptions, SampleSpec};
    use std::sync::atomic::{AtomicUsize, Ordering};
    if !Path::new(GGUF).exists() {
        return;
    }
    let m = load(GGUF, &LoadOptions::default()).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let specs: Vec<SampleSpec> = ["Say hi.", "Name a color.", "What is 2 plus 3?"]
        .iter()
        .enumerate()
        .map(|(i, p)| SampleSpec {
            id: i as i64 + 1,
            prompt: Some(p.to_string()),
            row: i,
            ..SampleSpec::default()
        })
        .collect();
    let opts = PrepareOptions {
        max_answer_tokens: 8,
        ..PrepareOptions::default()
    };
    let done = AtomicUsize::new(0);
    let out = prepare(
        &m,
        &tf,
        &specs,
        &opts,
        &mut |d, _| done.store(d, Ordering::Relaxed),
        &|| done.load(Ordering::Relaxed) >= 2,
    );
    let Err(PrepareError::Interrupted { answers }) = out else {
        panic!("expected an interrupt")
    };
    let full = prepare(&m, &tf, &specs, &opts, &mut |_, _| {}, &|| false).unwrap();
    assert_eq!(answers.len(), 2);
    for (k, (id, a)) in answers.iter().enumerate() {
        assert_eq!(*id, k as i64 + 1);
        assert_eq!(a, &full.answers[k]);
    }
}
