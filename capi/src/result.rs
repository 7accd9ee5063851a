//! Result codes: what every fallible call returns, and their descriptions.

use std::ffi::{c_char, CStr};

use crate::boundary::guard_ptr;

/// What every fallible call returns. `NCTLS_RESULT_OK` is 0; errors have
/// their own range (from 8100) so they never read as an errno value.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_result {
    /// The call did what it says.
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

impl nctls_result {
    /// Every code, for looking one up by its value.
    const ALL: [nctls_result; 13] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidParameter,
        Self::BadConfig,
        Self::NotLoaded,
        Self::LoadFailed,
        Self::ListenFailed,
        Self::Io,
        Self::Busy,
        Self::AlreadyStopping,
        Self::WrongState,
        Self::HandshakeFailed,
        Self::Panic,
    ];

    /// The code with this value, if any.
    fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u32 == value)
    }

    /// What the code means, in a few words.
    fn description(self) -> &'static CStr {
        match self {
            Self::Ok => c"ok",
            Self::NullParameter => c"a required argument is NULL",
            Self::InvalidParameter => c"invalid argument",
            Self::BadConfig => c"invalid configuration",
            Self::NotLoaded => c"configuration not loaded (nctls_config_load)",
            Self::LoadFailed => c"cannot load a certificate, key, CA or CRL",
            Self::ListenFailed => c"cannot listen",
            Self::Io => c"operating system error",
            Self::Busy => c"the server is running",
            Self::AlreadyStopping => c"already stopping",
            Self::WrongState => c"call out of order",
            Self::HandshakeFailed => c"TLS handshake failed",
            Self::Panic => c"internal error (panic caught)",
        }
    }
}

/// A static description of a result code (any value is accepted; unknown
/// ones say so). Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_result_str(result: u32) -> *const c_char {
    guard_ptr(|| {
        let text = nctls_result::from_u32(result)
            .map_or(c"unknown result code", nctls_result::description);
        Some(text.as_ptr())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `(name, value)` of every entry of a C enum in the checked-in header.
    pub(crate) fn header_enum(name: &str) -> Vec<(String, u32)> {
        let header = include_str!("../../include/nctls.h");
        let start = header
            .find(&format!("enum {name}\n"))
            .unwrap_or_else(|| panic!("no enum {name} in nctls.h"));
        let body = &header[start..];
        let body = &body[..body.find("};").unwrap()];
        body.lines()
            .filter_map(|line| {
                let (name, value) = line.trim().trim_end_matches(',').split_once(" = ")?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_code_in_the_header_has_its_own_description() {
        let codes = header_enum("nctls_result");
        assert_eq!(codes.len(), nctls_result::ALL.len());
        let mut seen = Vec::new();
        for (name, value) in codes {
            let code = nctls_result::from_u32(value).unwrap_or_else(|| panic!("{name}"));
            let text = code.description();
            assert!(!seen.contains(&text), "{name}: {text:?} twice");
            seen.push(text);
        }
        // SAFETY: a static string.
        let unknown = unsafe { CStr::from_ptr(nctls_result_str(1)) };
        assert_eq!(unknown, c"unknown result code");
    }
}
