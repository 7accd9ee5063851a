//! The `nctls` daemon: parse options, set up logging and signals, run.

use std::process::ExitCode;

use nctls::config::tls;
use nctls::config::{self, Command, Config};
use nctls::daemon::logging::Logging;
use nctls::daemon::server::Server;
use nctls::daemon::sys;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match config::parse_args(args.clone()) {
        Ok(Command::Help) => {
            print!("{}", config::usage());
            ExitCode::SUCCESS
        }
        Ok(Command::Fingerprint(files)) => match fingerprints(&files) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Ok(Command::Version) => {
            println!("nctls {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Check(config)) => match tls::load(&config) {
            Ok(loaded) => check(&config, &loaded),
            Err(e) => fail(&e),
        },
        Ok(Command::Run(config)) => match run(config, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e.to_string()),
    }
}

fn run(config: Config, args: Vec<String>) -> Result<(), String> {
    let logging = Logging::init(config.log_level, &config.log_output)?;
    let result = serve(config, args, logging.clone());
    if let Err(e) = &result {
        // The operator reads the log file or syslog, not only stderr.
        if !logging.is_stderr() {
            log::error!("{e}");
        }
    }
    result
}

fn serve(config: Config, args: Vec<String>, logging: Logging) -> Result<(), String> {
    let tls = tls::load(&config)?;
    match sys::raise_fd_limit() {
        Ok(n) => log::debug!("descriptor limit {n}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }
    // SIGPIPE stays ignored (Rust's runtime does that before main); these
    // are the signals an operator sends, none of which may end a session.
    let signals = sys::Signals::new(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ])
    .map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let mut server = Server::bind(config, tls).map_err(|e| e.to_string())?;
    server
        .handle_signals(signals)
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    server.set_logging(logging);
    // SIGHUP: the same arguments again, so the config file and every file it
    // names are re-read and the backend's name resolved again (on a thread).
    server.set_reloader(std::sync::Arc::new(move || {
        match config::parse_args(args.clone()) {
            Ok(Command::Run(config)) => tls::load(&config).map(|tls| (config, tls)),
            Ok(_) => Err("the arguments no longer describe a server".into()),
            Err(e) => Err(e.to_string()),
        }
    }));
    server.run().map_err(|e| format!("event loop failed: {e}"))
}

/// `--check` after a successful load: the effective configuration, then as
/// `# ` comments what was loaded and any warnings. An expired or not yet
/// valid server certificate or an expired CRL fails the check (exit 1).
fn check(config: &Config, loaded: &tls::Loaded) -> ExitCode {
    use nctls::config::inventory::{unix_now, Severity};
    // The configuration's text ends with a newline; every other line is a
    // `# ` comment, so the output can be saved as a config file.
    print!("{config}");
    let inventory = &loaded.inventory;
    for line in inventory.summary() {
        println!("# loaded: {line}");
    }
    for warning in inventory.load_warnings() {
        println!("# warning: {warning}");
    }
    let mut failed = false;
    for finding in inventory.expiry(unix_now(), config.expiry_warning_days) {
        match finding.severity {
            Severity::Warning => println!("# warning: {}", finding.text),
            Severity::Error => {
                eprintln!("nctls: {}", finding.text);
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!("# configuration OK");
    ExitCode::SUCCESS
}

fn fingerprints(files: &[std::path::PathBuf]) -> Result<String, String> {
    files
        .iter()
        .map(|file| nctls::config::pem::fingerprint_file(file))
        .collect()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("nctls: {message}");
    ExitCode::FAILURE
}
