//! Logs that a program can parse: the session start and end lines are
//! logfmt, read back here by a real logfmt parser (PyPI's logfmtkv, which
//! follows go-logfmt) over hostile certificate names; and where the lines
//! go: stderr, `--log-file` (reopened on SIGUSR1) or `--syslog`.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netconf::root;
use common::*;

const SOON: Duration = Duration::from_secs(5);

/// One log line as the parser read it: its `key=value` pairs in order.
struct Parsed(Vec<(String, String)>);

impl Parsed {
    /// The value of `key` (the last one, as a map-building parser keeps it).
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The virtualenv's Python with logfmtkv, or a failure with a hint.
fn python() -> PathBuf {
    let python = root().join("target/venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import logfmtkv"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with logfmtkv is needed: run `make venv` (.ci/run does)",
        python.display()
    );
    python
}

/// Parses whole log lines with logfmtkv in strict (go-logfmt) mode; a line
/// it rejects fails the test. Values come back hex-encoded, so nothing in
/// them can confuse the way back.
fn parse(lines: &[String]) -> Vec<Parsed> {
    const SCRIPT: &str = "import sys, logfmtkv\n\
        for line in sys.stdin.read().split('\\n')[:-1]:\n\
        \x20   pairs = logfmtkv.parse_pairs(line, strict=True)\n\
        \x20   print(' '.join(p.key + '=' + (p.value or '').encode().hex() for p in pairs))\n";
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut input = lines.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "logfmtkv rejected a line: {}\n{lines:#?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| {
            Parsed(
                l.split(' ')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, hex) = p.split_once('=').unwrap();
                        let bytes: Vec<u8> = (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                            .collect();
                        (k.to_string(), String::from_utf8(bytes).unwrap())
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The daemon's session lines (start and end) of one client, parsed.
fn session_lines(daemon: &Daemon, client: &str, ends: usize) -> (Vec<String>, Vec<Parsed>) {
    daemon
        .wait_logs(" session end: ", ends, SOON)
        .unwrap_or_else(|| panic!("no session end: {:#?}", daemon.log_lines()));
    let lines: Vec<String> = daemon
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(" session start: ") || l.contains(" session end: "))
        .collect();
    let parsed = parse(&lines);
    let mine = parsed
        .into_iter()
        .zip(lines)
        .filter(|(p, _)| p.get("client") == Some(client))
        .map(|(p, l)| (l, p))
        .unzip();
    mine
}

/// A relayed session from `cn`, ended by the client's close_notify.
fn admitted_session(daemon: &Daemon, pki: &Pki, backend: &Backend, cn: &str) -> String {
    let mut c = connect(daemon.addr, pki.client(cn, Version::Tls13)).unwrap();
    c.write_all(b"ping").unwrap();
    let (mut b, header) = backend.accept();
    assert!(header.starts_with(&format!("[{cn};")), "{header}");
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    send_close_notify(&mut c);
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    local(&c).to_string()
}

#[test]
fn hostile_user_name_stays_in_its_field() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let cn = r#"al"ice=1 user=root"#;
    let client = admitted_session(&daemon, &pki, &backend, cn);
    let (raw, lines) = session_lines(&daemon, &client, 1);
    assert_eq!(lines.len(), 2, "one start and one end line: {raw:#?}");
    let (start, end) = (&lines[0], &lines[1]);
    assert!(raw[0].contains(" session start: "), "{raw:#?}");
    for line in [start, end] {
        assert_eq!(line.get("user"), Some(cn), "{raw:#?}");
        assert_eq!(line.get("subject"), Some(&*format!("CN={cn}")), "{raw:#?}");
        assert_eq!(line.get("session"), Some("1"), "{raw:#?}");
        assert!(line.get("sha256").is_some_and(|s| s.len() == 95));
    }
    assert_eq!(start.get("backend"), Some(&*backend.arg()), "{raw:#?}");
    assert_eq!(end.get("reason"), Some("client-close-notify"), "{raw:#?}");
    assert_eq!(end.get("detail"), None, "{raw:#?}");
    assert_eq!(end.get("bytes-in"), Some("4"), "{raw:#?}");
}

#[test]
fn newline_backslash_and_bidi_names_are_escaped_and_read_back_exactly() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);

    // A control character is no user name: refused, its reason in words.
    let cn = "a\nb\\c d";
    let mut c = connect(daemon.addr, pki.client(cn, Version::Tls12)).unwrap();
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    let (raw, lines) = session_lines(&daemon, &local(&c).to_string(), 1);
    assert_eq!(lines.len(), 1, "only an end line: {raw:#?}");
    let end = &lines[0];
    assert!(!raw[0].contains('\n'), "{raw:#?}");
    assert_eq!(end.get("subject"), Some(&*format!("CN={cn}")), "{raw:#?}");
    assert_eq!(end.get("user"), None, "{raw:#?}");
    assert_eq!(end.get("reason"), Some("refused"), "{raw:#?}");
    let detail = end.get("detail").unwrap_or_default();
    assert!(
        detail.contains("unusable name \"a\\nb\\\\c d\""),
        "{detail:?}"
    );

    // Non-ASCII, and a right-to-left override that could make a terminal
    // show the line in another order: escaped, the line stays ASCII.
    let cn = "J\u{fc}rgen \u{202e}toor";
    let client = admitted_session(&daemon, &pki, &backend, cn);
    let (raw, lines) = session_lines(&daemon, &client, 2);
    assert_eq!(lines.len(), 2, "{raw:#?}");
    for (line, text) in lines.iter().zip(&raw) {
        assert!(text.is_ascii(), "{text}");
        assert_eq!(line.get("user"), Some(cn), "{raw:#?}");
        assert_eq!(line.get("session"), Some("2"), "{raw:#?}");
    }
}

#[test]
fn a_refusal_is_a_token_with_its_detail_apart() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--max-sessions-per-ip", "1"],
    );
    let mut first = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    first.write_all(b"ping").unwrap();
    let (_b, _) = backend.accept();
    let mut second = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    assert_eq!(read_to_end(&mut second).1, Ending::CloseNotify);
    let (raw, lines) = session_lines(&daemon, &local(&second).to_string(), 1);
    assert_eq!(lines.len(), 1, "{raw:#?}");
    assert_eq!(lines[0].get("reason"), Some("refused"), "{raw:#?}");
    assert_eq!(
        lines[0].get("detail"),
        Some("max-sessions-per-ip reached"),
        "{raw:#?}"
    );
    assert_eq!(lines[0].get("session"), Some("2"), "{raw:#?}");
}
