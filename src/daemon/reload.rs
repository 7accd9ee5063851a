//! A reload (SIGHUP): computed on a thread of its own ([`Reloads`]), and
//! what it changes, option by option, so the log can say it:
//! `changed: log-level info -> debug`, and which changes wait for a restart.
//!
//! The comparison reads the effective configuration as `--check` prints it
//! (one option per line, its name first; a repeated option is one value per
//! line, `#` lines are comments), so every option printed there is compared
//! and no second list of options is kept here.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use mio::Waker;

use crate::config::tls::Loaded;
use crate::config::Config;
use crate::daemon::hooks::{debug, warn};

/// What a reload computes: the new configuration (names resolved) and its
/// loaded files, or why not.
pub type ReloadResult = Result<(Config, Loaded), String>;

/// Re-reads the configuration, loads its files and resolves the backend's
/// name, for SIGHUP. It runs on a thread of its own: DNS and slow disks
/// must not stall the sessions being served.
pub type Reloader = Arc<dyn Fn() -> ReloadResult + Send + Sync>;

/// Where SIGHUP's work stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    /// Running, and another SIGHUP came meanwhile: one more reload follows
    /// (however many came), so the files read last are the newest.
    RunningAgain,
}

/// The reloads of one event loop: at most one computing at a time.
pub struct Reloads {
    reloader: Option<Reloader>,
    /// Where the reload thread hands its result back (then wakes the loop).
    results: (Sender<ReloadResult>, Receiver<ReloadResult>),
    state: State,
}

impl Default for Reloads {
    fn default() -> Self {
        Reloads {
            reloader: None,
            results: mpsc::channel(),
            state: State::Idle,
        }
    }
}

impl Reloads {
    /// What SIGHUP runs; without one, SIGHUP does nothing.
    pub fn set_reloader(&mut self, reloader: Reloader) {
        self.reloader = Some(reloader);
    }

    /// Starts computing a reload on a thread, which wakes `waker` when it is
    /// done; while one runs, asks for one more afterwards.
    pub fn start(&mut self, waker: &Arc<Waker>) {
        let Some(reloader) = self.reloader.clone() else {
            return;
        };
        if self.state != State::Idle {
            self.state = State::RunningAgain;
            debug!("reload: one is running; another follows it");
            return;
        }
        let (results, waker) = (self.results.0.clone(), waker.clone());
        let started = std::thread::Builder::new()
            .name("nctls-reload".into())
            .spawn(move || {
                // The loop may have stopped meanwhile: nothing to hand back then.
                let _ = results.send(reloader());
                let _ = waker.wake();
            });
        match started {
            Ok(_) => self.state = State::Running,
            Err(e) => warn!(
                "reload failed, keeping the current configuration: cannot start its thread: {e}"
            ),
        }
    }

    /// A finished reload, if one is waiting, and whether another was asked
    /// for meanwhile (start it once this one is applied).
    pub fn finished(&mut self) -> Option<(ReloadResult, bool)> {
        let result = self.results.1.try_recv().ok()?;
        let again = self.state == State::RunningAgain;
        self.state = State::Idle;
        Some((result, again))
    }
}

/// Options a running daemon cannot change: listening sockets are bound
/// once, and the user and sandbox are set once at start.
const NEEDS_RESTART: &[&str] = &["listen", "run-as", "sandbox"];

/// One option whose effective value differs.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The option's name, as in a config file (`log-level`).
    pub option: String,
    /// The value before, as `--check` prints it (a list's values joined by
    /// `, `; `(none)` when unset).
    pub old: String,
    /// The value after, as `--check` prints it (a list's values joined by
    /// `, `; `(none)` when unset).
    pub new: String,
}

impl Change {
    /// Whether this change only takes effect after a restart.
    pub fn needs_restart(&self) -> bool {
        NEEDS_RESTART.contains(&self.option.as_str())
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.option, self.old, self.new)
    }
}

/// The options whose values differ between `old` and `new`, in the order
/// they are printed.
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    compare(&old.to_string(), &new.to_string())
}

fn compare(old: &str, new: &str) -> Vec<Change> {
    let (old, new) = (options(old), options(new));
    // Printing order: first appearance in either.
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in old.iter().chain(new.iter()) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let value = |options: &Options, name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map_or("(none)".to_string(), |(_, values)| values.join(", "))
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (before, after) = (value(&old, name), value(&new, name));
            (before != after).then(|| Change {
                option: name.to_string(),
                old: before,
                new: after,
            })
        })
        .collect()
}

/// Each option's values, in the order the options first appear.
type Options = Vec<(String, Vec<String>)>;

/// The options of a printed configuration: the first word of a line is the
/// option, the rest (after an optional `=`) its value.
fn options(printed: &str) -> Options {
    let mut options: Options = Vec::new();
    for line in printed.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find([' ', '\t', '=']).unwrap_or(line.len());
        let (name, rest) = line.split_at(end);
        let value = rest.trim_start();
        let value = value.strip_prefix('=').unwrap_or(value).trim().to_string();
        match options.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => options.push((name.to_string(), vec![value])),
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_by_option_in_printing_order() {
        let old = "# comment\nlisten = [::]:6513\nlog-level = info\nmap = * common-name\n";
        let new = "listen = [::]:6513\nlisten = 0.0.0.0:7000\nlog-level = debug\n\
                   map = * common-name\nlog-file = /var/log/nctls.log\n";
        let changes = compare(old, new);
        let text: Vec<String> = changes.iter().map(Change::to_string).collect();
        assert_eq!(
            text,
            [
                "listen [::]:6513 -> [::]:6513, 0.0.0.0:7000",
                "log-level info -> debug",
                "log-file (none) -> /var/log/nctls.log",
            ]
        );
        assert!(changes[0].needs_restart());
        assert!(!changes[1].needs_restart());
    }

    #[test]
    fn the_printed_configuration_compares_every_option() {
        let parse =
            |args: &[&str]| match crate::config::parse_args(args.iter().map(|s| s.to_string())) {
                Ok(crate::config::Command::Run(c)) => c,
                other => panic!("{other:?}"),
            };
        let old = parse(&[]);
        assert!(changes(&old, &old).is_empty());
        let new = parse(&["--log-level", "debug", "--max-record", "1024"]);
        let names: Vec<String> = changes(&old, &new).into_iter().map(|c| c.option).collect();
        assert_eq!(names, ["max-record", "log-level"]);
    }
}
