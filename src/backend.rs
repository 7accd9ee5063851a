//! Where the NETCONF server listens and the socket nctls opens to it: a TCP
//! port (ConfD's `netconf/transport/tcp`) or a unix socket (yuma123
//! netconfd's ncxserver socket, ConfD IPC on a unix path).
//!
//! [`BackendStream`] hides which, so the session code sees one byte stream.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::addr::{self, Show};
use crate::session::{EndReason, Stream};
use crate::sys;

/// The backend's address, from `--backend HOST:PORT` or `--backend unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendAddr {
    /// `name` as written; `addrs` every address it resolved to, in the
    /// resolver's order (RFC 6724: `localhost` may give `::1` first), never
    /// empty. A session tries them in that order ([`Dialer`]).
    Tcp {
        name: String,
        addrs: Arc<[SocketAddr]>,
    },
    Unix(PathBuf),
}

impl BackendAddr {
    /// `unix:PATH`, a literal `IP:PORT` (IPv6 as `[::1]:2023`, a zone as
    /// `[fe80::1%eth0]:2023`), or `HOST:PORT` resolved now to all its
    /// addresses. Resolving may block (DNS): never call it on the event loop.
    pub fn parse(v: &str) -> Result<BackendAddr, String> {
        if let Some(path) = v.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{v:?}: empty socket path"));
            }
            return Ok(BackendAddr::Unix(PathBuf::from(path)));
        }
        let tcp = |addrs: Vec<SocketAddr>| BackendAddr::Tcp {
            name: v.to_string(),
            addrs: addrs.into(),
        };
        if let Ok(addr) = addr::parse_ip_port(v) {
            return Ok(tcp(vec![addr]));
        }
        let (host, port) = v
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| format!("{v:?} is not HOST:PORT or unix:PATH"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{v:?}: cannot resolve {host:?}: {e}"))?
        {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(format!("{v:?} resolves to no address"));
        }
        Ok(tcp(addrs))
    }

    /// Every address a session may try, as text (`--check`, logs).
    pub fn addresses(&self) -> Vec<String> {
        match self {
            BackendAddr::Tcp { addrs, .. } => addrs.iter().map(|a| Show(*a).to_string()).collect(),
            BackendAddr::Unix(_) => vec![self.to_string()],
        }
    }

    /// How many addresses a session may try.
    fn len(&self) -> usize {
        match self {
            BackendAddr::Tcp { addrs, .. } => addrs.len(),
            BackendAddr::Unix(_) => 1,
        }
    }

    /// Starts a non-blocking connect to the `i`th address.
    fn connect_to(&self, i: usize) -> io::Result<BackendStream> {
        match self {
            BackendAddr::Tcp { addrs, .. } => TcpStream::connect(addrs[i]).map(BackendStream::Tcp),
            BackendAddr::Unix(path) => UnixStream::connect(path).map(BackendStream::Unix),
        }
    }

    fn describe(&self, i: usize) -> String {
        match self {
            BackendAddr::Tcp { addrs, .. } => Show(addrs[i]).to_string(),
            BackendAddr::Unix(_) => self.to_string(),
        }
    }
}

impl fmt::Display for BackendAddr {
    /// As written: `localhost:2023`, `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp { name, .. } => f.write_str(name),
            BackendAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One session's way through the backend's addresses, in order: an
/// address that refuses (or is unreachable) gives way to the next at once,
/// one that does not answer within `--connect-timeout` after that. The
/// daemon's loop and the C connection API both drive their connects with it.
#[derive(Debug)]
pub struct Dialer {
    backend: BackendAddr,
    /// The address of the attempt in progress (or that connected).
    current: Option<usize>,
    /// `ADDRESS: why` for each address that failed.
    failures: Vec<String>,
    /// Every failure so far was a connect timeout.
    only_timeouts: bool,
}

/// Whether a connect outcome means the address failed (refused,
/// unreachable: try the next). A reset right after connecting is a
/// connection the backend dropped, which the session reports as such.
pub fn is_address_failure(result: &io::Result<()>) -> bool {
    matches!(result, Err(e) if e.kind() != io::ErrorKind::ConnectionReset)
}

/// What [`Dialer::next`] did.
#[derive(Debug)]
pub enum Attempt {
    /// Connecting to the next address; wait for the socket to be writable.
    Started(BackendStream),
    /// Every address failed: the session ends for this reason.
    Exhausted(EndReason),
}

impl Dialer {
    pub fn new(backend: &BackendAddr) -> Dialer {
        Dialer {
            backend: backend.clone(),
            current: None,
            failures: Vec::new(),
            only_timeouts: true,
        }
    }

    /// Starts connecting to the next address and hands the socket to
    /// `register` (poll registration); an address whose connect fails at
    /// once is noted and the one after it tried.
    pub fn next(
        &mut self,
        mut register: impl FnMut(&mut BackendStream) -> io::Result<()>,
    ) -> Attempt {
        loop {
            let i = self.current.map_or(0, |i| i + 1);
            if i >= self.backend.len() {
                return Attempt::Exhausted(self.outcome());
            }
            self.current = Some(i);
            let started = self.backend.connect_to(i).and_then(|mut socket| {
                register(&mut socket)?;
                Ok(socket)
            });
            match started {
                Ok(socket) => return Attempt::Started(socket),
                Err(e) => self.failed(&e),
            }
        }
    }

    /// The attempt in progress failed (refused, unreachable): call
    /// [`Dialer::next`] to go on.
    pub fn failed(&mut self, e: &io::Error) {
        self.only_timeouts = false;
        self.note(e.to_string());
    }

    /// The attempt in progress got no answer within the connect timeout.
    pub fn timed_out(&mut self) {
        self.note("no answer within the connect timeout".into());
    }

    fn note(&mut self, why: String) {
        if let Some(i) = self.current {
            self.failures
                .push(format!("{}: {why}", self.backend.describe(i)));
        }
    }

    /// The address of the attempt in progress, which is the one serving
    /// once connected.
    pub fn current(&self) -> Option<String> {
        self.current.map(|i| self.backend.describe(i))
    }

    /// How a session ends when no address connected: a timeout if every
    /// address was silent, otherwise what each address said.
    fn outcome(&self) -> EndReason {
        if self.only_timeouts && !self.failures.is_empty() {
            EndReason::ConnectTimeout
        } else {
            EndReason::BackendUnreachable(self.failures.join("; "))
        }
    }
}

/// A connection to the backend.
#[derive(Debug)]
pub enum BackendStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl BackendStream {
    /// `None` while still connecting; the outcome once known.
    pub fn connect_result(&self) -> Option<io::Result<()>> {
        let (error, peer) = match self {
            BackendStream::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            BackendStream::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
        };
        match error {
            Ok(Some(e)) | Err(e) => return Some(Err(e)),
            Ok(None) => {}
        }
        match peer {
            Ok(()) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Small writes (RPCs, `<ok/>`) should not wait for Nagle.
    pub fn set_nodelay(&self) {
        if let BackendStream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }
}

impl BackendStream {
    /// Stops polling it before it is dropped. After a truncated session the
    /// close that follows is a reset (SO_LINGER 0), so the backend cannot
    /// take a cut-off session for a clean end.
    pub fn release(&mut self, registry: &Registry, truncated: bool) {
        let _ = registry.deregister(self);
        if truncated {
            let _ = sys::set_abortive_close(self.as_raw_fd());
        }
    }
}

impl Read for BackendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.read(buf),
            BackendStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for BackendStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // std's TcpStream::write already uses send(MSG_NOSIGNAL).
            BackendStream::Tcp(s) => s.write(buf),
            // UnixStream::write is write(2), which raises SIGPIPE on a
            // closed peer; a library inside a C host must not.
            BackendStream::Unix(s) => sys::send_nosignal(s.as_raw_fd(), buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for BackendStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => s.shutdown(Shutdown::Write),
            BackendStream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl AsRawFd for BackendStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            BackendStream::Tcp(s) => s.as_raw_fd(),
            BackendStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Source for BackendStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => s.register(registry, token, interests),
            BackendStream::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => s.reregister(registry, token, interests),
            BackendStream::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            BackendStream::Tcp(s) => s.deregister(registry),
            BackendStream::Unix(s) => s.deregister(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(name: &str, addrs: &[&str]) -> BackendAddr {
        BackendAddr::Tcp {
            name: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            BackendAddr::parse("127.0.0.1:2023"),
            Ok(tcp("127.0.0.1:2023", &["127.0.0.1:2023"]))
        );
        assert_eq!(
            BackendAddr::parse("unix:/run/ncx.sock"),
            Ok(BackendAddr::Unix("/run/ncx.sock".into()))
        );
        assert!(BackendAddr::parse("unix:").is_err());
        assert!(BackendAddr::parse("/run/ncx.sock").is_err());
        assert!(BackendAddr::parse("localhost").is_err());
        assert!(BackendAddr::parse(":2023").is_err());
        assert_eq!(
            BackendAddr::parse("unix:/a b").unwrap().to_string(),
            "unix:/a b"
        );
        let zoned = BackendAddr::parse("[fe80::1%lo]:2023").unwrap();
        assert_eq!(zoned.to_string(), "[fe80::1%lo]:2023");
        assert_eq!(zoned.addresses(), ["[fe80::1%lo]:2023"]);
        // A name keeps its spelling and gets every address.
        let named = BackendAddr::parse("localhost:2023").unwrap();
        assert_eq!(named.to_string(), "localhost:2023");
        assert!(named.addresses().contains(&"127.0.0.1:2023".to_string()));
        let err = BackendAddr::parse("no-such-host.invalid:2023").unwrap_err();
        assert!(err.contains("cannot resolve"), "{err}");
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// Waits for a connect's outcome (a test has no poll loop).
    fn outcome(socket: &BackendStream) -> io::Result<()> {
        for _ in 0..500 {
            if let Some(result) = socket.connect_result() {
                return result;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("no connect outcome");
    }

    #[test]
    fn dialer_goes_past_refusing_addresses_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (dead1, dead2) = (closed_port(), closed_port());
        let live = listener.local_addr().unwrap();
        let backend = BackendAddr::Tcp {
            name: "test".into(),
            addrs: vec![dead1, dead2, live].into(),
        };
        let mut dialer = Dialer::new(&backend);
        let mut registered = 0;
        loop {
            match dialer.next(|_| {
                registered += 1;
                Ok(())
            }) {
                Attempt::Started(socket) => match outcome(&socket) {
                    Ok(()) => break,
                    Err(e) => dialer.failed(&e),
                },
                Attempt::Exhausted(why) => panic!("{why}"),
            }
        }
        assert_eq!(dialer.current(), Some(live.to_string()), "the one serving");
        assert!(registered >= 1);
        assert_eq!(dialer.failures.len(), 2, "{:?}", dialer.failures);
        assert!(dialer.failures[0].starts_with(&format!("{dead1}: ")));
    }

    /// The bookkeeping only: the outcomes are told to the dialer (the
    /// sockets are loopback ports nothing listens on).
    #[test]
    fn dialer_outcome_when_every_address_failed() {
        let (a, b) = (closed_port(), closed_port());
        let backend = BackendAddr::Tcp {
            name: "test".into(),
            addrs: vec![a, b].into(),
        };
        // Two silent addresses: a connect timeout.
        let mut dialer = Dialer::new(&backend);
        for _ in 0..2 {
            assert!(matches!(dialer.next(|_| Ok(())), Attempt::Started(_)));
            dialer.timed_out();
        }
        assert!(matches!(
            dialer.next(|_| Ok(())),
            Attempt::Exhausted(EndReason::ConnectTimeout)
        ));
        // One refused, one silent: unreachable, saying what each did.
        let mut dialer = Dialer::new(&backend);
        assert!(matches!(dialer.next(|_| Ok(())), Attempt::Started(_)));
        dialer.failed(&io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(dialer.next(|_| Ok(())), Attempt::Started(_)));
        dialer.timed_out();
        match dialer.next(|_| Ok(())) {
            Attempt::Exhausted(EndReason::BackendUnreachable(why)) => assert_eq!(
                why,
                format!("{a}: connection refused; {b}: no answer within the connect timeout")
            ),
            other => panic!("{other:?}"),
        }
        // A registration that fails counts as that address failing.
        let mut dialer = Dialer::new(&backend);
        match dialer.next(|_| Err(io::Error::other("no room"))) {
            Attempt::Exhausted(EndReason::BackendUnreachable(why)) => {
                assert!(why.contains(&format!("{b}: no room")), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A unix backend: connect, bytes both ways, half-close seen as EOF,
    /// and a write to a closed peer is an error, not a signal.
    #[test]
    fn unix_stream_relays_and_half_closes() {
        let dir = std::env::temp_dir().join(format!("nctls-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let addr = BackendAddr::Unix(path.clone());
        let Attempt::Started(mut s) = Dialer::new(&addr).next(|_| Ok(())) else {
            panic!("no connect");
        };
        let (mut peer, _) = listener.accept().unwrap();
        assert!(matches!(s.connect_result(), Some(Ok(()))));
        assert_eq!(s.write(b"hello").unwrap(), 5);
        s.shutdown_write().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        peer.write_all(b"reply").unwrap();
        drop(peer);
        let mut buf = [0u8; 16];
        let mut n = 0;
        for _ in 0..100 {
            match s.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&buf[..n], b"reply");
        assert!(s.write(b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
