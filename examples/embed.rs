//! Embedding rlq in a Rust program: hand it a polars DataFrame, add a host function in one line,
//! run a query, and take a DataFrame back.
//!
//! `cargo run --example embed`

use polars::prelude::*;
use rlq::eval::Value;
use rlq::Session;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut session = Session::new();

    // Values cross the boundary with `set` / `get`; a DataFrame becomes an rlq table.
    let scores = df!(
        "layer" => [0i64, 1, 2, 3],
        "score" => [0.02, -0.40, 0.15, -0.07],
    )?;
    session.set("scores", scores);
    session.set("threshold", 0.1);

    // A host function, callable as `squash(x)`.
    session.register_simple_fn("squash", "x / (1 + |x|)", |args| match args {
        [Value::Number(x)] => Ok(Value::Number(x / (1.0 + x.abs()))),
        _ => Err("squash takes one number".into()),
    });

    let strong = session
        .eval("scores | where abs(score) > threshold | sort by score desc")?
        .as_table()
        .ok_or("expected a table")?;
    println!("{strong}");
    println!("squash(3) = {}", session.eval("squash(3)")?);
    Ok(())
}
