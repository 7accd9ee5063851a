//! Close reasons: how a session ended, as C sees it. The values, tokens and
//! meanings come from the relay's one table ([`EndKind`]); the enum below
//! spells the values out because cbindgen reads it to write the header, and
//! the compiler checks it against the table.

use std::ffi::c_char;

use crate::boundary::guard_ptr;
use nctls::relay::session::{EndKind, EndReason};

/// How a session ended: the first event that began its end (README, "How a
/// session ends" and "Session log lines"). The values are stable (an ABI);
/// `nctls_close_reason_str` names each as the log lines do.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_close_reason {
    /// Not ended (yet).
    None = 0,
    /// The backend closed (kill-session, close-session): every byte it sent
    /// was delivered, then close_notify.
    BackendClosed = 1,
    /// The backend reset or failed.
    BackendReset = 2,
    /// The client sent close_notify; the backend saw EOF.
    ClientCloseNotify = 3,
    /// The client's TCP stream ended without close_notify (a truncation: the
    /// backend was reset).
    ClientEof = 4,
    /// The client's connection was reset or failed; the backend was reset.
    ClientReset = 5,
    /// The client sent something TLS does not allow; the backend was reset.
    TlsError = 6,
    /// The handshake failed (certificate, protocol): the client got an alert,
    /// the backend was never contacted.
    HandshakeFailed = 7,
    /// `--handshake-timeout` passed (the `handshake-timeout` setting).
    HandshakeTimeout = 8,
    /// No user, a limit, or the identity callback said no: close_notify, the
    /// backend never contacted.
    Refused = 9,
    /// Connecting to the backend failed (every address was tried).
    BackendUnreachable = 10,
    /// `--connect-timeout` passed (the `connect-timeout` setting).
    ConnectTimeout = 11,
    /// `--idle-timeout` passed (the `idle-timeout` setting).
    IdleTimeout = 12,
    /// `--drain-timeout` passed while closing (the `drain-timeout` setting).
    DrainTimeout = 13,
    /// SIGTERM/SIGINT (or `nctls_server_stop`, `nctls_conn_stop`): ended with
    /// close_notify.
    Shutdown = 14,
    /// nctls itself could not go on: a socket could not be registered with
    /// epoll, or the event loop failed (the backend, if connected, is reset).
    InternalError = 15,
}

impl nctls_close_reason {
    /// Every value, each at the index of its code.
    const BY_CODE: [nctls_close_reason; 16] = [
        Self::None,
        Self::BackendClosed,
        Self::BackendReset,
        Self::ClientCloseNotify,
        Self::ClientEof,
        Self::ClientReset,
        Self::TlsError,
        Self::HandshakeFailed,
        Self::HandshakeTimeout,
        Self::Refused,
        Self::BackendUnreachable,
        Self::ConnectTimeout,
        Self::IdleTimeout,
        Self::DrainTimeout,
        Self::Shutdown,
        Self::InternalError,
    ];

    /// The C value of an end (`None` while there is none), by its kind's code.
    pub(crate) fn of(reason: Option<&EndReason>) -> Self {
        Self::BY_CODE[reason.map_or(0, |r| r.kind().code() as usize)]
    }
}

// The C enum holds `None` and exactly the table's codes: 0, then EndKind's
// 1, 2, ... (which the relay checks run in order).
const _: () = {
    let by_code = nctls_close_reason::BY_CODE;
    assert!(by_code.len() == EndKind::ALL.len() + 1);
    let mut code = 0;
    while code < by_code.len() {
        assert!(by_code[code] as usize == code);
        code += 1;
    }
};

/// A static name for a close reason: the token of the log lines' `reason=`
/// (`backend-closed`, `client-close-notify`, `drain-timeout`, ...; README,
/// "Session log lines"), `none` for NCTLS_CLOSE_REASON_NONE. Any value is
/// accepted; unknown ones say so. Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_close_reason_str(reason: u32) -> *const c_char {
    guard_ptr(|| {
        let name = match EndKind::from_code(reason) {
            Some(kind) => kind.c_token(),
            None if reason == nctls_close_reason::None as u32 => c"none",
            None => c"unknown close reason",
        };
        Some(name.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::result::tests::header_enum;

    fn name(reason: u32) -> &'static str {
        // SAFETY: a static C string.
        unsafe { CStr::from_ptr(nctls_close_reason_str(reason)) }
            .to_str()
            .unwrap()
    }

    /// The header's enum, as C programs compile against it: NONE, then
    /// every kind of the table by its token and code, and nothing else.
    #[test]
    fn the_header_enum_is_the_table() {
        let mut want = vec![("NCTLS_CLOSE_REASON_NONE".to_string(), 0)];
        for kind in EndKind::ALL {
            let c_name = kind.token().to_uppercase().replace('-', "_");
            want.push((format!("NCTLS_CLOSE_REASON_{c_name}"), kind.code()));
        }
        assert_eq!(header_enum("nctls_close_reason"), want);
    }

    /// Each value's comment in the header starts with the table's meaning
    /// (its first letter in either case).
    #[test]
    fn the_header_says_what_each_reason_means() {
        let header = include_str!("../../include/nctls.h");
        let words = |s: &str| {
            let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut chars = s.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_lowercase().chain(chars).collect::<String>()
            })
        };
        for kind in EndKind::ALL {
            let c_name = kind.token().to_uppercase().replace('-', "_");
            let entry = header
                .find(&format!("  NCTLS_CLOSE_REASON_{c_name} = "))
                .unwrap();
            let before = header[..entry].trim_end();
            assert!(before.ends_with("*/"), "{c_name} has no comment of its own");
            let comment = &before[before.rfind("/*").unwrap() + 2..before.len() - 2];
            assert!(
                words(comment).starts_with(&words(kind.meaning())),
                "{c_name}: {comment:?} does not start with {:?}",
                kind.meaning()
            );
        }
    }

    /// The values as released: C programs are compiled against them.
    #[test]
    fn values_never_change() {
        let released = [
            "none",
            "backend-closed",
            "backend-reset",
            "client-close-notify",
            "client-eof",
            "client-reset",
            "tls-error",
            "handshake-failed",
            "handshake-timeout",
            "refused",
            "backend-unreachable",
            "connect-timeout",
            "idle-timeout",
            "drain-timeout",
            "shutdown",
            "internal-error",
        ];
        for (code, token) in released.into_iter().enumerate() {
            assert_eq!(name(code as u32), token);
        }
    }

    #[test]
    fn names_are_the_log_tokens() {
        assert_eq!(name(0), "none");
        for kind in EndKind::ALL {
            assert_eq!(name(kind.code()), kind.token());
        }
        assert_eq!(name(EndKind::ALL.len() as u32 + 1), "unknown close reason");
        assert_eq!(name(u32::MAX), "unknown close reason");
    }

    #[test]
    fn an_end_is_its_kinds_code() {
        assert_eq!(nctls_close_reason::of(None), nctls_close_reason::None);
        let reason = EndReason::Refused("no user".into());
        assert_eq!(nctls_close_reason::of(Some(&reason)) as u32, 9);
        assert_eq!(
            nctls_close_reason::of(Some(&reason)),
            nctls_close_reason::Refused
        );
    }
}
