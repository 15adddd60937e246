//! `rlq::Session`: the embedding API (in progress).
pub struct Session;
