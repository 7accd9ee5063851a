//! The daemon's listening sockets, and when accepting pauses: descriptors
//! ran out (retried every [`ACCEPT_RETRY`]), or admission has no room
//! (retried once the loop has handled its next events). Meanwhile new
//! clients wait in the kernel's listen backlog, and each pause is logged
//! once, with a line when accepting resumes.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::daemon::hooks::{debug, info, warn};
use crate::daemon::sys;
use crate::identity::addr::{self, Show};

/// Connections the kernel queues for us (mio binds with 128, which a burst
/// of clients outruns; Linux caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// How long accepting pauses after running out of descriptors.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Every listening socket, in the order of `--listen`.
pub struct Listeners {
    sockets: Vec<TcpListener>,
    /// Accepting waits for [`Listeners::resume_due`].
    paused: bool,
    /// When a pause for descriptors ends; `None` while paused for admission.
    retry_at: Option<Instant>,
    /// A pause was logged; the next waits until the backlog has been
    /// emptied again.
    limited: bool,
}

impl Listeners {
    /// Binds every address and registers the `i`th under `token(i)`;
    /// errors name the address.
    pub fn bind(
        addrs: &[SocketAddr],
        registry: &Registry,
        token: impl Fn(usize) -> Token,
    ) -> io::Result<Listeners> {
        let mut sockets = Vec::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let mut l = sys::tcp_listener(addr, v6_only(addr, addrs), LISTEN_BACKLOG)
                .map(TcpListener::from_std)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {}: {e}", Show(addr)))
                })?;
            registry.register(&mut l, token(i), Interest::READABLE)?;
            sockets.push(l);
        }
        Ok(Listeners {
            sockets,
            paused: false,
            retry_at: None,
            limited: false,
        })
    }

    /// How many listeners are open (none once closed).
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// No listener is open.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The bound addresses (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The next client from listener `index`, its address in the one form
    /// clients are shown in; `None` when its backlog is empty or accepting
    /// has to pause (descriptors ran out).
    pub fn accept(&mut self, index: usize, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        loop {
            match self.sockets.get(index)?.accept() {
                // One form per client from here on (IPv4, not ::ffff:a.b.c.d).
                Ok((stream, addr)) => return Some((stream, addr::canonical(addr))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.limited {
                        self.limited = false;
                        info!("accepting new connections again");
                    }
                    return None;
                }
                Err(e) if is_resource_limit(&e) => {
                    // Sessions already open keep being served; this logs
                    // once, not on every retry.
                    if !self.limited {
                        self.limited = true;
                        warn!(
                            "cannot accept: {e}; new connections wait in the listen backlog \
                             (retrying every {} ms)",
                            ACCEPT_RETRY.as_millis()
                        );
                    }
                    self.paused = true;
                    self.retry_at = Some(now + ACCEPT_RETRY);
                    return None;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    /// Admission has no room (`--max-sessions` and its refusals in
    /// flight): accepting waits until the loop has handled its next events.
    pub fn full(&mut self, max_sessions: usize) {
        if !self.limited {
            self.limited = true;
            warn!(
                "max-sessions ({max_sessions}) reached and its refusals in flight: new connections wait in the listen backlog"
            );
        }
        self.paused = true;
    }

    /// Whether a pause is over at `now` (it then is: accept from every
    /// listener).
    pub fn resume_due(&mut self, now: Instant) -> bool {
        if !self.paused || self.retry_at.is_some_and(|t| t > now) {
            return false;
        }
        self.paused = false;
        self.retry_at = None;
        true
    }

    /// When a pause for descriptors ends, if one is on.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Closes every listener: from now on, connections are refused.
    pub fn close(&mut self, registry: &Registry) {
        for mut l in self.sockets.drain(..) {
            let _ = registry.deregister(&mut l);
        }
        self.paused = false;
        self.retry_at = None;
    }
}

/// IPV6_V6ONLY for a listener: an IPv6 wildcard leaves IPv4 to a v4
/// listener on the same port (both can bind), and accepts IPv4 itself
/// otherwise, whatever the system default; other addresses keep the default.
fn v6_only(addr: SocketAddr, all: &[SocketAddr]) -> Option<bool> {
    match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            Some(addr.port() != 0 && all.iter().any(|a| a.is_ipv4() && a.port() == addr.port()))
        }
        _ => None,
    }
}

fn is_resource_limit(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
