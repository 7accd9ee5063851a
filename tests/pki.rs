//! The PKI inputs of issue 10 (items 1, 2, 8, 9) and issue 11 against the
//! real binary: which CRL decides, which CA copy is the anchor, PEM files as
//! OpenSSL reads them, expiry and key-permission warnings, handshake
//! failures in words with the presented certificate, health checks, the
//! `--check` summary and `nctls fingerprint` errors.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(10);

fn nctls(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nctls"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run nctls")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is needed (apt-get install openssl, or run .ci/run)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    out
}

/// `date -u -d WHEN +FORMAT`.
fn date(when: &str, format: &str) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", when, &format!("+{format}")])
        .output()
        .expect("date");
    text(&out.stdout).trim().to_string()
}

/// A calendar day relative to today, for rcgen validity.
fn day(when: &str) -> pki::Ymd {
    let d = date(when, "%Y %m %d");
    let p: Vec<&str> = d.split(' ').collect();
    (
        p[0].parse().unwrap(),
        p[1].parse().unwrap(),
        p[2].parse().unwrap(),
    )
}

/// The SHA-256 fingerprint as the log writes it (`AB:CD:...`).
fn sha256(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `--check` with the PKI's files and `extra`.
fn check(pki: &Pki, extra: &[&str]) -> Output {
    let mut args: Vec<String> = pki.server_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--check".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nctls(&args, pki.dir.path())
}

/// A session with `cert`: `Ok(header)` if it reached the backend, else the
/// daemon's session-end line.
fn session(
    daemon: &Daemon,
    pki: &Pki,
    backend: &Backend,
    cert: &pki::Issued,
) -> Result<String, String> {
    let (mut stream, result) =
        try_connect(daemon.addr, client_config(&pki.ca, cert, Version::Tls13));
    let addr = local(&stream);
    if result.is_ok() && stream.write_all(b"x").is_ok() {
        if let Some((_b, header)) = backend.accept_within(Duration::from_secs(3)) {
            return Ok(header);
        }
    }
    let _ = read_to_end(&mut stream);
    Err(end_line(daemon, addr))
}

// ---------------------------------------------------------------------------
// Issue 10 item 1: the newest CRL decides, whatever the order.

#[test]
fn a_revoked_client_is_refused_whatever_the_order_of_crls() {
    let pki = Pki::new();
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let admin = pki.ca.client("admin");
    admin.write(pki.dir.path(), "admin");
    let other = pki.ca.client("other");
    let ca = OpensslCa::new(&pki);
    // Still valid, revokes nothing.
    let older = ca.crl(
        "older.pem",
        &[
            "-crl_lastupdate",
            &date("2 days ago", "%y%m%d%H%M%SZ"),
            "-crl_nextupdate",
            &date("5 days", "%y%m%d%H%M%SZ"),
        ],
    );
    ca.revoke("admin.pem");
    let current = ca.crl(
        "current.pem",
        &["-crl_lastupdate", &date("1 hour ago", "%y%m%d%H%M%SZ")],
    );
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    let old_first = pki.file("old-first.pem");
    std::fs::write(&old_first, read(&older) + &read(&current)).unwrap();
    let current_first = pki.file("current-first.pem");
    std::fs::write(&current_first, read(&current) + &read(&older)).unwrap();
    let orders: [&[&str]; 4] = [
        &["--crl", &older, "--crl", &current],
        &["--crl", &current, "--crl", &older],
        &["--crl", &old_first],
        &["--crl", &current_first],
    ];
    for crls in orders {
        let mut args = vec!["--backend", backend_arg.as_str()];
        args.extend_from_slice(crls);
        let daemon = Daemon::start(&pki, &args);
        let line = session(&daemon, &pki, &backend, &admin)
            .expect_err(&format!("{crls:?}: a revoked admin got in"));
        assert!(
            line.contains("client certificate revoked"),
            "{crls:?}: {line}"
        );
        let header = session(&daemon, &pki, &backend, &other)
            .unwrap_or_else(|l| panic!("{crls:?}: other refused: {l}"));
        assert!(header.starts_with("[other;"), "{header}");
    }
}

// ---------------------------------------------------------------------------
// Issue 10 item 2: a renewed CA never changes who a client is.

fn fingerprint_of(pki: &Pki, name: &str) -> String {
    let out = nctls(&["fingerprint", &pki.file(name)], pki.dir.path());
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256").map(|r| r.trim().to_string()))
        .expect("SHA-256 line")
}

#[test]
fn the_order_of_a_renewed_ca_never_changes_the_user() {
    let pki = Pki::new();
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let expired = pki.ca.renewed((2019, 1, 1), (2020, 1, 1));
    expired.write(pki.dir.path(), "expired-ca");
    let fp_expired = fingerprint_of(&pki, "expired-ca.pem");
    let fp_renewed = fingerprint_of(&pki, "x509-ca.pem");
    let old_first = pki.file("old-first.pem");
    std::fs::write(&old_first, expired.pem() + &pki.ca.pem()).unwrap();
    let new_first = pki.file("new-first.pem");
    std::fs::write(&new_first, pki.ca.pem() + &expired.pem()).unwrap();
    let client = pki.ca.client("carol");
    let rule_old = format!("{fp_expired} specified expired-copy");
    let rule_new = format!("{fp_renewed} specified renewed-copy");
    for ca in [&old_first, &new_first] {
        for rules in [
            vec!["--map", &rule_old, "--map", &rule_new],
            vec!["--map", &rule_new],
        ] {
            let mut args = vec!["--backend", backend_arg.as_str(), "--ca", ca];
            args.extend(rules.iter().copied());
            let daemon = Daemon::start(&pki, &args);
            let header = session(&daemon, &pki, &backend, &client)
                .unwrap_or_else(|l| panic!("{ca} {rules:?}: refused: {l}"));
            assert!(
                header.starts_with("[renewed-copy;"),
                "{ca} {rules:?}: {header}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Issue 10 item 8: PEM input, key files, expiry.

#[test]
fn a_byte_order_mark_does_not_drop_the_first_ca() {
    let pki = Pki::new();
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let ca1 = pki::Ca::new("CA1");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(ca1.pem().as_bytes());
    bytes.extend(pki.ca.pem().as_bytes());
    let cas = pki.file("bom-ca.pem");
    std::fs::write(&cas, bytes).unwrap();
    let daemon = Daemon::start(&pki, &["--backend", backend_arg.as_str(), "--ca", &cas]);
    let client = ca1.client("from-ca1");
    let (mut c, result) = try_connect(daemon.addr, client_config(&pki.ca, &client, Version::Tls13));
    result.expect("handshake");
    c.write_all(b"x").unwrap();
    let (_b, header) = backend.accept_within(SOON).expect("CA1's client served");
    assert!(header.starts_with("[from-ca1;"), "{header}");
    let out = check(&pki, &["--ca", &cas]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("# loaded: CA certificates: 2"),
        "{out:?}"
    );
}

#[test]
fn files_without_the_block_asked_for_say_what_they_hold() {
    let pki = Pki::new();
    let key = pki.file("x509-server-key.pem");
    let cert = pki.file("x509-server.pem");
    for (option, file, want) in [
        (
            "--ca",
            &key,
            "no CERTIFICATE block: found 1 PRIVATE KEY block",
        ),
        (
            "--key",
            &cert,
            "no PRIVATE KEY block: found 1 CERTIFICATE block",
        ),
        (
            "--crl",
            &cert,
            "no X509 CRL block: found 1 CERTIFICATE block",
        ),
    ] {
        let out = check(&pki, &[option, file]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("nctls: {option} {file}: {want}")),
            "{err}"
        );
    }
    let der = pki.file("ca.der");
    openssl(
        pki.dir.path(),
        &[
            "x509",
            "-in",
            "x509-ca.pem",
            "-outform",
            "der",
            "-out",
            "ca.der",
        ],
    );
    let err = text(&check(&pki, &["--ca", &der]).stderr);
    assert!(err.contains("looks like DER, not PEM"), "{err}");
}

#[test]
fn an_encrypted_key_says_it_is_encrypted_and_how_to_decrypt_it() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let key = "x509-server-key.pem";
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            key,
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            "pkcs8.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            key,
            "-traditional",
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            "legacy.pem",
        ],
    );
    assert!(std::fs::read_to_string(pki.file("legacy.pem"))
        .unwrap()
        .contains("Proc-Type: 4,ENCRYPTED"));
    for file in ["pkcs8.pem", "legacy.pem"] {
        let out = check(&pki, &["--key", &pki.file(file)]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains("is encrypted with a passphrase"),
            "{file}: {err}"
        );
        assert!(
            err.contains("openssl pkey -in KEY -out KEY.plain"),
            "{file}: {err}"
        );
    }
}

#[test]
fn a_chain_out_of_order_says_so() {
    let pki = Pki::new();
    let chain = pki.file("reversed.pem");
    std::fs::write(&chain, pki.ca.pem() + &pki.server.cert.pem()).unwrap();
    let out = check(&pki, &["--cert", &chain]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("nctls: --cert {chain}: the chain is out of order")),
        "{err}"
    );
    assert!(
        err.contains("belongs to certificate 2 in this file (CN=localhost)"),
        "{err}"
    );
    // In order it is fine.
    std::fs::write(&chain, pki.server.cert.pem() + &pki.ca.pem()).unwrap();
    assert!(check(&pki, &["--cert", &chain]).status.success());
}

#[test]
fn a_key_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let key = pki.file("x509-server-key.pem");
    let out = check(&pki, &[]);
    assert!(!text(&out.stdout).contains("# warning"), "{out:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&pki, &[]);
    assert!(out.status.success(), "only a warning: {out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("# warning: --key {key}: the private key file is accessible to group or others (mode 0644)")),
        "{stdout}"
    );
    let daemon = Daemon::start(&pki, &["--backend", backend_arg.as_str()]);
    let line = daemon
        .wait_log("accessible to group or others", SOON)
        .expect("warned");
    assert!(line.contains(" WARN") && line.contains(&key), "{line}");
}

/// A PKI whose server certificate is valid from `from` to `to`.
fn pki_with_server_validity(from: pki::Ymd, to: pki::Ymd) -> Pki {
    let pki = Pki::new();
    pki.ca
        .server_valid(from, to)
        .write(pki.dir.path(), "x509-server");
    pki
}

#[test]
fn an_expired_or_future_server_certificate_fails_check_but_the_daemon_starts() {
    for (from, to, want) in [
        (
            (2019, 1, 1),
            (2020, 1, 1),
            "expired on 2020-01-01T00:00:00Z",
        ),
        (
            (2090, 1, 1),
            (2091, 1, 1),
            "is not valid until 2090-01-01T00:00:00Z",
        ),
    ] {
        let pki = pki_with_server_validity(from, to);
        let out = check(&pki, &[]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("nctls: server certificate CN=localhost (--cert "),
            "{err}"
        );
        assert!(
            err.contains(want) && err.contains("clients will refuse"),
            "{err}"
        );
        assert!(
            text(&out.stdout).contains("# loaded: server certificate: CN=localhost"),
            "{out:?}"
        );
        // Still starts (a clock not set yet at boot must not cost access), loudly.
        let mut daemon = Daemon::start(&pki, &["--backend", "127.0.0.1:1"]);
        let line = daemon.wait_log(want, SOON).expect("logged at start");
        assert!(line.contains(" ERROR"), "{line}");
        daemon.signal("HUP");
        daemon
            .wait_logs(want, 2, SOON)
            .expect("logged again on reload");
        assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    }
}

#[test]
fn an_expired_crl_fails_check_but_the_daemon_starts() {
    let pki = Pki::new();
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
    let out = check(&pki, &["--crl", &crl]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "nctls: CRL from CN=nctls test CA (--crl {crl}) expired on 2020-02-01T00:00:00Z"
        )),
        "{err}"
    );
    let daemon = Daemon::start(&pki, &["--backend", "127.0.0.1:1", "--crl", &crl]);
    let line = daemon
        .wait_log("expired on 2020-02-01", SOON)
        .expect("logged");
    assert!(
        line.contains(" ERROR") && line.contains("every client of that CA is refused"),
        "{line}"
    );
}

#[test]
fn expiry_warnings_at_start_and_on_reload_follow_expiry_warning() {
    let pki = pki_with_server_validity(day("100 days ago"), day("10 days"));
    let ca = OpensslCa::new(&pki);
    let crl = ca.crl(
        "soon.pem",
        &["-crl_nextupdate", &date("20 days", "%y%m%d%H%M%SZ")],
    );
    let out = check(&pki, &["--crl", &crl]);
    assert!(out.status.success(), "warnings only: {out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("# warning: server certificate CN=localhost"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(in 9 days)") || stdout.contains("(in 10 days)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# warning: CRL from CN=nctls test CA"),
        "{stdout}"
    );
    let quiet = text(&check(&pki, &["--crl", &crl, "--expiry-warning", "5"]).stdout);
    assert!(!quiet.contains("# warning"), "{quiet}");
    let off = text(&check(&pki, &["--crl", &crl, "--expiry-warning", "0"]).stdout);
    assert!(!off.contains("# warning"), "{off}");
    let only_server = text(&check(&pki, &["--crl", &crl, "--expiry-warning", "15"]).stdout);
    assert!(
        only_server.contains("# warning: server certificate")
            && !only_server.contains("# warning: CRL"),
        "{only_server}"
    );

    let daemon = Daemon::start(&pki, &["--backend", "127.0.0.1:1", "--crl", &crl]);
    let line = daemon
        .wait_log("server certificate CN=localhost", SOON)
        .expect("warned at start");
    assert!(
        line.contains(" WARN") && line.contains("expires on"),
        "{line}"
    );
    daemon
        .wait_log("CRL from CN=nctls test CA", SOON)
        .expect("CRL warned at start");
    daemon.signal("HUP");
    daemon
        .wait_logs("server certificate CN=localhost", 2, SOON)
        .expect("warned again on reload");
    let quiet = Daemon::start(&pki, &["--backend", "127.0.0.1:1", "--expiry-warning", "0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !quiet.log_lines().iter().any(|l| l.contains("expires on")),
        "{:?}",
        quiet.log_lines()
    );
}

#[test]
fn a_ca_about_to_expire_is_warned_about() {
    let pki = Pki::new();
    let soon = pki.ca.renewed(day("1 year ago"), day("12 days"));
    soon.write(pki.dir.path(), "x509-ca");
    let out = check(&pki, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("# warning: CA certificate 1 (CN=nctls test CA)"),
        "{out:?}"
    );
    // With its renewed copy next to it, nothing to say.
    std::fs::write(pki.file("x509-ca.pem"), soon.pem() + &pki.ca.pem()).unwrap();
    let out = check(&pki, &[]);
    assert!(!text(&out.stdout).contains("# warning"), "{out:?}");
}

// ---------------------------------------------------------------------------
// Issue 10 item 9: handshake failures say whose certificate and why.

/// Connects with `cert` (trusting `pki`'s CA), expects a refusal, and
/// returns the session-end line.
fn refused(daemon: &Daemon, pki: &Pki, cert: &pki::Issued, version: Version) -> String {
    let (mut stream, result) = try_connect(daemon.addr, client_config(&pki.ca, cert, version));
    let addr = local(&stream);
    if result.is_ok() {
        let _ = stream.write_all(b"x");
        let _ = read_to_end(&mut stream);
    }
    end_line(daemon, addr)
}

fn assert_names(line: &str, cert: &[u8], subject: &str, reason: &str) {
    assert!(line.contains(&format!("subject=\"{subject}\"")), "{line}");
    assert!(line.contains(&sha256(cert)), "{line}");
    assert!(line.contains(reason), "{line}");
}

#[test]
fn refused_certificates_are_named_with_the_reason_in_words() {
    let pki = Pki::new();
    let backend = Backend::new();
    let backend_arg = backend.arg();
    let revoked = pki.ca.client("revoked");
    revoked.write(pki.dir.path(), "revoked");
    let ca = OpensslCa::new(&pki);
    ca.revoke("revoked.pem");
    let crl = ca.crl("crl.pem", &[]);
    let daemon = Daemon::start(&pki, &["--backend", backend_arg.as_str(), "--crl", &crl]);
    let stranger = pki::self_signed_client("stranger");
    let expired = pki.ca.expired_client("old");
    let future = pki.ca.not_yet_valid_client("early");
    // A server certificate has no clientAuth usage.
    let wrong_usage = pki.ca.server();
    for version in BOTH {
        for (cert, subject, reason) in [
            (
                &stranger,
                "CN=stranger",
                "client certificate issued by an unknown CA",
            ),
            (&revoked, "CN=revoked", "client certificate revoked"),
            (
                &expired,
                "CN=old",
                "client certificate expired on 2020-01-01T00:00:00Z",
            ),
            (
                &future,
                "CN=early",
                "client certificate not valid until 2090-01-01T00:00:00Z",
            ),
            (
                &wrong_usage,
                "CN=localhost",
                "client certificate is not for client authentication",
            ),
        ] {
            let line = refused(&daemon, &pki, cert, version);
            assert_names(&line, cert.der(), subject, reason);
            assert!(
                !line.contains("Context") && !line.contains("InvalidCertificate"),
                "{line}"
            );
        }
    }
    assert_eq!(backend.pending_accepts(), 0);
}

/// An openssl s_client run that ends at once (stdin closed).
fn s_client(daemon: &Daemon, dir: &Path, args: &[&str]) {
    let addr = daemon.addr.to_string();
    let mut all = vec!["s_client", "-connect", &addr, "-servername", "localhost"];
    all.extend_from_slice(args);
    let _ = Command::new("timeout")
        .arg("10")
        .arg("openssl")
        .args(&all)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
}

/// An openssl-made client certificate of `kind` (`ec` P-521, `rsa-pss`).
fn openssl_client(pki: &Pki, name: &str, keyopts: &[&str], serial: &str) {
    let dir = pki.dir.path();
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let mut req = vec!["req", "-newkey"];
    req.extend_from_slice(keyopts);
    req.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj"]);
    let subj = format!("/CN={name}");
    req.push(&subj);
    openssl(dir, &req);
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "x509-ca.pem",
            "-CAkey",
            "x509-ca-key.pem",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-extfile",
            "client.ext",
            "-out",
            &cert,
        ],
    );
}

#[test]
fn old_tls_and_unsupported_client_keys_are_told_truthfully() {
    let pki = Pki::new();
    pki.ca.write_key(pki.dir.path(), "x509-ca");
    openssl_client(
        &pki,
        "p521",
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
        "11",
    );
    openssl_client(
        &pki,
        "pss",
        &["rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"],
        "12",
    );
    let daemon = Daemon::start(&pki, &["--backend", "127.0.0.1:1"]);
    let dir = pki.dir.path();
    let ends = |n| {
        daemon
            .wait_logs("session end:", n, SOON)
            .unwrap_or_else(|| panic!("{n} session ends: {:#?}", daemon.log_lines()))
            .remove(n - 1)
    };

    s_client(&daemon, dir, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let line = ends(1);
    assert!(
        line.contains("client offered only TLS 1.1 or older"),
        "{line}"
    );
    assert!(
        !line.contains("SignatureAlgorithmsExtensionRequired"),
        "{line}"
    );

    // P-521 and RSA-PSS keys: in TLS 1.3 the client finds no signature
    // scheme nctls accepts and sends an empty Certificate message.
    let client = |name: &str, version: &str| {
        let cert = format!("{name}.pem");
        let key = format!("{name}-key.pem");
        s_client(
            &daemon,
            dir,
            &[
                version,
                "-cert",
                &cert,
                "-key",
                &key,
                "-CAfile",
                "x509-ca.pem",
            ],
        );
    };
    let mut n = 1;
    for (name, version) in [("p521", "-tls1_3"), ("pss", "-tls1_3"), ("pss", "-tls1_2")] {
        client(name, version);
        n += 1;
        let line = ends(n);
        assert!(
            line.contains("client sent no certificate"),
            "{name} {version}: {line}"
        );
        assert!(
            line.contains("ECDSA P-521 or RSA-PSS keys"),
            "{name} {version}: {line}"
        );
        assert!(!line.contains("subject="), "{name} {version}: {line}");
    }
    // In TLS 1.2 the P-521 client sends its certificate, which verifies;
    // its signature with that key cannot be checked.
    client("p521", "-tls1_2");
    let line = ends(n + 1);
    assert!(line.contains("subject=\"CN=p521\""), "{line}");
    assert!(line.contains("unsupported key: ECDSA P-521"), "{line}");
}

#[test]
fn health_checks_are_counted_and_logged_at_debug_only() {
    let pki = Pki::new();
    let mut daemon = Daemon::start_with(&pki, &["--backend", "127.0.0.1:1"], |c| {
        c.env("RUST_LOG", "debug");
    });
    let mut silent = Vec::new();
    for i in 0..4 {
        let s = TcpStream::connect(daemon.addr).unwrap();
        silent.push(s.local_addr().unwrap());
        if i % 2 == 1 {
            set_linger_zero(&s);
        }
        drop(s);
    }
    // One byte and gone: not a health check.
    let mut spoke = TcpStream::connect(daemon.addr).unwrap();
    let spoke_addr = spoke.local_addr().unwrap();
    spoke.write_all(b"\x16").unwrap();
    drop(spoke);
    for addr in &silent {
        let line = end_line(&daemon, *addr);
        assert!(line.contains(" DEBUG"), "{line}");
    }
    let line = end_line(&daemon, spoke_addr);
    assert!(line.contains(" WARN"), "{line}");
    daemon.signal("TERM");
    let line = daemon
        .wait_log(
            "connections closed before sending a byte (health checks):",
            SOON,
        )
        .expect("count at shutdown");
    assert!(line.ends_with(": 4"), "{line}");
    daemon.wait_exit(SOON).expect("stopped");
}

// ---------------------------------------------------------------------------
// Issue 11: `nctls fingerprint` errors, the `--check` summary.

#[test]
fn fingerprint_of_a_missing_file_is_one_plain_line() {
    let dir = TempDir::new();
    let out = nctls(&["fingerprint", "missing.pem"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "nctls: fingerprint missing.pem: cannot read: No such file or directory (os error 2)\n"
    );
    std::fs::write(dir.path().join("empty.pem"), "nothing here\n").unwrap();
    let out = nctls(&["fingerprint", "empty.pem"], dir.path());
    assert_eq!(
        text(&out.stderr),
        "nctls: fingerprint empty.pem: no CERTIFICATE block: found no PEM block \
         (-----BEGIN ...----- line) at all\n"
    );
}

#[test]
fn check_summarises_what_was_loaded_as_comments() {
    let pki = Pki::new();
    let other = pki::Ca::new("Other CA");
    let cas = pki.file("cas.pem");
    std::fs::write(&cas, pki.ca.pem() + &other.pem()).unwrap();
    let ca = OpensslCa::new(&pki);
    let first = ca.crl(
        "first.pem",
        &["-crl_lastupdate", &date("2 days ago", "%y%m%d%H%M%SZ")],
    );
    let second = ca.crl(
        "second.pem",
        &["-crl_nextupdate", &date("40 days", "%y%m%d%H%M%SZ")],
    );
    let out = check(&pki, &["--ca", &cas, "--crl", &second, "--crl", &first]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let comments: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# ")).collect();
    let not_after = der_not_after(&pki);
    assert!(
        comments.contains(
            &format!(
                "# loaded: server certificate: CN=localhost notAfter {not_after} (--cert {})",
                pki.file("x509-server.pem")
            )
            .as_str()
        ),
        "{stdout}"
    );
    assert!(
        comments.contains(&format!("# loaded: CA certificates: 2 (--ca {cas})").as_str()),
        "{stdout}"
    );
    let crl_lines: Vec<&&str> = comments
        .iter()
        .filter(|l| l.starts_with("# loaded: CRL: issuer CN=nctls test CA "))
        .collect();
    assert_eq!(crl_lines.len(), 2, "{stdout}");
    assert!(
        crl_lines[0].contains(&date("40 days", "nextUpdate %Y-%m-%dT")),
        "{stdout}"
    );
    assert!(
        crl_lines[0].contains("number 02") && !crl_lines[0].contains("superseded"),
        "{stdout}"
    );
    assert!(
        crl_lines[1].contains("number 01, superseded by a newer CRL"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("# configuration OK"));
}

/// The server certificate's notAfter as openssl reads it, in our format.
fn der_not_after(pki: &Pki) -> String {
    let out = openssl(
        pki.dir.path(),
        &[
            "x509",
            "-in",
            "x509-server.pem",
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ],
    );
    // notAfter=4096-01-01 00:00:00Z
    let v = text(&out.stdout);
    v.trim().trim_start_matches("notAfter=").replace(' ', "T")
}
