//! Why a session ended, as the log lines and the C API tell it.

use std::fmt;

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
    /// nctls itself could not go on (an event-loop or socket-registration
    /// failure): not the client's doing, nor the backend's.
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
