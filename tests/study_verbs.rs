//! The study verbs on hand-made tables: arith is seeded, grade reads the last number,
//! select_questions applies METHOD.md §4 steps 2-4 exactly.

use polars::prelude::*;
use rlq::Session;

fn ids(n: usize) -> Series {
    Series::new("".into(), (0..n as i64).collect::<Vec<_>>())
}

#[test]
fn arith_is_reproducible_and_graded_correctly() {
    let mut s = Session::new();
    let a = s.eval("arith 30 seed 7").unwrap().as_table().unwrap();
    let b = s.eval("arith 30 seed 7").unwrap().as_table().unwrap();
    let c = s.eval("arith 30 seed 8").unwrap().as_table().unwrap();
    assert!(a.equals(&b));
    assert!(!a.equals(&c));
    // answering with the expected value is graded correct; an off-by-one is not
    let g = s
        .eval("arith 30 seed 7 | with answer = expected + 0 | grade")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(g.column("correct").unwrap().bool().unwrap().sum(), Some(30));
    let g = s
        .eval("arith 30 seed 7 | with answer = expected + 1 | grade")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(g.column("correct").unwrap().bool().unwrap().sum(), Some(0));
    s.set(
        "t",
        df!("answer" => ["so it is 12", "13 apples", "none"], "expected" => [12.0, 12.0, 1.0])
            .unwrap(),
    );
    let g = s.eval("t | grade").unwrap().as_table().unwrap();
    let ok: Vec<Option<bool>> = g
        .column("correct")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ok, vec![Some(true), Some(false), Some(false)]);
}

#[test]
fn sample_is_seeded_and_keeps_order() {
    let mut s = Session::new();
    s.set("t", df!("x" => (0..100i64).collect::<Vec<_>>()).unwrap());
    let a = s.eval("t | sample 10 seed 3").unwrap().as_table().unwrap();
    let b = s.eval("t | sample 10 seed 3").unwrap().as_table().unwrap();
    assert!(a.equals(&b));
    assert_eq!(a.height(), 10);
    let x: Vec<i64> = a
        .column("x")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(x.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        s.eval("t | sample 500 | count").unwrap().as_number(),
        Some(100.0)
    );
}

/// Lengths chosen so every filter of METHOD.md §4 bites once.
#[test]
fn select_questions_follows_method_section_4() {
    let mut s = Session::new();
    let list = |n: i64| Series::new("".into(), (0..n).collect::<Vec<_>>());
    // id:        0     1     2      3     4     5
    let n0 = [10i64, 10, 10, 40, 10, 2];
    let n1 = [10i64, 12, 10, 40, 30, 2];
    let ok0 = [true, true, false, true, true, true];
    let ok1 = [true, true, true, true, true, true];
    let mk = |n: &[i64], ok: &[bool]| {
        df!(
            "prompt_id" => ids(6),
            "prompt" => ["q0", "q1", "q2", "q3", "q4", "q5"],
            "answer_ids" => n.iter().map(|&k| list(k)).collect::<Vec<_>>(),
            "n_tokens" => n.to_vec(),
            "correct" => ok.to_vec(),
        )
        .unwrap()
    };
    s.set("a0", mk(&n0, &ok0));
    s.set("a1", mk(&n1, &ok1));
    let sel = s
        .eval("select_questions a0, a1 alpha 0.3 n 100")
        .unwrap()
        .as_table()
        .unwrap();
    // both correct: 0,1,3,4,5. Means over those: base (10+10+40+10+2)/5 = 14.4,
    // tuned (10+12+40+30+2)/5 = 18.8 → T̄ = 14.4, T_cut = ⌊0.3·14.4⌋ = 4.
    // Window [⌊7.2⌋, ⌊21.6⌋] = [7, 21]: drops 3 (m = 40) and 5 (m = 2);
    // 4 has m = 20 but |10 − 30| = 20 > 10: dropped. Kept: 0, 1.
    let kept: Vec<i64> = sel
        .column("prompt_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(kept, vec![0, 1]);
    let tc: Vec<i64> = sel
        .column("t_cut")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(tc, vec![4, 4]);
    // without step 3 every question both got right is kept
    let all = s
        .eval("select_questions a0, a1 alpha 0.3 n 100 len_filter false")
        .unwrap()
        .as_table()
        .unwrap();
    let kept: Vec<i64> = all
        .column("prompt_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(kept, vec![0, 1, 3, 4, 5]);
    let sel1 = s
        .eval("select_questions a0, a1 alpha 0.3 n 1 seed 5")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(sel1.height(), 1);
}

/// The report states what it rests on: `select_questions` records each stage's count, and
/// `provenance` + `summary … provenance` write them with the models' hashes, N, T̄, α, T_cut and
/// warnings where the data are thin (N < 30, T_cut = 1, the length filter off).
#[test]
fn the_report_states_what_it_rests_on() {
    use rlq::analysis::synthetic::block_graph;
    use rlq::eval::Value;
    use std::sync::Arc;
    let mut s = Session::new();
    let list = |n: i64| Series::new("".into(), (0..n).collect::<Vec<_>>());
    // 4 asked, 3 both correct (id 2 wrong for base), all of length 10: T̄ = 10, T_cut = 1.
    let mk = |ok: [bool; 4]| {
        df!(
            "prompt_id" => ids(4),
            "prompt" => ["q0", "q1", "q2", "q3"],
            "answer_ids" => (0..4).map(|_| list(10)).collect::<Vec<_>>(),
            "n_tokens" => [10i64; 4],
            "correct" => ok,
        )
        .unwrap()
    };
    s.set("a0", mk([true, true, false, true]));
    s.set("a1", mk([true; 4]));
    s.eval("let sel = select_questions a0, a1 alpha 0.1 n 2 seed 0")
        .unwrap();
    let sel = s.get("sel").unwrap().as_table().unwrap();
    let first = |c: &str| sel.column(c).unwrap().get(0).unwrap().to_string();
    assert_eq!(
        (first("asked"), first("both_correct"), first("length_kept")),
        ("4".into(), "3".into(), "3".into())
    );
    let kept: Vec<i64> = sel
        .column("prompt_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let scores = |k: f64| {
        (0..kept.len())
            .map(|i| vec![k * (i + 1) as f64; 4 * 4 + 3 * 2 + 1])
            .collect::<Vec<_>>()
    };
    let mut g0 = block_graph(2, scores(1.0));
    let mut g1 = block_graph(2, scores(2.0));
    for (g, h) in [(&mut g0, "aaaa"), (&mut g1, "bbbb")] {
        g.meta.prompt_ids = kept.clone();
        g.meta.model_hash = h.repeat(8);
        g.meta.t_cut = Some(1);
    }
    s.set("g0", Value::Graph(Arc::new(g0)));
    s.set("g1", Value::Graph(Arc::new(g1)));
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("summary.md");
    s.eval(&format!(
        "let p = provenance g0, g1 selection sel max_tokens 64 seed 0\n\
         summary (compare g0, g1 resamples 10) to \"{}\" title \"t\" provenance p",
        md.display()
    ))
    .unwrap();
    let text = std::fs::read_to_string(&md).unwrap();
    for part in [
        "## Warnings",
        "- **N = 2 < 30: the bootstrap intervals are unreliable**",
        "- **T_cut = 1: only the first answer token is scored**",
        "## Settings and provenance",
        "| base weights (blake3) | aaaaaaaaaaaaaaaa |",
        "| tuned weights (blake3) | bbbbbbbbbbbbbbbb |",
        "| questions both models answered | 4 |",
        "| answered correctly by both | 3 |",
        "| kept by the length filter | 3 |",
        "| N (questions sampled) | 2 |",
        "| T̄ (mean answer tokens, the shorter model) | 10 |",
        "| α | 0.1 |",
        "| T_cut = max(⌊α·T̄⌋, 1) | 1 |",
        "| max_tokens | 64 |",
        "| delta | pct | ci_low | ci_high | se | effect_d |",
    ] {
        assert!(text.contains(part), "{part}:\n{text}");
    }
    // The length filter switched off is said so.
    s.eval("let sel = select_questions a0, a1 alpha 0.1 n 2 seed 0 len_filter false")
        .unwrap();
    let p = s
        .eval("provenance g0, g1 selection sel")
        .unwrap()
        .as_table()
        .unwrap();
    let rows: Vec<String> = p
        .column("value")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert!(rows.iter().any(|r| r.contains("OFF")), "{rows:?}");
    assert!(
        rows.iter().any(|r| r.contains("length filter was off")),
        "{rows:?}"
    );
}

/// `reuse` keeps a table with its key: the same key reads it back without calling `make`,
/// another key is refused, naming what changed.
#[test]
fn reuse_reads_back_only_under_the_same_key() {
    let mut s = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.parquet");
    s.eval(&format!(
        "let k = 3\nfn make() = arith k seed 1\nlet a = reuse \"{p}\" make key [\"m\", 16]\n\
         let k = 5\nlet b = reuse \"{p}\" make key [\"m\", 16]",
        p = f.display()
    ))
    .unwrap();
    let (a, b) = (
        s.get("a").unwrap().as_table().unwrap(),
        s.get("b").unwrap().as_table().unwrap(),
    );
    // b was read back (3 rows), not made again with k = 5
    assert_eq!((a.height(), b.height()), (3, 3));
    assert!(a.equals(&b));
    let e = format!(
        "{:?}",
        s.eval(&format!("reuse \"{}\" make key [\"m\", 32]", f.display()))
            .unwrap_err()
    );
    assert!(
        e.contains("key 2: 16.0 saved, 32.0 now") || e.contains("key 2: 16 saved, 32 now"),
        "{e}"
    );
}

#[test]
fn paired_accuracy_pairs_by_question_and_tests_the_difference() {
    let mut s = Session::new();
    // 3 questions right in both, 1 only in the first, 6 only in the second, 2 in neither; the
    // second table lists them in another order (pairing is by prompt_id, not by row).
    let first = [
        true, true, true, true, false, false, false, false, false, false, false, false,
    ];
    let second = [
        true, true, true, false, true, true, true, true, true, true, false, false,
    ];
    s.set(
        "a",
        df!("prompt_id" => ids(12), "correct" => first.to_vec()).unwrap(),
    );
    let rev: Vec<i64> = (0..12).rev().collect();
    let rev_ok: Vec<bool> = second.iter().rev().cloned().collect();
    s.set("b", df!("prompt_id" => rev, "correct" => rev_ok).unwrap());
    let t = s.eval("paired_accuracy a, b").unwrap().as_table().unwrap();
    let int = |c: &str| t.column(c).unwrap().i64().unwrap().get(0).unwrap();
    let real = |c: &str| t.column(c).unwrap().f64().unwrap().get(0).unwrap();
    assert_eq!(
        (
            int("questions"),
            int("both"),
            int("only_first"),
            int("only_second"),
            int("neither")
        ),
        (12, 3, 1, 6, 2)
    );
    assert_eq!(
        (real("accuracy_first"), real("accuracy_second")),
        (4.0 / 12.0, 9.0 / 12.0)
    );
    // Exact McNemar on 1 vs 6: 2·(C(7,0) + C(7,1))/2^7 = 16/128.
    assert!((real("p_mcnemar") - 0.125).abs() < 1e-12);
    // Other question sets are refused, naming the question; so is a table without grades.
    let e = s
        .eval("paired_accuracy a, (b | where prompt_id < 11)")
        .unwrap_err();
    assert!(e.to_string().contains("question 11"), "{e}");
    let e = s
        .eval("paired_accuracy a, (b | select prompt_id)")
        .unwrap_err();
    assert!(e.to_string().contains("`correct`"), "{e}");
}
