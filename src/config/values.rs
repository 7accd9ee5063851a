//! Value forms: reading one setting's text into a typed value, with an
//! error that names the setting and says what was expected, and writing a
//! value back as a config file would (for `--check`).

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::backend::BackendAddr;
use crate::config::settings::Setting;
use crate::config::{ConfigError, FileOption};
use crate::identity::addr;

/// Stores a single value read from a setting (the last one given wins):
/// `set: |d, s| put(&mut d.max_record, number(s, 512, 16384))`.
pub(super) fn put<T>(
    slot: &mut Option<T>,
    value: Result<T, ConfigError>,
) -> Result<(), ConfigError> {
    *slot = Some(value?);
    Ok(())
}

/// Adds a value read from a setting to a list (a repeatable option).
pub(super) fn push<T>(list: &mut Vec<T>, value: Result<T, ConfigError>) -> Result<(), ConfigError> {
    list.push(value?);
    Ok(())
}

/// A file; relative to the config file's directory when a file names it.
pub(super) fn path(s: &Setting) -> Result<FileOption, ConfigError> {
    if s.value.is_empty() {
        return Err(s.error("empty file name"));
    }
    Ok(FileOption {
        path: s.resolve(Path::new(&s.value)),
        origin: s.origin(),
    })
}

/// Seconds, fractional or not, more than 0.
pub(super) fn seconds(s: &Setting) -> Result<Duration, ConfigError> {
    match seconds_or_off(s)? {
        Some(d) => Ok(d),
        None => Err(s.error("must be more than 0")),
    }
}

/// Seconds, fractional or not, to the nanosecond; 0 is off (`None`).
pub(super) fn seconds_or_off(s: &Setting) -> Result<Option<Duration>, ConfigError> {
    let bad = || s.error(format!("{:?} is not a number of seconds", s.value));
    let secs: f64 = s.value.parse().map_err(|_| bad())?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    let d = Duration::from_secs_f64(secs);
    Ok((!d.is_zero()).then_some(d))
}

/// A whole number from `min` to `max`.
pub(super) fn number<T>(s: &Setting, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display,
{
    match s.value.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(n),
        _ => Err(s.error(format!(
            "{:?}: expected a whole number from {min} to {max}",
            s.value
        ))),
    }
}

/// One of a few names, each standing for a value.
pub(super) fn choice<T: Copy>(s: &Setting, names: &[(&str, T)]) -> Result<T, ConfigError> {
    match names.iter().find(|(name, _)| *name == s.value) {
        Some((_, value)) => Ok(*value),
        None => {
            let mut names: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
            let last = names.pop().unwrap_or_default();
            let expected = match names.is_empty() {
                true => last.to_string(),
                false => format!("{} or {last}", names.join(", ")),
            };
            Err(s.error(format!("{:?}: expected {expected}", s.value)))
        }
    }
}

/// The name [`choice`] reads as `value`.
pub(super) fn name_of<T: PartialEq>(names: &[(&'static str, T)], value: T) -> &'static str {
    names
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(name, _)| name)
}

/// `IP:PORT`, IPv6 in brackets, with a zone by name or number.
pub(super) fn listen_addr(s: &Setting) -> Result<SocketAddr, ConfigError> {
    addr::parse_ip_port(&s.value).map_err(|why| {
        s.error(format!(
            "{why} (IPv6 as [::]:6513, a zone as [fe80::1%eth0]:6513)"
        ))
    })
}

/// `HOST:PORT` (resolved now) or `unix:PATH` (a path like [`path`]'s).
pub(super) fn backend(s: &Setting) -> Result<BackendAddr, ConfigError> {
    Ok(
        match BackendAddr::parse(&s.value).map_err(|why| s.error(why))? {
            BackendAddr::Unix(socket) => BackendAddr::Unix(s.resolve(&socket)),
            tcp => tcp,
        },
    )
}

/// One value to show.
pub(super) fn one(value: impl ToString) -> Vec<String> {
    vec![value.to_string()]
}

/// A file as `--check` shows it: from the root, so that the text means the
/// same file wherever it is saved.
pub(super) fn path_text(file: &FileOption) -> String {
    absolute(&file.path).display().to_string()
}

/// `--backend` as `--check` shows it (a socket's path from the root).
pub(super) fn backend_text(backend: &BackendAddr) -> String {
    match backend {
        BackendAddr::Unix(socket) => format!("unix:{}", absolute(socket).display()),
        tcp => tcp.to_string(),
    }
}

/// Seconds as [`seconds`] reads them back exactly: `10`, `0.25`.
pub(super) fn seconds_text(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

/// `path` from the root, as opened from the working directory now.
fn absolute(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) => dir.join(path),
        Err(_) => path.to_path_buf(),
    }
}
