//! The numeric building blocks on hand-computed examples, and tables that went through parquet.

use polars::prelude::*;
use rlq::analysis::bootstrap::quantile;
use rlq::analysis::measures::*;
use rlq::analysis::synthetic::block_table;
use rlq::analysis::{compare, intensity, By, CompareOpts};

#[test]
fn kurtosis_of_one_two_three_four() {
    // mean 2.5; deviations ±1.5, ±0.5: m2 = (2·2.25 + 2·0.25)/4 = 1.25,
    // m4 = (2·5.0625 + 2·0.0625)/4 = 2.5625, kurtosis = 2.5625 / 1.5625 = 1.64.
    assert!((pearson_kurtosis(&[1.0, 2.0, 3.0, 4.0]) - 1.64).abs() < 1e-12);
    assert!(pearson_kurtosis(&[5.0, 5.0]).is_nan());
}

#[test]
fn ranks_share_ties_and_spearman_uses_them() {
    assert_eq!(
        average_ranks(&[10.0, 20.0, 20.0, 5.0]),
        [2.0, 3.5, 3.5, 1.0]
    );
    // Monotone but non-linear: Spearman 1, Pearson below 1.
    let a = [1.0, 2.0, 3.0, 4.0, 5.0];
    let b = [1.0, 4.0, 9.0, 16.0, 100.0];
    assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
    assert!(pearson(&a, &b) < 0.99);
}

#[test]
fn quantile_interpolates_linearly_between_order_statistics() {
    let v = [4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(&v, 0.0), 1.0);
    assert_eq!(quantile(&v, 1.0), 4.0);
    assert_eq!(quantile(&v, 0.5), 2.5); // position 1.5 between 2 and 3
    assert!(quantile(&[f64::NAN], 0.5).is_nan());
}

#[test]
fn bins_close_the_last_edge_and_skip_zeros_on_request() {
    let grid = BinGrid {
        bins: 4,
        lo: 0.0,
        hi: 1.0,
        include_zeros: false,
    };
    assert_eq!(grid.bin_of(1.0), Some(3)); // the maximum lands in the last bin
    assert_eq!(grid.bin_of(0.25), Some(1));
    assert_eq!(grid.bin_of(0.0), None);
    assert_eq!(grid.bin_of(1.5), None);
    let with_zeros = BinGrid {
        include_zeros: true,
        ..grid
    };
    assert_eq!(with_zeros.bin_of(0.0), Some(0));
    // Entropy of two equally full bins is ln 2.
    assert!((histogram_entropy(&[3, 0, 3, 0]) - 2f64.ln()).abs() < 1e-15);
}

#[test]
fn gini_of_small_examples() {
    // [0, 0, 0, 1]: (n − 1)/n = 0.75. [1, 2, 3]: Σ|xi − xj| = 8, 2n²x̄ = 2·9·2 = 36 → 2/9.
    assert!((gini_in_place(&mut [0.0, 0.0, 0.0, 1.0]) - 0.75).abs() < 1e-15);
    assert!((gini_in_place(&mut [3.0, 1.0, 2.0]) - 2.0 / 9.0).abs() < 1e-15);
    assert!(gini_in_place(&mut [0.0, 0.0]).is_nan());
    assert!((topk_mass_in_place(&mut [1.0, 5.0, 2.0, 2.0], 2) - 0.7).abs() < 1e-15);
}

#[test]
fn tables_read_back_from_parquet_give_the_same_statistics() {
    let l = 2;
    let n = 4 * l * l + 3 * l + 1;
    let scores: Vec<Vec<f64>> = (0..3)
        .map(|k| {
            (0..n)
                .map(|e| ((e * 31 + k * 17) % 13) as f64 - 6.0)
                .collect()
        })
        .collect();
    let mut table = block_table(l, scores).unwrap();
    // Narrower integer types, as other writers produce them.
    table
        .with_column(
            table
                .column("prompt_id")
                .unwrap()
                .cast(&DataType::Int32)
                .unwrap(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.parquet");
    let mut file = std::fs::File::create(&path).unwrap();
    ParquetWriter::new(&mut file)
        .finish(&mut table.clone())
        .unwrap();
    let back = ParquetReader::new(std::fs::File::open(&path).unwrap())
        .finish()
        .unwrap();
    for by in [By::None, By::Layer, By::Kind] {
        let a = intensity(&table, by, None).unwrap();
        let b = intensity(&back, by, None).unwrap();
        assert!(a.equals_missing(&b), "{a}\n{b}");
    }
    let c = compare(
        &table,
        &back,
        &CompareOpts {
            resamples: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let delta = c.column("delta").unwrap().f64().unwrap();
    assert!(delta.iter().all(|d| d.is_none_or(|d| d == 0.0)));
}
