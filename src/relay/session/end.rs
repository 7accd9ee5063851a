//! Why a session ended, as the log lines and the C API tell it.

use std::fmt;

/// Why a session ended: the first event that began its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The backend's stream ended (EOF: ConfD after `<kill-session>` or
    /// `<close-session>`, or shutting down) while both directions were
    /// open. Everything it sent is delivered, then close_notify (README
    /// close table, row 1).
    BackendClosed,
    /// Reading or writing the backend's socket failed (a reset, or a write
    /// after it closed), or it reset the connection right after accepting
    /// it; the error in words. The client gets close_notify.
    BackendReset(String),
    /// The client sent close_notify after the handshake: its stream ended
    /// cleanly and the backend's write side is shut (row 2).
    ClientCloseNotify,
    /// The client's TCP stream ended (FIN) after the handshake without
    /// close_notify: a truncation, so the backend is reset (row 3).
    ClientEof,
    /// Reading or writing the client's socket failed after the handshake
    /// (ECONNRESET, EPIPE, a keepalive timeout), or the loop saw an error
    /// on it; the error in words. A truncation (row 3).
    ClientReset(String),
    /// After the handshake the client sent what TLS does not allow (a bad
    /// record, a fatal alert); rustls's error in words. A truncation: the
    /// alert rustls queued, if any, is sent once and the backend reset
    /// (row 3).
    TlsError(String),
    /// The handshake did not complete: rustls rejected the client (no
    /// certificate, unknown CA, revoked, expired, wrong key usage, TLS 1.1
    /// or older), or the client sent an alert, closed or reset first; why
    /// in words. The backend is never contacted (row 5).
    HandshakeFailed(String),
    /// `--handshake-timeout` passed since the connection was accepted with
    /// the handshake unfinished: closed without close_notify (no keys yet;
    /// row 6).
    HandshakeTimeout,
    /// The handshake succeeded but nctls would not serve the client: no
    /// cert-to-name rule gave a usable name (RFC 7589 §7), the embedder's
    /// identity callback or `nctls_conn_refuse` said no, or
    /// `--max-sessions` / `--max-sessions-per-ip` was reached; why in
    /// words. close_notify; the backend is never contacted.
    Refused(String),
    /// No backend address could be connected: each refused, was
    /// unreachable or (not all) timed out; `ADDRESS: why` for each, joined
    /// by `; `. The client gets close_notify (row 4).
    BackendUnreachable(String),
    /// Every backend address had its own `--connect-timeout` without
    /// answering. The client gets close_notify (row 4).
    ConnectTimeout,
    /// `--idle-timeout` passed without a byte moving either way while both
    /// directions were open: close_notify, the backend closed (row 6).
    IdleTimeout,
    /// After the client's close_notify (TLS 1.3, or 1.2 with `half-close`),
    /// the backend had not closed when `--drain-timeout` passed without a
    /// byte moving: close_notify, the backend closed (rows 2 and 6). A session whose
    /// end began otherwise keeps its first reason when a drain deadline
    /// passes.
    DrainTimeout,
    /// The daemon was told to stop (SIGTERM, SIGINT, `nctls_server_stop`)
    /// while the session was live: close_notify, the backend closed
    /// (row 7).
    Shutdown,
    /// nctls itself could not go on (a socket could not be registered with
    /// epoll, or the event loop failed): not the client's doing, nor the
    /// backend's; the error in words. A truncation: close_notify as far as
    /// it can still be sent, the backend reset.
    InternalError(String),
}

impl EndReason {
    /// The client's stream was cut short (by the client, or because nctls
    /// could not relay the rest): the backend must not see a clean end.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            EndReason::ClientEof
                | EndReason::ClientReset(_)
                | EndReason::TlsError(_)
                | EndReason::InternalError(_)
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
            EndReason::InternalError(_) => "internal-error",
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
            | EndReason::BackendUnreachable(why)
            | EndReason::InternalError(why) => Some(why),
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
