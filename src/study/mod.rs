//! The study's engine (METHOD.md §4), independent of the language: seeded arithmetic questions
//! and grading of answers by their final number. The `arith` and `grade` verbs and the tuning
//! rewards all read these, so a question set and a grade mean the same thing everywhere.

pub mod arith;
pub mod grade;

pub use arith::{arith_questions, ArithQuestion};
pub use grade::{is_correct, last_number};
