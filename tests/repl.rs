//! The interactive REPL through a real pseudo-terminal, driven by python3's `pty` module (on every
//! machine; no extra crate). Each step sends keys and waits for text (and, where it says so, for a
//! fresh prompt), so the tests never race the REPL; every wait has a timeout.

use std::path::Path;
use std::process::Command;

/// The pty driver: argv[1] the program, argv[2] JSON steps `[keys, wait_for, then_prompt]`.
const DRIVER: &str = r#"
# exits 1 if a wait times out, else with the program's exit status.
import json, os, pty, re, select, sys, time, fcntl, termios, struct

prog, steps = sys.argv[1], json.loads(sys.argv[2])
timeout = float(os.environ.get("PTY_TIMEOUT", "30"))
pid, fd = pty.fork()
if pid == 0:
    os.execv(prog, [prog])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
ansi = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Z0-9]|[=>])")
seen = ""      # everything, cleaned
def read_some(wait):
    global seen
    r, _, _ = select.select([fd], [], [], wait)
    if not r:
        return False
    try:
        data = os.read(fd, 65536)
    except OSError:
        return None
    if not data:
        return None
    seen += ansi.sub("", data.decode("utf-8", "replace")).replace("\r", "")
    return True

PROMPT = "rlq> "
def wait_for(text, start, idle):
    # With `idle`, also wait until a fresh prompt follows the text: the REPL is ready again.
    def ready():
        at = seen.find(text, start)
        return at >= 0 and (not idle or (seen.endswith(PROMPT) and len(seen) - len(PROMPT) >= at + len(text)))
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline or read_some(0.2) is None:
            return False
    return True

for keys, expect, idle in steps:
    start = len(seen)
    os.write(fd, keys.encode())
    if (expect or idle) and not wait_for(expect, start, idle):
        sys.stdout.write(seen + "\n[driver] timed out waiting for %r after sending %r\n" % (expect, keys))
        os.kill(pid, 9)
        sys.exit(1)
# Drain until the program exits.
deadline = time.time() + timeout
while time.time() < deadline and read_some(0.2) is not None:
    pass
# The pty reports EOF as the program closes it, a moment before the program can be reaped.
done, status = os.waitpid(pid, os.WNOHANG)
while not done and time.time() < deadline:
    time.sleep(0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
if not done:
    os.kill(pid, 9)
    sys.stdout.write(seen + "\n[driver] program did not exit\n")
    sys.exit(1)
sys.stdout.write(seen)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

struct Transcript {
    text: String,
    ok: bool,
}

/// Runs the REPL in `dir` under a pty with its data dir in `data_home`; `None` without python3.
fn drive(dir: &Path, data_home: &Path, steps: &str) -> Option<Transcript> {
    let out = Command::new("python3")
        .args(["-c", DRIVER, env!("CARGO_BIN_EXE_rlq"), steps])
        .current_dir(dir)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", data_home)
        .env("PTY_TIMEOUT", "60")
        .output();
    match out {
        Ok(out) => Some(Transcript {
            text: String::from_utf8_lossy(&out.stdout).into_owned(),
            ok: out.status.success(),
        }),
        Err(e) => {
            eprintln!("skipping: cannot run python3 to drive a pseudo-terminal: {e}");
            None
        }
    }
}

/// One step as JSON: keys to type, text to wait for, whether to wait for the next prompt too.
fn step(keys: &str, wait_for: &str, then_prompt: bool) -> String {
    let quote = |s: &str| {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out + "\""
    };
    format!("[{}, {}, {then_prompt}]", quote(keys), quote(wait_for))
}

fn steps(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

const CTRL_C: &str = "\u{3}";
const CTRL_D: &str = "\u{4}";

#[test]
fn repl_evaluates_continues_lines_completes_and_keeps_history() {
    let data = tempfile::tempdir().expect("tempdir");
    let script = steps(&[
        step("", "rlq> ", false),
        step("let x = 20\r", "", true),
        step("x + 22\r", "42", true),
        // An open bracket continues the statement on a `...> ` line.
        step("[1,\r", "...> ", false),
        step("2]\r", "[1, 2]", true),
        step(":vars\r", "number", true),
        // Tab completes a verb name after `help`.
        step("help perpl\t", "help perplexity", false),
        step("\r", "exp(mean next-token loss)", true),
        // Ctrl-C drops the line being typed; Ctrl-D leaves.
        step("garbage 1 +", "garbage 1 +", false),
        step(CTRL_C, "", true),
        step(CTRL_D, "", false),
    ]);
    let Some(t) = drive(Path::new(env!("CARGO_MANIFEST_DIR")), data.path(), &script) else {
        return;
    };
    assert!(t.ok, "{}", t.text);
    assert!(t.text.contains("rlq> x + 22\n42\n"), "{}", t.text);
    assert!(t.text.contains("\n...> 2]\n[1, 2]\n"), "{}", t.text);
    let vars_line = t
        .text
        .lines()
        .find(|l| l.starts_with("x "))
        .unwrap_or_default();
    assert_eq!(
        vars_line.split_whitespace().collect::<Vec<_>>(),
        ["x", "number", "20"]
    );
    // `_` holds the last value printed.
    assert!(
        t.text
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["_", "list", "of", "2"]),
        "{}",
        t.text
    );
    assert!(!t.text.contains("syntax error"), "{}", t.text);

    let history = std::fs::read_to_string(data.path().join("rlq/history")).expect("history file");
    for entry in ["let x = 20", "x + 22", "help perplexity"] {
        assert!(history.lines().any(|l| l == entry), "{history}");
    }
    assert!(!history.contains("garbage"), "{history}");
}

#[test]
fn repl_survives_errors_and_runs_meta_commands() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.csv"), "a,b\n1,x\n2,y\n3,z\n").expect("csv");
    std::fs::write(dir.path().join("setup.rlq"), "let k = 7\nk * 6\n").expect("script");
    let script = steps(&[
        step("", "rlq> ", false),
        step("1 + missing\r", "unknown variable `missing`", true),
        step("40 + 2\r", "42", true),
        step(":load setup.rlq\r", "42", true),
        step("k\r", "7", true),
        step(":time on\r", "", true),
        step("k + 1\r", "time: ", true),
        step(":time off\r", "", true),
        // Inside a string, Tab completes file names.
        step("read \"da\t", "read \"data.csv", false),
        step("\" | count\r", "3", true),
        step(":help where\r", "usage:", true),
        step(":quit\r", "", false),
    ]);
    let Some(t) = drive(dir.path(), data.path(), &script) else {
        return;
    };
    assert!(t.ok, "{}", t.text);
    assert!(t.text.contains("1 + missing\n"), "{}", t.text);
    assert!(t.text.contains("not defined"), "{}", t.text);
    assert!(t.text.contains("k + 1\n8\ntime: "), "{}", t.text);
    assert!(t.text.contains("| count\n3\n"), "{}", t.text);
}
