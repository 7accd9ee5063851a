//! SIGHUP: certificates, keys, CA, CRLs and identity rules are re-read for
//! new sessions; live sessions are untouched; a broken configuration is
//! refused and the old one keeps serving.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(5);

/// The server certificate a fresh TLS 1.3 session sees.
fn server_cert_seen(daemon: &Daemon, pki: &Pki, backend: &Backend) -> Vec<u8> {
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let cert = c.conn.peer_certificates().unwrap()[0].to_vec();
    c.write_all(b"x").unwrap();
    let (b, _) = backend.accept();
    drop(b);
    drop(c);
    cert
}

#[test]
fn sighup_reloads_for_new_sessions_and_keeps_live_ones() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    let base = format!("backend = {}\n", backend.arg());
    std::fs::write(&conf, &base).unwrap();
    let daemon = Daemon::start(&pki, &["--config", &conf]);
    let first_cert = server_cert_seen(&daemon, &pki, &backend);

    // A live session that must survive every reload.
    let mut live = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    live.write_all(b"ping").unwrap();
    let (mut live_b, _) = backend.accept();
    let mut buf = [0u8; 4];
    live_b.read_exact(&mut buf).unwrap();

    // 1. A new server certificate.
    pki.ca.server().write(pki.dir.path(), "x509-server");
    daemon.signal("HUP");
    daemon.wait_logs("reload: done", 1, SOON).expect("reloaded");
    let second_cert = server_cert_seen(&daemon, &pki, &backend);
    assert_ne!(
        first_cert, second_cert,
        "new sessions get the new certificate"
    );

    // 2. A revoked client and a new identity rule.
    let mallory = pki.ca.client("mallory");
    mallory.write(pki.dir.path(), "mallory");
    let ca = OpensslCa::new(&pki);
    ca.revoke("mallory.pem");
    let crl = ca.crl("crl.pem", &[]);
    std::fs::write(
        &conf,
        format!("{base}crl = {crl}\nmap = * specified renamed\n"),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_logs("reload: done", 2, SOON)
        .expect("reloaded again");
    let refused = connect(
        daemon.addr,
        client_config(&pki.ca, &mallory, Version::Tls12),
    );
    assert!(refused.is_err(), "revoked client refused after reload");
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    c.write_all(b"x").unwrap();
    let (_b, header) = backend.accept();
    assert!(
        header.starts_with("[renamed;"),
        "new rule applies: {header}"
    );

    // 3. A broken key: refused, the old configuration keeps serving.
    std::fs::write(pki.file("x509-server-key.pem"), "not a key\n").unwrap();
    daemon.signal("HUP");
    let line = daemon
        .wait_log("reload failed", SOON)
        .expect("failure logged");
    assert!(line.contains("--key"), "{line}");
    assert_eq!(server_cert_seen(&daemon, &pki, &backend), second_cert);

    // The live session saw none of it.
    live_b.write_all(b"pong").unwrap();
    live.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    live.write_all(b"more").unwrap();
    live_b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
    drop(live_b);
    assert_eq!(read_to_end(&mut live).1, Ending::CloseNotify);
}
