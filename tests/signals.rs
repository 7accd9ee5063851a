//! Signals an operator sends by habit never end live sessions: SIGUSR2 lists
//! them, SIGUSR1 reopens the log file (or says there is none), SIGPIPE is
//! ignored; SIGHUP applies every option that can change while running and
//! says what changed and what waits for a restart.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(5);

/// A relaying session: the client wrote "ping", the backend read it.
fn live_session(daemon: &Daemon, pki: &Pki, backend: &Backend) -> (TlsStream, TcpStream) {
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    c.write_all(b"ping").unwrap();
    let (mut b, _) = backend.accept();
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    (c, b)
}

/// Bytes still move both ways, and the backend has seen no end of stream.
fn assert_still_relaying(c: &mut TlsStream, b: &mut TcpStream, label: &str) {
    b.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4];
    match b.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("{label}: the backend saw {other:?} instead of silence"),
    }
    b.set_read_timeout(Some(SOON)).unwrap();
    b.write_all(b"pong").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong", "{label}");
    c.write_all(b"more").unwrap();
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more", "{label}");
}

#[test]
fn usr1_usr2_and_pipe_leave_live_sessions_alone() {
    let pki = Pki::new();
    let backend = Backend::new();
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let (mut c1, mut b1) = live_session(&daemon, &pki, &backend);
    let (mut c2, mut b2) = live_session(&daemon, &pki, &backend);
    let addrs = [local(&c1).to_string(), local(&c2).to_string()];

    daemon.signal("USR2");
    daemon
        .wait_log("live sessions: count=2", SOON)
        .unwrap_or_else(|| panic!("no listing: {:#?}", daemon.log_lines()));
    let listed = daemon
        .wait_logs(" live session: ", 2, SOON)
        .expect("one line per session");
    for (n, (line, addr)) in listed.iter().zip(&addrs).enumerate() {
        assert_eq!(end_field(line, "session"), Some(&*(n + 1).to_string()));
        assert_eq!(end_field(line, "client"), Some(addr.as_str()), "{line}");
        assert_eq!(end_field(line, "user"), Some("admin"), "{line}");
        assert_eq!(end_field(line, "state"), Some("relaying"), "{line}");
        assert_eq!(end_field(line, "bytes-in"), Some("4"), "{line}");
        assert_eq!(end_field(line, "bytes-out"), Some("0"), "{line}");
        assert!(end_field(line, "age").is_some_and(|a| a.ends_with('s')));
    }

    daemon.signal("USR1");
    daemon
        .wait_log("SIGUSR1: no log file to reopen", SOON)
        .unwrap_or_else(|| panic!("SIGUSR1 not acknowledged: {:#?}", daemon.log_lines()));
    daemon.signal("PIPE");

    // A signal is handled in order; one more listing proves the daemon has
    // taken all three and is still serving.
    daemon.signal("USR2");
    daemon
        .wait_logs("live sessions: count=2", 2, SOON)
        .expect("second listing");
    assert!(daemon.child.try_wait().unwrap().is_none(), "nctls exited");
    assert_still_relaying(&mut c1, &mut b1, "first");
    assert_still_relaying(&mut c2, &mut b2, "second");
    assert!(
        !daemon
            .log_lines()
            .iter()
            .any(|l| l.contains("session end:")),
        "{:#?}",
        daemon.log_lines()
    );
    drop(b1);
    assert_eq!(read_to_end(&mut c1).1, Ending::CloseNotify);
}

#[test]
fn sighup_applies_the_log_level_and_says_what_changed() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    let base = format!("{}backend = {}\n", server_files(&pki), backend.arg());
    std::fs::write(&conf, format!("{base}listen = 127.0.0.1:0\n")).unwrap();
    let daemon = Daemon::spawn_with(
        &["--config".to_string(), conf.clone()],
        pki.dir.path(),
        |cmd| {
            cmd.env_remove("RUST_LOG");
        },
    );
    let (mut c, b) = live_session(&daemon, &pki, &backend);
    assert!(
        !daemon.log_lines().iter().any(|l| l.contains(" DEBUG: ")),
        "debug lines at the default level: {:#?}",
        daemon.log_lines()
    );

    std::fs::write(
        &conf,
        format!("{base}listen = 127.0.0.2:0\nlog-level = debug\nmax-record = 1024\n"),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_log("reload: done", SOON).expect("reloaded");
    let lines = daemon.log_lines();
    let has = |text: &str| lines.iter().any(|l| l.contains(text));
    assert!(
        has("reload: changed: max-record 4096 -> 1024"),
        "{lines:#?}"
    );
    assert!(
        has("reload: changed: log-level info -> debug"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(" WARN: ")
            && l.contains("reload: listen 127.0.0.1:0 -> 127.0.0.2:0 needs a restart")),
        "{lines:#?}"
    );
    // The new level is in force: a new client shows up at debug level.
    let (_c2, _b2) = live_session(&daemon, &pki, &backend);
    daemon
        .wait_log(" DEBUG: ", SOON)
        .unwrap_or_else(|| panic!("no debug line after the reload: {:#?}", daemon.log_lines()));
    // Still listening where it was, the live session untouched.
    assert!(connect(daemon.addr, pki.client("admin", Version::Tls13)).is_ok());
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
}

#[test]
fn rust_log_still_decides_the_level_over_a_reload() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    let base = format!("backend = {}\n", backend.arg());
    std::fs::write(&conf, &base).unwrap();
    // Daemon::start sets RUST_LOG=info.
    let daemon = Daemon::start(&pki, &["--config", &conf]);
    std::fs::write(&conf, format!("{base}log-level = debug\n")).unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log(
            "reload: changed: log-level info -> debug (RUST_LOG is set",
            SOON,
        )
        .unwrap_or_else(|| panic!("{:#?}", daemon.log_lines()));
    let (_c, _b) = live_session(&daemon, &pki, &backend);
    daemon
        .wait_log("session start:", SOON)
        .expect("session started");
    assert!(
        !daemon.log_lines().iter().any(|l| l.contains(" DEBUG: ")),
        "{:#?}",
        daemon.log_lines()
    );
}

/// The config-file lines naming this PKI's server files.
fn server_files(pki: &Pki) -> String {
    format!(
        "cert = {}\nkey = {}\nca = {}\n",
        pki.file("x509-server.pem"),
        pki.file("x509-server-key.pem"),
        pki.file("x509-ca.pem")
    )
}
