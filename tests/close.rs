//! The close-semantics table, row by row, against the real binary, for TLS
//! 1.3 and TLS 1.2. Test names follow the README's rows; the tests after the
//! rows cover what every row relies on (binary safety, many sessions, the
//! backend header, the idle timeout, record sizes).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::*;

/// A NETCONF 1.0 RPC, as a client would send it.
const RPC: &[u8] =
    b"<rpc message-id=\"1\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><get/></rpc>]]>]]>";

/// How long to wait for anything that should happen at once.
const SOON: Duration = Duration::from_secs(5);

/// The spec's bound for "promptly" on loopback (rows 1 and 3).
const PROMPT: Duration = Duration::from_millis(100);

fn accept(backend: &Backend) -> (TcpStream, String) {
    backend
        .accept_within(Duration::from_secs(10))
        .expect("the daemon did not connect to the backend")
}

fn assert_between(what: &str, took: Duration, min: Duration, max: Duration) {
    assert!(
        took >= min && took <= max,
        "{what}: took {took:?}, expected {min:?}..{max:?}"
    );
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------
// Row 1: the backend closes first.

/// Row 1: the backend closes first (ConfD after kill-session): every byte
/// arrives, then close_notify, promptly; the client's own close_notify is
/// then taken and the TCP connection ends with a FIN, not a reset.
#[test]
fn row1_backend_close_delivers_everything_then_close_notify() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    for version in BOTH {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        client.write_all(b"<hello/>").unwrap();
        let (mut b, header) = accept(&backend);
        assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
        // Read what the client sent: closing with unread input would be a RST.
        let mut hello = [0u8; 8];
        b.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"<hello/>");
        let payload = random_bytes(300 * 1024, 1);
        b.write_all(&payload).unwrap();
        let closed_at = Instant::now();
        drop(b);
        let (data, ending) = read_to_end(&mut client);
        let latency = closed_at.elapsed();
        eprintln!("row1 {version:?}: backend close -> client close_notify after {latency:?} (300 KiB pending)");
        assert_eq!(ending, Ending::CloseNotify, "{version:?}");
        assert_eq!(data.len(), payload.len(), "{version:?}");
        assert!(data == payload, "{version:?}: bytes differ");
        assert!(latency < PROMPT, "{version:?}: {latency:?}");

        // The daemon still takes our close_notify, then ends with a FIN.
        let addr = local(&client);
        client.conn.send_close_notify();
        let sent = client.conn.complete_io(&mut client.sock);
        assert!(sent.is_ok(), "{version:?}: our close_notify: {sent:?}");
        let answered = Instant::now();
        let mut rest = [0u8; 64];
        let tcp = client.sock.read(&mut rest);
        assert!(
            matches!(tcp, Ok(0)),
            "{version:?}: after both close_notify the TCP stream should end with FIN: {tcp:?}"
        );
        let line = end_line(&daemon, addr);
        let ended = answered.elapsed();
        assert!(
            ended < Duration::from_secs(1),
            "{version:?}: session ended {ended:?} after our close_notify (drain is 10 s)"
        );
        assert_reason(&line, "backend-closed");
        assert!(
            line.contains(" INFO: "),
            "a clean end is not a warning: {line}"
        );
        assert_eq!(end_field(&line, "bytes-in"), Some("8"), "{line}");
        assert_eq!(end_field(&line, "bytes-out"), Some("307200"), "{line}");
        let tls = if version == Version::Tls13 {
            "TLSv1_3/"
        } else {
            "TLSv1_2/"
        };
        assert!(end_field(&line, "tls").unwrap().starts_with(tls), "{line}");
        assert_eq!(end_field(&line, "user"), Some("admin"), "{line}");
        assert!(line.contains("subject=\"CN=admin\""), "{line}");
    }
}

/// Row 1, the client's side of the ending: answering our close_notify with a
/// bare TCP FIN ends the session at once (as cleanly as a close_notify:
/// many clients just close); a client that never answers is dropped after
/// `--drain-timeout`.
#[test]
fn row1_client_answering_with_fin_or_not_at_all() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--drain-timeout", "0.5"],
    );
    for version in BOTH {
        for answer in [true, false] {
            let label = format!("{version:?} answer with FIN: {answer}");
            let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
            let (b, _) = accept(&backend);
            let closed = Instant::now();
            drop(b);
            let (data, ending) = read_to_end(&mut client);
            let latency = closed.elapsed();
            assert!(data.is_empty() && ending == Ending::CloseNotify, "{label}");
            assert!(latency < PROMPT, "{label}: {latency:?}");
            if answer {
                eprintln!("row1 {version:?}: backend close -> client close_notify after {latency:?} (nothing pending)");
            }
            let t = Instant::now();
            if answer {
                client.sock.shutdown(Shutdown::Write).unwrap();
            }
            let line = end_line(&daemon, local(&client));
            let took = t.elapsed();
            eprintln!("row1 {label}: session ended {took:?} later");
            if answer {
                assert!(took < Duration::from_secs(1), "{label}: {took:?}");
            } else {
                assert_between(&label, took, secs(0.3), secs(3.0));
            }
            assert_reason(&line, "backend-closed");
            assert!(line.contains(" INFO: "), "{label}: {line}");
            let mut rest = [0u8; 16];
            let tcp = client.sock.read(&mut rest);
            assert!(matches!(tcp, Ok(0)), "{label}: TCP ends with FIN: {tcp:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Row 2: the client sends close_notify.

/// Client sends an RPC and close_notify; the backend sees the RPC, then EOF,
/// then answers 200 KiB and closes: all of it must reach the client, then
/// close_notify.
fn half_close(version: Version, extra: &[&str]) {
    let pki = Pki::new();
    let backend = Backend::new();
    let addr = backend.arg();
    let mut args = vec!["--backend", &*addr];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&pki, &args);
    let label = format!("{version:?} {extra:?}");

    let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
    client.write_all(RPC).unwrap();
    send_close_notify(&mut client);
    let asked = Instant::now();
    let (mut b, _) = accept(&backend);
    let (got, eof) = read_plain_to_end(&mut b);
    let took = asked.elapsed();
    assert!(eof, "{label}: backend should see EOF, not a reset");
    assert_eq!(got, RPC, "{label}: backend got every RPC byte before EOF");
    // At once, not when some deadline (drain: 10 s) ends the session.
    assert!(
        took < Duration::from_secs(1),
        "{label}: backend EOF after {took:?}"
    );

    let reply = random_bytes(200 * 1024, 2);
    let sent = reply.clone();
    let writer = thread::spawn(move || {
        b.write_all(&sent)
            .expect("backend socket still writable after EOF");
        let closed = Instant::now();
        drop(b);
        closed
    });
    let (data, ending) = read_to_end(&mut client);
    let closed = writer.join().unwrap();
    eprintln!(
        "row2 {label}: backend close -> client close_notify after {:?}",
        closed.elapsed()
    );
    assert_eq!(ending, Ending::CloseNotify, "{label}");
    assert_eq!(data.len(), reply.len(), "{label}");
    assert!(data == reply, "{label}: bytes differ");
    assert!(closed.elapsed() < Duration::from_secs(1), "{label}");

    let line = end_line(&daemon, local(&client));
    assert_reason(&line, "client-close-notify");
    assert_eq!(end_field(&line, "bytes-in"), Some(&*RPC.len().to_string()));
    assert_eq!(end_field(&line, "bytes-out"), Some("204800"), "{line}");
}

#[test]
fn row2_tls13_client_close_notify_half_closes() {
    half_close(Version::Tls13, &[]);
}

#[test]
fn row2_tls13_ignores_the_tls12_policy() {
    half_close(Version::Tls13, &["--tls12-close", "strict"]);
}

#[test]
fn row2_tls12_half_close_policy_relays_the_rest() {
    half_close(Version::Tls12, &["--tls12-close", "half-close"]);
}

/// TLS 1.2 default (`strict`, RFC 5246 §7.2.1): close_notify is answered at
/// once; what the backend writes after its EOF never reaches the client.
#[test]
fn row2_tls12_strict_answers_close_notify_at_once() {
    for extra in [&[][..], &["--tls12-close", "strict"][..]] {
        let pki = Pki::new();
        let backend = Backend::new();
        let addr = backend.arg();
        let mut args = vec!["--backend", &*addr];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&pki, &args);

        let (release, hold) = mpsc::channel::<()>();
        let backend_side = thread::scope(|s| {
            let backend = &backend;
            let be = s.spawn(move || {
                let (mut b, _) = accept(backend);
                let (got, eof) = read_plain_to_end(&mut b);
                // The socket is still ours: a late reply the client must not see.
                let late = b.write_all(&random_bytes(200 * 1024, 3));
                let _ = hold.recv_timeout(Duration::from_secs(10));
                (got, eof, late.is_ok())
            });
            let mut client = connect(daemon.addr, pki.client("admin", Version::Tls12)).unwrap();
            client.write_all(RPC).unwrap();
            send_close_notify(&mut client);
            let asked = Instant::now();
            let (data, ending) = read_to_end(&mut client);
            let took = asked.elapsed();
            release.send(()).unwrap();
            eprintln!("row2 TLS 1.2 strict {extra:?}: close_notify answered after {took:?}");
            assert_eq!(ending, Ending::CloseNotify, "{extra:?}");
            assert!(data.is_empty(), "{extra:?}: got {} late bytes", data.len());
            assert!(took < Duration::from_millis(500), "{extra:?}: {took:?}");
            let line = end_line(&daemon, local(&client));
            assert_reason(&line, "client-close-notify");
            assert_eq!(end_field(&line, "bytes-out"), Some("0"), "{line}");
            be.join().unwrap()
        });
        let (got, eof, _) = backend_side;
        assert!(eof, "{extra:?}: backend should see EOF");
        assert_eq!(got, RPC, "{extra:?}");
    }
}

/// A backend that never closes after the client's close_notify: it sends
/// five bytes, then nothing. Returns the client's address and how long the
/// client waited for close_notify after sending its own.
fn drain_expires(
    daemon: &Daemon,
    backend: &Backend,
    config: Arc<ClientConfig>,
) -> (SocketAddr, Duration) {
    let (release, hold) = mpsc::channel::<()>();
    thread::scope(|s| {
        let be = s.spawn(move || {
            let (mut b, _) = accept(backend);
            let (got, eof) = read_plain_to_end(&mut b);
            b.write_all(b"<rpc-").unwrap();
            // Never closes until the test is over.
            let _ = hold.recv_timeout(Duration::from_secs(10));
            (got, eof)
        });
        let mut client = connect(daemon.addr, config).unwrap();
        client.write_all(RPC).unwrap();
        send_close_notify(&mut client);
        let asked = Instant::now();
        let (data, ending) = read_to_end(&mut client);
        let took = asked.elapsed();
        release.send(()).unwrap();
        assert_eq!(ending, Ending::CloseNotify);
        assert_eq!(data, b"<rpc-");
        let (got, eof) = be.join().unwrap();
        assert!(eof && got == RPC, "backend: RPC then EOF");
        (local(&client), took)
    })
}

/// A daemon that half-closes for `version` (TLS 1.2 by `--tls12-close
/// half-close`) with a 0.5 s drain timeout, and its backend.
fn half_closing_daemon(version: Version) -> (Pki, Backend, Daemon) {
    let pki = Pki::new();
    let backend = Backend::new();
    let addr = backend.arg();
    let mut args = vec!["--backend", &*addr, "--drain-timeout", "0.5"];
    if version == Version::Tls12 {
        args.extend(["--tls12-close", "half-close"]);
    }
    let daemon = Daemon::start(&pki, &args);
    (pki, backend, daemon)
}

/// The drain deadline: a backend that never closes after the client's
/// close_notify gets `--drain-timeout`, then the client gets close_notify.
#[test]
fn row2_drain_timeout_ends_a_backend_that_never_closes() {
    for version in BOTH {
        let (pki, backend, daemon) = half_closing_daemon(version);
        let (client, took) = drain_expires(&daemon, &backend, pki.client("admin", version));
        eprintln!("row2 drain {version:?}: close_notify after {took:?} (drain 0.5 s)");
        assert_between("drain", took, secs(0.3), secs(3.0));
        let line = end_line(&daemon, client);
        assert_eq!(end_field(&line, "bytes-out"), Some("5"), "{line}");
    }
}

/// The drain expiry is logged as such (a timeout is an error end), not as
/// the client's clean close_notify that started the drain.
#[test]
fn row2_drain_timeout_is_logged_as_a_timeout() {
    for version in BOTH {
        let pki = Pki::new();
        let backend = Backend::new();
        let addr = backend.arg();
        let args = [
            "--backend",
            &*addr,
            "--drain-timeout",
            "0.5",
            "--tls12-close",
            "half-close",
        ];
        let daemon = Daemon::start(&pki, &args);
        let (client, _) = drain_expires(&daemon, &backend, pki.client("admin", version));
        let line = end_line(&daemon, client);
        assert_reason(&line, "drain-timeout");
        assert!(
            line.contains(" WARN: "),
            "a timeout is an error end: {line}"
        );
    }
}

/// The drain deadline restarts whenever data moves: a backend trickling a
/// byte every 200 ms for 1.5 s under `--drain-timeout 0.5` gets everything
/// through, then its close is answered with close_notify.
#[test]
fn row2_drain_deadline_extends_while_data_flows() {
    for version in BOTH {
        let (pki, backend, daemon) = half_closing_daemon(version);
        thread::scope(|s| {
            let be = s.spawn(|| {
                let (mut b, _) = accept(&backend);
                let (got, eof) = read_plain_to_end(&mut b);
                for i in 0..8u8 {
                    b.write_all(&[b'0' + i]).unwrap();
                    thread::sleep(Duration::from_millis(200));
                }
                (got, eof)
            });
            let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
            client.write_all(RPC).unwrap();
            send_close_notify(&mut client);
            let asked = Instant::now();
            let (data, ending) = read_to_end(&mut client);
            let took = asked.elapsed();
            assert_eq!(data, b"01234567", "{version:?} after {took:?}");
            assert_eq!(ending, Ending::CloseNotify, "{version:?}");
            assert!(took >= secs(1.4), "{version:?}: {took:?}");
            let (got, eof) = be.join().unwrap();
            assert!(eof && got == RPC, "{version:?}");
            let line = end_line(&daemon, local(&client));
            assert_reason(&line, "client-close-notify");
        });
    }
}

// ---------------------------------------------------------------------------
// Row 3: the client disappears without close_notify.

#[derive(Clone, Copy, Debug)]
enum Vanish {
    /// TCP FIN without a TLS close_notify.
    Fin,
    /// TCP RST (SO_LINGER 0, then close).
    Rst,
    /// TCP RST the way Linux makes one by itself: closing with unread input.
    RstUnread,
    /// Bytes that are not a TLS record.
    Garbage,
}

fn vanish(how: Vanish, expected: &str) {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    for version in BOTH {
        let label = format!("{how:?} {version:?}");
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        client.write_all(RPC).unwrap();
        let (mut b, _) = accept(&backend);
        let mut got = vec![0u8; RPC.len()];
        b.read_exact(&mut got).unwrap();
        let addr = local(&client);
        let mut kept = None;
        let gone = match how {
            Vanish::Fin => {
                let t = Instant::now();
                client.sock.shutdown(Shutdown::Write).unwrap();
                kept = Some(client);
                t
            }
            Vanish::Rst => {
                set_linger_zero(&client.sock);
                let t = Instant::now();
                drop(client);
                t
            }
            Vanish::RstUnread => {
                b.write_all(b"<rpc-reply/>").unwrap();
                assert!(wait_readable(client.sock.as_raw_fd(), SOON), "{label}");
                let t = Instant::now();
                drop(client);
                t
            }
            Vanish::Garbage => {
                let t = Instant::now();
                client
                    .sock
                    .write_all(b"this is not a TLS record\r\n")
                    .unwrap();
                kept = Some(client);
                t
            }
        };
        let mut buf = [0u8; 64];
        let seen = b.read(&mut buf);
        let latency = gone.elapsed();
        eprintln!("row3 {label}: backend saw {seen:?} after {latency:?}");
        assert!(
            matches!(&seen, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{label}: a truncated session must reach the backend as a reset, got {seen:?}"
        );
        assert!(latency < PROMPT, "{label}: {latency:?}");
        let line = end_line(&daemon, addr);
        assert_reason(&line, expected);
        assert!(line.contains(" WARN: "), "{label}: abnormal end: {line}");
        if let Some(mut client) = kept {
            // Not part of the contract; shown for the report.
            let mut raw = Vec::new();
            let end = client.sock.read_to_end(&mut raw);
            eprintln!(
                "row3 {label}: client then read {} raw bytes {:02x?}, then {end:?}",
                raw.len(),
                &raw[..raw.len().min(8)]
            );
        }
    }
}

#[test]
fn row3_client_fin_without_close_notify_resets_backend() {
    vanish(Vanish::Fin, "client-eof");
}

#[test]
fn row3_client_rst_resets_backend() {
    vanish(Vanish::Rst, "client-reset");
}

#[test]
fn row3_client_rst_with_unread_data_resets_backend() {
    vanish(Vanish::RstUnread, "client-reset");
}

#[test]
fn row3_client_tls_garbage_resets_backend() {
    vanish(Vanish::Garbage, "tls-error");
}

// ---------------------------------------------------------------------------
// Row 4: the backend cannot be reached.

/// Connection refused: close_notify at once, and the daemon keeps serving.
#[test]
fn row4_backend_refused_gets_close_notify_and_daemon_keeps_serving() {
    let pki = Pki::new();
    let dead = Backend::new();
    let addr = dead.arg();
    drop(dead);
    let daemon = Daemon::start(&pki, &["--backend", &addr]);
    for version in BOTH {
        for attempt in 0..2 {
            let label = format!("{version:?} attempt {attempt}");
            let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
            if attempt == 0 {
                // A NETCONF client sends its hello at once.
                client.write_all(RPC).unwrap();
            }
            let t = Instant::now();
            let (data, ending) = read_to_end(&mut client);
            let took = t.elapsed();
            assert_eq!(ending, Ending::CloseNotify, "{label}");
            assert!(data.is_empty(), "{label}");
            assert!(took < Duration::from_secs(1), "{label}: {took:?}");
            // Answer it, as TLS clients do: nctls waits for that (or a FIN).
            send_close_notify(&mut client);
            let line = end_line(&daemon, local(&client));
            assert_reason(&line, "backend-unreachable");
            assert!(line.contains(" WARN: "), "{line}");
        }
    }
    assert_eq!(
        daemon
            .wait_logs("backend-unreachable", 4, SOON)
            .map(|v| v.len()),
        Some(4)
    );
}

/// A loopback backend that never answers a SYN: a listener with backlog 0
/// whose one-entry accept queue is already full makes Linux drop new SYNs.
/// Returns `None` if this kernel does not behave that way (the test then fails).
fn silent_backend() -> Option<(TcpListener, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen() on a socket we own, changing only its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    // Give the handshake's last ACK time to put the filler in the queue.
    thread::sleep(Duration::from_millis(20));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        Err(e) if e.kind() == ErrorKind::TimedOut => Some((listener, filler)),
        _ => None,
    }
}

/// Connect timeout: close_notify after `--connect-timeout`, then the daemon
/// keeps serving.
#[test]
fn row4_backend_connect_timeout_gets_close_notify() {
    let (silent, _filler) =
        silent_backend().expect("cannot make a loopback listener that ignores SYNs on this kernel");
    let pki = Pki::new();
    let addr = silent.local_addr().unwrap().to_string();
    let daemon = Daemon::start(&pki, &["--backend", &addr, "--connect-timeout", "0.5"]);
    for version in BOTH {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let t = Instant::now();
        let (data, ending) = read_to_end(&mut client);
        let took = t.elapsed();
        eprintln!("row4 connect timeout {version:?}: close_notify after {took:?}");
        assert_eq!(ending, Ending::CloseNotify, "{version:?}");
        assert!(data.is_empty());
        assert_between("connect timeout", took, secs(0.3), secs(3.0));
        send_close_notify(&mut client);
        let line = end_line(&daemon, local(&client));
        assert_reason(&line, "connect-timeout");
    }
}

// ---------------------------------------------------------------------------
// Row 5: the handshake fails.

fn no_cert_config(pki: &Pki, version: Version) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca.der().to_vec()))
        .unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The handshake (or, in TLS 1.3, the first read) must fail with an alert
/// containing `alert`; the log says handshake-failed; no backend connection.
fn refused_handshake(daemon: &Daemon, backend: &Backend, config: Arc<ClientConfig>, alert: &str) {
    let (mut client, handshake) = try_connect(daemon.addr, config);
    let addr = local(&client);
    let outcome = match handshake {
        Err(e) => format!("handshake error: {e}"),
        Ok(()) => {
            let (data, ending) = read_to_end(&mut client);
            assert!(data.is_empty(), "{alert}: got data");
            format!("read: {ending:?}")
        }
    };
    eprintln!("row5 {alert}: {outcome}");
    assert!(outcome.contains(alert), "expected alert {alert}: {outcome}");
    let line = end_line(daemon, addr);
    assert_reason(&line, "handshake-failed");
    assert!(line.contains(" WARN: "), "{line}");
    assert_eq!(
        backend.pending_accepts(),
        0,
        "the backend must never be contacted"
    );
}

#[test]
fn row5_handshake_failures_never_reach_the_backend() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let other = common::pki::Ca::new("other");
    let foreign = other.client("admin");
    let expired = pki.ca.expired_client("admin");
    for version in BOTH {
        refused_handshake(
            &daemon,
            &backend,
            no_cert_config(&pki, version),
            "CertificateRequired",
        );
        refused_handshake(
            &daemon,
            &backend,
            client_config(&pki.ca, &foreign, version),
            "UnknownCA",
        );
        refused_handshake(
            &daemon,
            &backend,
            client_config(&pki.ca, &expired, version),
            "CertificateExpired",
        );
    }
    // And a client that does not speak TLS at all.
    let mut tcp = TcpStream::connect(daemon.addr).unwrap();
    tcp.set_read_timeout(Some(SOON)).unwrap();
    tcp.write_all(b"<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"/>]]>]]>")
        .unwrap();
    let mut raw = Vec::new();
    let end = tcp.read_to_end(&mut raw);
    eprintln!("row5 not TLS: read {raw:02x?} then {end:?}");
    assert!(
        raw.first() == Some(&0x15),
        "expected a TLS alert record, got {raw:02x?}"
    );
    assert!(
        end.is_ok() || matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{end:?}"
    );
    let line = end_line(&daemon, tcp.local_addr().unwrap());
    assert_reason(&line, "handshake-failed");
    assert_eq!(backend.pending_accepts(), 0);
}

// ---------------------------------------------------------------------------
// Row 6: the handshake timeout.

#[test]
fn row6_handshake_timeout_drops_silent_clients_and_serves_others() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--handshake-timeout", "0.5"],
    );
    let started = Instant::now();
    let silent = TcpStream::connect(daemon.addr).unwrap();
    // A record header promising a ClientHello that never comes.
    let mut partial = TcpStream::connect(daemon.addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01])
        .unwrap();

    // Meanwhile, full sessions go through.
    for version in BOTH {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        client.write_all(RPC).unwrap();
        let (mut b, _) = accept(&backend);
        let mut got = vec![0u8; RPC.len()];
        b.read_exact(&mut got).unwrap();
        b.write_all(b"<ok/>").unwrap();
        let mut ok = [0u8; 5];
        client.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"<ok/>");
        drop(b);
        assert_eq!(read_to_end(&mut client).1, Ending::CloseNotify);
    }
    assert!(
        !daemon
            .log_lines()
            .iter()
            .any(|l| l.contains("handshake-timeout")),
        "the other sessions should have been served while the stalled ones waited ({:?})",
        started.elapsed()
    );

    for (name, mut s) in [("silent", silent), ("partial", partial)] {
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        let took = started.elapsed();
        eprintln!("row6 {name}: {r:?} after {took:?}");
        assert!(
            matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{name}: {r:?}"
        );
        assert_between(name, took, secs(0.3), secs(3.0));
        let line = end_line(&daemon, s.local_addr().unwrap());
        assert_reason(&line, "handshake-timeout");
    }
}

// ---------------------------------------------------------------------------
// Row 7: SIGTERM / SIGINT.

fn stop_on_signal(sig: &str) {
    let pki = Pki::new();
    let backend = Backend::new();
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--drain-timeout", "2"]);
    let mut live = Vec::new();
    for (i, version) in [Version::Tls13, Version::Tls12, Version::Tls13]
        .into_iter()
        .enumerate()
    {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let rpc = format!("<rpc message-id=\"{i}\"/>");
        client.write_all(rpc.as_bytes()).unwrap();
        let (mut b, _) = accept(&backend);
        let mut got = vec![0u8; rpc.len()];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, rpc.as_bytes());
        b.write_all(b"<ok/>").unwrap();
        let mut ok = [0u8; 5];
        client.read_exact(&mut ok).unwrap();
        live.push((client, b));
    }
    // A fourth client reads nothing while its backend fills every buffer:
    // its close_notify cannot be flushed, which keeps the daemon running
    // (up to the drain timeout) after the signal, long enough to show that
    // it no longer accepts.
    let stuck = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let (mut flood, _) = accept(&backend);
    flood
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![0x55u8; 64 * 1024];
    let mut flooded = 0;
    while let Ok(n) = flood.write(&chunk) {
        flooded += n;
    }
    eprintln!("row7 {sig}: stuck client holds {flooded} bytes in buffers");

    let signalled = Instant::now();
    daemon.signal(sig);
    daemon
        .wait_log("stopping: ending", SOON)
        .expect("daemon logs that it stops");
    let refused = TcpStream::connect(daemon.addr);
    let running = daemon.child.try_wait().unwrap().is_none();
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "{sig}: new connection after the signal: {refused:?}"
    );
    assert!(
        running,
        "{sig}: the daemon should still be draining the stuck session"
    );

    for (i, (mut client, mut b)) in live.into_iter().enumerate() {
        let (data, ending) = read_to_end(&mut client);
        assert_eq!(ending, Ending::CloseNotify, "{sig} session {i}");
        assert!(data.is_empty(), "{sig} session {i}");
        let (rest, eof) = read_plain_to_end(&mut b);
        assert!(eof && rest.is_empty(), "{sig} session {i}: backend EOF");
        let line = end_line(&daemon, local(&client));
        assert_reason(&line, "shutdown");
    }
    let status = daemon
        .wait_exit(Duration::from_secs(5).saturating_sub(signalled.elapsed()))
        .unwrap_or_else(|| panic!("{sig}: still running after 5 s"));
    eprintln!(
        "row7 {sig}: exited {status} after {:?}",
        signalled.elapsed()
    );
    assert!(status.success(), "{sig}: {status}");
    drop(stuck);
}

#[test]
fn row7_sigterm_closes_every_session_and_exits_0() {
    stop_on_signal("TERM");
}

#[test]
fn row7_sigint_closes_every_session_and_exits_0() {
    stop_on_signal("INT");
}

// ---------------------------------------------------------------------------
// What every row relies on.

/// 4 MiB of random bytes (NULs included) each way at the same time, exact.
#[test]
fn binary_safe_4mib_each_way_concurrently() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    for (v, version) in BOTH.into_iter().enumerate() {
        let up = random_bytes(4 << 20, 10 + v as u64);
        let down = random_bytes(4 << 20, 20 + v as u64);
        assert!(up.contains(&0) && down.contains(&0));
        let client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let addr = local(&client);
        let (mut client, got_down, b, got_up) = thread::scope(|s| {
            let be = s.spawn(|| {
                let (mut b, _) = accept(&backend);
                let mut w = b.try_clone().unwrap();
                w.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let down = &down;
                let writer = s.spawn(move || w.write_all(down).unwrap());
                let mut got = vec![0u8; up.len()];
                b.read_exact(&mut got).unwrap();
                writer.join().unwrap();
                (b, got)
            });
            let (client, got_down) = duplex(client, &up, down.len());
            let (b, got_up) = be.join().unwrap();
            (client, got_down, b, got_up)
        });
        assert!(got_up == up, "{version:?}: client -> backend differs");
        assert!(got_down == down, "{version:?}: backend -> client differs");
        b.shutdown(Shutdown::Both).unwrap();
        drop(b);
        let (rest, ending) = read_to_end(&mut client);
        assert!(rest.is_empty());
        assert_eq!(ending, Ending::CloseNotify);
        send_close_notify(&mut client);
        let line = end_line(&daemon, addr);
        assert_eq!(end_field(&line, "bytes-in"), Some("4194304"), "{line}");
        assert_eq!(end_field(&line, "bytes-out"), Some("4194304"), "{line}");
        assert_reason(&line, "backend-closed");
    }
}

/// 50 sessions at once through one daemon, each a 64 KiB echo, then a clean
/// client close.
#[test]
fn many_sessions_at_once() {
    const N: usize = 50;
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let configs = [
        pki.client("admin", Version::Tls13),
        pki.client("admin", Version::Tls12),
    ];
    let barrier = Barrier::new(N);
    let clients: Vec<SocketAddr> = thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..N {
                let (mut b, header) = accept(&backend);
                assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
                s.spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match b.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => b.write_all(&buf[..n]).unwrap(),
                            Err(e) => panic!("echo backend: {e}"),
                        }
                    }
                });
            }
        });
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let config = configs[i % 2].clone();
                let barrier = &barrier;
                let addr = daemon.addr;
                s.spawn(move || {
                    let client = connect(addr, config);
                    // Everyone reaches the barrier, or a failure would hang the rest.
                    barrier.wait();
                    let client = client.unwrap();
                    let local = local(&client);
                    let data = random_bytes(64 * 1024, 100 + i as u64);
                    let (mut client, echoed) = duplex(client, &data, data.len());
                    assert!(echoed == data, "session {i}: echo differs");
                    send_close_notify(&mut client);
                    let (rest, ending) = read_to_end(&mut client);
                    assert!(rest.is_empty(), "session {i}");
                    assert_eq!(ending, Ending::CloseNotify, "session {i}");
                    local
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for addr in clients {
        let line = end_line(&daemon, addr);
        assert_reason(&line, "client-close-notify");
        assert_eq!(end_field(&line, "bytes-in"), Some("65536"), "{line}");
        assert_eq!(end_field(&line, "bytes-out"), Some("65536"), "{line}");
    }
}

/// The ConfD header: user from the CN by default, `--user` overrides it.
#[test]
fn header_user_from_cn_or_user_option() {
    let pki = Pki::new();
    let backend = Backend::new();
    let by_cn = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let fixed = Daemon::start(&pki, &["--backend", &backend.arg(), "--user", "admin"]);
    for version in BOTH {
        for (daemon, cn, user) in [
            (&by_cn, "oper", "oper"),
            (&fixed, "oper", "admin"),
            // A CN unusable as a user name does not matter with --user.
            (&fixed, "a;b", "admin"),
        ] {
            let mut client = connect(daemon.addr, pki.client(cn, version)).unwrap();
            client.write_all(b"<hello/>").unwrap();
            let (mut b, header) = accept(&backend);
            let port = local(&client).port();
            assert_eq!(
                header,
                format!("[{user};127.0.0.1/{port};ssh;9000;100;;/var/confd/homes/{user};;]\n"),
                "{version:?} CN={cn}"
            );
            let mut first = [0u8; 8];
            b.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"<hello/>");
            drop(b);
            assert_eq!(read_to_end(&mut client).1, Ending::CloseNotify);
            send_close_notify(&mut client);
            let line = end_line(daemon, local(&client));
            assert_eq!(end_field(&line, "user"), Some(user), "{line}");
        }
    }
}

/// `--header none`: the backend's first bytes are the client's.
#[test]
fn header_none_relays_only_client_bytes() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--header", "none"]);
    for version in BOTH {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        client.write_all(b"<hello/>").unwrap();
        send_close_notify(&mut client);
        let asked = Instant::now();
        assert!(wait_readable(backend.listener.as_raw_fd(), SOON));
        let mut b = backend.accept_raw();
        let (got, eof) = read_plain_to_end(&mut b);
        assert!(
            eof && asked.elapsed() < Duration::from_secs(1),
            "{version:?}"
        );
        assert_eq!(got, b"<hello/>", "{version:?}");
    }
}

/// A CN that cannot be written into the header refuses the session: the
/// client gets close_notify, the backend is never contacted.
#[test]
fn header_unsafe_common_name_is_refused() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    for version in BOTH {
        for cn in ["a;b", "evil]", "[x"] {
            let mut client = connect(daemon.addr, pki.client(cn, version)).unwrap();
            let (data, ending) = read_to_end(&mut client);
            assert!(data.is_empty());
            assert_eq!(ending, Ending::CloseNotify, "{version:?} CN={cn}");
            // Answer it, as TLS clients do: nctls waits for that (or a FIN).
            send_close_notify(&mut client);
            let line = end_line(&daemon, local(&client));
            assert_reason(&line, "refused");
            assert!(line.contains(" WARN: "), "{line}");
            assert_eq!(backend.pending_accepts(), 0, "{version:?} CN={cn}");
        }
    }
}

/// `--idle-timeout`: a silent session ends with close_notify to the client
/// and EOF to the backend; traffic in either direction restarts the timer.
#[test]
fn idle_timeout_closes_silent_sessions() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--idle-timeout", "0.5"],
    );
    for version in BOTH {
        // Silent from the start.
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let started = Instant::now();
        let (mut b, _) = accept(&backend);
        let (data, ending) = read_to_end(&mut client);
        let took = started.elapsed();
        assert_eq!(ending, Ending::CloseNotify, "{version:?}");
        assert!(data.is_empty());
        assert_between("idle", took, secs(0.3), secs(3.0));
        send_close_notify(&mut client);
        let (rest, eof) = read_plain_to_end(&mut b);
        assert!(eof && rest.is_empty(), "{version:?}: backend EOF");
        let line = end_line(&daemon, local(&client));
        assert_reason(&line, "idle-timeout");

        // Busy for 1.2 s (a byte every 200 ms, alternating directions),
        // then silent.
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let started = Instant::now();
        let (mut b, _) = accept(&backend);
        for i in 0..6u8 {
            let mut one = [0u8; 1];
            if i % 2 == 0 {
                client.write_all(&[b'a' + i]).unwrap();
                b.read_exact(&mut one).unwrap();
            } else {
                b.write_all(&[b'a' + i]).unwrap();
                client.read_exact(&mut one).unwrap();
            }
            assert_eq!(one[0], b'a' + i);
            thread::sleep(Duration::from_millis(200));
        }
        let quiet = Instant::now();
        let (_, ending) = read_to_end(&mut client);
        assert_eq!(ending, Ending::CloseNotify, "{version:?}");
        assert!(started.elapsed() >= secs(1.2));
        assert_between("idle after traffic", quiet.elapsed(), secs(0.1), secs(3.0));
        send_close_notify(&mut client);
        let line = end_line(&daemon, local(&client));
        assert_reason(&line, "idle-timeout");
        assert_eq!(end_field(&line, "bytes-in"), Some("3"), "{line}");
        assert_eq!(end_field(&line, "bytes-out"), Some("3"), "{line}");
    }
}

/// A socket that keeps a copy of everything read once `tap` is on.
struct Tap {
    sock: TcpStream,
    tap: bool,
    seen: Vec<u8>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sock.read(buf)?;
        if self.tap {
            self.seen.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// The largest application-data plaintext in the records the client got
/// after the handshake while the backend sent 300 KiB.
fn largest_record(version: Version, extra: &[&str]) -> usize {
    let pki = Pki::new();
    let backend = Backend::new();
    let addr = backend.arg();
    let mut args = vec!["--backend", &*addr];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&pki, &args);
    let sock = TcpStream::connect(daemon.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = ClientConnection::new(
        pki.client("admin", version),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut stream = StreamOwned::new(
        conn,
        Tap {
            sock,
            tap: false,
            seen: Vec::new(),
        },
    );
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream.sock.tap = true;
    let (mut b, _) = accept(&backend);
    let payload = random_bytes(300 * 1024, 7);
    b.write_all(&payload).unwrap();
    drop(b);
    let mut data = Vec::new();
    stream.read_to_end(&mut data).unwrap();
    assert!(data == payload);
    // AEAD tag, plus TLS 1.3's inner content type or TLS 1.2 GCM's explicit nonce.
    let suite = format!(
        "{:?}",
        stream.conn.negotiated_cipher_suite().unwrap().suite()
    );
    let overhead = match version {
        Version::Tls13 => 16 + 1,
        Version::Tls12 if suite.contains("GCM") => 16 + 8,
        Version::Tls12 => 16,
    };
    let seen = &stream.sock.seen;
    let (mut at, mut largest, mut total) = (0, 0, 0);
    while at + 5 <= seen.len() {
        let len = u16::from_be_bytes([seen[at + 3], seen[at + 4]]) as usize;
        if seen[at] == 0x17 {
            largest = largest.max(len - overhead);
            total += len - overhead;
        }
        at += 5 + len;
    }
    assert_eq!(at, seen.len(), "whole records");
    assert!(total >= payload.len());
    eprintln!("records {version:?} {suite} {extra:?}: largest plaintext {largest}");
    largest
}

#[test]
fn record_size_at_most_4096_by_default() {
    for version in BOTH {
        assert_eq!(largest_record(version, &[]), 4096, "{version:?}");
        assert_eq!(
            largest_record(version, &["--max-record", "1024"]),
            1024,
            "{version:?}"
        );
    }
}
