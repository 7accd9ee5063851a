//! A connection's own event loop: one `mio::Poll` for its two sockets and
//! the waker of `nctls_conn_stop`, driving the daemon's connection driver.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::{Events, Poll, Registry, Token, Waker};

use nctls::daemon::conn::{Connection, Step, Tokens};
use nctls::relay::session::Side;

/// The connection's two sockets on its poll.
pub(super) const TOKENS: Tokens = Tokens {
    client: Token(0),
    backend: Token(1),
};
/// `nctls_conn_stop`'s waker.
const WAKE: Token = Token(2);

/// What one read from the backend may bring (as in the daemon).
const SCRATCH: usize = 64 * 1024;

/// What `nctls_conn_stop` touches, from any thread.
pub(super) struct ConnStop {
    pub(super) requested: AtomicBool,
    pub(super) waker: Waker,
}

/// The connection's own event loop.
pub(super) struct EventLoop {
    poll: Poll,
    events: Events,
    stop: Arc<ConnStop>,
    /// `nctls_conn_stop` has been acted on.
    stopped: bool,
    scratch: Vec<u8>,
}

impl EventLoop {
    /// A poll with the stop waker on it; the stop part is shared with the
    /// connection object.
    pub(super) fn new() -> io::Result<(EventLoop, Arc<ConnStop>)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let stop = Arc::new(ConnStop {
            requested: AtomicBool::new(false),
            waker,
        });
        let event_loop = EventLoop {
            poll,
            events: Events::with_capacity(8),
            stop: stop.clone(),
            stopped: false,
            scratch: vec![0; SCRATCH],
        };
        Ok((event_loop, stop))
    }

    pub(super) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Drives `conn` until it needs the caller: [`Step::Identify`] or
    /// [`Step::Ended`] (also when the poll fails: an internal error).
    pub(super) fn drive(&mut self, conn: &mut Connection) -> Step {
        loop {
            let now = Instant::now();
            if !self.stopped && self.stop.requested.load(Ordering::SeqCst) {
                self.stopped = true;
                conn.shutdown(now);
            }
            match conn.run(&mut self.scratch, now) {
                Step::Wait => {}
                Step::Started => continue,
                done @ (Step::Identify | Step::Ended) => return done,
            }
            let timeout = conn.deadline().map(|d| d.saturating_duration_since(now));
            match self.poll.poll(&mut self.events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    conn.fail(format!("poll: {e}"), now);
                    return Step::Ended;
                }
                Ok(()) => {}
            }
            let now = Instant::now();
            let registry = self.poll.registry();
            for event in self.events.iter() {
                match event.token() {
                    t if t == TOKENS.client => conn.on_event(Side::Client, event, registry, now),
                    t if t == TOKENS.backend => conn.on_event(Side::Backend, event, registry, now),
                    _ => {}
                }
            }
            if conn.deadline().is_some_and(|d| d <= now) {
                conn.on_deadline(registry, now);
            }
        }
    }

    /// The poll's epoll descriptor, for the tests that break it.
    #[cfg(test)]
    pub(super) fn epoll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
    }
}
