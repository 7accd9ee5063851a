//! The `nctls` daemon: parse options, set up logging and signals, run.

use std::io::Write;
use std::process::ExitCode;

use nctls::config::{self, Command, Config};
use nctls::server::Server;
use nctls::{sys, tls};

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
            Ok(_) => {
                println!("{config}# configuration OK");
                ExitCode::SUCCESS
            }
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
    init_logging(config.log_level);
    let tls = tls::load(&config)?;
    match sys::raise_fd_limit() {
        Ok(n) => log::debug!("descriptor limit {n}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }
    let signals = sys::Signals::new(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let mut server = Server::bind(config, tls).map_err(|e| e.to_string())?;
    server
        .handle_signals(signals)
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    // SIGHUP: the same arguments again, so the config file and every file it names are re-read.
    server.set_reloader(Box::new(move || match config::parse_args(args.clone()) {
        Ok(Command::Run(config)) => tls::load(&config).map(|tls| (config, tls)),
        Ok(_) => Err("the arguments no longer describe a server".into()),
        Err(e) => Err(e.to_string()),
    }));
    server.run().map_err(|e| format!("event loop failed: {e}"))
}

fn fingerprints(files: &[std::path::PathBuf]) -> Result<String, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut out = String::new();
    for file in files {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e:?}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate found", file.display()));
        }
        for cert in certs {
            out.push_str(&format!(
                "{}: {}",
                file.display(),
                nctls::identity::describe_fingerprints(&cert)
            ));
        }
    }
    Ok(out)
}

fn init_logging(level: log::LevelFilter) {
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
        .init();
}

fn fail(message: &str) -> ExitCode {
    eprintln!("nctls: {message}");
    ExitCode::FAILURE
}
