//! Session limits: beyond `--max-sessions` (or `--max-sessions-per-ip`) a
//! client completes its handshake and gets close_notify with a logged
//! reason; service resumes when sessions end.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(5);

fn open_session(daemon: &Daemon, pki: &Pki, backend: &Backend) -> (TlsStream, std::net::TcpStream) {
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    c.write_all(b"ping").unwrap();
    let (mut b, _) = backend.accept();
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    (c, b)
}

fn assert_refused(daemon: &Daemon, pki: &Pki, why: &str, nth: usize) {
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let (data, ending) = read_to_end(&mut c);
    assert!(data.is_empty());
    assert_eq!(ending, Ending::CloseNotify);
    let lines = daemon
        .wait_logs(&format!("reason=refused: {why}"), nth, SOON)
        .expect("refusal logged");
    assert!(lines[nth - 1].contains("user=-"), "{}", lines[nth - 1]);
}

#[test]
fn beyond_max_sessions_clients_get_close_notify_then_service_resumes() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--max-sessions", "2"]);
    let first = open_session(&daemon, &pki, &backend);
    let _second = open_session(&daemon, &pki, &backend);
    for nth in 1..=3 {
        assert_refused(&daemon, &pki, "max-sessions reached", nth);
    }
    assert_eq!(
        backend.pending_accepts(),
        0,
        "refused sessions never reach the backend"
    );
    let (mut c, b) = first;
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    send_close_notify(&mut c);
    daemon
        .wait_logs("reason=backend-closed", 1, SOON)
        .expect("first ended");
    let _third = open_session(&daemon, &pki, &backend);
}

#[test]
fn per_address_limit() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--max-sessions-per-ip", "1"],
    );
    let (mut c, b) = open_session(&daemon, &pki, &backend);
    assert_refused(&daemon, &pki, "max-sessions-per-ip reached", 1);
    drop(b);
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    send_close_notify(&mut c);
    daemon
        .wait_logs("reason=backend-closed", 1, SOON)
        .expect("first ended");
    let _again = open_session(&daemon, &pki, &backend);
}
