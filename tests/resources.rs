//! Nothing leaks: after many sessions ending every which way, the daemon's
//! open descriptors are back at their baseline (the GnuTLS demo leaks one
//! per session and dies at about 1,017).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn descriptors_return_to_baseline_after_every_kind_of_end() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let pid = daemon.child.id();
    let baseline = open_fds(pid);
    let rounds = 40;
    for i in 0..rounds {
        let version = BOTH[i % 2];
        // Backend closes first.
        let mut c = connect(daemon.addr, pki.client("admin", version)).unwrap();
        c.write_all(b"ping").unwrap();
        let (mut b, _) = backend.accept();
        let mut ping = [0u8; 4];
        b.read_exact(&mut ping).unwrap();
        b.write_all(b"pong").unwrap();
        drop(b);
        let (data, ending) = read_to_end(&mut c);
        assert_eq!(
            (data.as_slice(), ending),
            (&b"pong"[..], Ending::CloseNotify)
        );
        send_close_notify(&mut c);
        // Client closes cleanly.
        let mut c = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let (mut b, _) = backend.accept();
        send_close_notify(&mut c);
        assert!(read_plain_to_end(&mut b).1, "backend sees EOF");
        drop(b);
        let _ = read_to_end(&mut c);
        // Client vanishes without close_notify.
        let c = connect(daemon.addr, pki.client("admin", version)).unwrap();
        let (mut b, _) = backend.accept();
        drop(c);
        let _ = read_plain_to_end(&mut b);
        // Not TLS at all.
        let mut raw = TcpStream::connect(daemon.addr).unwrap();
        raw.write_all(b"<hello/>]]>]]>\n").unwrap();
        let _ = raw.read(&mut [0u8; 64]);
    }
    daemon
        .wait_logs("session end", rounds * 4, Duration::from_secs(10))
        .expect("every session logged its end");
    assert_eq!(backend.pending_accepts(), 0, "no stray backend connections");
    assert_eq!(wait_fds(pid, baseline), baseline, "descriptors leaked");
}
