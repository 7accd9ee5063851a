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
use crate::identity::header::{Accounts, HeaderKind};
use crate::identity::rules::Rule;
use crate::relay::session::Limits;

pub use help::{documented, usage, OptionDoc};
pub use settings::{check_setting, from_pairs};
pub use settings::{parse_args, Command};

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub backend: BackendAddr,
    pub cert: FileOption,
    pub key: FileOption,
    pub ca: FileOption,
    pub crls: Vec<FileOption>,
    pub min_tls: MinTls,
    /// Cert-to-name rules, tried in order; never empty.
    pub identity: Vec<Rule>,
    pub header: HeaderKind,
    /// ConfD header fields per user.
    pub accounts: Accounts,
    pub limits: Arc<Limits>,
    pub max_sessions: usize,
    /// 0: no per-address limit.
    pub max_sessions_per_ip: usize,
    /// Largest plaintext per TLS record sent to clients.
    pub max_record: usize,
    /// Idle time before TCP keepalive probes a client (`None`: off); see
    /// `sys::set_keepalive` for the probes.
    pub tcp_keepalive: Option<Duration>,
    pub log_level: LevelFilter,
    /// Warn this many days before the server certificate, a CA or a CRL
    /// expires (at start, on reload and daily); 0: never.
    pub expiry_warning_days: u32,
    /// Where the daemon's log lines go (the C library ignores this).
    pub log_output: LogOutput,
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

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
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
    V12,
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
