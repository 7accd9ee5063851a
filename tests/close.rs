//! The close-semantics table, row by row, against the real binary, for TLS
//! 1.3 and TLS 1.2. Test names follow the README's rows.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Row 1: the backend closes first (ConfD after kill-session): every byte
/// arrives, then close_notify, promptly.
#[test]
fn row1_backend_close_delivers_everything_then_close_notify() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    for version in BOTH {
        let mut client = connect(daemon.addr, pki.client("admin", version)).unwrap();
        client.write_all(b"<hello/>").unwrap();
        let (mut b, header) = backend.accept();
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
        assert_eq!(ending, Ending::CloseNotify, "{version:?}");
        assert_eq!(data.len(), payload.len(), "{version:?}");
        assert!(data == payload, "{version:?}: bytes differ");
        assert!(
            latency < Duration::from_millis(100),
            "{version:?}: {latency:?}"
        );
    }
}
