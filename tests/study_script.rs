//! scripts/rl_vs_base.rlq end to end on the real SmolLM2, CI-sized: few questions, small N.
//! Base and tuned are the same model here (the only one CI fetches), so the pipeline runs in
//! about a minute and its answer is known: every paired delta is exactly 0 and every interval
//! contains 0. The full-size run on two different models is committed under
//! scripts/dynamics_report/ (a tuned pair made by scripts/rl_dynamics.rlq).

use std::path::Path;
use std::process::Command;

const GGUF: &str = "models/smollm2-135m-instruct.q4_1.gguf";

#[test]
fn study_script_runs_end_to_end_and_writes_every_artefact() {
    if !Path::new(GGUF).exists() {
        eprintln!("SKIP: {GGUF} missing; run scripts/fetch-models.sh");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let model = std::fs::canonicalize(GGUF).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_rlq"))
        .args(["run", "scripts/rl_vs_base.rlq", "--format", "csv"])
        .arg("--set")
        .arg(format!("base={}", model.display()))
        .arg("--set")
        .arg(format!("tuned={}", model.display()))
        .args([
            "--set",
            "questions=10",
            "--set",
            "n=3",
            "--set",
            "max_tokens=24",
        ])
        .args(["--set", "resamples=50"])
        .arg("--set")
        .arg(format!("out={}", out.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    for f in [
        "answers_base.csv",
        "answers_tuned.csv",
        "compare.parquet",
        "compare.csv",
        "answers_base.parquet",
        "answers_tuned.parquet",
        "compare_by_depth.csv",
        "entropy_by_depth.csv",
        "intensity_by_depth.csv",
        "provenance.csv",
        "graph_base.parquet",
        "graph_tuned.parquet",
        "heatmap_base.png",
        "heatmap_tuned.png",
        "entropy_by_depth.png",
        "intensity_by_depth.png",
        "hist_tuned.png",
        "summary.md",
    ] {
        let p = out.path().join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{f} missing"
        );
    }
    // same model, same questions: deltas 0, intervals contain 0
    let csv = std::fs::read_to_string(out.path().join("compare.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (d, lo, hi) = (col("delta"), col("ci_low"), col("ci_high"));
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
        if num(d).is_nan() {
            continue; // a statistic undefined for this tiny N (e.g. diversity of one sample)
        }
        assert_eq!(num(d), 0.0, "{line}");
        assert!(num(lo) <= 0.0 && num(hi) >= 0.0, "{line}");
        rows += 1;
    }
    assert!(rows >= 5, "{csv}");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.starts_with("# Base vs tuned") && md.contains("## cmp"),
        "{md}"
    );
    // what it rests on: settings, and the warnings this tiny run deserves
    for part in [
        "## Settings and provenance",
        "| N (questions sampled) |",
        "| max_tokens | 24 |",
        "< 30: the bootstrap intervals are unreliable",
        "base and tuned have the same weights",
        "## by_depth",
        "| effect_d |",
    ] {
        assert!(md.contains(part), "{part}:\n{md}");
    }
    // A second run with the same settings reuses the saved answers instead of generating.
    let again = Command::new(env!("CARGO_BIN_EXE_rlq"))
        .args(["run", "scripts/rl_vs_base.rlq", "--format", "csv"])
        .arg("--set")
        .arg(format!("base={}", model.display()))
        .arg("--set")
        .arg(format!("tuned={}", model.display()))
        .args([
            "--set",
            "questions=10",
            "--set",
            "n=3",
            "--set",
            "max_tokens=24",
        ])
        .args(["--set", "resamples=50"])
        .arg("--set")
        .arg(format!("out={}", out.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("reusing") && stderr.contains("answers_base.parquet"),
        "{stderr}"
    );
}
