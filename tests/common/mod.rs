//! Shared pieces of the integration tests: a test PKI on disk, the real
//! `nctls` binary as a child process, a ConfD-like backend socket, and a
//! rustls client that can tell a clean TLS close from a ragged one.
#![allow(dead_code)]

pub mod account;
pub mod netconf;
pub mod netns;
pub mod oneshot;
pub mod pki;
pub mod tlscli;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "nctls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate and client certificates, written as the
/// GnuTLS demo's file names (`x509-ca.pem`, `x509-server.pem`, …).
pub struct Pki {
    pub dir: TempDir,
    pub ca: pki::Ca,
    pub server: pki::Issued,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new();
        let ca = pki::Ca::new("nctls test CA");
        ca.write(dir.path(), "x509-ca");
        let server = ca.server();
        server.write(dir.path(), "x509-server");
        Pki { dir, ca, server }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Command-line arguments naming this PKI's server files.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.file("x509-server.pem"),
            "--key".into(),
            self.file("x509-server-key.pem"),
            "--ca".into(),
            self.file("x509-ca.pem"),
        ]
    }

    /// A rustls client config presenting a certificate with `CN=cn`.
    pub fn client(&self, cn: &str, version: Version) -> Arc<ClientConfig> {
        client_config(&self.ca, &self.ca.client(cn), version)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

pub const BOTH: [Version; 2] = [Version::Tls13, Version::Tls12];

/// A client config trusting `trust` and presenting `cert`.
pub fn client_config(trust: &pki::Ca, cert: &pki::Issued, version: Version) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(trust.der().to_vec()))
        .expect("add root");
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der())),
            )
            .expect("client cert");
    Arc::new(config)
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes the handshake (TLS 1.3 client auth failures show
/// only on the first read).
pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
        .map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// How a TLS session ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    CloseNotify,
    RaggedEof,
    Reset,
    Other(String),
}

/// Reads until the session ends; returns everything read and how it ended.
pub fn read_to_end(stream: &mut TlsStream) -> (Vec<u8>, Ending) {
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (data, Ending::CloseNotify),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return (data, Ending::RaggedEof),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (data, Ending::Reset),
            Err(e) => return (data, Ending::Other(e.to_string())),
        }
    }
}

/// Sends our close_notify (TLS-level half-close).
pub fn send_close_notify(stream: &mut TlsStream) {
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
}

/// The real binary, its log collected line by line.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Daemon {
    /// Starts nctls on a free loopback port with `args` added.
    pub fn start(pki: &Pki, args: &[&str]) -> Daemon {
        let mut all: Vec<String> = pki.server_args();
        all.extend(["--listen".into(), "127.0.0.1:0".into()]);
        all.extend(args.iter().map(|s| s.to_string()));
        Daemon::spawn(&all, pki.dir.path())
    }

    /// Starts nctls with exactly `args`, in `cwd`.
    pub fn spawn(args: &[String], cwd: &Path) -> Daemon {
        Daemon::spawn_with(args, cwd, |_| {})
    }

    /// Like [`Daemon::start`], with `configure` applied to the command
    /// before it is spawned (e.g. a `pre_exec` hook that sets a limit).
    pub fn start_with(pki: &Pki, args: &[&str], configure: impl FnOnce(&mut Command)) -> Daemon {
        let mut all: Vec<String> = pki.server_args();
        all.extend(["--listen".into(), "127.0.0.1:0".into()]);
        all.extend(args.iter().map(|s| s.to_string()));
        Daemon::spawn_with(&all, pki.dir.path(), configure)
    }

    /// Starts nctls with exactly `args`, in `cwd`, with `configure` applied first.
    pub fn spawn_with(args: &[String], cwd: &Path, configure: impl FnOnce(&mut Command)) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nctls"));
        command
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("start nctls");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("NCTLS_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let line = daemon
            .wait_log("listening on [", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("nctls did not start: {:?}", daemon.log_lines()));
        daemon.addr = listen_addrs(&line)[0];
        daemon
    }

    /// Every address the daemon listens on, in `--listen` order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        listen_addrs(
            &self
                .wait_log("listening on [", Duration::ZERO)
                .expect("started"),
        )
    }

    /// The first log line containing `pattern`, waiting up to `timeout`.
    pub fn wait_log(&self, pattern: &str, timeout: Duration) -> Option<String> {
        self.wait_logs(pattern, 1, timeout).map(|mut v| v.remove(0))
    }

    /// Waits until `count` log lines contain `pattern`.
    pub fn wait_logs(&self, pattern: &str, count: usize, timeout: Duration) -> Option<Vec<String>> {
        self.wait_lines(|l| l.contains(pattern), count, timeout)
    }

    /// Waits until `count` log lines satisfy `wanted`.
    pub fn wait_lines(
        &self,
        wanted: impl Fn(&str) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.log;
        let mut lines = lock.lock().unwrap();
        loop {
            let found: Vec<String> = lines.iter().filter(|l| wanted(l)).cloned().collect();
            if found.len() >= count {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cond.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; `None` if it did not within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The addresses of a `listening on [A, B], backend ...` line (those std
/// can parse: not IPv6 ones with a zone).
fn listen_addrs(line: &str) -> Vec<SocketAddr> {
    let start = line.find("listening on [").unwrap() + "listening on [".len();
    let end = line.find("], backend").expect("end of the address list");
    line[start..end]
        .split(", ")
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// A plain-TCP backend that stands in for ConfD's port.
pub struct Backend {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl Backend {
    pub fn new() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        Backend { listener, addr }
    }

    /// `--backend ADDR` for the daemon.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// Accepts one session and reads its header line.
    pub fn accept(&self) -> (TcpStream, String) {
        let (mut s, _) = self.listener.accept().expect("backend accept");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let header = read_header(&mut s);
        (s, header)
    }

    /// Accepts without reading anything.
    pub fn accept_raw(&self) -> TcpStream {
        let (s, _) = self.listener.accept().expect("backend accept");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// How many connections are waiting to be accepted (non-blocking count).
    pub fn pending_accepts(&self) -> usize {
        self.listener.set_nonblocking(true).unwrap();
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        self.listener.set_nonblocking(false).unwrap();
        n
    }
}

/// Reads one header line, byte by byte so nothing after it is consumed.
pub fn read_header(s: &mut TcpStream) -> String {
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while header.last() != Some(&b'\n') {
        match s.read(&mut byte) {
            Ok(1) => header.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&header).into_owned()
}

/// An openssl `ca` database for a test CA in the PKI's directory: revoke
/// certificates and make CRLs the way an operator would.
pub struct OpensslCa<'a> {
    pki: &'a Pki,
}

impl<'a> OpensslCa<'a> {
    pub fn new(pki: &'a Pki) -> OpensslCa<'a> {
        let dir = pki.dir.path();
        pki.ca.write_key(dir, "x509-ca");
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            dir.join("ca.conf"),
            "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
             default_md = sha256\ndefault_crl_days = 30\n",
        )
        .unwrap();
        OpensslCa { pki }
    }

    fn run(&self, extra: &[&str]) {
        let mut args = vec![
            "ca",
            "-config",
            "ca.conf",
            "-keyfile",
            "x509-ca-key.pem",
            "-cert",
            "x509-ca.pem",
        ];
        args.extend(extra);
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(self.pki.dir.path())
            .output()
            .expect("openssl is needed (apt-get install openssl, or run .ci/run)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Marks the certificate in `cert_file` (in the PKI directory) revoked.
    pub fn revoke(&self, cert_file: &str) {
        self.run(&["-revoke", cert_file]);
    }

    /// Writes a CRL of everything revoked so far to `out`; returns its path.
    pub fn crl(&self, out: &str, extra: &[&str]) -> String {
        let mut args = vec!["-gencrl", "-out", out];
        args.extend(extra);
        self.run(&args);
        self.pki.file(out)
    }
}

/// Reads from a plain socket until EOF; returns the bytes and whether it
/// ended with EOF (true) or a reset/error (false).
pub fn read_plain_to_end(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (data, true),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (data, false),
        }
    }
}

/// Deterministic pseudo-random bytes (NULs included).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes all of `data` to a blocking writer.
pub fn send_all(w: &mut impl Write, data: &[u8]) {
    w.write_all(data).expect("write");
    w.flush().expect("flush");
}

impl Daemon {
    /// The `session end:` line of the client whose local address is `client`.
    pub fn session_end(&self, client: SocketAddr, timeout: Duration) -> Option<String> {
        let client = client.to_string();
        self.wait_lines(
            |l| l.contains(" session end: ") && end_field(l, "client") == Some(&client),
            1,
            timeout,
        )
        .map(|mut v| v.remove(0))
    }
}

/// The `key=value` pairs of a log line, in order; a value keeps its quotes
/// and escapes (see `logfmt_unquote`), and a word without `=` (the
/// timestamp, the message) has an empty value. A logfmt tokenizer, so text
/// inside a quoted value is never taken for a field.
pub fn log_pairs(line: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'=' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i >= bytes.len() || bytes[i] != b'=' {
            pairs.push((key, ""));
            continue;
        }
        i += 1;
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
        }
        pairs.push((key, &line[value_start..i]));
    }
    pairs
}

/// A quoted logfmt value's text (`\"`, `\\`, `\n`, `\t`, `\r`, `\uXXXX`);
/// a bare value as it is.
pub fn logfmt_unquote(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.to_string();
    };
    // UTF-16 units: code points above U+FFFF arrive as surrogate pairs, as in JSON.
    let mut units: Vec<u16> = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let c = if c != '\\' {
            c
        } else {
            match chars.next() {
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    units.push(u16::from_str_radix(&hex, 16).expect("\\uXXXX"));
                    continue;
                }
                Some(other) => other,
                None => break,
            }
        };
        units.extend(c.encode_utf16(&mut [0; 2]).iter());
    }
    String::from_utf16(&units).expect("valid UTF-16")
}

/// The raw value of `name` in a log line (quotes included, see `log_pairs`).
pub fn end_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    log_pairs(line)
        .into_iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `reason=` token of a `session end:` line.
pub fn end_reason(line: &str) -> &str {
    end_field(line, "reason").unwrap_or("")
}

/// The `detail=` of a `session end:` line, unquoted; empty without one.
pub fn end_detail(line: &str) -> String {
    end_field(line, "detail").map_or(String::new(), logfmt_unquote)
}

impl Backend {
    /// Like [`Backend::accept`], but gives up after `timeout` instead of
    /// blocking forever when the daemon never connects.
    pub fn accept_within(&self, timeout: Duration) -> Option<(TcpStream, String)> {
        wait_readable(self.listener.as_raw_fd(), timeout).then(|| self.accept())
    }
}

/// Waits until `fd` is readable (or a listener has a connection).
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc == 1
}

/// Makes closing `s` send a TCP RST instead of a FIN (SO_LINGER 0).
pub fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid linger struct and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Like [`connect`], but keeps the stream when the handshake fails, so the
/// caller still knows its local address and can read the server's alert.
pub fn try_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> (TlsStream, io::Result<()>) {
    let tcp = TcpStream::connect(addr).expect("TCP connect");
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
        .expect("client connection");
    let mut stream = StreamOwned::new(conn, tcp);
    let mut result = Ok(());
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            result = Err(e);
            break;
        }
    }
    (stream, result)
}

/// Sends `send` and, at the same time, reads until `expect` plaintext bytes
/// arrived (two threads over one rustls connection), so neither direction
/// waits for the other. Panics on any error or an early end (or after 10 s
/// without progress: sets the socket's write timeout).
pub fn duplex(stream: TlsStream, send: &[u8], expect: usize) -> (TlsStream, Vec<u8>) {
    let StreamOwned { conn, sock } = stream;
    sock.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let conn = Mutex::new(conn);
    let mut wsock = sock.try_clone().expect("clone socket");
    let mut rsock = sock;
    let received = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for chunk in send.chunks(16 * 1024) {
                let mut out = Vec::new();
                {
                    let mut c = conn.lock().unwrap();
                    c.writer().write_all(chunk).expect("plaintext into rustls");
                    while c.wants_write() {
                        c.write_tls(&mut out).expect("rustls output");
                    }
                }
                wsock.write_all(&out).expect("send");
            }
        });
        let mut received = Vec::with_capacity(expect);
        let mut buf = vec![0u8; 64 * 1024];
        while received.len() < expect {
            let n = rsock.read(&mut buf).expect("receive");
            assert!(n > 0, "EOF after {} of {expect} bytes", received.len());
            let mut c = conn.lock().unwrap();
            let mut input = &buf[..n];
            while !input.is_empty() {
                c.read_tls(&mut input).expect("read_tls");
                c.process_new_packets().expect("TLS error");
                loop {
                    let mut plain = [0u8; 16 * 1024];
                    match c.reader().read(&mut plain) {
                        Ok(0) => panic!("close_notify after {} bytes", received.len()),
                        Ok(n) => received.extend_from_slice(&plain[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        }
        writer.join().expect("writer thread");
        received
    });
    (
        StreamOwned::new(conn.into_inner().unwrap(), rsock),
        received,
    )
}

/// The client side's local address (how the log names the session).
pub fn local(client: &TlsStream) -> SocketAddr {
    client.sock.local_addr().unwrap()
}

/// The session-end line for `client`, or a panic showing the whole log.
pub fn end_line(daemon: &Daemon, client: SocketAddr) -> String {
    daemon
        .session_end(client, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no session end for {client}: {:#?}", daemon.log_lines()))
}

pub fn assert_reason(line: &str, expected: &str) {
    assert_eq!(end_reason(line), expected, "{line}");
}

/// The daemon's open descriptors, from /proc.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Waits (up to 10 s) for the daemon's descriptor count to be `want`.
pub fn wait_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = open_fds(pid);
        if n == want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
