//! nctls runs that exit by themselves (`--help`, `--check`, configuration
//! errors): output and status, and the one-line error every bad
//! configuration must give.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// Runs nctls with `args` in `cwd` and waits for it (killed after 10 s, which
/// fails the test: every run here is expected to exit by itself).
pub fn nctls(args: &[&str], cwd: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nctls"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nctls");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "nctls {args:?} still running after {DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("wait")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration error: status 1, nothing on stdout, exactly one line on
/// stderr `nctls: ...` containing every `want`, no panic. Returns the line.
pub fn assert_config_error(args: &[&str], cwd: &Path, want: &[&str]) -> String {
    let out = nctls(args, cwd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let ctx = format!("nctls {args:?}\nstdout: {stdout:?}\nstderr: {stderr:?}");
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    assert!(stdout.is_empty(), "{ctx}");
    assert!(stderr.ends_with('\n'), "{ctx}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {ctx}");
    let line = stderr.trim_end().to_string();
    assert!(line.starts_with("nctls: "), "{ctx}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad}: {ctx}");
    }
    for w in want {
        assert!(line.contains(w), "missing {w:?}: {ctx}");
    }
    line
}

/// The same error from the real start-up and from `--check`.
pub fn assert_config_error_both(args: &[&str], cwd: &Path, want: &[&str]) {
    let run = assert_config_error(args, cwd, want);
    let mut check = vec!["--check"];
    check.extend_from_slice(args);
    let checked = assert_config_error(&check, cwd, want);
    assert_eq!(run, checked, "--check reports differently");
}

/// `nctls --check ARGS` in `cwd`, which must succeed: its stdout.
pub fn check_ok(args: &[&str], cwd: &Path) -> String {
    let mut all = vec!["--check"];
    all.extend_from_slice(args);
    let out = nctls(&all, cwd);
    assert!(out.status.success(), "nctls {all:?}: {out:?}");
    assert!(out.stderr.is_empty(), "nctls {all:?}: {out:?}");
    text(&out.stdout)
}

/// The settings `--check` printed: every line that is not a `#` comment.
pub fn settings(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| !l.starts_with('#')).collect()
}

pub fn args_with<'a>(base: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = base.iter().map(String::as_str).collect();
    v.extend_from_slice(extra);
    v
}
