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

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::session::Stream;
use crate::sys;

/// The backend's address, from `--backend HOST:PORT` or `--backend unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl BackendAddr {
    /// `unix:PATH`, or `HOST:PORT` resolved once, now.
    pub fn parse(v: &str) -> Result<BackendAddr, String> {
        if let Some(path) = v.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{v:?}: empty socket path"));
            }
            return Ok(BackendAddr::Unix(PathBuf::from(path)));
        }
        let mut addrs = v
            .to_socket_addrs()
            .map_err(|e| format!("{v:?} is not HOST:PORT or unix:PATH: {e}"))?;
        addrs
            .next()
            .map(BackendAddr::Tcp)
            .ok_or_else(|| format!("{v:?} resolves to no address"))
    }

    /// Starts a non-blocking connect.
    pub fn connect(&self) -> io::Result<BackendStream> {
        match self {
            BackendAddr::Tcp(addr) => TcpStream::connect(*addr).map(BackendStream::Tcp),
            BackendAddr::Unix(path) => UnixStream::connect(path).map(BackendStream::Unix),
        }
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp(addr) => write!(f, "{addr}"),
            BackendAddr::Unix(path) => write!(f, "unix:{}", path.display()),
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

    #[test]
    fn parse_forms() {
        assert_eq!(
            BackendAddr::parse("127.0.0.1:2023"),
            Ok(BackendAddr::Tcp("127.0.0.1:2023".parse().unwrap()))
        );
        assert_eq!(
            BackendAddr::parse("unix:/run/ncx.sock"),
            Ok(BackendAddr::Unix("/run/ncx.sock".into()))
        );
        assert!(BackendAddr::parse("unix:").is_err());
        assert!(BackendAddr::parse("/run/ncx.sock").is_err());
        assert!(BackendAddr::parse("localhost").is_err());
        assert_eq!(
            BackendAddr::parse("unix:/a b").unwrap().to_string(),
            "unix:/a b"
        );
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
        let mut s = addr.connect().unwrap();
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
