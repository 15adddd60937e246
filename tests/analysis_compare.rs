//! `compare`: point estimates, paired bootstrap intervals, comparability checks, speed.

use polars::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rlq::analysis::synthetic::block_table;
use rlq::analysis::*;

const L: usize = 3;

fn n_edges(l: usize) -> usize {
    4 * l * l + 3 * l + 1
}

/// Heavy-tailed scores (normal × lognormal-ish scale), like real attribution scores.
fn scores(seed: u64, samples: usize, edges: usize) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..samples)
        .map(|_| {
            (0..edges)
                .map(|_| {
                    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
                    let u2: f64 = rng.gen();
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    z * (rng.gen_range(-2.0f64..2.0)).exp()
                })
                .collect()
        })
        .collect()
}

fn scaled(s: &[Vec<f64>], c: f64) -> Vec<Vec<f64>> {
    s.iter()
        .map(|r| r.iter().map(|v| v * c).collect())
        .collect()
}

struct Rows {
    metric: Vec<String>,
    base: Vec<f64>,
    tuned: Vec<f64>,
    delta: Vec<f64>,
    pct: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

fn rows(df: &DataFrame) -> Rows {
    let f = |n: &str| -> Vec<f64> {
        df.column(n)
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect()
    };
    Rows {
        metric: df
            .column("metric")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .map(String::from)
            .collect(),
        base: f("base"),
        tuned: f("tuned"),
        delta: f("delta"),
        pct: f("pct"),
        lo: f("ci_low"),
        hi: f("ci_high"),
    }
}

fn opts(resamples: usize) -> CompareOpts {
    CompareOpts {
        resamples,
        seed: 7,
        ..CompareOpts::default()
    }
}

#[test]
fn compare_has_the_documented_shape() {
    let t = block_table(L, scores(1, 8, n_edges(L))).unwrap();
    let df = compare(&t, &t, &opts(50)).unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        ["metric", "base", "tuned", "delta", "pct", "ci_low", "ci_high", "se", "effect_d"]
    );
    assert_eq!(
        rows(&df).metric,
        [
            "intensity",
            "entropy",
            "edge_entropy",
            "edge_entropy_norm",
            "kurtosis",
            "gini",
            "top10_mass",
            "effective_edges",
            "diversity"
        ]
    );
}

#[test]
fn compare_with_itself_has_zero_deltas_and_intervals_containing_zero() {
    let t = block_table(L, scores(2, 10, n_edges(L))).unwrap();
    let r = rows(&compare(&t, &t, &opts(200)).unwrap());
    for i in 0..r.metric.len() {
        assert_eq!(r.delta[i], 0.0, "{}", r.metric[i]);
        assert_eq!(r.pct[i], 0.0, "{}", r.metric[i]);
        assert!(
            r.lo[i] <= 0.0 && 0.0 <= r.hi[i],
            "{}: [{}, {}]",
            r.metric[i],
            r.lo[i],
            r.hi[i]
        );
    }
}

#[test]
fn compare_point_estimates_equal_the_single_statistics() {
    let t0 = block_table(L, scores(3, 6, n_edges(L))).unwrap();
    let t1 = block_table(L, scores(4, 6, n_edges(L))).unwrap();
    let o = opts(20);
    let r = rows(&compare(&t0, &t1, &o).unwrap());
    let stats = [
        Stat::Intensity { dense_layers: None },
        Stat::Entropy(o.hist),
        Stat::EdgeEntropy,
        Stat::EdgeEntropyNorm,
        Stat::Kurtosis,
        Stat::Gini,
        Stat::TopkMass(o.topk),
        Stat::EffectiveEdges,
        Stat::Diversity,
    ];
    for (i, stat) in stats.iter().enumerate() {
        assert_eq!(r.metric[i], stat.name());
        for (table, got) in [(&t0, r.base[i]), (&t1, r.tuned[i])] {
            let df = statistic(table, stat, By::None).unwrap();
            let want = df.column("value").unwrap().f64().unwrap().get(0).unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "{}: {got} vs {want}",
                r.metric[i]
            );
        }
    }
}

#[test]
fn doubling_every_score_doubles_intensity_and_keeps_shape_statistics() {
    let s = scores(5, 12, n_edges(L));
    let base = block_table(L, s.clone()).unwrap();
    let tuned = block_table(L, scaled(&s, 2.0)).unwrap();
    let r = rows(&compare(&base, &tuned, &opts(200)).unwrap());
    let at = |m: &str| r.metric.iter().position(|x| x == m).unwrap();
    let i = at("intensity");
    assert!((r.tuned[i] - 2.0 * r.base[i]).abs() <= 1e-12 * r.base[i]);
    assert!((r.pct[i] - 100.0).abs() < 1e-9);
    // Paired: every replicate doubles too, so the whole interval is the replicate's base value.
    assert!(r.lo[i] > 0.0);
    // Scale-free statistics: the [0, max] histogram range scales with the data, so the
    // histogram is the same; entropies of proportions, kurtosis, Gini, correlations too.
    for m in [
        "entropy",
        "edge_entropy",
        "edge_entropy_norm",
        "kurtosis",
        "gini",
        "top10_mass",
        "effective_edges",
        "diversity",
    ] {
        let k = at(m);
        assert!(
            (r.delta[k]).abs() <= 1e-9 * (1.0 + r.base[k].abs()),
            "{m}: {} vs {}",
            r.base[k],
            r.tuned[k]
        );
        assert!(
            r.lo[k].abs() < 1e-9 && r.hi[k].abs() < 1e-9,
            "{m}: [{}, {}]",
            r.lo[k],
            r.hi[k]
        );
    }
}

#[test]
fn the_bootstrap_is_seeded_and_its_interval_covers_the_estimate() {
    let base = block_table(L, scores(6, 15, n_edges(L))).unwrap();
    let tuned = block_table(L, scores(7, 15, n_edges(L))).unwrap();
    let a = compare(&base, &tuned, &opts(300)).unwrap();
    let b = compare(&base, &tuned, &opts(300)).unwrap();
    assert!(a.equals_missing(&b));
    let c = compare(
        &base,
        &tuned,
        &CompareOpts {
            seed: 8,
            ..opts(300)
        },
    )
    .unwrap();
    assert!(!a.equals_missing(&c));
    let r = rows(&a);
    for i in 0..r.metric.len() {
        assert!(r.lo[i] < r.hi[i], "{}", r.metric[i]);
        assert!(
            r.lo[i].is_finite() && r.hi[i].is_finite(),
            "{}",
            r.metric[i]
        );
    }
    // No resamples: no interval.
    let none = rows(&compare(&base, &tuned, &opts(0)).unwrap());
    assert!(none.lo.iter().all(|v| v.is_nan()));
}

#[test]
fn different_prompts_refuse_paired_statistics_but_allow_unpaired_ones() {
    let base = block_table(L, scores(8, 5, n_edges(L))).unwrap();
    let tuned = block_table(L, scores(9, 5, n_edges(L))).unwrap();
    let shifted = tuned
        .clone()
        .lazy()
        .with_column(col("prompt_id") + lit(3i64))
        .collect()
        .unwrap();
    let err = compare(&base, &shifted, &opts(20)).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::PromptMismatch {
                only_in_base: 3,
                only_in_tuned: 3,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("paired") && msg.contains("Unpaired statistics remain valid"),
        "{msg}"
    );
    let unpaired = compare(
        &base,
        &shifted,
        &CompareOpts {
            paired: false,
            ..opts(20)
        },
    )
    .unwrap();
    assert_eq!(unpaired.height(), 9);
}

#[test]
fn different_edge_sets_refuse_per_edge_views() {
    let base = block_table(L, scores(10, 4, n_edges(L))).unwrap();
    let deeper = block_table(L + 1, scores(11, 4, n_edges(L + 1))).unwrap();
    let err = compare(&base, &deeper, &opts(20)).unwrap_err();
    match &err {
        AnalysisError::EdgeMismatch {
            only_in_base,
            only_in_tuned,
            base_layers,
            tuned_layers,
            ..
        } => {
            // Every edge of the shallower graph exists by name in the deeper one.
            assert_eq!(*only_in_base, 0);
            assert_eq!(*only_in_tuned, n_edges(L + 1) - n_edges(L));
            assert_eq!((*base_layers, *tuned_layers), (L as i64, L as i64 + 1));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("per-edge views"));
    let whole = compare(
        &base,
        &deeper,
        &CompareOpts {
            require_same_edges: false,
            ..opts(20)
        },
    );
    assert!(whole.is_ok());
    let by_layer = CompareOpts {
        require_same_edges: false,
        by: By::Layer,
        ..opts(20)
    };
    assert!(matches!(
        compare(&base, &deeper, &by_layer),
        Err(AnalysisError::EdgeMismatch { .. })
    ));
}

#[test]
fn compare_by_layer_gives_every_metric_per_layer() {
    let base = block_table(L, scores(12, 6, n_edges(L))).unwrap();
    let tuned = block_table(L, scores(13, 6, n_edges(L))).unwrap();
    let df = compare(
        &base,
        &tuned,
        &CompareOpts {
            by: By::Layer,
            ..opts(30)
        },
    )
    .unwrap();
    assert_eq!(df.height(), 9 * (L + 1));
    assert_eq!(df.get_column_names()[0].as_str(), "dst_layer");
    // Layer rows agree with the grouped single statistic.
    let by_layer = intensity(&base, By::Layer, None).unwrap();
    let want: Vec<f64> = by_layer
        .column("intensity")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let got: Vec<f64> = df
        .clone()
        .lazy()
        .filter(col("metric").eq(lit("intensity")))
        .collect()
        .unwrap()
        .column("base")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs());
    }
    assert!(matches!(
        compare(
            &base,
            &tuned,
            &CompareOpts {
                by: By::Edge,
                ..opts(30)
            }
        ),
        Err(AnalysisError::InvalidOption { option: "by", .. })
    ));
}

#[test]
fn one_sample_has_point_estimates_but_no_interval() {
    let base = block_table(L, scores(14, 1, n_edges(L))).unwrap();
    let tuned = block_table(L, scores(15, 1, n_edges(L))).unwrap();
    let r = rows(&compare(&base, &tuned, &opts(100)).unwrap());
    assert!(r.base[0].is_finite());
    assert!(r.lo.iter().all(|v| v.is_nan()));
    assert!(r.base[8].is_nan()); // diversity needs two samples
}

/// METHOD.md's scale: N = 100 prompts, L = 30 (3691 edges), 1000 paired resamples.
#[test]
fn compare_at_paper_scale_is_fast() {
    let l = 30;
    let s = scores(16, 100, n_edges(l));
    let base = block_table(l, s.clone()).unwrap();
    let tuned = block_table(l, scaled(&s, 1.1)).unwrap();
    let start = std::time::Instant::now();
    let df = compare(&base, &tuned, &opts(1000)).unwrap();
    let elapsed = start.elapsed();
    eprintln!("compare 100 samples × 3691 edges × 1000 resamples: {elapsed:.2?}\n{df}");
    assert_eq!(df.height(), 9);
    // Generous for the lightly optimised test profile on a 2-core machine.
    assert!(elapsed.as_secs_f64() < 30.0, "{elapsed:?}");
}

/// Under the null (base and tuned scores drawn from one distribution), the 95% interval of the
/// intensity change should cover 0 about 95% of the time. 60 replications with N = 40: the
/// percentile bootstrap under-covers a little at small N, and a binomial(60, 0.95) count drops
/// below 51 with probability < 1%, so ≥ 51/60 (85%) is the bar; a broken interval (not
/// paired, mis-centred, or quantiles swapped) falls far below it. Seeds are fixed.
#[test]
fn the_interval_covers_zero_under_the_null_at_about_the_nominal_rate() {
    let mut covered = 0;
    for rep in 0..60u64 {
        let base = block_table(2, scores(1000 + rep, 40, n_edges(2))).unwrap();
        let tuned = block_table(2, scores(5000 + rep, 40, n_edges(2))).unwrap();
        let r = rows(
            &compare(
                &base,
                &tuned,
                &CompareOpts {
                    resamples: 400,
                    seed: rep,
                    ..CompareOpts::default()
                },
            )
            .unwrap(),
        );
        if r.lo[0] <= 0.0 && 0.0 <= r.hi[0] {
            covered += 1;
        }
    }
    eprintln!("null coverage of the 95% interval: {covered}/60");
    assert!(covered >= 51, "covered {covered}/60");
}

#[test]
fn compare_all_statistics_and_normalised_rows_equal_the_single_statistics() {
    let t0 = block_table(L, scores(21, 7, n_edges(L))).unwrap();
    let t1 = block_table(L, scores(22, 7, n_edges(L))).unwrap();
    for normalize in [Normalize::None, Normalize::Mass] {
        let o = CompareOpts {
            normalize,
            statistics: StatSet::All,
            ..opts(20)
        };
        let r = rows(&compare(&t0, &t1, &o).unwrap());
        let stats = o.statistics();
        let want_names: Vec<String> = stats
            .iter()
            .map(|s| NormalizedStat::new(*s, normalize).name())
            .collect();
        assert_eq!(r.metric, want_names);
        assert_eq!(r.metric, o.metric_names());
        // All: every statistic of the table, except whole-graph intensity under mass
        // (1/n_edges for both graphs, so no comparison).
        let expected = STATS.len() - usize::from(normalize == Normalize::Mass);
        assert_eq!(r.metric.len(), expected, "{:?}", r.metric);
        assert!(r.metric.iter().any(|m| m.starts_with("rank_diversity")));
        for (i, stat) in stats.iter().enumerate() {
            for (table, got) in [(&t0, r.base[i]), (&t1, r.tuned[i])] {
                let df = statistic(table, NormalizedStat::new(*stat, normalize), By::None).unwrap();
                let want = df.column("value").unwrap().f64().unwrap().get(0).unwrap();
                // The bootstrap's recombination against the direct computation: sums in
                // another order, so rounding only.
                assert!(
                    (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                    "{}: {got} vs {want}",
                    r.metric[i]
                );
            }
        }
    }
    // By layer under mass keeps intensity: each layer's share of the mass per edge.
    let by_layer = compare(
        &t0,
        &t1,
        &CompareOpts {
            normalize: Normalize::Mass,
            by: By::Layer,
            ..opts(20)
        },
    )
    .unwrap();
    let metrics = by_layer.column("metric").unwrap().str().unwrap();
    assert_eq!(
        metrics
            .iter()
            .filter(|m| *m == Some("intensity/mass"))
            .count(),
        L + 1
    );
}

#[test]
fn mass_normalised_compare_does_not_see_samples_rescaled() {
    // Tuned = base with each sample rescaled by its own factor: raw intensity changes, every
    // mass-normalised statistic (and its whole interval) stays at zero change.
    let s = scores(23, 10, n_edges(L));
    let factors = [0.5, 2.0, 3.0, 1.0, 0.1, 8.0, 1.5, 0.7, 4.0, 2.5];
    let rescaled: Vec<Vec<f64>> = s
        .iter()
        .zip(factors)
        .map(|(r, c)| r.iter().map(|v| v * c).collect())
        .collect();
    let base = block_table(L, s).unwrap();
    let tuned = block_table(L, rescaled).unwrap();
    let raw = rows(&compare(&base, &tuned, &opts(100)).unwrap());
    assert!(
        raw.pct[0].abs() > 10.0,
        "raw intensity moves: {}",
        raw.pct[0]
    );
    let r = rows(
        &compare(
            &base,
            &tuned,
            &CompareOpts {
                normalize: Normalize::Mass,
                statistics: StatSet::All,
                ..opts(100)
            },
        )
        .unwrap(),
    );
    for i in 0..r.metric.len() {
        assert!(r.metric[i].ends_with("/mass"), "{}", r.metric[i]);
        // v·c / (M·c) against v / M: last-bit rounding of each score, 1e-9 relative after the
        // statistics' sums (entropy's bin edges could move a value sitting on an edge; none
        // does here).
        let tol = 1e-9 * (1.0 + r.base[i].abs());
        assert!(r.delta[i].abs() <= tol, "{}: {}", r.metric[i], r.delta[i]);
        assert!(
            r.lo[i].abs() <= tol && r.hi[i].abs() <= tol,
            "{}",
            r.metric[i]
        );
    }
}
