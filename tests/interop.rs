//! Interop with real third-party TLS clients: `openssl s_client` (OpenSSL 3)
//! and `gnutls-cli` (GnuTLS 3.7) against the real daemon, TLS 1.3 and 1.2.
//!
//! What each client shows and what we assert on:
//! - openssl with `-msg -msgfile F` writes every record header (hex) and
//!   alert to F, e.g. `<<< TLS 1.3, Alert [length 0002], warning close_notify`;
//!   on a clean close it prints `closed` to stdout, on a ragged one
//!   `...:unexpected eof while reading:...` to stderr and exits 1. On stdin
//!   EOF it prints `DONE`, sends close_notify and closes at once.
//! - gnutls-cli with `-d 5` logs every decrypted record
//!   (`Decrypted Packet[N] Application Data(23) with length: L`) and alert
//!   (`Alert[1|0] - Close notify - was received`) to stderr; a clean close
//!   prints `- Peer has closed the GnuTLS connection`, a ragged one
//!   `*** Fatal error: The TLS connection was non-properly terminated.`.
//!   On stdin EOF it sends close_notify and keeps reading until the server
//!   closes, so it sees a TLS 1.3 half-close through.
//!
//! Every client runs under a 10 s deadline; a missing program fails the test.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tlscli::*;
use common::*;

/// Accepts the relay's backend connection and reads the session header,
/// failing early (with the client's output) if the client gave up first.
fn accept(backend: &Backend, client: &mut Client) -> (TcpStream, String) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    backend.listener.set_nonblocking(true).unwrap();
    let stream = loop {
        match backend.listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if client.exited() {
                    backend.listener.set_nonblocking(false).unwrap();
                    let run = client.wait_and_collect();
                    panic!(
                        "{:?} {:?} exited before the relay connected to the backend\n{}",
                        client.tool,
                        client.version,
                        run.dump()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "no backend connection within {CLIENT_DEADLINE:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("backend accept: {e}"),
        }
    };
    backend.listener.set_nonblocking(false).unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = stream;
    let header = read_line(&mut stream);
    (stream, header)
}

/// Reads one line (through `\n`) from the backend side.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Ok(_) => break,
            Err(e) => panic!(
                "backend read after {:?}: {e}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// `len` bytes of numbered text lines: easy to find whole in a client's stdout.
fn reply(len: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("<data n=\"{i:06}\">{}</data>\n", "x".repeat(40)));
        i += 1;
    }
    s.truncate(len - 1);
    s.push('\n');
    s
}

fn session_end(daemon: &Daemon, n: usize) -> String {
    daemon
        .wait_logs("session end:", n, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no session end #{n}: {:?}", daemon.log_lines()))
        .remove(n - 1)
}

/// A PKI with `client.pem`/`client-key.pem` for CN=admin, a backend and a daemon.
fn setup(extra: &[&str]) -> (Pki, Backend, Daemon) {
    let pki = Pki::new();
    pki.ca.client("admin").write(pki.dir.path(), "client");
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let mut args = vec!["--backend", backend_arg.as_str()];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&pki, &args);
    (pki, backend, daemon)
}

/// Backend closes first (ConfD after kill-session), the client's stdin
/// still open: the whole reply, then close_notify, then a clean exit.
fn backend_closes_first(tool: Tool) {
    let (pki, backend, daemon) = setup(&[]);
    for (i, version) in BOTH.into_iter().enumerate() {
        let mut client = Client::start(tool, &pki, daemon.addr, version);
        client.send(b"<hello/>\n");
        let (mut b, header) = accept(&backend, &mut client);
        assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
        assert_eq!(read_line(&mut b), "<hello/>\n");
        let reply = reply(20 * 1024);
        send_all(&mut b, reply.as_bytes());
        // Everything the client sent has been read: this close is a FIN.
        drop(b);
        let closed_at = Instant::now();
        let run = client.finish();
        // The client ends by itself, promptly, with its stdin still open.
        let took = closed_at.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{tool:?} {version:?}: exited {took:?} after the backend closed"
        );
        assert!(
            run.stdout.contains(&reply),
            "{tool:?} {version:?}: reply not complete in stdout\n{}",
            run.dump()
        );
        assert_version(tool, version, &run);
        assert_clean_close_received(tool, version, &run);
        let end = session_end(&daemon, i + 1);
        assert!(end.contains("reason=backend-closed"), "{end}");
        assert!(
            end.contains(&format!("tls={}/", tls_name(version))),
            "{end}"
        );
        assert!(end.contains("bytes-out=20480 "), "{end}");
    }
}

#[test]
fn openssl_backend_close_gives_all_data_then_close_notify() {
    backend_closes_first(Tool::OpenSsl);
}

#[test]
fn gnutls_backend_close_gives_all_data_then_close_notify() {
    backend_closes_first(Tool::GnuTls);
}

/// A 256 KiB upload (full-size client records) reaches the backend intact,
/// then the backend's short reply and close end the session cleanly.
fn upload_reaches_backend(tool: Tool) {
    let (pki, backend, daemon) = setup(&[]);
    for (i, version) in BOTH.into_iter().enumerate() {
        let upload = reply(256 * 1024);
        let mut client = Client::start(tool, &pki, daemon.addr, version);
        // Feed stdin from a thread: the client may block on the relay meanwhile.
        let mut stdin = client.stdin.take().expect("stdin");
        let feed = upload.clone();
        let feeder = std::thread::spawn(move || {
            std::io::Write::write_all(&mut stdin, feed.as_bytes()).expect("feed stdin");
            stdin // kept open until the client exits
        });
        let (mut b, _) = accept(&backend, &mut client);
        let mut got = vec![0u8; upload.len()];
        b.read_exact(&mut got).expect("backend read");
        assert!(
            got == upload.as_bytes(),
            "{tool:?} {version:?}: upload differs"
        );
        send_all(&mut b, b"<ok/>\n");
        drop(b);
        let run = client.finish();
        drop(feeder.join().expect("feeder"));
        assert!(run.stdout.contains("<ok/>\n"), "{}", run.dump());
        assert_version(tool, version, &run);
        assert_clean_close_received(tool, version, &run);
        let end = session_end(&daemon, i + 1);
        assert!(end.contains("reason=backend-closed"), "{end}");
        assert!(
            end.contains(&format!("bytes-in={} ", upload.len())),
            "{end}"
        );
    }
}

#[test]
fn openssl_upload_reaches_backend_intact() {
    upload_reaches_backend(Tool::OpenSsl);
}

#[test]
fn gnutls_upload_reaches_backend_intact() {
    upload_reaches_backend(Tool::GnuTls);
}

/// openssl on stdin EOF prints `DONE`, sends close_notify and closes its
/// socket at once: the backend must see the data, then EOF.
#[test]
fn openssl_client_close_notify_reaches_backend_as_eof() {
    let (pki, backend, daemon) = setup(&[]);
    for (i, version) in BOTH.into_iter().enumerate() {
        let mut client = Client::start(Tool::OpenSsl, &pki, daemon.addr, version);
        client.send(b"<hello/>\n");
        client.close_stdin();
        let (mut b, header) = accept(&backend, &mut client);
        assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
        assert_eq!(read_line(&mut b), "<hello/>\n");
        let (rest, eof) = read_plain_to_end(&mut b);
        assert!(eof && rest.is_empty(), "{version:?}: {rest:?} eof={eof}");
        drop(b);
        let run = client.finish();
        let ctx = || format!("{version:?}\n{}", run.dump());
        assert!(run.status.success(), "{}", ctx());
        assert!(run.stderr.lines().any(|l| l == "DONE"), "{}", ctx());
        let sent = match version {
            Version::Tls13 => ">>> TLS 1.3, Alert [length 0002], warning close_notify",
            Version::Tls12 => ">>> TLS 1.2, Alert [length 0002], warning close_notify",
        };
        assert!(run.trace.contains(sent), "{}", ctx());
        assert!(!run.stderr.contains("unexpected eof"), "{}", ctx());
        assert_version(Tool::OpenSsl, version, &run);
        let end = session_end(&daemon, i + 1);
        assert!(end.contains("reason=client-close-notify"), "{end}");
        assert!(end.contains("bytes-in=9 "), "{end}");
    }
}

/// gnutls-cli on stdin EOF sends close_notify and reads on until the server
/// closes. TLS 1.3 is a half-close: the backend sees EOF, then its reply
/// still reaches the client before our close_notify. TLS 1.2 (default
/// `--tls12-close strict`): close_notify is answered at once, a later
/// backend reply is discarded.
#[test]
fn gnutls_client_close_notify_half_close() {
    let (pki, backend, daemon) = setup(&[]);
    for (i, version) in BOTH.into_iter().enumerate() {
        let mut client = Client::start(Tool::GnuTls, &pki, daemon.addr, version);
        client.send(b"<hello/>\n");
        client.close_stdin();
        let (mut b, _) = accept(&backend, &mut client);
        assert_eq!(read_line(&mut b), "<hello/>\n");
        let (rest, eof) = read_plain_to_end(&mut b);
        assert!(eof && rest.is_empty(), "{version:?}: {rest:?} eof={eof}");
        let reply = reply(20 * 1024);
        // In strict mode the relay may already have closed: ignore errors.
        let _ = std::io::Write::write_all(&mut b, reply.as_bytes());
        drop(b);
        let run = client.finish();
        assert!(
            run.stderr
                .contains("REC: Sending Alert[1|0] - Close notify"),
            "{version:?}\n{}",
            run.dump()
        );
        assert_version(Tool::GnuTls, version, &run);
        assert_clean_close_received(Tool::GnuTls, version, &run);
        let end = session_end(&daemon, i + 1);
        assert!(end.contains("reason=client-close-notify"), "{end}");
        match version {
            Version::Tls13 => {
                assert!(run.stdout.contains(&reply), "reply lost\n{}", run.dump());
                assert!(end.contains("bytes-out=20480 "), "{end}");
            }
            Version::Tls12 => {
                assert!(!run.stdout.contains("<data n="), "{}", run.dump());
                assert!(end.contains("bytes-out=0 "), "{end}");
            }
        }
    }
}

/// `--tls12-close half-close` makes TLS 1.2 behave like TLS 1.3 above.
#[test]
fn gnutls_tls12_half_close_option_delivers_the_reply() {
    let (pki, backend, daemon) = setup(&["--tls12-close", "half-close"]);
    let mut client = Client::start(Tool::GnuTls, &pki, daemon.addr, Version::Tls12);
    client.send(b"<hello/>\n");
    client.close_stdin();
    let (mut b, _) = accept(&backend, &mut client);
    assert_eq!(read_line(&mut b), "<hello/>\n");
    let (rest, eof) = read_plain_to_end(&mut b);
    assert!(eof && rest.is_empty(), "{rest:?} eof={eof}");
    let reply = reply(20 * 1024);
    send_all(&mut b, reply.as_bytes());
    drop(b);
    let run = client.finish();
    assert!(run.stdout.contains(&reply), "reply lost\n{}", run.dump());
    assert_version(Tool::GnuTls, Version::Tls12, &run);
    assert_clean_close_received(Tool::GnuTls, Version::Tls12, &run);
    let end = session_end(&daemon, 1);
    assert!(end.contains("reason=client-close-notify"), "{end}");
}

/// Plaintext lengths of the application-data records the client received,
/// from its own trace.
fn app_data_records(tool: Tool, version: Version, run: &Run) -> Vec<usize> {
    match tool {
        Tool::OpenSsl => {
            // `<<< ... RecordHeader` + hex line `17 03 03 HI LO`; in TLS 1.3
            // `<<< ... InnerContent` + hex line `17` gives the real type.
            let mut records: Vec<(u8, usize, Option<u8>)> = Vec::new();
            let lines: Vec<&str> = run.trace.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if !line.starts_with("<<< ") {
                    continue;
                }
                let hex: Vec<u8> = lines
                    .get(i + 1)
                    .map(|l| {
                        l.split_whitespace()
                            .filter_map(|b| u8::from_str_radix(b, 16).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                if line.contains("RecordHeader") && hex.len() == 5 {
                    let len = usize::from(hex[3]) << 8 | usize::from(hex[4]);
                    records.push((hex[0], len, None));
                } else if line.contains("InnerContent") && hex.len() == 1 {
                    if let Some(last) = records.last_mut() {
                        last.2 = Some(hex[0]);
                    }
                }
            }
            // AEAD overhead: TLS 1.3 content type + tag; TLS 1.2 GCM nonce + tag.
            let overhead = match version {
                Version::Tls13 => 1 + 16,
                Version::Tls12 => 8 + 16,
            };
            records
                .into_iter()
                .filter(|&(outer, _, inner)| inner.unwrap_or(outer) == 0x17)
                .map(|(_, len, _)| len - overhead)
                .collect()
        }
        Tool::GnuTls => {
            let marker = "Application Data(23) with length: ";
            run.stderr
                .lines()
                .filter(|l| l.contains("Decrypted Packet["))
                .filter_map(|l| l.split(marker).nth(1))
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        }
    }
}

/// Relays a 100 KiB reply and returns the plaintext size of every
/// application-data record the client saw.
fn record_sizes(tool: Tool, extra: &[&str]) -> Vec<(Version, Vec<usize>)> {
    let (pki, backend, daemon) = setup(extra);
    let mut out = Vec::new();
    for version in BOTH {
        let mut client = Client::start(tool, &pki, daemon.addr, version);
        client.send(b"<hello/>\n");
        let (mut b, _) = accept(&backend, &mut client);
        assert_eq!(read_line(&mut b), "<hello/>\n");
        let reply = reply(100 * 1024);
        send_all(&mut b, reply.as_bytes());
        drop(b);
        let run = client.finish();
        assert!(run.stdout.contains(&reply), "{}", run.dump());
        assert_version(tool, version, &run);
        assert_clean_close_received(tool, version, &run);
        if tool == Tool::OpenSsl {
            assert!(
                run.stdout.contains("GCM"),
                "cipher not AES-GCM\n{}",
                run.dump()
            );
        }
        let sizes = app_data_records(tool, version, &run);
        // The parse found every byte: the record list is the whole reply.
        assert_eq!(
            sizes.iter().sum::<usize>(),
            reply.len(),
            "{tool:?} {version:?}: {sizes:?}"
        );
        out.push((version, sizes));
    }
    out
}

fn assert_records_at_most_4096(tool: Tool) {
    for (version, sizes) in record_sizes(tool, &[]) {
        let max = sizes.iter().max().copied().unwrap_or(0);
        assert!(max <= 4096, "{tool:?} {version:?}: record of {max} bytes");
        assert_eq!(max, 4096, "{tool:?} {version:?}: records not filled");
    }
}

fn assert_records_larger_with_16384(tool: Tool) {
    for (version, sizes) in record_sizes(tool, &["--max-record", "16384"]) {
        let max = sizes.iter().max().copied().unwrap_or(0);
        assert_eq!(max, 16384, "{tool:?} {version:?}: {sizes:?}");
    }
}

#[test]
fn openssl_records_at_most_4096_bytes_by_default() {
    assert_records_at_most_4096(Tool::OpenSsl);
}

#[test]
fn openssl_records_up_to_16384_bytes_with_max_record_16384() {
    assert_records_larger_with_16384(Tool::OpenSsl);
}

#[test]
fn gnutls_records_at_most_4096_bytes_by_default() {
    assert_records_at_most_4096(Tool::GnuTls);
}

#[test]
fn gnutls_records_up_to_16384_bytes_with_max_record_16384() {
    assert_records_larger_with_16384(Tool::GnuTls);
}
