//! Seeded arithmetic word problems with known answers.

use rand::{rngs::StdRng, Rng, SeedableRng};

const NAMES: [&str; 8] = ["Tom", "Ana", "Li", "Sara", "Omar", "Maya", "Ken", "Eva"];
const THINGS: [&str; 8] = [
    "apples", "books", "coins", "stamps", "marbles", "pencils", "cards", "shells",
];

/// One generated question.
#[derive(Debug, Clone, PartialEq)]
pub struct ArithQuestion {
    pub id: i64,
    pub prompt: String,
    pub expected: f64,
}

/// `n` questions from `seed` with operands up to `max` (at least 2). The same arguments always
/// give the same questions.
pub fn arith_questions(n: usize, seed: u64, max: i64) -> Vec<ArithQuestion> {
    let max = max.max(2);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let who = NAMES[rng.gen_range(0..NAMES.len())];
        let what = THINGS[rng.gen_range(0..THINGS.len())];
        let a = rng.gen_range(2..=max);
        let b = rng.gen_range(1..=max);
        let (text, ans) = match rng.gen_range(0..4) {
            0 => (
                format!(
                    "{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?"
                ),
                a + b,
            ),
            1 => {
                let (hi, lo) = (a.max(b), a.min(b));
                (
                    format!("{who} has {hi} {what} and gives away {lo}. How many {what} are left?"),
                    hi - lo,
                )
            }
            2 => {
                let k = rng.gen_range(2..=9);
                (
                    format!("{who} buys {k} boxes with {a} {what} in each box. How many {what} is that in total?"),
                    k * a,
                )
            }
            _ => (format!("What is {a} plus {b}?"), a + b),
        };
        out.push(ArithQuestion {
            id: i as i64,
            prompt: format!("{text} Answer with the final number."),
            expected: ans as f64,
        });
    }
    out
}
