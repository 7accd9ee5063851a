//! The C API: `libnctls.so` / `libnctls.a`, declared in `include/nctls.h`,
//! which cbindgen generates from this file (`make header`).
//!
//! Conventions (after rustls-ffi): one prefix `nctls_`; opaque objects made
//! by `*_new` and released by a NULL-safe `*_free`; every fallible call
//! returns an `nctls_result` and writes its outputs only on success; every
//! pointer is checked; every exported body runs inside `catch_unwind`, so a
//! Rust panic becomes `NCTLS_RESULT_PANIC`, never an unwind into C.
//!
//! `unsafe` here is the boundary itself: turning the caller's pointers and
//! descriptors into references and owned sockets, and calling its callbacks.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use log::Level;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::tls::{self, Loaded};
use crate::config::{self, Config};
use crate::daemon::backend::{self, Attempt, BackendStream, Dialer};
use crate::daemon::hooks::{self, Hooks, IdentityRequest, SessionEnd};
use crate::daemon::server::{Server, Stopper};
use crate::identity::header;
use crate::relay::session::{EndReason, Session, Side, Status};

/// What every fallible call returns. `NCTLS_RESULT_OK` is 0; errors have
/// their own range (from 8100) so they never read as an errno value.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_result {
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 8101,
    /// An argument is invalid: not UTF-8, not a connected stream socket, out of range.
    InvalidParameter = 8102,
    /// A setting, or the settings as a whole, are invalid; the config's error says which.
    BadConfig = 8103,
    /// The configuration has not been loaded (`nctls_config_load`) since it last changed.
    NotLoaded = 8104,
    /// A certificate, key, CA or CRL file could not be used; the config's error says which.
    LoadFailed = 8105,
    /// A listen address could not be bound; the server's error says which.
    ListenFailed = 8106,
    /// An operating-system call failed; the object's error says which.
    Io = 8107,
    /// The server is running: it cannot be freed, changed or run again until
    /// `nctls_server_run` returns.
    Busy = 8108,
    /// `nctls_server_stop` was already called; this call changed nothing.
    AlreadyStopping = 8109,
    /// The call is out of order (run after the server has run, relay before accept, ...).
    WrongState = 8110,
    /// The TLS handshake failed or timed out; the connection's error says why.
    HandshakeFailed = 8111,
    /// A Rust panic was caught at the boundary (a bug in nctls; please report it).
    Panic = 8199,
}

/// How a session ended: the first event that began its end (the README's
/// close-semantics table).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_close_reason {
    /// Not ended (yet).
    None = 0,
    /// The backend closed (ConfD after kill-session or close-session): every
    /// byte delivered, then close_notify.
    BackendClosed = 1,
    BackendReset = 2,
    /// The client sent close_notify; the backend saw EOF.
    ClientCloseNotify = 3,
    /// The client's TCP stream ended without close_notify (truncation: the backend was reset).
    ClientEof = 4,
    ClientReset = 5,
    TlsError = 6,
    HandshakeFailed = 7,
    HandshakeTimeout = 8,
    /// The identity decision refused the client (close_notify, backend never contacted).
    Refused = 9,
    BackendUnreachable = 10,
    ConnectTimeout = 11,
    IdleTimeout = 12,
    DrainTimeout = 13,
    /// `nctls_server_stop`: ended with close_notify.
    Shutdown = 14,
}

/// Severity of a log line.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_log_level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// What an identity callback returns: accept with the name it left in its
/// `user` buffer, or refuse the client (close_notify; the backend is never
/// contacted). Any other value refuses.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_identity {
    Accept = 0,
    Refuse = 1,
}

/// The longest user name, in bytes, without the terminating NUL.
pub const NCTLS_USER_MAX: usize = 255;
const _: () = assert!(NCTLS_USER_MAX == header::MAX_NAME);

/// One DER certificate; valid only while the call that gave it runs.
#[repr(C)]
pub struct nctls_cert {
    pub der: *const u8,
    pub len: usize,
}

/// What an identity callback is asked about. Every pointer is valid only
/// during the callback.
#[repr(C)]
pub struct nctls_peer {
    /// The verified chain as the client sent it, end-entity certificate first.
    pub chain: *const nctls_cert,
    pub chain_len: usize,
    /// The client's address, `IP:port`.
    pub client: *const c_char,
    /// The user the configured cert-to-name rules chose, or NULL when none did.
    pub rules_user: *const c_char,
    /// Why the rules chose no one, or NULL when they did.
    pub rules_error: *const c_char,
}

/// One ended session, as its log line tells it. Every pointer is valid only
/// during the callback; the optional ones are NULL when unknown.
#[repr(C)]
pub struct nctls_session_info {
    /// The client's address, `IP:port`.
    pub client: *const c_char,
    /// The user the session ran as; NULL if it never got that far.
    pub user: *const c_char,
    /// The client certificate's subject, e.g. `CN=admin`; NULL without one.
    pub subject: *const c_char,
    /// SHA-256 of the client certificate, hex pairs joined by `:`; NULL without one.
    pub sha256: *const c_char,
    /// TLS version and cipher suite, `-` if the handshake did not finish.
    pub tls: *const c_char,
    pub reason: nctls_close_reason,
    /// The reason's token, then `: ` and its detail when it has one, e.g.
    /// `client-reset: Connection reset by peer (os error 104)`.
    pub reason_text: *const c_char,
    /// Plaintext bytes client -> backend.
    pub bytes_in: u64,
    /// Plaintext bytes backend -> client.
    pub bytes_out: u64,
    pub duration_us: u64,
}

/// Receives the server's log lines (without a trailing newline), filtered by
/// the `log-level` setting. Called on the thread running `nctls_server_run`.
pub type nctls_log_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: nctls_log_level, message: *const c_char),
>;

/// Decides who a verified client is, instead of the rules (which are still
/// consulted: their answer is in `peer`). `user` holds `user_len` bytes
/// (NCTLS_USER_MAX + 1), prefilled with the rules' user or "": to accept,
/// leave or write a NUL-terminated name there and return
/// NCTLS_IDENTITY_ACCEPT. The name must be safe for the session header
/// (non-empty, no `;`, `[`, `]` or control characters), else the session is
/// refused. Called on the thread running `nctls_server_run`, once per
/// session, before any byte reaches the backend; it blocks that thread, so
/// keep it short.
pub type nctls_identity_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        peer: *const nctls_peer,
        user: *mut c_char,
        user_len: usize,
    ) -> c_int,
>;

/// Told about every ended session. Called on the thread running `nctls_server_run`.
pub type nctls_session_end_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, info: *const nctls_session_info)>;

// ---------------------------------------------------------------------------
// Boundary helpers

/// Runs `body`, turning a panic into `NCTLS_RESULT_PANIC`.
fn guard(body: impl FnOnce() -> nctls_result) -> nctls_result {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(nctls_result::Panic)
}

/// Runs `body`, turning a panic into `fallback` (for calls that return no result).
fn guard_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A NUL-terminated C string as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
unsafe fn utf8<'a>(p: *const c_char) -> Result<&'a str, nctls_result> {
    if p.is_null() {
        return Err(nctls_result::NullParameter);
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| nctls_result::InvalidParameter)
}

/// A C string for text that may (in theory) hold a NUL: certificate subjects.
fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn text_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

fn close_reason(r: Option<&EndReason>) -> nctls_close_reason {
    use nctls_close_reason as C;
    match r {
        None => C::None,
        Some(EndReason::BackendClosed) => C::BackendClosed,
        Some(EndReason::BackendReset(_)) => C::BackendReset,
        Some(EndReason::ClientCloseNotify) => C::ClientCloseNotify,
        Some(EndReason::ClientEof) => C::ClientEof,
        Some(EndReason::ClientReset(_)) => C::ClientReset,
        Some(EndReason::TlsError(_)) => C::TlsError,
        Some(EndReason::HandshakeFailed(_)) => C::HandshakeFailed,
        Some(EndReason::HandshakeTimeout) => C::HandshakeTimeout,
        Some(EndReason::Refused(_)) => C::Refused,
        Some(EndReason::BackendUnreachable(_)) => C::BackendUnreachable,
        Some(EndReason::ConnectTimeout) => C::ConnectTimeout,
        Some(EndReason::IdleTimeout) => C::IdleTimeout,
        Some(EndReason::DrainTimeout) => C::DrainTimeout,
        Some(EndReason::Shutdown) => C::Shutdown,
    }
}

// ---------------------------------------------------------------------------
// Version and messages

/// The library's version and TLS stack, e.g. `nctls/0.1.0 rustls/0.23 ring`.
/// A static string. Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_version() -> *const c_char {
    guard_or(std::ptr::null(), || {
        concat!("nctls/", env!("CARGO_PKG_VERSION"), " rustls/0.23 ring\0")
            .as_ptr()
            .cast()
    })
}

/// A static description of a result code (any value is accepted; unknown
/// ones say so). Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_result_str(result: u32) -> *const c_char {
    guard_or(std::ptr::null(), || result_str(result).as_ptr().cast())
}

fn result_str(result: u32) -> &'static str {
    match result {
        0 => "ok\0",
        8101 => "a required argument is NULL\0",
        8102 => "invalid argument\0",
        8103 => "invalid configuration\0",
        8104 => "configuration not loaded (nctls_config_load)\0",
        8105 => "cannot load a certificate, key, CA or CRL\0",
        8106 => "cannot listen\0",
        8107 => "operating system error\0",
        8108 => "the server is running\0",
        8109 => "already stopping\0",
        8110 => "call out of order\0",
        8111 => "TLS handshake failed\0",
        8199 => "internal error (panic caught)\0",
        _ => "unknown result code\0",
    }
}

/// A static name for a close reason: the token of the log lines' `reason=`
/// (`backend-closed`, `client-close-notify`, `drain-timeout`, ...; README,
/// "Session log lines"). Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_close_reason_str(reason: u32) -> *const c_char {
    guard_or(std::ptr::null(), || reason_str(reason).as_ptr().cast())
}

fn reason_str(reason: u32) -> &'static str {
    match reason {
        0 => "none\0",
        1 => "backend-closed\0",
        2 => "backend-reset\0",
        3 => "client-close-notify\0",
        4 => "client-eof\0",
        5 => "client-reset\0",
        6 => "tls-error\0",
        7 => "handshake-failed\0",
        8 => "handshake-timeout\0",
        9 => "refused\0",
        10 => "backend-unreachable\0",
        11 => "connect-timeout\0",
        12 => "idle-timeout\0",
        13 => "drain-timeout\0",
        14 => "shutdown\0",
        _ => "unknown close reason\0",
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// Settings, then their loaded form shared by the servers and connections
/// made from them.
pub struct nctls_config {
    pairs: Vec<(String, String)>,
    loaded: Option<Arc<Built>>,
    error: CString,
}

/// A validated configuration with its files read.
struct Built {
    config: Config,
    tls: Loaded,
}

impl nctls_config {
    fn fail(&mut self, code: nctls_result, message: &str) -> nctls_result {
        self.error = c_text(message);
        code
    }
}

/// Makes an empty configuration: every setting at its default (the GnuTLS
/// demo's, as for the `nctls` command). Free it with `nctls_config_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_new(out: *mut *mut nctls_config) -> nctls_result {
    guard(|| {
        if out.is_null() {
            return nctls_result::NullParameter;
        }
        let cfg = Box::new(nctls_config {
            pairs: Vec::new(),
            loaded: None,
            error: CString::default(),
        });
        // SAFETY: `out` is not NULL and points to writable storage for a pointer.
        unsafe { *out = Box::into_raw(cfg) };
        nctls_result::Ok
    })
}

/// Frees a configuration; NULL is ignored. Servers and connections made from
/// it keep what they need, so it may be freed while they live. Not
/// thread-safe with other calls on the same configuration.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_free(cfg: *mut nctls_config) {
    guard_or((), || {
        if !cfg.is_null() {
            // SAFETY: made by nctls_config_new and not freed before (caller's contract).
            drop(unsafe { Box::from_raw(cfg) });
        }
    })
}

/// Adds one setting, with the names and values of the `nctls` command's
/// options without the dashes (`"backend"`, `"127.0.0.1:2023"`), as in a
/// config file but taken as is (no quotes, escapes or comments); a
/// repeatable option (`listen`, `map`, `crl`, `user-fields`) adds to its
/// list, any other replaces the earlier value.
/// `"config"` names a config file, read at `nctls_config_load`, whose lines
/// come before every setting made here. The name and the value are checked
/// now (NCTLS_RESULT_BAD_CONFIG, with the reason in `nctls_config_error`);
/// combinations and files are checked by `nctls_config_load`. A setting
/// unloads the configuration. Not thread-safe with other calls on `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_set(
    cfg: *mut nctls_config,
    name: *const c_char,
    value: *const c_char,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live config (caller's contract), not aliased during this call.
        let Some(cfg) = (unsafe { cfg.as_mut() }) else {
            return nctls_result::NullParameter;
        };
        // SAFETY: NULL or NUL-terminated strings (caller's contract).
        let (name, value) = match unsafe { (utf8(name), utf8(value)) } {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => {
                return cfg.fail(e, "name and value must be UTF-8 strings")
            }
        };
        if let Err(e) = config::check_setting(name, value) {
            return cfg.fail(nctls_result::BadConfig, &e.0);
        }
        cfg.pairs.push((name.to_string(), value.to_string()));
        cfg.loaded = None;
        cfg.error = CString::default();
        nctls_result::Ok
    })
}

/// Validates the settings as a whole and reads every file they name (server
/// certificate and key, CA, CRLs, config file), as `nctls --check` does.
/// Servers and connections are made from the loaded form; loading again
/// re-reads the files (for new servers and connections only). Errors:
/// NCTLS_RESULT_BAD_CONFIG or NCTLS_RESULT_LOAD_FAILED, with the option,
/// file and reason in `nctls_config_error`. Not thread-safe with other
/// calls on `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_load(cfg: *mut nctls_config) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live config (caller's contract), not aliased during this call.
        let Some(cfg) = (unsafe { cfg.as_mut() }) else {
            return nctls_result::NullParameter;
        };
        cfg.loaded = None;
        let config = match config::from_pairs(&cfg.pairs) {
            Ok(c) => c,
            Err(e) => return cfg.fail(nctls_result::BadConfig, &e.0),
        };
        let tls = match tls::load(&config) {
            Ok(t) => t,
            Err(e) => return cfg.fail(nctls_result::LoadFailed, &e),
        };
        cfg.loaded = Some(Arc::new(Built { config, tls }));
        cfg.error = CString::default();
        nctls_result::Ok
    })
}

/// Why the last `nctls_config_set` or `nctls_config_load` on `cfg` failed,
/// naming the option (and file); "" after a success, NULL if `cfg` is NULL.
/// Owned by `cfg`, valid until its next set, load or free. Thread-safe with
/// other calls that only read `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_error(cfg: *const nctls_config) -> *const c_char {
    guard_or(std::ptr::null(), || {
        // SAFETY: NULL or a live config (caller's contract).
        unsafe { cfg.as_ref() }.map_or(std::ptr::null(), |c| c.error.as_ptr())
    })
}

/// The loaded form of a config, for the calls that only read it.
///
/// # Safety
/// `cfg` is NULL or a live config.
unsafe fn loaded(cfg: *const nctls_config) -> Result<Arc<Built>, nctls_result> {
    // SAFETY: NULL or a live config (caller's contract).
    let cfg = unsafe { cfg.as_ref() }.ok_or(nctls_result::NullParameter)?;
    cfg.loaded.clone().ok_or(nctls_result::NotLoaded)
}

// ---------------------------------------------------------------------------
// Server

const NEW: u8 = 0;
const LISTENING: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// A daemon in a handle: the same event loop as the `nctls` command (one
/// thread, every session at once), run on the caller's thread.
pub struct nctls_server {
    state: AtomicU8,
    stop_requested: AtomicBool,
    /// Set once by listen; read by `nctls_server_stop` from any thread.
    stopper: OnceLock<Stopper>,
    addrs: OnceLock<Vec<SocketAddr>>,
    /// Touched only by the thread that owns the server, or by the one
    /// running it (the state says which; never both).
    inner: UnsafeCell<ServerInner>,
}

struct ServerInner {
    built: Arc<Built>,
    server: Option<Server>,
    log: (nctls_log_callback, Userdata),
    identity: (nctls_identity_callback, Userdata),
    session_end: (nctls_session_end_callback, Userdata),
    error: CString,
}

/// The caller's `void *userdata`, handed back to its callbacks untouched.
#[derive(Clone, Copy)]
struct Userdata(*mut c_void);

/// The owner-only part of a server, for the setters.
///
/// # Safety
/// `server` is NULL or a live server used by its owning thread.
unsafe fn owner<'a>(server: *mut nctls_server) -> Result<&'a mut ServerInner, nctls_result> {
    // SAFETY: NULL or a live server (caller's contract).
    let outer = unsafe { server.as_ref() }.ok_or(nctls_result::NullParameter)?;
    // SAFETY: used by its owning thread (caller's contract).
    unsafe { outer.inner() }
}

impl nctls_server {
    /// The owner-only part, unless the server is running.
    ///
    /// # Safety
    /// Only the thread owning the server calls this (callers' contract: all
    /// calls but stop are not thread-safe), and nothing else holds the result.
    #[allow(clippy::mut_from_ref)]
    unsafe fn inner(&self) -> Result<&mut ServerInner, nctls_result> {
        if self.state.load(Ordering::SeqCst) == RUNNING {
            return Err(nctls_result::Busy);
        }
        // SAFETY: not running, so only the owning thread is here (see above).
        Ok(unsafe { &mut *self.inner.get() })
    }
}

/// Makes a server from a loaded configuration (`nctls_config_load`); it does
/// not listen yet. Free it with `nctls_server_free`. Thread-safe with other
/// calls that read `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_new(
    cfg: *const nctls_config,
    out: *mut *mut nctls_server,
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
        let none = Userdata(std::ptr::null_mut());
        let server = Box::new(nctls_server {
            state: AtomicU8::new(NEW),
            stop_requested: AtomicBool::new(false),
            stopper: OnceLock::new(),
            addrs: OnceLock::new(),
            inner: UnsafeCell::new(ServerInner {
                built,
                server: None,
                log: (None, none),
                identity: (None, none),
                session_end: (None, none),
                error: CString::default(),
            }),
        });
        // SAFETY: `out` is not NULL and points to writable storage for a pointer.
        unsafe { *out = Box::into_raw(server) };
        nctls_result::Ok
    })
}

/// Sets (or, with NULL, clears) the log callback; without one the server
/// logs nothing (the library never installs a process-wide logger). Only
/// before `nctls_server_run`; NCTLS_RESULT_BUSY while it runs. Not
/// thread-safe with other calls on `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_set_log_callback(
    server: *mut nctls_server,
    callback: nctls_log_callback,
    userdata: *mut c_void,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server used by its owner (caller's contract).
        match unsafe { owner(server) } {
            Ok(inner) => {
                inner.log = (callback, Userdata(userdata));
                nctls_result::Ok
            }
            Err(e) => e,
        }
    })
}

/// Sets (or, with NULL, clears) the identity callback (see
/// `nctls_identity_callback`); without one the configured rules decide.
/// Only before `nctls_server_run`; NCTLS_RESULT_BUSY while it runs. Not
/// thread-safe with other calls on `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_set_identity_callback(
    server: *mut nctls_server,
    callback: nctls_identity_callback,
    userdata: *mut c_void,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server used by its owner (caller's contract).
        match unsafe { owner(server) } {
            Ok(inner) => {
                inner.identity = (callback, Userdata(userdata));
                nctls_result::Ok
            }
            Err(e) => e,
        }
    })
}

/// Sets (or, with NULL, clears) the session-end callback. Only before
/// `nctls_server_run`; NCTLS_RESULT_BUSY while it runs. Not thread-safe with
/// other calls on `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_set_session_end_callback(
    server: *mut nctls_server,
    callback: nctls_session_end_callback,
    userdata: *mut c_void,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server used by its owner (caller's contract).
        match unsafe { owner(server) } {
            Ok(inner) => {
                inner.session_end = (callback, Userdata(userdata));
                nctls_result::Ok
            }
            Err(e) => e,
        }
    })
}

impl ServerInner {
    fn listen(&mut self, outer: &nctls_server) -> nctls_result {
        if self.server.is_some() {
            return nctls_result::Ok;
        }
        let built = &*self.built;
        match Server::bind(built.config.clone(), built.tls.clone()) {
            Ok(server) => {
                let _ = outer.addrs.set(server.local_addrs());
                let _ = outer.stopper.set(server.stopper());
                self.server = Some(server);
                outer
                    .state
                    .compare_exchange(NEW, LISTENING, Ordering::SeqCst, Ordering::SeqCst)
                    .ok();
                nctls_result::Ok
            }
            Err(e) => {
                self.error = c_text(&e.to_string());
                nctls_result::ListenFailed
            }
        }
    }
}

/// Binds every `listen` address (port 0 picks a free port: see
/// `nctls_server_local_port`). `nctls_server_run` does this itself when it
/// was not done. Errors: NCTLS_RESULT_LISTEN_FAILED, with the address and
/// reason in `nctls_server_error`. Not thread-safe with other calls on
/// `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_listen(server: *mut nctls_server) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server (caller's contract).
        let Some(outer) = (unsafe { server.as_ref() }) else {
            return nctls_result::NullParameter;
        };
        if outer.state.load(Ordering::SeqCst) == DONE {
            return nctls_result::WrongState;
        }
        // SAFETY: used by its owner (caller's contract).
        match unsafe { outer.inner() } {
            Ok(inner) => inner.listen(outer),
            Err(e) => e,
        }
    })
}

/// The port of the `index`th listen address (in the order they were set),
/// once listening. NCTLS_RESULT_WRONG_STATE before `nctls_server_listen`,
/// NCTLS_RESULT_INVALID_PARAMETER for an index past the end. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_local_port(
    server: *const nctls_server,
    index: usize,
    port: *mut u16,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server (caller's contract).
        let Some(outer) = (unsafe { server.as_ref() }) else {
            return nctls_result::NullParameter;
        };
        if port.is_null() {
            return nctls_result::NullParameter;
        }
        let Some(addrs) = outer.addrs.get() else {
            return nctls_result::WrongState;
        };
        let Some(addr) = addrs.get(index) else {
            return nctls_result::InvalidParameter;
        };
        // SAFETY: `port` is not NULL and points to a writable uint16_t.
        unsafe { *port = addr.port() };
        nctls_result::Ok
    })
}

/// Serves on the calling thread (listening first if needed) until
/// `nctls_server_stop`, then ends every session with close_notify and
/// returns NCTLS_RESULT_OK once all have ended (bounded by the drain
/// timeout). Callbacks run on this thread. A server runs once:
/// NCTLS_RESULT_WRONG_STATE afterwards, NCTLS_RESULT_BUSY if it is already
/// running. No signal handler is installed, no thread started, no signal
/// raised: writes to a reset peer never raise SIGPIPE. Not thread-safe with
/// other calls on `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_run(server: *mut nctls_server) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server (caller's contract).
        let Some(outer) = (unsafe { server.as_ref() }) else {
            return nctls_result::NullParameter;
        };
        match outer.state.load(Ordering::SeqCst) {
            RUNNING => return nctls_result::Busy,
            DONE => return nctls_result::WrongState,
            _ => {}
        }
        // SAFETY: not running, used by its owner (caller's contract).
        let inner = match unsafe { outer.inner() } {
            Ok(i) => i,
            Err(e) => return e,
        };
        let listened = inner.listen(outer);
        if listened != nctls_result::Ok {
            return listened;
        }
        if outer
            .state
            .compare_exchange(LISTENING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return nctls_result::Busy;
        }
        // A stop that came before the stopper existed (listen published it;
        // a concurrent stop either saw it or its flag is seen here).
        std::sync::atomic::fence(Ordering::SeqCst);
        if outer.stop_requested.load(Ordering::SeqCst) {
            if let Some(stopper) = outer.stopper.get() {
                let _ = stopper.stop();
            }
        }
        let result = catch_unwind(AssertUnwindSafe(|| inner.run()));
        inner.server = None;
        outer.state.store(DONE, Ordering::SeqCst);
        match result {
            Ok(Ok(())) => nctls_result::Ok,
            Ok(Err(e)) => {
                inner.error = c_text(&format!("event loop failed: {e}"));
                nctls_result::Io
            }
            Err(_) => nctls_result::Panic,
        }
    })
}

impl ServerInner {
    fn run(&mut self) -> io::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        server.set_hooks(Hooks {
            identity: identity_hook(self.identity),
            session_end: session_end_hook(self.session_end),
        });
        let Some(callback) = self.log.0 else {
            return hooks::with_log_sink(Box::new(|_, _| {}), || server.run());
        };
        let userdata = self.log.1;
        let max = self.built.config.log_level;
        let sink = move |level: Level, args: &std::fmt::Arguments<'_>| {
            if level.to_level_filter() > max {
                return;
            }
            let line = c_text(&args.to_string());
            let level = match level {
                Level::Error => nctls_log_level::Error,
                Level::Warn => nctls_log_level::Warn,
                Level::Info => nctls_log_level::Info,
                Level::Debug => nctls_log_level::Debug,
                Level::Trace => nctls_log_level::Trace,
            };
            // SAFETY: the caller's callback with its own userdata; the line outlives the call.
            unsafe { callback(userdata.0, level, line.as_ptr()) };
        };
        hooks::with_log_sink(Box::new(sink), || server.run())
    }
}

fn identity_hook(
    (callback, userdata): (nctls_identity_callback, Userdata),
) -> Option<hooks::IdentityHook> {
    let callback = callback?;
    Some(Box::new(move |req: &IdentityRequest<'_>| {
        let certs: Vec<nctls_cert> = req
            .chain
            .iter()
            .map(|c| nctls_cert {
                der: c.as_ptr(),
                len: c.len(),
            })
            .collect();
        let client = c_text(&req.client.to_string());
        let (rules_user, rules_error) = match req.rules {
            Ok(u) => (Some(c_text(u)), None),
            Err(e) => (None, Some(c_text(e))),
        };
        let peer = nctls_peer {
            chain: certs.as_ptr(),
            chain_len: certs.len(),
            client: client.as_ptr(),
            rules_user: text_ptr(&rules_user),
            rules_error: text_ptr(&rules_error),
        };
        let mut user = [0u8; NCTLS_USER_MAX + 1];
        if let Ok(u) = req.rules {
            let n = u.len().min(NCTLS_USER_MAX);
            user[..n].copy_from_slice(&u.as_bytes()[..n]);
        }
        // SAFETY: the caller's callback; `peer` and everything it points to,
        // and `user` with its length, live until it returns.
        let verdict = unsafe { callback(userdata.0, &peer, user.as_mut_ptr().cast(), user.len()) };
        if verdict != nctls_identity::Accept as c_int {
            return Err("refused by the identity callback".into());
        }
        let name = CStr::from_bytes_until_nul(&user)
            .map_err(|_| "the identity callback's user name is not NUL-terminated".to_string())?;
        let name = name
            .to_str()
            .map_err(|_| "the identity callback's user name is not UTF-8".to_string())?;
        // Whether the header can carry it is checked when the header is built.
        header::check_name(name)
            .map_err(|why| format!("the identity callback's user name {name:?}: {why}"))?;
        Ok(name.to_string())
    }))
}

fn session_end_hook(
    (callback, userdata): (nctls_session_end_callback, Userdata),
) -> Option<hooks::SessionEndHook> {
    let callback = callback?;
    Some(Box::new(move |end: &SessionEnd<'_>| {
        let client = c_text(&end.client.to_string());
        let user = end.user.map(c_text);
        let subject = end.peer.map(|p| c_text(&p.subject));
        let sha256 = end.peer.map(|p| c_text(&p.sha256));
        let tls = c_text(end.tls);
        let reason_text = c_text(&end.reason.map_or("unknown".into(), |r| r.to_string()));
        let info = nctls_session_info {
            client: client.as_ptr(),
            user: text_ptr(&user),
            subject: text_ptr(&subject),
            sha256: text_ptr(&sha256),
            tls: tls.as_ptr(),
            reason: close_reason(end.reason),
            reason_text: reason_text.as_ptr(),
            bytes_in: end.bytes_in,
            bytes_out: end.bytes_out,
            duration_us: end.duration.as_micros().min(u64::MAX as u128) as u64,
        };
        // SAFETY: the caller's callback; `info` and its strings live until it returns.
        unsafe { callback(userdata.0, &info) };
    }))
}

/// Asks the server to stop: stop accepting, end every session with
/// close_notify; `nctls_server_run` then returns. Callable from any thread
/// and from a signal handler (it only sets a flag and writes to an eventfd:
/// async-signal-safe), also before `nctls_server_run`, which then returns at
/// once. A second call returns NCTLS_RESULT_ALREADY_STOPPING and changes
/// nothing. NCTLS_RESULT_IO if the event loop could not be woken.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_stop(server: *const nctls_server) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live server (caller's contract); only its atomics are touched.
        let Some(outer) = (unsafe { server.as_ref() }) else {
            return nctls_result::NullParameter;
        };
        if outer.stop_requested.swap(true, Ordering::SeqCst) {
            return nctls_result::AlreadyStopping;
        }
        match outer.stopper.get().map(Stopper::stop) {
            Some(Err(_)) => nctls_result::Io,
            _ => nctls_result::Ok,
        }
    })
}

/// Why the last failed call on `server` failed; "" if none, NULL if `server`
/// is NULL or running. Owned by `server`, valid until its next call or free.
/// Not thread-safe with other calls on `server`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_error(server: *const nctls_server) -> *const c_char {
    guard_or(std::ptr::null(), || {
        // SAFETY: NULL or a live server used by its owner (caller's contract).
        match unsafe { owner(server.cast_mut()) } {
            Ok(inner) => inner.error.as_ptr(),
            Err(_) => std::ptr::null(),
        }
    })
}

/// Frees a server, closing its listening sockets; NULL is ignored
/// (NCTLS_RESULT_OK). While `nctls_server_run` runs on another thread it
/// refuses with NCTLS_RESULT_BUSY and frees nothing: stop the server, wait
/// for run to return, then free. Not thread-safe with other calls on
/// `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_free(server: *mut nctls_server) -> nctls_result {
    guard(|| {
        if server.is_null() {
            return nctls_result::Ok;
        }
        // SAFETY: not NULL, a live server (caller's contract).
        if unsafe { &*server }.state.load(Ordering::SeqCst) == RUNNING {
            return nctls_result::Busy;
        }
        // SAFETY: made by nctls_server_new, not running, not freed before.
        drop(unsafe { Box::from_raw(server) });
        nctls_result::Ok
    })
}

// ---------------------------------------------------------------------------
// Connection level: the caller accepts sockets, nctls does one session

const CLIENT: Token = Token(0);
const BACKEND: Token = Token(1);
const WAKE: Token = Token(2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConnState {
    New,
    /// Handshake done, identity not yet acted on.
    Accepted,
    Ended,
}

/// One client connection handed over by a C program: TLS handshake, then
/// a relay with the same session state machine and close semantics as the
/// server.
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

struct Conn {
    stop: Arc<ConnStop>,
    /// `nctls_conn_stop` has been acted on.
    stopped: bool,
    built: Arc<Built>,
    poll: Poll,
    events: Events,
    client: Option<TcpStream>,
    client_addr: SocketAddr,
    backend: Option<BackendStream>,
    backend_connecting: bool,
    /// Which configured backend address to try next (no `backend_fd` given).
    dialer: Option<Dialer>,
    session: Session,
    state: ConnState,
    user: Option<CString>,
    scratch: Vec<u8>,
    error: CString,
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
    let _ = std.set_nodelay(true);
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
        let Ok(session) = Session::new(
            built.tls.server.clone(),
            built.config.limits.clone(),
            Instant::now(),
        ) else {
            return nctls_result::Io;
        };
        let Ok(poll) = Poll::new() else {
            return nctls_result::Io;
        };
        // SAFETY: checked above to be an open stream socket, handed over on success.
        let Ok(mut client) = (unsafe { own_socket(client_fd) }) else {
            return nctls_result::Io;
        };
        crate::daemon::server::keepalive(&client, built.config.tcp_keepalive);
        if poll
            .registry()
            .register(&mut client, CLIENT, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            // The caller keeps the descriptor on error: release it unclosed.
            let _ = client.into_raw_fd();
            return nctls_result::Io;
        }
        let Ok(waker) = Waker::new(poll.registry(), WAKE) else {
            let _ = client.into_raw_fd();
            return nctls_result::Io;
        };
        let stop = Arc::new(ConnStop {
            requested: AtomicBool::new(false),
            waker,
        });
        let conn = Box::new(nctls_conn {
            stop: stop.clone(),
            inner: UnsafeCell::new(Conn {
                stop,
                stopped: false,
                built,
                poll,
                events: Events::with_capacity(8),
                client: Some(client),
                client_addr,
                backend: None,
                backend_connecting: false,
                dialer: None,
                session,
                state: ConnState::New,
                user: None,
                scratch: vec![0; 16 * 1024],
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

impl Conn {
    /// Pumps the session, waiting for readiness and deadlines, until the
    /// handshake is done (while handshaking) or the session has ended.
    fn drive(&mut self) -> io::Result<Status> {
        loop {
            let now = Instant::now();
            if !self.stopped && self.stop.requested.load(Ordering::SeqCst) {
                self.stopped = true;
                self.session.shutdown(now);
            }
            let Some(client) = self.client.as_mut() else {
                return Ok(Status::Ended);
            };
            let backend = if self.backend_connecting {
                None
            } else {
                self.backend.as_mut()
            };
            match self.session.pump(client, backend, &mut self.scratch, now) {
                Status::Continue => {}
                done => return Ok(done),
            }
            let timeout = self
                .session
                .deadline()
                .map(|d| d.saturating_duration_since(now));
            match self.poll.poll(&mut self.events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let now = Instant::now();
            let mut redial = false;
            for event in self.events.iter() {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                if event.token() == WAKE {
                    continue;
                }
                if event.token() == BACKEND {
                    if self.backend_connecting {
                        match self
                            .backend
                            .as_ref()
                            .and_then(BackendStream::connect_result)
                        {
                            None => continue,
                            Some(result) if backend::is_address_failure(&result) => {
                                if let (Some(dialer), Err(e)) = (self.dialer.as_mut(), &result) {
                                    dialer.failed(e);
                                }
                                redial = true;
                                continue;
                            }
                            Some(result) => {
                                self.backend_connecting = false;
                                self.session.backend_connect_done(result, now);
                            }
                        }
                    }
                    self.session.set_ready(Side::Backend, readable, writable);
                } else {
                    if event.is_error() {
                        if let Some(client) = &self.client {
                            self.session.client_socket_error(client.take_error());
                        }
                    }
                    self.session.set_ready(Side::Client, readable, writable);
                }
            }
            if redial {
                self.dial(now);
            } else if self.session.connect_expired(now) && self.dialer.is_some() {
                if let Some(dialer) = self.dialer.as_mut() {
                    dialer.timed_out();
                }
                self.dial(now);
            } else {
                self.session.on_deadline(now);
            }
        }
    }

    /// Starts connecting to the next configured backend address (dropping
    /// the attempt before it), or ends the session when none is left.
    fn dial(&mut self, now: Instant) {
        let Some(dialer) = self.dialer.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        if let Some(mut old) = self.backend.take() {
            let _ = registry.deregister(&mut old);
        }
        match dialer
            .next(|s| registry.register(s, BACKEND, Interest::READABLE | Interest::WRITABLE))
        {
            Attempt::Started(s) => {
                self.backend = Some(s);
                self.backend_connecting = true;
                self.session.backend_attempt(now);
            }
            Attempt::Exhausted(reason) => {
                self.backend_connecting = false;
                self.session.backend_gave_up(reason, now);
            }
        }
    }

    fn finish(&mut self) {
        self.state = ConnState::Ended;
        let reason = self.session.end_reason();
        if let Some(reason) = reason {
            self.error = c_text(&reason.to_string());
        }
        if let Some(mut backend) = self.backend.take() {
            backend.release(self.poll.registry(), self.session.backend_needs_reset());
        }
        if let Some(mut client) = self.client.take() {
            let _ = self.poll.registry().deregister(&mut client);
        }
    }

    /// Runs the session to its end; the close reason.
    fn run_to_end(&mut self) -> nctls_close_reason {
        if let Err(e) = self.drive() {
            self.session
                .backend_failed(format!("poll: {e}"), Instant::now());
        }
        self.finish();
        close_reason(self.session.end_reason())
    }
}

/// Does the TLS handshake (blocking, bounded by the `handshake-timeout`
/// setting) and verifies the client certificate against the CA and CRLs,
/// then applies the cert-to-name rules: `nctls_conn_user` tells their
/// answer (NULL if none), `nctls_conn_peer_cert` the chain. Nothing is sent
/// to any backend. NCTLS_RESULT_HANDSHAKE_FAILED when the handshake fails
/// or times out (the client got an alert; the reason is in
/// `nctls_conn_error`, the socket is closed); NCTLS_RESULT_WRONG_STATE if
/// called twice. Not thread-safe with other calls on `conn`.
#[no_mangle]
pub unsafe extern "C" fn nctls_conn_accept(conn: *mut nctls_conn) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live connection used by one thread (caller's contract).
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        if conn.state != ConnState::New {
            return nctls_result::WrongState;
        }
        match conn.drive() {
            Ok(Status::HandshakeDone) => {}
            Ok(_) => {
                conn.finish();
                return nctls_result::HandshakeFailed;
            }
            Err(e) => {
                conn.session
                    .backend_failed(format!("poll: {e}"), Instant::now());
                conn.finish();
                conn.error = c_text(&format!("poll: {e}"));
                return nctls_result::Io;
            }
        }
        conn.state = ConnState::Accepted;
        let chain = conn.session.peer_certificates().unwrap_or(&[]);
        match conn.built.tls.mapper.user_for(chain) {
            Ok(user) => conn.user = Some(c_text(&user)),
            Err(why) => conn.error = c_text(&format!("no user: {why}")),
        }
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
        if conn.state != ConnState::Accepted {
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
        if conn.state == ConnState::New {
            return nctls_result::WrongState;
        }
        let chain = conn.session.peer_certificates().unwrap_or(&[]);
        let Some(cert) = chain.get(index) else {
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
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
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
                    conn.error = c_text(&format!("backend_fd: {why}"));
                    return nctls_result::InvalidParameter;
                }
            }
        } else {
            None
        };
        if conn.state != ConnState::Accepted {
            return nctls_result::WrongState;
        }
        let now = Instant::now();
        let built = conn.built.clone();
        let decision = match conn.user.as_ref().map(|u| u.to_str()) {
            Some(Ok(user)) => header::build(
                built.config.header,
                user,
                conn.client_addr,
                built.config.accounts.fields_for(user),
            )
            .map_err(|why| format!("header field unusable: {why}")),
            _ => Err("no user for this certificate".into()),
        };
        match decision {
            Err(why) => conn.session.refuse(why, now),
            Ok(h) => {
                conn.session.admit(&h, now);
                match backend {
                    // Every configured address, in order.
                    None => {
                        conn.dialer = Some(Dialer::new(&built.config.backend));
                        conn.dial(now);
                    }
                    Some(socket) => {
                        let registered = socket.and_then(|mut s| {
                            conn.poll.registry().register(
                                &mut s,
                                BACKEND,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            Ok(s)
                        });
                        match registered {
                            Ok(s) => {
                                conn.backend = Some(s);
                                conn.session.backend_connected(now);
                            }
                            Err(e) => conn.session.backend_failed(e.to_string(), now),
                        }
                    }
                }
            }
        }
        let why = conn.run_to_end();
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
        let Some(conn) = (unsafe { conn_mut(conn) }) else {
            return nctls_result::NullParameter;
        };
        if conn.state != ConnState::Accepted {
            return nctls_result::WrongState;
        }
        conn.session
            .refuse("refused by the application".into(), Instant::now());
        conn.run_to_end();
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
        let (up, down) = conn.session.bytes();
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
mod tests {
    use super::*;

    #[test]
    fn close_reason_names_are_the_log_tokens() {
        let why = || "why".to_string();
        for reason in [
            EndReason::BackendClosed,
            EndReason::BackendReset(why()),
            EndReason::ClientCloseNotify,
            EndReason::ClientEof,
            EndReason::ClientReset(why()),
            EndReason::TlsError(why()),
            EndReason::HandshakeFailed(why()),
            EndReason::HandshakeTimeout,
            EndReason::Refused(why()),
            EndReason::BackendUnreachable(why()),
            EndReason::ConnectTimeout,
            EndReason::IdleTimeout,
            EndReason::DrainTimeout,
            EndReason::Shutdown,
        ] {
            let name = reason_str(close_reason(Some(&reason)) as u32);
            assert_eq!(name, format!("{}\0", reason.token()));
        }
    }
}
