//! Identity and TLS policy end to end: cert-to-name rules from the command
//! line, CRLs made by openssl, the minimum TLS version, and the
//! `nctls fingerprint` helper.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(5);

fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed (apt-get install openssl, or run .ci/run)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Connects with `cert`; returns the rustls error if the handshake or the
/// first read fails (TLS 1.3 reports client-auth failures on first read).
fn attempt(daemon: &Daemon, pki: &Pki, cert: &pki::Issued, version: Version) -> Result<(), String> {
    let config = client_config(&pki.ca, cert, version);
    let mut stream = connect(daemon.addr, config).map_err(|e| e.to_string())?;
    stream.write_all(b"x").map_err(|e| e.to_string())?;
    match read_to_end(&mut stream) {
        (_, Ending::Other(e)) => Err(e),
        _ => Ok(()),
    }
}

#[test]
fn revoked_client_is_refused_with_certificate_revoked() {
    let pki = Pki::new();
    let backend = Backend::new();
    let good = pki.ca.client("good");
    let revoked = pki.ca.client("revoked");
    revoked.write(pki.dir.path(), "revoked");
    let ca = OpensslCa::new(&pki);
    ca.revoke("revoked.pem");
    let crl = ca.crl("crl.pem", &[]);
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--crl", &crl]);
    for version in BOTH {
        let err = attempt(&daemon, &pki, &revoked, version).unwrap_err();
        assert!(err.contains("CertificateRevoked"), "{version:?}: {err}");
        let mut ok = connect(daemon.addr, client_config(&pki.ca, &good, version)).unwrap();
        ok.write_all(b"hi").unwrap();
        let (b, header) = backend.accept();
        assert!(header.starts_with("[good;"), "{header}");
        drop(b);
        drop(ok);
    }
    let lines = daemon
        .wait_logs("handshake-failed", 2, SOON)
        .expect("logged");
    assert!(
        lines[0].contains("client certificate revoked"),
        "{}",
        lines[0]
    );
}

#[test]
fn expired_crl_refuses_every_client() {
    let pki = Pki::new();
    let backend = Backend::new();
    let client = pki.ca.client("admin");
    let ca = OpensslCa::new(&pki);
    let crl = ca.crl(
        "old.pem",
        &[
            "-crl_lastupdate",
            "200101000000Z",
            "-crl_nextupdate",
            "200201000000Z",
        ],
    );
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--crl", &crl]);
    let err = attempt(&daemon, &pki, &client, Version::Tls13).unwrap_err();
    assert!(!err.is_empty());
    let line = daemon.wait_log("handshake-failed", SOON).expect("logged");
    assert!(
        line.contains("CRL of the client certificate's issuer expired on 2020-02-01"),
        "{line}"
    );
    assert_eq!(backend.pending_accepts(), 0);
}

#[test]
fn bad_crl_file_is_a_config_error() {
    let pki = Pki::new();
    let args: Vec<String> = pki
        .server_args()
        .into_iter()
        .chain(["--crl".into(), pki.file("x509-ca.pem"), "--check".into()])
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("nctls: --crl ") && err.contains("no X509 CRL block: found 1 CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn min_tls_13_refuses_tls12_clients() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--min-tls", "1.3"]);
    let Err(err) = connect(daemon.addr, pki.client("admin", Version::Tls12)) else {
        panic!("a TLS 1.2 client was accepted");
    };
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    let mut ok = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    ok.write_all(b"hi").unwrap();
    let (_b, header) = backend.accept();
    assert!(header.starts_with("[admin;"));
}

#[test]
fn map_rules_from_the_command_line_pick_the_user() {
    let pki = Pki::new();
    let backend = Backend::new();
    let alice = pki
        .ca
        .client_with_sans("alice", &[pki::San::Email("alice@EXAMPLE.org")]);
    let bob = pki.ca.client("bob");
    let special = pki.ca.client("special");
    special.write(pki.dir.path(), "special");
    let fp_line = nctls_fingerprint(&pki.file("special.pem"));
    let sha256 = fp_line
        .lines()
        .find(|l| l.starts_with("SHA-256"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("SHA-256 line")
        .to_string();
    let rule_special = format!("{sha256} specified operator");
    let daemon = Daemon::start(
        &pki,
        &[
            "--backend",
            &backend.arg(),
            "--map",
            &rule_special,
            "--map",
            "* san-rfc822-name",
            "--map",
            "* common-name",
        ],
    );
    for (cert, want) in [
        (&special, "operator"),
        (&alice, "alice@example.org"),
        (&bob, "bob"),
    ] {
        let mut c = connect(daemon.addr, client_config(&pki.ca, cert, Version::Tls13)).unwrap();
        c.write_all(b"x").unwrap();
        let (_b, header) = backend.accept();
        assert!(header.starts_with(&format!("[{want};")), "{want}: {header}");
    }
}

#[test]
fn no_matching_rule_refuses_and_logs_subject_and_fingerprint() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(
        &pki,
        &["--backend", &backend.arg(), "--map", "* san-dns-name"],
    );
    let mut c = connect(daemon.addr, pki.client("nodns", Version::Tls13)).unwrap();
    let (_, ending) = read_to_end(&mut c);
    assert_eq!(ending, Ending::CloseNotify);
    // Answer it, as TLS clients do: nctls waits for that (or a FIN).
    send_close_notify(&mut c);
    let line = daemon
        .wait_log("reason=refused ", SOON)
        .expect("refusal logged");
    assert!(line.contains("subject=\"CN=nodns\""), "{line}");
    assert!(line.contains("sha256="), "{line}");
    assert_eq!(backend.pending_accepts(), 0);
}

fn nctls_fingerprint(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
        .args(["fingerprint", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fingerprint_subcommand_agrees_with_openssl() {
    let pki = Pki::new();
    pki.ca.client("admin").write(pki.dir.path(), "admin");
    let ours = nctls_fingerprint(&pki.file("admin.pem"));
    for (alg, id) in [("-sha1", "02"), ("-sha256", "04"), ("-sha512", "06")] {
        let theirs = openssl(
            pki.dir.path(),
            &["x509", "-in", "admin.pem", "-noout", "-fingerprint", alg],
        );
        let digest = theirs.trim().split_once('=').expect("openssl output").1;
        assert!(
            ours.contains(&format!("{id}:{digest}")),
            "{alg}: {ours} vs {theirs}"
        );
    }
    assert!(ours.contains("subject: CN=admin"), "{ours}");
}

#[test]
fn per_user_header_fields_from_the_config_file() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        format!(
            "backend = {}\nproto = tls\ngroups = oper\n\
             user-fields = admin uid=1000 gid=10 subgids=20,30 groups=admin,wheel home=/home/%u\n",
            backend.arg()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&pki, &["--config", &conf]);
    for (cn, want) in [
        (
            "admin",
            "tls;1000;10;20,30;/home/admin;admin,wheel;]\n".to_string(),
        ),
        (
            "bob",
            "tls;9000;100;;/var/confd/homes/bob;oper;]\n".to_string(),
        ),
    ] {
        let mut c = connect(daemon.addr, pki.client(cn, Version::Tls13)).unwrap();
        c.write_all(b"x").unwrap();
        let (_b, header) = backend.accept();
        assert!(header.starts_with(&format!("[{cn};127.0.0.1/")), "{header}");
        assert!(header.ends_with(&want), "{cn}: {header}");
    }
}
