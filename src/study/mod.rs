//! The study's engine (METHOD.md §4), independent of the language: seeded arithmetic questions,
//! grading of answers by their final number, and two graded sets compared question by question.
//! The `arith`, `grade` and `paired_accuracy` verbs and the tuning rewards all read these, so a
//! question set and a grade mean the same thing everywhere.

pub mod arith;
pub mod grade;
pub mod paired;

pub use arith::{arith_questions, ArithQuestion};
pub use grade::{is_correct, last_number};
pub use paired::{exact_mcnemar, paired_accuracy, PairedAccuracy};
