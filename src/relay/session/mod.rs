//! One relayed session: the TLS handshake, then bytes both ways, and above
//! all how it ends (the close-semantics table in the README is the contract).
//!
//! The session owns no sockets. The event loop (or a test) hands it the two
//! byte streams on every call, tells it which became ready, and the session
//! does everything that can be done without blocking. That keeps this state
//! machine pure enough to unit-test every transition over in-memory streams.
//!
//! Each direction is its own small state:
//! - up (client → backend): `Open` → `Draining` (client sent close_notify;
//!   flushing what is left to the backend) → `Shut` (backend write side shut).
//!   When nothing more may go to the backend while the client has not closed
//!   its side (we end the session, the backend is gone), `Discarding`: the
//!   client's input is read and dropped until its close_notify or FIN, so
//!   the socket never closes with unread input (the kernel would answer
//!   with a reset that can overtake our close_notify).
//! - down (backend → client): `Open` → `Draining` (backend done; flushing what
//!   is left into TLS) → `Notified` (close_notify queued) → `Shut` (close_notify
//!   flushed, client write side shut).
//!
//! The session ends when both directions are shut, when a deadline fires
//! twice, or at once on anything that means the client's stream is truncated.
//!
//! This file holds the session's state and the events the driver reports;
//! `pump.rs` moves the bytes; `end.rs` says why a session ended.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;

use crate::relay::pending::Pending;
use crate::relay::tls_io::TlsIo;

mod end;
mod pump;
mod ready;
#[cfg(test)]
mod tests;

pub use end::{EndKind, EndReason};
pub use ready::Readiness;

/// A connected byte stream that can shut its write side (TCP, or a test pipe).
///
/// Writes must never raise SIGPIPE: Rust's `TcpStream::write` is
/// `send(MSG_NOSIGNAL)`; the session only ever uses `write`.
pub trait Stream: Read + Write {
    /// Shuts the write side (TCP FIN): the peer reads end of stream, and
    /// may still send. An error means the peer is already gone.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// What to do when a TLS 1.2 client sends close_notify while the backend may
/// still be sending (TLS 1.3 always half-closes, RFC 8446 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls12Close {
    /// RFC 5246 §7.2.1: answer with close_notify at once, discard later output.
    Strict,
    /// Relay the backend's remaining output first, as for TLS 1.3.
    HalfClose,
}

/// Per-session timing policy, decided once by configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// From accept to the end of the handshake (`--handshake-timeout`).
    pub handshake_timeout: Duration,
    /// For each backend address's connect (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// Without a byte moving either way while fully open
    /// (`--idle-timeout`); `None` is no limit.
    pub idle_timeout: Option<Duration>,
    /// How long a half-closed or closing session may go without any byte moving.
    pub drain_timeout: Duration,
    /// A TLS 1.2 client's close_notify (`--tls12-close`).
    pub tls12_close: Tls12Close,
}

/// What the caller must do after [`Session::pump`].
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for readiness or a deadline.
    Continue,
    /// The handshake finished: decide the identity, then call
    /// [`Session::admit`] or [`Session::refuse`].
    HandshakeDone,
    /// Close both sockets; [`Session::end_reason`] says why.
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `--handshake-timeout` applies.
    Handshaking,
    /// Identity decided, header queued; waiting for the backend connection
    /// (`--connect-timeout` per attempt).
    Connecting,
    Relaying(Closing),
    Ended,
}

/// While relaying: whether the session's end has begun, which decides the
/// deadline that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// Both directions open: `--idle-timeout` (if set); when it passes,
    /// nctls closes.
    No,
    /// A side ended or failed and the rest is being flushed or relayed:
    /// `--drain-timeout`, restarted whenever data moves; when it passes,
    /// nctls closes.
    Draining,
    /// nctls closes (close_notify queued, nothing more to the backend): one
    /// more `--drain-timeout` for the client to take it; then the session
    /// is dropped.
    Forced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Up {
    Open,
    Draining,
    /// Reading and dropping client input until its close_notify or FIN.
    Discarding,
    Shut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Down {
    Open,
    Draining,
    Notified,
    Shut,
}

/// Which sockets may make progress.
#[derive(Clone, Copy, Debug)]
struct Ready {
    client: Readiness,
    backend: Readiness,
}

/// Which socket an event was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The TLS client's socket.
    Client,
    /// The NETCONF server's socket.
    Backend,
}

/// One client's TLS session relayed to the backend, from the first byte of
/// its handshake until both directions are shut: the close table of the
/// README ("How a session ends") as a state machine. It owns no sockets:
/// each call is handed the two streams, does everything that can be done
/// without blocking, and says what the caller must do next ([`Status`]).
///
/// The driver's calls, in order: [`Session::pump`] until
/// [`Status::HandshakeDone`]; then [`Session::admit`] with the backend's
/// session header, or [`Session::refuse`]; [`Session::backend_attempt`] for
/// each backend connect and [`Session::backend_connect_done`] with its
/// outcome (or [`Session::backend_gave_up`]); then [`Session::pump`] on
/// every readiness event ([`Session::set_ready`]) and
/// [`Session::on_deadline`] at [`Session::deadline`], until
/// [`Status::Ended`]. [`Session::end_reason`] then says why, and
/// [`Session::bytes`] how much was relayed.
pub struct Session {
    tls: TlsIo,
    limits: Arc<Limits>,
    phase: Phase,
    up: Up,
    down: Down,
    ready: Ready,
    client_eof: bool,
    /// Decrypted client bytes the backend has not taken yet (at most one
    /// read's worth: the client is not read while any are left).
    to_backend: Pending,
    /// Backend bytes not yet encrypted (only if rustls could not take them).
    to_client: Pending,
    /// A TLS error left an alert in the output: one attempt to send it.
    alert_pending: bool,
    /// The client's certificate as presented, kept even when the handshake
    /// refuses it (rustls then reports none).
    presented: Option<CertificateDer<'static>>,
    /// At least one byte came from the client.
    client_spoke: bool,
    /// Set by the first event that began the end; `None` while fully open.
    reason: Option<EndReason>,
    /// The client's stream was cut short while its bytes could still reach
    /// the backend: see [`Session::backend_needs_reset`].
    reset_backend: bool,
    started: Instant,
    phase_started: Instant,
    last_activity: Instant,
    bytes_up: u64,
    bytes_down: u64,
}

impl Session {
    /// A session at the start of its handshake, at `now` (the accept): the
    /// client socket is assumed readable and writable, the backend not
    /// connected. Errors: rustls could not start a server connection with
    /// `config`.
    pub fn new(
        config: Arc<ServerConfig>,
        limits: Arc<Limits>,
        now: Instant,
    ) -> Result<Self, rustls::Error> {
        Ok(Session {
            tls: TlsIo::new(config)?,
            limits,
            phase: Phase::Handshaking,
            up: Up::Open,
            down: Down::Open,
            ready: Ready {
                client: Readiness::BOTH,
                backend: Readiness::default(),
            },
            client_eof: false,
            to_backend: Pending::default(),
            to_client: Pending::default(),
            alert_pending: false,
            presented: None,
            client_spoke: false,
            reason: None,
            reset_backend: false,
            started: now,
            phase_started: now,
            last_activity: now,
            bytes_up: 0,
            bytes_down: 0,
        })
    }

    /// Records readiness reported by the event loop for one socket.
    pub fn set_ready(&mut self, side: Side, event: Readiness) {
        match side {
            Side::Client => self.ready.client.add(event),
            Side::Backend => self.ready.backend.add(event),
        }
    }

    /// Identity accepted: queue the backend header; the caller connects next.
    pub fn admit(&mut self, header: &[u8], now: Instant) {
        self.to_backend.push(header);
        self.phase = Phase::Connecting;
        self.phase_started = now;
    }

    /// Identity refused: answer with close_notify, never reach the backend.
    pub fn refuse(&mut self, why: String, now: Instant) {
        self.close_now(EndReason::Refused(why), now);
    }

    /// The backend connection completed.
    pub fn backend_connected(&mut self, now: Instant) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Relaying(Closing::No);
            self.ready.backend = Readiness::BOTH;
            self.last_activity = now;
        }
    }

    /// A connect to the next backend address began: it gets a full
    /// `--connect-timeout` of its own.
    pub fn backend_attempt(&mut self, now: Instant) {
        if self.phase == Phase::Connecting {
            self.phase_started = now;
        }
    }

    /// The backend connect in progress has had its `--connect-timeout`:
    /// the caller tries the next address, or ends the session.
    pub fn connect_expired(&self, now: Instant) -> bool {
        self.phase == Phase::Connecting && self.phase_started + self.limits.connect_timeout <= now
    }

    /// No backend address could be connected (see `backend::Dialer`).
    pub fn backend_gave_up(&mut self, reason: EndReason, now: Instant) {
        self.close_now(reason, now);
    }

    /// The outcome of a non-blocking backend connect, as the loop saw it.
    pub fn backend_connect_done(&mut self, result: io::Result<()>, now: Instant) {
        match result {
            Ok(()) => self.backend_connected(now),
            // Connected, then reset before the loop looked: not "unreachable".
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.backend_connected(now);
                self.backend_reset(e.to_string());
            }
            Err(e) => self.backend_failed(e.to_string(), now),
        }
    }

    /// The loop saw an error event on the client socket: a reset must end
    /// the session even while backpressure keeps us from reading the
    /// client (rustls is not asking for input then).
    pub fn client_socket_error(&mut self, pending: io::Result<Option<io::Error>>) {
        if let Ok(Some(e)) = pending {
            self.client_reset(e.to_string());
        }
    }

    /// The backend connection could not be made.
    pub fn backend_failed(&mut self, why: String, now: Instant) {
        self.close_now(EndReason::BackendUnreachable(why), now);
    }

    /// The client's socket reported an error (a reset): the stream is cut.
    pub fn client_reset(&mut self, why: String) {
        if self.phase != Phase::Ended {
            self.end(self.client_failed(io::Error::other(why)));
        }
    }

    /// The backend reset its connection right after it was made.
    pub fn backend_reset(&mut self, why: String) {
        if self.relaying() && self.down == Down::Open {
            self.note(EndReason::BackendReset(why));
            self.down = Down::Draining;
            self.stop_up();
        }
    }

    /// nctls cannot go on with this session (a socket could not be
    /// registered, the event loop failed): end with close_notify, as far as
    /// it can still be sent, dropping the backend.
    pub fn fail(&mut self, why: String, now: Instant) {
        self.close_now(EndReason::InternalError(why), now);
    }

    /// Daemon shutdown: end with close_notify, dropping the backend.
    pub fn shutdown(&mut self, now: Instant) {
        self.close_now(EndReason::Shutdown, now);
    }

    /// When [`Session::on_deadline`] should next be called, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Handshaking => Some(self.started + self.limits.handshake_timeout),
            Phase::Connecting => Some(self.phase_started + self.limits.connect_timeout),
            Phase::Relaying(Closing::No) => {
                self.limits.idle_timeout.map(|t| self.last_activity + t)
            }
            Phase::Relaying(Closing::Draining | Closing::Forced) => {
                Some(self.last_activity + self.limits.drain_timeout)
            }
            Phase::Ended => None,
        }
    }

    /// Acts on an expired deadline (a stale one is ignored); pump afterwards.
    pub fn on_deadline(&mut self, now: Instant) {
        match self.deadline() {
            Some(d) if d <= now => {}
            _ => return,
        }
        match self.phase {
            Phase::Handshaking => self.end(EndReason::HandshakeTimeout),
            Phase::Connecting => self.close_now(EndReason::ConnectTimeout, now),
            Phase::Relaying(Closing::Forced) => self.end(EndReason::DrainTimeout),
            Phase::Relaying(Closing::No) => self.close_now(EndReason::IdleTimeout, now),
            // Our close_notify is out and the client had a drain period to
            // answer it: no second one.
            Phase::Relaying(Closing::Draining) if self.down == Down::Shut => {
                self.end(EndReason::DrainTimeout)
            }
            Phase::Relaying(Closing::Draining) => {
                // Still waiting on the backend: the timeout, not the
                // client's close_notify, is what ended this session.
                if self.down == Down::Open {
                    self.reason = Some(EndReason::DrainTimeout);
                }
                self.close_now(EndReason::DrainTimeout, now)
            }
            Phase::Ended => {}
        }
    }

    /// Identity admitted, the backend not connected yet: a connect is due
    /// or in progress.
    pub fn is_connecting(&self) -> bool {
        self.phase == Phase::Connecting
    }

    /// Where the session is, for listing live sessions (SIGUSR2):
    /// `handshaking`, `connecting`, `relaying`, `closing` (its end has
    /// begun) or `ended`.
    pub fn state(&self) -> &'static str {
        match self.phase {
            Phase::Handshaking => "handshaking",
            Phase::Connecting => "connecting",
            Phase::Relaying(Closing::No) => "relaying",
            Phase::Relaying(Closing::Draining | Closing::Forced) => "closing",
            Phase::Ended => "ended",
        }
    }

    /// Why the session ended, or is ending: the first event that began its
    /// end; `None` while fully open.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.reason.as_ref()
    }

    /// The client's verified chain, end-entity first, once the handshake
    /// has accepted it; `None` before, or when it sent none.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.peer_certificates()
    }

    /// The client's end-entity certificate: the verified one, or the one it
    /// presented when the handshake refused it; `None` if it sent none.
    pub fn client_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificates()
            .and_then(|chain| chain.first())
            .or(self.presented.as_ref())
    }

    /// The connection ended before the client sent a single byte (a TCP
    /// health check, or a port scan): not worth a warning.
    pub fn closed_silently(&self) -> bool {
        !self.client_spoke && matches!(self.reason, Some(EndReason::HandshakeFailed(_)))
    }

    /// TLS version and cipher suite, e.g. `TLSv1_3/TLS13_AES_128_GCM_SHA256`.
    pub fn tls_description(&self) -> String {
        match (
            self.tls.protocol_version(),
            self.tls.negotiated_cipher_suite(),
        ) {
            (Some(v), Some(s)) => format!("{v:?}/{:?}", s.suite()),
            _ => "-".to_string(),
        }
    }

    /// Plaintext bytes relayed client → backend and backend → client.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_up, self.bytes_down)
    }

    /// Whether the backend connection must be closed with a TCP reset
    /// rather than a FIN (README, "How a session ends", row 3): the end
    /// reason is a truncation, or the client's stream was cut short (EOF or
    /// reset without close_notify, a TLS error) while its bytes could still
    /// reach the backend after another event began the end: after the
    /// backend's EOF, say, the backend may still be reading them.
    pub fn backend_needs_reset(&self) -> bool {
        self.reset_backend || self.reason.as_ref().is_some_and(EndReason::is_truncation)
    }

    /// When the session began: the `now` given to [`Session::new`].
    pub fn started(&self) -> Instant {
        self.started
    }

    fn end(&mut self, reason: EndReason) {
        // Whatever began the end: a backend that closed only its write side
        // still reads, and must not take the cut stream as whole.
        self.reset_backend |= reason.is_truncation() && matches!(self.up, Up::Open | Up::Draining);
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        self.phase = Phase::Ended;
    }

    /// One side ended or failed: the session is closing (the first reason
    /// given is the one reported).
    fn note(&mut self, reason: EndReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        if self.phase == Phase::Relaying(Closing::No) {
            self.phase = Phase::Relaying(Closing::Draining);
        }
    }

    fn relaying(&self) -> bool {
        matches!(self.phase, Phase::Relaying(_))
    }

    /// We end the session: nothing more to the backend, close_notify to the
    /// client, and a fresh drain window for flushing it.
    fn close_now(&mut self, reason: EndReason, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        if self.tls.is_handshaking() {
            // No keys yet, so no close_notify to send.
            self.phase = Phase::Ended;
            return;
        }
        self.phase = Phase::Relaying(Closing::Forced);
        self.stop_up();
        if matches!(self.down, Down::Open | Down::Draining) {
            self.to_client.clear();
            self.down = Down::Draining;
        }
        self.last_activity = now;
    }

    /// Nothing more goes to the backend; a client that has not closed its
    /// side yet has its input read and dropped until it does.
    fn stop_up(&mut self) {
        self.to_backend.clear();
        self.up = if self.tls.peer_closed() || self.client_eof {
            Up::Shut
        } else {
            Up::Discarding
        };
    }
}
