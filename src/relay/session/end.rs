//! Why a session ended, as the log lines and the C API tell it: the reason
//! with its detail ([`EndReason`]), and the one table of the kinds of end
//! ([`EndKind`]) that gives each its stable code (the C API's
//! `nctls_close_reason` value), its log token and its meaning.

use std::ffi::CStr;
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
    /// Its kind: the reason without its detail.
    pub fn kind(&self) -> EndKind {
        match self {
            EndReason::BackendClosed => EndKind::BackendClosed,
            EndReason::BackendReset(_) => EndKind::BackendReset,
            EndReason::ClientCloseNotify => EndKind::ClientCloseNotify,
            EndReason::ClientEof => EndKind::ClientEof,
            EndReason::ClientReset(_) => EndKind::ClientReset,
            EndReason::TlsError(_) => EndKind::TlsError,
            EndReason::HandshakeFailed(_) => EndKind::HandshakeFailed,
            EndReason::HandshakeTimeout => EndKind::HandshakeTimeout,
            EndReason::Refused(_) => EndKind::Refused,
            EndReason::BackendUnreachable(_) => EndKind::BackendUnreachable,
            EndReason::ConnectTimeout => EndKind::ConnectTimeout,
            EndReason::IdleTimeout => EndKind::IdleTimeout,
            EndReason::DrainTimeout => EndKind::DrainTimeout,
            EndReason::Shutdown => EndKind::Shutdown,
            EndReason::InternalError(_) => EndKind::InternalError,
        }
    }

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
    /// API's `nctls_close_reason_str` (README, "Session log lines"): its
    /// kind's [`EndKind::token`].
    pub fn token(&self) -> &'static str {
        self.kind().token()
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

/// Declares [`EndKind`] from the table at its call below, so that each kind's
/// code, token, meaning and detail are written once, in one row.
macro_rules! end_kinds {
    ($($kind:ident = $code:literal, $token:literal, $meaning:literal, $detail:literal;)+) => {
        /// The kinds of end: an [`EndReason`] without its detail.
        ///
        /// Its value is the kind's stable code, the C API's
        /// `nctls_close_reason` value: an ABI, so codes are never changed or
        /// reused, and a new kind takes the next one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum EndKind {
            $(#[doc = $meaning] $kind = $code,)+
        }

        impl EndKind {
            /// Every kind, in code order (1, 2, ...).
            pub const ALL: &'static [EndKind] = &[$(EndKind::$kind),+];

            /// The stable kebab-case word logged as `reason=` (an interface:
            /// never changed).
            pub const fn token(self) -> &'static str {
                match self {
                    $(EndKind::$kind => $token,)+
                }
            }

            /// [`token`](Self::token) as a C string, for the C API.
            pub const fn c_token(self) -> &'static CStr {
                match self {
                    $(EndKind::$kind => const { c_str(concat!($token, "\0")) },)+
                }
            }

            /// Why the session ended, in words (README's "the session ended
            /// because" column).
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(EndKind::$kind => $meaning,)+
                }
            }

            /// What the reason's detail tells (README's "detail" column), or
            /// "" for the kinds that have none.
            pub const fn detail(self) -> &'static str {
                match self {
                    $(EndKind::$kind => $detail,)+
                }
            }
        }
    };
}

end_kinds! {
    // Kind = code, token, the session ended because, detail.
    BackendClosed = 1, "backend-closed",
        "the backend closed (kill-session, close-session)", "";
    BackendReset = 2, "backend-reset",
        "the backend reset or failed", "the error";
    ClientCloseNotify = 3, "client-close-notify",
        "the client sent close_notify", "";
    ClientEof = 4, "client-eof",
        "the client's TCP stream ended without close_notify", "";
    ClientReset = 5, "client-reset",
        "the client's connection was reset or failed", "the error";
    TlsError = 6, "tls-error",
        "the client sent something TLS does not allow", "the error";
    HandshakeFailed = 7, "handshake-failed",
        "the handshake failed (certificate, protocol)", "why";
    HandshakeTimeout = 8, "handshake-timeout",
        "`--handshake-timeout` passed", "";
    Refused = 9, "refused",
        "no user, a limit, or the identity callback said no", "why";
    BackendUnreachable = 10, "backend-unreachable",
        "connecting to the backend failed", "the error";
    ConnectTimeout = 11, "connect-timeout",
        "`--connect-timeout` passed", "";
    IdleTimeout = 12, "idle-timeout",
        "`--idle-timeout` passed", "";
    DrainTimeout = 13, "drain-timeout",
        "`--drain-timeout` passed while closing", "";
    Shutdown = 14, "shutdown",
        "SIGTERM/SIGINT (or `nctls_server_stop`, `nctls_conn_stop`)", "";
    InternalError = 15, "internal-error",
        "nctls itself could not go on: a socket could not be registered with epoll, \
         or the event loop failed (the backend, if connected, is reset)", "the error";
}

impl EndKind {
    /// Its stable code (the C API's `nctls_close_reason` value).
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u32) -> Option<EndKind> {
        let index = usize::try_from(code).ok()?.checked_sub(1)?;
        EndKind::ALL.get(index).copied()
    }
}

// The codes run 1, 2, ... in `ALL`'s order, which `from_code` relies on.
const _: () = {
    let mut i = 0;
    while i < EndKind::ALL.len() {
        assert!(
            EndKind::ALL[i] as usize == i + 1,
            "EndKind codes must run 1, 2, ..."
        );
        i += 1;
    }
};

/// A NUL-terminated literal as a `CStr`; evaluated at compile time.
const fn c_str(with_nul: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("a token holds a NUL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One reason of every kind, with a detail where it takes one.
    fn one_of_each() -> Vec<EndReason> {
        let why = || "why".to_string();
        vec![
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
            EndReason::InternalError(why()),
        ]
    }

    #[test]
    fn every_kind_is_a_reason_and_says_whether_it_has_a_detail() {
        let reasons = one_of_each();
        let kinds: Vec<EndKind> = reasons.iter().map(EndReason::kind).collect();
        assert_eq!(kinds, EndKind::ALL);
        for reason in &reasons {
            let kind = reason.kind();
            assert_eq!(
                reason.detail().is_some(),
                !kind.detail().is_empty(),
                "{kind:?}"
            );
            assert_eq!(reason.token(), kind.token());
            assert_eq!(kind.c_token().to_str(), Ok(kind.token()));
            assert_eq!(EndKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(EndKind::from_code(0), None);
        assert_eq!(EndKind::from_code(EndKind::ALL.len() as u32 + 1), None);
    }

    /// README's table of `reason=` tokens is this table: every kind in
    /// code order, with its meaning and detail, and nothing else.
    #[test]
    fn the_readme_lists_every_kind() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("\n| reason | the session ended because | detail |\n| --- | --- | --- |\n")
            .nth(1)
            .expect("README has the table of reasons");
        let rows: Vec<Vec<&str>> = table
            .lines()
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let want: Vec<Vec<String>> = EndKind::ALL
            .iter()
            .map(|kind| {
                let token = format!("`{}`", kind.token());
                vec![token, kind.meaning().into(), kind.detail().into()]
            })
            .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn a_reason_shows_its_token_and_detail() {
        assert_eq!(EndReason::ClientEof.to_string(), "client-eof");
        assert_eq!(
            EndReason::Refused("max-sessions reached".into()).to_string(),
            "refused: max-sessions reached"
        );
    }
}
