//! Settings: `name = value` pairs from the command line, a config file or
//! the C library's `nctls_config_set`, each with where it came from, in the
//! order they apply: the option table's defaults, then the config file, then
//! what was given directly (the command line wins).

use std::path::{Path, PathBuf};

use crate::config::options::{self, FlagAction, OptionSpec, CONFIG, FLAGS};
use crate::config::validate::{build, Scope};
use crate::config::{file, Config, ConfigError};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the daemon with this configuration.
    Run(Config),
    /// `--check`: load and validate everything, print the effective
    /// configuration and what was loaded, exit 0 or 1.
    Check(Config),
    /// `nctls fingerprint FILE...`: print RFC 7407 fingerprints.
    Fingerprint(Vec<PathBuf>),
    /// `--help`: print the option table.
    Help,
    /// `--version`: print the version.
    Version,
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug)]
pub(super) enum Origin {
    /// The option table's default: named like the command line's option.
    Default,
    CommandLine,
    File(String, usize),
    /// `nctls_config_set` in the C library.
    Library,
}

/// One option's value, as text, and where it was given.
#[derive(Clone)]
pub(super) struct Setting {
    pub option: &'static OptionSpec,
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    /// The option's name, as in a config file.
    pub fn name(&self) -> &'static str {
        self.option.name
    }

    /// How errors name this setting: `--name`, `FILE:LINE: name` or `name`.
    pub fn origin(&self) -> String {
        let name = self.name();
        match &self.origin {
            Origin::Default | Origin::CommandLine => format!("--{name}"),
            Origin::File(file, line) => format!("{file}:{line}: {name}"),
            Origin::Library => name.to_string(),
        }
    }

    /// A path as this setting names it: in a config file, a relative path is
    /// relative to the file's directory (the working directory is `/` under
    /// systemd, and unrelated to where the file lives).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match &self.origin {
            Origin::File(file, _) => Path::new(file).parent().unwrap_or(Path::new("")).join(path),
            Origin::Default | Origin::CommandLine | Origin::Library => path.to_path_buf(),
        }
    }

    /// An error about this setting: `ORIGIN: why`.
    pub fn error(&self, why: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {why}", self.origin()))
    }

    /// A setting the option table's default gives.
    fn default_of(option: &'static OptionSpec) -> Option<Setting> {
        Some(Setting {
            option,
            value: option.default.text(option.name)?,
            origin: Origin::Default,
        })
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
        match FLAGS.iter().find(|f| f.is(&arg)).map(|f| f.action) {
            Some(FlagAction::Help) => return Ok(Command::Help),
            Some(FlagAction::Version) => return Ok(Command::Version),
            Some(FlagAction::Check) => {
                check = true;
                continue;
            }
            Some(FlagAction::Set(name, value)) => {
                cli.push(Setting {
                    option: command_line_option(name)?,
                    value: value.to_string(),
                    origin: Origin::CommandLine,
                });
                continue;
            }
            None => {}
        }
        let Some(text) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?} (options start with --; see --help)"
            )));
        };
        let (option, value) = match text.split_once('=') {
            Some((name, value)) => (command_line_option(name)?, value.to_string()),
            None => {
                let option = command_line_option(text)?;
                let value = match (args.next_if(|v| !v.starts_with("--")), option.implied()) {
                    (Some(value), _) => value,
                    (None, Some(value)) => value.to_string(),
                    (None, None) => return Err(ConfigError(format!("--{text}: missing value"))),
                };
                (option, value)
            }
        };
        cli.push(Setting {
            option,
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

/// The option `--name` names.
fn command_line_option(name: &str) -> Result<&'static OptionSpec, ConfigError> {
    options::find(name).ok_or_else(|| ConfigError(format!("unknown option --{name} (see --help)")))
}

/// The option table's defaults, under the config file named by the last
/// `config` setting (if any), under `direct`; then validated as a whole.
pub(super) fn assemble(direct: Vec<Setting>) -> Result<Config, ConfigError> {
    let config_file = direct.iter().rev().find(|s| s.name() == CONFIG);
    let file = match config_file {
        Some(config) => read_file(&config.value)?,
        None => Vec::new(),
    };
    let config_file = config_file.map(|s| PathBuf::from(&s.value));
    let config = build(&layered([defaults(), file, direct]), Scope::Whole)?;
    Ok(Config {
        config_file,
        ..config
    })
}

/// The settings the option table's defaults give.
pub(super) fn defaults() -> Vec<Setting> {
    options::OPTIONS
        .iter()
        .filter_map(Setting::default_of)
        .collect()
}

/// Sources of settings, weakest first, as one list in the order to apply.
/// A single-valued option takes the last value; a repeatable one builds a
/// list, and a source that gives it at all replaces the weaker sources' list
/// (the command line's `--listen` replaces the file's and the default).
pub(super) fn layered<const N: usize>(sources: [Vec<Setting>; N]) -> Vec<Setting> {
    let mut settings: Vec<Setting> = Vec::new();
    for source in sources {
        for option in options::OPTIONS.iter().filter(|o| o.repeats) {
            if source.iter().any(|s| s.name() == option.name) {
                settings.retain(|s| s.name() != option.name);
            }
        }
        settings.extend(source);
    }
    settings
}

/// Checks one `name = value` setting on its own, as the C library's
/// `nctls_config_set` does before storing it: the name must be an option
/// and the value must parse. Errors read `name: why`.
pub fn check_setting(name: &str, value: &str) -> Result<(), ConfigError> {
    let setting = library_setting(name, value)?;
    if name == CONFIG {
        return read_file(value).map(drop);
    }
    build(&layered([defaults(), vec![setting]]), Scope::OneSetting).map(drop)
}

/// Builds a configuration from `name = value` pairs in order, with the same
/// names, defaults and validation as the command line (the C library's path).
pub fn from_pairs(pairs: &[(String, String)]) -> Result<Config, ConfigError> {
    let direct = pairs
        .iter()
        .map(|(name, value)| library_setting(name, value))
        .collect::<Result<_, _>>()?;
    assemble(direct)
}

fn library_setting(name: &str, value: &str) -> Result<Setting, ConfigError> {
    Ok(Setting {
        option: options::find(name)
            .ok_or_else(|| ConfigError(format!("unknown option {name:?}")))?,
        value: value.to_string(),
        origin: Origin::Library,
    })
}

fn read_file(path: &str) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config: cannot read {path}: {e}")))?;
    parse_file(path, &text)
}

/// The settings of a config file, in order (syntax: [`mod@file`]). A
/// single-valued option may appear once; repeatable ones build a list.
pub(super) fn parse_file(path: &str, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut settings: Vec<Setting> = Vec::new();
    let mut first_line: Vec<(&str, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let at = |why: String| ConfigError(format!("{path}:{number}: {why}"));
        let Some((name, raw)) = file::split(line).map_err(at)? else {
            continue;
        };
        if name == CONFIG {
            return Err(at("a config file cannot include another".into()));
        }
        let option = options::find(name).ok_or_else(|| at(format!("unknown option {name:?}")))?;
        let value = file::value(raw).map_err(|why| at(format!("{name}: {why}")))?;
        if !option.repeats {
            if let Some((_, first)) = first_line.iter().find(|(n, _)| *n == name) {
                return Err(at(format!("{name}: already set at line {first}")));
            }
            first_line.push((name, number));
        }
        settings.push(Setting {
            option,
            value,
            origin: Origin::File(path.to_string(), number),
        });
    }
    Ok(settings)
}
