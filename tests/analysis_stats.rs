//! Statistics of edge tables against independent first-principles computations.

use polars::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rlq::analysis::synthetic::{block_edges, block_table};
use rlq::analysis::*;

const L: usize = 3; // 4·9 + 9 + 1 = 46 edges: small enough to reason about, all kinds present

fn n_edges(l: usize) -> usize {
    4 * l * l + 3 * l + 1
}

/// The single value of a `statistic | value` frame.
fn value(df: &DataFrame) -> f64 {
    assert_eq!(df.height(), 1, "{df}");
    df.column("value").unwrap().f64().unwrap().get(0).unwrap()
}

fn col_f64(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Standard normal draws by Box–Muller (rand 0.8 has no normal distribution of its own).
fn normals(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
            let u2: f64 = rng.gen();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

fn random_scores(seed: u64, samples: usize, edges: usize) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..samples).map(|_| normals(&mut rng, edges)).collect()
}

#[test]
fn block_graph_has_the_method_edge_counts() {
    for (l, expected) in [(24, 2377), (28, 3221), (30, 3691), (32, 4193)] {
        assert_eq!(block_edges(l).len(), expected, "L = {l}");
        assert_eq!(n_edges(l), expected);
    }
}

#[test]
fn uniform_scores_have_maximal_edge_entropy_and_zero_histogram_entropy() {
    let n = n_edges(L);
    let table = block_table(L, vec![vec![0.25; n]; 4]).unwrap();
    let ln_n = (n as f64).ln();
    assert!(close(
        value(&edge_entropy(&table, By::None).unwrap()),
        ln_n,
        1e-12
    ));
    assert!(close(
        value(&edge_entropy_norm(&table, By::None).unwrap()),
        1.0,
        1e-12
    ));
    assert!(close(
        value(&effective_edges(&table, By::None).unwrap()),
        n as f64,
        1e-9
    ));
    // All |S| identical: range [0, 0.25], every value in the last bin.
    let h = value(&entropy(&table, By::None, HistOpts::default()).unwrap());
    assert_eq!(h, 0.0);
    assert_eq!(value(&gini(&table, By::None).unwrap()), 0.0);
    assert!(close(
        value(&topk_mass(&table, 5, By::None).unwrap()),
        5.0 / n as f64,
        1e-12
    ));
    assert!(close(
        value(&intensity(&table, By::None, None).unwrap()),
        0.25,
        1e-12
    ));
}

#[test]
fn one_nonzero_edge_is_fully_concentrated() {
    let n = n_edges(L);
    let mut row = vec![0.0; n];
    row[7] = -3.0;
    let table = block_table(L, vec![row.clone(), row]).unwrap();
    assert_eq!(value(&edge_entropy(&table, By::None).unwrap()), 0.0);
    assert_eq!(value(&effective_edges(&table, By::None).unwrap()), 1.0);
    // Plain Gini: all mass on one of n values gives (n − 1)/n.
    let g = value(&gini(&table, By::None).unwrap());
    assert!(close(g, (n as f64 - 1.0) / n as f64, 1e-12), "gini {g}");
    assert_eq!(value(&topk_mass(&table, 1, By::None).unwrap()), 1.0);
    assert!(close(
        value(&intensity(&table, By::None, None).unwrap()),
        3.0 / n as f64,
        1e-12
    ));
    // Zeros excluded: one non-zero value per sample, all in one bin.
    assert_eq!(
        value(&entropy(&table, By::None, HistOpts::default()).unwrap()),
        0.0
    );
}

#[test]
fn kurtosis_of_normal_scores_is_three() {
    // 3691 edges × 20 samples of N(0,1). The sample kurtosis of n normals has standard error
    // ≈ sqrt(24/n) = 0.081 for n = 3691; the mean of 20 independent ones ≈ 0.018. Tolerance
    // 0.1 is > 5 SE: a correct estimator cannot fail it (the seed is fixed anyway).
    let l = 30;
    let scores = random_scores(1, 20, n_edges(l));
    let table = block_table(l, scores.clone()).unwrap();
    let k = value(&kurtosis(&table, By::None).unwrap());
    assert!((k - 3.0).abs() < 0.1, "kurtosis {k}");
    // And exactly the per-sample m4/m2² formula, averaged.
    let mut expected = 0.0;
    for row in &scores {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let m2 = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let m4 = row.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
        expected += m4 / (m2 * m2) / scores.len() as f64;
    }
    assert!(close(k, expected, 1e-12), "{k} vs {expected}");
}

#[test]
fn intensity_and_dense_intensity_match_their_formulas() {
    let n = n_edges(L);
    let scores = random_scores(2, 5, n);
    let table = block_table(L, scores.clone()).unwrap();
    let total: f64 = scores.iter().flatten().map(|v| v.abs()).sum();
    let mean = total / (5 * n) as f64;
    assert!(close(
        value(&intensity(&table, By::None, None).unwrap()),
        mean,
        1e-12
    ));
    let dense = total / (5 * (1 + 2 * L) * (4 * L + 1)) as f64;
    let got = value(&intensity(&table, By::None, Some(L)).unwrap());
    assert!(close(got, dense, 1e-12));
    // Dense by destination layer: each layer owns 4 columns (logits: 1) of 1+2L rows.
    let by_layer = intensity(&table, By::Layer, Some(L)).unwrap();
    let layers: Vec<i64> = by_layer
        .column("dst_layer")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let values = col_f64(&by_layer, "intensity_dense");
    let edges = block_edges(L);
    for (layer, v) in layers.iter().zip(values) {
        let sum: f64 = scores
            .iter()
            .flat_map(|row| {
                row.iter()
                    .zip(&edges)
                    .filter(|(_, e)| e.dst_layer == *layer)
                    .map(|(s, _)| s.abs())
            })
            .sum();
        let cols = if *layer == L as i64 { 1 } else { 4 };
        assert!(
            close(v, sum / (5 * cols * (1 + 2 * L)) as f64, 1e-12),
            "layer {layer}"
        );
    }
    // A wrong n_layers is caught.
    assert!(matches!(
        intensity(&table, By::None, Some(1)),
        Err(AnalysisError::InvalidOption {
            option: "dense",
            ..
        })
    ));
}

/// Histogram entropy computed directly: pooled |S|, bins over [lo, hi], last bin closed.
fn reference_hist_entropy(
    values: &[f64],
    bins: usize,
    range: Option<(f64, f64)>,
    zeros: bool,
) -> f64 {
    let abs: Vec<f64> = values
        .iter()
        .map(|v| v.abs())
        .filter(|v| zeros || *v != 0.0)
        .collect();
    let (lo, hi) = range.unwrap_or((0.0, abs.iter().copied().fold(0.0, f64::max)));
    let mut counts = vec![0usize; bins];
    let mut total = 0usize;
    for v in abs {
        if v < lo || v > hi {
            continue;
        }
        let mut b = ((v - lo) / (hi - lo) * bins as f64).floor() as usize;
        if b == bins {
            b -= 1;
        }
        counts[b] += 1;
        total += 1;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum()
}

#[test]
fn histogram_entropy_matches_a_direct_computation_for_every_option() {
    let n = n_edges(L);
    let mut scores = random_scores(3, 6, n);
    for (k, row) in scores.iter_mut().enumerate() {
        row[k] = 0.0; // some exact zeros
    }
    let pooled: Vec<f64> = scores.iter().flatten().copied().collect();
    let table = block_table(L, scores).unwrap();
    let cases = [
        (100, None, false, None),
        (10, None, false, None),
        (100, None, true, None),
        (20, Some((0.5, 2.0)), false, None),
        (100, None, false, Some(2.0)),
    ];
    for (bins, range, include_zeros, base) in cases {
        let opts = HistOpts {
            bins,
            range,
            include_zeros,
            base,
        };
        let got = value(&entropy(&table, By::None, opts).unwrap());
        let mut expected = reference_hist_entropy(&pooled, bins, range, include_zeros);
        if let Some(b) = base {
            expected /= f64::ln(b);
        }
        assert!(close(got, expected, 1e-12), "{opts:?}: {got} vs {expected}");
    }
    assert!(matches!(
        entropy(
            &table,
            By::None,
            HistOpts {
                bins: 0,
                ..Default::default()
            }
        ),
        Err(AnalysisError::InvalidOption { option: "bins", .. })
    ));
}

#[test]
fn edge_entropy_gini_topk_match_direct_computations() {
    let n = n_edges(L);
    let scores = random_scores(4, 7, n);
    let table = block_table(L, scores.clone()).unwrap();
    let abs_mean: Vec<f64> = (0..n)
        .map(|e| (scores.iter().map(|r| r[e]).sum::<f64>() / 7.0).abs())
        .collect();
    let total: f64 = abs_mean.iter().sum();
    let h: f64 = abs_mean
        .iter()
        .map(|a| a / total)
        .map(|p| -p * p.ln())
        .sum();
    assert!(close(
        value(&edge_entropy(&table, By::None).unwrap()),
        h,
        1e-12
    ));
    assert!(close(
        value(&edge_entropy_norm(&table, By::None).unwrap()),
        h / (n as f64).ln(),
        1e-12
    ));
    // Gini from its double-sum definition.
    let mut pair_sum = 0.0;
    for a in &abs_mean {
        for b in &abs_mean {
            pair_sum += (a - b).abs();
        }
    }
    let g = pair_sum / (2.0 * (n * n) as f64 * (total / n as f64));
    assert!(close(value(&gini(&table, By::None).unwrap()), g, 1e-12));
    let mut sorted = abs_mean.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let top5 = sorted[..5].iter().sum::<f64>() / total;
    assert!(close(
        value(&topk_mass(&table, 5, By::None).unwrap()),
        top5,
        1e-12
    ));
}

#[test]
fn diversity_is_zero_for_identical_samples_and_matches_pairwise_correlations() {
    let n = n_edges(L);
    let row = random_scores(5, 1, n).pop().unwrap();
    let same = block_table(L, vec![row.clone(); 4]).unwrap();
    let d = value(&diversity(&same, By::None).unwrap());
    assert!(d.abs() < 1e-12, "diversity {d}");

    let scores = random_scores(6, 5, n);
    let table = block_table(L, scores.clone()).unwrap();
    let pearson = |a: &[f64], b: &[f64]| {
        let m = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / m, b.iter().sum::<f64>() / m);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    };
    let mut sum = 0.0;
    let mut pairs = 0.0;
    for i in 0..5 {
        for j in (i + 1)..5 {
            sum += pearson(&scores[i], &scores[j]);
            pairs += 1.0;
        }
    }
    let expected = 1.0 - sum / pairs;
    assert!(close(
        value(&diversity(&table, By::None).unwrap()),
        expected,
        1e-12
    ));

    let one = block_table(L, vec![row]).unwrap();
    let err = diversity(&one, By::None).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::TooFewSamples {
                needed: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at least 2 samples"));
}

#[test]
fn grouping_partitions_the_edges() {
    let n = n_edges(L);
    let scores = random_scores(7, 3, n);
    let table = block_table(L, scores.clone()).unwrap();
    let edges = block_edges(L);
    let whole = value(&intensity(&table, By::None, None).unwrap());

    let by_layer = intensity(&table, By::Layer, None).unwrap();
    let layers: Vec<i64> = by_layer
        .column("dst_layer")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(layers, (0..=L as i64).collect::<Vec<_>>());
    // Σ_g mean_g · |g| = mean · n: the groups partition the edges.
    let recombined: f64 = layers
        .iter()
        .zip(col_f64(&by_layer, "intensity"))
        .map(|(l, v)| v * edges.iter().filter(|e| e.dst_layer == *l).count() as f64)
        .sum();
    assert!(close(recombined, whole * n as f64, 1e-12));

    let by_kind = intensity(&table, By::Kind, None).unwrap();
    let kinds: Vec<String> = by_kind
        .column("dst_kind")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .map(String::from)
        .collect();
    assert_eq!(kinds, ["q", "k", "v", "mlp", "logits"]);
    let by_src = intensity(&table, By::SrcKind, None).unwrap();
    let src_kinds: Vec<String> = by_src
        .column("src_kind")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .map(String::from)
        .collect();
    assert_eq!(src_kinds, ["embed", "attn", "mlp"]);
    let by_src_layer = intensity(&table, By::SrcLayer, None).unwrap();
    assert_eq!(by_src_layer.height(), L + 1); // input (-1) and 0..L-1

    // Per edge: one row each, mean |S| over samples.
    let by_edge = intensity(&table, By::Edge, None).unwrap();
    assert_eq!(by_edge.height(), n);
    let per_edge = col_f64(&by_edge, "intensity");
    for e in 0..n {
        let expected = scores.iter().map(|r| r[e].abs()).sum::<f64>() / 3.0;
        assert!(close(per_edge[e], expected, 1e-12));
    }

    // Edge entropy by layer equals the entropy of that layer's |S̄| alone.
    let ee = edge_entropy(&table, By::Layer).unwrap();
    let layer0: Vec<f64> = (0..n)
        .filter(|&e| edges[e].dst_layer == 0)
        .map(|e| (scores.iter().map(|r| r[e]).sum::<f64>() / 3.0).abs())
        .collect();
    let t: f64 = layer0.iter().sum();
    let h0: f64 = layer0.iter().map(|a| a / t).map(|p| -p * p.ln()).sum();
    assert!(close(col_f64(&ee, "edge_entropy")[0], h0, 1e-12));
}

#[test]
fn a_mean_table_is_one_sample() {
    let n = n_edges(L);
    let scores = random_scores(8, 4, n);
    let graph = rlq::analysis::synthetic::block_graph(L, scores);
    let mean_table = graph.edge_table().unwrap();
    let mean = graph.mean_scores();
    let expected = mean.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
    assert!(close(
        value(&intensity(&mean_table, By::None, None).unwrap()),
        expected,
        1e-12
    ));
    // Mean-graph statistics agree between the long and the mean table.
    let long = graph.sample_table().unwrap();
    let a = value(&edge_entropy(&long, By::None).unwrap());
    let b = value(&edge_entropy(&mean_table, By::None).unwrap());
    assert!(close(a, b, 1e-12));
}

#[test]
fn bad_tables_are_errors_that_name_the_problem() {
    let table = block_table(L, random_scores(9, 2, n_edges(L))).unwrap();
    let no_score = table.drop("score").unwrap();
    let err = intensity(&no_score, By::None, None).unwrap_err();
    assert!(
        matches!(&err, AnalysisError::MissingColumn { column, .. } if column == "score"),
        "{err}"
    );
    assert!(err.to_string().contains("`score`"));

    let no_layer = table.drop("dst_layer").unwrap();
    assert!(intensity(&no_layer, By::None, None).is_ok());
    let err = intensity(&no_layer, By::Layer, None).unwrap_err();
    assert!(matches!(&err, AnalysisError::MissingColumn { column, .. } if column == "dst_layer"));

    let doubled = table.vstack(&table.head(Some(1))).unwrap();
    assert!(matches!(
        intensity(&doubled, By::None, None),
        Err(AnalysisError::DuplicateRow { .. })
    ));

    let short = table.slice(0, table.height() - 1);
    assert!(matches!(
        intensity(&short, By::None, None),
        Err(AnalysisError::MissingRow { .. })
    ));

    let wrong_type = table
        .clone()
        .with_column(Column::new("score".into(), vec!["x"; table.height()]))
        .unwrap()
        .clone();
    assert!(matches!(
        intensity(&wrong_type, By::None, None),
        Err(AnalysisError::ColumnType { .. })
    ));

    assert!(matches!(
        intensity(&table.head(Some(0)), By::None, None),
        Err(AnalysisError::EmptyTable)
    ));

    let mut with_nan: Vec<f64> = table
        .column("score")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    with_nan[5] = f64::NAN;
    let mut nan_table = table.clone();
    nan_table
        .with_column(Column::new("score".into(), with_nan))
        .unwrap();
    let err = intensity(&nan_table, By::None, None).unwrap_err();
    assert!(
        matches!(err, AnalysisError::NonFiniteScore { prompt_id: 0, .. }),
        "{err}"
    );
}

#[test]
fn side_by_side_puts_one_column_per_graph() {
    let n = n_edges(L);
    let g0 = block_table(L, random_scores(10, 3, n)).unwrap();
    let g1 = block_table(L, random_scores(11, 3, n)).unwrap();
    let stat = Stat::Intensity { dense_layers: None };
    let whole = side_by_side(&["g0", "g1"], &[g0.clone(), g1.clone()], stat, By::None).unwrap();
    let names: Vec<String> = whole
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, ["statistic", "g0", "g1"]);
    assert_eq!(
        col_f64(&whole, "g0")[0],
        value(&intensity(&g0, By::None, None).unwrap())
    );
    assert_eq!(
        col_f64(&whole, "g1")[0],
        value(&intensity(&g1, By::None, None).unwrap())
    );

    let by_layer = side_by_side(&["g0", "g1"], &[g0.clone(), g1], stat, By::Layer).unwrap();
    assert_eq!(by_layer.height(), L + 1);
    assert_eq!(
        col_f64(&by_layer, "g0"),
        col_f64(&intensity(&g0, By::Layer, None).unwrap(), "intensity")
    );

    // A deeper model: layer by layer would set different depths side by side (the shallower
    // one's logits beside the deeper one's last block), so it is refused; by relative depth
    // each graph's layers fall into the same 10 bins (then logits), one row per bin either has.
    let deep = block_table(L + 1, random_scores(12, 3, n_edges(L + 1))).unwrap();
    let refused = side_by_side(
        &["small", "deep"],
        &[g0.clone(), deep.clone()],
        stat,
        By::Layer,
    );
    assert!(
        matches!(&refused, Err(AnalysisError::DepthMismatch { depths }) if depths == &format!("small: {L} layers, deep: {} layers", L + 1)),
        "{refused:?}"
    );
    let mixed = side_by_side(&["small", "deep"], &[g0.clone(), deep], stat, By::Depth).unwrap();
    let last = mixed
        .column("depth")
        .unwrap()
        .str()
        .unwrap()
        .get(mixed.height() - 1);
    assert_eq!(last, Some("logits"));
    // ⌊10·d/3⌋ for d = 0..3 gives bins 0, 3, 6; ⌊10·d/4⌋ for d = 0..4 gives 0, 2, 5, 7; plus
    // logits: 7 rows (0, 2, 3, 5, 6, 7, logits), the small graph absent from 3, the deep from 2.
    assert_eq!(mixed.height(), 7);
    assert_eq!(mixed.column("small").unwrap().null_count(), 3);
    assert_eq!(mixed.column("deep").unwrap().null_count(), 2);

    assert!(matches!(
        side_by_side(&["only"], &[g0.clone(), g0], stat, By::None),
        Err(AnalysisError::NameCount {
            names: 1,
            tables: 2
        })
    ));
}

#[test]
fn node_entropy_of_uniform_scores_is_log_out_degree() {
    let n = n_edges(L);
    let table = block_table(L, vec![vec![1.0; n]; 2]).unwrap();
    let nodes = node_entropy(&table).unwrap();
    let srcs: Vec<String> = nodes
        .column("src")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .map(String::from)
        .collect();
    assert_eq!(srcs, ["input", "a0", "m0", "a1", "m1", "a2", "m2"]);
    let degree: Vec<i64> = nodes
        .column("n_edges")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(degree.iter().sum::<i64>(), n as i64);
    for (d, h) in degree.iter().zip(col_f64(&nodes, "node_entropy")) {
        assert!(close(h, (*d as f64).ln(), 1e-12));
    }
}

#[test]
fn rel_change_and_overlap_on_known_pairs() {
    let n = n_edges(L);
    let scores = random_scores(13, 3, n);
    let doubled: Vec<Vec<f64>> = scores
        .iter()
        .map(|r| r.iter().map(|v| 2.0 * v).collect())
        .collect();
    let base = block_table(L, scores.clone()).unwrap();
    let tuned = block_table(L, doubled).unwrap();
    let rc = rel_change(&base, &tuned).unwrap();
    assert_eq!(rc.height(), n);
    for v in col_f64(&rc, "rel_change") {
        assert!(close(v, 1.0, 1e-12));
    }

    let ov = overlap(&base, &tuned, 10).unwrap();
    assert_eq!(ov.column("shared").unwrap().i64().unwrap().get(0), Some(10));
    assert_eq!(col_f64(&ov, "jaccard")[0], 1.0);
    assert!(close(col_f64(&ov, "spearman")[0], 1.0, 1e-12));

    // Reversed ranks: Spearman −1; disjoint tops: Jaccard 0.
    let up: Vec<f64> = (0..n).map(|e| e as f64 + 1.0).collect();
    let down: Vec<f64> = (0..n).map(|e| (n - e) as f64).collect();
    let a = block_table(L, vec![up]).unwrap();
    let b = block_table(L, vec![down]).unwrap();
    let ov = overlap(&a, &b, 5).unwrap();
    assert!(close(col_f64(&ov, "spearman")[0], -1.0, 1e-12));
    assert_eq!(col_f64(&ov, "jaccard")[0], 0.0);

    let other = block_table(L + 1, random_scores(14, 3, n_edges(L + 1))).unwrap();
    let err = rel_change(&base, &other).unwrap_err();
    assert!(matches!(err, AnalysisError::EdgeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("per-edge views"));
}

#[test]
fn names_parse_to_groupings_and_statistics() {
    assert_eq!("layer".parse::<By>().unwrap(), By::Layer);
    assert_eq!("src_kind".parse::<By>().unwrap(), By::SrcKind);
    assert!("row".parse::<By>().is_err());
    let h = HistOpts::default();
    assert_eq!(
        Stat::from_name("top25_mass", h, 10, None).unwrap(),
        Stat::TopkMass(25)
    );
    assert_eq!(
        Stat::from_name("topk_mass", h, 10, None).unwrap(),
        Stat::TopkMass(10)
    );
    assert_eq!(
        Stat::from_name("intensity", h, 10, Some(30)).unwrap(),
        Stat::Intensity {
            dense_layers: Some(30)
        }
    );
    for name in STAT_NAMES {
        let stat = Stat::from_name(name, h, 10, None).unwrap();
        assert_eq!(Stat::from_name(&stat.name(), h, 10, None).unwrap(), stat);
    }
    let err = Stat::from_name("entropyy", h, 10, None).unwrap_err();
    assert!(err.to_string().contains("known: intensity"));
}

// ---- the statistics table, scale-free and rank-based statistics ----

#[test]
fn every_statistic_is_one_entry_of_the_table() {
    let h = HistOpts::default();
    assert_eq!(STAT_NAMES.len(), STATS.len());
    let mut seen = std::collections::HashSet::new();
    for (def, name) in STATS.iter().zip(STAT_NAMES) {
        assert_eq!(def.name, name);
        assert!(seen.insert(def.name), "{} twice", def.name);
        let stat = (def.make)(&StatParams::default());
        // The entry a statistic finds is the one that made it; its name parses back to it.
        assert_eq!(stat.def().name, def.name);
        assert_eq!(Stat::from_name(def.name, h, 10, None).unwrap(), stat);
        assert!(!def.description.is_empty());
    }
    // compare's default rows are the nine of METHOD.md §5, in the order compare always had.
    let in_compare: Vec<&str> = STATS
        .iter()
        .filter(|d| d.in_compare)
        .map(|d| d.name)
        .collect();
    assert_eq!(
        in_compare,
        [
            "intensity",
            "entropy",
            "edge_entropy",
            "edge_entropy_norm",
            "kurtosis",
            "gini",
            "topk_mass",
            "effective_edges",
            "diversity"
        ]
    );
}

/// Average ranks by counting (the O(n²) definition: rank = #smaller + (#equal + 1) / 2).
fn naive_ranks(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|&x| {
            let less = v.iter().filter(|&&y| y < x).count() as f64;
            let equal = v.iter().filter(|&&y| y == x).count() as f64;
            less + (equal + 1.0) / 2.0
        })
        .collect()
}

fn naive_pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

/// The smallest k whose k largest |x| hold half of Σ|x|, by summing each candidate afresh.
fn naive_half_mass(v: &[f64]) -> f64 {
    let mut abs: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    abs.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let total: f64 = abs.iter().sum();
    let k = (1..=abs.len())
        .find(|&k| abs[..k].iter().sum::<f64>() >= 0.5 * total)
        .unwrap();
    k as f64 / abs.len() as f64
}

#[test]
fn rank_statistics_match_independent_computations() {
    // Integer-valued scores: many ties, so the average-rank convention matters.
    let mut rng = StdRng::seed_from_u64(41);
    let s: Vec<Vec<f64>> = (0..7)
        .map(|_| {
            (0..n_edges(L))
                .map(|_| rng.gen_range(-4i32..=4) as f64 * rng.gen_range(1..3) as f64)
                .collect()
        })
        .collect();
    let t = block_table(L, s.clone()).unwrap();

    let mut sum = 0.0;
    let mut pairs = 0.0;
    for i in 0..s.len() {
        for j in i + 1..s.len() {
            sum += naive_pearson(&naive_ranks(&s[i]), &naive_ranks(&s[j]));
            pairs += 1.0;
        }
    }
    let want = 1.0 - sum / pairs;
    let got = value(&statistic(&t, Stat::RankDiversity, By::None).unwrap());
    // Two orders of summation of ~1e2 rank products: agreement to rounding.
    assert!(close(got, want, 1e-12), "rank_diversity {got} vs {want}");

    let want = s.iter().map(|r| naive_half_mass(r)).sum::<f64>() / s.len() as f64;
    let got = value(&statistic(&t, Stat::HalfMassFraction, By::None).unwrap());
    // k/n fractions averaged: exact up to the last bit of the mean.
    assert!(
        close(got, want, 1e-15),
        "half_mass_fraction {got} vs {want}"
    );

    // Known values: one edge holding everything; all edges equal.
    let n = n_edges(L);
    let mut one = vec![vec![0.0; n]; 2];
    one[0][3] = 2.0;
    one[1][7] = -5.0;
    let t1 = block_table(L, one).unwrap();
    let got = value(&statistic(&t1, Stat::HalfMassFraction, By::None).unwrap());
    assert_eq!(got, 1.0 / n as f64);
    // Identical samples (up to a positive scale): same ranks, no rank diversity.
    let base: Vec<f64> = (0..n).map(|e| (e as f64 * 0.37).sin()).collect();
    let same = vec![base.clone(), base.iter().map(|v| 3.0 * v).collect()];
    let t2 = block_table(L, same).unwrap();
    let got = value(&statistic(&t2, Stat::RankDiversity, By::None).unwrap());
    assert!(got.abs() < 1e-15, "{got}");
    assert!(matches!(
        statistic(
            &block_table(L, vec![base]).unwrap(),
            Stat::RankDiversity,
            By::None
        ),
        Err(AnalysisError::TooFewSamples {
            statistic: "rank_diversity",
            needed: 2,
            found: 1
        })
    ));
}

/// Every statistic but the ones a normalisation makes constant, by none and by layer.
fn normalized_values(t: &DataFrame, normalize: Normalize) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    for def in STATS {
        let stat = NormalizedStat::new((def.make)(&StatParams::default()), normalize);
        for by in [By::None, By::Layer] {
            if stat.check_meaningful(by).is_err() {
                continue;
            }
            let df = statistic(t, stat, by).unwrap();
            let col = if by == By::None {
                "value".to_string()
            } else {
                stat.name()
            };
            out.push((format!("{} {by:?}", stat.name()), col_f64(&df, &col)));
        }
    }
    out
}

fn with_grad_norms(t: &DataFrame, norms: &[f64]) -> DataFrame {
    let ids: Vec<i64> = t
        .column("prompt_id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let g: Vec<f64> = ids.iter().map(|&k| norms[k as usize]).collect();
    let mut t = t.clone();
    t.with_column(Column::new("grad_norm".into(), g)).unwrap();
    t
}

#[test]
fn normalised_statistics_do_not_see_a_sample_rescaled() {
    let s = random_scores(42, 6, n_edges(L));
    let norms = [0.5, 2.0, 1.5, 3.0, 0.25, 1.0];
    for c in [7.3, 1e-3] {
        // Sample 2's scores (and, for grad, its gradient norm) times c.
        let mut scaled = s.clone();
        scaled[2].iter_mut().for_each(|v| *v *= c);
        let mut scaled_norms = norms;
        scaled_norms[2] *= c;
        for (normalize, a, b) in [
            (
                Normalize::Mass,
                block_table(L, s.clone()).unwrap(),
                block_table(L, scaled.clone()).unwrap(),
            ),
            (
                Normalize::Grad,
                with_grad_norms(&block_table(L, s.clone()).unwrap(), &norms),
                with_grad_norms(&block_table(L, scaled.clone()).unwrap(), &scaled_norms),
            ),
        ] {
            let (va, vb) = (
                normalized_values(&a, normalize),
                normalized_values(&b, normalize),
            );
            assert_eq!(va.len(), vb.len());
            for ((name, x), (_, y)) in va.iter().zip(&vb) {
                for (p, q) in x.iter().zip(y) {
                    // The scaled sample's values differ from the original only by the
                    // rounding of v·c/(M·c) against v/M: a few ulps, so 1e-12 relative.
                    assert!(close(*p, *q, 1e-12), "{name} c={c}: {p} vs {q}");
                }
            }
            // Raw intensity does see the rescaled sample: the check can fail.
            let raw_a = value(&intensity(&a, By::None, None).unwrap());
            let raw_b = value(&intensity(&b, By::None, None).unwrap());
            assert!(!close(raw_a, raw_b, 1e-6));
        }
    }
}

#[test]
fn mass_and_grad_normalisation_match_their_formulas() {
    let s = random_scores(43, 5, n_edges(L));
    let norms = [0.5, 2.0, 1.5, 3.0, 0.25];
    let t = block_table(L, s.clone()).unwrap();
    let edges = block_edges(L);
    // intensity/mass by layer: Σ_k Σ_{e in layer} |S_ke| / M_k / (N · E_layer).
    let by_layer = statistic(
        &t,
        NormalizedStat::new(Stat::Intensity { dense_layers: None }, Normalize::Mass),
        By::Layer,
    )
    .unwrap();
    assert_eq!(by_layer.get_column_names()[1].as_str(), "intensity/mass");
    let got = col_f64(&by_layer, "intensity/mass");
    for (layer, g) in (0..=L as i64).zip(&got) {
        let in_layer: Vec<usize> = (0..edges.len())
            .filter(|&e| edges[e].dst_layer == layer)
            .collect();
        let mut want = 0.0;
        for row in &s {
            let mass: f64 = row.iter().map(|v| v.abs()).sum();
            want += in_layer.iter().map(|&e| row[e].abs() / mass).sum::<f64>();
        }
        want /= (s.len() * in_layer.len()) as f64;
        assert!(close(*g, want, 1e-12), "layer {layer}: {g} vs {want}");
    }
    // The layers' shares: Σ_layer intensity·E_layer = 1 (each sample's mass is 1).
    let share: f64 = (0..=L as i64)
        .zip(&got)
        .map(|(l, g)| g * edges.iter().filter(|e| e.dst_layer == l).count() as f64)
        .sum();
    assert!(close(share, 1.0, 1e-12), "{share}");
    // Whole-graph intensity/mass is 1/n_edges for any graph: refused, pointing to by layer.
    let err = statistic(
        &t,
        NormalizedStat::new(Stat::Intensity { dense_layers: None }, Normalize::Mass),
        By::None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("by layer"), "{err}");
    // intensity/grad: mean over samples of Σ|S_k| / (g_k · E).
    let tg = with_grad_norms(&t, &norms);
    let got = value(
        &statistic(
            &tg,
            NormalizedStat::new(Stat::Intensity { dense_layers: None }, Normalize::Grad),
            By::None,
        )
        .unwrap(),
    );
    let want = s
        .iter()
        .zip(norms)
        .map(|(row, g)| row.iter().map(|v| v.abs() / g).sum::<f64>())
        .sum::<f64>()
        / (s.len() * edges.len()) as f64;
    assert!(close(got, want, 1e-12), "{got} vs {want}");
    // Entropy on the normalised scores equals entropy of a table normalised by hand.
    let by_hand: Vec<Vec<f64>> = s
        .iter()
        .map(|row| {
            let m: f64 = row.iter().map(|v| v.abs()).sum();
            row.iter().map(|v| v / m).collect()
        })
        .collect();
    let want = value(
        &entropy(
            &block_table(L, by_hand).unwrap(),
            By::None,
            HistOpts::default(),
        )
        .unwrap(),
    );
    let got = statistic(
        &t,
        NormalizedStat::new(Stat::Entropy(HistOpts::default()), Normalize::Mass),
        By::None,
    )
    .unwrap();
    assert_eq!(
        got.column("statistic").unwrap().str().unwrap().get(0),
        Some("entropy/mass")
    );
    assert_eq!(value(&got), want);
}

#[test]
fn normalisation_refuses_what_it_cannot_scale() {
    let mut s = random_scores(44, 3, n_edges(L));
    let t = block_table(L, s.clone()).unwrap();
    let grad = NormalizedStat::new(Stat::Kurtosis, Normalize::Grad);
    match statistic(&t, grad, By::None).unwrap_err() {
        AnalysisError::MissingColumn { column, .. } => assert_eq!(column, "grad_norm"),
        other => panic!("{other}"),
    }
    let bad = with_grad_norms(&t, &[1.0, 0.0, 2.0]);
    assert!(matches!(
        statistic(&bad, grad, By::None),
        Err(AnalysisError::CannotNormalize {
            how: "grad",
            prompt_id: 1,
            ..
        })
    ));
    s[2].iter_mut().for_each(|v| *v = 0.0);
    let dead = block_table(L, s).unwrap();
    let err = statistic(
        &dead,
        NormalizedStat::new(Stat::Gini, Normalize::Mass),
        By::None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::CannotNormalize {
                how: "mass",
                prompt_id: 2,
                ..
            }
        ),
        "{err}"
    );
    // Two grad_norm values for one sample: a mixed table.
    let mut mixed = with_grad_norms(&t, &[1.0, 1.0, 1.0]);
    let g: Vec<f64> = (0..mixed.height()).map(|i| 1.0 + (i % 2) as f64).collect();
    mixed
        .with_column(Column::new("grad_norm".into(), g))
        .unwrap();
    assert!(statistic(&mixed, grad, By::None).is_err());
    assert_eq!("mass".parse::<Normalize>().unwrap(), Normalize::Mass);
    assert!("scale".parse::<Normalize>().is_err());
}

#[test]
fn same_tokens_lists_the_prompts_that_differ() {
    let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ids = [3i64, 1, 2];
    assert!(
        check_same_tokens(&ids, &h(&["a", "b", "c"]), &[1, 2, 3], &h(&["b", "c", "a"])).is_ok()
    );
    let err =
        check_same_tokens(&ids, &h(&["a", "b", "c"]), &ids, &h(&["a", "x", "c"])).unwrap_err();
    match &err {
        AnalysisError::TokenMismatch { count, prompt_ids } => {
            assert_eq!((*count, prompt_ids.as_str()), (1, "1"));
        }
        other => panic!("{other}"),
    }
    // Unknown hashes and prompts in one graph only cannot be checked: they differ.
    let err = check_same_tokens(
        &ids,
        &h(&["a", "", "c"]),
        &[3, 1, 2, 9],
        &h(&["a", "", "c", "d"]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, AnalysisError::TokenMismatch { count: 2, prompt_ids } if prompt_ids == "1, 9"),
        "{err}"
    );
    assert!(check_same_tokens(&ids, &[], &ids, &[]).is_err());
}
