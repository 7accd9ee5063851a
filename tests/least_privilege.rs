//! Least privilege: the Landlock sandbox (on by default) and `--run-as`.
//!
//! The sandbox is checked from inside a running daemon: debug builds (what
//! `cargo test` runs) have a hook that, on each SIGHUP, opens the file and
//! connects to the port named in `NCTLS_TEST_SANDBOX_PROBE` and logs how
//! each went. Every other test file runs with the sandbox on as well, since
//! it is the default. This kernel must offer Landlock with network rules
//! (ABI 4, Linux 6.7; the test machines have ABI 7).
//!
//! `--run-as` is checked with system users made for the test (useradd;
//! the tests run as root) and removed afterwards.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::account::{SystemGroup, SystemUser};
use common::*;

const SOON: Duration = Duration::from_secs(10);

/// One session through the daemon, byte-exact both ways.
fn one_session(daemon: &Daemon, pki: &Pki, backend: &Backend) {
    let mut client = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
    client.write_all(b"ping").unwrap();
    let (mut b, header) = backend.accept();
    assert!(header.starts_with("[admin;"), "{header}");
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    b.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

/// The sandbox, where the build has it (the default build).
#[cfg(feature = "landlock")]
mod sandbox {
    use std::io::Write;
    use std::net::TcpListener;

    use super::common::*;
    use super::{one_session, SOON};

    /// The probe's two lines after a SIGHUP: (open, connect) results.
    fn probe(daemon: &Daemon) -> (String, String) {
        daemon.signal("HUP");
        let open = daemon
            .wait_log("sandbox probe: open ", SOON)
            .unwrap_or_else(|| panic!("no probe: {:?}", daemon.log_lines()));
        let connect = daemon
            .wait_log("sandbox probe: connect ", SOON)
            .expect("connect probe");
        (open, connect)
    }

    #[test]
    fn the_sandbox_refuses_other_files_and_ports_and_says_what_it_enforced() {
        let pki = Pki::new();
        let backend = Backend::new();
        let outside = TempDir::new();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "not for nctls").unwrap();
        // Another local service nctls has no business with.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = format!(
            "{} {}",
            secret.display(),
            other.local_addr().unwrap().port()
        );
        let backend_arg = backend.arg();
        let start = |extra: &[&str]| {
            let mut args = vec!["--backend", &backend_arg];
            args.extend(extra);
            let spec = spec.clone();
            Daemon::start_with(&pki, &args, move |cmd| {
                cmd.env("NCTLS_TEST_SANDBOX_PROBE", spec);
            })
        };

        let daemon = start(&[]);
        let enforced = daemon.wait_log("sandbox: ", SOON).expect("sandbox line");
        assert!(
            enforced.contains(" INFO: sandbox: Landlock ABI ")
                && enforced.contains(": filesystem and network (")
                && enforced.contains(&format!("read beneath: {};", pki.dir.path().display()))
                && enforced.contains(&format!("TCP connect: {})", backend.addr.port())),
            "{enforced}"
        );
        one_session(&daemon, &pki, &backend);
        let (open, connected) = probe(&daemon);
        assert!(open.ends_with("Permission denied (os error 13)"), "{open}");
        assert!(
            connected.ends_with("Permission denied (os error 13)"),
            "{connected}"
        );
        daemon.wait_log("reload: done", SOON).expect("reloaded");
        // The configured files are still re-read, also a server certificate
        // replaced by rename, as certbot does.
        let renewed = pki.ca.server();
        renewed.write(outside.path(), "renewed");
        std::fs::rename(
            outside.path().join("renewed.pem"),
            pki.dir.path().join("x509-server.pem"),
        )
        .unwrap();
        std::fs::rename(
            outside.path().join("renewed-key.pem"),
            pki.dir.path().join("x509-server-key.pem"),
        )
        .unwrap();
        daemon.signal("HUP");
        daemon.wait_logs("reload: done", 2, SOON).expect("reloaded");
        let mut client = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
        let seen = client.conn.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(seen, renewed.der(), "the renewed certificate is served");
        client.write_all(b"x").unwrap();
        drop(backend.accept());
        drop(client);
        one_session(&daemon, &pki, &backend);
        drop(daemon);

        for off in [&["--no-sandbox"][..], &["--sandbox", "off"]] {
            let daemon = start(off);
            let line = daemon.wait_log("sandbox: ", SOON).expect("sandbox line");
            assert!(
                line.contains(" WARN: sandbox: off (--sandbox off)"),
                "{line}"
            );
            let (open, connected) = probe(&daemon);
            assert!(open.ends_with(": ok"), "{open}");
            assert!(connected.ends_with(": ok"), "{connected}");
        }
    }

    #[test]
    fn a_reload_needing_more_than_the_sandbox_allows_is_refused_with_the_reason() {
        let pki = Pki::new();
        let backend = Backend::new();
        let other_backend = Backend::new();
        let log_dir = TempDir::new();
        let log = log_dir.path().join("nctls.log");
        let conf = pki.file("nctls.conf");
        std::fs::write(&conf, format!("backend = {}\n", backend.arg())).unwrap();
        // The files from the config file (and the working directory): the
        // command line's would win over the file's.
        let args = ["--config", &conf, "--listen", "127.0.0.1:0"].map(String::from);
        let daemon = Daemon::spawn(&args, pki.dir.path());
        // Files in a directory the sandbox was not set up with.
        let elsewhere = TempDir::new();
        pki.ca.server().write(elsewhere.path(), "x509-server");
        std::fs::write(
            &conf,
            format!(
                "backend = {}\ncert = {}\n",
                backend.arg(),
                elsewhere.path().join("x509-server.pem").display()
            ),
        )
        .unwrap();
        daemon.signal("HUP");
        let failed = daemon.wait_log("reload failed", SOON).expect("refused");
        assert!(
            failed.ends_with(&format!(
                "reload failed, keeping the current configuration: files in {}: the sandbox set at \
                 start does not allow it; restart nctls to apply it",
                elsewhere.path().display()
            )),
            "{failed}"
        );
        // Another backend port.
        std::fs::write(&conf, format!("backend = {}\n", other_backend.arg())).unwrap();
        daemon.signal("HUP");
        let failed = daemon
            .wait_logs("reload failed", 2, SOON)
            .expect("refused")
            .remove(1);
        assert!(
            failed.contains(&format!(
                "backend port {}: the sandbox set at start",
                other_backend.addr.port()
            )),
            "{failed}"
        );
        // A log file in another directory.
        std::fs::write(
            &conf,
            format!(
                "backend = {}\nlog-file = {}\n",
                backend.arg(),
                log.display()
            ),
        )
        .unwrap();
        daemon.signal("HUP");
        let failed = daemon
            .wait_logs("reload failed", 3, SOON)
            .expect("refused")
            .remove(2);
        assert!(failed.contains("a log file in "), "{failed}");
        // The old configuration keeps serving; run-as and sandbox need a restart.
        one_session(&daemon, &pki, &backend);
        std::fs::write(
            &conf,
            format!("backend = {}\nsandbox = off\n", backend.arg()),
        )
        .unwrap();
        daemon.signal("HUP");
        let warned = daemon
            .wait_log("reload: sandbox on -> off needs a restart", SOON)
            .unwrap_or_else(|| panic!("{:?}", daemon.log_lines()));
        assert!(warned.contains(" WARN: "), "{warned}");
    }
}

/// `Uid:`, `Gid:`, `Groups:`, `CapEff:` and `CapPrm:` of a process.
fn credentials(pid: u32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| {
            ["Uid:", "Gid:", "Groups:", "CapEff:", "CapPrm:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn run_as_drops_root_to_the_user_and_its_groups_only() {
    let pki = Pki::new();
    let backend = Backend::new();
    let user = SystemUser::new();
    let extra = SystemGroup::new();
    user.join(&extra);
    // The files must be readable by the user for reloads: the key too.
    std::fs::set_permissions(
        pki.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let key = pki.file("x509-server-key.pem");
    Command::new("chown")
        .args([&user.name, &key])
        .status()
        .unwrap();

    let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--run-as", &user.name]);
    let line = daemon.wait_log("running as ", SOON).expect("run-as line");
    assert!(
        line.contains(&format!(
            " INFO: running as {} (uid {}, gid {}, groups [",
            user.name, user.uid, user.gid
        )),
        "{line}"
    );
    let mut groups = [user.gid, extra.gid];
    groups.sort();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let (u, g) = (user.uid, user.gid);
    assert_eq!(
        credentials(daemon.child.id()),
        [
            format!("Uid: {u} {u} {u} {u}"),
            format!("Gid: {g} {g} {g} {g}"),
            format!("Groups: {}", groups.join(" ")),
            "CapPrm: 0000000000000000".to_string(),
            "CapEff: 0000000000000000".to_string(),
        ]
    );
    one_session(&daemon, &pki, &backend);
    // A reload as the user: fine while it can read the files...
    daemon.signal("HUP");
    daemon.wait_log("reload: done", SOON).expect("reloaded");
    // ...and a clear error, the old configuration serving, when it cannot.
    Command::new("chown").args(["root", &key]).status().unwrap();
    daemon.signal("HUP");
    let failed = daemon.wait_log("reload failed", SOON).expect("refused");
    assert!(
        failed.ends_with(&format!(
            "reload failed, keeping the current configuration: --key {key}: cannot read: \
             Permission denied (os error 13) (nctls runs as {} since start)",
            user.name
        )),
        "{failed}"
    );
    one_session(&daemon, &pki, &backend);
    drop(daemon);

    // USER:GROUP: that group alone.
    let daemon = Daemon::start(
        &pki,
        &[
            "--backend",
            &backend.arg(),
            "--run-as",
            &format!("{}:{}", user.name, extra.name),
        ],
    );
    daemon.wait_log("running as ", SOON).expect("run-as line");
    let x = extra.gid;
    let creds = credentials(daemon.child.id());
    assert_eq!(creds[1], format!("Gid: {x} {x} {x} {x}"), "{creds:?}");
    assert_eq!(creds[2], format!("Groups: {x}"), "{creds:?}");
}

#[test]
fn root_without_run_as_is_warned_and_bad_run_as_is_one_line() {
    let pki = Pki::new();
    let backend = Backend::new();
    let daemon = Daemon::start(&pki, &["--backend", &backend.arg()]);
    let warned = daemon.wait_log("running as root", SOON).expect("warning");
    assert!(
        warned.ends_with(
            " WARN: running as root: --run-as USER would make nctls an ordinary user once it \
             listens and has loaded its key"
        ),
        "{warned}"
    );
    drop(daemon);
    let run = |args: &[&str], as_user: Option<&SystemUser>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nctls"));
        cmd.args(pki.server_args())
            .args(["--listen", "127.0.0.1:0", "--backend", &backend.arg()])
            .args(args)
            .current_dir(pki.dir.path());
        if let Some(user) = as_user {
            std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        }
        let out = cmd.output().expect("run nctls");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--run-as", "nctls-no-such-user"], None);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "nctls: --run-as nctls-no-such-user: no user \"nctls-no-such-user\" (see getent passwd)\n"
    );
    let (code, stderr) = run(&["--run-as", "root:nctls-no-such-group"], None);
    assert_eq!(code, Some(1));
    assert!(
        stderr.ends_with("no group \"nctls-no-such-group\" (see getent group)\n"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--run-as", ""], None);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "nctls: --run-as: \"\": expected USER or USER:GROUP (names)\n"
    );
    // Not root: only the user itself.
    let user = SystemUser::new();
    std::fs::set_permissions(
        pki.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    Command::new("chown")
        .args([&user.name, &pki.file("x509-server-key.pem")])
        .status()
        .unwrap();
    let (code, stderr) = run(&["--run-as", "root"], Some(&user));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "nctls: --run-as root: only root can change user (nctls runs as uid {})",
            user.uid
        )
    );
}
