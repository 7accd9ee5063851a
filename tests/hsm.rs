//! The server key in a PKCS#11 token (`--key pkcs11:...`, the `pkcs11`
//! feature; `make test` runs this file with it): SoftHSM2 from Debian holds
//! an EC P-256 and an RSA key made inside the token (pkcs11-tool
//! --keypairgen), the test CA certifies their public keys (openssl x509
//! -force_pubkey), and real clients (openssl s_client, ncclient) handshake
//! with TLS 1.3 and 1.2 through the real binary in front of the ConfD
//! emulator. Errors at start and on reload are one line each.
//!
//! Without the feature, only the refusal of a `pkcs11:` key is tested.

mod common;

#[cfg(not(feature = "pkcs11"))]
use std::process::Command;

#[cfg(not(feature = "pkcs11"))]
use common::Pki;

#[cfg(not(feature = "pkcs11"))]
#[test]
fn without_the_feature_a_pkcs11_key_is_refused_in_one_line() {
    let pki = Pki::new();
    let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
        .args(pki.server_args())
        .args(["--key", "pkcs11:token=nctls;object=ec", "--check"])
        .output()
        .expect("run nctls");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "nctls: --key: a PKCS#11 key needs nctls built with the pkcs11 feature \
         (cargo build --release --features pkcs11)\n"
    );
}

#[cfg(feature = "pkcs11")]
mod with_a_token {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::common::account::SystemUser;
    use super::common::netconf::{root, run_driver, venv_python, ConfdEmu};
    use super::common::{Daemon, Pki, TempDir};

    /// The Debian package's module.
    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
    const PIN: &str = "1234";

    /// A SoftHSM2 token of its own (its config and token directory in a temp
    /// dir), with two key pairs generated inside it, and server certificates
    /// for their public keys from the test CA.
    struct Token {
        dir: TempDir,
        /// The SoftHSM2 config file (SOFTHSM2_CONF).
        conf: String,
    }

    impl Token {
        fn new(pki: &Pki) -> Token {
            let dir = TempDir::new();
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).unwrap();
            let conf = dir.path().join("softhsm2.conf").display().to_string();
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            let token = Token { dir, conf };
            token.run(
                "softhsm2-util",
                &[
                    "--init-token",
                    "--free",
                    "--label",
                    "nctls",
                    "--pin",
                    PIN,
                    "--so-pin",
                    "5678",
                ],
            );
            let ca_key = pki.ca.write_key(pki.dir.path(), "x509-ca");
            for (label, id, kind) in [("ec", "01", "EC:prime256v1"), ("rsa", "02", "rsa:2048")] {
                token.run(
                    "pkcs11-tool",
                    &[
                        "--module",
                        SOFTHSM,
                        "--token-label",
                        "nctls",
                        "--login",
                        "--pin",
                        PIN,
                        "--keypairgen",
                        "--key-type",
                        kind,
                        "--label",
                        label,
                        "--id",
                        id,
                    ],
                );
                let public_der = token.path(&format!("{label}-pub.der"));
                token.run(
                    "pkcs11-tool",
                    &[
                        "--module",
                        SOFTHSM,
                        "--token-label",
                        "nctls",
                        "--read-object",
                        "--type",
                        "pubkey",
                        "--label",
                        label,
                        "-o",
                        &public_der,
                    ],
                );
                let public_pem = token.path(&format!("{label}-pub.pem"));
                token.run(
                    "openssl",
                    &[
                        "pkey",
                        "-pubin",
                        "-inform",
                        "der",
                        "-in",
                        &public_der,
                        "-out",
                        &public_pem,
                    ],
                );
                let ext = token.path("server.ext");
                std::fs::write(
                    &ext,
                    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n\
                     extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
                )
                .unwrap();
                token.run(
                    "openssl",
                    &[
                        "x509",
                        "-new",
                        "-subj",
                        "/CN=localhost",
                        "-force_pubkey",
                        &public_pem,
                        "-CA",
                        &pki.file("x509-ca.pem"),
                        "-CAkey",
                        &ca_key.display().to_string(),
                        "-days",
                        "30",
                        "-extfile",
                        &ext,
                        "-out",
                        &pki.file(&format!("{label}-server.pem")),
                    ],
                );
            }
            std::fs::write(token.path("pin"), format!("{PIN}\n")).unwrap();
            std::fs::write(token.path("wrong-pin"), "4321\n").unwrap();
            for pin in ["pin", "wrong-pin"] {
                chmod(&token.path(pin), 0o600);
            }
            token
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn run(&self, program: &str, args: &[&str]) {
            let out = Command::new(program)
                .args(args)
                .env("SOFTHSM2_CONF", &self.conf)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "{program} ({e}): apt-get install softhsm2 opensc openssl (or run .ci/run)"
                    )
                });
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// nctls's arguments for the key `label`, with its certificate.
        fn args(&self, pki: &Pki, label: &str, pin_file: &str) -> Vec<String> {
            vec![
                "--cert".into(),
                pki.file(&format!("{label}-server.pem")),
                "--key".into(),
                format!("pkcs11:token=nctls;object={label};type=private"),
                "--pkcs11-module".into(),
                SOFTHSM.into(),
                "--pkcs11-pin-file".into(),
                self.path(pin_file),
            ]
        }

        /// `nctls --check` with these arguments (and the PKI's CA).
        fn check(&self, pki: &Pki, args: &[String]) -> std::process::Output {
            Command::new(env!("CARGO_BIN_EXE_nctls"))
                .args(["--ca", &pki.file("x509-ca.pem")])
                .args(args)
                .arg("--check")
                .env("SOFTHSM2_CONF", &self.conf)
                .output()
                .expect("run nctls")
        }
    }

    fn chmod(path: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn start(pki: &Pki, token: &Token, emu: &ConfdEmu, label: &str, pin: &str) -> Daemon {
        let mut args = token.args(pki, label, pin);
        args.extend(["--backend".into(), emu.addr.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let conf = token.conf.clone();
        Daemon::start_with(pki, &args, |cmd| {
            cmd.env("SOFTHSM2_CONF", conf);
        })
    }

    /// openssl s_client's `-brief` report of one handshake (it exits at
    /// stdin's end, sending close_notify).
    fn s_client(pki: &Pki, daemon: &Daemon, version: &str) -> String {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-connect",
                &daemon.addr.to_string(),
                version,
            ])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .args(["-CAfile", &pki.file("x509-ca.pem"), "-verify_return_error"])
            .args([
                "-cert",
                &pki.file("client.pem"),
                "-key",
                &pki.file("client-key.pem"),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn ec_and_rsa_keys_in_a_token_serve_tls_1_3_and_1_2() {
        let pki = Pki::new();
        pki.ca.client("admin").write(pki.dir.path(), "client");
        let token = Token::new(&pki);
        let emu = ConfdEmu::start();
        for (label, signature) in [("ec", "ECDSA"), ("rsa", "RSA-PSS")] {
            let daemon = start(&pki, &token, &emu, label, "pin");
            for (flag, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
                let report = s_client(&pki, &daemon, flag);
                let what = format!("{label} key, {protocol}:\n{report}");
                assert!(
                    report.contains(&format!("Protocol version: {protocol}")),
                    "{what}"
                );
                assert!(
                    report.contains(&format!("Signature type: {signature}")),
                    "{what}"
                );
                assert!(report.contains("Verification: OK"), "{what}");
                // A real NETCONF client, hello to close-session.
                let tls = &protocol[4..];
                let mut ncclient = Command::new(venv_python());
                ncclient
                    .arg(root().join("tests/interop/pyclient.py"))
                    .args(["ncclient", "basic", "--tls", tls])
                    .args(["--port", &daemon.addr.port().to_string()])
                    .arg("--pki")
                    .arg(pki.dir.path());
                let (report, text) = run_driver(ncclient, Duration::from_secs(60));
                let report = report.unwrap_or_else(|| panic!("ncclient hung: {text}"));
                let what = format!("ncclient, {label} key, {protocol}: {text}");
                assert_eq!(report.get("tls"), protocol, "{what}");
                assert_eq!(report.get("get_config"), "data", "{what}");
                assert_eq!(report.get("close_session"), "ok", "{what}");
                assert_eq!(report.get("end"), "clean", "{what}");
            }
            let starts = daemon.wait_logs("session start:", 2, Duration::from_secs(10));
            assert!(starts.is_some(), "{:?}", daemon.log_lines());
        }
    }

    #[test]
    fn a_wrong_pin_a_missing_object_or_module_is_one_line_at_start() {
        let pki = Pki::new();
        let token = Token::new(&pki);
        let mut cases: Vec<(Vec<String>, String)> = Vec::new();
        cases.push((
            token.args(&pki, "ec", "wrong-pin"),
            format!(
                "nctls: --pkcs11-pin-file {}: the token refused this PIN (CKR_PIN_INCORRECT); \
                 tokens lock the PIN after a few wrong tries\n",
                token.path("wrong-pin")
            ),
        ));
        let mut missing_object = token.args(&pki, "ec", "pin");
        missing_object[3] = "pkcs11:token=nctls;object=nope".into();
        cases.push((
            missing_object,
            "nctls: --key pkcs11:token=nctls;object=nope: no private key with object=\"nope\" \
             in token \"nctls\" (its private keys: "
                .into(),
        ));
        let mut missing_module = token.args(&pki, "ec", "pin");
        missing_module[5] = "/usr/lib/nctls-no-such-module.so".into();
        cases.push((
            missing_module,
            "nctls: --pkcs11-module /usr/lib/nctls-no-such-module.so: cannot load the PKCS#11 \
             module: /usr/lib/nctls-no-such-module.so: cannot open shared object file: No such \
             file or directory\n"
                .into(),
        ));
        let mut wrong_token = token.args(&pki, "ec", "pin");
        wrong_token[3] = "pkcs11:token=other;object=ec".into();
        cases.push((
            wrong_token,
            "nctls: --key pkcs11:token=other;object=ec: no token matches token=\"other\" \
             (the module's tokens: \"nctls\" (slot-id="
                .into(),
        ));
        let mut wrong_cert = token.args(&pki, "ec", "pin");
        wrong_cert[1] = pki.file("rsa-server.pem");
        cases.push((
            wrong_cert,
            "nctls: --key pkcs11:token=nctls;object=ec;type=private: the token's key does not \
             belong to the server certificate (--cert)"
                .into(),
        ));
        for (args, expected) in cases {
            let out = token.check(&pki, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(
                stderr.starts_with(&expected),
                "{args:?}:\n{stderr}\nexpected:\n{expected}"
            );
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
        // The same at start: one line, exit 1.
        let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
            .args(["--ca", &pki.file("x509-ca.pem"), "--listen", "127.0.0.1:0"])
            .args(token.args(&pki, "ec", "wrong-pin"))
            .env("SOFTHSM2_CONF", &token.conf)
            .output()
            .expect("run nctls");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("CKR_PIN_INCORRECT") && !stderr.contains("listening"),
            "{stderr}"
        );
        // And --check names the key in the effective configuration.
        let out = token.check(&pki, &token.args(&pki, "rsa", "pin"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains("key = pkcs11:token=nctls;object=rsa;type=private\n"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("pkcs11-module = {}\n", SOFTHSM)),
            "{stdout}"
        );
        assert!(!stdout.contains("# warning: --pkcs11-pin-file"), "{stdout}");
        // A PIN file others can read is warned about, as a key file is.
        chmod(&token.path("pin"), 0o644);
        let out = token.check(&pki, &token.args(&pki, "rsa", "pin"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "# warning: --pkcs11-pin-file {}: the PIN file is accessible to group or others \
                 (mode 0644); make it readable by nctls's user only (chmod 600)",
                token.path("pin")
            )),
            "{stdout}"
        );
    }

    #[test]
    fn a_reload_that_cannot_find_the_key_keeps_the_token_key_serving() {
        let pki = Pki::new();
        pki.ca.client("admin").write(pki.dir.path(), "client");
        let token = Token::new(&pki);
        let emu = ConfdEmu::start();
        let config = pki.dir.path().join("nctls.conf");
        let write = |object: &str| {
            std::fs::write(
                &config,
                format!(
                    "key = pkcs11:token=nctls;object={object}\npkcs11-module = {}\n\
                     pkcs11-pin-file = {}\ncert = ec-server.pem\nbackend = {}\n",
                    SOFTHSM,
                    token.path("pin"),
                    emu.addr
                ),
            )
            .unwrap();
        };
        write("ec");
        let conf = token.conf.clone();
        let daemon = Daemon::spawn_with(
            &[
                "--config".into(),
                config.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            pki.dir.path(),
            |cmd| {
                cmd.env("SOFTHSM2_CONF", conf);
            },
        );
        assert!(s_client(&pki, &daemon, "-tls1_3").contains("Verification: OK"));
        // A good reload reuses the module and its login.
        daemon.signal("HUP");
        let done = daemon.wait_log("reload: done", Duration::from_secs(20));
        assert!(done.is_some(), "{:?}", daemon.log_lines());
        assert!(s_client(&pki, &daemon, "-tls1_2").contains("Verification: OK"));
        write("gone");
        daemon.signal("HUP");
        let failed = daemon
            .wait_log("reload failed", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{:?}", daemon.log_lines()));
        assert!(
            failed.contains("keeping the current configuration: ")
                && failed.contains(
                    ": key pkcs11:token=nctls;object=gone: no private key with object=\"gone\""
                ),
            "{failed}"
        );
        let report = s_client(&pki, &daemon, "-tls1_3");
        assert!(report.contains("Signature type: ECDSA"), "{report}");
    }

    /// After `--run-as` the module works with the user's rights: a token
    /// only root can use stops the start with one line; a token directory in
    /// the user's group serves.
    #[test]
    fn after_run_as_the_token_must_be_usable_by_the_user() {
        let pki = Pki::new();
        pki.ca.client("admin").write(pki.dir.path(), "client");
        let token = Token::new(&pki);
        let emu = ConfdEmu::start();
        let user = SystemUser::new();
        let mut args = token.args(&pki, "ec", "pin");
        args.extend(["--run-as".into(), user.name.clone()]);
        let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
            .args(["--ca", &pki.file("x509-ca.pem"), "--listen", "127.0.0.1:0"])
            .args(["--backend", &emu.addr.to_string()])
            .args(&args)
            .env("SOFTHSM2_CONF", &token.conf)
            .output()
            .expect("run nctls");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!(
                "nctls: --run-as {}: the PKCS#11 token no longer signs as this user (",
                user.name
            )) && last.ends_with(
                "): make the token's files usable by it (SoftHSM: the token directory's group, \
                 e.g. --run-as USER:softhsm)"
            ),
            "{stderr}"
        );
        let tokens = token.path("tokens");
        for (program, mode) in [("chgrp", user.name.as_str()), ("chmod", "g+rwX")] {
            let status = Command::new(program)
                .args(["-R", mode, &tokens])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let backend = emu.addr.to_string();
        let mut all = vec!["--backend", backend.as_str()];
        all.extend(args.iter().map(String::as_str));
        let conf = token.conf.clone();
        let daemon = Daemon::start_with(&pki, &all, |cmd| {
            cmd.env("SOFTHSM2_CONF", conf);
        });
        daemon
            .wait_log("root dropped", Duration::from_secs(10))
            .expect("dropped");
        for version in ["-tls1_3", "-tls1_2"] {
            let report = s_client(&pki, &daemon, version);
            assert!(report.contains("Signature type: ECDSA"), "{report}");
            assert!(report.contains("Verification: OK"), "{report}");
        }
    }
}
