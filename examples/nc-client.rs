//! nc-client: a tiny NETCONF-over-TLS (RFC 7589) client for the nctls demo and
//! tests.
//!
//! It connects with a client certificate, exchanges NETCONF 1.0 hellos, runs
//! the requested actions (lock, get, kill-session, close-session) and can then
//! wait to see *how* the server ends the session: TLS close_notify, a ragged
//! TCP EOF, or a reset. Telling these apart is the point, so the rustls
//! connection is driven by hand instead of through a higher-level wrapper.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::exit;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const USAGE: &str = "usage: nc-client --connect HOST:PORT --cert FILE --key FILE --ca FILE \
[--server-name NAME] [--tls12] [--lock] [--kill ID] [--get] [--close-session] [--wait SECS]";
const EOM: &[u8] = b"]]>]]>";
const NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";
const HELLO: &str = "<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>";
/// How long to wait for the handshake, the server hello or an RPC reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `--close-session` waits for the server to end the session.
const CLOSE_WAIT_SECS: f64 = 5.0;
/// Largest NETCONF message we buffer.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Options {
    connect: String,
    cert: String,
    key: String,
    ca: String,
    server_name: String,
    tls12: bool,
    lock: bool,
    kill: Option<u32>,
    get: bool,
    close_session: bool,
    wait: Option<f64>,
}

/// How the server ended the session.
enum Closed {
    Clean,
    Ragged,
    Reset,
    Error(String),
}

impl Closed {
    fn describe(&self) -> String {
        match self {
            Closed::Clean => "clean close (close_notify)".to_string(),
            Closed::Ragged => "ragged EOF (no close_notify)".to_string(),
            Closed::Reset => "reset".to_string(),
            Closed::Error(e) => format!("error: {e}"),
        }
    }
}

/// Why a read gave no data.
enum ReadStop {
    Closed(Closed),
    Timeout,
}

fn main() {
    let opts = parse_args();
    let config = tls_config(&opts).unwrap_or_else(|e| fail(&e));
    let mut s = Session::connect(&opts, config).unwrap_or_else(|e| fail(&e));

    s.send(HELLO).unwrap_or_else(|e| fail(&e));
    let hello = s.recv_message("server hello").unwrap_or_else(|e| fail(&e));
    let id = between(&hello, "<session-id>", "</session-id>")
        .unwrap_or_else(|| fail("server hello has no session-id"));
    say(&format!("session-id {}", id.trim()));

    let mut ok = true;
    if opts.lock {
        ok &= do_lock(&mut s);
    }
    if opts.get {
        ok &= do_get(&mut s);
    }
    if let Some(target) = opts.kill {
        ok &= do_kill(&mut s, target);
    }
    let mut close_ok_at = None;
    if opts.close_session {
        let reply = s
            .rpc("close-session", "<close-session/>")
            .unwrap_or_else(|e| fail(&e));
        if !is_ok(&reply) {
            fail(&format!("close-session: error {}", error_text(&reply)));
        }
        close_ok_at = Some(Instant::now());
        say("close-session: ok");
    }

    let wait = opts.wait.or(opts.close_session.then_some(CLOSE_WAIT_SECS));
    match wait {
        Some(secs) => ok &= wait_for_close(&mut s, secs, close_ok_at),
        None => s.send_close_notify(),
    }
    exit(if ok { 0 } else { 1 });
}

fn parse_args() -> Options {
    let mut o = Options {
        connect: "127.0.0.1:6513".to_string(),
        cert: "client.pem".to_string(),
        key: "client-key.pem".to_string(),
        ca: "x509-ca.pem".to_string(),
        server_name: "localhost".to_string(),
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage_error(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                exit(0);
            }
            "--connect" => o.connect = value(),
            "--cert" => o.cert = value(),
            "--key" => o.key = value(),
            "--ca" => o.ca = value(),
            "--server-name" => o.server_name = value(),
            "--tls12" => o.tls12 = true,
            "--lock" => o.lock = true,
            "--get" => o.get = true,
            "--close-session" => o.close_session = true,
            "--kill" => {
                let v = value();
                o.kill = Some(
                    v.parse()
                        .unwrap_or_else(|_| usage_error(&format!("bad session id {v:?}"))),
                );
            }
            "--wait" => {
                let v = value();
                let secs = v.parse::<f64>().ok().filter(|s| (0.0..1e9).contains(s));
                o.wait = Some(secs.unwrap_or_else(|| usage_error(&format!("bad --wait {v:?}"))));
            }
            other => usage_error(&format!("unknown argument {other:?}")),
        }
    }
    o
}

fn usage_error(msg: &str) -> ! {
    eprintln!("nc-client: {msg}\n{USAGE}");
    exit(2);
}

fn fail(msg: &str) -> ! {
    eprintln!("nc-client: {msg}");
    exit(1);
}

/// Print one result line; flushed at once so tests can react to it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // If stdout is gone there is nobody left to tell, so ignore errors.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn tls_config(opts: &Options) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&opts.ca)? {
        roots
            .add(ca)
            .map_err(|e| format!("bad CA certificate in {}: {e}", opts.ca))?;
    }
    let certs = load_certs(&opts.cert)?;
    let key = PrivateKeyDer::from_pem_file(&opts.key)
        .map_err(|e| format!("cannot load key {}: {e}", opts.key))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("client certificate {} / key {}: {e}", opts.cert, opts.key))
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot load certificates from {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificates in {path}"));
    }
    Ok(certs)
}

/// A NETCONF session over TLS with a buffer of received, unframed bytes.
struct Session {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    next_message_id: u32,
}

impl Session {
    fn connect(opts: &Options, config: ClientConfig) -> Result<Session, String> {
        let sock = TcpStream::connect(&opts.connect)
            .map_err(|e| format!("cannot connect to {}: {e}", opts.connect))?;
        // Small request/reply messages: don't let Nagle delay them.
        sock.set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| format!("set read timeout: {e}"))?;
        let name = ServerName::try_from(opts.server_name.clone())
            .map_err(|e| format!("bad server name {:?}: {e}", opts.server_name))?;
        let conn =
            ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
        let mut tls = StreamOwned::new(conn, sock);
        // Finish the handshake up front so its failures are reported as such.
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake with {} failed: {e}", opts.connect))?;
        }
        Ok(Session {
            tls,
            buf: Vec::new(),
            next_message_id: 1,
        })
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        self.tls
            .write_all(text.as_bytes())
            .and_then(|()| self.tls.flush())
            .map_err(|e| format!("send failed: {e}"))
    }

    /// Read more plaintext into the buffer; returns the number of bytes read.
    fn read_some(&mut self) -> Result<usize, ReadStop> {
        let mut chunk = [0u8; 16384];
        loop {
            return match self.tls.read(&mut chunk) {
                Ok(0) => Err(ReadStop::Closed(Closed::Clean)),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(n)
                }
                Err(e) => match e.kind() {
                    ErrorKind::Interrupted => continue,
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(ReadStop::Timeout),
                    ErrorKind::UnexpectedEof => Err(ReadStop::Closed(Closed::Ragged)),
                    ErrorKind::ConnectionReset => Err(ReadStop::Closed(Closed::Reset)),
                    _ => Err(ReadStop::Closed(Closed::Error(e.to_string()))),
                },
            };
        }
    }

    /// Read one `]]>]]>`-framed message; `what` names it in error messages.
    fn recv_message(&mut self, what: &str) -> Result<String, String> {
        // Only rescan the tail: big replies arrive in many small reads.
        let mut scanned = 0;
        loop {
            if let Some(pos) = find(&self.buf[scanned..], EOM).map(|p| p + scanned) {
                let msg = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + EOM.len());
                return Ok(msg);
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(format!("{what}: message larger than {MAX_MESSAGE} bytes"));
            }
            scanned = self.buf.len().saturating_sub(EOM.len() - 1);
            match self.read_some() {
                Ok(_) => {}
                Err(ReadStop::Timeout) => {
                    return Err(format!("{what}: timed out after {REPLY_TIMEOUT:?}"));
                }
                Err(ReadStop::Closed(c)) => {
                    return Err(format!("{what}: session ended: {}", c.describe()));
                }
            }
        }
    }

    /// Send one RPC and return its reply; transport failures are errors.
    fn rpc(&mut self, name: &str, operation: &str) -> Result<String, String> {
        let id = self.next_message_id;
        self.next_message_id += 1;
        self.send(&format!(
            "<rpc message-id=\"{id}\" xmlns=\"{NS}\">{operation}</rpc>]]>]]>"
        ))
        .map_err(|e| format!("{name}: {e}"))?;
        let reply = self.recv_message(&format!("{name} reply"))?;
        if !reply.contains(&format!("message-id=\"{id}\"")) {
            return Err(format!("{name}: reply does not carry message-id {id}"));
        }
        Ok(reply)
    }

    /// Send our close_notify; errors are ignored because the peer may be gone.
    fn send_close_notify(&mut self) {
        self.tls.conn.send_close_notify();
        let _ = self.tls.flush();
    }
}

fn do_lock(s: &mut Session) -> bool {
    let reply = s
        .rpc("lock", "<lock><target><running/></target></lock>")
        .unwrap_or_else(|e| fail(&e));
    if is_ok(&reply) {
        say("lock: ok");
        return true;
    }
    match (
        error_text(&reply).as_str(),
        between(&reply, "<session-id>", "</session-id>"),
    ) {
        ("lock-denied", Some(holder)) => say(&format!("lock: denied by session {}", holder.trim())),
        (other, _) => say(&format!("lock: error {other}")),
    }
    false
}

fn do_get(s: &mut Session) -> bool {
    let reply = s.rpc("get", "<get/>").unwrap_or_else(|e| fail(&e));
    let size = if reply.contains("<data/>") {
        Some(0)
    } else {
        between(&reply, "<data>", "</data>").map(str::len)
    };
    match size {
        Some(n) => say(&format!("get: {n} bytes")),
        None => say(&format!("get: error {}", error_text(&reply))),
    }
    size.is_some()
}

fn do_kill(s: &mut Session, target: u32) -> bool {
    let op = format!("<kill-session><session-id>{target}</session-id></kill-session>");
    let reply = s.rpc("kill-session", &op).unwrap_or_else(|e| fail(&e));
    if is_ok(&reply) {
        say(&format!("kill-session {target}: ok at {}", unix_ms()));
        return true;
    }
    say(&format!(
        "kill-session {target}: error {}",
        error_text(&reply)
    ));
    false
}

/// Wait up to `secs` for the server to end the session and report how it did.
/// `since` is when the close-session `<ok/>` was read, if there was one.
fn wait_for_close(s: &mut Session, secs: f64, since: Option<Instant>) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    // Anything left over after the last reply is unexpected too.
    let mut unexpected = s.buf.len();
    s.buf.clear();
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        if let Err(e) = s.tls.sock.set_read_timeout(Some(left)) {
            fail(&format!("set read timeout: {e}"));
        }
        match s.read_some() {
            Ok(n) => {
                unexpected += n;
                s.buf.clear();
            }
            Err(ReadStop::Timeout) => {}
            Err(ReadStop::Closed(c)) => break Some(c),
        }
    };
    // Take the timestamp before printing anything else.
    let when = match since {
        Some(t) => format!("after {:.3} ms", t.elapsed().as_secs_f64() * 1000.0),
        None => format!("at {}", unix_ms()),
    };
    if unexpected > 0 {
        say(&format!("unexpected data: {unexpected} bytes"));
    }
    let Some(closed) = closed else {
        say(&format!("closed: still open after {secs} s"));
        s.send_close_notify();
        return true;
    };
    say(&format!("closed: {} {when}", closed.describe()));
    if matches!(closed, Closed::Clean) {
        s.send_close_notify();
        return true;
    }
    false
}

fn is_ok(reply: &str) -> bool {
    reply.contains("<ok/>") || reply.contains("<ok />")
}

/// The error-tag of an rpc-error reply, or a note that there was none.
fn error_text(reply: &str) -> String {
    match between(reply, "<error-tag>", "</error-tag>") {
        Some(tag) => tag.trim().to_string(),
        None => "(unexpected reply without error-tag)".to_string(),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Current Unix time in milliseconds with microsecond decimals, e.g. `1764077000123.456`.
fn unix_ms() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    format!("{}.{:03}", micros / 1000, micros % 1000)
}
