//! The options end to end: command line, config file and library pairs
//! through the option table into a `Config`, and back as `--check` prints it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::backend::BackendAddr;
use crate::config::options::OPTIONS;
use crate::config::settings::{
    check_setting, defaults, from_pairs, layered, parse_args, parse_file, Command, Origin, Setting,
};
use crate::config::validate::{build, Scope};
use crate::config::{options, Config, ConfigError, MinTls};
use crate::identity::header::HeaderKind;
use crate::identity::rules::{MapType, Rule};
use crate::relay::session::Tls12Close;

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
    assert_eq!(c.backend.to_string(), "127.0.0.1:2023");
    assert_eq!(c.backend.addresses(), ["127.0.0.1:2023"]);
    assert_eq!(c.cert.path, PathBuf::from("x509-server.pem"));
    assert_eq!(
        c.key.file().unwrap().path,
        PathBuf::from("x509-server-key.pem")
    );
    assert_eq!(c.ca.path, PathBuf::from("x509-ca.pem"));
    assert_eq!(c.header, HeaderKind::Confd);
    assert_eq!(c.identity, vec![Rule::parse("* common-name").unwrap()]);
    assert_eq!(c.min_tls, MinTls::V12);
    assert_eq!(c.limits.tls12_close, Tls12Close::Strict);
    assert_eq!(c.max_record, 4096);
    assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(300)));
    assert_eq!(run(&["--tcp-keepalive", "0"]).unwrap().tcp_keepalive, None);
    let err = run(&["--tcp-keepalive", "1.5"]).unwrap_err().0;
    assert!(
        err.starts_with("--tcp-keepalive: \"1.5\": expected a whole number"),
        "{err}"
    );
    assert_eq!(c.expiry_warning_days, 30);
    assert_eq!(
        run(&["--expiry-warning", "0"]).unwrap().expiry_warning_days,
        0
    );
    let err = run(&["--expiry-warning", "-1"]).unwrap_err().0;
    assert!(err.starts_with("--expiry-warning: \"-1\""), "{err}");
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
    assert_eq!(c.identity, vec![Rule::parse("* specified admin").unwrap()]);
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
            "--header: \"xml\": expected confd, confd-b64, ncx, ncx:PORT or none",
        ),
        (
            &["--max-sessions", "0"],
            "--max-sessions: \"0\": expected a whole number",
        ),
        (&["--user", "a;b"], "--user: \"a;b\" cannot be a user name"),
        (
            &["--user", "x", "--map", "* common-name"],
            "--user: cannot be combined with --map",
        ),
        (&["--map", "* cn"], "--map: unknown map type"),
        (
            &["--min-tls", "1.1"],
            "--min-tls: \"1.1\": expected 1.2 or 1.3",
        ),
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
    let c = file_and_cli("nctls.conf", text, &[("max-sessions", "7")]).unwrap();
    assert_eq!(c.identity, vec![Rule::parse("* specified oper").unwrap()]);
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
    let err = file("a.conf", "\n\nmax-record = 9").unwrap_err();
    assert!(err.0.starts_with("a.conf:3: max-record:"), "{}", err.0);
}

fn file(path: &str, text: &str) -> Result<Config, ConfigError> {
    file_and_cli(path, text, &[])
}

/// A config file's settings under command-line ones, over the defaults.
fn file_and_cli(path: &str, text: &str, cli: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let cli = cli
        .iter()
        .map(|(name, value)| Setting {
            option: options::find(name).expect("an option"),
            value: value.to_string(),
            origin: Origin::CommandLine,
        })
        .collect();
    build(
        &layered([defaults(), parse_file(path, text)?, cli]),
        Scope::Whole,
    )
}

fn user_of(c: &Config) -> &str {
    match c.identity.as_slice() {
        [Rule {
            fingerprint: None,
            map: MapType::Specified(user),
        }] => user,
        other => panic!("not one user: {other:?}"),
    }
}

#[test]
fn config_file_comments_and_quotes() {
    let c = file("a.conf", "user = admin   # the demo user\n").unwrap();
    assert_eq!(user_of(&c), "admin");
    let c = file("a.conf", "user = 'admin'\n").unwrap();
    assert_eq!(user_of(&c), "admin");
    let c = file(
        "a.conf",
        "user = \"admin  # no comment\"\nheader = confd-b64\n",
    )
    .unwrap();
    assert_eq!(user_of(&c), "admin  # no comment");
    let err = file("a.conf", "\nuser = 'admin\n").unwrap_err();
    assert_eq!(err.0, "a.conf:2: user: unterminated single quote");
    let err = file("a.conf", "user = it's\n").unwrap_err();
    assert!(
        err.0.starts_with("a.conf:1: user: quote '\\'' inside"),
        "{}",
        err.0
    );
}

#[test]
fn single_valued_options_once_per_file() {
    let err = file(
        "a.conf",
        "user = admin\nlisten = 127.0.0.1:1\n\nuser = oper\n",
    )
    .unwrap_err();
    assert_eq!(err.0, "a.conf:4: user: already set at line 1");
    let err = file("a.conf", "idle-timeout = 1\nidle-timeout = 1\n").unwrap_err();
    assert_eq!(err.0, "a.conf:2: idle-timeout: already set at line 1");
    // Repeatable options build their list.
    let text = "listen = 127.0.0.1:1\nlisten = 127.0.0.1:2\nmap = * san-dns-name\n\
                map = * common-name\nuser-fields = a uid=1\nuser-fields = b uid=2\n";
    let c = file("a.conf", text).unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.identity.len(), 2);
    assert_eq!(c.accounts.users.len(), 2);
    // The command line still overrides the file.
    let c = file_and_cli("a.conf", "user = admin\n", &[("user", "oper")]).unwrap();
    assert_eq!(user_of(&c), "oper");
}

#[test]
fn relative_paths_in_a_file_are_relative_to_it() {
    let text = "cert = server.pem\nkey = /abs/key.pem\nca = ../ca/ca.pem\n\
                crl = crl/a.crl\nbackend = unix:run/confd.sock\n";
    let c = file("/etc/nctls/nctls.conf", text).unwrap();
    assert_eq!(c.cert.path, Path::new("/etc/nctls/server.pem"));
    assert_eq!(c.cert.origin, "/etc/nctls/nctls.conf:1: cert");
    assert_eq!(c.key.file().unwrap().path, Path::new("/abs/key.pem"));
    assert_eq!(c.ca.path, Path::new("/etc/nctls/../ca/ca.pem"));
    assert_eq!(c.crls[0].path, Path::new("/etc/nctls/crl/a.crl"));
    assert_eq!(c.crls[0].origin, "/etc/nctls/nctls.conf:4: crl");
    assert_eq!(
        c.backend,
        BackendAddr::Unix("/etc/nctls/run/confd.sock".into())
    );
    // A file named relatively is in the working directory, and so are its paths.
    let c = file("nctls.conf", text).unwrap();
    assert_eq!(c.cert.path, Path::new("server.pem"));
    // The command line's relative paths stay relative to the working directory.
    let c = run(&["--cert", "server.pem", "--backend", "unix:s.sock"]).unwrap();
    assert_eq!(c.cert.path, Path::new("server.pem"));
    assert_eq!(c.backend, BackendAddr::Unix("s.sock".into()));
}

#[test]
fn the_header_decides_which_names_fit() {
    let odd = "a;b]\n\u{fc}";
    let err = run(&["--user", odd]).unwrap_err();
    let want = "--user: \"a;b]\\n\u{fc}\" cannot be a user name: contains ';'";
    assert!(err.0.starts_with(want), "{}", err.0);
    // confd-b64 carries the name, but HOMEDIR repeats it by default.
    let err = run(&["--user", odd, "--header", "confd-b64"]).unwrap_err();
    let want = "its HOMEDIR \"/var/confd/homes/a;b]";
    assert!(err.0.contains(want), "{}", err.0);
    let c = run(&["--user", odd, "--header", "confd-b64", "--home", "/h"]).unwrap();
    assert_eq!(user_of(&c), odd);
    let c = run(&[
        "--map",
        "* specified x;y",
        "--header",
        "confd-b64",
        "--home",
        "/h",
    ])
    .unwrap();
    assert_eq!(c.identity[0].to_string(), "* specified x;y");
    let err = run(&["--map", "* specified x;y"]).unwrap_err();
    assert!(
        err.0.starts_with("--map: \"x;y\" cannot be a user name"),
        "{}",
        err.0
    );
    let err = run(&["--user-fields", "x;y uid=1"]).unwrap_err();
    assert!(err.0.starts_with("--user-fields: \"x;y\""), "{}", err.0);
    assert!(run(&["--user-fields", "x;y uid=1", "--header", "none"]).is_ok());
    // NUL never fits.
    assert!(run(&["--user", "a\0b", "--header", "confd-b64", "--home", "/h"]).is_err());
    // The C library checks one setting before it knows the header.
    assert!(check_setting("user", "a;b").is_ok());
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert!(from_pairs(&[pair("user", "a;b")]).is_err());
    let b64 = [
        pair("user", "a;b"),
        pair("header", "confd-b64"),
        pair("home", "/h"),
    ];
    assert!(from_pairs(&b64).is_ok());
}

/// The options `--check`'s text has lines for, in order (a repeated one once).
fn printed_options(text: &str) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# ") {
            Some(comment) => comment.strip_suffix(": none"),
            None => line.split(" = ").next(),
        };
        if let Some(name) = name.filter(|n| names.last() != Some(n)) {
            names.push(name);
        }
    }
    names
}

/// Every option but `config`, in the table's (`--help`'s) order, whether it
/// has a value or not (README: "an option without a value as a `# name:
/// none` comment").
#[test]
fn check_prints_every_option_in_table_order() {
    let table: Vec<&str> = OPTIONS
        .iter()
        .map(|o| o.name)
        .filter(|name| *name != "config")
        .collect();
    for list in [
        &[][..],
        &["--syslog"],
        &["--log-file", "/var/log/nctls.log"],
        &["--user", "admin", "--crl", "/a.crl", "--crl", "/b.crl"],
        &[
            "--user-fields",
            "a uid=1",
            "--user-fields",
            "b",
            "--listen=[::]:1",
        ],
    ] {
        let text = run(list).unwrap().to_string();
        assert_eq!(printed_options(&text), table, "{list:?}:\n{text}");
    }
    let text = run(&["--syslog"]).unwrap().to_string();
    assert!(
        text.contains("\n# log-file: none\nsyslog = daemon\n"),
        "{text}"
    );
    let text = run(&[]).unwrap().to_string();
    for line in [
        "log-level = info",
        "idle-timeout = 0",
        "handshake-timeout = 10",
        "subgids = \"\"",
        "map = * common-name",
        "# user: none",
        "# crl: none",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    let cwd = std::env::current_dir().unwrap();
    let cert = format!("cert = {}", cwd.join("x509-server.pem").display());
    assert!(text.lines().any(|l| l == cert), "{text}");
}

/// What `--check` prints reads back as the same configuration, hostile
/// values included.
#[test]
fn check_output_is_a_config_file_for_the_same_configuration() {
    let c = run(&[
        "--listen",
        "127.0.0.1:7000",
        "--listen",
        "[::1]:7001",
        "--backend",
        "unix:/run/my confd #1/\"sock\"",
        "--cert",
        "/etc/nctls/it's a \\ cert #1.pem",
        "--crl",
        "/a.crl",
        "--crl",
        "/b\tc.crl",
        "--min-tls",
        "1.3",
        "--user",
        " j\u{fc}rgen ;# [x]\n\u{1}'\"",
        "--header",
        "confd-b64",
        "--proto",
        "tls",
        "--uid",
        "0",
        "--gid",
        "5",
        "--subgids",
        "1,2",
        "--groups",
        "admin,#wheel",
        "--home",
        "/home/tls users",
        "--user-fields",
        "bob uid=7 home=/b#b",
        "--user-fields",
        "eve",
        "--handshake-timeout",
        "0.25",
        "--connect-timeout",
        "1e-9",
        "--idle-timeout",
        "3600",
        "--drain-timeout",
        "2.5",
        "--tls12-close",
        "half-close",
        "--max-sessions",
        "7",
        "--max-sessions-per-ip",
        "2",
        "--max-record",
        "16384",
        "--log-level",
        "TRACE",
    ])
    .unwrap();
    let printed = c.to_string();
    let again = file("/elsewhere/x.conf", &printed).unwrap();
    assert_eq!(again.to_string(), printed);
    assert_eq!(user_of(&again), " j\u{fc}rgen ;# [x]\n\u{1}'\"");
    assert_eq!(again.crls[1].path, Path::new("/b\tc.crl"));
    assert_eq!(again.limits.connect_timeout, Duration::from_nanos(1));
    assert_eq!(again.accounts.fields_for("bob").home, "/b#b");
    assert_eq!(again.accounts.fields_for("eve"), &again.accounts.defaults);
    // And with map rules instead of a user.
    let c = run(&[
        "--map",
        "04:AB:cd common-name",
        "--map",
        "* specified guest",
    ]);
    assert!(c.is_err(), "a short fingerprint is refused");
    let fp = format!("04:{}", ["ab"; 32].join(":"));
    let c = run(&[
        "--map",
        &format!("{fp} common-name"),
        "--map",
        "* specified guest",
    ])
    .unwrap();
    let printed = c.to_string();
    assert!(printed.contains("\n# user: none\n"), "{printed}");
    assert_eq!(file("x.conf", &printed).unwrap().to_string(), printed);
}

#[test]
fn maps_keep_their_order_and_fingerprint_subcommand() {
    let c = run(&["--map", "* san-dns-name", "--map=* specified guest"]).unwrap();
    assert_eq!(c.identity.len(), 2);
    assert_eq!(c.identity[1].to_string(), "* specified guest");
    match parse_args(args(&["fingerprint", "a.pem", "b.pem"])).unwrap() {
        Command::Fingerprint(files) => assert_eq!(files.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_fields_and_per_user_overrides() {
    let c = run(&[
        "--user-fields",
        "admin uid=0 groups=admin",
        "--gid",
        "5",
        "--proto",
        "tls",
    ])
    .unwrap();
    let admin = c.accounts.fields_for("admin");
    assert_eq!((admin.uid, admin.gid, admin.proto.as_str()), (0, 5, "tls"));
    assert_eq!(c.accounts.fields_for("other").uid, 9000);
    let err = run(&["--user-fields", "admin shell=sh"]).unwrap_err();
    assert!(
        err.0.starts_with("--user-fields: unknown field"),
        "{}",
        err.0
    );
    let err = run(&["--groups", "a;b"]).unwrap_err();
    assert!(err.0.starts_with("--groups: "), "{}", err.0);
}

#[test]
fn library_pairs_use_the_same_rules() {
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    let c = from_pairs(&[
        pair("listen", "127.0.0.1:7000"),
        pair("listen", "[::1]:7001"),
        pair("user", "admin"),
        pair("max-record", "1024"),
    ])
    .unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.identity, vec![Rule::parse("* specified admin").unwrap()]);
    assert_eq!(c.max_record, 1024);
    let err = from_pairs(&[pair("user", "a"), pair("map", "* common-name")]).unwrap_err();
    assert!(err.0.starts_with("user: cannot be combined"), "{}", err.0);
    assert_eq!(
        check_setting("colour", "red").unwrap_err().0,
        "unknown option \"colour\""
    );
    let err = check_setting("max-record", "9").unwrap_err();
    assert!(err.0.starts_with("max-record: \"9\""), "{}", err.0);
    assert!(check_setting("backend", "127.0.0.1:2023").is_ok());
}

/// Each default, given as a setting from any source, is the configuration
/// of no settings at all: the table's defaults parse, and `--check` prints
/// them as they were written.
#[test]
fn every_default_reads_back_from_every_source() {
    let nothing = Config::default().to_string();
    assert_eq!(run(&[]).unwrap().to_string(), nothing);
    for o in OPTIONS {
        let Some(value) = o.default.text(o.name) else {
            continue;
        };
        let line = format!("{} = {}", o.name, crate::config::file::quote(&value));
        let from_file = file("x.conf", &line).unwrap();
        assert_eq!(from_file.to_string(), nothing, "{line}");
        let from_cli = run(&[&format!("--{}={value}", o.name)]).unwrap();
        assert_eq!(from_cli.to_string(), nothing, "--{}", o.name);
        check_setting(o.name, &value).unwrap();
        let from_library = from_pairs(&[(o.name.to_string(), value.clone())]).unwrap();
        assert_eq!(from_library.to_string(), nothing, "{}", o.name);
        // Shown as written (paths from the root).
        let shown = (o.show)(&from_file);
        assert!(
            shown.iter().any(|v| v.ends_with(&value)),
            "{}: {value:?} shown as {shown:?}",
            o.name
        );
    }
}

/// TLS building's defaults are the options' (the record size was once
/// stated again there).
#[test]
fn tls_policy_defaults_are_the_options_defaults() {
    let policy = crate::config::tls::Policy::default();
    let max_record = find_default("max-record").parse::<usize>().unwrap();
    assert_eq!(policy.max_record, max_record);
    assert_eq!(policy.max_record, Config::default().max_record);
    assert_eq!(policy.min_tls, MinTls::V12);
    assert_eq!(find_default("min-tls"), "1.2");
    assert!(policy.crls.is_empty());
}

fn find_default(name: &str) -> String {
    let o = options::find(name).unwrap();
    o.default.text(o.name).unwrap()
}

/// A timeout too small to be a nanosecond is 0: refused where 0 is, off for
/// `--idle-timeout`.
#[test]
fn a_timeout_below_a_nanosecond_is_zero() {
    let err = run(&["--handshake-timeout", "1e-10"]).unwrap_err();
    assert_eq!(err.0, "--handshake-timeout: must be more than 0");
    let c = run(&["--idle-timeout", "1e-10"]).unwrap();
    assert_eq!(c.limits.idle_timeout, None);
    assert!(c.to_string().contains("\nidle-timeout = 0\n"));
}

#[test]
fn run_as_and_sandbox_are_read_and_shown() {
    let c = run(&[]).unwrap();
    assert!(c.sandbox);
    assert_eq!(c.run_as, None);
    assert!(!run(&["--no-sandbox"]).unwrap().sandbox);
    assert!(!run(&["--sandbox", "off"]).unwrap().sandbox);
    let c = run(&["--run-as", "nctls:softhsm"]).unwrap();
    let run_as = c.run_as.as_ref().unwrap();
    assert_eq!(
        (run_as.user.as_str(), run_as.group.as_deref()),
        ("nctls", Some("softhsm"))
    );
    let text = c.to_string();
    assert!(
        text.contains("\nrun-as = nctls:softhsm\nsandbox = on\n"),
        "{text}"
    );
    for bad in ["", ":g", "u:", "a b", "u:g:h"] {
        let e = run(&["--run-as", bad]).unwrap_err().0;
        assert!(e.starts_with("--run-as: "), "{bad:?}: {e}");
    }
    let e = run(&["--sandbox", "maybe"]).unwrap_err().0;
    assert!(e.starts_with("--sandbox: \"maybe\""), "{e}");
}

#[test]
fn pkcs11_options_need_a_pkcs11_key_and_the_other_way_round() {
    let e = run(&["--pkcs11-module", "/m.so"]).unwrap_err().0;
    assert_eq!(
        e,
        "--pkcs11-module: only used with a PKCS#11 key (--key pkcs11:...)"
    );
    let e = run(&["--pkcs11-pin-file", "/pin"]).unwrap_err().0;
    assert_eq!(
        e,
        "--pkcs11-pin-file: only used with a PKCS#11 key (--key pkcs11:...)"
    );
    // The C library sets one option at a time: each alone is fine there.
    check_setting("pkcs11-module", "/m.so").unwrap();
    let uri = "pkcs11:token=t;object=k";
    let key = run(&["--key", uri]);
    if cfg!(feature = "pkcs11") {
        let e = key.unwrap_err().0;
        assert_eq!(
            e,
            "--key: a PKCS#11 URI needs --pkcs11-module PATH (the token's library)"
        );
        let c = run(&["--key", uri, "--pkcs11-module", "/m.so"]).unwrap();
        assert!(c
            .to_string()
            .contains("\nkey = pkcs11:token=t;object=k\npkcs11-module = /m.so\n"));
        let e = run(&[
            "--key",
            "pkcs11:object=k?pin-value=1",
            "--pkcs11-module",
            "/m",
        ]);
        assert!(e.unwrap_err().0.contains("give --pkcs11-pin-file FILE"));
    } else {
        let e = key.unwrap_err().0;
        assert!(e.starts_with("--key: a PKCS#11 key needs nctls built with the pkcs11 feature"));
    }
}
