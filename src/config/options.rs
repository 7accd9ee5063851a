//! Options: command line, `--config FILE`, defaults and validation.
//!
//! Every option is accepted as `--name VALUE` / `--name=VALUE` on the command
//! line and as a `name = value` line in the config file; the command line
//! wins. Defaults are those of ConfD's GnuTLS subsys demo, so nctls is a
//! drop-in for it. Errors name the option (and file and line) and say what
//! was expected.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;

use crate::config::backend::BackendAddr;
use crate::config::file;
use crate::identity::addr::{self, Show};
use crate::identity::header::{self, Accounts, HeaderKind};
use crate::identity::rules::{MapType, Rule};
use crate::relay::session::{Limits, Tls12Close};

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
    fn default_for(option: &str, path: &str) -> FileOption {
        FileOption {
            path: PathBuf::from(path),
            origin: format!("--{option}"),
        }
    }

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

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Config),
    Check(Config),
    /// `nctls fingerprint FILE...`: print RFC 7407 fingerprints.
    Fingerprint(Vec<PathBuf>),
    Help,
    Version,
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

struct OptionSpec {
    name: &'static str,
    arg: &'static str,
    help: &'static str,
}

/// The options taking a value, in `--help` order (the flags are listed in `usage`).
const OPTIONS: &[OptionSpec] = &[
    OptionSpec { name: "config", arg: "FILE", help: "read `name = value` lines (same names as these options, # comments, '...' or \"...\" values, relative paths from the file's directory); the command line wins" },
    OptionSpec { name: "listen", arg: "ADDR:PORT", help: "TLS address to listen on, repeatable, IPv6 as [::]:6513 (also IPv4 unless 0.0.0.0 has the same port), zones as [fe80::1%eth0]:6513 [0.0.0.0:6513]" },
    OptionSpec { name: "backend", arg: "HOST:PORT|unix:PATH", help: "the NETCONF server's plain TCP port (ConfD's netconf tcp transport) or unix socket; each address HOST resolves to is tried in order [127.0.0.1:2023]" },
    OptionSpec { name: "cert", arg: "FILE", help: "server certificate chain, PEM [x509-server.pem]" },
    OptionSpec { name: "key", arg: "FILE", help: "server private key, PEM (PKCS#8, PKCS#1 or SEC1) [x509-server-key.pem]" },
    OptionSpec { name: "ca", arg: "FILE", help: "CA certificate(s) that issue client certificates, PEM [x509-ca.pem]" },
    OptionSpec { name: "crl", arg: "FILE", help: "certificate revocation list(s), PEM, repeatable; revoked or expired-CRL clients are refused" },
    OptionSpec { name: "min-tls", arg: "1.2|1.3", help: "oldest TLS version accepted [1.2]" },
    OptionSpec { name: "user", arg: "NAME", help: "every verified client is this user (the GnuTLS demo's behaviour); same as --map '* specified NAME'" },
    OptionSpec { name: "map", arg: "RULE", help: "cert-to-name rule 'FINGERPRINT MAP-TYPE [NAME]', repeatable, tried in order [* common-name]" },
    OptionSpec { name: "header", arg: "confd|confd-b64|ncx[:PORT]|none", help: "session header written to the backend first: ConfD's, ConfD's with the user name in base64 (any name), yuma123 netconfd's <ncx-connect> (PORT from its --port list, default 830), or none [confd]" },
    OptionSpec { name: "proto", arg: "NAME", help: "header field PROTO [ssh]" },
    OptionSpec { name: "uid", arg: "N", help: "header field UID [9000]" },
    OptionSpec { name: "gid", arg: "N", help: "header field GID [100]" },
    OptionSpec { name: "subgids", arg: "N,N,...", help: "header field SUBGIDS, supplementary group ids [empty]" },
    OptionSpec { name: "groups", arg: "NAME,NAME,...", help: "header field GROUPS, group names [empty]" },
    OptionSpec { name: "home", arg: "PATH", help: "header field HOMEDIR, %u is the user [/var/confd/homes/%u]" },
    OptionSpec { name: "user-fields", arg: "'NAME key=value ...'", help: "per-user header fields (keys: proto uid gid subgids groups home), repeatable" },
    OptionSpec { name: "handshake-timeout", arg: "SECS", help: "drop clients that have not finished the TLS handshake [10]" },
    OptionSpec { name: "connect-timeout", arg: "SECS", help: "give up connecting to the backend [10]" },
    OptionSpec { name: "idle-timeout", arg: "SECS", help: "end sessions with no traffic either way, 0 = never [0]" },
    OptionSpec { name: "drain-timeout", arg: "SECS", help: "how long a half-closed or closing session may stay silent [10]" },
    OptionSpec { name: "tls12-close", arg: "strict|half-close", help: "TLS 1.2 client close_notify: answer at once (RFC 5246) or relay the backend's rest first [strict]" },
    OptionSpec { name: "max-sessions", arg: "N", help: "sessions at once; more are refused with close_notify, then wait in the backlog [1000]" },
    OptionSpec { name: "max-sessions-per-ip", arg: "N", help: "sessions at once from one client address, 0 = no limit [0]" },
    OptionSpec { name: "max-record", arg: "BYTES", help: "largest plaintext per TLS record to clients (ncclient needs <= 4096) [4096]" },
    OptionSpec { name: "tcp-keepalive", arg: "SECS", help: "TCP keepalive on client sockets: first probe after SECS idle, then 5 probes SECS/10 apart (1-75 s), 0 = off [300]" },
    OptionSpec { name: "log-level", arg: "LEVEL", help: "off, error, warn, info, debug or trace; RUST_LOG overrides [info]" },
    OptionSpec { name: "expiry-warning", arg: "DAYS", help: "warn at start, on reload and daily when the server certificate, a CA or a CRL expires within DAYS, 0 = never [30]" },
    OptionSpec { name: "log-file", arg: "FILE", help: "append log lines to FILE instead of stderr; SIGUSR1 reopens it (logrotate)" },
    OptionSpec { name: "syslog", arg: "[FACILITY]", help: "log to the local syslog (/dev/log) instead of stderr, as FACILITY (daemon, user, local0 ... local7) [daemon]" },
];

/// The `--help` text, generated from the option table.
pub fn usage() -> String {
    let mut s = String::from(
        "nctls: a TLS relay for NETCONF over TLS (RFC 7589) in front of ConfD's plain TCP port.\n\
         \n\
         It accepts TLS with mandatory client certificates, maps the certificate to a user,\n\
         writes ConfD's session header to the backend, then relays bytes both ways, and ends\n\
         every session with a clean TLS close_notify.\n\
         \n\
         Usage: nctls [OPTIONS]\n\
                nctls fingerprint FILE.pem...   (print RFC 7407 fingerprints for --map rules)\n\
         \n\
         Options (defaults in brackets):\n",
    );
    for o in OPTIONS {
        let left = format!("--{} {}", o.name, o.arg);
        s.push_str(&format!("  {left:<32} {}\n", o.help));
    }
    for (flag, help) in [
        (
            "--check",
            "load and validate everything, print the effective configuration as a config file, exit 0 or 1",
        ),
        ("--version", "print the version"),
        ("--help", "print this help"),
    ] {
        s.push_str(&format!("  {flag:<32} {help}\n"));
    }
    s.push_str(
        "\nSignals: SIGTERM/SIGINT stop accepting and end every session with close_notify;\n\
         SIGHUP re-reads the config file, certificates, CRLs and identity rules, resolves the\n\
         backend's name again, for new sessions, and applies the log options; SIGUSR1 reopens\n\
         --log-file; SIGUSR2 logs the live sessions.\n\
         Logs go to stderr unless --log-file or --syslog: a logfmt line when a session starts and when it ends.\n",
    );
    s
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    CommandLine,
    File(String, usize),
    /// `nctls_config_set` in the C library.
    Library,
}

struct Setting {
    name: String,
    value: String,
    origin: Origin,
}

impl Setting {
    /// How errors name this setting: `--name`, `FILE:LINE: name` or `name`.
    fn origin(&self) -> String {
        match &self.origin {
            Origin::CommandLine => format!("--{}", self.name),
            Origin::File(file, line) => format!("{file}:{line}: {}", self.name),
            Origin::Library => self.name.clone(),
        }
    }

    /// A path as this setting names it: in a config file, a relative path is
    /// relative to the file's directory (the working directory is `/` under
    /// systemd, and unrelated to where the file lives).
    fn resolve(&self, path: &Path) -> PathBuf {
        match &self.origin {
            Origin::File(file, _) => Path::new(file).parent().unwrap_or(Path::new("")).join(path),
            Origin::CommandLine | Origin::Library => path.to_path_buf(),
        }
    }

    fn error(&self, why: impl fmt::Display) -> ConfigError {
        match &self.origin {
            Origin::CommandLine => ConfigError(format!("--{}: {why}", self.name)),
            Origin::File(file, line) => ConfigError(format!("{file}:{line}: {}: {why}", self.name)),
            Origin::Library => ConfigError(format!("{}: {why}", self.name)),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let mut cli = Vec::new();
    let mut check = false;
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("fingerprint") {
        let files: Vec<PathBuf> = args.skip(1).map(PathBuf::from).collect();
        if files.is_empty() {
            return Err(ConfigError(
                "fingerprint: name at least one PEM file".into(),
            ));
        }
        return Ok(Command::Fingerprint(files));
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--check" => {
                check = true;
                continue;
            }
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?} (options start with --; see --help)"
            )));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                known(flag).ok_or_else(|| unknown(flag))?;
                let implied = OPTIONAL_VALUES.iter().find(|(n, _)| *n == flag);
                let value = match (args.next_if(|v| !v.starts_with("--")), implied) {
                    (Some(value), _) => value,
                    (None, Some((_, value))) => value.to_string(),
                    (None, None) => return Err(ConfigError(format!("--{flag}: missing value"))),
                };
                (flag.to_string(), value)
            }
        };
        known(&name).ok_or_else(|| unknown(&name))?;
        cli.push(Setting {
            name,
            value,
            origin: Origin::CommandLine,
        });
    }
    let config = assemble(cli)?;
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

/// The config file named by the last `config` setting, if any, overlaid by
/// `direct` (a repeatable option given directly replaces the file's list),
/// then validated as a whole.
fn assemble(direct: Vec<Setting>) -> Result<Config, ConfigError> {
    let mut settings = Vec::new();
    if let Some(file) = direct.iter().rev().find(|s| s.name == "config") {
        settings = read_file(&file.value)?;
    }
    for name in REPEATABLE {
        if direct.iter().any(|s| s.name == *name) {
            settings.retain(|s| s.name != *name);
        }
    }
    settings.extend(direct);
    build(&settings, Scope::Whole)
}

/// Checks one `name = value` setting on its own, as the C library's
/// `nctls_config_set` does before storing it: the name must be an option
/// and the value must parse. Errors read `name: why`.
pub(crate) fn check_setting(name: &str, value: &str) -> Result<(), ConfigError> {
    known(name).ok_or_else(|| ConfigError(format!("unknown option {name:?}")))?;
    if name == "config" {
        return read_file(value).map(drop);
    }
    build(&[library_setting(name, value)], Scope::OneSetting).map(drop)
}

/// Builds a configuration from `name = value` pairs in order, with the same
/// names, defaults and validation as the command line (the C library's path).
pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Config, ConfigError> {
    for (name, _) in pairs {
        known(name).ok_or_else(|| ConfigError(format!("unknown option {name:?}")))?;
    }
    assemble(
        pairs
            .iter()
            .map(|(name, value)| library_setting(name, value))
            .collect(),
    )
}

fn library_setting(name: &str, value: &str) -> Setting {
    Setting {
        name: name.to_string(),
        value: value.to_string(),
        origin: Origin::Library,
    }
}

/// Options that may be given several times, building a list.
const REPEATABLE: &[&str] = &["listen", "map", "crl", "user-fields"];

/// Options whose value may be left out on the command line, and what it then is.
const OPTIONAL_VALUES: &[(&str, &str)] = &[("syslog", "daemon")];

fn known(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

fn unknown(name: &str) -> ConfigError {
    ConfigError(format!("unknown option --{name} (see --help)"))
}

fn read_file(path: &str) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config: cannot read {path}: {e}")))?;
    parse_file(path, &text)
}

/// The settings of a config file, in order (syntax: `config_file`). A
/// single-valued option may appear once; repeatable ones build a list.
fn parse_file(path: &str, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut settings: Vec<Setting> = Vec::new();
    let mut first_line: Vec<(&str, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let at = |why: String| ConfigError(format!("{path}:{number}: {why}"));
        let Some((name, raw)) = file::split(line).map_err(at)? else {
            continue;
        };
        if name == "config" {
            return Err(at("a config file cannot include another".into()));
        }
        known(name).ok_or_else(|| at(format!("unknown option {name:?}")))?;
        let value = file::value(raw).map_err(|why| at(format!("{name}: {why}")))?;
        if !REPEATABLE.contains(&name) {
            if let Some((_, first)) = first_line.iter().find(|(n, _)| *n == name) {
                return Err(at(format!("{name}: already set at line {first}")));
            }
            first_line.push((name, number));
        }
        settings.push(Setting {
            name: name.to_string(),
            value,
            origin: Origin::File(path.to_string(), number),
        });
    }
    Ok(settings)
}

/// How much of the configuration [`build`] sees.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// All of it: checks that combine options apply too.
    Whole,
    /// One setting alone (`nctls_config_set`): only what it says by itself.
    OneSetting,
}

fn build(settings: &[Setting], scope: Scope) -> Result<Config, ConfigError> {
    let mut listen = Vec::new();
    let mut backend = BackendAddr::parse("127.0.0.1:2023").expect("valid default");
    let mut cert = FileOption::default_for("cert", "x509-server.pem");
    let mut key = FileOption::default_for("key", "x509-server-key.pem");
    let mut ca = FileOption::default_for("ca", "x509-ca.pem");
    let mut crls = Vec::new();
    let mut min_tls = MinTls::V12;
    let mut fixed_user: Option<&Setting> = None;
    let mut rules = Vec::new();
    let mut accounts = Accounts::default();
    let mut user_fields = Vec::new();
    let mut header = HeaderKind::Confd;
    let mut limits = Limits {
        handshake_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        idle_timeout: None,
        drain_timeout: Duration::from_secs(10),
        tls12_close: Tls12Close::Strict,
    };
    let mut max_sessions = 1000;
    let mut max_sessions_per_ip = 0;
    let mut max_record = 4096;
    let mut tcp_keepalive = Some(Duration::from_secs(300));
    let mut log_level = LevelFilter::Info;
    let mut expiry_warning_days = 30;
    let mut log_file = None;
    let mut syslog: Option<(LogOutput, &Setting)> = None;

    for s in settings {
        let v = s.value.as_str();
        match s.name.as_str() {
            "config" => {}
            "listen" => listen.push(addr::parse_ip_port(v).map_err(|why| {
                s.error(format!(
                    "{why} (IPv6 as [::]:6513, a zone as [fe80::1%eth0]:6513)"
                ))
            })?),
            "backend" => {
                backend = match BackendAddr::parse(v).map_err(|why| s.error(why))? {
                    BackendAddr::Unix(socket) => BackendAddr::Unix(s.resolve(&socket)),
                    tcp => tcp,
                }
            }
            "cert" => cert = path(s)?,
            "key" => key = path(s)?,
            "ca" => ca = path(s)?,
            "user" => {
                header::check_name(v)
                    .map_err(|why| s.error(format!("{v:?} cannot be a user name: {why}")))?;
                fixed_user = Some(s);
            }
            name if header::FIELD_NAMES.contains(&name) => {
                accounts.defaults.set(name, v).map_err(|why| s.error(why))?
            }
            "user-fields" => user_fields.push(s),
            "map" => rules.push((Rule::parse(v).map_err(|why| s.error(why))?, s)),
            "crl" => crls.push(path(s)?),
            "min-tls" => {
                min_tls = match v {
                    "1.2" => MinTls::V12,
                    "1.3" => MinTls::V13,
                    _ => return Err(s.error(format!("{v:?}: expected 1.2 or 1.3"))),
                }
            }
            "header" => {
                header = HeaderKind::parse(v).ok_or_else(|| {
                    s.error(format!(
                        "{v:?}: expected confd, confd-b64, ncx, ncx:PORT or none"
                    ))
                })?
            }
            "handshake-timeout" => limits.handshake_timeout = seconds(s, false)?,
            "connect-timeout" => limits.connect_timeout = seconds(s, false)?,
            "drain-timeout" => limits.drain_timeout = seconds(s, false)?,
            "idle-timeout" => {
                let t = seconds(s, true)?;
                limits.idle_timeout = (!t.is_zero()).then_some(t);
            }
            "tls12-close" => {
                limits.tls12_close = match v {
                    "strict" => Tls12Close::Strict,
                    "half-close" => Tls12Close::HalfClose,
                    _ => return Err(s.error(format!("{v:?}: expected strict or half-close"))),
                }
            }
            "max-sessions" => max_sessions = number(s, 1, 1 << 20)?,
            "max-sessions-per-ip" => max_sessions_per_ip = number(s, 0, 1 << 20)?,
            "max-record" => max_record = number(s, 512, 16384)?,
            // Linux takes TCP_KEEPIDLE in whole seconds, at most 32767.
            "tcp-keepalive" => {
                let secs = number(s, 0, 32767)?;
                tcp_keepalive = (secs > 0).then(|| Duration::from_secs(secs as u64));
            }
            "log-level" => {
                log_level = v.parse().map_err(|_| {
                    s.error(format!(
                        "{v:?}: expected off, error, warn, info, debug or trace"
                    ))
                })?
            }
            "expiry-warning" => expiry_warning_days = number(s, 0, 3650)? as u32,
            "log-file" => log_file = Some(path(s)?),
            "syslog" => syslog = Some((LogOutput::syslog(v).map_err(|why| s.error(why))?, s)),
            other => return Err(unknown(other)),
        }
    }
    // Per-user fields start from the final defaults, wherever those were set.
    let mut named = Vec::new();
    for s in user_fields {
        accounts.add_user(&s.value).map_err(|why| s.error(why))?;
        named.extend(accounts.users.last().map(|(name, _)| (name.clone(), s)));
    }
    let identity =
        match (fixed_user, rules.is_empty()) {
            (Some(user), false) => return Err(user.error(
                "cannot be combined with --map (add '* specified NAME' as the last rule instead)",
            )),
            (Some(user), true) => {
                named.push((user.value.clone(), user));
                vec![Rule {
                    fingerprint: None,
                    map: MapType::Specified(user.value.clone()),
                }]
            }
            (None, true) => vec![Rule {
                fingerprint: None,
                map: MapType::CommonName,
            }],
            (None, false) => {
                for (rule, s) in &rules {
                    if let MapType::Specified(name) = &rule.map {
                        named.push((name.clone(), s));
                    }
                }
                rules.into_iter().map(|(rule, _)| rule).collect()
            }
        };
    // Names known now must fit the header (which may be set after them).
    if scope == Scope::Whole {
        for (name, s) in named {
            header
                .check_account(&name, accounts.fields_for(&name))
                .map_err(|why| s.error(why))?;
        }
    }
    if listen.is_empty() {
        listen.push("0.0.0.0:6513".parse().expect("valid default"));
    }
    let log_output = match (log_file, syslog) {
        (Some(_), Some((_, s))) => {
            return Err(s.error("cannot be combined with log-file: log lines go to one place"))
        }
        (Some(file), None) => LogOutput::File(file),
        (None, Some((output, _))) => output,
        (None, None) => LogOutput::Stderr,
    };
    Ok(Config {
        listen,
        backend,
        cert,
        key,
        ca,
        crls,
        min_tls,
        identity,
        header,
        accounts,
        limits: Arc::new(limits),
        max_sessions,
        max_sessions_per_ip,
        max_record,
        tcp_keepalive,
        log_level,
        expiry_warning_days,
        log_output,
    })
}

fn path(s: &Setting) -> Result<FileOption, ConfigError> {
    if s.value.is_empty() {
        return Err(s.error("empty file name"));
    }
    Ok(FileOption {
        path: s.resolve(Path::new(&s.value)),
        origin: s.origin(),
    })
}

fn seconds(s: &Setting, zero_ok: bool) -> Result<Duration, ConfigError> {
    let bad = || s.error(format!("{:?} is not a number of seconds", s.value));
    let secs: f64 = s.value.parse().map_err(|_| bad())?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    if secs == 0.0 && !zero_ok {
        return Err(s.error("must be more than 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn number(s: &Setting, min: usize, max: usize) -> Result<usize, ConfigError> {
    match s.value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(s.error(format!(
            "{:?}: expected a whole number from {min} to {max}",
            s.value
        ))),
    }
}

impl fmt::Display for Config {
    /// What `--check` prints: the effective configuration in config-file
    /// syntax, every option of the table in its order, defaults included,
    /// values quoted where needed and paths made absolute, so that the text
    /// saved anywhere is a config file for this same configuration. An
    /// option without a value shows as a `# name: none` comment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Printer(f);
        // `--config` is left out: this text is the configuration itself.
        for addr in &self.listen {
            out.set("listen", &Show(*addr).to_string())?;
        }
        match &self.backend {
            BackendAddr::Unix(socket) => {
                out.set("backend", &format!("unix:{}", absolute(socket).display()))?
            }
            tcp => out.set("backend", &tcp.to_string())?,
        }
        // What a session tries, in order (a name may resolve to several).
        writeln!(
            out.0,
            "# backend addresses: {}",
            self.backend.addresses().join(" ")
        )?;
        out.path("cert", &self.cert)?;
        out.path("key", &self.key)?;
        out.path("ca", &self.ca)?;
        for crl in &self.crls {
            out.path("crl", crl)?;
        }
        out.none_if(self.crls.is_empty(), "crl")?;
        let min_tls = match self.min_tls {
            MinTls::V12 => "1.2",
            MinTls::V13 => "1.3",
        };
        out.set("min-tls", min_tls)?;
        // `user NAME` is the single rule `* specified NAME`; shown as
        // `user`, since a map rule cannot hold a name with whitespace.
        match self.identity.as_slice() {
            [Rule {
                fingerprint: None,
                map: MapType::Specified(user),
            }] => {
                out.set("user", user)?;
                out.none_if(true, "map")?;
            }
            rules => {
                out.none_if(true, "user")?;
                for rule in rules {
                    out.set("map", &rule.to_string())?;
                }
            }
        }
        out.set("header", &self.header.to_string())?;
        let defaults = &self.accounts.defaults;
        for field in header::FIELD_NAMES {
            out.set(field, &defaults.get(field).unwrap_or_default())?;
        }
        for (user, fields) in &self.accounts.users {
            let mut words = vec![user.clone()];
            words.extend(fields.differences(defaults));
            out.set("user-fields", &words.join(" "))?;
        }
        out.none_if(self.accounts.users.is_empty(), "user-fields")?;
        let l = &self.limits;
        out.set("handshake-timeout", &secs(l.handshake_timeout))?;
        out.set("connect-timeout", &secs(l.connect_timeout))?;
        out.set("idle-timeout", &secs(l.idle_timeout.unwrap_or_default()))?;
        out.set("drain-timeout", &secs(l.drain_timeout))?;
        let tls12_close = match l.tls12_close {
            Tls12Close::Strict => "strict",
            Tls12Close::HalfClose => "half-close",
        };
        out.set("tls12-close", tls12_close)?;
        out.set("max-sessions", &self.max_sessions.to_string())?;
        out.set("max-sessions-per-ip", &self.max_sessions_per_ip.to_string())?;
        out.set("max-record", &self.max_record.to_string())?;
        let keepalive = self.tcp_keepalive.unwrap_or_default().as_secs();
        out.set("tcp-keepalive", &keepalive.to_string())?;
        out.set("expiry-warning", &self.expiry_warning_days.to_string())?;
        out.set("log-level", level_name(self.log_level))?;
        match &self.log_output {
            LogOutput::Stderr => {
                out.none_if(true, "log-file")?;
                out.none_if(true, "syslog")
            }
            LogOutput::File(file) => out.path("log-file", file),
            LogOutput::Syslog(facility) => out.set("syslog", facility),
        }
    }
}

/// Writes config-file lines.
struct Printer<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Printer<'_, '_> {
    fn set(&mut self, name: &str, value: &str) -> fmt::Result {
        writeln!(self.0, "{name} = {}", file::quote(value))
    }

    fn path(&mut self, name: &str, file: &FileOption) -> fmt::Result {
        self.set(name, &absolute(&file.path).display().to_string())
    }

    /// A comment line for an option without a value.
    fn none_if(&mut self, none: bool, name: &str) -> fmt::Result {
        match none {
            true => writeln!(self.0, "# {name}: none"),
            false => Ok(()),
        }
    }
}

/// Seconds as `--handshake-timeout` takes them, exactly: `10`, `0.25`.
fn secs(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

/// `path` from the root, as opened from the working directory now.
fn absolute(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) => dir.join(path),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str]) -> Result<Config, ConfigError> {
        match parse_args(args(list))? {
            Command::Run(c) | Command::Check(c) => Ok(c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_gnutls_demo() {
        let c = run(&[]).unwrap();
        assert_eq!(
            c.listen,
            vec!["0.0.0.0:6513".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.backend.to_string(), "127.0.0.1:2023");
        assert_eq!(c.backend.addresses(), ["127.0.0.1:2023"]);
        assert_eq!(c.cert.path, PathBuf::from("x509-server.pem"));
        assert_eq!(c.key.path, PathBuf::from("x509-server-key.pem"));
        assert_eq!(c.ca.path, PathBuf::from("x509-ca.pem"));
        assert_eq!(c.header, HeaderKind::Confd);
        assert_eq!(c.identity, vec![Rule::parse("* common-name").unwrap()]);
        assert_eq!(c.min_tls, MinTls::V12);
        assert_eq!(c.limits.tls12_close, Tls12Close::Strict);
        assert_eq!(c.max_record, 4096);
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(300)));
        assert_eq!(run(&["--tcp-keepalive", "0"]).unwrap().tcp_keepalive, None);
        let err = run(&["--tcp-keepalive", "1.5"]).unwrap_err().0;
        assert!(
            err.starts_with("--tcp-keepalive: \"1.5\": expected a whole number"),
            "{err}"
        );
        assert_eq!(c.expiry_warning_days, 30);
        assert_eq!(
            run(&["--expiry-warning", "0"]).unwrap().expiry_warning_days,
            0
        );
        let err = run(&["--expiry-warning", "-1"]).unwrap_err().0;
        assert!(err.starts_with("--expiry-warning: \"-1\""), "{err}");
    }

    #[test]
    fn both_value_forms_and_repeated_listen() {
        let c = run(&[
            "--listen",
            "127.0.0.1:7000",
            "--listen=[::1]:7001",
            "--user=admin",
            "--idle-timeout",
            "0.5",
            "--tls12-close",
            "half-close",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert!(c.listen[1].is_ipv6());
        assert_eq!(c.identity, vec![Rule::parse("* specified admin").unwrap()]);
        assert_eq!(c.limits.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.limits.tls12_close, Tls12Close::HalfClose);
    }

    #[test]
    fn unix_backend_and_ncx_header() {
        let c = run(&["--backend", "unix:/tmp/ncx.sock", "--header", "ncx"]).unwrap();
        assert_eq!(c.backend, BackendAddr::Unix("/tmp/ncx.sock".into()));
        assert_eq!(c.header, HeaderKind::Ncx { port: 830 });
        let c = run(&["--header=ncx:1830"]).unwrap();
        assert_eq!(c.header, HeaderKind::Ncx { port: 1830 });
        let err = run(&["--backend", "unix:"]).unwrap_err().0;
        assert!(err.starts_with("--backend: "), "{err}");
    }

    #[test]
    fn errors_name_the_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--lissten", "x"], "unknown option --lissten"),
            (
                &["--listen", "localhost"],
                "--listen: \"localhost\" is not IP:PORT",
            ),
            (
                &["--handshake-timeout", "-1"],
                "--handshake-timeout: \"-1\" is not a number",
            ),
            (
                &["--handshake-timeout", "0"],
                "--handshake-timeout: must be more than 0",
            ),
            (
                &["--header", "xml"],
                "--header: \"xml\": expected confd, confd-b64, ncx, ncx:PORT or none",
            ),
            (
                &["--max-sessions", "0"],
                "--max-sessions: \"0\": expected a whole number",
            ),
            (&["--user", "a;b"], "--user: \"a;b\" cannot be a user name"),
            (
                &["--user", "x", "--map", "* common-name"],
                "--user: cannot be combined with --map",
            ),
            (&["--map", "* cn"], "--map: unknown map type"),
            (
                &["--min-tls", "1.1"],
                "--min-tls: \"1.1\": expected 1.2 or 1.3",
            ),
            (&["--backend"], "--backend: missing value"),
            (&["--backend", "--check"], "--backend: missing value"),
            (&["stray"], "unexpected argument \"stray\""),
        ];
        for (list, want) in cases {
            let err = run(list).unwrap_err().0;
            assert!(err.starts_with(want), "{list:?}: got {err:?}");
        }
    }

    #[test]
    fn config_file_lines_and_precedence() {
        let text = "# demo\nlisten = 127.0.0.1:7000\nuser = \"oper\"\n\nmax-sessions = 5\n";
        let mut settings = parse_file("nctls.conf", text).unwrap();
        settings.push(Setting {
            name: "max-sessions".into(),
            value: "7".into(),
            origin: Origin::CommandLine,
        });
        let c = build(&settings, Scope::Whole).unwrap();
        assert_eq!(c.identity, vec![Rule::parse("* specified oper").unwrap()]);
        assert_eq!(c.max_sessions, 7);
        assert_eq!(
            c.listen,
            vec!["127.0.0.1:7000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn config_file_errors_have_file_and_line() {
        let err = parse_file("a.conf", "listen = 1.2.3.4:5\nbogus\n")
            .err()
            .unwrap();
        assert_eq!(err.0, "a.conf:2: expected `name = value`, found \"bogus\"");
        let err = parse_file("a.conf", "colour = red").err().unwrap();
        assert_eq!(err.0, "a.conf:1: unknown option \"colour\"");
        let settings = parse_file("a.conf", "\n\nmax-record = 9").unwrap();
        let err = build(&settings, Scope::Whole).unwrap_err();
        assert!(err.0.starts_with("a.conf:3: max-record:"), "{}", err.0);
    }

    fn file(path: &str, text: &str) -> Result<Config, ConfigError> {
        build(&parse_file(path, text)?, Scope::Whole)
    }

    fn user_of(c: &Config) -> &str {
        match c.identity.as_slice() {
            [Rule {
                fingerprint: None,
                map: MapType::Specified(user),
            }] => user,
            other => panic!("not one user: {other:?}"),
        }
    }

    #[test]
    fn config_file_comments_and_quotes() {
        let c = file("a.conf", "user = admin   # the demo user\n").unwrap();
        assert_eq!(user_of(&c), "admin");
        let c = file("a.conf", "user = 'admin'\n").unwrap();
        assert_eq!(user_of(&c), "admin");
        let c = file(
            "a.conf",
            "user = \"admin  # no comment\"\nheader = confd-b64\n",
        )
        .unwrap();
        assert_eq!(user_of(&c), "admin  # no comment");
        let err = file("a.conf", "\nuser = 'admin\n").unwrap_err();
        assert_eq!(err.0, "a.conf:2: user: unterminated single quote");
        let err = file("a.conf", "user = it's\n").unwrap_err();
        assert!(
            err.0.starts_with("a.conf:1: user: quote '\\'' inside"),
            "{}",
            err.0
        );
    }

    #[test]
    fn single_valued_options_once_per_file() {
        let err = file(
            "a.conf",
            "user = admin\nlisten = 127.0.0.1:1\n\nuser = oper\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "a.conf:4: user: already set at line 1");
        let err = file("a.conf", "idle-timeout = 1\nidle-timeout = 1\n").unwrap_err();
        assert_eq!(err.0, "a.conf:2: idle-timeout: already set at line 1");
        // Repeatable options build their list.
        let text = "listen = 127.0.0.1:1\nlisten = 127.0.0.1:2\nmap = * san-dns-name\n\
                    map = * common-name\nuser-fields = a uid=1\nuser-fields = b uid=2\n";
        let c = file("a.conf", text).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.identity.len(), 2);
        assert_eq!(c.accounts.users.len(), 2);
        // The command line still overrides the file.
        let mut settings = parse_file("a.conf", "user = admin\n").unwrap();
        settings.push(Setting {
            name: "user".into(),
            value: "oper".into(),
            origin: Origin::CommandLine,
        });
        assert_eq!(user_of(&build(&settings, Scope::Whole).unwrap()), "oper");
    }

    #[test]
    fn relative_paths_in_a_file_are_relative_to_it() {
        let text = "cert = server.pem\nkey = /abs/key.pem\nca = ../ca/ca.pem\n\
                    crl = crl/a.crl\nbackend = unix:run/confd.sock\n";
        let c = file("/etc/nctls/nctls.conf", text).unwrap();
        assert_eq!(c.cert.path, Path::new("/etc/nctls/server.pem"));
        assert_eq!(c.cert.origin, "/etc/nctls/nctls.conf:1: cert");
        assert_eq!(c.key.path, Path::new("/abs/key.pem"));
        assert_eq!(c.ca.path, Path::new("/etc/nctls/../ca/ca.pem"));
        assert_eq!(c.crls[0].path, Path::new("/etc/nctls/crl/a.crl"));
        assert_eq!(c.crls[0].origin, "/etc/nctls/nctls.conf:4: crl");
        assert_eq!(
            c.backend,
            BackendAddr::Unix("/etc/nctls/run/confd.sock".into())
        );
        // A file named relatively is in the working directory, and so are its paths.
        let c = file("nctls.conf", text).unwrap();
        assert_eq!(c.cert.path, Path::new("server.pem"));
        // The command line's relative paths stay relative to the working directory.
        let c = run(&["--cert", "server.pem", "--backend", "unix:s.sock"]).unwrap();
        assert_eq!(c.cert.path, Path::new("server.pem"));
        assert_eq!(c.backend, BackendAddr::Unix("s.sock".into()));
    }

    #[test]
    fn the_header_decides_which_names_fit() {
        let odd = "a;b]\n\u{fc}";
        let err = run(&["--user", odd]).unwrap_err();
        let want = "--user: \"a;b]\\n\u{fc}\" cannot be a user name: contains ';'";
        assert!(err.0.starts_with(want), "{}", err.0);
        // confd-b64 carries the name, but HOMEDIR repeats it by default.
        let err = run(&["--user", odd, "--header", "confd-b64"]).unwrap_err();
        let want = "its HOMEDIR \"/var/confd/homes/a;b]";
        assert!(err.0.contains(want), "{}", err.0);
        let c = run(&["--user", odd, "--header", "confd-b64", "--home", "/h"]).unwrap();
        assert_eq!(user_of(&c), odd);
        let c = run(&[
            "--map",
            "* specified x;y",
            "--header",
            "confd-b64",
            "--home",
            "/h",
        ])
        .unwrap();
        assert_eq!(c.identity[0].to_string(), "* specified x;y");
        let err = run(&["--map", "* specified x;y"]).unwrap_err();
        assert!(
            err.0.starts_with("--map: \"x;y\" cannot be a user name"),
            "{}",
            err.0
        );
        let err = run(&["--user-fields", "x;y uid=1"]).unwrap_err();
        assert!(err.0.starts_with("--user-fields: \"x;y\""), "{}", err.0);
        assert!(run(&["--user-fields", "x;y uid=1", "--header", "none"]).is_ok());
        // NUL never fits.
        assert!(run(&["--user", "a\0b", "--header", "confd-b64", "--home", "/h"]).is_err());
        // The C library checks one setting before it knows the header.
        assert!(check_setting("user", "a;b").is_ok());
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert!(from_pairs(&[pair("user", "a;b")]).is_err());
        let b64 = [
            pair("user", "a;b"),
            pair("header", "confd-b64"),
            pair("home", "/h"),
        ];
        assert!(from_pairs(&b64).is_ok());
    }

    #[test]
    fn check_prints_every_option() {
        let text = run(&[]).unwrap().to_string();
        for o in OPTIONS.iter().filter(|o| o.name != "config") {
            let set = format!("{} = ", o.name);
            let unset = format!("# {}: none", o.name);
            assert!(
                text.lines().any(|l| l.starts_with(&set) || l == unset),
                "{} missing:\n{text}",
                o.name
            );
        }
        for line in [
            "log-level = info",
            "idle-timeout = 0",
            "handshake-timeout = 10",
            "subgids = \"\"",
            "map = * common-name",
            "# user: none",
            "# crl: none",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        let cwd = std::env::current_dir().unwrap();
        let cert = format!("cert = {}", cwd.join("x509-server.pem").display());
        assert!(text.lines().any(|l| l == cert), "{text}");
    }

    /// What `--check` prints reads back as the same configuration, hostile
    /// values included.
    #[test]
    fn check_output_is_a_config_file_for_the_same_configuration() {
        let c = run(&[
            "--listen",
            "127.0.0.1:7000",
            "--listen",
            "[::1]:7001",
            "--backend",
            "unix:/run/my confd #1/\"sock\"",
            "--cert",
            "/etc/nctls/it's a \\ cert #1.pem",
            "--crl",
            "/a.crl",
            "--crl",
            "/b\tc.crl",
            "--min-tls",
            "1.3",
            "--user",
            " j\u{fc}rgen ;# [x]\n\u{1}'\"",
            "--header",
            "confd-b64",
            "--proto",
            "tls",
            "--uid",
            "0",
            "--gid",
            "5",
            "--subgids",
            "1,2",
            "--groups",
            "admin,#wheel",
            "--home",
            "/home/tls users",
            "--user-fields",
            "bob uid=7 home=/b#b",
            "--user-fields",
            "eve",
            "--handshake-timeout",
            "0.25",
            "--connect-timeout",
            "1e-9",
            "--idle-timeout",
            "3600",
            "--drain-timeout",
            "2.5",
            "--tls12-close",
            "half-close",
            "--max-sessions",
            "7",
            "--max-sessions-per-ip",
            "2",
            "--max-record",
            "16384",
            "--log-level",
            "TRACE",
        ])
        .unwrap();
        let printed = c.to_string();
        let again = file("/elsewhere/x.conf", &printed).unwrap();
        assert_eq!(again.to_string(), printed);
        assert_eq!(user_of(&again), " j\u{fc}rgen ;# [x]\n\u{1}'\"");
        assert_eq!(again.crls[1].path, Path::new("/b\tc.crl"));
        assert_eq!(again.limits.connect_timeout, Duration::from_nanos(1));
        assert_eq!(again.accounts.fields_for("bob").home, "/b#b");
        assert_eq!(again.accounts.fields_for("eve"), &again.accounts.defaults);
        // And with map rules instead of a user.
        let c = run(&[
            "--map",
            "04:AB:cd common-name",
            "--map",
            "* specified guest",
        ]);
        assert!(c.is_err(), "a short fingerprint is refused");
        let fp = format!("04:{}", ["ab"; 32].join(":"));
        let c = run(&[
            "--map",
            &format!("{fp} common-name"),
            "--map",
            "* specified guest",
        ])
        .unwrap();
        let printed = c.to_string();
        assert!(printed.contains("\n# user: none\n"), "{printed}");
        assert_eq!(file("x.conf", &printed).unwrap().to_string(), printed);
    }

    #[test]
    fn maps_keep_their_order_and_fingerprint_subcommand() {
        let c = run(&["--map", "* san-dns-name", "--map=* specified guest"]).unwrap();
        assert_eq!(c.identity.len(), 2);
        assert_eq!(c.identity[1].to_string(), "* specified guest");
        match parse_args(args(&["fingerprint", "a.pem", "b.pem"])).unwrap() {
            Command::Fingerprint(files) => assert_eq!(files.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_fields_and_per_user_overrides() {
        let c = run(&[
            "--user-fields",
            "admin uid=0 groups=admin",
            "--gid",
            "5",
            "--proto",
            "tls",
        ])
        .unwrap();
        let admin = c.accounts.fields_for("admin");
        assert_eq!((admin.uid, admin.gid, admin.proto.as_str()), (0, 5, "tls"));
        assert_eq!(c.accounts.fields_for("other").uid, 9000);
        let err = run(&["--user-fields", "admin shell=sh"]).unwrap_err();
        assert!(
            err.0.starts_with("--user-fields: unknown field"),
            "{}",
            err.0
        );
        let err = run(&["--groups", "a;b"]).unwrap_err();
        assert!(err.0.starts_with("--groups: "), "{}", err.0);
    }

    #[test]
    fn library_pairs_use_the_same_rules() {
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        let c = from_pairs(&[
            pair("listen", "127.0.0.1:7000"),
            pair("listen", "[::1]:7001"),
            pair("user", "admin"),
            pair("max-record", "1024"),
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.identity, vec![Rule::parse("* specified admin").unwrap()]);
        assert_eq!(c.max_record, 1024);
        let err = from_pairs(&[pair("user", "a"), pair("map", "* common-name")]).unwrap_err();
        assert!(err.0.starts_with("user: cannot be combined"), "{}", err.0);
        assert_eq!(
            check_setting("colour", "red").unwrap_err().0,
            "unknown option \"colour\""
        );
        let err = check_setting("max-record", "9").unwrap_err();
        assert!(err.0.starts_with("max-record: \"9\""), "{}", err.0);
        assert!(check_setting("backend", "127.0.0.1:2023").is_ok());
    }

    #[test]
    fn readme_options_table_lists_every_option() {
        let readme = include_str!("../../README.md");
        let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `--")).collect();
        for o in OPTIONS {
            let name = format!("`--{}", o.name);
            assert!(
                table.iter().any(|row| row.contains(&name)),
                "README's options table lacks --{}",
                o.name
            );
        }
    }

    #[test]
    fn help_lists_every_option() {
        let help = usage();
        for o in OPTIONS {
            assert!(help.contains(&format!("--{} ", o.name)), "{}", o.name);
        }
    }
}
