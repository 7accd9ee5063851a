//! Connection level: the C program accepts sockets, nctls does one session
//! on each, with the daemon's connection driver ([`Connection`]) and a
//! `mio::Poll` of the connection's own.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CString};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Poll, Token, Waker};
use rustls::pki_types::CertificateDer;

use super::{
    c_text, close_reason, guard, guard_or, loaded, nctls_close_reason, nctls_config, nctls_result,
    text_ptr, utf8, Built,
};
use crate::daemon::backend::{BackendStream, Dialer};
use crate::daemon::conn::{header_for, BackendSource, Connection, Step, Tokens};
use crate::relay::session::{Session, Side};

const TOKENS: Tokens = Tokens {
    client: Token(0),
    backend: Token(1),
};
const WAKE: Token = Token(2);

/// What one read from the backend may bring (as in the daemon).
const SCRATCH: usize = 64 * 1024;

/// One client connection handed over by a C program: TLS handshake, then
/// a relay with the same connection driver, state machine and close
/// semantics as the server.
pub struct nctls_conn {
    /// What `nctls_conn_stop` touches, from any thread.
    stop: Arc<ConnStop>,
    /// Touched only by the one thread using the connection (caller's contract).
    inner: UnsafeCell<Conn>,
}

struct ConnStop {
    requested: AtomicBool,
    waker: Waker,
}

/// Where the connection is in the calls the C program makes.
enum Stage {
    /// Made; `nctls_conn_accept` is next.
    New(Connection),
    /// Handshake done, identity not yet acted on: relay or refuse is next.
    Accepted(Connection),
    /// The session is over and its sockets closed.
    Ended,
}

struct Conn {
    built: Arc<Built>,
    event_loop: Loop,
    stage: Stage,
    /// The verified chain, kept from accept to free for `nctls_conn_peer_cert`.
    chain: Vec<CertificateDer<'static>>,
    user: Option<CString>,
    /// The bytes each way, once the session is over.
    bytes: (u64, u64),
    error: CString,
}

/// The connection's own event loop.
struct Loop {
    poll: Poll,
    events: Events,
    stop: Arc<ConnStop>,
    /// `nctls_conn_stop` has been acted on.
    stopped: bool,
    scratch: Vec<u8>,
}

impl Loop {
    /// Drives `conn` until it needs the caller: [`Step::Identify`] or
    /// [`Step::Ended`] (also when the poll fails: an internal error).
    fn drive(&mut self, conn: &mut Connection) -> Step {
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
}

impl Conn {
    /// The connection, taken out, if the handshake is still to be done.
    fn take_new(&mut self) -> Option<Connection> {
        match std::mem::replace(&mut self.stage, Stage::Ended) {
            Stage::New(conn) => Some(conn),
            other => {
                self.stage = other;
                None
            }
        }
    }

    /// The connection, taken out, if it is accepted and not yet relayed.
    fn take_accepted(&mut self) -> Option<Connection> {
        match std::mem::replace(&mut self.stage, Stage::Ended) {
            Stage::Accepted(conn) => Some(conn),
            other => {
                self.stage = other;
                None
            }
        }
    }

    /// Runs `conn` to its end, closes its sockets; the close reason.
    fn run_to_end(&mut self, mut conn: Connection) -> nctls_close_reason {
        // Admitted or refused: the next stop is the end.
        self.event_loop.drive(&mut conn);
        self.finish(conn)
    }

    fn finish(&mut self, conn: Connection) -> nctls_close_reason {
        let end = conn.finish(self.event_loop.poll.registry(), Instant::now());
        self.stage = Stage::Ended;
        self.bytes = (end.bytes_in, end.bytes_out);
        if let Some(reason) = &end.reason {
            self.error = c_text(&reason.to_string());
        }
        close_reason(end.reason.as_ref())
    }
}

/// Checks that `fd` is an open, connected stream socket with an IP peer.
fn check_client_fd(fd: RawFd) -> Result<SocketAddr, &'static str> {
    check_stream_socket(fd)?;
    // SAFETY: `fd` is an open socket (checked above); ManuallyDrop keeps us
    // from closing it, since it is not ours yet.
    let sock = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    // One form per client (IPv4, not ::ffff:a.b.c.d), as in the daemon.
    sock.peer_addr()
        .map(crate::identity::addr::canonical)
        .map_err(|_| "client_fd is not a connected TCP socket")
}

fn check_stream_socket(fd: RawFd) -> Result<(), &'static str> {
    if fd < 0 {
        return Err("the descriptor is negative");
    }
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || kind != libc::SOCK_STREAM {
        return Err("the descriptor is not an open stream socket");
    }
    Ok(())
}

/// Takes ownership of a checked socket, non-blocking, as a mio stream; on
/// error the descriptor is left open and not owned.
///
/// # Safety
/// `fd` is an open stream socket that nobody else will close once this succeeds.
unsafe fn own_socket(fd: RawFd) -> io::Result<TcpStream> {
    // SAFETY: an open socket; ManuallyDrop keeps it unowned until the end.
    let std = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    std.set_nonblocking(true)?;
    Ok(TcpStream::from_std(std::mem::ManuallyDrop::into_inner(std)))
}

/// Makes a connection object for an accepted client socket; no I/O yet.
///
/// Ownership of `client_fd`: on NCTLS_RESULT_OK nctls owns it (makes it
/// non-blocking, turns on TCP keepalive as the `tcp-keepalive` setting says,
/// closes it when the session ends or at `nctls_conn_free`);
/// the caller must not use or close it any more. On any error the caller
/// still owns it. It must be a connected TCP socket
/// (NCTLS_RESULT_INVALID_PARAMETER otherwise). `cfg` must be loaded; the
/// connection keeps what it needs, so `cfg` may be freed afterwards.
/// Thread-safe with other calls that read `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_new(
    cfg: *const nctls_config,
    client_fd: c_int,
    out: *mut *mut nctls_conn,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live config (caller's contract).
        let built = match unsafe { loaded(cfg) } {
            Ok(b) => b,
            Err(e) => return e,
        };
        if out.is_null() {
            return nctls_result::NullParameter;
        }
        let Ok(client_addr) = check_client_fd(client_fd) else {
            return nctls_result::InvalidParameter;
        };
        let now = Instant::now();
        let Ok(session) = Session::new(built.tls.server.clone(), built.config.limits.clone(), now)
        else {
            return nctls_result::Io;
        };
        let Ok(poll) = Poll::new() else {
            return nctls_result::Io;
        };
        let Ok(waker) = Waker::new(poll.registry(), WAKE) else {
            return nctls_result::Io;
        };
        // SAFETY: checked above to be an open stream socket, handed over on success.
        let Ok(client) = (unsafe { own_socket(client_fd) }) else {
            return nctls_result::Io;
        };
        let keepalive = built.config.tcp_keepalive;
        let conn = match Connection::new(
            session,
            client,
            client_addr,
            TOKENS,
            keepalive,
            poll.registry(),
        ) {
            Ok(conn) => conn,
            Err((_, client)) => {
                // The caller keeps the descriptor on error: release it unclosed.
                let _ = client.into_raw_fd();
                return nctls_result::Io;
            }
        };
        let stop = Arc::new(ConnStop {
            requested: AtomicBool::new(false),
            waker,
        });
        let conn = Box::new(nctls_conn {
            stop: stop.clone(),
            inner: UnsafeCell::new(Conn {
                built,
                event_loop: Loop {
                    poll,
                    events: Events::with_capacity(8),
                    stop,
                    stopped: false,
                    scratch: vec![0; SCRATCH],
                },
                stage: Stage::New(conn),
                chain: Vec::new(),
                user: None,
                bytes: (0, 0),
                error: CString::default(),
            }),
        });
        // SAFETY: `out` is not NULL and points to writable storage for a pointer.
        unsafe { *out = Box::into_raw(conn) };
        nctls_result::Ok
    })
}

/// The single-thread part of a connection.
///
/// # Safety
/// `conn` is NULL or a live connection, used by one thread at a time
/// (caller's contract), and nothing else holds the result.
unsafe fn conn_mut<'a>(conn: *const nctls_conn) -> Option<&'a mut Conn> {
    // SAFETY: NULL or live (caller's contract); `inner` is only reached by
    // the thread using the connection, `nctls_conn_stop` never touches it.
    unsafe { conn.as_ref().map(|c| &mut *c.inner.get()) }
}

/// Does the TLS handshake (blocking, bounded by the `handshake-timeout`
/// setting) and verifies the client certificate against the CA and CRLs,
/// then applies the cert-to-name rules: `nctls_conn_user` tells their
/// answer (NULL if none), `nctls_conn_peer_cert` the chain. Nothing is sent
/// to any backend. NCTLS_RESULT_HANDSHAKE_FAILED when the handshake fails
/// or times out (the client got an alert; the reason is in
/// `nctls_conn_error`, the socket is closed); NCTLS_RESULT_IO when nctls's
/// own event handling failed (`internal-error: ...` in `nctls_conn_error`,
/// the socket is closed); NCTLS_RESULT_WRONG_STATE if called twice. Not
/// thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_accept(conn: *mut nctls_conn) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(c) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        let Some(mut conn) = c.take_new() else {
            return nctls_result::WrongState;
        };
        if c.event_loop.drive(&mut conn) != Step::Identify {
            return match c.finish(conn) {
                nctls_close_reason::InternalError => nctls_result::Io,
                _ => nctls_result::HandshakeFailed,
            };
        }
        c.chain = conn.chain().to_vec();
        match c.built.tls.mapper.user_for(&c.chain) {
            Ok(user) => c.user = Some(c_text(&user)),
            Err(why) => c.error = c_text(&format!("no user: {why}")),
        }
        c.stage = Stage::Accepted(conn);
        nctls_result::Ok
    })
}

/// The user the rules chose at `nctls_conn_accept`, or the one set by
/// `nctls_conn_set_user`; NULL when there is none (relaying then refuses).
/// Owned by `conn`, valid until the next call on it. Not thread-safe with
/// other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_user(conn: *const nctls_conn) -> *const c_char {
    guard_or(std::ptr::null(), || {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        unsafe { conn_mut(conn) }.map_or(std::ptr::null(), |c| text_ptr(&c.user))
    })
}

/// Overrides the user after `nctls_conn_accept` (the caller's own mapping);
/// NULL clears it, so `nctls_conn_relay` refuses the client. The name must
/// be safe for the session header (NCTLS_RESULT_INVALID_PARAMETER, reason in
/// `nctls_conn_error`); NCTLS_RESULT_WRONG_STATE outside the accepted state.
/// Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_set_user(
    conn: *mut nctls_conn,
    user: *const c_char,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        if !matches!(conn.stage, Stage::Accepted(_)) {
            return nctls_result::WrongState;
        }
        if user.is_null() {
            conn.user = None;
            return nctls_result::Ok;
        }
        // SAFETY: not NULL; a NUL-terminated string (caller's contract).
        let Ok(name) = (unsafe { utf8(user) }) else {
            conn.error = c_text("user: not UTF-8");
            return nctls_result::InvalidParameter;
        };
        if let Err(why) = conn.built.config.header.check_user(name) {
            conn.error = c_text(&format!("user {name:?}: {why}"));
            return nctls_result::InvalidParameter;
        }
        conn.user = Some(c_text(name));
        nctls_result::Ok
    })
}

/// The `index`th certificate of the client's verified chain (0 is the
/// client's own), DER, after a successful `nctls_conn_accept`. The bytes
/// are owned by `conn` and valid until `nctls_conn_free`.
/// NCTLS_RESULT_INVALID_PARAMETER past the end of the chain. Not
/// thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_peer_cert(
    conn: *const nctls_conn,
    index: usize,
    der: *mut *const u8,
    der_len: *mut usize,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        if der.is_null() || der_len.is_null() {
            return nctls_result::NullParameter;
        }
        if matches!(conn.stage, Stage::New(_)) {
            return nctls_result::WrongState;
        }
        let Some(cert) = conn.chain.get(index) else {
            return nctls_result::InvalidParameter;
        };
        // SAFETY: both outputs are not NULL and writable (caller's contract).
        unsafe {
            *der = cert.as_ptr();
            *der_len = cert.len();
        }
        nctls_result::Ok
    })
}

/// Relays the accepted session to the backend until it ends, with the
/// daemon's close semantics (README, "How a session ends"); blocks, bounded
/// by the configured timeouts. Writes the close reason to `reason` (may be
/// NULL) and returns NCTLS_RESULT_OK whenever the session ran, however it
/// ended (details in `nctls_conn_error`). Without a user it refuses: the
/// client gets close_notify and the backend is not contacted.
///
/// `backend_fd`: a connected stream socket to the backend (TCP or unix),
/// or -1 to connect to the configured `backend` address. Ownership: unless
/// `conn` is NULL, nctls owns `backend_fd` from this call on and has closed
/// it when the call returns, whatever it returns (with a TCP reset when the
/// client's stream was truncated, so the backend never mistakes it for a
/// clean end). The client socket is closed too. NCTLS_RESULT_WRONG_STATE
/// unless `nctls_conn_accept` succeeded and nothing was relayed yet. Not
/// thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_relay(
    conn: *mut nctls_conn,
    backend_fd: c_int,
    reason: *mut nctls_close_reason,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(c) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        // The backend descriptor is ours from here on, whatever happens.
        let backend = if backend_fd >= 0 {
            match check_stream_socket(backend_fd) {
                // SAFETY: an open stream socket, handed over by the caller.
                Ok(()) => Some(
                    unsafe { own_socket(backend_fd) }
                        .map(BackendStream::Tcp)
                        .inspect_err(|_| {
                            // SAFETY: handed over and not owned by anything else: close it as promised.
                            unsafe { libc::close(backend_fd) };
                        }),
                ),
                Err(why) => {
                    // SAFETY: the caller handed it over; closing a
                    // non-socket descriptor is what "nctls closes it" means.
                    unsafe { libc::close(backend_fd) };
                    c.error = c_text(&format!("backend_fd: {why}"));
                    return nctls_result::InvalidParameter;
                }
            }
        } else {
            None
        };
        let Some(mut conn) = c.take_accepted() else {
            return nctls_result::WrongState;
        };
        let now = Instant::now();
        let built = c.built.clone();
        let user = match c.user.as_ref().map(|u| u.to_str()) {
            Some(Ok(user)) => Ok(user.to_string()),
            _ => Err("no user for this certificate".to_string()),
        };
        match header_for(
            user,
            built.config.header,
            &built.config.accounts,
            conn.client_addr(),
        ) {
            Err(why) => conn.refuse(why, now),
            Ok((user, header)) => {
                let registry = c.event_loop.poll.registry();
                match backend {
                    // Every configured address, in order.
                    None => {
                        let source = BackendSource::Dial(Dialer::new(&built.config.backend));
                        conn.admit(user, &header, source, registry, now);
                    }
                    Some(Ok(socket)) => {
                        conn.admit(user, &header, BackendSource::Given(socket), registry, now)
                    }
                    Some(Err(e)) => conn.fail(format!("backend_fd: {e}"), now),
                }
            }
        }
        let why = c.run_to_end(conn);
        if !reason.is_null() {
            // SAFETY: not NULL and writable (caller's contract).
            unsafe { *reason = why };
        }
        nctls_result::Ok
    })
}

/// Refuses the accepted client: close_notify (flushed, bounded by the drain
/// timeout), the backend never contacted, the socket closed; the close
/// reason is NCTLS_CLOSE_REASON_REFUSED. NCTLS_RESULT_WRONG_STATE unless
/// `nctls_conn_accept` succeeded and nothing was relayed. Not thread-safe
/// with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_refuse(conn: *mut nctls_conn) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(c) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        let Some(mut conn) = c.take_accepted() else {
            return nctls_result::WrongState;
        };
        conn.refuse("refused by the application".into(), Instant::now());
        c.run_to_end(conn);
        nctls_result::Ok
    })
}

/// Plaintext bytes relayed client -> backend (`bytes_in`) and backend ->
/// client (`bytes_out`); either pointer may be NULL. Not thread-safe with
/// other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_bytes(
    conn: *const nctls_conn,
    bytes_in: *mut u64,
    bytes_out: *mut u64,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        let (up, down) = match &conn.stage {
            Stage::New(c) | Stage::Accepted(c) => c.session().bytes(),
            Stage::Ended => conn.bytes,
        };
        // SAFETY: each is NULL or writable (caller's contract).
        unsafe {
            if let Some(p) = bytes_in.as_mut() {
                *p = up;
            }
            if let Some(p) = bytes_out.as_mut() {
                *p = down;
            }
        }
        nctls_result::Ok
    })
}

/// Why the connection ended or the last call on it failed, e.g.
/// `handshake-failed: ...` or `backend-closed`; "" if nothing to say, NULL
/// if `conn` is NULL. Owned by `conn`, valid until its next call or free.
/// Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_error(conn: *const nctls_conn) -> *const c_char {
    guard_or(std::ptr::null(), || {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        unsafe { conn_mut(conn) }.map_or(std::ptr::null(), |c| c.error.as_ptr())
    })
}

/// Asks a connection to end: a handshake in progress fails, a relay ends
/// with close_notify to the client and the backend closed (close reason
/// NCTLS_CLOSE_REASON_SHUTDOWN), and a later accept, relay or refuse ends
/// the same way at once. Callable from any thread and from a signal handler
/// (a flag and an eventfd write); the connection must not be freed meanwhile.
/// A second call returns NCTLS_RESULT_ALREADY_STOPPING.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_stop(conn: *const nctls_conn) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection; only its shared stop part is touched.
        let Some(conn) = (unsafe { conn.as_ref() }) else {
            return nctls_result::NullParameter;
        };
        if conn.stop.requested.swap(true, Ordering::SeqCst) {
            return nctls_result::AlreadyStopping;
        }
        match conn.stop.waker.wake() {
            Ok(()) => nctls_result::Ok,
            Err(_) => nctls_result::Io,
        }
    })
}

/// Frees a connection and closes its sockets if still open; NULL is
/// ignored. Freeing an accepted connection that was neither relayed nor
/// refused closes the client without close_notify: call
/// `nctls_conn_refuse` first. Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_free(conn: *mut nctls_conn) {
    guard_or((), || {
        if !conn.is_null() {
            // SAFETY: made by nctls_conn_new and not freed before (caller's contract).
            drop(unsafe { Box::from_raw(conn) });
        }
    })
}

#[cfg(test)]
mod tests;
