//! The `nctls` daemon: parse options, set up logging and signals, run.

use std::process::ExitCode;
use std::sync::Arc;

use nctls::config::tls;
use nctls::config::{self, Command, Config};
use nctls::daemon::logging::Logging;
use nctls::daemon::reload::Reloader;
use nctls::daemon::sandbox::{self, Rules};
use nctls::daemon::server::Server;
use nctls::daemon::{privilege, sys};
use rustls::sign::SigningKey;

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
        Ok(Command::Check(config)) => {
            let run_as = config.run_as.as_ref().map(privilege::lookup).transpose();
            match run_as.and_then(|_| tls::load(&config)) {
                Ok(loaded) => check(&config, &loaded),
                Err(e) => fail(&e),
            }
        }
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
    // Looked up before the sandbox closes the passwd and group files.
    let account = config.run_as.as_ref().map(privilege::lookup).transpose()?;
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
    let mut rules = Rules::for_config(&config);
    let sandbox_on = config.sandbox;
    let token_key = tls.token_key.clone();
    let mut server = Server::bind(config, tls).map_err(|e| e.to_string())?;
    server
        .handle_signals(signals)
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    server.set_logging(logging);
    // The ports bound (`--listen ...:0` asks the kernel for one).
    rules.bind_ports = server.local_addrs().iter().map(|a| a.port()).collect();
    let lockdown = lock_down(account, token_key, rules, sandbox_on)?;
    server.set_reloader(reloader(args, lockdown));
    server.run().map_err(|e| format!("event loop failed: {e}"))
}

/// What start-up left in force, which every reload must stay within.
struct Lockdown {
    /// The sandbox's rules as far as they were enforced.
    rules: Rules,
    /// The user `--run-as` made nctls, if it did.
    user: Option<String>,
}

/// Once listening with the key loaded: `--run-as`, then the sandbox
/// (Landlock confines the threads started after it: the reload thread
/// comes later). Each is logged.
fn lock_down(
    account: Option<privilege::Account>,
    token_key: Option<Arc<dyn SigningKey>>,
    rules: Rules,
    sandbox_on: bool,
) -> Result<Lockdown, String> {
    let user = privilege::apply(account)?;
    if let (privilege::Outcome::Dropped(account), Some(key)) = (&user, &token_key) {
        tls::still_signs(key.as_ref()).map_err(|e| {
            format!(
                "--run-as {}: the PKCS#11 token no longer signs as this user ({e}): make the \
                 token's files usable by it (SoftHSM: the token directory's group, e.g. \
                 --run-as USER:softhsm)",
                account.name
            )
        })?;
    }
    match &user {
        privilege::Outcome::StillRoot => log::warn!("{user}"),
        privilege::Outcome::Unprivileged => {}
        _ => log::info!("{user}"),
    }
    // Best effort: a sandbox that cannot be set up is a warning, not a stop.
    let confined = match sandbox_on {
        true => sandbox::enforce(&rules).unwrap_or_else(sandbox::Outcome::None),
        false => sandbox::Outcome::Off,
    };
    match &confined {
        sandbox::Outcome::Enforced { .. } => log::info!("{confined} ({rules})"),
        _ => log::warn!("{confined}"),
    }
    Ok(Lockdown {
        rules: rules.as_enforced(&confined),
        user: match user {
            privilege::Outcome::Dropped(account) => Some(account.name),
            _ => None,
        },
    })
}

/// SIGHUP's work: the same arguments again, so the config file and every
/// file it names are re-read and the backend's name resolved again (on a
/// thread), within what start-up left in force.
fn reloader(args: Vec<String>, lockdown: Lockdown) -> Reloader {
    Arc::new(move || {
        #[cfg(debug_assertions)]
        if let Ok(spec) = std::env::var("NCTLS_TEST_SANDBOX_PROBE") {
            sandbox::probe(&spec)
                .iter()
                .for_each(|line| log::info!("{line}"));
        }
        let config = match config::parse_args(args.clone()) {
            Ok(Command::Run(config)) => config,
            Ok(_) => return Err("the arguments no longer describe a server".into()),
            Err(e) => return Err(e.to_string()),
        };
        if let Some(why) = lockdown.rules.refuses(&config) {
            return Err(why);
        }
        let tls = tls::load(&config).map_err(|e| match &lockdown.user {
            // A file only root can read is the likely cause.
            Some(user) => format!("{e} (nctls runs as {user} since start)"),
            None => e,
        })?;
        Ok((config, tls))
    })
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
