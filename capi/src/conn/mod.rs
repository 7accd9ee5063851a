//! Connection level: the C program accepts sockets, nctls does one session
//! on each, with the daemon's connection driver ([`Connection`]) on an
//! event loop of the connection's own (`event_loop.rs`); the descriptors
//! handed over are checked and owned in `socket.rs`.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CString};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;

use crate::boundary::{
    arg, free, guard, guard_ptr, guard_void, into_c, optional_output, output, text,
};
use crate::config::{nctls_config, Built};
use crate::reason::nctls_close_reason;
use crate::result::nctls_result;
use crate::strings::{c_text, text_ptr};
use nctls::daemon::backend::{BackendStream, Dialer};
use nctls::daemon::conn::{header_for, BackendSource, Connection, Step};
use nctls::relay::session::Session;

use event_loop::{ConnStop, EventLoop, TOKENS};
use socket::{check_client_fd, check_stream_socket, close, own_socket};

mod event_loop;
mod socket;
#[cfg(test)]
mod tests;

/// One client connection handed over by a C program: TLS handshake, then
/// a relay with the same connection driver, state machine and close
/// semantics as the server.
pub struct nctls_conn {
    /// What `nctls_conn_stop` touches, from any thread.
    stop: Arc<ConnStop>,
    /// Touched only by the one thread using the connection (caller's contract).
    inner: UnsafeCell<Conn>,
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

/// The part of a connection only the thread using it touches.
struct Conn {
    built: Arc<Built>,
    event_loop: EventLoop,
    stage: Stage,
    /// The verified chain, kept from accept to free for `nctls_conn_peer_cert`.
    chain: Vec<CertificateDer<'static>>,
    user: Option<CString>,
    /// The bytes each way, once the session is over.
    bytes: (u64, u64),
    error: CString,
}

impl nctls_conn {
    /// A connection for a client socket, which it owns on success only.
    ///
    /// # Safety
    /// `client_fd` is an open stream socket that nobody else closes once
    /// this succeeds.
    unsafe fn new(
        built: Arc<Built>,
        client_fd: RawFd,
        client_addr: SocketAddr,
    ) -> Result<nctls_conn, nctls_result> {
        let session = Session::new(
            built.tls.server.clone(),
            built.config.limits.clone(),
            Instant::now(),
        )
        .map_err(|_| nctls_result::Io)?;
        let (event_loop, stop) = EventLoop::new().map_err(|_| nctls_result::Io)?;
        // SAFETY: an open stream socket, ours once this call succeeds (the caller's contract).
        let client = unsafe { own_socket(client_fd) }.map_err(|_| nctls_result::Io)?;
        let keepalive = built.config.tcp_keepalive;
        let registry = event_loop.registry();
        let conn = Connection::new(session, client, client_addr, TOKENS, keepalive, registry)
            .map_err(|(_, client)| {
                // The caller keeps the descriptor on error: release it unclosed.
                let _ = client.into_raw_fd();
                nctls_result::Io
            })?;
        Ok(nctls_conn {
            stop,
            inner: UnsafeCell::new(Conn {
                built,
                event_loop,
                stage: Stage::New(conn),
                chain: Vec::new(),
                user: None,
                bytes: (0, 0),
                error: CString::default(),
            }),
        })
    }

    /// Asks the connection to end; touches only the shared stop part.
    fn stop(&self) -> Result<(), nctls_result> {
        if self.stop.requested.swap(true, Ordering::SeqCst) {
            return Err(nctls_result::AlreadyStopping);
        }
        self.stop.waker.wake().map_err(|_| nctls_result::Io)
    }
}

/// The single-thread part of a connection, to read.
///
/// # Safety
/// `conn` is NULL or a live connection used by one thread at a time (the
/// caller's contract), and no `&mut` to the part lives meanwhile.
unsafe fn shared<'a>(conn: *const nctls_conn) -> Result<&'a Conn, nctls_result> {
    // SAFETY: NULL or live; the part is only reached by the thread using
    // the connection, and `nctls_conn_stop` never touches it.
    Ok(unsafe { &*arg(conn)?.inner.get() })
}

/// The single-thread part of a connection, to change.
///
/// # Safety
/// `conn` is NULL or a live connection used by one thread at a time (the
/// caller's contract), and nothing else holds the part while `'a` lasts.
unsafe fn exclusive<'a>(conn: *mut nctls_conn) -> Result<&'a mut Conn, nctls_result> {
    // SAFETY: as in `shared`, and nothing else holds the part.
    Ok(unsafe { &mut *arg(conn)?.inner.get() })
}

impl Conn {
    /// Keeps `message` for `nctls_conn_error` and fails with `code`.
    fn fail(&mut self, code: nctls_result, message: &str) -> nctls_result {
        self.error = c_text(message);
        code
    }

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

    /// The handshake, then the rules' answer.
    fn accept(&mut self) -> Result<(), nctls_result> {
        let mut conn = self.take_new().ok_or(nctls_result::WrongState)?;
        if self.event_loop.drive(&mut conn) != Step::Identify {
            return Err(match self.finish(conn) {
                nctls_close_reason::InternalError => nctls_result::Io,
                _ => nctls_result::HandshakeFailed,
            });
        }
        self.chain = conn.chain().to_vec();
        match self.built.tls.mapper.user_for(&self.chain) {
            Ok(user) => self.user = Some(c_text(&user)),
            Err(why) => self.error = c_text(&format!("no user: {why}")),
        }
        self.stage = Stage::Accepted(conn);
        Ok(())
    }

    /// Overrides the user (`None`: no user) once accepted.
    fn set_user(&mut self, name: Option<Result<&str, nctls_result>>) -> Result<(), nctls_result> {
        if !matches!(self.stage, Stage::Accepted(_)) {
            return Err(nctls_result::WrongState);
        }
        let Some(name) = name else {
            self.user = None;
            return Ok(());
        };
        let name = name.map_err(|code| self.fail(code, "user: not UTF-8"))?;
        if let Err(why) = self.built.config.header.check_user(name) {
            return Err(self.fail(
                nctls_result::InvalidParameter,
                &format!("user {name:?}: {why}"),
            ));
        }
        self.user = Some(c_text(name));
        Ok(())
    }

    /// The `index`th certificate of the verified chain, once accepted.
    fn peer_cert(&self, index: usize) -> Result<&CertificateDer<'static>, nctls_result> {
        if matches!(self.stage, Stage::New(_)) {
            return Err(nctls_result::WrongState);
        }
        self.chain.get(index).ok_or(nctls_result::InvalidParameter)
    }

    /// Takes over the caller's backend descriptor (none for -1): from here
    /// on it is ours, and closed on every error.
    ///
    /// # Safety
    /// `fd` is -1 or a descriptor handed over that nothing else closes.
    unsafe fn take_backend(
        &mut self,
        fd: c_int,
    ) -> Result<Option<io::Result<BackendStream>>, nctls_result> {
        if fd < 0 {
            return Ok(None);
        }
        if let Err(why) = check_stream_socket(fd) {
            // SAFETY: handed over: closing a non-socket descriptor is what
            // "nctls closes it" means.
            unsafe { close(fd) };
            return Err(self.fail(
                nctls_result::InvalidParameter,
                &format!("backend_fd: {why}"),
            ));
        }
        // SAFETY: an open stream socket, handed over.
        let socket = unsafe { own_socket(fd) }.inspect_err(|_| {
            // SAFETY: handed over and not owned by anything else: close it as promised.
            unsafe { close(fd) }
        });
        Ok(Some(socket.map(BackendStream::Tcp)))
    }

    /// Relays the accepted session to `backend` (or the configured
    /// addresses) until it ends; its close reason.
    fn relay(
        &mut self,
        backend: Option<io::Result<BackendStream>>,
    ) -> Result<nctls_close_reason, nctls_result> {
        let mut conn = self.take_accepted().ok_or(nctls_result::WrongState)?;
        let now = Instant::now();
        let built = self.built.clone();
        let user = match self.user.as_ref().map(|u| u.to_str()) {
            Some(Ok(user)) => Ok(user.to_string()),
            _ => Err("no user for this certificate".to_string()),
        };
        let config = &built.config;
        match header_for(user, config.header, &config.accounts, conn.client_addr()) {
            Err(why) => conn.refuse(why, now),
            Ok((user, header)) => {
                let registry = self.event_loop.registry();
                let source = match backend {
                    // Every configured address, in order.
                    None => BackendSource::Dial(Dialer::new(&config.backend)),
                    Some(Ok(socket)) => BackendSource::Given(socket),
                    Some(Err(e)) => {
                        conn.fail(format!("backend_fd: {e}"), now);
                        return Ok(self.run_to_end(conn));
                    }
                };
                conn.admit(user, &header, source, registry, now);
            }
        }
        Ok(self.run_to_end(conn))
    }

    /// Refuses the accepted client: close_notify, no backend.
    fn refuse(&mut self) -> Result<(), nctls_result> {
        let mut conn = self.take_accepted().ok_or(nctls_result::WrongState)?;
        conn.refuse("refused by the application".into(), Instant::now());
        self.run_to_end(conn);
        Ok(())
    }

    /// Runs `conn` to its end, closes its sockets; the close reason.
    fn run_to_end(&mut self, mut conn: Connection) -> nctls_close_reason {
        // Admitted or refused: the next stop is the end.
        self.event_loop.drive(&mut conn);
        self.finish(conn)
    }

    fn finish(&mut self, conn: Connection) -> nctls_close_reason {
        let end = conn.finish(self.event_loop.registry(), Instant::now());
        self.stage = Stage::Ended;
        self.bytes = (end.bytes_in, end.bytes_out);
        if let Some(reason) = &end.reason {
            self.error = c_text(&reason.to_string());
        }
        nctls_close_reason::of(end.reason.as_ref())
    }

    /// Plaintext bytes (client → backend, backend → client) so far.
    fn bytes(&self) -> (u64, u64) {
        match &self.stage {
            Stage::New(c) | Stage::Accepted(c) => c.session().bytes(),
            Stage::Ended => self.bytes,
        }
    }
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
        // SAFETY: NULL or a live config; NULL or writable (the caller's contract).
        let (built, out) = unsafe { (arg(cfg)?.built()?, output(out)?) };
        let client_addr = check_client_fd(client_fd).map_err(|_| nctls_result::InvalidParameter)?;
        // SAFETY: checked to be an open stream socket, handed over on success.
        out.write(into_c(unsafe {
            nctls_conn::new(built, client_fd, client_addr)
        }?));
        Ok(())
    })
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
    // SAFETY: NULL or a live connection used by one thread (the caller's contract).
    guard(|| unsafe { exclusive(conn) }?.accept())
}

/// The user the rules chose at `nctls_conn_accept`, or the one set by
/// `nctls_conn_set_user`; NULL when there is none (relaying then refuses).
/// Owned by `conn`, valid until the next call on it. Not thread-safe with
/// other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_user(conn: *const nctls_conn) -> *const c_char {
    guard_ptr(|| {
        // SAFETY: NULL or a live connection used by one thread (the caller's contract).
        let conn = unsafe { shared(conn) }.ok()?;
        Some(text_ptr(&conn.user))
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
        // SAFETY: NULL or a live connection used by one thread; NULL or a
        // NUL-terminated string (the caller's contract).
        let (conn, name) = unsafe { (exclusive(conn)?, (!user.is_null()).then(|| text(user))) };
        conn.set_user(name)
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
        // SAFETY: NULL or a live connection used by one thread; NULL or
        // writable outputs (the caller's contract).
        let (conn, der, der_len) = unsafe { (shared(conn)?, output(der)?, output(der_len)?) };
        let cert = conn.peer_cert(index)?;
        der.write(cert.as_ptr());
        der_len.write(cert.len());
        Ok(())
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
        // SAFETY: NULL or a live connection used by one thread; NULL or
        // writable; the backend descriptor handed over (the caller's contract).
        let (conn, reason) = unsafe { (exclusive(conn)?, optional_output(reason)) };
        // SAFETY: -1 or handed over: ours from here on, whatever happens.
        let backend = unsafe { conn.take_backend(backend_fd) }?;
        let why = conn.relay(backend)?;
        if let Some(reason) = reason {
            reason.write(why);
        }
        Ok(())
    })
}

/// Refuses the accepted client: close_notify (flushed, bounded by the drain
/// timeout), the backend never contacted, the socket closed; the close
/// reason is NCTLS_CLOSE_REASON_REFUSED. NCTLS_RESULT_WRONG_STATE unless
/// `nctls_conn_accept` succeeded and nothing was relayed. Not thread-safe
/// with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_refuse(conn: *mut nctls_conn) -> nctls_result {
    // SAFETY: NULL or a live connection used by one thread (the caller's contract).
    guard(|| unsafe { exclusive(conn) }?.refuse())
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
        // SAFETY: NULL or a live connection used by one thread; each output
        // NULL or writable (the caller's contract).
        let (conn, bytes_in, bytes_out) = unsafe {
            (
                shared(conn)?,
                optional_output(bytes_in),
                optional_output(bytes_out),
            )
        };
        let (up, down) = conn.bytes();
        if let Some(p) = bytes_in {
            p.write(up);
        }
        if let Some(p) = bytes_out {
            p.write(down);
        }
        Ok(())
    })
}

/// Why the connection ended or the last call on it failed, e.g.
/// `handshake-failed: ...` or `backend-closed`; "" if nothing to say, NULL
/// if `conn` is NULL. Owned by `conn`, valid until its next call or free.
/// Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_error(conn: *const nctls_conn) -> *const c_char {
    guard_ptr(|| {
        // SAFETY: NULL or a live connection used by one thread (the caller's contract).
        let conn = unsafe { shared(conn) }.ok()?;
        Some(conn.error.as_ptr())
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
    // SAFETY: NULL or a live connection (the caller's contract); stop
    // touches only its shared part.
    guard(|| unsafe { arg(conn) }?.stop())
}

/// Frees a connection and closes its sockets if still open; NULL is
/// ignored. Freeing an accepted connection that was neither relayed nor
/// refused closes the client without close_notify: call
/// `nctls_conn_refuse` first. Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_free(conn: *mut nctls_conn) {
    // SAFETY: NULL or made by nctls_conn_new and not freed before (the caller's contract).
    guard_void(|| unsafe { free(conn) })
}
