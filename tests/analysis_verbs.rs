//! The statistic, comparison and plot verbs through the language, on synthetic block graphs
//! whose answers are known: the verbs must give exactly what the analysis layer gives.

use std::sync::Arc;

use rand::{rngs::StdRng, Rng, SeedableRng};
use rlq::analysis::synthetic::block_graph;
use rlq::analysis::{self, By, HistOpts, Stat};
use rlq::eval::Value;
use rlq::Session;

fn random_scores(n_layers: usize, n_samples: usize, seed: u64, scale: f64) -> Vec<Vec<f64>> {
    let n_edges = 4 * n_layers * n_layers + 3 * n_layers + 1;
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n_samples)
        .map(|_| {
            (0..n_edges)
                .map(|_| scale * rng.gen_range(-1.0..1.0f64).powi(3))
                .collect()
        })
        .collect()
}

fn session_with_graphs() -> (Session, Vec<Vec<f64>>) {
    let mut s = Session::new();
    let sc = random_scores(3, 6, 1, 1.0);
    let doubled: Vec<Vec<f64>> = sc
        .iter()
        .map(|r| r.iter().map(|x| 2.0 * x).collect())
        .collect();
    s.set("g0", Value::Graph(Arc::new(block_graph(3, sc.clone()))));
    s.set("g1", Value::Graph(Arc::new(block_graph(3, doubled))));
    (s, sc)
}

#[test]
fn statistic_verbs_equal_the_analysis_layer() {
    let (mut s, sc) = session_with_graphs();
    let long = block_graph(3, sc).sample_table().unwrap();
    for (verb, stat) in [
        ("intensity", Stat::Intensity { dense_layers: None }),
        ("entropy", Stat::Entropy(HistOpts::default())),
        ("kurtosis", Stat::Kurtosis),
        ("gini", Stat::Gini),
        ("diversity", Stat::Diversity),
    ] {
        let got = s
            .eval(&format!("{verb} g0 by layer"))
            .unwrap()
            .as_table()
            .unwrap();
        let want = analysis::statistic(&long, &stat, By::Layer).unwrap();
        assert!(got.equals_missing(&want), "{verb}: {got} vs {want}");
    }
    // two graphs side by side, columns named after the variables
    let t = s
        .eval("edge_entropy g0, g1 by layer")
        .unwrap()
        .as_table()
        .unwrap();
    let names: Vec<String> = t.get_column_names().iter().map(|n| n.to_string()).collect();
    assert_eq!(names, vec!["dst_layer", "g0", "g1"]);
    // scaling every score leaves the edge entropy unchanged
    let a: Vec<f64> = t
        .column("g0")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let b: Vec<f64> = t
        .column("g1")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-12);
    }
    let e = format!("{:?}", s.eval("entropy g0 by colour").unwrap_err());
    assert!(e.contains("src_layer"), "{e}");
}

#[test]
fn compare_reports_doubling_and_identity() {
    let (mut s, _) = session_with_graphs();
    let t = s
        .eval("compare g0, g1 resamples 200")
        .unwrap()
        .as_table()
        .unwrap();
    let metric: Vec<String> = t
        .column("metric")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|m| m.unwrap_or("").to_string())
        .collect();
    let pct: Vec<f64> = t
        .column("pct")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect();
    let i = metric.iter().position(|m| m == "intensity").unwrap();
    assert!(
        (pct[i] - 100.0).abs() < 1e-9,
        "intensity doubles: {}",
        pct[i]
    );
    let k = metric.iter().position(|m| m == "kurtosis").unwrap();
    assert!(pct[k].abs() < 1e-9, "kurtosis is scale-free: {}", pct[k]);
    let same = s
        .eval("compare g0, g0 resamples 100")
        .unwrap()
        .as_table()
        .unwrap();
    for x in same
        .column("delta")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
    {
        assert!(x.abs() < 1e-12);
    }
    let ov = s.eval("overlap g0, g1 top 10").unwrap().as_table().unwrap();
    assert_eq!(
        ov.column("jaccard").unwrap().f64().unwrap().get(0),
        Some(1.0)
    );
    let rc = s.eval("rel_change g0, g1").unwrap().as_table().unwrap();
    for x in rc
        .column("rel_change")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
    {
        assert!((x - 1.0).abs() < 1e-9);
    }
}

#[test]
fn plot_verbs_write_svg_and_png() {
    let (mut s, _) = session_with_graphs();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    s.eval(&format!("plot heatmap g0 to \"{}\"", p("h.svg")))
        .unwrap();
    s.eval(&format!("plot hist g0 to \"{}\" log true", p("h.png")))
        .unwrap();
    s.eval(&format!(
        "plot bars (entropy g0, g1 by layer) to \"{}\" title \"entropy\"",
        p("b.png")
    ))
    .unwrap();
    s.eval(&format!(
        "plot lines (intensity g0, g1 by layer) to \"{}\"",
        p("l.svg")
    ))
    .unwrap();
    for f in ["h.svg", "l.svg"] {
        assert!(std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .contains("<svg"));
    }
    for f in ["h.png", "b.png"] {
        assert_eq!(&std::fs::read(dir.path().join(f)).unwrap()[..4], b"\x89PNG");
    }
    let e = format!(
        "{:?}",
        s.eval(&format!("plot pie g0 to \"{}\"", p("x.svg")))
            .unwrap_err()
    );
    assert!(e.contains("heatmap"), "{e}");
}
