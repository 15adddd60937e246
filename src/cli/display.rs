//! How much of a table prints. polars reads its limits from environment variables
//! (`POLARS_FMT_MAX_ROWS`, `POLARS_FMT_MAX_COLS`, `POLARS_FMT_STR_LEN`); its own defaults (10 rows,
//! ~8 columns, 32 characters) cut tables the user asked for, so `top 20` showed 10 rows. rlq sets
//! larger defaults, unless the user set the variable; `--rows N` and the REPL's `:set rows N` change
//! the row limit. A longer table prints its first and last rows and its shape.

use std::io::IsTerminal;

/// Rows a table prints whole; a longer one shows its head and tail.
pub const DEFAULT_ROWS: usize = 50;
/// Columns a table prints whole (polars elides the middle ones beyond this).
pub const DEFAULT_COLS: usize = 16;
/// Characters across when stdout is not a terminal (a pipe or a log has no width; polars would
/// squeeze a wide table into 100 and wrap every cell). On a terminal polars uses its width.
pub const PIPE_WIDTH: usize = 240;
/// Characters of a string cell before polars cuts it with `…`.
pub const DEFAULT_STR_LEN: usize = 80;

const ROWS_VAR: &str = "POLARS_FMT_MAX_ROWS";

/// Sets the display defaults, keeping any variable the user set; `rows` (from `--rows`) wins
/// over both. Call before any thread starts (environment writes race with reads elsewhere).
pub fn apply(rows: Option<RowLimit>) {
    for (var, value) in [
        (ROWS_VAR, DEFAULT_ROWS),
        ("POLARS_FMT_MAX_COLS", DEFAULT_COLS),
        ("POLARS_FMT_STR_LEN", DEFAULT_STR_LEN),
    ] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, value.to_string());
        }
    }
    if std::env::var_os("POLARS_TABLE_WIDTH").is_none() && !std::io::stdout().is_terminal() {
        std::env::set_var("POLARS_TABLE_WIDTH", PIPE_WIDTH.to_string());
    }
    if let Some(rows) = rows {
        set_rows(rows);
    }
}

/// `--rows 20`, `:set rows all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLimit {
    At(usize),
    All,
}

impl RowLimit {
    /// ```
    /// use rlq::cli::display::RowLimit;
    /// assert_eq!(RowLimit::parse("20"), Ok(RowLimit::At(20)));
    /// assert_eq!(RowLimit::parse("all"), Ok(RowLimit::All));
    /// assert!(RowLimit::parse("-3").is_err());
    /// assert!(RowLimit::parse("0").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<RowLimit, String> {
        match text.trim() {
            "all" => Ok(RowLimit::All),
            t => match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(RowLimit::At(n)),
                _ => Err(format!(
                    "rows takes a whole number above 0 or `all`, got `{t}`"
                )),
            },
        }
    }
}

/// Changes the row limit. Only called between statements (no verb is running then).
pub fn set_rows(rows: RowLimit) {
    let value = match rows {
        RowLimit::At(n) => n.to_string(),
        // polars' "no limit".
        RowLimit::All => "-1".to_string(),
    };
    std::env::set_var(ROWS_VAR, value);
}

/// The row limit in force, as `:set` reports it.
pub fn rows() -> String {
    match std::env::var(ROWS_VAR).as_deref() {
        Ok("-1") => "all".to_string(),
        Ok(n) => n.to_string(),
        Err(_) => DEFAULT_ROWS.to_string(),
    }
}
