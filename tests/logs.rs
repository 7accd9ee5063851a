//! Logs that a program can parse: the session start and end lines are
//! logfmt, read back here by a real logfmt parser (PyPI's logfmtkv, which
//! follows go-logfmt) over hostile certificate names; and where the lines
//! go: stderr, `--log-file` (reopened on SIGUSR1) or `--syslog`.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netconf::target_dir;
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
    let python = target_dir().join("venv/bin/python");
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
    // The client's end reaches the backend first: it sees EOF, then closes.
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
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
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
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
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut second);
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

/// nctls started without a stderr log: killed when dropped.
struct Quiet(std::process::Child);

impl Quiet {
    fn start(mut command: Command) -> Quiet {
        let child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nctls");
        Quiet(child)
    }

    fn signal(&self, sig: &str) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status();
        assert!(status.expect("kill").success());
    }

    /// Whatever the daemon wrote to stderr, once it has exited.
    fn stderr_after_exit(mut self) -> String {
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `probe` every 20 ms until it gives something, for up to 10 s.
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `file` containing `pattern`, once there are `count` of them.
fn file_lines(file: &std::path::Path, pattern: &str, count: usize) -> Option<Vec<String>> {
    eventually(|| {
        let text = std::fs::read_to_string(file).ok()?;
        let found: Vec<String> = text
            .lines()
            .filter(|l| l.contains(pattern))
            .map(String::from)
            .collect();
        (found.len() >= count).then_some(found)
    })
}

/// The listen address in a `listening on [ADDR]` line.
fn listen_addr(line: &str) -> std::net::SocketAddr {
    let start = line.find("listening on [").expect("listening line") + "listening on [".len();
    let end = line[start..].find([',', ']']).unwrap() + start;
    line[start..end].parse().expect("listen address")
}

fn daemon_command(pki: &Pki, backend: &Backend, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nctls"));
    command
        .args(pki.server_args())
        .args(["--listen", "127.0.0.1:0", "--backend", &backend.arg()])
        .args(extra)
        .current_dir(pki.dir.path());
    command
}

/// A session through `addr` that ends with the backend closing.
fn one_session(addr: std::net::SocketAddr, pki: &Pki, backend: &Backend) -> String {
    let mut c = connect(addr, pki.client("admin", Version::Tls13)).unwrap();
    c.write_all(b"ping").unwrap();
    let (mut b, _) = backend.accept();
    // Read before closing: a close with unread data is a reset.
    b.read_exact(&mut [0u8; 4]).unwrap();
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
    local(&c).to_string()
}

#[test]
fn log_file_is_appended_and_reopened_on_sigusr1_for_logrotate() {
    let pki = Pki::new();
    let backend = Backend::new();
    let log = pki.dir.path().join("nctls.log");
    std::fs::write(&log, "an earlier line\n").unwrap();
    let log_arg = log.display().to_string();
    let daemon = Quiet::start(daemon_command(&pki, &backend, &["--log-file", &log_arg]));
    let listening = file_lines(&log, "listening on [", 1).expect("startup logged to the file");
    let addr = listen_addr(&listening[0]);
    let first = one_session(addr, &pki, &backend);
    file_lines(&log, " session end: ", 1).expect("first session logged");

    // logrotate: move the file away, then SIGUSR1.
    let rotated = pki.dir.path().join("nctls.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    daemon.signal("USR1");
    file_lines(&log, "SIGUSR1: reopened the log file", 1).expect("a new file after SIGUSR1");
    let second = one_session(addr, &pki, &backend);
    let ends = file_lines(&log, " session end: ", 1).expect("second session in the new file");
    assert!(ends[0].contains(&format!(" client={second} ")), "{ends:#?}");

    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.starts_with("an earlier line\n"),
        "appended, not truncated"
    );
    assert!(old.contains(&format!(" client={first} ")), "{old}");
    assert!(!old.contains(&format!(" client={second} ")), "{old}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640, "a new log file is not world-readable");
    assert_eq!(daemon.stderr_after_exit(), "", "nothing on stderr");
}

#[test]
fn log_file_that_cannot_be_opened_is_one_error_line() {
    let pki = Pki::new();
    let backend = Backend::new();
    let out = daemon_command(
        &pki,
        &backend,
        &["--log-file", "/nonexistent/dir/nctls.log"],
    )
    .env_remove("RUST_LOG")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("nctls: --log-file /nonexistent/dir/nctls.log: cannot open"),
        "{err}"
    );
}

/// A syslog receiver: the datagram socket `/dev/log` seen by one nctls,
/// which runs in its own mount namespace where `/dev` is a directory of
/// ours (root only; the namespace goes away with the process).
#[test]
fn syslog_lines_arrive_with_facility_and_severity() {
    let pki = Pki::new();
    let backend = Backend::new();
    let dev = TempDir::new();
    let receiver = std::os::unix::net::UnixDatagram::bind(dev.path().join("log")).unwrap();
    receiver.set_read_timeout(Some(SOON)).unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /dev && exec "$@""#)
        .arg(dev.path())
        .arg(env!("CARGO_BIN_EXE_nctls"))
        .args(pki.server_args())
        .args(["--listen", "127.0.0.1:0", "--backend", &backend.arg()])
        .args(["--syslog", "local3"])
        .current_dir(pki.dir.path());
    let daemon = Quiet::start(command);
    let next = || {
        let mut buf = vec![0u8; 65536];
        let n = receiver.recv(&mut buf).expect("a syslog message");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    // Start-up lines (user, sandbox) come first.
    let listening = std::iter::repeat_with(next)
        .find(|m| m.contains("listening on ["))
        .expect("a listening line");
    let addr = listen_addr(&listening);
    // RFC 3164 `<PRI>TAG[PID]: `, PRI = 8 * facility + severity: local3 is
    // 19, so info is <158> and warning <156>. unshare and sh exec, so nctls
    // has the child's process id.
    let info = format!("<158>nctls[{}]: ", daemon.0.id());
    let warning = format!("<156>nctls[{}]: ", daemon.0.id());
    assert!(listening.starts_with(&info), "{listening}");
    let client = one_session(addr, &pki, &backend);
    let mut refused = connect(addr, pki.client("bad\nname", Version::Tls13)).unwrap();
    assert_eq!(read_to_end(&mut refused).1, Ending::CloseNotify);
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut refused);
    let mut messages = Vec::new();
    while messages.len() < 3 {
        let m = next();
        if m.contains(" session ") {
            assert!(!m.contains('\n'), "{m}");
            messages.push(m);
        }
    }
    let expected = [
        format!("{info}session start: session=1 client={client} "),
        format!("{info}session end: session=1 client={client} "),
        format!("{warning}session end: session=2 "),
    ];
    for (m, start) in messages.iter().zip(&expected) {
        assert!(m.starts_with(start), "expected {start:?}: {messages:#?}");
    }
    assert!(messages[2].contains(" reason=refused "), "{messages:#?}");

    // syslogd restarts: a new socket at the same path. The next line finds it.
    drop(receiver);
    std::fs::remove_file(dev.path().join("log")).unwrap();
    let receiver = std::os::unix::net::UnixDatagram::bind(dev.path().join("log")).unwrap();
    receiver.set_read_timeout(Some(SOON)).unwrap();
    let client = one_session(addr, &pki, &backend);
    let mut buf = vec![0u8; 65536];
    let n = receiver
        .recv(&mut buf)
        .expect("a message after the restart");
    let m = String::from_utf8_lossy(&buf[..n]);
    assert!(
        m.starts_with(&format!("{info}session start: session=3 client={client} ")),
        "{m}"
    );
    assert_eq!(daemon.stderr_after_exit(), "", "nothing on stderr");
}

/// Runs nctls with `args` (and the PKI's files) to its exit; its one-line error.
fn startup_error(pki: &Pki, command: &mut Command) -> String {
    let out = command
        .current_dir(pki.dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn log_destination_errors_are_one_line() {
    let pki = Pki::new();
    let nctls = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nctls"));
        c.args(pki.server_args());
        c
    };
    let err = startup_error(&pki, nctls().args(["--syslog", "kitchen"]));
    assert!(err.starts_with("nctls: --syslog: \"kitchen\": expected a syslog facility"));
    let err = startup_error(&pki, nctls().args(["--log-file", "x.log", "--syslog"]));
    assert!(err.starts_with("nctls: --syslog: cannot be combined with log-file"));
    // No syslog daemon: /dev is an empty directory in this mount namespace.
    let empty = TempDir::new();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /dev && exec "$@""#)
        .arg(empty.path())
        .arg(env!("CARGO_BIN_EXE_nctls"))
        .args(pki.server_args())
        .args(["--listen", "127.0.0.1:0", "--syslog"]);
    let err = startup_error(&pki, &mut command);
    assert!(
        err.starts_with("nctls: --syslog: cannot reach the local syslog socket"),
        "{err}"
    );
}
