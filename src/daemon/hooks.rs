//! What an embedder (the C library) plugs into the [`Server`]: who a client
//! is, what to do when a session ends, and where the server's messages go.
//!
//! The daemon sets none of them: it maps certificates with the configured
//! rules and its messages go to the `log` crate (env_logger). A library must
//! not rely on a process-wide logger, so [`with_log_sink`] routes the
//! server's messages to a caller's function for the duration of one call (one
//! `Server::run` on one thread), and to nowhere else meanwhile.
//!
//! [`Server`]: crate::daemon::server::Server

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use log::Level;
use rustls::pki_types::CertificateDer;

use crate::identity::rules::Peer;
use crate::relay::session::EndReason;

/// What the identity hook is asked about, once per session, after the
/// certificate chain has been verified.
pub struct IdentityRequest<'a> {
    /// The verified chain as the client sent it, end-entity first.
    pub chain: &'a [CertificateDer<'static>],
    /// The client's address, as its log lines show it.
    pub client: SocketAddr,
    /// What the configured cert-to-name rules decided: the user, or why none.
    pub rules: Result<&'a str, &'a str>,
}

/// Decides the user for a session (`Ok`), or refuses it (`Err(why)`).
pub type IdentityHook = Box<dyn FnMut(&IdentityRequest<'_>) -> Result<String, String>>;

/// The facts of one ended session (the same as its log line).
pub struct SessionEnd {
    /// The client's address, as its log lines show it.
    pub client: SocketAddr,
    /// The client certificate's subject and fingerprint, if one was presented.
    pub peer: Option<Peer>,
    /// The user the session ran as; `None` if it never got that far.
    pub user: Option<String>,
    /// TLS version and cipher suite, `-` before the handshake finished.
    pub tls: String,
    /// The backend address that served the session (`127.0.0.1:2023`,
    /// `unix:/path`); `None` if no connection was made.
    pub backend: Option<String>,
    /// Plaintext bytes client → backend.
    pub bytes_in: u64,
    /// Plaintext bytes backend → client.
    pub bytes_out: u64,
    /// From accept (or hand-over) to the close of both sockets.
    pub duration: Duration,
    /// Why it ended; `None` only if the connection was finished before its
    /// session ended (logged as `reason=unknown`).
    pub reason: Option<EndReason>,
    /// Closed before the client sent a byte (a TCP health check, a port
    /// scan): not worth a warning.
    pub silent: bool,
}

/// Called once per ended session, on the thread running the server.
pub type SessionEndHook = Box<dyn FnMut(&SessionEnd)>;

/// The server's optional hooks; the default is the daemon's behaviour.
#[derive(Default)]
pub struct Hooks {
    /// Replaces the rules' decision (the rules' answer is passed in).
    pub identity: Option<IdentityHook>,
    /// Told every session's end, after its log line.
    pub session_end: Option<SessionEndHook>,
}

/// Receives the server's messages while a [`with_log_sink`] call runs.
pub type LogSink = dyn FnMut(Level, &fmt::Arguments<'_>);

type SharedSink = Rc<RefCell<Box<LogSink>>>;

thread_local! {
    /// The sink of the `with_log_sink` call running on this thread, if any.
    static SINK: RefCell<Option<SharedSink>> = const { RefCell::new(None) };
}

/// Runs `f` with the server's messages on this thread going to `sink`
/// instead of the `log` crate; restores what was there before on return
/// (also on unwinding), so nested calls and other threads are unaffected.
pub fn with_log_sink<R>(sink: Box<LogSink>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SharedSink>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SINK.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SINK.with(|s| s.borrow_mut().replace(Rc::new(RefCell::new(sink))));
    let _restore = Restore(previous);
    f()
}

/// Where the server's `info!`/`warn!`/... go: the current sink, else `log`.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    let sink = SINK.with(|s| s.borrow().clone());
    match sink {
        // A message emitted from inside the sink itself is dropped, not re-entered.
        Some(sink) => {
            if let Ok(mut sink) = sink.try_borrow_mut() {
                sink(level, &args);
            }
        }
        None => log::log!(target: "nctls::server", level, "{args}"),
    }
}

// The `log` crate's macro names, so the server's call sites read as usual.
macro_rules! emit_log {
    ($level:expr, $($arg:tt)+) => { $crate::daemon::hooks::emit($level, format_args!($($arg)+)) };
}
macro_rules! emit_info {
    ($($arg:tt)+) => { $crate::daemon::hooks::emit(::log::Level::Info, format_args!($($arg)+)) };
}
macro_rules! emit_warn {
    ($($arg:tt)+) => { $crate::daemon::hooks::emit(::log::Level::Warn, format_args!($($arg)+)) };
}
macro_rules! emit_debug {
    ($($arg:tt)+) => { $crate::daemon::hooks::emit(::log::Level::Debug, format_args!($($arg)+)) };
}
pub(crate) use {emit_debug as debug, emit_info as info, emit_log as log, emit_warn as warn};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_is_scoped_to_the_call_and_the_thread() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let n = with_log_sink(
            Box::new(move |level, args| s.borrow_mut().push(format!("{level} {args}"))),
            || {
                info!("one {}", 1);
                std::thread::spawn(|| warn!("elsewhere")).join().unwrap();
                with_log_sink(Box::new(|_, _| {}), || info!("inner"));
                log!(Level::Warn, "two");
                7
            },
        );
        info!("after");
        assert_eq!(n, 7);
        assert_eq!(*seen.borrow(), ["INFO one 1", "WARN two"]);
    }
}
