//! Hostile input against the real binary: bytes that are not TLS, floods of
//! connections that reset or say nothing, peers that stop reading, backends
//! that misbehave, descriptor exhaustion, and certificates crafted to break
//! the backend header. After each, a normal client must still be served and
//! the daemon's open descriptors must return to their baseline.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use common::*;

/// How long to wait for anything that should happen at once.
const SOON: Duration = Duration::from_secs(5);

const MIB: usize = 1024 * 1024;

/// The spec's bound on the daemon's memory growth under backpressure.
const RSS_BOUND_KIB: u64 = 8 * 1024;

const NETCONF_HELLO: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>";

// ---------------------------------------------------------------------------
// The daemon's resources, from /proc.

fn assert_fds_back(daemon: &Daemon, baseline: usize) {
    let pid = daemon.child.id();
    let now = wait_fds(pid, baseline);
    assert_eq!(
        now, baseline,
        "descriptors leaked: {now} open, baseline {baseline}"
    );
}

/// Resident memory (VmRSS) in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// User plus system CPU time the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses: state is field
    // 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

/// The daemon's largest RSS, sampled every 20 ms from a thread.
struct RssWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::SeqCst) {
                max = max.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(20));
            }
            max.max(rss_kib(pid))
        });
        RssWatch { stop, thread }
    }

    fn max_kib(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("rss watcher")
    }
}

/// Waits until `counter` has not moved for `quiet` (true), or `limit` passed.
fn wait_stalled(counter: &AtomicU64, quiet: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = counter.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = counter.load(Ordering::SeqCst);
        if now != last {
            last = now;
            since = Instant::now();
        } else if last > 0 && since.elapsed() >= quiet {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------
// A backend whose behaviour is scripted per accepted connection.

#[derive(Clone)]
enum Act {
    /// Read the header, then echo every byte until EOF.
    Echo,
    /// Read the header, then send these bytes and close.
    Stream(Arc<Vec<u8>>),
    /// Read the header, then never read again, until [`ScriptedBackend::release`]
    /// (then close with the unread bytes: a reset) or the test ends.
    Hold,
    /// Reset the connection at once (SO_LINGER 0 close), reading nothing.
    Reset,
}

struct ScriptedBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<String>>>,
    /// Bytes an `Act::Stream` connection managed to write so far.
    streamed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Ends every `Act::Hold` connection.
    release: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedBackend {
    /// Connection `i` (in accept order) does `script(i)`.
    fn new(script: impl Fn(usize) -> Act + Send + 'static) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let streamed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let (a, h, st, sp, rl) = (
            accepted.clone(),
            headers.clone(),
            streamed.clone(),
            stop.clone(),
            release.clone(),
        );
        let thread = thread::spawn(move || loop {
            let Ok((s, _)) = listener.accept() else {
                continue;
            };
            if sp.load(Ordering::SeqCst) {
                return;
            }
            let act = script(a.fetch_add(1, Ordering::SeqCst));
            let (h, st, rl) = (h.clone(), st.clone(), rl.clone());
            thread::spawn(move || serve(s, act, &h, &st, &rl));
        });
        ScriptedBackend {
            addr,
            accepted,
            headers,
            streamed,
            stop,
            release,
            thread: Some(thread),
        }
    }

    fn echo() -> ScriptedBackend {
        ScriptedBackend::new(|_| Act::Echo)
    }

    fn arg(&self) -> String {
        self.addr.to_string()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn headers(&self) -> Vec<String> {
        self.headers.lock().unwrap().clone()
    }

    fn release(&self) {
        self.release.store(true, Ordering::SeqCst);
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    act: Act,
    headers: &Mutex<Vec<String>>,
    streamed: &AtomicU64,
    release: &AtomicBool,
) {
    if let Act::Reset = act {
        set_linger_zero(&s);
        return;
    }
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let header = read_header(&mut s);
    headers.lock().unwrap().push(header);
    match act {
        Act::Echo => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        Act::Stream(data) => {
            for chunk in data.chunks(64 * 1024) {
                if s.write_all(chunk).is_err() {
                    return;
                }
                streamed.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Act::Hold => {
            while !release.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        Act::Reset => unreachable!(),
    }
}

/// The exact header the daemon's defaults give `user` connecting from `client`.
fn expected_header(user: &str, client: SocketAddr) -> String {
    format!(
        "[{user};127.0.0.1/{};ssh;9000;100;;/var/confd/homes/{user};;]\n",
        client.port()
    )
}

// ---------------------------------------------------------------------------
// Clients.

/// A normal client is served: its bytes reach the backend after a
/// well-formed header, the echo comes back, and its close_notify ends the
/// session cleanly. The backend must echo (`Act::Echo`) this connection.
fn assert_served(daemon: &Daemon, pki: &Pki, backend: &ScriptedBackend) {
    let mut c = connect(daemon.addr, pki.client("admin", Version::Tls13))
        .expect("a normal client completes its handshake");
    let addr = local(&c);
    c.write_all(NETCONF_HELLO).unwrap();
    let mut back = vec![0u8; NETCONF_HELLO.len()];
    c.read_exact(&mut back).expect("the echo comes back");
    assert_eq!(back, NETCONF_HELLO);
    send_close_notify(&mut c);
    let (rest, ending) = read_to_end(&mut c);
    assert!(rest.is_empty(), "{} stray bytes", rest.len());
    assert_eq!(ending, Ending::CloseNotify);
    assert_reason(&end_line(daemon, addr), "client-close-notify");
    let want = expected_header("admin", addr);
    assert!(
        backend.headers().contains(&want),
        "header {want:?} not among {:?}",
        backend.headers()
    );
}

/// After the attack: a normal client is served, the daemon is alive and
/// its descriptors are back at `baseline`.
fn assert_recovered(daemon: &mut Daemon, pki: &Pki, backend: &ScriptedBackend, baseline: usize) {
    assert_served(daemon, pki, backend);
    assert_alive(daemon);
    assert_fds_back(daemon, baseline);
}

fn assert_alive(daemon: &mut Daemon) {
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited: {:#?}",
        daemon.log_lines()
    );
}

/// The bytes of a real ClientHello, as a TLS 1.3 client sends it first.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let mut conn = ClientConnection::new(
        pki.client("admin", Version::Tls13),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16, "a handshake record");
    out
}

// ---------------------------------------------------------------------------
// Not TLS.

/// Random bytes, a ClientHello cut in half, a NETCONF hello in plaintext and
/// an HTTP request on the TLS port: each connection ends (at once, or for the
/// half ClientHello at the handshake timeout) with at most a TLS alert, the
/// backend is never contacted, and a normal client is served afterwards.
#[test]
fn not_a_client_hello() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--handshake-timeout", "1"],
    );
    let baseline = open_fds(daemon.child.id());
    let hello = client_hello(&pki);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "1 MiB of random bytes",
            random_bytes(MIB, 7),
            "handshake-failed",
        ),
        (
            "a truncated ClientHello",
            hello[..hello.len() / 2].to_vec(),
            "handshake-timeout",
        ),
        (
            "a plaintext NETCONF hello",
            NETCONF_HELLO.to_vec(),
            "handshake-failed",
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            "handshake-failed",
        ),
    ];
    for (what, bytes, reason) in cases {
        let mut s = TcpStream::connect(daemon.addr).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.set_write_timeout(Some(SOON)).unwrap();
        let addr = s.local_addr().unwrap();
        let start = Instant::now();
        // The daemon may stop reading (and close) before it has it all.
        let wrote = s.write_all(&bytes);
        let (reply, clean) = read_plain_to_end(&mut s);
        let took = start.elapsed();
        let line = end_line(&daemon, addr);
        eprintln!(
            "{what}: write {wrote:?}, reply {:02x?}, {}, after {took:?}; {}",
            &reply[..reply.len().min(16)],
            if clean { "EOF" } else { "reset" },
            end_reason(&line)
        );
        assert_reason(&line, reason);
        assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
        if reason == "handshake-timeout" {
            assert!(took >= Duration::from_millis(900), "{what}: {took:?}");
            assert!(reply.is_empty(), "{what}: {reply:02x?}");
        } else {
            assert!(
                took < Duration::from_millis(900),
                "{what}: not rejected at once: {took:?}"
            );
            // Nothing, or one alert record (content type 21, 2-byte body).
            assert!(
                reply.is_empty() || (reply.len() == 7 && reply[0] == 0x15 && reply[5] == 2),
                "{what}: {reply:02x?}"
            );
        }
    }
    assert_eq!(backend.accepted(), 0, "the backend was contacted");
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

// ---------------------------------------------------------------------------
// Connection floods.

/// 500 connections reset (SO_LINGER 0) right after connecting: each is one
/// failed handshake, none reaches the backend, nothing leaks, and a normal
/// client is served. Opened in batches of 100 that the daemon catches up
/// with, so no burst outgrows the listen backlog (that is the next test).
#[test]
fn five_hundred_connections_reset_at_once() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    // Connections that never send a byte are health checks, logged at debug.
    let mut daemon = Daemon::start_with(&pki, &["--backend", &backend.arg()], |c| {
        c.env("RUST_LOG", "debug");
    });
    let baseline = open_fds(daemon.child.id());
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for batch in 1..=5 {
        for _ in 0..100 {
            let t = Instant::now();
            let s = TcpStream::connect(daemon.addr).expect("connect");
            slowest = slowest.max(t.elapsed());
            set_linger_zero(&s);
            drop(s);
        }
        daemon
            .wait_logs("reason=handshake-failed", batch * 100, SOON)
            .unwrap_or_else(|| {
                let n = daemon
                    .log_lines()
                    .iter()
                    .filter(|l| l.contains("reason=handshake-failed"))
                    .count();
                panic!(
                    "{n} of {} reset connections logged a failed handshake",
                    batch * 100
                )
            });
    }
    eprintln!(
        "500 connect+reset, all ended, in {:?}; slowest connect {slowest:?}",
        start.elapsed()
    );
    assert_served(&daemon, &pki, &backend);
    assert_eq!(
        backend.accepted(),
        1,
        "only the normal client reaches the backend"
    );
    assert_alive(&mut daemon);
    assert_fds_back(&daemon, baseline);
}

/// The same 500 connect-and-reset, back to back: a burst must wait in the
/// listen backlog, not have its SYNs dropped (each drop costs the client a
/// 1 s retransmission). The README promises a backlog as the waiting room
/// past the refusal budget, and `--max-sessions` defaults to 1000.
#[test]
fn a_burst_of_connections_fits_in_the_listen_backlog() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    // Connections that never send a byte are health checks, logged at debug.
    let mut daemon = Daemon::start_with(&pki, &["--backend", &backend.arg()], |c| {
        c.env("RUST_LOG", "debug");
    });
    let mut slow = Vec::new();
    let start = Instant::now();
    for i in 0..500 {
        let t = Instant::now();
        let s = TcpStream::connect(daemon.addr).expect("connect");
        if t.elapsed() > Duration::from_millis(500) {
            slow.push((i, t.elapsed()));
        }
        set_linger_zero(&s);
        drop(s);
    }
    eprintln!(
        "500 back to back in {:?}; slow connects: {slow:?}",
        start.elapsed()
    );
    daemon
        .wait_logs("reason=handshake-failed", 500, SOON)
        .expect("every connection ended");
    assert!(
        slow.is_empty(),
        "connects that waited for a SYN retransmission: {slow:?}"
    );
    assert_served(&daemon, &pki, &backend);
    assert_alive(&mut daemon);
}

/// 200 connections that complete TCP and send nothing: a normal client is
/// served while the daemon still holds them all, and each is closed by the
/// handshake timeout (1 s) — not before, and not much after.
#[test]
fn two_hundred_silent_connections_time_out_while_others_are_served() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--handshake-timeout", "1"],
    );
    let pid = daemon.child.id();
    let baseline = open_fds(pid);
    // In batches of 50 that the daemon has accepted before the next, so the
    // listen backlog never overflows (a dropped SYN costs a 1 s retransmit).
    let mut silent: Vec<(TcpStream, Instant)> = Vec::new();
    for _ in 0..4 {
        for _ in 0..50 {
            let s = TcpStream::connect(daemon.addr).expect("connect");
            s.set_read_timeout(Some(SOON)).unwrap();
            silent.push((s, Instant::now()));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while open_fds(pid) < baseline + silent.len() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let opened = silent[0].1.elapsed();
    assert_served(&daemon, &pki, &backend);
    let held = open_fds(pid);
    let served_after = silent[0].1.elapsed();
    eprintln!("200 silent opened in {opened:?}; normal client served after {served_after:?}; daemon fds {held} (baseline {baseline})");
    assert!(
        daemon
            .wait_log("handshake-timeout", Duration::ZERO)
            .is_none(),
        "the normal client was served only after silent ones timed out ({served_after:?})"
    );
    assert!(
        held >= baseline + 200,
        "the daemon holds {held} fds, baseline {baseline}"
    );

    let mut closed_after = Vec::new();
    for (mut s, opened) in silent {
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        let after = opened.elapsed();
        assert!(
            matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "a silent connection should be closed, not {r:?} after {after:?}"
        );
        closed_after.push(after);
    }
    let first = *closed_after.iter().min().unwrap();
    let last = *closed_after.iter().max().unwrap();
    eprintln!("silent connections closed {first:?}..{last:?} after connecting");
    assert!(
        first >= Duration::from_millis(900),
        "closed early: {first:?}"
    );
    assert!(last < Duration::from_secs(3), "closed late: {last:?}");
    daemon
        .wait_logs("reason=handshake-timeout", 200, SOON)
        .expect("200 handshake timeouts logged");
    assert_eq!(backend.accepted(), 1);
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

/// 100 clients each send 1 MiB of random bytes right after connecting (half
/// of them after a real ClientHello, so the daemon does its handshake work
/// first), while 5 normal sessions echo data: the normal sessions get every
/// byte back, promptly, and end cleanly; every garbage connection is closed.
#[test]
fn garbage_flood_does_not_disturb_live_sessions() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let baseline = open_fds(daemon.child.id());
    let sessions: Vec<TlsStream> = (0..5)
        .map(|_| connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap())
        .collect();
    // 100 different 1 MiB streams: windows into one random buffer.
    let garbage = Arc::new(random_bytes(MIB + 100 * 4099, 99));
    let hello = Arc::new(client_hello(&pki));
    let flood_done = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(5 + 1));

    let echoers: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let (flood_done, go) = (flood_done.clone(), go.clone());
            thread::spawn(move || {
                let mut rounds = 0;
                let mut slowest = Duration::ZERO;
                let mut during_flood = 0;
                go.wait();
                // Bounded: at most 1000 rounds of 16 KiB each way.
                while rounds < 1000 && (rounds < 3 || !flood_done.load(Ordering::SeqCst)) {
                    let flooding = !flood_done.load(Ordering::SeqCst);
                    let data = random_bytes(16 * 1024, (i * 1000 + rounds) as u64 + 1);
                    let t = Instant::now();
                    let (back, got) = duplex(c, &data, data.len());
                    c = back;
                    slowest = slowest.max(t.elapsed());
                    assert!(got == data, "session {i} round {rounds}: bytes differ");
                    rounds += 1;
                    during_flood += usize::from(flooding);
                }
                (c, rounds, during_flood, slowest)
            })
        })
        .collect();

    go.wait();
    let start = Instant::now();
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let (garbage, hello) = (garbage.clone(), hello.clone());
            let addr = daemon.addr;
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(SOON)).unwrap();
                s.set_write_timeout(Some(SOON)).unwrap();
                if i % 2 == 0 {
                    let _ = s.write_all(&hello);
                }
                let _ = s.write_all(&garbage[i * 4099..i * 4099 + MIB]);
                let (_, _) = read_plain_to_end(&mut s);
                let closed = !matches!(
                    s.read(&mut [0u8; 1]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut
                );
                (s.local_addr().unwrap(), closed)
            })
        })
        .collect();
    let flood: Vec<(SocketAddr, bool)> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    let flood_took = start.elapsed();
    flood_done.store(true, Ordering::SeqCst);
    for (addr, closed) in &flood {
        assert!(closed, "garbage connection {addr} was not closed");
    }
    for (i, echoer) in echoers.into_iter().enumerate() {
        let (mut c, rounds, during, slowest) = echoer.join().expect("normal session");
        eprintln!("session {i}: {rounds} rounds, {during} during the flood ({flood_took:?}), slowest {slowest:?}");
        assert!(during >= 1, "session {i} did not overlap the flood");
        assert!(
            slowest < Duration::from_secs(2),
            "session {i}: a round took {slowest:?}"
        );
        let addr = local(&c);
        send_close_notify(&mut c);
        assert_eq!(read_to_end(&mut c), (Vec::new(), Ending::CloseNotify));
        assert_reason(&end_line(&daemon, addr), "client-close-notify");
    }
    for (addr, _) in &flood {
        assert_reason(&end_line(&daemon, *addr), "handshake-failed");
    }
    assert_eq!(backend.accepted(), 5, "garbage never reaches the backend");
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

// ---------------------------------------------------------------------------
// Backpressure.

/// A client stops reading while the backend streams 64 MiB: the daemon
/// stops reading the backend (it stalls well short of 64 MiB) instead of
/// buffering, its RSS grows by less than 8 MiB, another session echoes
/// meanwhile, and once the client reads again all 64 MiB arrive intact.
#[test]
fn client_that_stops_reading_holds_back_the_backend_not_memory() {
    let pki = Pki::new();
    let payload = Arc::new(random_bytes(64 * MIB, 64));
    let stream = payload.clone();
    let backend = ScriptedBackend::new(move |i| {
        if i == 1 {
            Act::Stream(stream.clone())
        } else {
            Act::Echo
        }
    });
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let pid = daemon.child.id();
    let baseline = open_fds(pid);

    let other = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let (other, _) = duplex(other, b"warm-up", 7);
    let rss0 = rss_kib(pid);
    let watch = RssWatch::start(pid);
    let mut slow = connect(daemon.addr, pki.client("admin", Version::Tls12)).unwrap();
    let slow_addr = local(&slow);
    assert!(
        wait_stalled(
            &backend.streamed,
            Duration::from_secs(1),
            Duration::from_secs(20)
        ),
        "the backend never stalled: {} bytes",
        backend.streamed.load(Ordering::SeqCst)
    );
    let stalled_at = backend.streamed.load(Ordering::SeqCst);
    let rss_stalled = rss_kib(pid);

    let data = random_bytes(MIB, 5);
    let t = Instant::now();
    let (mut other, got) = duplex(other, &data, data.len());
    let echo_took = t.elapsed();
    assert!(got == data, "the other session's echo differs");

    // Read everything now: nothing was lost while it was held back.
    slow.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let (received, ending) = read_to_end(&mut slow);
    let read_took = t.elapsed();
    let rss_max = watch.max_kib();
    eprintln!(
        "backend stalled after {:.1} MiB; RSS {rss0} KiB -> {rss_stalled} KiB stalled, max {rss_max} KiB (+{} KiB); \
         1 MiB echo on the other session {echo_took:?}; 64 MiB read in {read_took:?}",
        stalled_at as f64 / MIB as f64,
        rss_max.saturating_sub(rss0)
    );
    assert!(
        stalled_at < 48 * MIB as u64,
        "the daemon kept reading the backend: {stalled_at} bytes"
    );
    assert!(
        rss_max.saturating_sub(rss0) < RSS_BOUND_KIB,
        "RSS grew from {rss0} KiB to {rss_max} KiB"
    );
    assert_eq!(ending, Ending::CloseNotify);
    assert_eq!(received.len(), payload.len());
    assert!(received == *payload, "the streamed bytes differ");
    send_close_notify(&mut slow);
    let line = end_line(&daemon, slow_addr);
    assert_reason(&line, "backend-closed");
    assert_eq!(end_field(&line, "bytes-out"), Some("67108864"), "{line}");

    let other_addr = local(&other);
    send_close_notify(&mut other);
    assert_eq!(read_to_end(&mut other).1, Ending::CloseNotify);
    assert_reason(&end_line(&daemon, other_addr), "client-close-notify");
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

/// The backend accepts and never reads while the client pushes 64 MiB: the
/// client blocks (well short of 64 MiB), the daemon's RSS grows by less
/// than 8 MiB, and another session echoes meanwhile.
#[test]
fn backend_that_never_reads_blocks_the_client_not_memory() {
    let pki = Pki::new();
    let backend = ScriptedBackend::new(|i| if i == 1 { Act::Hold } else { Act::Echo });
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let pid = daemon.child.id();
    let baseline = open_fds(pid);

    let other = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let (other, _) = duplex(other, b"warm-up", 7);
    let rss0 = rss_kib(pid);
    let watch = RssWatch::start(pid);
    let mut pusher = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let pusher_addr = local(&pusher);
    pusher
        .sock
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let push = thread::spawn(move || {
        let data = random_bytes(64 * 1024, 3);
        for _ in 0..(64 * MIB / data.len()) {
            if let Err(e) = pusher.write_all(&data) {
                return format!(
                    "write failed: {e}; then reads {:?}",
                    read_to_end(&mut pusher).1
                );
            }
            counter.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        "sent all 64 MiB".to_string()
    });
    assert!(
        wait_stalled(&sent, Duration::from_secs(1), Duration::from_secs(20)),
        "the client never blocked: {} bytes",
        sent.load(Ordering::SeqCst)
    );
    let stalled_at = sent.load(Ordering::SeqCst);

    let data = random_bytes(MIB, 6);
    let t = Instant::now();
    let (mut other, got) = duplex(other, &data, data.len());
    let echo_took = t.elapsed();
    assert!(got == data, "the other session's echo differs");
    let rss_max = watch.max_kib();
    eprintln!(
        "client blocked after {:.1} MiB; RSS {rss0} KiB -> max {rss_max} KiB (+{} KiB); 1 MiB echo on the other session {echo_took:?}",
        stalled_at as f64 / MIB as f64,
        rss_max.saturating_sub(rss0)
    );
    assert!(
        stalled_at < 48 * MIB as u64,
        "the daemon kept taking the client's bytes: {stalled_at}"
    );
    assert!(
        rss_max.saturating_sub(rss0) < RSS_BOUND_KIB,
        "RSS grew from {rss0} KiB to {rss_max} KiB"
    );

    // The backend closes with the bytes unread (a reset): the daemon ends the
    // session and closes the client's connection, which unblocks the client
    // (its write fails: the daemon's close became a reset, the client's bytes
    // still unread).
    backend.release();
    let finished = push.join().unwrap();
    eprintln!("pusher after the backend reset: {finished}");
    let line = end_line(&daemon, pusher_addr);
    assert!(
        end_reason(&line) == "backend-reset",
        "the backend closed with unread bytes: {line}"
    );
    let other_addr = local(&other);
    send_close_notify(&mut other);
    assert_eq!(read_to_end(&mut other).1, Ending::CloseNotify);
    assert_reason(&end_line(&daemon, other_addr), "client-close-notify");
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

/// Row 3 while the client → backend direction is blocked: the client's
/// bytes wait because the backend does not read, and then the client resets
/// its connection. The session must end at once (backend reset, descriptors
/// freed), not live on with a dead client until the backend reads again.
#[test]
fn client_reset_while_the_backend_is_not_reading_ends_the_session() {
    let pki = Pki::new();
    let backend = ScriptedBackend::new(|_| Act::Hold);
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let pid = daemon.child.id();
    let baseline = open_fds(pid);
    let mut pusher = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    let addr = local(&pusher);
    pusher
        .sock
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let data = random_bytes(64 * 1024, 3);
    let mut sent = 0;
    // Bounded: at most 64 MiB; stops at the first write that times out.
    while sent < 64 * MIB && pusher.write_all(&data).is_ok() {
        sent += data.len();
    }
    assert!(sent < 64 * MIB, "the client never blocked");
    set_linger_zero(&pusher.sock);
    drop(pusher);
    let t = Instant::now();
    let line = daemon.session_end(addr, Duration::from_secs(3));
    eprintln!(
        "client blocked after {sent} bytes, then reset: session end {line:?} after {:?}; daemon fds {} (baseline {baseline})",
        t.elapsed(),
        open_fds(pid)
    );
    let line = line.expect("the session did not end after the client's reset");
    assert!(end_reason(&line).starts_with("client-"), "{line}");
    assert_alive(&mut daemon);
    assert_fds_back(&daemon, baseline);
}

// ---------------------------------------------------------------------------
// A backend that resets.

/// The backend resets (SO_LINGER 0 close) right after accepting, before or
/// after the client has sent anything: the client gets close_notify, the end
/// is logged as `backend-reset: …` or `backend-closed`, and the daemon goes
/// on serving.
#[test]
fn backend_reset_right_after_accept_gives_the_client_close_notify() {
    let pki = Pki::new();
    let backend = ScriptedBackend::new(|i| if i < 4 { Act::Reset } else { Act::Echo });
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let baseline = open_fds(daemon.child.id());
    for version in BOTH {
        for talk_first in [false, true] {
            let label = format!("{version:?}, client talks first: {talk_first}");
            let mut c = connect(daemon.addr, pki.client("admin", version)).unwrap();
            if talk_first {
                c.write_all(NETCONF_HELLO).unwrap();
            }
            let (data, ending) = read_to_end(&mut c);
            assert!(data.is_empty(), "{label}: {} bytes", data.len());
            assert_eq!(ending, Ending::CloseNotify, "{label}");
            // The daemon waits for our answer (row 1) before it logs the end.
            send_close_notify(&mut c);
            let line = end_line(&daemon, local(&c));
            eprintln!("{label}: {}", end_reason(&line));
            // `backend-reset: …` or `backend-closed`; sometimes, wrongly,
            // `backend-unreachable: Connection reset by peer` (see below).
            assert!(end_reason(&line).starts_with("backend-"), "{label}: {line}");
        }
    }
    assert_eq!(backend.accepted(), 4);
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

/// A backend that accepted and then reset was reachable: its end must be
/// logged as `backend-reset: …` (or `backend-closed`), whenever the reset
/// lands. Racy by nature, so 100 tries; 3 to 16 in 100 were misreported.
#[test]
fn backend_reset_after_accept_is_never_logged_as_unreachable() {
    let pki = Pki::new();
    let backend = ScriptedBackend::new(|_| Act::Reset);
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let mut wrong = Vec::new();
    for version in BOTH.iter().cycle().take(100) {
        let mut c = connect(daemon.addr, pki.client("admin", *version)).unwrap();
        assert_eq!(read_to_end(&mut c), (Vec::new(), Ending::CloseNotify));
        send_close_notify(&mut c);
        let line = end_line(&daemon, local(&c));
        let reason = end_reason(&line);
        if !(reason == "backend-reset" || reason == "backend-closed") {
            wrong.push(reason.to_string());
        }
    }
    assert_eq!(backend.accepted(), 100);
    assert!(
        wrong.is_empty(),
        "{} of 100: {:?}",
        wrong.len(),
        wrong.first()
    );
}

// ---------------------------------------------------------------------------
// Descriptor exhaustion.

/// Each distinct session-end reason in the log (numbers masked), with counts.
fn reasons(daemon: &Daemon) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in daemon.log_lines() {
        if !line.contains("session end: ") {
            continue;
        }
        let reason: String = end_reason(&line)
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        match counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => counts.push((reason, 1)),
        }
    }
    counts
}

enum Attempt {
    /// Handshake done, a byte echoed through the backend.
    Live(Box<TlsStream>),
    /// The daemon ended it (close_notify, EOF, reset or alert).
    Ended(String),
    /// Nothing final within the wait: still in the backlog or handshaking.
    Waiting(TcpStream),
}

/// Opens a session and echoes one byte through it, waiting at most `wait`
/// for each read.
fn attempt(addr: SocketAddr, config: Arc<rustls::ClientConfig>, wait: Duration) -> Attempt {
    let tcp = match TcpStream::connect(addr) {
        Ok(tcp) => tcp,
        Err(e) => return Attempt::Ended(format!("connect: {e}")),
    };
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(wait)).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    let waiting = |e: &io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            return if waiting(&e) {
                Attempt::Waiting(s.sock)
            } else {
                Attempt::Ended(format!("handshake: {e}"))
            };
        }
    }
    if let Err(e) = s.write_all(b"?") {
        return Attempt::Ended(format!("write: {e}"));
    }
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Attempt::Live(Box::new(s)),
        Ok(_) => Attempt::Ended("close_notify".into()),
        Err(e) if waiting(&e) => Attempt::Waiting(s.sock),
        Err(e) => Attempt::Ended(e.to_string()),
    }
}

/// With RLIMIT_NOFILE 256 (each session costs two descriptors), 300 clients
/// try to open a session at once: the daemon stays up, says why in its log
/// (`cannot accept` or `max-sessions`), does not spin while exhausted, keeps
/// its live sessions working, and serves new clients once they have gone.
#[test]
fn descriptor_exhaustion_defers_or_refuses_and_recovers() {
    const LIMIT: libc::rlim_t = 256;
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start_with(&pki, &["--backend", &backend.arg()], |command| {
        // SAFETY: the hook runs in the forked child before exec and only
        // calls setrlimit (async-signal-safe) on a struct on its own stack;
        // it neither allocates nor takes locks.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: LIMIT,
                    rlim_max: LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = daemon.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        nofile.split_whitespace().skip(3).take(2).eq(["256", "256"]),
        "{nofile}"
    );
    let baseline = open_fds(pid);

    let config = pki.client("admin", Version::Tls13);
    let start = Instant::now();
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            let config = config.clone();
            let addr = daemon.addr;
            thread::spawn(move || attempt(addr, config, Duration::from_secs(3)))
        })
        .collect();
    let attempts: Vec<Attempt> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    let opened_in = start.elapsed();
    let mut live = Vec::new();
    let mut waiting = Vec::new();
    let mut ended = Vec::new();
    for a in attempts {
        match a {
            Attempt::Live(s) => live.push(s),
            Attempt::Waiting(s) => waiting.push(s),
            Attempt::Ended(why) => ended.push(why),
        }
    }
    let fds_exhausted = open_fds(pid);
    ended.sort();
    ended.dedup();
    eprintln!(
        "300 attempts in {opened_in:?}: {} live, {} waiting, ended: {ended:?}; daemon fds {fds_exhausted} (baseline {baseline}); backend accepted {}",
        live.len(),
        waiting.len(),
        backend.accepted()
    );
    let max_live = (LIMIT as usize - baseline) / 2;
    assert!(
        live.len() <= max_live,
        "{} live sessions in {LIMIT} descriptors",
        live.len()
    );
    // Fewer than that is fine up to a point: a session refused for want of
    // a descriptor for its backend keeps its client socket until the client
    // answers our close_notify (closing earlier would reset it), so how many
    // get in depends on how fast the refused clients go. Most must.
    assert!(
        live.len() >= max_live * 2 / 3,
        "only {} of about {max_live} possible sessions were served",
        live.len()
    );

    // Exhausted: the daemon must idle, not spin.
    let cpu0 = cpu_time(pid);
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time(pid) - cpu0;
    let fds_later = open_fds(pid);
    eprintln!("CPU over 2 s exhausted: {cpu:?}; daemon fds {fds_later}");
    assert!(
        cpu < Duration::from_secs(1),
        "busy while exhausted: {cpu:?} CPU in 2 s"
    );
    assert_alive(&mut daemon);
    eprintln!("session ends so far: {:?}", reasons(&daemon));
    let said = daemon
        .log_lines()
        .into_iter()
        .find(|l| l.contains("cannot accept") || l.contains("max-sessions"));
    eprintln!("limit logged: {said:?}");
    assert!(
        said.is_some(),
        "nothing in the log says why: {:#?}",
        daemon.log_lines().iter().rev().take(20).collect::<Vec<_>>()
    );

    // Live sessions keep working.
    for (i, c) in live.iter_mut().step_by(25).enumerate() {
        let msg = format!("still there {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).expect("a live session echoes");
        assert_eq!(back, msg.as_bytes());
    }

    // Recovery once they are gone.
    drop(waiting);
    for mut c in live {
        send_close_notify(&mut c);
    }
    let closed_at = Instant::now();
    let deadline = closed_at + Duration::from_secs(10);
    let served = loop {
        match attempt(daemon.addr, config.clone(), Duration::from_secs(2)) {
            Attempt::Live(c) => break Some(c),
            _ if Instant::now() > deadline => break None,
            _ => thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(served.is_some(), "no session after the others closed");
    drop(served);
    eprintln!(
        "a new session works {:?} after closing them",
        closed_at.elapsed()
    );
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

// ---------------------------------------------------------------------------
// Certificates.

/// Self-signed, from another CA, expired, not yet valid: the handshake fails
/// with a TLS alert, `handshake-failed` is logged, and the backend is never
/// connected.
#[test]
fn untrusted_or_out_of_date_client_certificates_fail_the_handshake() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let baseline = open_fds(daemon.child.id());
    let other = pki::Ca::new("another CA");
    let cases = [
        ("self-signed", pki::self_signed_client("admin")),
        ("from another CA", other.client("admin")),
        ("expired", pki.ca.expired_client("admin")),
        ("not yet valid", pki.ca.not_yet_valid_client("admin")),
    ];
    for (what, cert) in &cases {
        for version in BOTH {
            let (mut s, result) = try_connect(daemon.addr, client_config(&pki.ca, cert, version));
            let addr = local(&s);
            let err = match result {
                Err(e) => e.to_string(),
                // TLS 1.3: the client learns on its first read.
                Ok(()) => {
                    let _ = s.write_all(b"x");
                    match read_to_end(&mut s) {
                        (_, Ending::Other(e)) => e,
                        other => panic!("{what} {version:?}: {other:?}"),
                    }
                }
            };
            let line = end_line(&daemon, addr);
            eprintln!(
                "{what} {version:?}: client: {err}; daemon: {}",
                end_reason(&line)
            );
            assert!(err.contains("alert"), "{what} {version:?}: {err}");
            assert_reason(&line, "handshake-failed");
        }
    }
    assert_eq!(backend.accepted(), 0, "the backend was contacted");
    assert_recovered(&mut daemon, &pki, &backend, baseline);
}

/// CommonNames with `;`, `[`, `]`, a newline, or 4 KiB: the session is
/// refused with close_notify and a `refused:` log line; the backend is never
/// connected, so no malformed header can reach it.
#[test]
fn common_names_that_would_break_the_header_are_refused() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let mut daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let baseline = open_fds(daemon.child.id());
    let long = "x".repeat(4096);
    let names = [
        "admin;9000",
        "admin]",
        "[admin",
        "admin\nroot",
        long.as_str(),
    ];
    for cn in names {
        for version in BOTH {
            let label = format!("CN {:?} {version:?}", &cn[..cn.len().min(12)]);
            let mut c = connect(daemon.addr, pki.client(cn, version))
                .unwrap_or_else(|e| panic!("{label}: handshake failed: {e}"));
            let _ = c.write_all(NETCONF_HELLO);
            let (data, ending) = read_to_end(&mut c);
            assert!(data.is_empty(), "{label}: {} bytes", data.len());
            assert_eq!(ending, Ending::CloseNotify, "{label}");
        }
    }
    // Found by reason rather than by client address: a CN with a newline
    // splits its session-end line (see the test below).
    let refused = daemon
        .wait_logs("reason=refused ", names.len() * 2, SOON)
        .unwrap_or_else(|| panic!("refusals not logged: {:#?}", daemon.log_lines()));
    assert!(
        refused.iter().all(|l| end_field(l, "user").is_none()),
        "{refused:#?}"
    );
    assert_eq!(backend.accepted(), 0, "the backend was contacted");
    assert_served(&daemon, &pki, &backend);
    assert_eq!(backend.headers().len(), 1);
    assert_alive(&mut daemon);
    assert_fds_back(&daemon, baseline);
}

/// A certificate subject is attacker-chosen text (any CA-issued client
/// picks its CN): it must not be able to split the daemon's log lines or
/// forge one.
#[test]
fn certificate_subject_cannot_forge_log_lines() {
    let pki = Pki::new();
    let backend = ScriptedBackend::echo();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let forged = "x\n2025-01-01T00:00:00.000Z nctls INFO: session end: client=192.0.2.1:1 \
                  subject=\"CN=admin\" user=admin reason=backend-closed";
    let mut c = connect(daemon.addr, pki.client(forged, Version::Tls13)).unwrap();
    assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
    daemon
        .wait_log("reason=refused ", SOON)
        .expect("refusal logged");
    let lines = daemon.log_lines();
    let ends: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("session end: "))
        .collect();
    assert_eq!(
        ends.len(),
        1,
        "one session, one session-end line: {lines:#?}"
    );
    assert!(
        end_reason(ends[0]) == "refused"
            && end_field(ends[0], "client").is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(
            !line.starts_with("2025-01-01T"),
            "a log line forged by the certificate: {line:?}"
        );
    }
}

/// A dNSName SAN with an embedded NUL is no user name: with only
/// `san-dns-name` the session is refused; with `common-name` after it, the
/// rule falls through to the CN.
#[test]
fn san_dns_name_with_an_embedded_nul_is_not_a_name() {
    let pki = Pki::new();
    let cert = pki
        .ca
        .client_with_sans("fallback", &[pki::San::Dns("admin\0.example.com")]);
    assert!(
        cert.der().windows(18).any(|w| w == b"admin\0.example.com"),
        "the NUL is in the certificate"
    );
    let good = pki
        .ca
        .client_with_sans("other", &[pki::San::Dns("Oper.Example")]);
    for version in BOTH {
        let backend = ScriptedBackend::echo();
        let mut daemon = Daemon::start(
            &pki,
            &["--backend", &backend.arg(), "--map", "* san-dns-name"],
        );
        let baseline = open_fds(daemon.child.id());
        let mut c = connect(daemon.addr, client_config(&pki.ca, &cert, version)).unwrap();
        let addr = local(&c);
        let _ = c.write_all(NETCONF_HELLO);
        assert_eq!(read_to_end(&mut c), (Vec::new(), Ending::CloseNotify));
        send_close_notify(&mut c);
        let line = end_line(&daemon, addr);
        eprintln!("{version:?} san-dns-name only: {line}");
        assert_reason(&line, "refused");
        assert_eq!(backend.accepted(), 0, "the backend was contacted");
        // A proper dNSName is still served.
        let mut c = connect(daemon.addr, client_config(&pki.ca, &good, version)).unwrap();
        let addr = local(&c);
        c.write_all(NETCONF_HELLO).unwrap();
        let mut back = vec![0u8; NETCONF_HELLO.len()];
        c.read_exact(&mut back).unwrap();
        send_close_notify(&mut c);
        let _ = read_to_end(&mut c);
        assert_reason(&end_line(&daemon, addr), "client-close-notify");
        assert_eq!(
            backend.headers(),
            vec![expected_header("oper.example", addr)]
        );
        assert_alive(&mut daemon);
        assert_fds_back(&daemon, baseline);

        let backend = ScriptedBackend::echo();
        let daemon = Daemon::start(
            &pki,
            &[
                "--backend",
                &backend.arg(),
                "--map",
                "* san-dns-name",
                "--map",
                "* common-name",
            ],
        );
        let mut c = connect(daemon.addr, client_config(&pki.ca, &cert, version)).unwrap();
        let addr = local(&c);
        c.write_all(NETCONF_HELLO).unwrap();
        let mut back = vec![0u8; NETCONF_HELLO.len()];
        c.read_exact(&mut back).unwrap();
        send_close_notify(&mut c);
        assert_eq!(read_to_end(&mut c).1, Ending::CloseNotify);
        let line = end_line(&daemon, addr);
        assert_eq!(end_field(&line, "user"), Some("fallback"), "{line}");
        assert_eq!(backend.headers(), vec![expected_header("fallback", addr)]);
    }
}
