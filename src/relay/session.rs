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

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::{ProtocolVersion, ServerConfig};

use crate::relay::handshake;
use crate::relay::pending::Pending;
use crate::relay::tls_io::{TlsIo, Want};

/// Encrypted bytes queued for a client that is not reading (what rustls's
/// default buffer limit was): the backend is read only for the room left.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Less room than this and the backend waits (no tiny reads).
const MIN_READ: usize = 16 * 1024;

/// A connected byte stream that can shut its write side (TCP, or a test pipe).
///
/// Writes must never raise SIGPIPE: Rust's `TcpStream::write` is
/// `send(MSG_NOSIGNAL)`; the session only ever uses `write`.
pub trait Stream: Read + Write {
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
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// How long a half-closed or closing session may go without any byte moving.
    pub drain_timeout: Duration,
    pub tls12_close: Tls12Close,
}

/// Why a session ended: the first event that began its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    BackendClosed,
    BackendReset(String),
    ClientCloseNotify,
    ClientEof,
    ClientReset(String),
    TlsError(String),
    HandshakeFailed(String),
    HandshakeTimeout,
    Refused(String),
    BackendUnreachable(String),
    ConnectTimeout,
    IdleTimeout,
    DrainTimeout,
    Shutdown,
}

impl EndReason {
    /// The client's stream was cut short: the backend must not see a clean end.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            EndReason::ClientEof | EndReason::ClientReset(_) | EndReason::TlsError(_)
        )
    }

    /// Ends that are worth an operator's attention.
    pub fn is_error(&self) -> bool {
        !matches!(
            self,
            EndReason::BackendClosed | EndReason::ClientCloseNotify | EndReason::Shutdown
        )
    }

    /// The stable kebab-case word logged as `reason=` and returned by the C
    /// API's `nctls_close_reason_str` (README, "Session log lines").
    pub fn token(&self) -> &'static str {
        match self {
            EndReason::BackendClosed => "backend-closed",
            EndReason::BackendReset(_) => "backend-reset",
            EndReason::ClientCloseNotify => "client-close-notify",
            EndReason::ClientEof => "client-eof",
            EndReason::ClientReset(_) => "client-reset",
            EndReason::TlsError(_) => "tls-error",
            EndReason::HandshakeFailed(_) => "handshake-failed",
            EndReason::HandshakeTimeout => "handshake-timeout",
            EndReason::Refused(_) => "refused",
            EndReason::BackendUnreachable(_) => "backend-unreachable",
            EndReason::ConnectTimeout => "connect-timeout",
            EndReason::IdleTimeout => "idle-timeout",
            EndReason::DrainTimeout => "drain-timeout",
            EndReason::Shutdown => "shutdown",
        }
    }

    /// What happened in words (an OS or TLS error, why a client was
    /// refused), for the ends whose token does not say it all.
    pub fn detail(&self) -> Option<&str> {
        match self {
            EndReason::BackendReset(why)
            | EndReason::ClientReset(why)
            | EndReason::TlsError(why)
            | EndReason::HandshakeFailed(why)
            | EndReason::Refused(why)
            | EndReason::BackendUnreachable(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for EndReason {
    /// `token` or `token: detail`, for people (the C API's `reason_text`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(why) => write!(f, "{}: {why}", self.token()),
            None => f.write_str(self.token()),
        }
    }
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
    Handshaking,
    /// Identity decided, header queued; waiting for the backend connection.
    Connecting,
    Relaying,
    Ended,
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

/// Which sockets may make progress (edge-triggered: true until WouldBlock).
#[derive(Clone, Copy, Debug)]
struct Ready {
    client_read: bool,
    client_write: bool,
    backend_read: bool,
    backend_write: bool,
}

/// Which socket an event was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

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
    /// We decided to end (timeout, shutdown, refusal): the next deadline is final.
    forced: bool,
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
                client_read: true,
                client_write: true,
                backend_read: false,
                backend_write: false,
            },
            client_eof: false,
            to_backend: Pending::default(),
            to_client: Pending::default(),
            alert_pending: false,
            presented: None,
            client_spoke: false,
            reason: None,
            forced: false,
            reset_backend: false,
            started: now,
            phase_started: now,
            last_activity: now,
            bytes_up: 0,
            bytes_down: 0,
        })
    }

    /// Records readiness reported by the event loop for one socket.
    pub fn set_ready(&mut self, side: Side, readable: bool, writable: bool) {
        match side {
            Side::Client => {
                self.ready.client_read |= readable;
                self.ready.client_write |= writable;
            }
            Side::Backend => {
                self.ready.backend_read |= readable;
                self.ready.backend_write |= writable;
            }
        }
    }

    /// Does every step that can be done now, until both sockets would block
    /// or wait on the other side's capacity.
    pub fn pump<C: Stream, B: Stream>(
        &mut self,
        client: &mut C,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
        now: Instant,
    ) -> Status {
        loop {
            let step = match self.phase {
                Phase::Handshaking => self.handshake_step(client),
                Phase::Connecting => self.flush_client(client),
                Phase::Relaying => self.relay_step(client, backend.as_deref_mut(), scratch),
                Phase::Ended => return Status::Ended,
            };
            match step {
                Ok(true) => {
                    // Discarded input does not keep a session alive.
                    if self.phase == Phase::Relaying && self.up != Up::Discarding {
                        self.last_activity = now;
                    }
                }
                Ok(false) => break,
                Err(reason) => {
                    if self.alert_pending {
                        // rustls queued an alert saying why; one attempt.
                        let _ = self.tls.write_to(client);
                    }
                    self.end(reason);
                    return Status::Ended;
                }
            }
        }
        match self.phase {
            Phase::Handshaking if !self.tls.is_handshaking() => Status::HandshakeDone,
            Phase::Relaying if self.up == Up::Shut && self.down == Down::Shut => {
                self.phase = Phase::Ended;
                Status::Ended
            }
            _ => {
                // Waiting on readiness: empty buffers go back to the allocator.
                self.tls.release_idle();
                Status::Continue
            }
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
            self.phase = Phase::Relaying;
            self.ready.backend_read = true;
            self.ready.backend_write = true;
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
        if self.phase == Phase::Relaying && self.down == Down::Open {
            self.note(EndReason::BackendReset(why));
            self.down = Down::Draining;
            self.stop_up();
        }
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
            Phase::Relaying if self.reason.is_none() => {
                self.limits.idle_timeout.map(|t| self.last_activity + t)
            }
            Phase::Relaying => Some(self.last_activity + self.limits.drain_timeout),
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
            Phase::Relaying if self.forced => self.end(EndReason::DrainTimeout),
            Phase::Relaying if self.reason.is_none() => self.close_now(EndReason::IdleTimeout, now),
            // Our close_notify is out and the client had a drain period to
            // answer it: no second one.
            Phase::Relaying if self.down == Down::Shut => self.end(EndReason::DrainTimeout),
            Phase::Relaying => {
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
            Phase::Relaying if self.reason.is_none() => "relaying",
            Phase::Relaying => "closing",
            Phase::Ended => "ended",
        }
    }

    pub fn end_reason(&self) -> Option<&EndReason> {
        self.reason.as_ref()
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

    fn note(&mut self, reason: EndReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
    }

    /// We end the session: nothing more to the backend, close_notify to the
    /// client, and a fresh drain window for flushing it.
    fn close_now(&mut self, reason: EndReason, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        self.note(reason);
        self.forced = true;
        if self.tls.is_handshaking() {
            // No keys yet, so no close_notify to send.
            self.phase = Phase::Ended;
            return;
        }
        self.phase = Phase::Relaying;
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

    fn handshake_step<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let mut progress = self.read_client(client)?;
        handshake::take_presented_certificate();
        let processed = self.tls_process::<C>(None, Want::Nothing);
        if let Some(cert) = handshake::take_presented_certificate() {
            self.presented = Some(cert);
        }
        progress |= processed?.progress;
        progress |= self.flush_client(client)?;
        if self.client_eof && self.tls.is_handshaking() {
            return Err(EndReason::HandshakeFailed(
                "client closed the connection".into(),
            ));
        }
        Ok(progress && self.tls.is_handshaking())
    }

    fn relay_step<C: Stream, B: Stream>(
        &mut self,
        client: &mut C,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
    ) -> Result<bool, EndReason> {
        let mut progress = self.read_client(client)?;
        progress |= self
            .tls_process(backend.as_deref_mut(), Want::Nothing)?
            .progress;
        if self.up == Up::Discarding && (self.tls.peer_closed() || self.client_eof) {
            self.up = Up::Shut;
            progress = true;
        }
        progress |= self.pump_up(backend.as_deref_mut())?;
        progress |= self.pump_down(backend, scratch)?;
        progress |= self.flush_client(client)?;
        if self.down == Down::Notified && !self.tls.wants_write() {
            // The peer may already be gone; the close_notify is out either way.
            let _ = client.shutdown_write();
            self.down = Down::Shut;
            progress = true;
        }
        Ok(progress)
    }

    /// Client socket → input buffer, one read.
    fn read_client<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let room = match self.phase {
            // Like rustls: no more input while our own flight is unsent.
            Phase::Handshaking => !self.tls.wants_write(),
            Phase::Relaying => match self.up {
                Up::Shut => false,
                Up::Discarding => true,
                // Backpressure: the backend has taken everything decrypted so far.
                Up::Open | Up::Draining => self.to_backend.is_empty(),
            },
            Phase::Connecting | Phase::Ended => false,
        };
        if !room || !self.ready.client_read || self.client_eof || self.tls.peer_closed() {
            return Ok(false);
        }
        match self.tls.read_from(client) {
            Ok(0) => self.client_eof = true,
            Ok(_) => self.client_spoke = true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.ready.client_read = false;
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                return Err(self.tls_failed(e.to_string()));
            }
            Err(e) => return Err(self.client_failed(e)),
        }
        Ok(true)
    }

    /// Runs rustls over what was read (records to the backend once
    /// relaying), then does `want`.
    fn tls_process<B: Stream>(
        &mut self,
        backend: Option<&mut B>,
        want: Want<'_>,
    ) -> Result<crate::relay::tls_io::Done, EndReason> {
        let take_records = self.phase == Phase::Relaying;
        let Session {
            tls,
            to_backend,
            ready,
            up,
            bytes_up,
            ..
        } = self;
        let mut backend = backend;
        let mut failed: Option<io::Error> = None;
        let mut deliver = |data: &[u8]| {
            if matches!(*up, Up::Shut | Up::Discarding) || failed.is_some() {
                return;
            }
            *bytes_up += data.len() as u64;
            let mut written = 0;
            if to_backend.is_empty() {
                if let Some(b) = backend.as_deref_mut() {
                    failed = write_some(b, data, &mut written, &mut ready.backend_write).err();
                }
            }
            if failed.is_none() {
                to_backend.push(&data[written..]);
            }
        };
        let done = tls.process(take_records, want, &mut deliver);
        if let Some(e) = failed {
            self.backend_write_failed(e);
        }
        done.map_err(|e| self.tls_failed(handshake::describe_error(&e)))
    }

    fn tls_failed(&mut self, why: String) -> EndReason {
        self.alert_pending = true;
        if self.phase == Phase::Handshaking {
            EndReason::HandshakeFailed(why)
        } else {
            EndReason::TlsError(why)
        }
    }

    /// Output buffer → client socket.
    fn flush_client<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let mut progress = false;
        while self.ready.client_write && self.tls.wants_write() {
            match self.tls.write_to(client) {
                Ok(0) => return Err(self.client_failed(ErrorKind::WriteZero.into())),
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.ready.client_write = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.client_failed(e)),
            }
        }
        Ok(progress)
    }

    fn client_failed(&self, e: io::Error) -> EndReason {
        if self.phase == Phase::Handshaking {
            EndReason::HandshakeFailed(e.to_string())
        } else {
            EndReason::ClientReset(e.to_string())
        }
    }

    /// Pending client bytes → backend; then the client's end of stream,
    /// once everything before it has gone: close_notify → backend EOF.
    fn pump_up<B: Stream>(&mut self, backend: Option<&mut B>) -> Result<bool, EndReason> {
        let Some(backend) = backend else {
            return Ok(false);
        };
        if matches!(self.up, Up::Shut | Up::Discarding) {
            return Ok(false);
        }
        let mut progress = false;
        if !self.to_backend.is_empty() {
            if !self.ready.backend_write {
                return Ok(false);
            }
            match self.to_backend.write_to(backend) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.ready.backend_write = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Ok(self.backend_write_failed(e)),
            }
            if !self.to_backend.is_empty() {
                return Ok(progress);
            }
        }
        if self.up == Up::Draining {
            // A peer that already closed makes this fail; it has its EOF then.
            let _ = backend.shutdown_write();
            self.up = Up::Shut;
            return Ok(true);
        }
        if self.tls.peer_closed() {
            self.client_close_notify();
            return Ok(true);
        }
        if self.client_eof && self.tls.drained() {
            // End of stream without close_notify (perhaps mid-record).
            return Err(EndReason::ClientEof);
        }
        Ok(progress)
    }

    /// The backend stopped taking bytes. If it had already closed (ConfD
    /// closes fully), the rest of the client's input has nowhere to go.
    fn backend_write_failed(&mut self, e: io::Error) -> bool {
        self.stop_up();
        if self.down == Down::Open {
            self.note(EndReason::BackendReset(e.to_string()));
            self.down = Down::Draining;
        }
        true
    }

    fn client_close_notify(&mut self) {
        self.note(EndReason::ClientCloseNotify);
        self.up = Up::Draining;
        let strict = self.limits.tls12_close == Tls12Close::Strict
            && self.tls.protocol_version() == Some(ProtocolVersion::TLSv1_2);
        if strict && matches!(self.down, Down::Open | Down::Draining) {
            self.to_client.clear();
            self.down = Down::Draining;
        }
    }

    /// Encrypts `data` for the client; what rustls cannot take yet waits in
    /// `to_client`.
    fn seal<B: Stream>(&mut self, backend: Option<&mut B>, data: &[u8]) -> Result<(), EndReason> {
        if !self.tls_process(backend, Want::Encrypt(data))?.wanted {
            self.to_client.push(data);
        }
        Ok(())
    }

    /// Backend bytes → encrypted output; backend EOF → close_notify.
    fn pump_down<B: Stream>(
        &mut self,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
    ) -> Result<bool, EndReason> {
        let mut progress = false;
        if !self.to_client.is_empty() {
            let pending = std::mem::take(&mut self.to_client);
            self.seal(backend.as_deref_mut(), pending.bytes())?;
            progress = self.to_client.is_empty();
            if !progress {
                return Ok(false);
            }
        }
        match self.down {
            Down::Open => {
                let Some(b) = backend.as_deref_mut() else {
                    return Ok(progress);
                };
                let room = OUTPUT_LIMIT.saturating_sub(self.tls.pending_output());
                if !self.ready.backend_read || room < MIN_READ {
                    return Ok(progress);
                }
                let want = room.min(scratch.len());
                match b.read(&mut scratch[..want]) {
                    Ok(0) => {
                        self.note(EndReason::BackendClosed);
                        self.down = Down::Draining;
                    }
                    Ok(n) => {
                        self.bytes_down += n as u64;
                        self.seal(backend, &scratch[..n])?;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.ready.backend_read = false;
                        return Ok(progress);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.note(EndReason::BackendReset(e.to_string()));
                        self.down = Down::Draining;
                    }
                }
                Ok(true)
            }
            Down::Draining => {
                if self.tls_process(backend, Want::CloseNotify)?.wanted {
                    self.down = Down::Notified;
                    return Ok(true);
                }
                Ok(progress)
            }
            Down::Notified | Down::Shut => Ok(progress),
        }
    }
}

/// Writes `data[*written..]` while `writable`; a would-block clears it.
fn write_some(
    w: &mut impl Write,
    data: &[u8],
    written: &mut usize,
    writable: &mut bool,
) -> io::Result<()> {
    while *writable && *written < data.len() {
        match w.write(&data[*written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => *writable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Every transition of the close state machine, over in-memory sockets
    //! with a real rustls client on the other end.

    use super::*;
    use crate::test_pki as pki;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::collections::VecDeque;

    /// One socket as the session sees it.
    struct Mem {
        input: VecDeque<u8>,
        eof: bool,
        reset: bool,
        output: Vec<u8>,
        /// How many more bytes writes accept before WouldBlock.
        room: usize,
        write_shut: bool,
    }

    impl Mem {
        fn new() -> Mem {
            Mem {
                input: VecDeque::new(),
                eof: false,
                reset: false,
                output: Vec::new(),
                room: usize::MAX,
                write_shut: false,
            }
        }
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.reset {
                return Err(ErrorKind::ConnectionReset.into());
            }
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(ErrorKind::WouldBlock.into())
                };
            }
            self.input.read(buf)
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.reset || self.write_shut {
                return Err(ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Mem {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.write_shut = true;
            Ok(())
        }
    }

    const HEADER: &[u8] = b"[admin;127.0.0.1/1;ssh;9000;100;;/var/confd/homes/admin;;]\n";

    struct Rig {
        session: Session,
        client: ClientConnection,
        /// The session's client socket; `client` talks through it.
        c: Mem,
        /// The session's backend socket; the test plays the backend.
        b: Mem,
        backend_connected: bool,
        now: Instant,
        scratch: Vec<u8>,
        status: Status,
        received: Vec<u8>,
        client_saw_close_notify: bool,
        client_error: Option<rustls::Error>,
    }

    fn limits(tls12_close: Tls12Close) -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: None,
            drain_timeout: Duration::from_secs(5),
            tls12_close,
        }
    }

    impl Rig {
        fn new(version: &'static rustls::SupportedProtocolVersion, limits: Limits) -> Rig {
            Rig::with_chain(version, limits, 0)
        }

        /// The client sends `padding` extra copies of the CA certificate
        /// after its own (a long chain makes a large handshake message).
        fn with_chain(
            version: &'static rustls::SupportedProtocolVersion,
            limits: Limits,
            padding: usize,
        ) -> Rig {
            let ca = pki::Ca::new("CA");
            let server = ca.server();
            let user = ca.client("admin");
            let server_config = crate::config::tls::build(
                vec![server.der().to_vec().into()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der())),
                vec![ca.der().to_vec().into()],
                crate::config::tls::Policy::default(),
            )
            .unwrap();
            let mut roots = RootCertStore::empty();
            roots.add(ca.der().to_vec().into()).unwrap();
            let client_config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                std::iter::once(user.der().to_vec().into())
                    .chain((0..padding).map(|_| ca.der().to_vec().into()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(user.key_der())),
            )
            .unwrap();
            let mut client = ClientConnection::new(
                Arc::new(client_config),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap();
            client.set_buffer_limit(None);
            let now = Instant::now();
            Rig {
                session: Session::new(server_config, Arc::new(limits), now).unwrap(),
                client,
                c: Mem::new(),
                b: Mem::new(),
                backend_connected: false,
                now,
                scratch: vec![0; 16 * 1024],
                status: Status::Continue,
                received: Vec::new(),
                client_saw_close_notify: false,
                client_error: None,
            }
        }

        fn tls13() -> Rig {
            Rig::new(&rustls::version::TLS13, limits(Tls12Close::Strict))
        }

        /// A relaying session: handshake done, header queued, backend up.
        fn relaying(version: &'static rustls::SupportedProtocolVersion, policy: Tls12Close) -> Rig {
            let mut rig = Rig::new(version, limits(policy));
            rig.run();
            assert_eq!(rig.status, Status::HandshakeDone);
            rig.session.admit(HEADER, rig.now);
            rig.connect();
            rig.run();
            assert_eq!(rig.b.output, HEADER);
            rig.b.output.clear();
            rig
        }

        fn connect(&mut self) {
            self.session.backend_connected(self.now);
            self.backend_connected = true;
        }

        /// Moves bytes between the rustls client and the session until
        /// nothing changes, as an event loop with spurious wake-ups would.
        fn run(&mut self) {
            for _ in 0..10_000 {
                let before = (
                    self.c.input.len(),
                    self.c.output.len(),
                    self.b.output.len(),
                    self.b.input.len(),
                );
                if !self.c.reset && !self.c.eof {
                    self.client.write_tls(&mut self.c.input).unwrap();
                }
                self.session.set_ready(Side::Client, true, true);
                self.session.set_ready(Side::Backend, true, true);
                let backend = self.backend_connected.then_some(&mut self.b);
                self.status = self
                    .session
                    .pump(&mut self.c, backend, &mut self.scratch, self.now);
                self.client_read();
                let after = (
                    self.c.input.len(),
                    self.c.output.len(),
                    self.b.output.len(),
                    self.b.input.len(),
                );
                if before == after && !self.client.wants_write() {
                    return;
                }
            }
            panic!("no quiescence");
        }

        fn client_read(&mut self) {
            while !self.c.output.is_empty() && self.client.wants_read() {
                let mut rd = &self.c.output[..];
                let n = self.client.read_tls(&mut rd).unwrap();
                self.c.output.drain(..n);
                if let Err(e) = self.client.process_new_packets() {
                    self.client_error = Some(e);
                    self.c.output.clear();
                    return;
                }
                let mut buf = [0u8; 8192];
                loop {
                    match self.client.reader().read(&mut buf) {
                        Ok(0) => {
                            self.client_saw_close_notify = true;
                            break;
                        }
                        Ok(n) => self.received.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
            }
        }

        fn client_send(&mut self, data: &[u8]) {
            self.client.writer().write_all(data).unwrap();
        }

        fn client_close_notify(&mut self) {
            self.client.send_close_notify();
        }

        fn backend_send(&mut self, data: &[u8]) {
            self.b.input.extend(data);
        }

        fn reason(&self) -> EndReason {
            self.session.end_reason().cloned().expect("an end reason")
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.session.on_deadline(self.now);
            self.run();
        }
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn header_goes_first_then_client_bytes() {
        let mut rig = Rig::tls13();
        rig.run();
        assert_eq!(rig.status, Status::HandshakeDone);
        // The client's first bytes arrive before the backend is even connected.
        rig.client_send(b"<hello/>");
        rig.session.admit(HEADER, rig.now);
        rig.run();
        assert!(rig.b.output.is_empty(), "nothing before the backend is up");
        rig.connect();
        rig.run();
        assert_eq!(rig.b.output, [HEADER, b"<hello/>"].concat());
        assert_eq!(rig.session.bytes().0, 8);
    }

    #[test]
    fn backend_eof_delivers_everything_then_close_notify() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut rig = Rig::relaying(version, Tls12Close::Strict);
            let data = bytes(300 * 1024);
            rig.backend_send(&data);
            rig.b.eof = true;
            rig.run();
            assert!(rig.received == data, "all bytes, in order");
            assert!(rig.client_saw_close_notify);
            assert!(
                rig.c.write_shut,
                "client write side shut after close_notify"
            );
            assert_eq!(rig.status, Status::Continue, "still reading the client");
            assert_eq!(
                rig.session.deadline(),
                Some(rig.now + Duration::from_secs(5))
            );
            // The client answers with its own close_notify: done.
            rig.client_close_notify();
            rig.run();
            assert_eq!(rig.status, Status::Ended);
            assert_eq!(rig.reason(), EndReason::BackendClosed);
            assert!(rig.b.write_shut);
        }
    }

    #[test]
    fn client_close_notify_half_closes_in_tls13() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.client_send(b"<rpc><close-session/></rpc>");
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.b.output, b"<rpc><close-session/></rpc>");
        assert!(rig.b.write_shut, "backend sees EOF after the last byte");
        assert!(!rig.client_saw_close_notify, "the reply is still to come");
        rig.backend_send(b"<ok/>");
        rig.run();
        assert_eq!(rig.received, b"<ok/>");
        rig.b.eof = true;
        rig.run();
        assert!(rig.client_saw_close_notify);
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::ClientCloseNotify);
    }

    #[test]
    fn tls12_strict_answers_close_notify_at_once() {
        let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::Strict);
        rig.client_send(b"<rpc/>");
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.b.output, b"<rpc/>");
        assert!(rig.b.write_shut);
        assert!(rig.client_saw_close_notify, "answered at once");
        assert_eq!(rig.status, Status::Ended);
        rig.backend_send(b"late");
        rig.run();
        assert!(rig.received.is_empty(), "later output discarded");
    }

    #[test]
    fn tls12_half_close_relays_the_rest() {
        let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::HalfClose);
        rig.client_close_notify();
        rig.run();
        assert!(rig.b.write_shut);
        assert!(!rig.client_saw_close_notify);
        rig.backend_send(b"<ok/>");
        rig.b.eof = true;
        rig.run();
        assert_eq!(rig.received, b"<ok/>");
        assert!(rig.client_saw_close_notify);
        assert_eq!(rig.status, Status::Ended);
    }

    #[test]
    fn ragged_client_eof_is_a_truncation() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.client_send(b"partial");
        rig.run();
        rig.c.eof = true;
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::ClientEof);
        assert!(rig.reason().is_truncation());
        assert!(!rig.b.write_shut, "no clean EOF to the backend");
    }

    #[test]
    fn client_reset_and_garbage_are_truncations() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.c.reset = true;
        rig.run();
        assert!(matches!(rig.reason(), EndReason::ClientReset(_)));

        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.c.input.extend(b"\x17\x03\x03\x00\x05hello");
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(
            matches!(rig.reason(), EndReason::TlsError(_)),
            "{:?}",
            rig.reason()
        );
        assert!(rig.reason().is_truncation());
        assert!(rig.client_error.is_some(), "the client got an alert");
    }

    #[test]
    fn slow_backend_pauses_the_client() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.b.room = 0;
        let data = bytes(1 << 20);
        rig.client_send(&data);
        rig.run();
        // rustls holds at most one record of plaintext; we hold at most one read.
        assert!(rig.session.to_backend.bytes().len() <= 16 * 1024);
        assert!(
            rig.c.input.len() > 900 * 1024,
            "the rest waits in the socket"
        );
        rig.b.room = usize::MAX;
        rig.run();
        assert!(rig.b.output == data);
    }

    #[test]
    fn slow_client_pauses_the_backend() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.c.room = 0;
        let data = bytes(1 << 20);
        rig.backend_send(&data);
        rig.run();
        assert!(rig.session.to_client.bytes().len() <= 16 * 1024);
        // Record headers and tags on top of the plaintext limit.
        assert!(rig.session.tls.pending_output() <= OUTPUT_LIMIT + 1024);
        assert!(
            rig.b.input.len() > 900 * 1024,
            "the rest waits in the backend socket"
        );
        rig.c.room = usize::MAX;
        rig.run();
        assert!(rig.received == data);
    }

    #[test]
    fn handshake_timeout_ends_at_once() {
        let mut rig = Rig::tls13();
        assert_eq!(
            rig.session.deadline(),
            Some(rig.now + Duration::from_secs(10))
        );
        rig.now += Duration::from_secs(9);
        rig.session.on_deadline(rig.now);
        assert!(rig.session.end_reason().is_none(), "not yet");
        rig.now += Duration::from_secs(1);
        rig.session.on_deadline(rig.now);
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::HandshakeTimeout);
    }

    #[test]
    fn idle_timeout_closes_then_gives_up_on_a_silent_client() {
        let mut policy = limits(Tls12Close::Strict);
        policy.idle_timeout = Some(Duration::from_secs(60));
        let mut rig = Rig::new(&rustls::version::TLS13, policy);
        rig.run();
        rig.session.admit(HEADER, rig.now);
        rig.connect();
        rig.run();
        assert_eq!(
            rig.session.deadline(),
            Some(rig.now + Duration::from_secs(60))
        );
        rig.c.room = 0; // the client stopped reading
        rig.advance(Duration::from_secs(60));
        assert_eq!(rig.reason(), EndReason::IdleTimeout);
        assert_eq!(
            rig.status,
            Status::Continue,
            "close_notify cannot be flushed"
        );
        rig.advance(Duration::from_secs(5));
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::IdleTimeout);
    }

    #[test]
    fn drain_deadline_extends_while_data_flows() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.client_close_notify();
        rig.run();
        for _ in 0..5 {
            rig.now += Duration::from_secs(4);
            rig.backend_send(b"x");
            rig.run();
            rig.session.on_deadline(rig.now);
            assert!(rig.session.end_reason() == Some(&EndReason::ClientCloseNotify));
        }
        assert_eq!(rig.received, b"xxxxx");
        rig.advance(Duration::from_secs(5));
        assert!(rig.client_saw_close_notify, "drain expiry closes cleanly");
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::DrainTimeout);
    }

    #[test]
    fn unreachable_backend_gets_close_notify() {
        let mut rig = Rig::tls13();
        rig.run();
        rig.session.admit(HEADER, rig.now);
        rig.session
            .backend_failed("connection refused".into(), rig.now);
        rig.run();
        assert!(rig.client_saw_close_notify);
        assert_eq!(rig.status, Status::Continue, "until the client closes");
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(matches!(rig.reason(), EndReason::BackendUnreachable(_)));
    }

    #[test]
    fn connect_timeout_gets_close_notify() {
        let mut rig = Rig::tls13();
        rig.run();
        rig.session.admit(HEADER, rig.now);
        assert!(rig.session.is_connecting());
        rig.advance(Duration::from_secs(10));
        assert!(rig.client_saw_close_notify);
        assert_eq!(rig.reason(), EndReason::ConnectTimeout);
        rig.c.eof = true; // the client answers with a FIN alone
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::ConnectTimeout);
    }

    #[test]
    fn refused_identity_never_reaches_the_backend() {
        let mut rig = Rig::tls13();
        rig.run();
        rig.client_send(b"<hello/>");
        rig.session.refuse("no usable name".into(), rig.now);
        rig.run();
        assert!(rig.client_saw_close_notify);
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(rig.b.output.is_empty());
    }

    /// After our close_notify the client's input is read and dropped until
    /// its close_notify or FIN (closing with unread input is a TCP reset):
    /// a 1 MiB RPC pipelined right after the handshake is all read, none of
    /// it relayed or counted, and reading it does not extend the drain.
    #[test]
    fn input_after_our_close_notify_is_read_and_dropped() {
        let mut rig = Rig::tls13();
        rig.run();
        rig.session.refuse("no usable name".into(), rig.now);
        rig.client_send(&bytes(1 << 20));
        rig.run();
        assert!(rig.client_saw_close_notify);
        assert!(rig.c.input.is_empty(), "all of it read");
        assert_eq!(rig.status, Status::Continue);
        assert_eq!(rig.session.bytes(), (0, 0));
        assert!(rig.b.output.is_empty());
        let deadline = rig.session.deadline();
        rig.now += Duration::from_secs(3);
        rig.client_send(b"more");
        rig.run();
        assert_eq!(
            rig.session.deadline(),
            deadline,
            "discarding is not activity"
        );
        rig.c.eof = true;
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(matches!(rig.reason(), EndReason::Refused(_)));

        // A client that keeps sending is dropped at the deadline.
        let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::Strict);
        rig.session.shutdown(rig.now);
        rig.run();
        for _ in 0..4 {
            rig.now += Duration::from_secs(1);
            rig.client_send(b"<rpc/>");
            rig.run();
            rig.session.on_deadline(rig.now);
            assert_eq!(rig.status, Status::Continue);
        }
        rig.advance(Duration::from_secs(1));
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::Shutdown);
    }

    #[test]
    fn shutdown_ends_with_close_notify() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.backend_send(b"pending");
        rig.session.shutdown(rig.now);
        rig.run();
        assert!(rig.client_saw_close_notify);
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::Shutdown);

        let mut rig = Rig::tls13();
        rig.session.shutdown(rig.now);
        rig.run();
        assert_eq!(rig.status, Status::Ended);
    }

    #[test]
    fn input_after_a_full_backend_close_is_dropped() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.b.eof = true;
        rig.run();
        assert!(rig.client_saw_close_notify);
        rig.b.reset = true; // ConfD closed the socket entirely
        rig.client_send(b"<rpc/>");
        rig.run();
        assert_eq!(rig.status, Status::Continue, "read and dropped");
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::BackendClosed);
    }

    /// Found by the session fuzz target: a backend that closed only its
    /// write side still reads the client's bytes, so a client that then
    /// cuts its stream (here, bytes that are not TLS) must not leave it a
    /// clean EOF, though the backend's close began the end.
    #[test]
    fn a_stream_cut_after_the_backend_closed_resets_it() {
        for cut in ["eof", "garbage", "reset"] {
            let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
            rig.b.eof = true;
            rig.run();
            assert!(rig.client_saw_close_notify);
            rig.client_send(b"<rpc>");
            rig.run();
            assert_eq!(rig.b.output, b"<rpc>", "the backend still reads");
            match cut {
                "eof" => rig.c.eof = true,
                "garbage" => rig.c.input.extend(b"\x17\x03\x03\x00\x05hello"),
                _ => rig.session.client_reset("connection reset by peer".into()),
            }
            rig.run();
            assert_eq!(rig.status, Status::Ended, "{cut}");
            assert_eq!(
                rig.reason(),
                EndReason::BackendClosed,
                "{cut}: the first event"
            );
            assert!(rig.session.backend_needs_reset(), "{cut}");
            assert!(!rig.b.write_shut, "{cut}");
        }
        // The client's close_notify instead: a clean end, no reset.
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.b.eof = true;
        rig.run();
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(!rig.session.backend_needs_reset());
        assert!(rig.b.write_shut);
    }

    #[test]
    fn client_reset_reported_by_the_loop_ends_a_paused_session() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.b.room = 0;
        rig.client_send(&bytes(256 * 1024));
        rig.run();
        rig.session.client_reset("connection reset by peer".into());
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert!(rig.reason().is_truncation());
    }

    #[test]
    fn backend_reset_at_connect_gets_close_notify() {
        let mut rig = Rig::tls13();
        rig.run();
        rig.session.admit(HEADER, rig.now);
        rig.connect();
        rig.session.backend_reset("connection reset by peer".into());
        rig.run();
        assert!(rig.client_saw_close_notify);
        assert!(matches!(rig.reason(), EndReason::BackendReset(_)));
        assert!(
            rig.b.output.is_empty(),
            "nothing written to a reset backend"
        );
    }

    #[test]
    fn backend_reset_closes_the_client_cleanly() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.backend_send(b"partial");
        rig.run();
        rig.b.reset = true;
        rig.run();
        assert_eq!(rig.received, b"partial");
        assert!(rig.client_saw_close_notify);
        assert!(matches!(rig.reason(), EndReason::BackendReset(_)));
    }

    #[test]
    fn waiting_sessions_hold_no_buffers() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        assert_eq!(rig.session.tls.buffer_capacity(), 0, "after the handshake");
        let data = bytes(200 * 1024);
        rig.client_send(&data);
        rig.backend_send(&data);
        rig.run();
        assert!(rig.b.output == data && rig.received == data);
        assert_eq!(rig.session.tls.buffer_capacity(), 0, "after traffic");
    }

    #[test]
    fn handshake_message_larger_than_a_read() {
        let mut rig = Rig::with_chain(&rustls::version::TLS13, limits(Tls12Close::Strict), 120);
        rig.run();
        assert_eq!(rig.status, Status::HandshakeDone);
        let chain = rig.session.peer_certificates().unwrap();
        let size: usize = chain.iter().map(|c| c.len()).sum();
        assert!(
            size > 40 * 1024,
            "client Certificate message of {size} bytes"
        );
    }

    #[test]
    fn key_update_mid_session() {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.client_send(b"before");
        rig.backend_send(b"before");
        rig.run();
        rig.client.refresh_traffic_keys().unwrap();
        rig.client_send(b"after");
        rig.backend_send(b"after");
        rig.run();
        assert_eq!(rig.b.output, b"beforeafter");
        assert_eq!(rig.received, b"beforeafter");
        assert!(rig.client_error.is_none());
        assert_eq!(rig.status, Status::Continue);
    }
}
