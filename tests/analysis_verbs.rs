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
        let want = analysis::statistic(&long, stat, By::Layer).unwrap();
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

/// Plots of a comparison: the legend and panels name the graphs' models, two heatmaps share a
/// scale or show their difference, and `compare … by layer`'s delta gets its CI band.
#[test]
fn plot_verbs_name_models_share_scales_and_draw_bands() {
    let (mut s, sc) = session_with_graphs();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let texts = |svg: &str| -> Vec<String> { svg.lines().map(|l| l.trim().to_string()).collect() };
    // Both synthetic graphs report one model: the names collide, so the variables name them.
    s.eval(&format!("plot heatmap g0, g1 to \"{}\"", p("pair.svg")))
        .unwrap();
    let t = texts(&read("pair.svg"));
    assert!(
        t.contains(&"g0".into()) && t.contains(&"g1".into()),
        "fallback names"
    );
    assert!(read("pair.svg").contains("one scale, both panels"));
    for (name, model) in [
        ("m0", "models/smollm2-135m.gguf"),
        ("m1", "/x/smollm2-tuned.gguf"),
    ] {
        let mut g = block_graph(3, sc.clone());
        g.meta.model = model.into();
        s.set(name, Value::Graph(Arc::new(g)));
    }
    s.eval(&format!(
        "plot heatmap m0, m1 diff true to \"{}\"",
        p("diff.svg")
    ))
    .unwrap();
    assert!(read("diff.svg").contains("smollm2-tuned − smollm2-135m"));
    s.eval(&format!(
        "plot lines (entropy m0, m1 by layer) to \"{}\"",
        p("named.svg")
    ))
    .unwrap();
    let t = texts(&read("named.svg"));
    assert!(
        t.contains(&"smollm2-135m".into()) && t.contains(&"smollm2-tuned".into()),
        "{t:?}"
    );
    // compare's delta by layer: one band (ci_low..ci_high), not lines of its own (the default
    // y columns leave a band's columns out).
    s.eval(&format!(
        "plot lines (compare g0, g1 by layer resamples 50 | where metric == \"entropy\" \
         | select dst_layer, delta, ci_low, ci_high) to \"{}\"",
        p("band.svg")
    ))
    .unwrap();
    let band = read("band.svg");
    assert_eq!(band.matches("<polygon").count(), 1);
    assert!(texts(&band).contains(&"delta: ci_low to ci_high".into()));
    let e = flat(
        s.eval(&format!("plot heatmap g0 diff true to \"{}\"", p("x.svg")))
            .unwrap_err(),
    );
    assert!(e.contains("needs a second graph"), "{e}");
    let e = flat(
        s.eval(&format!("plot lines g0, g1 to \"{}\"", p("x.svg")))
            .unwrap_err(),
    );
    assert!(e.contains("only `plot heatmap`"), "{e}");
    // Different depths: no difference by absolute layer index; side by side still draws.
    s.set(
        "deep",
        Value::Graph(Arc::new(block_graph(4, random_scores(4, 6, 2, 1.0)))),
    );
    let e = flat(
        s.eval(&format!(
            "plot heatmap g0, deep diff true to \"{}\"",
            p("x.svg")
        ))
        .unwrap_err(),
    );
    assert!(e.contains("different depth (3 and 4 layers)"), "{e}");
    s.eval(&format!("plot heatmap g0, deep to \"{}\"", p("x.svg")))
        .unwrap();
}

/// A rendered error as one line: miette wraps long lines and draws `│` margins.
fn flat(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Graphs of different depth: `by layer` is refused naming both depths; `by depth` bins each
/// graph's destination layers by layer / n_layers, so bin b holds layers ⌊b·L/10⌋.. of each.
#[test]
fn different_depths_are_refused_by_layer_and_binned_by_depth() {
    let mut s = Session::new();
    let (deep, shallow) = (random_scores(5, 4, 11, 1.0), random_scores(3, 4, 12, 1.0));
    s.set("g0", Value::Graph(Arc::new(block_graph(5, deep.clone()))));
    s.set(
        "g1",
        Value::Graph(Arc::new(block_graph(3, shallow.clone()))),
    );
    for src in ["intensity g0, g1 by layer", "entropy g0, g1 by src_layer"] {
        let e = flat(s.eval(src).unwrap_err());
        assert!(
            e.contains("g0: 5 layers, g1: 3 layers") && e.contains("by depth"),
            "{src}: {e}"
        );
    }
    let t = s
        .eval("intensity g0, g1 by depth")
        .unwrap()
        .as_table()
        .unwrap();
    let labels: Vec<String> = t
        .column("depth")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(labels.first().map(String::as_str), Some("0.0-0.1"));
    assert_eq!(labels.last().map(String::as_str), Some("logits"));
    // The oracle: mean |score| over the edges whose destination layer d has ⌊10·d/L⌋ = bin
    // (logits: d = L), computed here from the scores; sums of a few hundred f64s: 1e-12.
    let want = |l: usize, sc: &[Vec<f64>], label: &str| -> Option<f64> {
        let edges = analysis::synthetic::block_edges(l);
        let keep: Vec<usize> = (0..edges.len())
            .filter(|&e| {
                let d = edges[e].dst_layer;
                let name = if d == l as i64 {
                    "logits".to_string()
                } else {
                    let b = d * 10 / l as i64;
                    format!("{:.1}-{:.1}", b as f64 / 10.0, (b + 1) as f64 / 10.0)
                };
                name == label
            })
            .collect();
        if keep.is_empty() {
            return None;
        }
        let n = (keep.len() * sc.len()) as f64;
        Some(
            sc.iter()
                .flat_map(|r| keep.iter().map(move |&e| r[e].abs()))
                .sum::<f64>()
                / n,
        )
    };
    for (i, label) in labels.iter().enumerate() {
        for (col, l, sc) in [("g0", 5, &deep), ("g1", 3, &shallow)] {
            let got = t.column(col).unwrap().f64().unwrap().get(i);
            match (got, want(l, sc, label)) {
                (Some(g), Some(w)) => {
                    assert!((g - w).abs() <= 1e-12 * w, "{col} {label}: {g} vs {w}")
                }
                (None, None) => {}
                other => panic!("{col} {label}: {other:?}"),
            }
        }
    }
    // compare by depth pairs the bins both graphs have, each with its interval
    let c = s
        .eval("compare g0, g1 by depth resamples 50")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(c.get_column_names()[0].as_str(), "depth");
    assert!(c
        .column("ci_low")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .all(f64::is_finite));
}

/// compare refuses two graphs scored under different settings, naming each difference; the
/// model itself may differ (that is what compare is for).
#[test]
fn compare_refuses_graphs_scored_differently() {
    let mut s = Session::new();
    let sc = random_scores(3, 5, 3, 1.0);
    let mut a = block_graph(3, sc.clone());
    a.meta.loss = "self_entropy".into();
    a.meta.t_cut = Some(4);
    a.meta.t_cut_rule = "fixed 4".into();
    let mut b = a.clone();
    b.meta.model = "another".into();
    b.meta.model_hash = "ffff".into();
    s.set("g0", Value::Graph(Arc::new(a.clone())));
    s.set("g1", Value::Graph(Arc::new(b.clone())));
    assert!(s.eval("compare g0, g1 resamples 20").is_ok());
    b.meta.t_cut = Some(8);
    b.meta.t_cut_rule = "fixed 8".into();
    b.meta.method = "eap_ig".into();
    b.meta.steps = Some(5);
    s.set("g1", Value::Graph(Arc::new(b)));
    let e = flat(s.eval("compare g0, g1 resamples 20").unwrap_err());
    for part in [
        "4 setting(s) differ",
        "method: synthetic in base, eap_ig in tuned",
        "steps: none in base, 5 in tuned",
        "T_cut rule: fixed 4 in base, fixed 8 in tuned",
        "T_cut: 4 in base, 8 in tuned",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
}

/// overlap's columns cover what their names say: the top-n statistics only the two tops, the
/// rank correlations every edge; each checked against its own computation here.
#[test]
fn overlap_statistics_cover_what_they_say() {
    let (mut s, _) = session_with_graphs();
    let mut rng = StdRng::seed_from_u64(5);
    let other: Vec<Vec<f64>> = random_scores(3, 6, 1, 1.0)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|x| x + 0.3 * rng.gen_range(-1.0..1.0f64))
                .collect()
        })
        .collect();
    s.set("g2", Value::Graph(Arc::new(block_graph(3, other))));
    let ov = s.eval("overlap g0, g2 top 10").unwrap().as_table().unwrap();
    let get = |c: &str| {
        ov.column(c)
            .unwrap()
            .cast(&polars::prelude::DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap()
    };
    let g0 = s.get("g0").unwrap();
    let g2 = s.get("g2").unwrap();
    let (a, b) = (
        g0.as_graph().unwrap().mean_scores(),
        g2.as_graph().unwrap().mean_scores(),
    );
    let top = |m: &[f64]| {
        let mut o: Vec<usize> = (0..m.len()).collect();
        o.sort_by(|&i, &j| m[j].abs().total_cmp(&m[i].abs()));
        o.truncate(10);
        o
    };
    let (ta, tb) = (top(&a), top(&b));
    let mut union: Vec<usize> = ta.iter().chain(&tb).copied().collect();
    union.sort_unstable();
    union.dedup();
    let shared = ta.iter().filter(|e| tb.contains(e)).count();
    assert_eq!(get("shared") as usize, shared);
    assert_eq!(get("top_edges") as usize, union.len());
    let pick = |v: &[f64]| union.iter().map(|&i| v[i]).collect::<Vec<_>>();
    // Same formulas on the same f64 inputs: equal to rounding (1e-12).
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-12;
    use rlq::analysis::measures::{pearson, spearman};
    assert!(close(get("spearman_top"), spearman(&pick(&a), &pick(&b))));
    assert!(close(get("spearman"), spearman(&a, &b)));
    assert!(close(get("pearson"), pearson(&a, &b)));
    // Kendall's τ-b over every pair of edges, the definition (no ties in random f64s)
    let n = a.len();
    let mut sum = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            sum += ((a[i] - a[j]) * (b[i] - b[j])).signum();
        }
    }
    let tau = sum / (n * (n - 1) / 2) as f64;
    assert!(close(get("kendall"), tau), "{} vs {tau}", get("kendall"));
    assert!(get("kendall") > 0.3 && get("spearman_top") > 0.0);
}

#[test]
fn normalize_and_stats_options_reach_the_analysis_layer() {
    let (mut s, sc) = session_with_graphs();
    let long = block_graph(3, sc).sample_table().unwrap();
    let got = s
        .eval("entropy g0 by layer normalize mass")
        .unwrap()
        .as_table()
        .unwrap();
    let want = analysis::statistic(
        &long,
        analysis::NormalizedStat::new(
            Stat::Entropy(HistOpts::default()),
            analysis::Normalize::Mass,
        ),
        By::Layer,
    )
    .unwrap();
    assert!(got.equals_missing(&want), "{got} vs {want}");
    assert_eq!(got.get_column_names()[1].as_str(), "entropy/mass");
    // g1 is g0 doubled: mass-normalised, the two columns are equal.
    let t = s
        .eval("half_mass_fraction g0, g1 by kind normalize mass")
        .unwrap()
        .as_table()
        .unwrap();
    let column =
        |c: &str| -> Vec<Option<f64>> { t.column(c).unwrap().f64().unwrap().iter().collect() };
    let (a, b) = (column("g0"), column("g1"));
    for (x, y) in a.iter().zip(&b) {
        // Half-mass fractions are k/n: doubling every score keeps each k exactly.
        assert_eq!(x, y);
    }
    // Whole-graph intensity of mass-normalised scores is refused, pointing to by layer.
    let e = s.eval("intensity g0 normalize mass").unwrap_err();
    assert!(flat(&e).contains("by layer"), "{}", flat(&e));
    assert!(s.eval("intensity g0 normalize scale").is_err());
    // compare: rows named by the normalisation; stats all adds the rank statistics.
    let c = s
        .eval("compare g0, g1 normalize mass stats all resamples 50")
        .unwrap()
        .as_table()
        .unwrap();
    let metrics: Vec<String> = c
        .column("metric")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(String::from)
        .collect();
    assert!(
        metrics.contains(&"rank_diversity/mass".to_string()),
        "{metrics:?}"
    );
    assert!(
        !metrics.iter().any(|m| m.starts_with("intensity")),
        "{metrics:?}"
    );
    let default = s
        .eval("compare g0, g1 resamples 50")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(default.height(), 9);
    // Every statistic of the table is a verb with its options' keywords and `normalize`.
    for def in analysis::STATS {
        let sig = &s.registry().get(def.name).unwrap().signature;
        assert!(sig.keyword_param("normalize").is_some(), "{}", def.name);
        assert_eq!(sig.description, def.description);
    }
    let topk = &s.registry().get("topk_mass").unwrap().signature;
    assert!(topk.keyword_param("k").is_some());
}

#[test]
fn compare_same_tokens_refuses_graphs_that_scored_other_tokens() {
    let sc = random_scores(3, 4, 5, 1.0);
    let hashed = |hashes: &[&str]| {
        let mut g = block_graph(3, sc.clone());
        g.meta.sample_hashes = hashes.iter().map(|h| h.to_string()).collect();
        Value::Graph(Arc::new(g))
    };
    let mut s = Session::new();
    s.set("a", hashed(&["h0", "h1", "h2", "h3"]));
    s.set("b", hashed(&["h0", "h1", "h2", "h3"]));
    s.set("c", hashed(&["h0", "other", "h2", "also"]));
    assert!(s.eval("compare a, b same_tokens true resamples 10").is_ok());
    // Default false: the paper's setting (each model on its own answers) still compares.
    assert!(s.eval("compare a, c resamples 10").is_ok());
    let e = s
        .eval("compare a, c same_tokens true resamples 10")
        .unwrap_err();
    let msg = flat(&e);
    assert!(
        msg.contains("prompt_id 1, 3") && msg.contains("2 prompt"),
        "{msg}"
    );
    // Tables carry no hashes: refused rather than assumed equal.
    s.set("ta", block_graph(3, sc.clone()).sample_table().unwrap());
    let e = s.eval("compare ta, ta same_tokens true").unwrap_err();
    assert!(flat(&e).contains("needs two graphs"), "{}", flat(&e));
}

#[test]
fn correlation_aggregations_are_the_analysis_implementations() {
    use polars::prelude::*;
    use rlq::analysis::measures::{kendall, pearson, spearman};
    let mut rng = StdRng::seed_from_u64(9);
    let n = 60;
    let g: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    // Ties in both columns (kendall's τ-b and the average ranks matter) and one null.
    let x: Vec<Option<f64>> = (0..n)
        .map(|i| {
            if i == 7 {
                None
            } else {
                Some(rng.gen_range(0..6) as f64)
            }
        })
        .collect();
    let y: Vec<f64> = (0..n)
        .map(|i| (i % 5) as f64 + rng.gen_range(0..3) as f64)
        .collect();
    let t = df!("g" => &g, "x" => &x, "y" => &y).unwrap();
    let mut s = Session::new();
    s.set("t", t);
    let whole = s
        .eval("t | group agg pearson(x, y), spearman(x, y), kendall(x, y) as tau")
        .unwrap()
        .as_table()
        .unwrap();
    let names: Vec<String> = whole
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(names, ["pearson_x_y", "spearman_x_y", "tau"]);
    let complete = |keep: &dyn Fn(usize) -> bool| -> (Vec<f64>, Vec<f64>) {
        (0..n)
            .filter(|&i| keep(i) && x[i].is_some())
            .map(|i| (x[i].unwrap(), y[i]))
            .unzip()
    };
    let (xs, ys) = complete(&|_| true);
    let get =
        |df: &DataFrame, c: &str, i: usize| df.column(c).unwrap().f64().unwrap().get(i).unwrap();
    // One implementation: bit for bit the same numbers.
    assert_eq!(get(&whole, "pearson_x_y", 0), pearson(&xs, &ys));
    assert_eq!(get(&whole, "spearman_x_y", 0), spearman(&xs, &ys));
    assert_eq!(get(&whole, "tau", 0), kendall(&xs, &ys));
    let by = s
        .eval("t | group by g agg spearman(x, y) as rho, kendall(x, y) as tau | sort by g")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(by.height(), 3);
    for k in 0..3usize {
        let (xs, ys) = complete(&|i| g[i] == k as i64);
        assert_eq!(get(&by, "rho", k), spearman(&xs, &ys), "group {k}");
        assert_eq!(get(&by, "tau", k), kendall(&xs, &ys), "group {k}");
    }
    assert!(s.eval("t | group agg spearman(x)").is_err());
}

#[test]
fn normalize_grad_divides_each_sample_by_its_gradient_norm_at_logits() {
    use rlq::attribution::graph::SampleRecord;
    let sc = random_scores(3, 4, 11, 1.0);
    let norms = [0.5, 2.0, 1.25, 4.0];
    let mut g = block_graph(3, sc.clone());
    g.meta.samples = norms
        .iter()
        .map(|&n| SampleRecord {
            grad_norm: n,
            ..SampleRecord::default()
        })
        .collect();
    // The same graph with every sample's scores already divided by its norm, by hand.
    let by_hand: Vec<Vec<f64>> = sc
        .iter()
        .zip(norms)
        .map(|(r, n)| r.iter().map(|v| v / n).collect())
        .collect();
    let mut s = Session::new();
    s.set("g", Value::Graph(Arc::new(g)));
    s.set("h", Value::Graph(Arc::new(block_graph(3, by_hand))));
    for verb in ["intensity", "entropy", "gini", "topk_mass"] {
        let got = s
            .eval(&format!("{verb} g by layer normalize grad"))
            .unwrap()
            .as_table()
            .unwrap();
        let want = s
            .eval(&format!("{verb} h by layer"))
            .unwrap()
            .as_table()
            .unwrap();
        let name = got.get_column_names()[1].to_string();
        assert!(name.ends_with("/grad"), "{name}");
        let a: Vec<f64> = got
            .column(&name)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let b: Vec<f64> = want.columns()[1]
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        // Both divide each score by the same norm once: identical numbers.
        assert_eq!(a, b, "{verb}");
    }
    let c = s
        .eval("compare g, g normalize grad resamples 20")
        .unwrap()
        .as_table()
        .unwrap();
    let first = c
        .column("metric")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(first, "intensity/grad");
    // A graph without per-sample records cannot be normalised by grad: said plainly.
    let e = s.eval("intensity h normalize grad").unwrap_err();
    assert!(flat(&e).contains("gradient norms"), "{}", flat(&e));
}
