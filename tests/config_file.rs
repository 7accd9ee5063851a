//! The config file against the real binary: its syntax (comments, quotes,
//! errors with FILE:LINE), an option set twice, paths relative to the file,
//! errors about the files it names (at start and on SIGHUP), and `--check`
//! output that reads back as the same configuration.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::oneshot::*;
use common::*;

const SOON: Duration = Duration::from_secs(5);

/// Runs one session through a daemon started with `--config conf` in
/// `cwd` and returns the header the backend received.
fn header_for(conf: &str, cwd: &Path, pki: &Pki, backend: &Backend) -> String {
    let daemon = Daemon::spawn(&["--config".into(), conf.into()], cwd);
    let mut client = connect(daemon.addr, pki.client("someone", Version::Tls13)).unwrap();
    client.write_all(b"<hello/>").unwrap();
    let (mut b, header) = backend.accept_within(SOON).expect("backend session");
    let mut hello = [0u8; 8];
    b.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"<hello/>");
    header
}

/// `user = admin   # the demo user` is the user `admin`, and `'admin'`
/// too: ConfD gets exactly `admin`, in the home directory as well.
#[test]
fn comments_and_quotes_give_the_value_the_line_shows() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    for line in [
        "user = admin   # the demo user",
        "user = 'admin'",
        "user = \"admin\"  # quoted",
        "  user=admin#1 # `#` inside a word is text",
    ] {
        std::fs::write(
            &conf,
            format!(
                "listen = 127.0.0.1:0\nbackend = {}\n{line}\n",
                backend.arg()
            ),
        )
        .unwrap();
        let user = match line.contains("admin#1") {
            true => "admin#1",
            false => "admin",
        };
        let header = header_for(&conf, pki.dir.path(), &pki, &backend);
        let port = header.split(['/', ';']).nth(2).unwrap_or_default();
        assert_eq!(
            header,
            format!("[{user};127.0.0.1/{port};ssh;9000;100;;/var/confd/homes/{user};;]\n"),
            "{line}"
        );
        let stdout = check_ok(&["--config", &conf], pki.dir.path());
        assert!(
            settings(&stdout).contains(&format!("user = {user}").as_str()),
            "{line}: {stdout}"
        );
    }
}

/// Whatever could be read two ways is an error naming FILE:LINE.
#[test]
fn ambiguous_lines_are_errors_with_file_and_line() {
    let pki = Pki::new();
    let conf = pki.file("nctls.conf");
    for (line, want) in [
        ("user = 'admin", "user: unterminated single quote"),
        ("user = \"admin", "user: unterminated double quote"),
        (
            "user = 'admin'#x",
            "user: text after the closing quote: \"#x\"",
        ),
        (
            "user = 'it's'",
            "user: text after the closing quote: \"s'\"",
        ),
        (
            "user = \"admin\"x",
            "user: text after the closing quote: \"x\"",
        ),
        (
            "user = o'brien",
            "user: quote '\\'' inside an unquoted value (quote the whole value)",
        ),
        ("user = \"a\\qb\"", "user: unknown escape \\q"),
        (
            "user admin",
            "expected `name = value`, found \"user admin\"",
        ),
    ] {
        std::fs::write(&conf, format!("# nctls\n\n{line}\n")).unwrap();
        let at = format!("nctls: {conf}:3: {want}");
        assert_config_error_both(&["--config", &conf], pki.dir.path(), &[&at]);
    }
}

/// A single-valued option given twice in one file names both lines; the
/// command line still overrides the file; repeatable options accumulate.
#[test]
fn an_option_set_twice_in_a_file_names_both_lines() {
    let pki = Pki::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        "user = admin\nlisten = 127.0.0.1:7100\nlisten = 127.0.0.1:7101\n\nuser = oper\n",
    )
    .unwrap();
    assert_config_error_both(
        &["--config", &conf],
        pki.dir.path(),
        &[&format!("nctls: {conf}:5: user: already set at line 1")],
    );
    std::fs::write(
        &conf,
        "user = admin\nlisten = 127.0.0.1:7100\nlisten = 127.0.0.1:7101\n",
    )
    .unwrap();
    let stdout = check_ok(&["--config", &conf, "--user", "oper"], pki.dir.path());
    let lines = settings(&stdout);
    assert!(lines.contains(&"user = oper"), "{stdout}");
    assert!(lines.contains(&"listen = 127.0.0.1:7100"), "{stdout}");
    assert!(lines.contains(&"listen = 127.0.0.1:7101"), "{stdout}");
}

/// A config file that names its files relatively, read from another
/// working directory (`/` under systemd): the paths are the file's.
#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let pki = Pki::new();
    let backend = Backend::new();
    let elsewhere = TempDir::new();
    std::fs::create_dir(pki.dir.path().join("crl")).unwrap();
    let ca = OpensslCa::new(&pki);
    ca.crl("crl/ca.crl", &[]);
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        format!(
            "listen = 127.0.0.1:0\nbackend = {}\nuser = admin\ncert = x509-server.pem\n\
             key = ./x509-server-key.pem\nca = x509-ca.pem\ncrl = crl/ca.crl\n",
            backend.arg()
        ),
    )
    .unwrap();
    let stdout = check_ok(&["--config", &conf], elsewhere.path());
    let lines = settings(&stdout);
    for (name, file) in [
        ("cert", "x509-server.pem"),
        ("key", "./x509-server-key.pem"),
        ("ca", "x509-ca.pem"),
        ("crl", "crl/ca.crl"),
    ] {
        let want = format!("{name} = {}", pki.dir.path().join(file).display());
        assert!(lines.contains(&want.as_str()), "{want}: {stdout}");
    }
    let header = header_for(&conf, elsewhere.path(), &pki, &backend);
    assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
}

/// Every error about a file the config file names gives FILE:LINE of the
/// option, the path it resolved to and the reason.
#[test]
fn errors_about_files_named_in_the_file_give_file_and_line() {
    let pki = Pki::new();
    let elsewhere = TempDir::new();
    let dir = pki.dir.path();
    std::fs::write(dir.join("garbage.pem"), "not PEM\n").unwrap();
    let conf = pki.file("nctls.conf");
    let good = "cert = x509-server.pem\nkey = x509-server-key.pem\nca = x509-ca.pem\n";
    for (option, value, why) in [
        ("cert", "missing.pem", "cannot read"),
        ("key", "missing.pem", "cannot read"),
        ("ca", "garbage.pem", ""),
        ("crl", "missing.crl", "cannot read"),
        ("crl", "garbage.pem", ""),
    ] {
        // The option last, on line 5, replacing the good one.
        let text: String = good
            .lines()
            .filter(|l| !l.starts_with(&format!("{option} ")))
            .chain(["# the one to blame:"])
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!("{text}\n{option} = {value}\n");
        std::fs::write(&conf, &text).unwrap();
        let line = text.lines().count();
        let path = dir.join(value).display().to_string();
        let at = format!("nctls: {conf}:{line}: {option} {path}: {why}");
        assert_config_error_both(&["--config", &conf], elsewhere.path(), &[&at]);
    }
}

/// On SIGHUP too: a file named relatively in the config file is found
/// next to it, and a broken one is reported with FILE:LINE.
#[test]
fn reload_errors_give_file_and_line() {
    let pki = Pki::new();
    let backend = Backend::new();
    let elsewhere = TempDir::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        format!(
            "listen = 127.0.0.1:0\nbackend = {}\ncert = x509-server.pem\n\
             key = x509-server-key.pem\nca = x509-ca.pem\n",
            backend.arg()
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(&["--config".into(), conf.clone()], elsewhere.path());
    std::fs::write(pki.file("x509-ca.pem"), "not a certificate\n").unwrap();
    daemon.signal("HUP");
    let ca = pki.file("x509-ca.pem");
    let line = daemon
        .wait_log(&format!("{conf}:5: ca {ca}: "), SOON)
        .unwrap_or_else(|| panic!("no reload error: {:#?}", daemon.log_lines()));
    assert!(line.contains("reload failed"), "{line}");
    // The old configuration keeps serving.
    let mut client = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    client.write_all(b"x").unwrap();
    assert!(backend.accept_within(SOON).is_some());
}

/// `--check` prints the effective configuration as a config file: saved
/// elsewhere and read back, it prints the same, hostile values included.
#[test]
fn check_output_reads_back_as_the_same_configuration() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    // Files in a directory whose name needs quoting.
    let odd = dir.join("my \"certs\" #1 'x'");
    std::fs::create_dir(&odd).unwrap();
    for name in ["x509-server.pem", "x509-server-key.pem", "x509-ca.pem"] {
        std::fs::copy(dir.join(name), odd.join(name)).unwrap();
    }
    let ca = OpensslCa::new(&pki);
    ca.crl("list #2.crl", &[]);
    let odd_dir = odd.file_name().unwrap().to_str().unwrap();
    let cert = format!("{odd_dir}/x509-server.pem");
    let key = format!("{odd_dir}/x509-server-key.pem");
    let ca_file = format!("{odd_dir}/x509-ca.pem");
    let user = "  j\u{fc}rgen ;# [x]\n'\"\\ ";
    let args = [
        "--listen",
        "127.0.0.1:7000",
        "--listen",
        "[::1]:7001",
        "--backend",
        "unix:confd #1.sock",
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &ca_file,
        "--crl",
        "list #2.crl",
        "--min-tls",
        "1.3",
        "--user",
        user,
        "--header",
        "confd-b64",
        "--proto",
        "it's \"tls\"",
        "--groups",
        "wheel #1,x y",
        "--home",
        "/home/#tls users",
        "--user-fields",
        "bob uid=7 home=/b#b",
        "--handshake-timeout",
        "0.25",
        "--idle-timeout",
        "3600",
        "--tls12-close",
        "half-close",
        "--max-record",
        "16384",
        "--log-level",
        "TRACE",
    ];
    let first = check_ok(&args, dir);
    let saved = TempDir::new();
    let conf = saved.path().join("x.conf");
    let text: String = settings(&first).iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&conf, &text).unwrap();
    let conf = conf.display().to_string();
    let second = check_ok(&["--config", &conf], saved.path());
    assert_eq!(settings(&second), settings(&first), "{first}\n{second}");
    let lines = settings(&first);
    for want in [
        "log-level = trace".to_string(),
        "user = \"  j\u{fc}rgen ;# [x]\\n'\\\"\\\\ \"".into(),
        format!("backend = \"unix:{}/confd #1.sock\"", dir.display()),
        "idle-timeout = 3600".into(),
        "handshake-timeout = 0.25".into(),
        "user-fields = bob uid=7 home=/b#b".into(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want}: {first}");
    }
    // Every other line is a comment, the last one the verdict.
    assert_eq!(first.lines().last(), Some("# configuration OK"));
}
