//! Callbacks: the functions a C program gives a server (identity, session
//! end, log lines), what they are handed, and how they become the daemon's
//! hooks and log sink.

use std::ffi::{c_char, c_int, c_void, CStr};

use log::{Level, LevelFilter};

use crate::reason::nctls_close_reason;
use crate::strings::{c_text, text_ptr};
use nctls::daemon::hooks::{self, Hooks, IdentityRequest, LogSink, SessionEnd};
use nctls::identity::header;

/// Severity of a log line.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_log_level {
    /// A failure nctls cannot work around (an expired certificate, say).
    Error = 1,
    /// Worth an operator's attention: a session that ended badly, a
    /// certificate that expires soon, a reload that failed.
    Warn = 2,
    /// The session start and end lines; starting, stopping, reloads.
    Info = 3,
    /// Details: each connection accepted, health checks.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// What an identity callback returns: accept with the name it left in its
/// `user` buffer, or refuse the client (close_notify; the backend is never
/// contacted). Any other value refuses.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nctls_identity {
    /// The client is the user left in the `user` buffer.
    Accept = 0,
    /// Refuse the client.
    Refuse = 1,
}

/// The longest user name, in bytes, without the terminating NUL.
pub const NCTLS_USER_MAX: usize = 255;
const _: () = assert!(NCTLS_USER_MAX == header::MAX_NAME);

/// One DER certificate; valid only while the call that gave it runs.
#[repr(C)]
pub struct nctls_cert {
    /// The certificate's DER bytes.
    pub der: *const u8,
    /// How many bytes `der` holds.
    pub len: usize,
}

/// What an identity callback is asked about. Every pointer is valid only
/// during the callback.
#[repr(C)]
pub struct nctls_peer {
    /// The verified chain as the client sent it, end-entity certificate first.
    pub chain: *const nctls_cert,
    /// How many certificates `chain` holds (at least 1).
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
    /// How the session ended.
    pub reason: nctls_close_reason,
    /// The reason's token, then `: ` and its detail when it has one, e.g.
    /// `client-reset: Connection reset by peer (os error 104)`.
    pub reason_text: *const c_char,
    /// Plaintext bytes client -> backend.
    pub bytes_in: u64,
    /// Plaintext bytes backend -> client.
    pub bytes_out: u64,
    /// How long the session lasted, in microseconds.
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

/// The caller's `void *userdata`, handed back to its callbacks untouched.
#[derive(Clone, Copy)]
pub(crate) struct Userdata(pub(crate) *mut c_void);

/// A callback with its userdata, as set on a server.
pub(crate) type Callback<F> = (F, Userdata);

/// The callbacks set on a server; none at first.
pub(crate) struct Callbacks {
    pub(crate) log: Callback<nctls_log_callback>,
    pub(crate) identity: Callback<nctls_identity_callback>,
    pub(crate) session_end: Callback<nctls_session_end_callback>,
}

impl Default for Callbacks {
    fn default() -> Self {
        let none = Userdata(std::ptr::null_mut());
        Callbacks {
            log: (None, none),
            identity: (None, none),
            session_end: (None, none),
        }
    }
}

impl Callbacks {
    /// The daemon's hooks that call the identity and session-end callbacks.
    pub(crate) fn hooks(&self) -> Hooks {
        Hooks {
            identity: identity_hook(self.identity),
            session_end: session_end_hook(self.session_end),
        }
    }

    /// Where the server's log lines go: the log callback, for lines at
    /// `max` or more severe; nowhere without one (the library never
    /// installs a process-wide logger).
    pub(crate) fn log_sink(&self, max: LevelFilter) -> Box<LogSink> {
        let (Some(callback), userdata) = self.log else {
            return Box::new(|_, _| {});
        };
        Box::new(move |level: Level, args: &std::fmt::Arguments<'_>| {
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
        })
    }
}

fn identity_hook(
    (callback, userdata): Callback<nctls_identity_callback>,
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
    (callback, userdata): Callback<nctls_session_end_callback>,
) -> Option<hooks::SessionEndHook> {
    let callback = callback?;
    Some(Box::new(move |end: &SessionEnd| {
        let client = c_text(&end.client.to_string());
        let user = end.user.as_deref().map(c_text);
        let subject = end.peer.as_ref().map(|p| c_text(&p.subject));
        let sha256 = end.peer.as_ref().map(|p| c_text(&p.sha256));
        let tls = c_text(&end.tls);
        let reason_text = c_text(
            &end.reason
                .as_ref()
                .map_or("unknown".into(), |r| r.to_string()),
        );
        let info = nctls_session_info {
            client: client.as_ptr(),
            user: text_ptr(&user),
            subject: text_ptr(&subject),
            sha256: text_ptr(&sha256),
            tls: tls.as_ptr(),
            reason: nctls_close_reason::of(end.reason.as_ref()),
            reason_text: reason_text.as_ptr(),
            bytes_in: end.bytes_in,
            bytes_out: end.bytes_out,
            duration_us: end.duration.as_micros().min(u64::MAX as u128) as u64,
        };
        // SAFETY: the caller's callback; `info` and its strings live until it returns.
        unsafe { callback(userdata.0, &info) };
    }))
}
