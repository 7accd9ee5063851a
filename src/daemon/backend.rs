//! The socket nctls opens to the NETCONF server, and which of the backend's
//! addresses a session tries next ([`Dialer`]).
//!
//! [`BackendStream`] hides which, so the session code sees one byte stream.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::config::backend::BackendAddr;
use crate::daemon::sys;
use crate::relay::session::{EndReason, Stream};

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
    /// No connection: every address failed, or the socket could not be
    /// registered; the session ends for this reason.
    Failed(EndReason),
}

impl Dialer {
    /// A way through `backend`'s addresses from the first; nothing tried yet.
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
    /// once is noted and the one after it tried. A registration that fails
    /// is nctls's own failure (epoll out of memory or watches), which the
    /// next address would meet too: the session ends with an internal error.
    pub fn next(
        &mut self,
        mut register: impl FnMut(&mut BackendStream) -> io::Result<()>,
    ) -> Attempt {
        loop {
            let i = self.current.map_or(0, |i| i + 1);
            if i >= self.backend.address_count() {
                return Attempt::Failed(self.outcome());
            }
            self.current = Some(i);
            match connect_to(&self.backend, i) {
                Ok(mut socket) => {
                    return match register(&mut socket) {
                        Ok(()) => Attempt::Started(socket),
                        Err(e) => Attempt::Failed(EndReason::InternalError(format!(
                            "cannot register the backend socket: {e}"
                        ))),
                    }
                }
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

/// Starts a non-blocking connect to `backend`'s `i`th address.
fn connect_to(backend: &BackendAddr, i: usize) -> io::Result<BackendStream> {
    match backend {
        BackendAddr::Tcp { addrs, .. } => TcpStream::connect(addrs[i]).map(BackendStream::Tcp),
        BackendAddr::Unix(path) => UnixStream::connect(path).map(BackendStream::Unix),
    }
}

/// A connection to the backend.
#[derive(Debug)]
pub enum BackendStream {
    /// To `--backend HOST:PORT`.
    Tcp(TcpStream),
    /// To `--backend unix:PATH`.
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
    use std::net::SocketAddr;

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
                Attempt::Failed(why) => panic!("{why}"),
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
            Attempt::Failed(EndReason::ConnectTimeout)
        ));
        // One refused, one silent: unreachable, saying what each did.
        let mut dialer = Dialer::new(&backend);
        assert!(matches!(dialer.next(|_| Ok(())), Attempt::Started(_)));
        dialer.failed(&io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(dialer.next(|_| Ok(())), Attempt::Started(_)));
        dialer.timed_out();
        match dialer.next(|_| Ok(())) {
            Attempt::Failed(EndReason::BackendUnreachable(why)) => assert_eq!(
                why,
                format!("{a}: connection refused; {b}: no answer within the connect timeout")
            ),
            other => panic!("{other:?}"),
        }
        // A registration that fails is nctls's failure, not the address's.
        let mut dialer = Dialer::new(&backend);
        match dialer.next(|_| Err(io::Error::other("no room"))) {
            Attempt::Failed(EndReason::InternalError(why)) => {
                assert_eq!(why, "cannot register the backend socket: no room")
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
