//! The command line and configuration errors, against the real binary:
//! `--help`, `--version`, `--check`, the GnuTLS demo's defaults, the config
//! file, and one actionable line on stderr (exit status 1) for every kind of
//! bad configuration.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::oneshot::*;
use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// Whether `stdout` has the setting line `name = value`.
fn has_line(stdout: &str, name: &str, value: &str) -> bool {
    stdout.lines().any(|l| l == format!("{name} = {value}"))
}

#[test]
fn help_lists_every_option_and_exits_0() {
    let dir = TempDir::new();
    let out = nctls(&["--help"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    assert!(out.stderr.is_empty(), "{out:?}");
    for option in [
        "--config",
        "--listen",
        "--backend",
        "--cert",
        "--key",
        "--ca",
        "--user",
        "--header",
        "--handshake-timeout",
        "--connect-timeout",
        "--idle-timeout",
        "--drain-timeout",
        "--tls12-close",
        "--max-sessions",
        "--max-record",
        "--log-level",
        "--check",
        "--version",
        "--help",
    ] {
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(option)),
            "--help does not list {option}:\n{help}"
        );
    }
    // Defaults are documented where the operator looks for them.
    for default in ["0.0.0.0:6513", "127.0.0.1:2023", "x509-server.pem", "4096"] {
        assert!(help.contains(default), "no default {default}:\n{help}");
    }
}

/// Every option's help starts in one column: after `--NAME ARG`, or on the
/// next line when that is too long; the usage lines align too.
#[test]
fn help_texts_start_in_one_column() {
    const COLUMN: usize = 35;
    let dir = TempDir::new();
    let help = text(&nctls(&["--help"], dir.path()).stdout);
    let lines: Vec<&str> = help.lines().collect();
    let mut options = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("  --") {
            continue;
        }
        options += 1;
        let text = match line.get(COLUMN - 1..COLUMN) {
            Some(" ") => &line[COLUMN..],
            _ => lines[i + 1]
                .strip_prefix(&" ".repeat(COLUMN))
                .unwrap_or_else(|| panic!("no help for {line:?}:\n{help}")),
        };
        assert!(
            !text.is_empty() && !text.starts_with(' '),
            "{line:?}:\n{help}"
        );
    }
    assert!(options > 30, "{help}");
    assert!(
        help.contains("\nUsage: nctls [OPTIONS]\n       nctls fingerprint FILE.pem..."),
        "{help}"
    );
}

#[test]
fn version_prints_name_and_version() {
    let dir = TempDir::new();
    let out = nctls(&["--version"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "nctls 0.1.0\n");
    assert_eq!(env!("CARGO_PKG_VERSION"), "0.1.0");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn bad_command_line_values_name_the_option() {
    let pki = Pki::new();
    let base = pki.server_args();
    let cwd = pki.dir.path();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--listen", "localhost"],
            &["nctls: --listen: \"localhost\" is not IP:PORT (IPv6 as [::]:6513, a zone as [fe80::1%eth0]:6513)"],
        ),
        (
            &["--listen", "127.0.0.1:99999"],
            &["--listen:", "\"127.0.0.1:99999\"", "is not IP:PORT"],
        ),
        (
            &["--colour", "red"],
            &["nctls: unknown option --colour", "--help"],
        ),
        (
            &["--idle-timeout", "soon"],
            &["nctls: --idle-timeout: \"soon\" is not a number of seconds"],
        ),
        (
            &["--handshake-timeout", "0"],
            &["nctls: --handshake-timeout: must be more than 0"],
        ),
        // Less than a nanosecond is 0 too.
        (
            &["--connect-timeout", "1e-10"],
            &["nctls: --connect-timeout: must be more than 0"],
        ),
        (
            &["--drain-timeout=-3"],
            &["nctls: --drain-timeout: \"-3\" is not a number of seconds"],
        ),
        (
            &["--header", "xml"],
            &["nctls: --header: \"xml\"", "confd", "none"],
        ),
        (
            &["--tls12-close", "never"],
            &["nctls: --tls12-close: \"never\"", "strict", "half-close"],
        ),
        (
            &["--max-record", "100"],
            &["nctls: --max-record: \"100\"", "512", "16384"],
        ),
        (
            &["--max-sessions", "lots"],
            &["nctls: --max-sessions: \"lots\""],
        ),
        (
            &["--log-level", "loud"],
            &["nctls: --log-level: \"loud\"", "debug"],
        ),
        (
            &["--user", "a;b"],
            &["nctls: --user: \"a;b\" cannot be a user name"],
        ),
        (
            &["--backend", "127.0.0.1"],
            &["nctls: --backend: \"127.0.0.1\" is not HOST:PORT"],
        ),
        (&["--backend"], &["nctls: --backend: missing value"]),
        (&["stray"], &["nctls: unexpected argument \"stray\""]),
    ];
    for (extra, want) in cases {
        // The listen address matters only if the error were missed.
        let mut args = args_with(&base, &["--listen", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        assert_config_error_both(&args, cwd, want);
    }
}

#[test]
fn bad_files_name_the_option_the_file_and_the_reason() {
    let pki = Pki::new();
    let cwd = pki.dir.path();
    let dir = pki.dir.path();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, random_bytes(3000, 7)).unwrap();
    let bad_base64 = dir.join("bad-base64.pem");
    std::fs::write(
        &bad_base64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // A key that belongs to another certificate.
    let (_, other_key) = pki.ca.client("other").write(dir, "other");
    let other_key = other_key.display().to_string();
    let garbage = garbage.display().to_string();
    let bad_base64 = bad_base64.display().to_string();
    let dir_name = dir.display().to_string();
    let cert = pki.file("x509-server.pem");
    let key = pki.file("x509-server-key.pem");
    let missing = dir.join("no-such-file.pem").display().to_string();

    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--cert", &missing],
            vec![format!(
                "nctls: --cert {missing}: cannot read: No such file or directory"
            )],
        ),
        (
            vec!["--cert", &dir_name],
            vec![format!("nctls: --cert {dir_name}: cannot read:")],
        ),
        (
            vec!["--cert", &garbage],
            vec![format!("nctls: --cert {garbage}: no CERTIFICATE block")],
        ),
        (
            vec!["--cert", &bad_base64],
            vec![format!(
                "nctls: --cert {bad_base64}: line 1: the CERTIFICATE block is not valid PEM"
            )],
        ),
        (
            vec!["--key", &missing],
            vec![format!("nctls: --key {missing}: cannot read:")],
        ),
        (
            vec!["--key", &cert],
            vec![format!(
                "nctls: --key {cert}: no PRIVATE KEY block: found 1 CERTIFICATE block"
            )],
        ),
        (
            vec!["--key", &other_key],
            vec![format!(
                "nctls: --key {other_key} / --cert {cert}: the private key does not match the certificate"
            )],
        ),
        (
            vec!["--ca", &key],
            vec![format!(
                "nctls: --ca {key}: no CERTIFICATE block: found 1 PRIVATE KEY block"
            )],
        ),
        (
            vec!["--ca", &missing],
            vec![format!("nctls: --ca {missing}: cannot read:")],
        ),
    ];
    for (extra, want) in &cases {
        let base = pki.server_args();
        let mut args = args_with(&base, &["--listen", "127.0.0.1:0"]);
        // Later options win: these replace the good files.
        args.extend_from_slice(extra);
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_config_error_both(&args, cwd, &want);
    }
}

#[test]
fn config_file_errors_name_the_file_and_line() {
    let pki = Pki::new();
    let cwd = pki.dir.path();
    let missing = pki.file("missing.conf");
    assert_config_error_both(
        &["--config", &missing],
        cwd,
        &[&format!(
            "nctls: --config: cannot read {missing}: No such file"
        )],
    );

    let unknown = pki.file("unknown.conf");
    std::fs::write(&unknown, "# nctls\ncolour = red\n").unwrap();
    assert_config_error_both(
        &["--config", &unknown],
        cwd,
        &[&format!("nctls: {unknown}:2: unknown option \"colour\"")],
    );

    let bad_value = pki.file("bad-value.conf");
    std::fs::write(
        &bad_value,
        "listen = 127.0.0.1:0\n\nidle-timeout = soon\nuser = admin\n",
    )
    .unwrap();
    assert_config_error_both(
        &["--config", &bad_value],
        cwd,
        &[&format!(
            "nctls: {bad_value}:3: idle-timeout: \"soon\" is not a number of seconds"
        )],
    );

    let no_equals = pki.file("no-equals.conf");
    std::fs::write(&no_equals, "listen 127.0.0.1:0\n").unwrap();
    assert_config_error_both(
        &["--config", &no_equals],
        cwd,
        &[&format!("nctls: {no_equals}:1: expected `name = value`")],
    );

    // A file named in the config file is checked like one on the command
    // line, and the error names the line that named it.
    let bad_cert = pki.file("bad-cert.conf");
    std::fs::write(&bad_cert, "\ncert = /nonexistent/server.pem\n").unwrap();
    assert_config_error_both(
        &["--config", &bad_cert, "--listen", "127.0.0.1:0"],
        cwd,
        &[&format!(
            "nctls: {bad_cert}:2: cert /nonexistent/server.pem: cannot read:"
        )],
    );
}

#[test]
fn address_in_use_names_the_address() {
    let pki = Pki::new();
    let backend = Backend::new();
    let first = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let addr = first.addr.to_string();
    let base = pki.server_args();
    let backend_arg = backend.arg();
    let args = args_with(&base, &["--listen", &addr, "--backend", &backend_arg]);
    assert_config_error(
        &args,
        pki.dir.path(),
        &[&format!("cannot listen on {addr}"), "in use"],
    );
    // The first daemon is unharmed.
    let mut client = connect(first.addr, pki.client("admin", Version::Tls13)).unwrap();
    client.write_all(b"<hello/>").unwrap();
    let (_, header) = accept_within(&backend, DEADLINE);
    assert!(header.starts_with("[admin;"), "{header}");
}

#[test]
fn check_prints_the_configuration_and_ok() {
    let pki = Pki::new();
    // Held open: --check must not try to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let base = pki.server_args();
    let args = args_with(
        &base,
        &[
            "--listen",
            &taken,
            "--listen",
            "[::1]:7013",
            "--backend",
            "127.0.0.1:7023",
            "--check",
        ],
    );
    let out = nctls(&args, pki.dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        stdout.lines().last(),
        Some("# configuration OK"),
        "{stdout}"
    );
    assert!(has_line(&stdout, "listen", &taken), "{stdout}");
    assert!(has_line(&stdout, "listen", "[::1]:7013"), "{stdout}");
    assert!(has_line(&stdout, "backend", "127.0.0.1:7023"), "{stdout}");
    let cert = pki.file("x509-server.pem");
    assert!(has_line(&stdout, "cert", &cert), "{stdout}");
}

/// `--check` with nothing given prints every option `--help` lists, in
/// `--help`'s order (README: "every option in `--help` order, defaults
/// included"), each at the default `--help` states for it.
#[test]
fn check_prints_the_help_options_in_order_at_their_defaults() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let help = text(&nctls(&["--help"], dir).stdout);
    // `  --NAME ARG  help [DEFAULT]`; a long option's help may start on the
    // next line, so a default belongs to the last option named.
    let mut options: Vec<(String, String, Option<String>)> = Vec::new();
    for line in help.lines() {
        if let Some(rest) = line.strip_prefix("  --") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap_or_default().to_string();
            let arg = words.next().unwrap_or_default().to_string();
            options.push((name, arg, None));
        }
        let default = line
            .strip_suffix(']')
            .and_then(|l| l.rfind(" [").map(|i| l[i + 2..].to_string()));
        if let (Some(default), Some(last)) = (default, options.last_mut()) {
            last.2 = Some(default);
        }
    }
    let out = nctls(&["--check"], dir);
    assert!(out.status.success(), "{out:?}");
    let check = text(&out.stdout);
    // The option each line of the effective configuration is about.
    let mut printed: Vec<&str> = Vec::new();
    for line in check.lines() {
        let name = match line.strip_prefix("# ") {
            Some(comment) => comment.strip_suffix(": none"),
            None => line.split(" = ").next(),
        };
        if let Some(name) = name.filter(|n| printed.last() != Some(n)) {
            printed.push(name);
        }
    }
    let flags = ["config", "check", "no-sandbox", "version", "help"];
    let expected: Vec<&str> = options
        .iter()
        .map(|(name, _, _)| name.as_str())
        .filter(|name| !flags.contains(name))
        .collect();
    assert_eq!(printed, expected, "--check:\n{check}\n--help:\n{help}");
    for (name, arg, default) in &options {
        // `--syslog [FACILITY]`: the bracket is the value it takes alone.
        let Some(default) = default.as_ref().filter(|_| !arg.starts_with('[')) else {
            continue;
        };
        let value = match default.as_str() {
            "empty" => "\"\"".to_string(),
            path if path.ends_with(".pem") => dir.join(path).display().to_string(),
            other => other.to_string(),
        };
        assert!(
            has_line(&check, name, &value),
            "--help says --{name} defaults to {default}, --check does not print {name} = {value}:\n{check}"
        );
    }
}

#[test]
fn check_fails_on_a_key_of_another_certificate() {
    let pki = Pki::new();
    let (_, other_key) = pki.ca.client("other").write(pki.dir.path(), "other");
    let other_key = other_key.display().to_string();
    let base = pki.server_args();
    let args = args_with(&base, &["--key", &other_key, "--check"]);
    let line = assert_config_error(
        &args,
        pki.dir.path(),
        &["does not match the certificate", &other_key],
    );
    assert!(!line.contains("configuration OK"));
}

/// With no file options, nctls uses the GnuTLS demo's file names in the
/// working directory and its addresses.
#[test]
fn defaults_are_the_gnutls_demo_files_and_ports() {
    let pki = Pki::new();
    let mut names: Vec<String> = std::fs::read_dir(pki.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["x509-ca.pem", "x509-server-key.pem", "x509-server.pem"]
    );
    let out = nctls(&["--check"], pki.dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(has_line(&stdout, "listen", "0.0.0.0:6513"), "{stdout}");
    assert!(has_line(&stdout, "backend", "127.0.0.1:2023"), "{stdout}");
    // Found in the working directory, shown from the root.
    for (name, file) in [
        ("cert", "x509-server.pem"),
        ("key", "x509-server-key.pem"),
        ("ca", "x509-ca.pem"),
    ] {
        assert!(has_line(&stdout, name, &pki.file(file)), "{stdout}");
    }
    assert!(has_line(&stdout, "header", "confd"), "{stdout}");
    assert!(has_line(&stdout, "max-record", "4096"), "{stdout}");
    assert!(has_line(&stdout, "log-level", "info"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("# configuration OK"),
        "{stdout}"
    );

    // Without the files, the default names are what the error shows.
    let empty = TempDir::new();
    assert_config_error(
        &["--check"],
        empty.path(),
        &["nctls: --cert x509-server.pem: cannot read: No such file or directory"],
    );
}

/// A daemon started with nothing but `--config FILE` (listen, backend and
/// user from the file, certificate files from the default names in its
/// working directory) serves a session with the file's user.
#[test]
fn config_file_alone_runs_a_session() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        format!(
            "# nctls test configuration\n\
             listen = 127.0.0.1:0\n\
             backend = {}\n\
             \n\
             user = \"oper\"\n\
             max-record = 4096\n",
            backend.arg()
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(&["--config".to_string(), conf], pki.dir.path());
    let mut client = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    client.write_all(b"<hello/>").unwrap();
    let (mut b, header) = accept_within(&backend, DEADLINE);
    assert!(header.starts_with("[oper;127.0.0.1/"), "{header}");
    assert!(
        header.ends_with(";ssh;9000;100;;/var/confd/homes/oper;;]\n"),
        "{header}"
    );
    let mut hello = [0u8; 8];
    b.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"<hello/>");
    b.write_all(b"<ok/>").unwrap();
    drop(b);
    let (data, ending) = read_to_end(&mut client);
    assert_eq!(data, b"<ok/>");
    assert_eq!(ending, Ending::CloseNotify);
    // Answer the close (the relay lingers for it, up to --drain-timeout).
    send_close_notify(&mut client);
    drop(client);
    let end = daemon
        .wait_log("session end:", DEADLINE)
        .expect("session end logged");
    assert!(end.contains("user=oper "), "{end}");
}

/// The command line beats the config file, option by option; a command-line
/// `--listen` replaces the file's list.
#[test]
fn command_line_overrides_the_config_file() {
    let pki = Pki::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        "listen = 127.0.0.1:7100\nlisten = 127.0.0.1:7101\nbackend = 127.0.0.1:7200\n\
         user = oper\nmax-record = 8192\n",
    )
    .unwrap();
    let file_only = nctls(&["--config", &conf, "--check"], pki.dir.path());
    let stdout = text(&file_only.stdout);
    assert!(file_only.status.success(), "{file_only:?}");
    assert!(has_line(&stdout, "listen", "127.0.0.1:7100"), "{stdout}");
    assert!(has_line(&stdout, "listen", "127.0.0.1:7101"), "{stdout}");
    assert!(has_line(&stdout, "backend", "127.0.0.1:7200"), "{stdout}");
    assert!(has_line(&stdout, "user", "oper"), "{stdout}");
    assert!(has_line(&stdout, "max-record", "8192"), "{stdout}");

    // Before and after --config: the command line wins either way.
    for args in [
        vec![
            "--user",
            "admin",
            "--listen",
            "127.0.0.1:7300",
            "--config",
            &conf,
            "--check",
        ],
        vec![
            "--config",
            &conf,
            "--user",
            "admin",
            "--listen",
            "127.0.0.1:7300",
            "--check",
        ],
    ] {
        let out = nctls(&args, pki.dir.path());
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(has_line(&stdout, "user", "admin"), "{args:?}: {stdout}");
        let listen: Vec<&str> = stdout.lines().filter(|l| l.starts_with("listen")).collect();
        assert_eq!(listen, ["listen = 127.0.0.1:7300"], "{args:?}: {stdout}");
        // Not overridden: still the file's.
        assert!(
            has_line(&stdout, "backend", "127.0.0.1:7200"),
            "{args:?}: {stdout}"
        );
        assert!(
            has_line(&stdout, "max-record", "8192"),
            "{args:?}: {stdout}"
        );
    }
}

/// Accepts one backend connection within `timeout` and reads its header line.
fn accept_within(backend: &Backend, timeout: Duration) -> (TcpStream, String) {
    let deadline = Instant::now() + timeout;
    backend.listener.set_nonblocking(true).unwrap();
    let mut s = loop {
        match backend.listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no backend connection: {e}"),
        }
    };
    backend.listener.set_nonblocking(false).unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let header = read_header(&mut s);
    (s, header)
}
