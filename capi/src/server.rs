//! The server object: the daemon's event loop in a handle, run on the
//! caller's thread, stopped from any thread.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void, CString};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use crate::boundary::{arg, free, guard, guard_ptr, into_c, output};
use crate::callbacks::{
    nctls_identity_callback, nctls_log_callback, nctls_session_end_callback, Callbacks, Userdata,
};
use crate::config::{nctls_config, Built};
use crate::result::nctls_result;
use crate::strings::c_text;
use nctls::daemon::hooks;
use nctls::daemon::server::{Server, Stopper};

// Where a server is in its life: made, bound, running, or run once and done.
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

/// The part of a server only its owner (or its running thread) touches.
struct ServerInner {
    built: Arc<Built>,
    server: Option<Server>,
    callbacks: Callbacks,
    error: CString,
}

impl nctls_server {
    fn new(built: Arc<Built>) -> Self {
        nctls_server {
            state: AtomicU8::new(NEW),
            stop_requested: AtomicBool::new(false),
            stopper: OnceLock::new(),
            addrs: OnceLock::new(),
            inner: UnsafeCell::new(ServerInner {
                built,
                server: None,
                callbacks: Callbacks::default(),
                error: CString::default(),
            }),
        }
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// The owner's part, to read, unless the server is running.
    ///
    /// # Safety
    /// Only the thread owning the server calls this (every call but stop is
    /// not thread-safe), and no `&mut` to the part lives meanwhile.
    unsafe fn inner(&self) -> Result<&ServerInner, nctls_result> {
        if self.state() == RUNNING {
            return Err(nctls_result::Busy);
        }
        // SAFETY: not running, so only the owning thread is here, and it
        // holds no `&mut` (the caller's contract).
        Ok(unsafe { &*self.inner.get() })
    }

    /// The owner's part, to change, unless the server is running.
    ///
    /// # Safety
    /// Only the thread owning the server calls this, and nothing else holds
    /// the part while the result lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn inner_mut(&self) -> Result<&mut ServerInner, nctls_result> {
        if self.state() == RUNNING {
            return Err(nctls_result::Busy);
        }
        // SAFETY: not running, so only the owning thread is here (see above).
        Ok(unsafe { &mut *self.inner.get() })
    }

    /// Binds the listen addresses, unless that was done.
    ///
    /// # Safety
    /// As for [`inner_mut`](Self::inner_mut).
    unsafe fn listen(&self) -> Result<(), nctls_result> {
        if self.state() == DONE {
            return Err(nctls_result::WrongState);
        }
        // SAFETY: the owning thread (the caller's contract).
        unsafe { self.inner_mut() }?.listen(self)
    }

    /// Listens if needed, then serves until stopped; runs once.
    ///
    /// # Safety
    /// As for [`inner_mut`](Self::inner_mut).
    unsafe fn run(&self) -> Result<(), nctls_result> {
        match self.state() {
            RUNNING => return Err(nctls_result::Busy),
            DONE => return Err(nctls_result::WrongState),
            _ => {}
        }
        // SAFETY: the owning thread (the caller's contract).
        let inner = unsafe { self.inner_mut() }?;
        inner.listen(self)?;
        self.state
            .compare_exchange(LISTENING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .map_err(|_| nctls_result::Busy)?;
        // A stop that came before the stopper existed (listen published it;
        // a concurrent stop either saw it or its flag is seen here).
        fence(Ordering::SeqCst);
        if self.stop_requested.load(Ordering::SeqCst) {
            if let Some(stopper) = self.stopper.get() {
                let _ = stopper.stop();
            }
        }
        // Caught here too, so that a panic still leaves the server done.
        let result = catch_unwind(AssertUnwindSafe(|| inner.serve()));
        inner.server = None;
        self.state.store(DONE, Ordering::SeqCst);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                inner.error = c_text(&format!("event loop failed: {e}"));
                Err(nctls_result::Io)
            }
            Err(_) => Err(nctls_result::Panic),
        }
    }

    /// Asks the running (or next) run to stop; touches only what is shared.
    fn stop(&self) -> Result<(), nctls_result> {
        if self.stop_requested.swap(true, Ordering::SeqCst) {
            return Err(nctls_result::AlreadyStopping);
        }
        match self.stopper.get().map(Stopper::stop) {
            Some(Err(_)) => Err(nctls_result::Io),
            _ => Ok(()),
        }
    }
}

impl ServerInner {
    /// Binds the listen addresses of `outer` (this part's server), unless
    /// that was done, and publishes them and its stopper.
    fn listen(&mut self, outer: &nctls_server) -> Result<(), nctls_result> {
        if self.server.is_some() {
            return Ok(());
        }
        let built = &*self.built;
        let server = Server::bind(built.config.clone(), built.tls.clone()).map_err(|e| {
            self.error = c_text(&e.to_string());
            nctls_result::ListenFailed
        })?;
        let _ = outer.addrs.set(server.local_addrs());
        let _ = outer.stopper.set(server.stopper());
        self.server = Some(server);
        let _ = outer
            .state
            .compare_exchange(NEW, LISTENING, Ordering::SeqCst, Ordering::SeqCst);
        Ok(())
    }

    /// The daemon's event loop with the callbacks as its hooks and log sink.
    fn serve(&mut self) -> std::io::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        server.set_hooks(self.callbacks.hooks());
        let sink = self.callbacks.log_sink(self.built.config.log_level);
        hooks::with_log_sink(sink, || server.run())
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
        // SAFETY: NULL or a live config; NULL or writable (the caller's contract).
        let (built, out) = unsafe { (arg(cfg)?.built()?, output(out)?) };
        out.write(into_c(nctls_server::new(built)));
        Ok(())
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
        // SAFETY: NULL or a live server used by its owner (the caller's contract).
        let inner = unsafe { arg(server)?.inner_mut() }?;
        inner.callbacks.log = (callback, Userdata(userdata));
        Ok(())
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
        // SAFETY: NULL or a live server used by its owner (the caller's contract).
        let inner = unsafe { arg(server)?.inner_mut() }?;
        inner.callbacks.identity = (callback, Userdata(userdata));
        Ok(())
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
        // SAFETY: NULL or a live server used by its owner (the caller's contract).
        let inner = unsafe { arg(server)?.inner_mut() }?;
        inner.callbacks.session_end = (callback, Userdata(userdata));
        Ok(())
    })
}

/// Binds every `listen` address (port 0 picks a free port: see
/// `nctls_server_local_port`). `nctls_server_run` does this itself when it
/// was not done. Errors: NCTLS_RESULT_LISTEN_FAILED, with the address and
/// reason in `nctls_server_error`. Not thread-safe with other calls on
/// `server` except `nctls_server_stop`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_listen(server: *mut nctls_server) -> nctls_result {
    // SAFETY: NULL or a live server used by its owner (the caller's contract).
    guard(|| unsafe { arg(server)?.listen() })
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
        // SAFETY: NULL or a live server; NULL or writable (the caller's contract).
        let (server, port) = unsafe { (arg(server)?, output(port)?) };
        let addrs = server.addrs.get().ok_or(nctls_result::WrongState)?;
        let addr = addrs.get(index).ok_or(nctls_result::InvalidParameter)?;
        port.write(addr.port());
        Ok(())
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
    // SAFETY: NULL or a live server used by its owner (the caller's contract).
    guard(|| unsafe { arg(server)?.run() })
}

/// Asks the server to stop: stop accepting, end every session with
/// close_notify; `nctls_server_run` then returns. Callable from any thread
/// and from a signal handler (it only sets a flag and writes to an eventfd:
/// async-signal-safe), also before `nctls_server_run`, which then returns at
/// once. A second call returns NCTLS_RESULT_ALREADY_STOPPING and changes
/// nothing. NCTLS_RESULT_IO if the event loop could not be woken.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_stop(server: *const nctls_server) -> nctls_result {
    // SAFETY: NULL or a live server (the caller's contract); stop touches
    // only its shared part.
    guard(|| unsafe { arg(server) }?.stop())
}

/// Why the last failed call on `server` failed; "" if none, NULL if `server`
/// is NULL or running. Owned by `server`, valid until its next call or free.
/// Not thread-safe with other calls on `server`.
#[no_mangle]
pub unsafe extern "C" fn nctls_server_error(server: *const nctls_server) -> *const c_char {
    guard_ptr(|| {
        // SAFETY: NULL or a live server used by its owner (the caller's contract).
        let inner = unsafe { arg(server).ok()?.inner() }.ok()?;
        Some(inner.error.as_ptr())
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
        // SAFETY: NULL or a live server (the caller's contract).
        if unsafe { server.as_ref() }.is_some_and(|s| s.state() == RUNNING) {
            return Err(nctls_result::Busy);
        }
        // SAFETY: NULL, or made by nctls_server_new, not running, not freed before.
        unsafe { free(server) };
        Ok(())
    })
}
