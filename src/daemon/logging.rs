//! The daemon's log output: stderr, a file (`--log-file`, reopened on
//! SIGUSR1 for logrotate) or the local syslog (`--syslog`), filtered by
//! `--log-level` unless `RUST_LOG` is set. A reload can change the level and
//! the destination while the daemon runs.
//!
//! The C library does not use this: a library must not own the process's
//! logger, so its messages go to the embedder's callback (see `hooks`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{LogFormat, LoggerBackend, Severity};

use crate::config::{FileOption, LogOutput};

/// What the event loop keeps of the daemon's logger: SIGUSR1 reopens its
/// file, a reload applies a new level and destination.
#[derive(Clone)]
pub struct Logging {
    shared: Arc<Shared>,
}

struct Shared {
    /// The filter and the line format (env_logger), rebuilt when the level changes.
    lines: RwLock<env_logger::Logger>,
    sink: Arc<Mutex<Sink>>,
}

/// The destination, open.
enum Sink {
    Stderr,
    File(FileOption, File),
    Syslog(Syslog),
}

/// The process's logger: routes each line that passes the filter to the sink.
struct DaemonLogger(Arc<Shared>);

impl Logging {
    /// Opens `output` and installs the process's logger. Errors are one line
    /// naming the option (`--log-file PATH: ...`, `--syslog: ...`).
    pub fn init(level: LevelFilter, output: &LogOutput) -> Result<Logging, String> {
        let sink = Arc::new(Mutex::new(Sink::open(output)?));
        let lines = line_format(level, &sink);
        log::set_max_level(lines.filter());
        let shared = Arc::new(Shared {
            lines: RwLock::new(lines),
            sink,
        });
        log::set_boxed_logger(Box::new(DaemonLogger(shared.clone())))
            .map_err(|e| format!("cannot install the logger: {e}"))?;
        Ok(Logging { shared })
    }

    /// SIGUSR1: opens the log file again by its name, so lines go to a new
    /// file once logrotate has moved the old one. `Ok(Some(file))` when it
    /// did, `Ok(None)` when not logging to a file; on an error the old file
    /// keeps receiving lines.
    pub fn reopen(&self) -> Result<Option<String>, String> {
        let mut sink = lock(&self.shared.sink);
        let Sink::File(option, file) = &mut *sink else {
            return Ok(None);
        };
        *file = open_file(option)?;
        Ok(Some(option.path.display().to_string()))
    }

    /// Applies a reload's `--log-level` and destination. A destination that
    /// cannot be opened leaves the current one in place (the error says so).
    pub fn apply(&self, level: LevelFilter, output: &LogOutput) -> Result<(), String> {
        let lines = line_format(level, &self.shared.sink);
        log::set_max_level(lines.filter());
        *self
            .shared
            .lines
            .write()
            .unwrap_or_else(PoisonError::into_inner) = lines;
        let mut sink = lock(&self.shared.sink);
        if !sink.is(output) {
            *sink = Sink::open(output)?;
        }
        Ok(())
    }

    /// Whether lines go to stderr (where fatal errors are printed anyway).
    pub fn is_stderr(&self) -> bool {
        matches!(*lock(&self.shared.sink), Sink::Stderr)
    }
}

/// `RUST_LOG`, when set, decides the filter instead of `--log-level`.
pub fn rust_log_overrides() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

/// env_logger's filter (`--log-level`, or `RUST_LOG`) and our line format,
/// writing into `sink`.
fn line_format(level: LevelFilter, sink: &Arc<Mutex<Sink>>) -> env_logger::Logger {
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .format(|buf, record| {
            writeln!(
                buf,
                "{} nctls {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        })
        .target(env_logger::Target::Pipe(Box::new(SinkWriter(sink.clone()))))
        .build()
}

fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
    // A panic elsewhere while logging must not silence the daemon.
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_file(option: &FileOption) -> Result<File, String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&option.path)
        .map_err(|e| option.error(format!("cannot open for appending: {e}")))
}

impl Sink {
    fn open(output: &LogOutput) -> Result<Sink, String> {
        Ok(match output {
            LogOutput::Stderr => Sink::Stderr,
            LogOutput::File(option) => Sink::File(option.clone(), open_file(option)?),
            LogOutput::Syslog(facility) => Sink::Syslog(Syslog::connect(facility)?),
        })
    }

    /// Whether this sink is already `output` (a reload leaves it open).
    fn is(&self, output: &LogOutput) -> bool {
        match (self, output) {
            (Sink::Stderr, LogOutput::Stderr) => true,
            (Sink::File(open, _), LogOutput::File(wanted)) => open.path == wanted.path,
            (Sink::Syslog(open), LogOutput::Syslog(wanted)) => open.facility == *wanted,
            _ => false,
        }
    }
}

/// env_logger's output: formatted lines into the current sink.
struct SinkWriter(Arc<Mutex<Sink>>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *lock(&self.0) {
            Sink::Stderr => io::stderr().write(buf),
            // O_APPEND: each line lands whole at the end, even next to logrotate's copytruncate.
            Sink::File(_, file) => file.write(buf),
            // Syslog lines never reach here (see DaemonLogger::log).
            Sink::Syslog(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Log for DaemonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.lines().enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        let lines = self.lines();
        if !lines.matches(record) {
            return;
        }
        let mut sink = lock(&self.0.sink);
        if let Sink::Syslog(syslog) = &mut *sink {
            syslog.send(record.level(), &record.args().to_string());
            return;
        }
        drop(sink);
        lines.log(record);
    }

    fn flush(&self) {}
}

impl DaemonLogger {
    fn lines(&self) -> std::sync::RwLockReadGuard<'_, env_logger::Logger> {
        self.0.lines.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection to the local syslog daemon's socket (`/dev/log`, or where
/// the BSDs keep it), one datagram per line.
struct Syslog {
    facility: String,
    logger: syslog::Logger<LoggerBackend, Tagged>,
}

/// `<PRI>nctls[PID]: message`: RFC 3164 without the timestamp, which the
/// syslog daemon adds on receipt (glibc's would be local time, which a
/// daemon cannot read safely once it has threads).
#[derive(Clone)]
struct Tagged(syslog::Facility);

impl LogFormat<&str> for Tagged {
    fn format<W: Write>(&self, w: &mut W, severity: Severity, message: &str) -> syslog::Result<()> {
        let priority = self.0 as u8 | severity as u8;
        write!(w, "<{priority}>nctls[{}]: {message}", std::process::id())
            .map_err(syslog::Error::Write)
    }
}

impl Syslog {
    fn connect(facility: &str) -> Result<Syslog, String> {
        let code = syslog::Facility::from_str(facility)
            .map_err(|()| format!("--syslog: unknown facility {facility:?}"))?;
        let logger = syslog::unix(Tagged(code))
            .map_err(|e| format!("--syslog: cannot reach the local syslog socket: {e}"))?;
        Ok(Syslog {
            facility: facility.to_string(),
            logger,
        })
    }

    /// Sends one message; after a syslog daemon restart (its socket is new)
    /// connects again once; if that fails too, the line goes to stderr.
    fn send(&mut self, level: Level, message: &str) {
        if self.write(level, message).is_ok() {
            return;
        }
        if let Ok(again) = Syslog::connect(&self.facility) {
            *self = again;
            if self.write(level, message).is_ok() {
                return;
            }
        }
        eprintln!("nctls {level} (syslog unreachable): {message}");
    }

    fn write(&mut self, level: Level, message: &str) -> syslog::Result<()> {
        match level {
            Level::Error => self.logger.err(message),
            Level::Warn => self.logger.warning(message),
            Level::Info => self.logger.info(message),
            Level::Debug | Level::Trace => self.logger.debug(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names() {
        assert_eq!(
            LogOutput::syslog("LOCAL3"),
            Ok(LogOutput::Syslog("local3".into()))
        );
        assert!(LogOutput::syslog("daemon").is_ok());
        assert!(LogOutput::syslog("log_daemon").is_err());
        assert!(LogOutput::syslog("kitchen").unwrap_err().contains("local0"));
    }
}
