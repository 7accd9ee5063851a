//! The option table: every option's name, value form, help, default, and
//! how one value is read into the configuration and shown back. `--help`,
//! the option parser (command line, config file, the C library's
//! `nctls_config_set`), the defaults, `--check`'s effective configuration
//! and the man-page and README checks (`tests/man.rs`) all come from
//! [`OPTIONS`].
//!
//! Every option is accepted as `--name VALUE` / `--name=VALUE` on the command
//! line and as a `name = value` line in the config file; the command line
//! wins. Defaults are those of ConfD's GnuTLS subsys demo, so nctls is a
//! drop-in for it. Errors name the option (and file and line) and say what
//! was expected.

use std::time::Duration;

use log::LevelFilter;

use crate::config::pkcs11_uri::Pkcs11Uri;
use crate::config::settings::Setting;
use crate::config::validate::Draft;
use crate::config::values::*;
use crate::config::{Config, ConfigError, KeySource, LogOutput, MinTls, RunAs};
use crate::identity::addr::Show;
use crate::identity::header::{self, HeaderFields, HeaderKind};
use crate::identity::rules::{MapType, Rule};
use crate::relay::session::Tls12Close;

/// One option: everything nctls knows about it, in one row of [`OPTIONS`].
pub(super) struct OptionSpec {
    /// Its name in a config file and, after `--`, on the command line.
    pub name: &'static str,
    /// The value's form, as `--help` and the man pages show it.
    pub arg: &'static str,
    /// What it does, for `--help`; the default is added from `default`.
    pub help: &'static str,
    pub default: DefaultValue,
    /// Given several times, its values build a list.
    pub repeats: bool,
    /// Reads one setting of this option into the configuration being built.
    /// Rules that combine options wait until every setting is read
    /// ([`Draft::finish`]).
    pub set: fn(&mut Draft, &Setting) -> Result<(), ConfigError>,
    /// Its effective value(s) in a configuration, as a config file writes
    /// them (unquoted), for `--check`; none: printed as `# name: none`.
    pub show: fn(&Config) -> Vec<String>,
}

/// What an option is when no setting gives it.
#[derive(Clone, Copy)]
pub(super) enum DefaultValue {
    /// Nothing: off, or an empty list.
    Unset,
    /// This value, written as a user would write it, read by the row's `set`
    /// like any other.
    Is(&'static str),
    /// The ConfD header field's default (the GnuTLS demo's), which the header
    /// module holds: `HeaderFields::default()`.
    HeaderField,
    /// Nothing; but on the command line the value may be left out
    /// (`--syslog`), and is then this.
    Implied(&'static str),
}

impl DefaultValue {
    /// The default as a setting's value, for the option `name`.
    pub fn text(self, name: &str) -> Option<String> {
        match self {
            DefaultValue::Is(value) => Some(value.to_string()),
            DefaultValue::HeaderField => HeaderFields::default().get(name),
            DefaultValue::Unset | DefaultValue::Implied(_) => None,
        }
    }
}

impl OptionSpec {
    /// The value `--name` stands for when given without one.
    pub fn implied(&self) -> Option<&'static str> {
        match self.default {
            DefaultValue::Implied(value) => Some(value),
            _ => None,
        }
    }

    /// What `--help` shows in brackets: the default, or the value the option
    /// takes when given alone; `empty` for the empty value.
    pub fn bracket(&self) -> Option<String> {
        let text = self
            .default
            .text(self.name)
            .or(self.implied().map(String::from))?;
        Some(if text.is_empty() {
            "empty".into()
        } else {
            text
        })
    }
}

/// The option that names a config file: read before any other setting,
/// never inside a config file, and not part of `--check`'s output (that
/// text is the configuration itself).
pub(super) const CONFIG: &str = "config";

// To add an option:
// 1. a row below, where `--help` and `--check` should list it: name, value
//    form, help, default (as a user would write it, or `Unset`), whether it
//    repeats, `set` (read one value into the `Draft`) and `show` (its
//    effective value in a `Config`);
// 2. its field in `Config` (mod.rs) and in `Draft` with its line in
//    `Draft::finish` (validate.rs), which also holds any rule that combines
//    it with other options;
// 3. its entry in README's options table and in both man pages (`man/`):
//    `tests/man.rs` checks them against this table.
// The value readers (`number`, `seconds`, `path`, `choice`, ...) and `put` /
// `push` are in values.rs.

/// Every option that takes a value, in `--help` and `--check` order.
pub(super) const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: CONFIG,
        arg: "FILE",
        help: "read `name = value` lines (same names as these options, # comments, '...' or \"...\" values, relative paths from the file's directory); the command line wins",
        default: DefaultValue::Unset,
        repeats: false,
        // Read by `settings::assemble` before the other settings.
        set: |_, _| Ok(()),
        show: |_| Vec::new(),
    },
    OptionSpec {
        name: "listen",
        arg: "ADDR:PORT",
        help: "TLS address to listen on, repeatable, IPv6 as [::]:6513 (also IPv4 unless 0.0.0.0 has the same port), zones as [fe80::1%eth0]:6513",
        default: DefaultValue::Is("0.0.0.0:6513"),
        repeats: true,
        set: |d, s| push(&mut d.listen, listen_addr(s)),
        show: |c| c.listen.iter().map(|a| Show(*a).to_string()).collect(),
    },
    OptionSpec {
        name: "backend",
        arg: "HOST:PORT|unix:PATH",
        help: "the NETCONF server's plain TCP port (ConfD's netconf tcp transport) or unix socket; each address HOST resolves to is tried in order",
        default: DefaultValue::Is("127.0.0.1:2023"),
        repeats: false,
        set: |d, s| put(&mut d.backend, backend(s)),
        show: |c| one(backend_text(&c.backend)),
    },
    OptionSpec {
        name: "cert",
        arg: "FILE",
        help: "server certificate chain, PEM",
        default: DefaultValue::Is("x509-server.pem"),
        repeats: false,
        set: |d, s| put(&mut d.cert, path(s)),
        show: |c| one(path_text(&c.cert)),
    },
    OptionSpec {
        name: "key",
        arg: "FILE",
        help: "server private key, PEM (PKCS#8, PKCS#1 or SEC1), or a PKCS#11 URI (pkcs11:token=...;object=...) of a key in a token",
        default: DefaultValue::Is("x509-server-key.pem"),
        repeats: false,
        set: |d, s| {
            let key = key_source(s)?;
            d.key = Some((key, s.clone()));
            Ok(())
        },
        show: |c| match &c.key {
            KeySource::File(file) => one(path_text(file)),
            KeySource::Token { uri, .. } => one(uri),
        },
    },
    OptionSpec {
        name: "pkcs11-module",
        arg: "PATH",
        help: "the PKCS#11 library (.so) holding a pkcs11: --key, e.g. /usr/lib/softhsm/libsofthsm2.so",
        default: DefaultValue::Unset,
        repeats: false,
        set: |d, s| {
            d.pkcs11_module = Some((path(s)?, s.clone()));
            Ok(())
        },
        show: |c| c.pkcs11_module.iter().map(path_text).collect(),
    },
    OptionSpec {
        name: "pkcs11-pin-file",
        arg: "FILE",
        help: "the token's user PIN, the file's first line (never on the command line); none: no login",
        default: DefaultValue::Unset,
        repeats: false,
        set: |d, s| {
            d.pkcs11_pin_file = Some((path(s)?, s.clone()));
            Ok(())
        },
        show: |c| c.pkcs11_pin_file.iter().map(path_text).collect(),
    },
    OptionSpec {
        name: "ca",
        arg: "FILE",
        help: "CA certificate(s) that issue client certificates, PEM",
        default: DefaultValue::Is("x509-ca.pem"),
        repeats: false,
        set: |d, s| put(&mut d.ca, path(s)),
        show: |c| one(path_text(&c.ca)),
    },
    OptionSpec {
        name: "crl",
        arg: "FILE",
        help: "certificate revocation list(s), PEM, repeatable; revoked or expired-CRL clients are refused",
        default: DefaultValue::Unset,
        repeats: true,
        set: |d, s| push(&mut d.crls, path(s)),
        show: |c| c.crls.iter().map(path_text).collect(),
    },
    OptionSpec {
        name: "min-tls",
        arg: "1.2|1.3",
        help: "oldest TLS version accepted",
        default: DefaultValue::Is("1.2"),
        repeats: false,
        set: |d, s| put(&mut d.min_tls, choice(s, MIN_TLS)),
        show: |c| one(name_of(MIN_TLS, c.min_tls)),
    },
    OptionSpec {
        name: "user",
        arg: "NAME",
        help: "every verified client is this user (the GnuTLS demo's behaviour); same as --map '* specified NAME'",
        default: DefaultValue::Unset,
        repeats: false,
        set: |d, s| {
            let v = &s.value;
            header::check_name(v)
                .map_err(|why| s.error(format!("{v:?} cannot be a user name: {why}")))?;
            d.user = Some(s.clone());
            Ok(())
        },
        // Shown as `user`, since a map rule cannot hold a name with whitespace.
        show: |c| single_user(c).into_iter().cloned().collect(),
    },
    OptionSpec {
        name: "map",
        arg: "RULE",
        help: "cert-to-name rule 'FINGERPRINT MAP-TYPE [NAME]', repeatable, tried in order",
        default: DefaultValue::Is("* common-name"),
        repeats: true,
        set: |d, s| {
            let rule = Rule::parse(&s.value).map_err(|why| s.error(why))?;
            d.rules.push((rule, s.clone()));
            Ok(())
        },
        show: |c| match single_user(c) {
            Some(_) => Vec::new(),
            None => c.identity.iter().map(Rule::to_string).collect(),
        },
    },
    OptionSpec {
        name: "header",
        arg: "confd|confd-b64|ncx[:PORT]|none",
        help: "session header written to the backend first: ConfD's, ConfD's with the user name in base64 (any name), yuma123 netconfd's <ncx-connect> (PORT from its --port list, default 830), or none",
        default: DefaultValue::Is("confd"),
        repeats: false,
        set: |d, s| {
            let v = &s.value;
            let kind = HeaderKind::parse(v).ok_or_else(|| {
                s.error(format!(
                    "{v:?}: expected confd, confd-b64, ncx, ncx:PORT or none"
                ))
            });
            put(&mut d.header, kind)
        },
        show: |c| one(c.header),
    },
    OptionSpec {
        name: "proto",
        arg: "NAME",
        help: "header field PROTO",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "proto")),
    },
    OptionSpec {
        name: "uid",
        arg: "N",
        help: "header field UID",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "uid")),
    },
    OptionSpec {
        name: "gid",
        arg: "N",
        help: "header field GID",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "gid")),
    },
    OptionSpec {
        name: "subgids",
        arg: "N,N,...",
        help: "header field SUBGIDS, supplementary group ids",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "subgids")),
    },
    OptionSpec {
        name: "home",
        arg: "PATH",
        help: "header field HOMEDIR, %u is the user",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "home")),
    },
    OptionSpec {
        name: "groups",
        arg: "NAME,NAME,...",
        help: "header field GROUPS, group names",
        default: DefaultValue::HeaderField,
        repeats: false,
        set: header_field,
        show: |c| one(field(c, "groups")),
    },
    OptionSpec {
        name: "user-fields",
        arg: "'NAME key=value ...'",
        help: "per-user header fields (keys: proto uid gid subgids groups home), repeatable",
        default: DefaultValue::Unset,
        repeats: true,
        // Read in `Draft::finish`, over the final header field defaults.
        set: |d, s| {
            d.user_fields.push(s.clone());
            Ok(())
        },
        show: |c| {
            let defaults = &c.accounts.defaults;
            let user = |(name, fields): &(String, HeaderFields)| {
                let mut words = vec![name.clone()];
                words.extend(fields.differences(defaults));
                words.join(" ")
            };
            c.accounts.users.iter().map(user).collect()
        },
    },
    OptionSpec {
        name: "handshake-timeout",
        arg: "SECS",
        help: "drop clients that have not finished the TLS handshake",
        default: DefaultValue::Is("10"),
        repeats: false,
        set: |d, s| put(&mut d.handshake_timeout, seconds(s)),
        show: |c| one(seconds_text(c.limits.handshake_timeout)),
    },
    OptionSpec {
        name: "connect-timeout",
        arg: "SECS",
        help: "give up connecting to the backend",
        default: DefaultValue::Is("10"),
        repeats: false,
        set: |d, s| put(&mut d.connect_timeout, seconds(s)),
        show: |c| one(seconds_text(c.limits.connect_timeout)),
    },
    OptionSpec {
        name: "idle-timeout",
        arg: "SECS",
        help: "end sessions with no traffic either way, 0 = never",
        default: DefaultValue::Is("0"),
        repeats: false,
        set: |d, s| put(&mut d.idle_timeout, seconds_or_off(s)),
        show: |c| one(seconds_text(c.limits.idle_timeout.unwrap_or_default())),
    },
    OptionSpec {
        name: "drain-timeout",
        arg: "SECS",
        help: "how long a half-closed or closing session may stay silent",
        default: DefaultValue::Is("10"),
        repeats: false,
        set: |d, s| put(&mut d.drain_timeout, seconds(s)),
        show: |c| one(seconds_text(c.limits.drain_timeout)),
    },
    OptionSpec {
        name: "tls12-close",
        arg: "strict|half-close",
        help: "TLS 1.2 client close_notify: answer at once (RFC 5246) or relay the backend's rest first",
        default: DefaultValue::Is("strict"),
        repeats: false,
        set: |d, s| put(&mut d.tls12_close, choice(s, TLS12_CLOSE)),
        show: |c| one(name_of(TLS12_CLOSE, c.limits.tls12_close)),
    },
    OptionSpec {
        name: "max-sessions",
        arg: "N",
        help: "sessions at once; more are refused with close_notify, then wait in the backlog",
        default: DefaultValue::Is("1000"),
        repeats: false,
        set: |d, s| put(&mut d.max_sessions, number(s, 1, 1 << 20)),
        show: |c| one(c.max_sessions),
    },
    OptionSpec {
        name: "max-sessions-per-ip",
        arg: "N",
        help: "sessions at once from one client address, 0 = no limit",
        default: DefaultValue::Is("0"),
        repeats: false,
        set: |d, s| put(&mut d.max_sessions_per_ip, number(s, 0, 1 << 20)),
        show: |c| one(c.max_sessions_per_ip),
    },
    OptionSpec {
        name: "max-record",
        arg: "BYTES",
        help: "largest plaintext per TLS record to clients (ncclient needs <= 4096)",
        default: DefaultValue::Is("4096"),
        repeats: false,
        set: |d, s| put(&mut d.max_record, number(s, 512, 16384)),
        show: |c| one(c.max_record),
    },
    OptionSpec {
        name: "tcp-keepalive",
        arg: "SECS",
        help: "TCP keepalive on client sockets: first probe after SECS idle, then 5 probes SECS/10 apart (1-75 s), 0 = off",
        default: DefaultValue::Is("300"),
        repeats: false,
        // Linux takes TCP_KEEPIDLE in whole seconds, at most 32767.
        set: |d, s| {
            let secs = number(s, 0, 32767)?;
            put(&mut d.tcp_keepalive, Ok((secs > 0).then(|| Duration::from_secs(secs))))
        },
        show: |c| one(c.tcp_keepalive.unwrap_or_default().as_secs()),
    },
    OptionSpec {
        name: "expiry-warning",
        arg: "DAYS",
        help: "warn at start, on reload and daily when the server certificate, a CA or a CRL expires within DAYS, 0 = never",
        default: DefaultValue::Is("30"),
        repeats: false,
        set: |d, s| put(&mut d.expiry_warning_days, number(s, 0, 3650)),
        show: |c| one(c.expiry_warning_days),
    },
    OptionSpec {
        name: "log-level",
        arg: "LEVEL",
        help: "off, error, warn, info, debug or trace; RUST_LOG overrides",
        default: DefaultValue::Is("info"),
        repeats: false,
        set: |d, s| put(&mut d.log_level, log_level(s)),
        show: |c| one(c.log_level.as_str().to_ascii_lowercase()),
    },
    OptionSpec {
        name: "log-file",
        arg: "FILE",
        help: "append log lines to FILE instead of stderr; SIGUSR1 reopens it (logrotate)",
        default: DefaultValue::Unset,
        repeats: false,
        set: |d, s| put(&mut d.log_file, path(s)),
        show: |c| match &c.log_output {
            LogOutput::File(file) => one(path_text(file)),
            _ => Vec::new(),
        },
    },
    OptionSpec {
        name: "syslog",
        arg: "[FACILITY]",
        help: "log to the local syslog (/dev/log) instead of stderr, as FACILITY (daemon, user, local0 ... local7)",
        default: DefaultValue::Implied("daemon"),
        repeats: false,
        set: |d, s| {
            let output = LogOutput::syslog(&s.value).map_err(|why| s.error(why))?;
            d.syslog = Some((output, s.clone()));
            Ok(())
        },
        show: |c| match &c.log_output {
            LogOutput::Syslog(facility) => one(facility),
            _ => Vec::new(),
        },
    },
    OptionSpec {
        name: "run-as",
        arg: "USER[:GROUP]",
        help: "started as root: become USER (its groups, or GROUP) once listening and the key is loaded",
        default: DefaultValue::Unset,
        repeats: false,
        set: |d, s| put(&mut d.run_as, run_as(s)),
        show: |c| c.run_as.iter().map(RunAs::to_string).collect(),
    },
    OptionSpec {
        name: "sandbox",
        arg: "on|off",
        help: "after start-up, let Landlock confine the daemon to its files and ports (best effort: what the kernel offers)",
        default: DefaultValue::Is("on"),
        repeats: false,
        set: |d, s| put(&mut d.sandbox, choice(s, ON_OFF)),
        show: |c| one(name_of(ON_OFF, c.sandbox)),
    },
];

/// A command-line flag: no value, not in a config file.
pub(super) struct Flag {
    pub name: &'static str,
    /// The short form, if any (`-h`).
    pub short: Option<&'static str>,
    pub help: &'static str,
    pub action: FlagAction,
}

/// What a flag asks for.
#[derive(Clone, Copy)]
pub(super) enum FlagAction {
    /// Validate, load, print the effective configuration, exit.
    Check,
    /// The same as this option with this value (`--no-sandbox`: `--sandbox off`).
    Set(&'static str, &'static str),
    Version,
    Help,
}

impl Flag {
    /// Whether a command-line argument is this flag.
    pub fn is(&self, arg: &str) -> bool {
        arg.strip_prefix("--") == Some(self.name) || self.short == Some(arg)
    }
}

/// The flags, after the options in `--help`.
pub(super) const FLAGS: &[Flag] = &[
    Flag {
        name: "check",
        short: None,
        help: "load and validate everything, print the effective configuration as a config file, exit 0 or 1",
        action: FlagAction::Check,
    },
    Flag {
        name: "no-sandbox",
        short: None,
        help: "the same as --sandbox off",
        action: FlagAction::Set("sandbox", "off"),
    },
    Flag {
        name: "version",
        short: Some("-V"),
        help: "print the version",
        action: FlagAction::Version,
    },
    Flag {
        name: "help",
        short: Some("-h"),
        help: "print this help",
        action: FlagAction::Help,
    },
];

/// `--min-tls` values.
const MIN_TLS: &[(&str, MinTls)] = &[("1.2", MinTls::V12), ("1.3", MinTls::V13)];

/// `--sandbox` values.
const ON_OFF: &[(&str, bool)] = &[("on", true), ("off", false)];

/// `--tls12-close` values.
const TLS12_CLOSE: &[(&str, Tls12Close)] = &[
    ("strict", Tls12Close::Strict),
    ("half-close", Tls12Close::HalfClose),
];

/// `--proto`, `--uid`, ...: one of the ConfD header's fields for every user.
fn header_field(d: &mut Draft, s: &Setting) -> Result<(), ConfigError> {
    d.fields.set(s.name(), &s.value).map_err(|why| s.error(why))
}

/// A header field's effective default, by its option's name.
fn field(c: &Config, name: &str) -> String {
    c.accounts.defaults.get(name).unwrap_or_default()
}

/// `--log-level`: a `log` level name, in any case.
fn log_level(s: &Setting) -> Result<LevelFilter, ConfigError> {
    s.value.parse().map_err(|_| {
        s.error(format!(
            "{:?}: expected off, error, warn, info, debug or trace",
            s.value
        ))
    })
}

/// `--key`: a PKCS#11 URI (only in a build with the `pkcs11` feature), or
/// a file.
fn key_source(s: &Setting) -> Result<KeySource, ConfigError> {
    if !Pkcs11Uri::is_uri(&s.value) {
        return Ok(KeySource::File(path(s)?));
    }
    if !cfg!(feature = "pkcs11") {
        return Err(s.error(
            "a PKCS#11 key needs nctls built with the pkcs11 feature \
             (cargo build --release --features pkcs11)",
        ));
    }
    let uri = Pkcs11Uri::parse(&s.value).map_err(|why| s.error(format!("{}: {why}", s.value)))?;
    Ok(KeySource::Token {
        uri,
        origin: s.origin(),
    })
}

/// `--run-as USER[:GROUP]`: names, checked when the daemon drops to them.
fn run_as(s: &Setting) -> Result<RunAs, ConfigError> {
    let (user, group) = match s.value.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (s.value.as_str(), None),
    };
    let name_ok = |n: &str| {
        !n.is_empty() && !n.contains(|c: char| c.is_whitespace() || c == ':' || c.is_control())
    };
    if !name_ok(user) || group.is_some_and(|g| !name_ok(g)) {
        return Err(s.error(format!(
            "{:?}: expected USER or USER:GROUP (names)",
            s.value
        )));
    }
    Ok(RunAs {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}

/// The user of a configuration whose one rule is `* specified NAME`: what
/// `--user NAME` gives.
fn single_user(c: &Config) -> Option<&String> {
    match c.identity.as_slice() {
        [Rule {
            fingerprint: None,
            map: MapType::Specified(user),
        }] => Some(user),
        _ => None,
    }
}

/// The option named `name`.
pub(super) fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}
