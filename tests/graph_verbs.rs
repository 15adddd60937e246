//! The model and graph verbs through the language, on the real SmolLM2 (skipped with a notice
//! when scripts/fetch-models.sh has not been run).

use std::path::Path;

use polars::prelude::*;
use rlq::attribution::{edge_infos, score_sample, Graph, GraphMeta, Method, Sample, SampleLoss};
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
    // Head granularity on SmolLM2's 9 query / 3 key-value heads: the 70651 edges the GPU log
    // (benches/results) reports for a head-level run.
    assert_eq!(
        info.column("edges_head").unwrap().i64().unwrap().get(0),
        Some(70651)
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
    // the sample's record: the answer as given, the loss window, the engine's loss and norm
    let g = s.get("g").unwrap();
    let r = &g.as_graph().unwrap().meta.samples;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].answer_ids, a);
    assert_eq!(
        (r[0].t_cut, r[0].loss_positions.clone()),
        (Some(3), vec![0, 1, 2])
    );
    assert_eq!(r[0].loss_ids, a[..3].to_vec());
    assert_eq!(r[0].loss.to_bits(), want.loss.to_bits());
    assert_eq!(r[0].grad_norm.to_bits(), want.grad_norm.to_bits());
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
    // export: DOT text; EAP-IG's JSON layout has no block nodes, so a block graph is refused
    // with the way out (its JSON round trip is `eap_ig_json_round_trip_and_schema`)
    let dir = tempfile::tempdir().unwrap();
    let (dot, json) = (dir.path().join("c.dot"), dir.path().join("c.json"));
    s.eval(&format!(
        "let c = circuit g top 25\nexport c to \"{}\"",
        dot.display(),
    ))
    .unwrap();
    let dot = std::fs::read_to_string(dot).unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert_eq!(
        dot.lines().filter(|l| l.contains("penwidth")).count(),
        25,
        "{dot}"
    );
    let e = format!(
        "{:?}",
        s.eval(&format!("export c to \"{}\"", json.display()))
            .unwrap_err()
    );
    assert!(e.contains("granularity head kv ungrouped"), "{e}");
    assert!(!json.exists());
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

/// MIB's official edge counts for EAP-IG's graph of two of its models, from rlq's layouts of
/// those shapes (no weights needed): every head has its own q, k and v input.
#[test]
fn ungrouped_head_edge_counts_match_mib() {
    // Qwen2.5-0.5B: 24 layers, 14 query heads over 2 KV heads.
    let qwen = HookLayout::new(Granularity::HeadUngrouped, 24, 14, 2);
    assert_eq!(qwen.edges().len(), 179_749);
    // Llama-3.1-8B: 32 layers, 32 query heads over 8 KV heads.
    let llama = HookLayout::new(Granularity::HeadUngrouped, 32, 32, 8);
    assert_eq!(llama.edges().len(), 1_592_881);
    // the grouped form (k/v per KV head) is a smaller graph of the same model
    let grouped = HookLayout::new(Granularity::Head, 24, 14, 2).edges().len();
    assert!(grouped < 179_749, "{grouped}");
    // without GQA the two forms are one graph
    assert_eq!(
        HookLayout::new(Granularity::HeadUngrouped, 3, 4, 4).edges(),
        HookLayout::new(Granularity::Head, 3, 4, 4).edges()
    );
    assert_eq!(
        qwen.dests[qwen.dest_layer_start(0) + 14 + 13].name,
        "a0.h13<k>"
    );
}

/// A head-kv-ungrouped graph of a 2-layer, 4-head model with two samples of fixed scores.
fn ungrouped_graph() -> Graph {
    let lay = HookLayout::new(Granularity::HeadUngrouped, 2, 4, 2);
    let edges = edge_infos(&lay);
    let n = edges.len();
    // distinct, signed, irrational-ish values so a swapped or rounded score shows
    let scores = (0..2)
        .map(|k| {
            (0..n)
                .map(|e| {
                    ((e * 7 + k * 3) as f64 * 0.618_033_988_7).sin() * 10f64.powi(-(e as i32 % 4))
                })
                .collect()
        })
        .collect();
    Graph {
        edges,
        scores,
        meta: GraphMeta {
            model: "tiny".into(),
            n_layers: 2,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: Granularity::HeadUngrouped.name().into(),
            t_cut: Some(3),
            prompt_ids: vec![0, 1],
            per_sample: false,
            per_position: false,
            n_heads: 4,
            d_model: 16,
            ..GraphMeta::default()
        },
        positions: None,
    }
}

/// The Python that checks a file against EAP-IG's layout (scripts/check_eap_ig_json.py): the
/// project's venv if present, else python3; None (with a notice) when there is none.
fn python() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/rlq-tune-venv/bin/python"))
        .filter(|p| p.exists());
    let p = venv.unwrap_or_else(|| "python3".into());
    match std::process::Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => Some(p),
        _ => {
            eprintln!("SKIP: no python3 for scripts/check_eap_ig_json.py");
            None
        }
    }
}

/// Runs the checker on `file`; with `EAP_IG_SRC` set (EAP-IG's `src` folder), EAP-IG's own
/// `Graph.from_json` loads it too. Returns its `ok:` line.
fn check_with_python(file: &Path) -> Option<String> {
    let py = python()?;
    let mut cmd = std::process::Command::new(py);
    cmd.arg("scripts/check_eap_ig_json.py").arg(file);
    if let Some(src) = std::env::var_os("EAP_IG_SRC") {
        cmd.arg("--eap-ig").arg(src);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ok:"), "{text}");
    eprintln!("{}: {}", file.display(), text.trim());
    Some(text)
}

/// `export … .json` writes EAP-IG's `Graph.to_json` layout; `read_graph` reads it back to the
/// same edges and mean scores (exactly: serde_json round-trips f64), for a graph and a circuit;
/// the files pass the layout check (and EAP-IG's loader where EAP_IG_SRC is set).
#[test]
fn eap_ig_json_round_trip_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let g = ungrouped_graph();
    let mean = g.mean_scores();
    let n = g.edges.len();
    // q/k/v of 4 heads from 1 then 6 sources, m0/m1 from 5/10, logits from 11
    assert_eq!(n, 12 * (1 + 6) + (5 + 10) + 11);
    let mut s = Session::new();
    s.set("g", g.clone());
    let (full, circ) = (dir.path().join("g.json"), dir.path().join("c.json"));
    s.eval(&format!(
        "export g to \"{}\"\nlet c = circuit g top 30\nexport c to \"{}\"",
        full.display(),
        circ.display()
    ))
    .unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    assert_eq!(j["cfg"]["n_layers"], 2);
    assert_eq!(j["cfg"]["n_heads"], 4);
    assert_eq!(j["cfg"]["d_model"], 16);
    assert_eq!(j["cfg"]["parallel_attn_mlp"], false);
    assert_eq!(j["edges"].as_object().unwrap().len(), n);
    assert_eq!(j["edges"]["input->a0.h1<q>"]["in_graph"], true);
    assert_eq!(j["nodes"]["a1.h3"]["in_graph"], true);
    assert_eq!(j["nodes"]["logits"]["in_graph"], true);
    // the whole graph back
    let back = s
        .eval(&format!("read_graph \"{}\"", full.display()))
        .unwrap();
    let back = back.as_graph().unwrap();
    assert_eq!(back.edges, g.edges);
    assert_eq!(back.mean_scores(), mean, "scores must read back exactly");
    assert_eq!(back.meta.granularity, "head_ungrouped");
    assert_eq!((back.meta.n_heads, back.meta.d_model), (4, 16));
    // the circuit: 30 edges in_graph of the full layout; back as the same 30
    let jc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&circ).unwrap()).unwrap();
    let in_graph = jc["edges"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["in_graph"] == true)
        .count();
    assert_eq!((jc["edges"].as_object().unwrap().len(), in_graph), (n, 30));
    let c = s.eval("c").unwrap();
    let c = c.as_graph().unwrap();
    let cb = s
        .eval(&format!("read_graph \"{}\"", circ.display()))
        .unwrap();
    let cb = cb.as_graph().unwrap();
    assert_eq!(cb.edges, c.edges);
    assert_eq!(cb.mean_scores(), c.mean_scores());
    let all = s
        .eval(&format!("read_graph \"{}\" edges all", circ.display()))
        .unwrap();
    assert_eq!(all.as_graph().unwrap().edges.len(), n);
    // a file that is not EAP-IG's: an edge name of another shape
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(&full).unwrap().replacen(
        "\"input->a0.h1<q>\"",
        "\"input->a0.h9<q>\"",
        1,
    );
    std::fs::write(&bad, text).unwrap();
    let e = format!(
        "{:?}",
        s.eval(&format!("read_graph \"{}\"", bad.display()))
            .unwrap_err()
    );
    assert!(e.contains("input->a0.h9<q>"), "{e}");
    // the layout check in Python (and EAP-IG's own loader when EAP_IG_SRC is set)
    if let Some(ok) = check_with_python(&full) {
        assert!(ok.contains(&format!("{n} edges, {n} in_graph")), "{ok}");
        let ok = check_with_python(&circ).unwrap();
        assert!(ok.contains(&format!("{n} edges, 30 in_graph")), "{ok}");
    }
}

/// MIB's submission folder: `<task>_<model>/` with nine circuits of at most 0.1 … 50 % of the
/// full graph's edges (the strongest by |score|), or one importances.json.
#[test]
fn mib_submission_folder() {
    let dir = tempfile::tempdir().unwrap();
    let g = ungrouped_graph();
    let n = g.edges.len();
    let mut s = Session::new();
    s.set("g", g.clone());
    s.eval(&format!(
        "export g to \"{}\" mib \"ioi_tiny\"",
        dir.path().display()
    ))
    .unwrap();
    let folder = dir.path().join("ioi_tiny");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    let mut abs: Vec<f64> = g.mean_scores().iter().map(|v| v.abs()).collect();
    abs.sort_by(|a, b| b.total_cmp(a));
    for p in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0] {
        let file = folder.join(format!("edges_{p}pct.json"));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let kept: Vec<f64> = j["edges"]
            .as_object()
            .unwrap()
            .values()
            .filter(|e| e["in_graph"] == true)
            .map(|e| e["score"].as_f64().unwrap().abs())
            .collect();
        let want = ((p / 100.0) * n as f64).floor() as usize;
        assert_eq!(kept.len(), want, "{p}%");
        // the strongest ones
        if let Some(weakest) = kept.iter().copied().reduce(f64::min) {
            assert!(weakest >= abs[want - 1], "{p}%");
        }
    }
    s.eval(&format!(
        "export g to \"{}\" mib \"mcqa_tiny\" form importances",
        dir.path().display()
    ))
    .unwrap();
    let imp = dir.path().join("mcqa_tiny/importances.json");
    let back = s
        .eval(&format!("read_graph \"{}\"", imp.display()))
        .unwrap();
    assert_eq!(back.as_graph().unwrap().mean_scores(), g.mean_scores());
    let e = format!(
        "{:?}",
        s.eval(&format!(
            "export g to \"{}\" mib \"../x\"",
            dir.path().display()
        ))
        .unwrap_err()
    );
    assert!(e.contains("<task>_<model>"), "{e}");
}

/// On the real SmolLM2: `granularity head kv ungrouped` scores EAP-IG's graph (9 query heads
/// over 3 KV heads: 123,211 edges), and its JSON passes the layout check.
#[test]
fn real_ungrouped_graph_exports_as_eap_ig_json() {
    let Some(mut s) = session() else { return };
    let prompt: Vec<i64> = vec![1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2];
    let answer: Vec<i64> = vec![504, 3575];
    let df = df!(
        "prompt_ids" => [Series::new("".into(), prompt)],
        "answer_ids" => [Series::new("".into(), answer)],
    )
    .unwrap();
    s.set("qs", df);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.json");
    s.eval(&format!(
        "let g = patch m on qs t_cut 1 granularity head kv ungrouped\nexport g to \"{}\"",
        file.display()
    ))
    .unwrap();
    let g = s.eval("g").unwrap();
    assert_eq!(g.as_graph().unwrap().edges.len(), 123_211);
    let e = format!(
        "{:?}",
        s.eval("patch m on qs t_cut 1 kv ungrouped").unwrap_err()
    );
    assert!(e.contains("granularity head"), "{e}");
    if let Some(ok) = check_with_python(&file) {
        assert!(ok.contains("123211 edges, 123211 in_graph"), "{ok}");
    }
}

/// On the real SmolLM2: `per_position true` keeps S[u,v,t] as a table with `position` and
/// `token`; summed over positions it is the ordinary graph's scores; statistics and the
/// heatmap take `by position`.
#[test]
fn real_per_position_graph() {
    let Some(mut s) = session() else { return };
    let prompt: Vec<i64> = vec![1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198];
    let answer: Vec<i64> = vec![504, 3575, 282];
    let df = df!(
        "prompt_ids" => [Series::new("".into(), prompt.clone()), Series::new("".into(), prompt[..9].to_vec())],
        "answer_ids" => [Series::new("".into(), answer.clone()), Series::new("".into(), answer.clone())],
    )
    .unwrap();
    s.set("qs", df);
    let t = table(
        &mut s,
        "let gp = patch m on qs t_cut 2 per_position true\ngp",
    );
    let plain = s
        .eval("let g = patch m on qs t_cut 2 per_sample true\ng")
        .unwrap();
    let plain = plain.as_graph().unwrap().clone();
    // 13 and 10 tokens fed (prompt + T_cut − 1 answer tokens)
    assert_eq!(t.height(), (13 + 10) * 3691);
    for c in ["prompt_id", "position", "token", "src", "dst", "score"] {
        assert!(t.column(c).is_ok(), "no column {c}");
    }
    let gp = s.eval("gp").unwrap();
    let gp = gp.as_graph().unwrap().clone();
    assert_eq!(
        gp.scores, plain.scores,
        "the edge scores are the ordinary ones"
    );
    let p = gp.positions.as_ref().unwrap();
    assert_eq!(p.tokens[0].len(), 13);
    // Σ_t S[u,v,t] = S[u,v]: the same f64 products of the f32 activations and gradients,
    // summed in another order, so 1e-9 relative (plus 1e-12 of the largest score for edges
    // whose score cancels to ~0).
    for (k, per) in p.scores.iter().enumerate() {
        let n_e = gp.edges.len();
        let big = plain.scores[k].iter().fold(0f64, |m, v| m.max(v.abs()));
        for e in 0..n_e {
            let sum: f64 = per.chunks(n_e).map(|row| row[e]).sum();
            let want = plain.scores[k][e];
            assert!(
                (sum - want).abs() <= 1e-9 * want.abs() + 1e-12 * big,
                "sample {k} edge {e}: {sum:e} vs {want:e}"
            );
        }
    }
    let by_pos = table(&mut s, "intensity gp by position");
    assert_eq!(by_pos.height(), 13);
    let n: Vec<i64> = by_pos
        .column("n_samples")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(&n[..10], &[2; 10]);
    assert_eq!(&n[10..], &[1; 3]);
    // whole-graph statistics of a per-position graph are those of its summed scores
    let a = table(&mut s, "intensity gp");
    let b = table(&mut s, "intensity g");
    assert_eq!(a, b);
    let e = format!("{:?}", s.eval("entropy g by position").unwrap_err());
    assert!(e.contains("per_position true"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("pos.svg");
    s.eval(&format!(
        "plot heatmap gp by position to \"{}\"",
        svg.display()
    ))
    .unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // a saved per-position graph keeps its summed scores, not its positions: read back it is
    // a per-sample graph (resuming it adds nothing: every sample is scored), and a resume that
    // asks for positions is refused
    let pq = dir.path().join("gp.parquet");
    s.eval(&format!("save gp to \"{}\"", pq.display())).unwrap();
    let back = s
        .eval(&format!(
            "patch m on qs t_cut 2 resume (read \"{}\")",
            pq.display()
        ))
        .unwrap();
    let back = back.as_graph().unwrap();
    assert!(back.positions.is_none() && !back.meta.per_position);
    assert_eq!(back.scores, plain.scores);
    let e = format!(
        "{:?}",
        s.eval(&format!(
            "patch m on qs t_cut 2 per_position true resume (read \"{}\")",
            pq.display()
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("per_position: false in the partial graph"),
        "{e}"
    );
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
    // The same settings resume, the partial graph's sample record kept, in sample order.
    let g = s
        .eval("patch m on qs loss nll t_cut 3 resume part")
        .unwrap();
    let g = g.as_graph().unwrap();
    assert_eq!(g.meta.prompt_ids, vec![10, 11]);
    let fresh = s.eval("patch m on qs loss nll t_cut 3").unwrap();
    assert_eq!(g.meta.samples, fresh.as_graph().unwrap().meta.samples);
    // chosen positions are a setting like T_cut
    let e = flat(
        s.eval("patch m on qs loss nll positions [0, 1, 2] resume part")
            .unwrap_err(),
    );
    assert!(
        e.contains("positions: none (the first T_cut) in the partial graph, [0, 1, 2] in this run"),
        "{e}"
    );
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
        &mut |_, _| {},
        &|| done.load(Ordering::Relaxed) >= 2,
    );
    let Err(PrepareError::Interrupted { answers }) = out else {
        panic!("expected an interrupt")
    };
    let full = prepare(
        &m,
        &tf,
        &specs,
        &opts,
        &mut |_, _| {},
        &mut |_, _| {},
        &|| false,
    )
    .unwrap();
    assert_eq!(answers.len(), 2);
    for (k, (id, a)) in answers.iter().enumerate() {
        assert_eq!(*id, k as i64 + 1);
        assert_eq!(a.as_slice(), full.windows[k].answer_ids.as_slice());
    }
}

fn list_ids(df: &DataFrame, column: &str) -> Vec<Vec<i64>> {
    let ca = df.column(column).unwrap().list().unwrap().clone();
    (0..ca.len())
        .map(|r| {
            let s = ca.get_as_series(r).unwrap();
            s.i64().unwrap().iter().map(|x| x.unwrap()).collect()
        })
        .collect()
}

fn f64_column(df: &DataFrame, column: &str) -> Vec<f64> {
    df.column(column)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .collect()
}

/// `samples g`: one row per sample with the answer used (text and ids), the tokens the loss
/// read, the clean loss and ‖∂L/∂H_logits‖; kept by circuits of the graph.
#[test]
fn samples_table_shows_the_answer_and_the_loss_window() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    let t = table(&mut s, "let g = patch m on qs loss nll t_cut 2\nsamples g");
    let names: Vec<String> = t.get_column_names().iter().map(|c| c.to_string()).collect();
    assert_eq!(
        names,
        [
            "prompt_id",
            "answer",
            "answer_ids",
            "t_cut",
            "loss_positions",
            "loss_ids",
            "loss",
            "grad_norm"
        ]
    );
    let m = load(GGUF, &LoadOptions::default()).unwrap();
    let answers = ["The answer is 5.", "Red is a color."];
    let ids: Vec<Vec<i64>> = answers
        .iter()
        .map(|a| {
            m.tokenizer
                .encode(a, false)
                .unwrap()
                .into_iter()
                .map(i64::from)
                .collect()
        })
        .collect();
    assert_eq!(list_ids(&t, "answer_ids"), ids);
    let text: Vec<&str> = t
        .column("answer")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(text, answers);
    assert_eq!(list_ids(&t, "loss_positions"), vec![vec![0, 1], vec![0, 1]]);
    assert_eq!(
        list_ids(&t, "loss_ids"),
        ids.iter().map(|a| a[..2].to_vec()).collect::<Vec<_>>()
    );
    let t_cut: Vec<i64> = t
        .column("t_cut")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(t_cut, vec![2, 2]);
    for c in ["loss", "grad_norm"] {
        assert!(
            f64_column(&t, c).iter().all(|x| x.is_finite() && *x > 0.0),
            "{c}"
        );
    }
    // a circuit of the graph keeps its samples' records
    let c = table(&mut s, "samples (circuit g top 5)");
    assert!(c.equals_missing(&t));
    // a graph without records (made before rlq kept them) says so
    s.set("old", ungrouped_graph());
    let e = flat(s.eval("samples old").unwrap_err());
    assert!(e.contains("keeps no sample records"), "{e}");
}

/// `positions`: [0, 1] is `t_cut 2` to the last bit; [1] alone gives the second token's NLL,
/// which must equal 2·L(t_cut 2) − L(t_cut 1) (the mean of two minus the first), to 1e-5
/// relative (f32 losses of ~1, each rounded to ~1e-7, and the three runs sum in other orders);
/// "last" reads each answer's last token; an index past an answer is refused naming the sample.
#[test]
fn positions_choose_the_answer_tokens_in_the_loss() {
    let Some(mut s) = session() else { return };
    two_questions(&mut s);
    s.eval(
        "let w2 = patch m on qs loss nll t_cut 2\n\
         let p01 = patch m on qs loss nll positions [0, 1]\n\
         let w1 = patch m on qs loss nll t_cut 1\n\
         let p1 = patch m on qs loss nll positions [1]\n\
         let last = patch m on qs loss nll positions \"last\"",
    )
    .unwrap();
    let graph = |name: &str| s.get(name).unwrap().as_graph().unwrap().clone();
    let (w2, p01, w1, p1, last) = (
        graph("w2"),
        graph("p01"),
        graph("w1"),
        graph("p1"),
        graph("last"),
    );
    assert_eq!(w2.scores, p01.scores);
    for (a, b) in w2.meta.samples.iter().zip(&p01.meta.samples) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits());
        assert_eq!(
            (&a.loss_positions, &a.loss_ids),
            (&b.loss_positions, &b.loss_ids)
        );
    }
    assert_eq!(p01.meta.t_cut_rule, "positions [0, 1]");
    assert_eq!(
        p01.meta.answer_positions,
        Some(rlq::attribution::AnswerPositions::Indices(vec![0, 1]))
    );
    for k in 0..2 {
        let (l2, l1, one) = (
            w2.meta.samples[k].loss,
            w1.meta.samples[k].loss,
            &p1.meta.samples[k],
        );
        assert_eq!(one.loss_positions, vec![1]);
        assert_eq!(one.loss_ids, vec![one.answer_ids[1]]);
        let want = 2.0 * l2 - l1;
        eprintln!(
            "sample {k}: NLL of answer token 1 {:.9} vs 2·L(2) − L(1) {want:.9} (relative {:.1e})",
            one.loss,
            (one.loss - want).abs() / want.abs()
        );
        assert!(
            (one.loss - want).abs() <= 1e-5 * want.abs(),
            "{} vs {want}",
            one.loss
        );
        let r = &last.meta.samples[k];
        assert_eq!(r.loss_positions, vec![r.answer_ids.len() - 1]);
        assert_eq!(r.t_cut, Some(r.answer_ids.len()));
    }
    // `show` warns where only the first answer token is scored
    let shown = s.eval("show w1").unwrap().to_string();
    assert!(
        shown.contains("warning: T_cut = 1 on 2 of 2 samples"),
        "{shown}"
    );
    assert!(!s.eval("show w2").unwrap().to_string().contains("warning"));
    // `evaluate` takes the graph's positions by default: the whole graph as the circuit gives
    // the clean loss on the same token (1e-5: the intervened forward sums in another order)
    let ev = table(&mut s, "evaluate m on qs circuit p1");
    for (got, r) in f64_column(&ev, "loss").iter().zip(&p1.meta.samples) {
        assert!(
            (got - r.loss).abs() <= 1e-5 * r.loss.abs(),
            "{got} vs {}",
            r.loss
        );
    }
    let e = flat(
        s.eval("patch m on qs loss nll positions [0, 40]")
            .unwrap_err(),
    );
    assert!(
        e.contains("sample 10: row 0: position 40 is past the answer, which has"),
        "{e}"
    );
    let e = flat(
        s.eval("patch m on qs loss nll t_cut 2 positions [0]")
            .unwrap_err(),
    );
    assert!(
        e.contains("give one of `alpha`, `t_cut`, `positions`, not both"),
        "{e}"
    );
    let e = flat(
        s.eval("patch m on qs loss kl method eap_ig positions [0]")
            .unwrap_err(),
    );
    assert!(e.contains("kl reads a window"), "{e}");
    let e = flat(
        s.eval("patch m on qs loss logit_diff positions [0]")
            .unwrap_err(),
    );
    assert!(
        e.contains("logit_diff reads the last prompt position"),
        "{e}"
    );
    let e = flat(
        s.eval("patch m on qs loss nll positions [1, 1]")
            .unwrap_err(),
    );
    assert!(e.contains("an index appears twice"), "{e}");
    let e = flat(
        s.eval("patch m on qs loss nll positions \"first\"")
            .unwrap_err(),
    );
    assert!(e.contains("not \"last\" or a list"), "{e}");
}

/// The sample records travel in EAP-IG's JSON (under `cfg.rlq.settings`, exact: serde's
/// round-trip float text); the graph `read_graph` gives back is the file's mean, one "sample",
/// so it keeps none rather than records of samples it does not hold.
#[test]
fn sample_records_travel_in_eap_ig_json() {
    let mut g = ungrouped_graph();
    g.meta.samples = (0..2)
        .map(|k| rlq::attribution::SampleRecord {
            answer_ids: vec![5, 7, 2 + k],
            answer: format!("answer {k}"),
            loss_positions: vec![0, 1, 2],
            loss_ids: vec![5, 7, 2 + k],
            t_cut: Some(3),
            loss: 0.1 + 1.0 / 3.0 + k as f64,
            grad_norm: std::f64::consts::PI * 1e-3 * (k + 1) as f64,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    let mut s = Session::new();
    s.set("g", g.clone());
    let t = s.eval("samples g").unwrap();
    assert_eq!(t.as_table().unwrap().height(), 2);
    s.eval(&format!("export g to \"{}\"", path.display()))
        .unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let saved: Vec<rlq::attribution::SampleRecord> =
        serde_json::from_value(j["cfg"]["rlq"]["settings"]["samples"].clone()).unwrap();
    assert_eq!(saved, g.meta.samples);
    let back = s
        .eval(&format!("read_graph \"{}\" edges all", path.display()))
        .unwrap();
    let back = back.as_graph().unwrap();
    assert!(back.meta.samples.is_empty() && !back.has_sample_records());
}

/// Progress reaches the host inside one sample (#12: `rlq run` showed nothing during a
/// 4.5-minute exact patch): a capturing reporter hears the tokens of the first answer before
/// that answer is done, and the forwards of the first sample's exact patch before that sample
/// is scored. It interrupts at the first patched forward, so the test costs two short answers,
/// one clean forward and one patched one; the partial result is reported as a warning.
#[test]
fn progress_arrives_before_the_first_sample_ends() {
    use rlq::report::Event;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    if !Path::new(GGUF).exists() {
        eprintln!("SKIP: {GGUF} missing; run scripts/fetch-models.sh");
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let (flag, log) = (stop.clone(), events.clone());
    let reporter = move |e: &Event| {
        log.lock().unwrap().push(e.clone());
        if matches!(
            e,
            Event::Within {
                unit: "forwards",
                ..
            }
        ) {
            flag.store(true, Ordering::SeqCst);
        }
    };
    let mut s = Session::with_reporter(Arc::new(reporter));
    s.set_interrupt(stop);
    s.eval(&format!("let m = load \"{GGUF}\"")).unwrap();
    s.eval(r#"let qs = {prompt: ["What is 2+3?", "What is 4+4?"]}"#)
        .unwrap();
    let g = s.eval("patch m on qs method patch max_tokens 3").unwrap();
    assert_eq!(
        g.as_graph().unwrap().scores.len(),
        0,
        "interrupted in sample 1"
    );

    let events = events.lock().unwrap().clone();
    let task = |name: &str| {
        let start = events
            .iter()
            .position(|e| matches!(e, Event::Start { task, .. } if task == name))
            .unwrap_or_else(|| panic!("no `{name}` task in {events:?}"));
        let end = start
            + events[start..]
                .iter()
                .position(|e| *e == Event::Finish)
                .expect("every task finishes");
        &events[start..=end]
    };
    let answer = task("answer");
    assert!(
        matches!(
            answer[0],
            Event::Start {
                total: 2,
                unit: "samples",
                ..
            }
        ),
        "{answer:?}"
    );
    let first_token = answer
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Within {
                    unit: "tokens",
                    total: 3,
                    ..
                }
            )
        })
        .expect("tokens reported");
    let first_done = answer
        .iter()
        .position(|e| *e == Event::Done { done: 1 })
        .unwrap();
    assert!(first_token < first_done, "{answer:?}");

    let patch = task("patch");
    assert!(
        matches!(
            patch[0],
            Event::Start {
                total: 2,
                unit: "samples",
                ..
            }
        ),
        "{patch:?}"
    );
    // SmolLM2's 3691 block edges: one patched forward each.
    assert_eq!(
        patch[1],
        Event::Within {
            done: 1,
            total: 3691,
            unit: "forwards"
        },
        "{patch:?}"
    );
    assert!(
        !patch.iter().any(|e| matches!(e, Event::Done { .. })),
        "{patch:?}"
    );
    let warning = events
        .iter()
        .find_map(|e| match e {
            Event::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .expect("the partial graph is reported");
    assert!(
        warning.starts_with("interrupted: 0 of 2 samples scored"),
        "{warning}"
    );
}
