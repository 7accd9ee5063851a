//! Session limits. Beyond `--max-sessions` (or `--max-sessions-per-ip`) a
//! client completes its handshake and gets close_notify with a logged
//! reason; out of descriptors, the daemon keeps serving the sessions it has,
//! leaves new connections in the listen backlog, says so once, and serves
//! them as soon as descriptors return.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

const SOON: Duration = Duration::from_secs(5);

fn open_session(daemon: &Daemon, pki: &Pki, backend: &Backend) -> (TlsStream, TcpStream) {
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
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
    let lines = daemon
        .wait_logs(&format!("reason=refused detail=\"{why}\""), nth, SOON)
        .expect("refusal logged");
    let line = &lines[nth - 1];
    assert!(end_field(line, "user").is_none(), "{line}");
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

/// The descriptor limit that leaves exactly `free` descriptor numbers
/// unused (the limit caps numbers, and inherited descriptors leave gaps).
fn limit_leaving(pid: u32, free: usize) -> usize {
    let used: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (1..100_000)
        .find(|&limit| limit - used.iter().filter(|&&fd| fd < limit).count() == free)
        .expect("a limit")
}

/// Sets the daemon's soft and hard descriptor limits (lowering is allowed).
fn set_fd_limit(pid: u32, n: usize) {
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: a valid rlimit to read; no old-limit pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A TLS client whose handshake has not been driven yet.
fn start_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).expect("TCP connect");
    tcp.set_nodelay(true).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    StreamOwned::new(conn, tcp)
}

/// Drives the handshake for at most `timeout`; false if it did not finish
/// (the daemon has not accepted the connection).
fn handshake_within(stream: &mut TlsStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while stream.conn.is_handshaking() {
        if Instant::now() > deadline {
            return false;
        }
        match stream.conn.complete_io(&mut stream.sock) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("handshake: {e}"),
        }
    }
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    true
}

/// One request and reply through the relay.
fn round_trip(client: &mut TlsStream, backend: &mut TcpStream, i: usize) {
    let msg = format!("<rpc message-id=\"{i}\"/>");
    send_all(client, msg.as_bytes());
    let mut got = vec![0u8; msg.len()];
    backend.read_exact(&mut got).expect("backend read");
    assert_eq!(got, msg.as_bytes());
    send_all(backend, b"<ok/>");
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).expect("client read");
    assert_eq!(&reply, b"<ok/>");
}

fn count(daemon: &Daemon, pattern: &str) -> usize {
    daemon
        .log_lines()
        .iter()
        .filter(|l| l.contains(pattern))
        .count()
}

/// The backend closes: the client reads to the close_notify.
fn end_session(daemon: &Daemon, (mut client, backend): (TlsStream, TcpStream)) {
    let local = client.sock.local_addr().unwrap();
    drop(backend);
    let (_, ending) = read_to_end(&mut client);
    assert_eq!(ending, Ending::CloseNotify);
    client.conn.send_close_notify();
    let _ = client.conn.complete_io(&mut client.sock);
    drop(client);
    assert!(daemon.session_end(local, Duration::from_secs(5)).is_some());
}

#[test]
fn out_of_descriptors_keeps_serving_and_says_so_once() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let pid = daemon.child.id();
    // Room for exactly three sessions (client and backend socket each).
    set_fd_limit(pid, limit_leaving(pid, 2 * 3));
    let config = pki.client("admin", Version::Tls13);
    let mut open = Vec::new();
    for _ in 0..3 {
        let client = connect(daemon.addr, config.clone()).expect("connect");
        open.push((client, backend.accept().0));
    }
    let mut waiting = start_tls(daemon.addr, config.clone());
    assert!(
        !handshake_within(&mut waiting, Duration::from_millis(500)),
        "no descriptor left: the fourth waits in the backlog"
    );
    // Accepting is retried every 100 ms meanwhile; the open sessions work.
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        for (client, backend) in open.iter_mut() {
            round_trip(client, backend, i);
        }
    }
    assert_eq!(
        count(&daemon, "cannot accept"),
        1,
        "{:?}",
        daemon.log_lines()
    );

    end_session(&daemon, open.remove(0));
    assert!(
        handshake_within(&mut waiting, Duration::from_secs(5)),
        "served once descriptors came back"
    );
    let mut b = backend.accept().0;
    round_trip(&mut waiting, &mut b, 99);
    for (client, backend) in open.iter_mut() {
        round_trip(client, backend, 100);
    }
}
