//! The `rlq` binary from the outside: `-e`, `run`, `check`, `--set`, `--format`, exit codes,
//! diagnostics on stderr, and stdin piped into the REPL.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `rlq args…` in `dir` with `stdin` piped in.
fn rlq_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlq"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rlq");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("rlq output")
}

fn rlq(args: &[&str]) -> Output {
    rlq_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, "")
}

fn piped(stdin: &str) -> Output {
    rlq_in(Path::new(env!("CARGO_MANIFEST_DIR")), &[], stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// A temp folder holding `files` (path, text).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

const TABLE_CSV: &str = "a,b\n1,x\n2,y\n3,z\n";

#[test]
fn eval_prints_each_expression_value() {
    let o = rlq(&["-e", "let x = 2\nx + 1\n\"hi\"; [1, 2]"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "3\nhi\n[1, 2]\n");
}

#[test]
fn run_binds_set_variables_first() {
    let dir = folder(&[("s.rlq", "n * 2\nname\nflag\n")]);
    let o = rlq_in(
        dir.path(),
        &[
            "run",
            "s.rlq",
            "--set",
            "n=21",
            "--set",
            "name=bob",
            "--set",
            "flag=true",
        ],
        "",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "42\nbob\ntrue\n");
}

/// `--set ck=[8, 16]` binds a list (what a script's `param "checkpoints" (range …)` takes), and a
/// `param` given one reads it as given.
#[test]
fn set_binds_a_list() {
    let dir = folder(&[(
        "s.rlq",
        "let ck = param \"ck\" (range(4, 17, 4))\nck\nmap ck (fn(k) = k / 8)\nnames\n",
    )]);
    let o = rlq_in(
        dir.path(),
        &[
            "run",
            "s.rlq",
            "--set",
            "ck=[8, 16]",
            "--set",
            "names=[\"a, b\", c]",
        ],
        "",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "[8, 16]\n[1, 2]\n[\"a, b\", \"c\"]\n");
    // Without --set, the default: every 4th step up to 16.
    let o = rlq_in(dir.path(), &["run", "s.rlq", "--set", "names=[]"], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "[4, 8, 12, 16]\n[0.5, 1, 1.5, 2]\n[]\n");
    // A list left open is a usage error naming the value.
    let o = rlq_in(dir.path(), &["run", "s.rlq", "--set", "ck=[8, 16"], "");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not close it"), "{}", stderr(&o));
}

#[test]
fn run_resolves_paths_against_the_script_folder() {
    let dir = folder(&[
        ("sub/t.csv", TABLE_CSV),
        ("sub/q.rlq", "read \"t.csv\" | count\n"),
    ]);
    // Run from the folder above: `t.csv` is found next to the script, not in the cwd.
    let o = rlq_in(dir.path(), &["run", "sub/q.rlq"], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "3\n");
}

#[test]
fn check_accepts_good_and_rejects_bad_files() {
    let dir = folder(&[
        ("good.rlq", "let t = read \"t.csv\"\nt | where a > 1\n"),
        ("unknown.rlq", "t | where a > 1\n"),
        ("syntax.rlq", "let t = (1 +\n"),
    ]);
    let good = rlq_in(dir.path(), &["check", "good.rlq"], "");
    assert_eq!(code(&good), 0, "{}", stderr(&good));
    assert!(stdout(&good).contains("ok"));

    let unknown = rlq_in(dir.path(), &["check", "unknown.rlq"], "");
    assert_eq!(code(&unknown), 1);
    assert!(stderr(&unknown).contains("unknown variable `t`"));

    let syntax = rlq_in(dir.path(), &["check", "syntax.rlq"], "");
    assert_eq!(code(&syntax), 2);
    assert!(stderr(&syntax).contains("syntax error"));
}

#[test]
fn exit_codes_say_success_runtime_error_or_syntax_error() {
    assert_eq!(code(&rlq(&["-e", "1 + 1"])), 0);
    assert_eq!(code(&rlq(&["-e", "1 + nope"])), 1);
    assert_eq!(code(&rlq(&["-e", "read \"/no/such/file.csv\""])), 1);
    assert_eq!(code(&rlq(&["-e", "1 +"])), 2);
    assert_eq!(code(&rlq(&["--format", "xml", "-e", "1"])), 2);
    assert_eq!(code(&rlq(&["run", "/no/such/script.rlq"])), 2);
}

#[test]
fn values_before_an_error_are_printed() {
    let o = rlq(&["-e", "1\n2 + nope\n3"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "1\n");
}

#[test]
fn format_csv_and_json_print_tables_as_records() {
    let dir = folder(&[("t.csv", TABLE_CSV)]);
    let src = "read \"t.csv\" | where a > 1\nread \"t.csv\" | count";
    let csv = rlq_in(dir.path(), &["--format", "csv", "-e", src], "");
    assert_eq!(code(&csv), 0, "{}", stderr(&csv));
    assert_eq!(stdout(&csv), "a,b\n2,y\n3,z\n3\n");

    let json = rlq_in(dir.path(), &["-e", src, "--format", "json"], "");
    assert_eq!(code(&json), 0, "{}", stderr(&json));
    assert_eq!(
        stdout(&json),
        "[{\"a\":2,\"b\":\"y\"},{\"a\":3,\"b\":\"z\"}]\n3\n"
    );

    let table = rlq_in(dir.path(), &["-e", src], "");
    assert!(
        stdout(&table).contains("shape: (2, 2)"),
        "{}",
        stdout(&table)
    );
}

#[test]
fn diagnostics_show_the_source_line_and_a_label_on_stderr() {
    let dir = folder(&[("bad.rlq", "let a = 1\na + missing_name\n")]);
    let o = rlq_in(dir.path(), &["run", "bad.rlq"], "");
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    assert!(err.contains("unknown variable `missing_name`"), "{err}");
    assert!(err.contains("bad.rlq:2:5"), "{err}");
    assert!(err.contains("2 │ a + missing_name"), "{err}");
    // The underline under the name and its label.
    assert!(err.contains("────┬───"), "{err}");
    assert!(err.contains("not defined"), "{err}");
    // No colours when stderr is not a terminal.
    assert!(!err.contains('\x1b'), "{err}");
}

#[test]
fn piped_stdin_prints_each_result() {
    let o = piped("1 + 2\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "3\n");
}

#[test]
fn piped_stdin_joins_continuation_lines() {
    let o =
        piped("[1,\n  2]\n\nlet t = read \"scripts/quickstart.jsonl\"\nt\n  | count\n\"done\"\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "[1, 2]\n2\ndone\n");
}

#[test]
fn piped_stdin_keeps_going_after_an_error() {
    let o = piped("nope + 1\n40 + 2\n");
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "42\n");
    assert!(stderr(&o).contains("unknown variable `nope`"));
}

#[test]
fn piped_stdin_runs_meta_commands() {
    let o = piped("let n = 1\n:vars\n:time on\n2\n:quit\n3\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let n_line = out
        .lines()
        .find(|l| l.starts_with("n "))
        .unwrap_or_default();
    assert_eq!(
        n_line.split_whitespace().collect::<Vec<_>>(),
        ["n", "number", "1"],
        "{out}"
    );
    assert!(out.contains("2\ntime: "), "{out}");
    assert!(!out.contains("\n3\n"), "{out}");
}

#[test]
fn quickstart_script_prints_an_edge_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("models/smollm2-135m-instruct.q4_1.gguf").exists() {
        eprintln!(
            "skipping: models/smollm2-135m-instruct.q4_1.gguf is missing (scripts/fetch-models.sh)"
        );
        return;
    }
    // From another folder, to show the script's paths are relative to itself.
    let o = rlq_in(&root.join("src"), &["run", "../scripts/quickstart.rlq"], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("shape: (10, 8)"), "{out}");
    for column in ["src", "dst", "abs_score", "llama"] {
        assert!(out.contains(column), "{out}");
    }
}

#[test]
fn a_second_ctrl_c_exits_a_running_script() {
    use std::io::{BufRead, BufReader};
    // The script prints, then runs a statement of several seconds (a million generated rows,
    // sorted and de-duplicated; a FIFO no longer blocks: `read` refuses one at once).
    let dir = folder(&[(
        "wait.rlq",
        "\"ready\"\narith 1000000 seed 1 | sort by prompt | unique | sort by expected desc | count\n",
    )]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlq"))
        .args(["run", "wait.rlq"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rlq");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first_line)
        .expect("read");
    assert_eq!(first_line, "ready\n");
    // The handler is installed before the script starts. The first Ctrl-C interrupts the
    // statement; if the blocked open returns on it (EINTR), the script ends with exit 1 there and
    // then; otherwise the second Ctrl-C exits at once with 130.
    let sigint = |pid: u32| {
        let sent = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    };
    sigint(child.id());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second_sent = match child.try_wait().expect("try_wait") {
        Some(_) => false,
        None => {
            sigint(child.id());
            true
        }
    };
    let out = child.wait_with_output().expect("wait");
    if second_sent {
        assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    }
    assert!(stderr(&out).contains("interrupting"), "{}", stderr(&out));
}

// ---- hostile input (issue 13) ----

/// Runs `rlq args…` in `dir` with `stdin` bytes written from another thread (so a child that
/// does not read cannot block the test), killed after `limit`: a hang is a failure, not a stuck
/// test run.
fn rlq_bytes(dir: &Path, args: &[&str], stdin: Vec<u8>, limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlq"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rlq");
    let mut input = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        // The child may stop reading early (and close the pipe); that is not an error here.
        let _ = input.write_all(&stdin);
    });
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("rlq {args:?} ran past {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = writer.join();
    child.wait_with_output().expect("rlq output")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `printf '1\n"\xff"\n2\n' | rlq` stopped at the bad byte with exit 0; now the line is named,
/// skipped, the rest runs, and the exit status says something failed.
#[test]
fn piped_lines_that_are_not_utf8_are_reported() {
    let o = rlq_bytes(root(), &[], b"1\n\"\xff\"\n2\n".to_vec(), LIMIT);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n2\n");
    let err = stderr(&o);
    assert!(
        err.contains("line 2: is not valid UTF-8 (byte 0xff at column 2); the line is skipped"),
        "{err}"
    );
}

/// `--format csv` was ignored for piped statements.
#[test]
fn piped_statements_honour_the_format() {
    let o = rlq_bytes(
        root(),
        &["--format", "csv"],
        b"let t = read \"scripts/quickstart.jsonl\"\nt | count\nt | head 1 | select prompt\n"
            .to_vec(),
        LIMIT,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("2\nprompt\n"), "{out}");
    assert!(!out.contains("shape:"), "{out}");
}

/// A stray `"` followed by 4 MB of input hung the piped reader (every line re-scanned the whole
/// statement so far). Now lines are scanned once and an open statement is cut at 1 MiB.
#[test]
fn a_stray_quote_before_megabytes_of_input_ends() {
    let mut input = b"1\n\"\n".to_vec();
    let line = format!("{}\n", "y".repeat(99));
    for _ in 0..40_000 {
        input.extend_from_slice(line.as_bytes());
    }
    let o = rlq_bytes(root(), &[], input, LIMIT);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n");
    let err = stderr(&o);
    assert!(
        err.contains("line 2: the statement starting here is still open after 1 MiB"),
        "{err}"
    );
    // Under the cut, an unclosed string is a syntax error at the end of input, quickly too.
    let mut input = b"\"".to_vec();
    for _ in 0..5_000 {
        input.extend_from_slice(line.as_bytes());
    }
    let o = rlq_bytes(root(), &[], input, LIMIT);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("syntax error"), "{}", stderr(&o));
}

/// Deep nesting is an error with the limit, and the reader goes on to the next statement.
#[test]
fn piped_reader_survives_deep_nesting() {
    let src = format!("{}1\n1 + 1\n", "abs ".repeat(3000));
    let o = rlq_bytes(root(), &[], src.into_bytes(), LIMIT);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "2\n");
    assert!(
        stderr(&o).contains("commands nested more than 150 deep"),
        "{}",
        stderr(&o)
    );
}

/// A script saved with a UTF-8 BOM runs, from `rlq run`, `rlq check` and piped.
#[test]
fn scripts_with_a_bom_run_from_the_command_line() {
    let dir = folder(&[("bom.rlq", "\u{feff}let x = 20\nx + 1\n")]);
    let o = rlq_in(dir.path(), &["run", "bom.rlq"], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "21\n");
    let o = rlq_in(dir.path(), &["check", "bom.rlq"], "");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = rlq_in(dir.path(), &[], "\u{feff}1 + 1\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "2\n");
}

/// An error past column 65 535 panicked the renderer (exit 101); now it is an exit-1 diagnostic.
#[test]
fn an_error_far_along_a_long_line_is_rendered() {
    let src = format!("\"{}\" + zz", "x".repeat(70_000));
    let o = rlq(&["-e", &src]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unknown variable `zz`"), "{err}");
    assert!(err.contains("line 1 columns"), "{err}");
}

/// The lines of README.md's ```rlq blocks.
fn readme_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut lines = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        match (inside, line.trim_start().starts_with("```")) {
            (false, true) => inside = line.trim() == "```rlq",
            (true, true) => inside = false,
            (true, false) if !line.trim().is_empty() => lines.push(line.to_string()),
            _ => {}
        }
    }
    lines
}

/// Every line of the README's rlq code runs as written, in order, in one session (the tour
/// loads the real SmolLM2, so this needs scripts/fetch-models.sh like the quickstart test).
/// `g | edges where …` failed here with "`edges` does not take piped input".
#[test]
fn readme_code_runs_as_written() {
    let lines = readme_lines();
    assert!(lines.len() >= 9, "README's rlq blocks: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("g | edges where")),
        "{lines:?}"
    );
    let model = root().join("models/smollm2-135m-instruct.q4_1.gguf");
    if !model.exists() {
        eprintln!(
            "skipping: {} is missing (scripts/fetch-models.sh)",
            model.display()
        );
        return;
    }
    // In a scratch folder (the tour saves to out/), with the models beside it.
    let dir = folder(&[]);
    std::os::unix::fs::symlink(root().join("models"), dir.path().join("models")).expect("link");
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir out");
    // Piped, statement by statement: a failing line is named on stderr and makes the exit 1.
    let src = lines.join("\n") + "\n";
    let o = rlq_bytes(
        dir.path(),
        &[],
        src.into_bytes(),
        std::time::Duration::from_secs(1200),
    );
    assert_eq!(
        code(&o),
        0,
        "stderr:\n{}\nstdout:\n{}",
        stderr(&o),
        stdout(&o)
    );
    let out = stdout(&o);
    for part in ["llama", "abs_score", "shape: (20,"] {
        assert!(out.contains(part), "missing {part:?} in:\n{out}");
    }
    assert!(dir.path().join("out/g.parquet").exists());
}

/// A script path that is not a regular file (a device that never ends, a folder) is refused at
/// once by `rlq run` and by the REPL's `:load`, saying what the path is, instead of being read
/// for ever.
#[cfg(unix)]
#[test]
fn scripts_that_are_not_regular_files_are_refused() {
    let o = rlq(&["run", "/dev/zero"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("a character device"), "{}", stderr(&o));
    let dir = folder(&[("sub/x.rlq", "1\n")]);
    let o = rlq_in(dir.path(), &["run", "sub"], "");
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("is a folder"), "{}", stderr(&o));
    let o = piped(":load /dev/zero\n1 + 1\n");
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(err.contains("a character device"), "{err}");
    assert!(
        out.contains('2'),
        "the session goes on after the refused load: {out}"
    );
}

/// The data rows of a polars table print (`│ 3   │`), header and dtype rows excluded.
fn printed_rows(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| l.trim_matches(['│', ' ']).to_string())
        .filter(|l| !l.is_empty() && l != "i" && l != "---" && l != "i64")
        .collect()
}

fn thirty_rows() -> String {
    let xs: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    format!("let t = {{i: [{}]}}", xs.join(", "))
}

#[test]
fn a_table_the_user_asked_for_prints_whole() {
    // `top 20` shows its 20 rows (polars alone would print 10 with `…`).
    let o = rlq(&["-e", &thirty_rows(), "-e", "t | top 20"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let expect: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(printed_rows(&out), expect, "{out}");
    assert!(out.contains("shape: (20, 1)"), "{out}");
    // --rows sets the limit: 5 rows print as head and tail around `…`.
    let o = rlq(&["--rows", "5", "-e", &thirty_rows(), "-e", "t | top 20"]);
    let rows = printed_rows(&stdout(&o));
    assert!(
        rows.len() < 8 && rows.contains(&"…".to_string()),
        "{rows:?}"
    );
    // `:set rows` does the same in the REPL; `all` prints every row.
    let o = piped(&format!(
        "{}\n:set rows 4\nt\n:set rows all\nt\n:set rows\n",
        thirty_rows()
    ));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let tables: Vec<&str> = out.split("shape: (30, 1)").collect();
    assert_eq!(tables.len(), 3, "{out}");
    assert!(printed_rows(tables[1]).len() < 8, "{out}");
    assert_eq!(printed_rows(tables[2]).len(), 30, "{out}");
    assert!(out.contains("rows all"), "{out}");
    let o = rlq(&["--rows", "-1", "-e", "1"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn help_from_the_shell_lists_the_verbs() {
    let o = rlq(&["help"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for verb in ["patch", "generate", "where", "table"] {
        assert!(
            stdout(&o).contains(&format!("  {verb} ")),
            "{verb}: {}",
            stdout(&o)
        );
    }
    let o = rlq(&["help", "patch"]);
    assert!(stdout(&o).contains("usage: patch"), "{}", stdout(&o));
    let o = rlq(&["help", "pach"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("patch"), "{}", stderr(&o));
}

#[test]
fn eval_is_repeatable_in_one_session() {
    let o = rlq(&["-e", "let x = 2", "-e", "x + 1", "-e", "x * 10"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "3\n20\n");
    // The first failure stops the rest, with its exit code.
    let o = rlq(&["-e", "nope", "-e", "1"]);
    assert_ne!(code(&o), 0);
    assert_eq!(stdout(&o), "");
}

#[test]
fn underscore_is_the_last_value_printed() {
    let o = piped("1 + 2\n_ * 10\nlet y = 5\n_ + 1\n:vars\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("3\n30\n31\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["_", "number", "31"]),
        "{out}"
    );
}

#[test]
fn vars_lists_types_and_sizes() {
    let o = piped("let t = {a: [1, 2, 3], b: \"x\"}\nlet xs = [1, 2]\n:vars\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("t ") && l.contains("table 3 × 2")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("xs ") && l.contains("list of 2")),
        "{out}"
    );
}

/// The front-ends import one way: `repl` uses `cli`'s pieces, `cli` never names `repl` (the
/// binary's `main` chooses between them).
#[test]
fn cli_does_not_import_the_repl() {
    for entry in std::fs::read_dir(root().join("src/cli")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("repl::"), "{} uses the repl", path.display());
    }
}

/// Every script under scripts/ resolves (`rlq check`: verbs, keywords, names defined before use,
/// the parameters of function values), so a language change that breaks one is caught without
/// running it (scripts/rl_dynamics.rlq tunes three models).
#[test]
fn every_script_checks() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("scripts")).expect("scripts/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rlq") {
            continue;
        }
        let o = rlq(&["check", path.to_str().expect("utf-8 path")]);
        assert_eq!(code(&o), 0, "{}: {}", path.display(), stderr(&o));
        checked += 1;
    }
    assert!(checked >= 3, "checked {checked} scripts");
}
