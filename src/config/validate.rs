//! From settings to a [`Config`]: each setting is read by its option's row
//! of the table into a [`Draft`], in order; then the rules that combine
//! options make the draft a `Config` ([`Draft::finish`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;

use crate::config::backend::BackendAddr;
use crate::config::settings::{Origin, Setting};
use crate::config::{Config, ConfigError, FileOption, KeySource, LogOutput, MinTls, RunAs};
use crate::identity::header::{Accounts, HeaderFields, HeaderKind};
use crate::identity::rules::{MapType, Rule};
use crate::relay::session::{Limits, Tls12Close};

/// How much of the configuration [`build`] sees.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// All of it: checks that combine options apply too.
    Whole,
    /// One setting alone over the defaults (`nctls_config_set`): only what
    /// it says by itself.
    OneSetting,
}

/// Applies `settings` in order (each option's `set`), then the rules that
/// combine options.
pub(super) fn build(settings: &[Setting], scope: Scope) -> Result<Config, ConfigError> {
    let mut draft = Draft::default();
    for s in settings {
        (s.option.set)(&mut draft, s)?;
    }
    draft.finish(scope)
}

/// The configuration while its settings are read. A single-valued option's
/// field is `None` until a setting (its default, at least) gives it.
#[derive(Default)]
pub(super) struct Draft {
    pub listen: Vec<SocketAddr>,
    pub backend: Option<BackendAddr>,
    pub cert: Option<FileOption>,
    /// `--key`, and the setting that gave it.
    pub key: Option<(KeySource, Setting)>,
    pub pkcs11_module: Option<(FileOption, Setting)>,
    pub pkcs11_pin_file: Option<(FileOption, Setting)>,
    pub ca: Option<FileOption>,
    pub crls: Vec<FileOption>,
    pub min_tls: Option<MinTls>,
    /// `--user`: the one rule `* specified NAME` (see `finish`).
    pub user: Option<Setting>,
    /// `--map` rules with the setting that gave each.
    pub rules: Vec<(Rule, Setting)>,
    pub header: Option<HeaderKind>,
    /// The header fields of every user (`--proto`, `--uid`, ...).
    pub fields: HeaderFields,
    /// `--user-fields`, read over the final `fields` in `finish`.
    pub user_fields: Vec<Setting>,
    pub handshake_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// `Some(None)`: off.
    pub idle_timeout: Option<Option<Duration>>,
    pub drain_timeout: Option<Duration>,
    pub tls12_close: Option<Tls12Close>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub max_record: Option<usize>,
    /// `Some(None)`: off.
    pub tcp_keepalive: Option<Option<Duration>>,
    pub expiry_warning_days: Option<u32>,
    pub log_level: Option<LevelFilter>,
    pub log_file: Option<FileOption>,
    pub syslog: Option<(LogOutput, Setting)>,
    pub run_as: Option<RunAs>,
    pub sandbox: Option<bool>,
}

/// A single-valued option's value; every such option has a default, so
/// this fails only if the option table lacks one.
fn given<T>(value: Option<T>, name: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError(format!("{name}: no value and no default")))
}

impl Draft {
    /// The rules that combine options, then the [`Config`].
    fn finish(self, scope: Scope) -> Result<Config, ConfigError> {
        // Per-user fields start from the final defaults, wherever those were set.
        let mut accounts = Accounts {
            defaults: self.fields,
            users: Vec::new(),
        };
        // User names known now, and the setting that named each.
        let mut named: Vec<(String, &Setting)> = Vec::new();
        for s in &self.user_fields {
            accounts.add_user(&s.value).map_err(|why| s.error(why))?;
            named.extend(accounts.users.last().map(|(name, _)| (name.clone(), s)));
        }
        let identity = identity(self.user.as_ref(), &self.rules, &mut named)?;
        let header = given(self.header, "header")?;
        // Names must fit the header (which may be set after them).
        if scope == Scope::Whole {
            for (name, s) in named {
                header
                    .check_account(&name, accounts.fields_for(&name))
                    .map_err(|why| s.error(why))?;
            }
        }
        let log_output = match (self.log_file, self.syslog) {
            (Some(_), Some((_, s))) => {
                return Err(s.error("cannot be combined with log-file: log lines go to one place"))
            }
            (Some(file), None) => LogOutput::File(file),
            (None, Some((output, _))) => output,
            (None, None) => LogOutput::Stderr,
        };
        let (key, key_setting) = given(self.key, "key")?;
        // The C library checks each setting alone: the key and its module
        // come one at a time there.
        if scope == Scope::Whole {
            check_token_options(
                &key,
                &key_setting,
                &self.pkcs11_module,
                &self.pkcs11_pin_file,
            )?;
        }
        let limits = Limits {
            handshake_timeout: given(self.handshake_timeout, "handshake-timeout")?,
            connect_timeout: given(self.connect_timeout, "connect-timeout")?,
            idle_timeout: given(self.idle_timeout, "idle-timeout")?,
            drain_timeout: given(self.drain_timeout, "drain-timeout")?,
            tls12_close: given(self.tls12_close, "tls12-close")?,
        };
        Ok(Config {
            listen: self.listen,
            backend: given(self.backend, "backend")?,
            cert: given(self.cert, "cert")?,
            key,
            pkcs11_module: self.pkcs11_module.map(|(file, _)| file),
            pkcs11_pin_file: self.pkcs11_pin_file.map(|(file, _)| file),
            ca: given(self.ca, "ca")?,
            crls: self.crls,
            min_tls: given(self.min_tls, "min-tls")?,
            identity,
            header,
            accounts,
            limits: Arc::new(limits),
            max_sessions: given(self.max_sessions, "max-sessions")?,
            max_sessions_per_ip: given(self.max_sessions_per_ip, "max-sessions-per-ip")?,
            max_record: given(self.max_record, "max-record")?,
            tcp_keepalive: given(self.tcp_keepalive, "tcp-keepalive")?,
            log_level: given(self.log_level, "log-level")?,
            expiry_warning_days: given(self.expiry_warning_days, "expiry-warning")?,
            log_output,
            run_as: self.run_as,
            sandbox: given(self.sandbox, "sandbox")?,
            config_file: None,
        })
    }
}

/// A PKCS#11 key needs its module; the module and PIN options need a
/// PKCS#11 key (given alone they would be silently unused).
fn check_token_options(
    key: &KeySource,
    key_setting: &Setting,
    module: &Option<(FileOption, Setting)>,
    pin_file: &Option<(FileOption, Setting)>,
) -> Result<(), ConfigError> {
    match (key, module, pin_file) {
        (KeySource::Token { .. }, None, _) => {
            Err(key_setting.error("a PKCS#11 URI needs --pkcs11-module PATH (the token's library)"))
        }
        (KeySource::File(_), Some((_, s)), _) | (KeySource::File(_), _, Some((_, s))) => {
            Err(s.error("only used with a PKCS#11 key (--key pkcs11:...)"))
        }
        _ => Ok(()),
    }
}

/// The cert-to-name rules: `--user NAME` is the one rule `* specified NAME`
/// and replaces the default rule, but not rules given with `--map`. Adds
/// the user names the rules name to `named`.
fn identity<'a>(
    user: Option<&'a Setting>,
    rules: &'a [(Rule, Setting)],
    named: &mut Vec<(String, &'a Setting)>,
) -> Result<Vec<Rule>, ConfigError> {
    let given: Vec<&(Rule, Setting)> = rules
        .iter()
        .filter(|(_, s)| !matches!(s.origin, Origin::Default))
        .collect();
    if let Some(user) = user {
        if !given.is_empty() {
            return Err(user.error(
                "cannot be combined with --map (add '* specified NAME' as the last rule instead)",
            ));
        }
        named.push((user.value.clone(), user));
        return Ok(vec![Rule {
            fingerprint: None,
            map: MapType::Specified(user.value.clone()),
        }]);
    }
    for (rule, s) in rules {
        if let MapType::Specified(name) = &rule.map {
            named.push((name.clone(), s));
        }
    }
    Ok(rules.iter().map(|(rule, _)| rule.clone()).collect())
}
