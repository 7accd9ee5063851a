//! The connection API against real sockets and a real TLS client, where
//! the C tests cannot reach: failures of the connection's own poll.

use super::*;
use crate::config::{nctls_config_free, nctls_config_load, nctls_config_new, nctls_config_set};
use crate::test_pki as pki;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

/// A loaded configuration from a fresh test PKI, and a TLS client
/// config with a certificate for `admin`.
fn setup(name: &str) -> (*mut nctls_config, Arc<rustls::ClientConfig>) {
    let dir = std::env::temp_dir().join(format!("nctls-ffi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pki::Ca::new("CA");
    let (cert, key) = ca.server().write(&dir, "server");
    let ca_file = ca.write(&dir, "ca");
    let mut cfg = std::ptr::null_mut();
    let set = |cfg, name: &str, value: &str| {
        let (name, value) = (CString::new(name).unwrap(), CString::new(value).unwrap());
        // SAFETY: a live config and two C strings.
        unsafe { nctls_config_set(cfg, name.as_ptr(), value.as_ptr()) }
    };
    // SAFETY: a valid output pointer; the config is live below.
    unsafe {
        assert_eq!(nctls_config_new(&mut cfg), nctls_result::Ok);
        for (n, v) in [("cert", &cert), ("key", &key), ("ca", &ca_file)] {
            assert_eq!(set(cfg, n, &v.display().to_string()), nctls_result::Ok);
        }
        assert_eq!(set(cfg, "backend", "127.0.0.1:1"), nctls_result::Ok);
        assert_eq!(nctls_config_load(cfg), nctls_result::Ok);
    }
    let user = ca.client("admin");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().to_vec().into()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![user.der().to_vec().into()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(user.key_der())),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (cfg, Arc::new(client))
}

/// A connection whose handshake is done, and the client on its
/// thread: it sends `x` when told, then reads until the end.
fn accepted(
    cfg: *const nctls_config,
    client: Arc<rustls::ClientConfig>,
) -> (
    *mut nctls_conn,
    mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, told) = mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = rustls::ClientConnection::new(client, name).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        if told.recv_timeout(Duration::from_secs(20)).is_ok() {
            let _ = stream.write_all(b"x").and_then(|()| stream.flush());
        }
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let (sock, _) = listener.accept().unwrap();
    let mut conn = std::ptr::null_mut();
    // SAFETY: a loaded config, a connected socket handed over, a valid output.
    unsafe {
        assert_eq!(
            nctls_conn_new(cfg, sock.into_raw_fd(), &mut conn),
            nctls_result::Ok
        );
        assert_eq!(nctls_conn_accept(conn), nctls_result::Ok);
    }
    (conn, go, peer)
}

/// The connection's epoll descriptor.
fn epoll_fd(conn: *mut nctls_conn) -> RawFd {
    // SAFETY: a live connection, not in use by another thread.
    unsafe { shared(conn) }.unwrap().event_loop.epoll_fd()
}

/// Makes an epoll descriptor useless (/dev/null in its place), so every
/// later epoll call on it fails; a wait already under way goes on.
fn break_epoll(epoll: RawFd) {
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: both descriptors are open; the connection's own close of
    // `epoll` later closes the copy of /dev/null instead.
    assert!(unsafe { libc::dup2(null.as_raw_fd(), epoll) } >= 0);
}

fn reason_name(reason: nctls_close_reason) -> &'static str {
    // SAFETY: a static C string.
    let name =
        unsafe { std::ffi::CStr::from_ptr(crate::reason::nctls_close_reason_str(reason as u32)) };
    name.to_str().unwrap()
}

/// An epoll failure is nctls's own, not the backend's: registering the
/// backend socket (dialled or given) and waiting for events.
#[test]
fn epoll_failures_end_with_internal_error() {
    let (cfg, client) = setup("epoll");
    // Registering a dialled backend socket fails.
    let (conn, go, peer) = accepted(cfg, client.clone());
    break_epoll(epoll_fd(conn));
    let mut reason = nctls_close_reason::None;
    // SAFETY: a live, accepted connection and a valid output.
    unsafe {
        assert_eq!(nctls_conn_relay(conn, -1, &mut reason), nctls_result::Ok);
        assert_eq!(reason_name(reason), "internal-error");
        nctls_conn_free(conn);
    }
    drop(go);
    peer.join().unwrap();

    // Registering a given backend socket fails.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (conn, go, peer) = accepted(cfg, client.clone());
    break_epoll(epoll_fd(conn));
    let fd = std::net::TcpStream::connect(backend.local_addr().unwrap()).unwrap();
    // SAFETY: as above; the backend descriptor is handed over.
    unsafe {
        assert_eq!(
            nctls_conn_relay(conn, fd.into_raw_fd(), &mut reason),
            nctls_result::Ok
        );
        assert_eq!(reason_name(reason), "internal-error");
        nctls_conn_free(conn);
    }
    drop(go);
    peer.join().unwrap();

    // Waiting for events fails mid-session: the backend gets a reset,
    // not a clean end.
    let (conn, go, peer) = accepted(cfg, client);
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = std::net::TcpStream::connect(backend.local_addr().unwrap()).unwrap();
    let (mut confd, _) = backend.accept().unwrap();
    confd
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    struct Ptr(*mut nctls_conn);
    // SAFETY: the connection is used by the relay thread alone until
    // it is joined.
    unsafe impl Send for Ptr {}
    let (ptr, epoll) = (Ptr(conn), epoll_fd(conn));
    let relay = std::thread::spawn(move || {
        let ptr = ptr;
        let mut reason = nctls_close_reason::None;
        // SAFETY: a live, accepted connection; the descriptor is handed over.
        let result = unsafe { nctls_conn_relay(ptr.0, fd.into_raw_fd(), &mut reason) };
        (result, reason, ptr)
    });
    // Relaying (the header came), then epoll breaks, then the client
    // speaks (waking a wait already under way).
    let mut header = Vec::new();
    let mut byte = [0u8];
    while !header.ends_with(b"\n") {
        confd.read_exact(&mut byte).unwrap();
        header.push(byte[0]);
    }
    assert!(header.starts_with(b"[admin;"), "{header:?}");
    break_epoll(epoll);
    go.send(()).unwrap();
    let (result, reason, ptr) = relay.join().unwrap();
    assert_eq!(result, nctls_result::Ok);
    assert_eq!(reason_name(reason), "internal-error");
    let mut got = Vec::new();
    let end = confd.read_to_end(&mut got);
    // Relayed if the relay was already waiting when epoll broke.
    assert!(got.is_empty() || got == b"x", "{got:?}");
    assert_eq!(
        end.map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::ConnectionReset),
        "a truncated session is reset, after {got:?}"
    );
    // SAFETY: made above, not freed before.
    unsafe {
        nctls_conn_free(ptr.0);
        nctls_config_free(cfg);
    }
    peer.join().unwrap();
}
