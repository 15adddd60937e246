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
