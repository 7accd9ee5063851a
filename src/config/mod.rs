//! Configuration: the option table, the command line and the config file,
//! validated into a [`Config`]; and the TLS server configuration built from
//! the files it names (PEM, CRL choice, what was loaded and when it
//! expires).
//!
//! How a [`Config`] is made: `options` is the one table of options (name,
//! value form, help, default, how a value is read and shown; `values` has
//! the value forms); `settings` collects `name = value` settings from the
//! command line, a config file or the C library, over the table's defaults;
//! `validate` reads them through the table and then checks the rules that
//! combine options; `effective` prints the result back as a config file
//! (`--check`); `help` renders `--help` and the documentation's view.

pub mod backend;
pub mod crl;
mod effective;
pub mod file;
mod help;
pub mod inventory;
mod options;
pub mod pem;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod pkcs11_uri;
mod settings;
#[cfg(test)]
mod tests;
pub mod tls;
mod validate;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;

use crate::config::backend::BackendAddr;
use crate::config::pkcs11_uri::Pkcs11Uri;
use crate::identity::header::{Accounts, HeaderKind};
use crate::identity::rules::Rule;
use crate::relay::session::Limits;

pub use help::{documented, usage, OptionDoc};
pub use settings::{check_setting, from_pairs};
pub use settings::{parse_args, Command};

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// TLS listen addresses (`--listen`), in order; never empty.
    pub listen: Vec<SocketAddr>,
    /// The NETCONF server (`--backend`): its resolved addresses or socket.
    pub backend: BackendAddr,
    /// The server certificate chain, PEM (`--cert`).
    pub cert: FileOption,
    /// The server's private key (`--key`): a PEM file, or an RFC 7512
    /// `pkcs11:` URI naming a key that stays in its token.
    pub key: KeySource,
    /// `--pkcs11-module`: the PKCS#11 library a `pkcs11:` key is in.
    pub pkcs11_module: Option<FileOption>,
    /// `--pkcs11-pin-file`: the token's user PIN (none: no login).
    pub pkcs11_pin_file: Option<FileOption>,
    /// The CA certificates that issue client certificates, PEM (`--ca`).
    pub ca: FileOption,
    /// CRL files, PEM (`--crl`), in order; may be empty.
    pub crls: Vec<FileOption>,
    /// The oldest TLS version accepted (`--min-tls`).
    pub min_tls: MinTls,
    /// Cert-to-name rules, tried in order; never empty.
    pub identity: Vec<Rule>,
    /// The session header written to the backend (`--header`).
    pub header: HeaderKind,
    /// ConfD header fields per user.
    pub accounts: Accounts,
    /// Every session's timeouts and TLS 1.2 close policy.
    pub limits: Arc<Limits>,
    /// Sessions at once (`--max-sessions`); beyond, clients are refused.
    pub max_sessions: usize,
    /// 0: no per-address limit.
    pub max_sessions_per_ip: usize,
    /// Largest plaintext per TLS record sent to clients, in bytes.
    pub max_record: usize,
    /// Idle time before TCP keepalive probes a client (`None`: off); see
    /// `sys::set_keepalive` for the probes.
    pub tcp_keepalive: Option<Duration>,
    /// The log level (`--log-level`), unless `RUST_LOG` is set.
    pub log_level: LevelFilter,
    /// Warn this many days before the server certificate, a CA or a CRL
    /// expires (at start, on reload and daily); 0: never.
    pub expiry_warning_days: u32,
    /// Where the daemon's log lines go (the C library ignores this).
    pub log_output: LogOutput,
    /// `--run-as`: the user (and group) the daemon drops to once started as
    /// root (the C library ignores this).
    pub run_as: Option<RunAs>,
    /// `--sandbox`: restrict the daemon with Landlock after start-up (the C
    /// library ignores this).
    pub sandbox: bool,
    /// The config file read (`--config`), if any: re-read on reload.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    /// Every option at the option table's default: what `nctls` runs with
    /// when given nothing.
    fn default() -> Config {
        // The table's defaults are constants, and a unit test builds them.
        settings::assemble(Vec::new()).expect("the option table's defaults are valid")
    }
}

/// A file named by an option, and where it was named, so that every error
/// about the file can say which setting to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOption {
    /// The path as named; a relative one from a config file is joined to
    /// that file's directory.
    pub path: PathBuf,
    /// `--cert` (command line or default), `nctls.conf:4: cert` (config
    /// file line), or `cert` (C library).
    pub origin: String,
}

impl FileOption {
    /// One error line about this file: `ORIGIN PATH: why`.
    pub fn error(&self, why: impl fmt::Display) -> String {
        format!("{} {}: {why}", self.origin, self.path.display())
    }
}

/// The server's private key: a PEM file, or an object in a PKCS#11 token
/// that signs for nctls and never hands the key out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--key FILE`: PEM (PKCS#8, PKCS#1 or SEC1), unencrypted.
    File(FileOption),
    /// `--key pkcs11:...` (RFC 7512), in the module `--pkcs11-module` names.
    Token {
        /// The token and object the key is.
        uri: Pkcs11Uri,
        /// Where it was given, as [`FileOption::origin`].
        origin: String,
    },
}

impl KeySource {
    /// One error line about the key: `ORIGIN FILE-OR-URI: why`.
    pub fn error(&self, why: impl fmt::Display) -> String {
        format!("{}: {why}", self.name())
    }

    /// How errors name the key: `ORIGIN FILE-OR-URI`.
    pub fn name(&self) -> String {
        match self {
            KeySource::File(file) => format!("{} {}", file.origin, file.path.display()),
            KeySource::Token { uri, origin } => format!("{origin} {uri}"),
        }
    }

    /// The key's file, when it is one.
    pub fn file(&self) -> Option<&FileOption> {
        match self {
            KeySource::File(file) => Some(file),
            KeySource::Token { .. } => None,
        }
    }
}

/// `--run-as USER[:GROUP]`, names as given (looked up when the daemon
/// drops privileges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user name (or numeric uid) to switch to.
    pub user: String,
    /// None: the user's primary group.
    pub group: Option<String>,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(group) => write!(f, "{}:{group}", self.user),
            None => f.write_str(&self.user),
        }
    }
}

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard error (the default; systemd's journal reads it).
    Stderr,
    /// Appended to this file, created with mode 0640 if missing.
    File(FileOption),
    /// The local syslog socket, with this facility (`daemon`, `local3`, ...).
    Syslog(String),
}

impl LogOutput {
    /// Checks a syslog facility name (`daemon`, `user`, `local0` … `local7`, …).
    pub fn syslog(facility: &str) -> Result<LogOutput, String> {
        let name = facility.to_ascii_lowercase();
        match <syslog::Facility as std::str::FromStr>::from_str(&name) {
            Ok(_) if !name.starts_with("log_") => Ok(LogOutput::Syslog(name)),
            _ => Err(format!(
                "{facility:?}: expected a syslog facility (daemon, user, auth, authpriv, local0 ... local7, ...)"
            )),
        }
    }
}

/// The oldest TLS version accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinTls {
    /// TLS 1.2 and 1.3 (`--min-tls 1.2`).
    V12,
    /// TLS 1.3 only (`--min-tls 1.3`).
    V13,
}

/// A configuration error, ready to print as one line.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
