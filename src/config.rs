//! Options: command line, `--config FILE`, defaults and validation.
//!
//! Every option is accepted as `--name VALUE` / `--name=VALUE` on the command
//! line and as a `name = value` line in the config file; the command line
//! wins. Defaults are those of ConfD's GnuTLS subsys demo, so nctls is a
//! drop-in for it. Errors name the option (and file and line) and say what
//! was expected.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;

use crate::backend::BackendAddr;
use crate::header::{self, HeaderFields, HeaderKind};
use crate::identity::Identity;
use crate::session::{Limits, Tls12Close};

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub backend: BackendAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub identity: Identity,
    pub header: HeaderKind,
    pub fields: HeaderFields,
    pub limits: Arc<Limits>,
    pub max_sessions: usize,
    /// Largest plaintext per TLS record sent to clients.
    pub max_record: usize,
    pub log_level: LevelFilter,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Config),
    Check(Config),
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
    OptionSpec { name: "config", arg: "FILE", help: "read `name = value` lines (same names as these options); the command line wins" },
    OptionSpec { name: "listen", arg: "ADDR:PORT", help: "TLS address to listen on, repeatable, IPv6 as [::]:6513 [0.0.0.0:6513]" },
    OptionSpec { name: "backend", arg: "HOST:PORT|unix:PATH", help: "the NETCONF server's plain TCP port (ConfD's netconf tcp transport) or unix socket [127.0.0.1:2023]" },
    OptionSpec { name: "cert", arg: "FILE", help: "server certificate chain, PEM [x509-server.pem]" },
    OptionSpec { name: "key", arg: "FILE", help: "server private key, PEM (PKCS#8, PKCS#1 or SEC1) [x509-server-key.pem]" },
    OptionSpec { name: "ca", arg: "FILE", help: "CA certificate(s) that issue client certificates, PEM [x509-ca.pem]" },
    OptionSpec { name: "user", arg: "NAME", help: "every verified client is this user (the GnuTLS demo's behaviour); default: the certificate's CommonName" },
    OptionSpec { name: "header", arg: "confd|ncx[:PORT]|none", help: "session header written to the backend first: ConfD's, yuma123 netconfd's <ncx-connect> (PORT from its --port list, default 830), or none [confd]" },
    OptionSpec { name: "handshake-timeout", arg: "SECS", help: "drop clients that have not finished the TLS handshake [10]" },
    OptionSpec { name: "connect-timeout", arg: "SECS", help: "give up connecting to the backend [10]" },
    OptionSpec { name: "idle-timeout", arg: "SECS", help: "end sessions with no traffic either way, 0 = never [0]" },
    OptionSpec { name: "drain-timeout", arg: "SECS", help: "how long a half-closed or closing session may stay silent [10]" },
    OptionSpec { name: "tls12-close", arg: "strict|half-close", help: "TLS 1.2 client close_notify: answer at once (RFC 5246) or relay the backend's rest first [strict]" },
    OptionSpec { name: "max-sessions", arg: "N", help: "sessions at once; more wait in the listen backlog [1000]" },
    OptionSpec { name: "max-record", arg: "BYTES", help: "largest plaintext per TLS record to clients (ncclient needs <= 4096) [4096]" },
    OptionSpec { name: "log-level", arg: "LEVEL", help: "off, error, warn, info, debug or trace; RUST_LOG overrides [info]" },
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
            "load and validate everything, print what would run, exit 0 or 1",
        ),
        ("--version", "print the version"),
        ("--help", "print this help"),
    ] {
        s.push_str(&format!("  {flag:<32} {help}\n"));
    }
    s.push_str(
        "\nSignals: SIGTERM/SIGINT stop accepting and end every session with close_notify.\n\
         Logs go to stderr, one line per session end.\n",
    );
    s
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    CommandLine,
    File(String, usize),
}

struct Setting {
    name: String,
    value: String,
    origin: Origin,
}

impl Setting {
    fn error(&self, why: impl fmt::Display) -> ConfigError {
        match &self.origin {
            Origin::CommandLine => ConfigError(format!("--{}: {why}", self.name)),
            Origin::File(file, line) => ConfigError(format!("{file}:{line}: {}: {why}", self.name)),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let mut cli = Vec::new();
    let mut check = false;
    let mut args = args.into_iter();
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
                let value = args
                    .next()
                    .filter(|v| !v.starts_with("--"))
                    .ok_or_else(|| ConfigError(format!("--{flag}: missing value")))?;
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
    let mut settings = Vec::new();
    if let Some(file) = cli.iter().rev().find(|s| s.name == "config") {
        settings = read_file(&file.value)?;
    }
    // Repeatable `listen`: the command line's list replaces the file's.
    if cli.iter().any(|s| s.name == "listen") {
        settings.retain(|s| s.name != "listen");
    }
    settings.extend(cli);
    let config = build(&settings)?;
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

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

fn parse_file(path: &str, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut settings = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| ConfigError(format!("{path}:{}: {why}", i + 1));
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected `name = value`, found {line:?}")))?;
        let name = name.trim();
        if name == "config" {
            return Err(at("a config file cannot include another".into()));
        }
        known(name).ok_or_else(|| at(format!("unknown option {name:?}")))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        settings.push(Setting {
            name: name.to_string(),
            value: value.to_string(),
            origin: Origin::File(path.to_string(), i + 1),
        });
    }
    Ok(settings)
}

fn build(settings: &[Setting]) -> Result<Config, ConfigError> {
    let mut listen = Vec::new();
    let mut backend = BackendAddr::Tcp("127.0.0.1:2023".parse().expect("valid default"));
    let mut cert = PathBuf::from("x509-server.pem");
    let mut key = PathBuf::from("x509-server-key.pem");
    let mut ca = PathBuf::from("x509-ca.pem");
    let mut identity = Identity::CommonName;
    let mut header = HeaderKind::Confd;
    let mut limits = Limits {
        handshake_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        idle_timeout: None,
        drain_timeout: Duration::from_secs(10),
        tls12_close: Tls12Close::Strict,
    };
    let mut max_sessions = 1000;
    let mut max_record = 4096;
    let mut log_level = LevelFilter::Info;

    for s in settings {
        let v = s.value.as_str();
        match s.name.as_str() {
            "config" => {}
            "listen" => listen.push(
                v.parse()
                    .map_err(|_| s.error(format!("{v:?} is not IP:PORT (IPv6 as [::]:6513)")))?,
            ),
            "backend" => backend = BackendAddr::parse(v).map_err(|why| s.error(why))?,
            "cert" => cert = path(s)?,
            "key" => key = path(s)?,
            "ca" => ca = path(s)?,
            "user" => {
                header::check_user(v)
                    .map_err(|why| s.error(format!("{v:?} cannot be a user name: {why}")))?;
                identity = Identity::Fixed(v.to_string());
            }
            "header" => {
                header = HeaderKind::parse(v).ok_or_else(|| {
                    s.error(format!("{v:?}: expected confd, ncx, ncx:PORT or none"))
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
            "max-record" => max_record = number(s, 512, 16384)?,
            "log-level" => {
                log_level = v.parse().map_err(|_| {
                    s.error(format!(
                        "{v:?}: expected off, error, warn, info, debug or trace"
                    ))
                })?
            }
            other => return Err(unknown(other)),
        }
    }
    if listen.is_empty() {
        listen.push("0.0.0.0:6513".parse().expect("valid default"));
    }
    Ok(Config {
        listen,
        backend,
        cert,
        key,
        ca,
        identity,
        header,
        fields: HeaderFields::default(),
        limits: Arc::new(limits),
        max_sessions,
        max_record,
        log_level,
    })
}

fn path(s: &Setting) -> Result<PathBuf, ConfigError> {
    if s.value.is_empty() {
        return Err(s.error("empty file name"));
    }
    Ok(PathBuf::from(&s.value))
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
    /// What `--check` prints: the effective configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        writeln!(f, "listen        {}", listen.join(" "))?;
        writeln!(f, "backend       {}", self.backend)?;
        writeln!(f, "cert          {}", self.cert.display())?;
        writeln!(f, "key           {}", self.key.display())?;
        writeln!(f, "ca            {}", self.ca.display())?;
        match &self.identity {
            Identity::Fixed(u) => writeln!(f, "user          {u} (every verified client)")?,
            Identity::CommonName => writeln!(f, "user          certificate CommonName")?,
        }
        writeln!(f, "header        {}", self.header)?;
        let l = &self.limits;
        writeln!(
            f,
            "timeouts      handshake {:?}, connect {:?}, idle {}, drain {:?}",
            l.handshake_timeout,
            l.connect_timeout,
            l.idle_timeout
                .map_or("off".to_string(), |t| format!("{t:?}")),
            l.drain_timeout
        )?;
        writeln!(f, "tls12-close   {:?}", l.tls12_close)?;
        writeln!(f, "max-sessions  {}", self.max_sessions)?;
        write!(f, "max-record    {}", self.max_record)
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
        assert_eq!(
            c.backend,
            BackendAddr::Tcp("127.0.0.1:2023".parse().unwrap())
        );
        assert_eq!(c.cert, PathBuf::from("x509-server.pem"));
        assert_eq!(c.key, PathBuf::from("x509-server-key.pem"));
        assert_eq!(c.ca, PathBuf::from("x509-ca.pem"));
        assert_eq!(c.header, HeaderKind::Confd);
        assert_eq!(c.identity, Identity::CommonName);
        assert_eq!(c.limits.tls12_close, Tls12Close::Strict);
        assert_eq!(c.max_record, 4096);
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
        assert_eq!(c.identity, Identity::Fixed("admin".into()));
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
                "--header: \"xml\": expected confd, ncx, ncx:PORT or none",
            ),
            (
                &["--max-sessions", "0"],
                "--max-sessions: \"0\": expected a whole number",
            ),
            (&["--user", "a;b"], "--user: \"a;b\" cannot be a user name"),
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
        let c = build(&settings).unwrap();
        assert_eq!(c.identity, Identity::Fixed("oper".into()));
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
        let err = build(&settings).unwrap_err();
        assert!(err.0.starts_with("a.conf:3: max-record:"), "{}", err.0);
    }

    #[test]
    fn help_lists_every_option() {
        let help = usage();
        for o in OPTIONS {
            assert!(help.contains(&format!("--{} ", o.name)), "{}", o.name);
        }
    }
}
