//! contrib/nctls.service, checked in the ways that need no booted systemd:
//! `systemd-analyze verify` and `systemd-analyze security --offline` (Debian's
//! systemd package) on a copy whose ExecStart names the binary under test,
//! and the unit's ExecStart run as systemd would start it with
//! `DynamicUser=yes`: as an unprivileged user, the root-only key handed over
//! through the credentials directory its `LoadCredential=` lines imply.

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Pki, TempDir};

/// The uid and gid the service runs as here (nobody/nogroup on Debian);
/// systemd picks a dynamic one, equally unprivileged.
const SERVICE_ID: u32 = 65534;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_unit() -> String {
    std::fs::read_to_string(root().join("contrib/nctls.service")).expect("contrib/nctls.service")
}

/// Writes `unit` as DIR/nctls.service with ExecStart's binary replaced by
/// `exe` (verify insists the binary exists).
fn write_unit(dir: &Path, unit: &str, exe: &Path) -> PathBuf {
    let path = dir.join("nctls.service");
    let unit = unit.replace("/usr/local/bin/nctls", &exe.display().to_string());
    std::fs::write(&path, unit).expect("write the unit");
    path
}

/// The man pages the unit's Documentation= names, built with scdoc into
/// DIR/man (a MANPATH), so verify can check those references too.
fn man_path(dir: &Path) -> PathBuf {
    let man = dir.join("man");
    for (page, section) in [("nctls.8", "man8"), ("nctls.conf.5", "man5")] {
        std::fs::create_dir_all(man.join(section)).expect("man dir");
        let source =
            std::fs::File::open(root().join("man").join(format!("{page}.scd"))).expect("page");
        let out = Command::new("scdoc")
            .stdin(source)
            .output()
            .unwrap_or_else(|e| panic!("scdoc ({e}): apt-get install -y scdoc (or run .ci/run)"));
        assert!(out.status.success(), "scdoc {page}: {out:?}");
        std::fs::write(man.join(section).join(page), out.stdout).expect("write page");
    }
    man
}

fn analyze(args: &[&str], unit: &Path, manpath: Option<&Path>) -> Output {
    let mut command = Command::new("systemd-analyze");
    command.args(args).arg(unit);
    if let Some(m) = manpath {
        command.env("MANPATH", m);
    }
    command.output().unwrap_or_else(|e| {
        panic!("systemd-analyze ({e}) checks the unit: apt-get install -y systemd (or run .ci/run)")
    })
}

/// verify's verdict: success and not a word of output (it reports unknown
/// directives and bad values as warnings, with exit status 0).
fn verify(dir: &Path, unit: &str) -> Result<(), String> {
    let path = write_unit(dir, unit, Path::new(env!("CARGO_BIN_EXE_nctls")));
    let out = analyze(&["verify"], &path, Some(&man_path(dir)));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new();
    if let Err(e) = verify(dir.path(), &shipped_unit()) {
        panic!("systemd-analyze verify contrib/nctls.service: {e}");
    }
}

#[test]
fn systemd_analyze_verify_catches_a_misspelt_directive() {
    let dir = TempDir::new();
    let unit = shipped_unit().replace("ProtectSystem=", "ProtectSytem=");
    let e = verify(dir.path(), &unit).expect_err("a misspelt directive passed verify");
    assert!(e.contains("ProtectSytem"), "{e}");
}

/// The exposure score of the shipped sandbox, times ten: 1.4 when this test
/// was written (DynamicUser, no capabilities, read-only system, private
/// /tmp and devices, syscall filter). Loosening the sandbox raises it.
const EXPOSURE_LIMIT: &str = "14";

fn exposure_ok(unit: &str) -> (bool, String) {
    let dir = TempDir::new();
    let path = write_unit(dir.path(), unit, Path::new(env!("CARGO_BIN_EXE_nctls")));
    let threshold = format!("--threshold={EXPOSURE_LIMIT}");
    let out = analyze(&["security", "--offline=yes", &threshold], &path, None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

#[test]
fn unit_keeps_its_sandboxing() {
    let (ok, report) = exposure_ok(&shipped_unit());
    assert!(ok, "exposure above {EXPOSURE_LIMIT}/10:\n{report}");
    // The limit bites: without PrivateDevices= the score rises above it.
    let loose = shipped_unit().replace("PrivateDevices=yes\n", "");
    let (ok, report) = exposure_ok(&loose);
    assert!(!ok, "a unit without PrivateDevices= passed:\n{report}");
}

/// The unit's `LoadCredential=ID:PATH` pairs and its ExecStart words.
fn service_lines(unit: &str) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let mut credentials = Vec::new();
    let mut exec = Vec::new();
    for line in unit.lines() {
        if let Some(v) = line.strip_prefix("LoadCredential=") {
            let (id, path) = v.split_once(':').expect("LoadCredential=ID:PATH");
            credentials.push((id.to_string(), PathBuf::from(path)));
        } else if let Some(v) = line.strip_prefix("ExecStart=") {
            assert!(
                !v.contains(['"', '\'', '\\']),
                "this test splits ExecStart on spaces only: {v}"
            );
            exec = v.split_whitespace().map(String::from).collect();
        }
    }
    assert!(!exec.is_empty(), "no ExecStart= in the unit");
    (credentials, exec)
}

/// Runs `argv` as the service user in `/`, with only
/// `CREDENTIALS_DIRECTORY` in its environment.
fn run_as_service(argv: &[String], credentials: &Path) -> Output {
    Command::new(&argv[0])
        .args(&argv[1..])
        .uid(SERVICE_ID)
        .gid(SERVICE_ID)
        .current_dir("/")
        .env_clear()
        .env("CREDENTIALS_DIRECTORY", credentials)
        .output()
        .expect("run nctls as the service user")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn execstart_reads_a_root_only_key_through_its_credential() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "needs root: runs nctls as another user, as DynamicUser= does"
    );
    let pki = Pki::new();
    let fake_root = TempDir::new();
    set_mode(fake_root.path(), 0o755);

    // /etc/nctls as an operator lays it out: a root-only key, public rest,
    // and a config naming all of them (the unit's --key wins over its key).
    let etc = fake_root.path().join("etc/nctls");
    std::fs::create_dir_all(&etc).expect("etc");
    set_mode(etc.parent().expect("etc"), 0o755);
    for file in ["x509-server.pem", "x509-server-key.pem", "x509-ca.pem"] {
        std::fs::copy(pki.dir.path().join(file), etc.join(file)).expect("copy");
        set_mode(&etc.join(file), 0o644);
    }
    set_mode(&etc.join("x509-server-key.pem"), 0o600);
    std::fs::write(
        etc.join("nctls.conf"),
        format!(
            "listen = 127.0.0.1:0\ncert = {0}/x509-server.pem\nkey = {0}/x509-server-key.pem\n\
             ca = {0}/x509-ca.pem\n",
            etc.display()
        ),
    )
    .expect("nctls.conf");
    set_mode(&etc.join("nctls.conf"), 0o644);
    // The binary where the service user may run it.
    let bin = fake_root.path().join("nctls");
    std::fs::copy(env!("CARGO_BIN_EXE_nctls"), &bin).expect("copy nctls");
    set_mode(&bin, 0o755);

    let unit = shipped_unit()
        .replace("/etc/nctls", &etc.display().to_string())
        .replace("/usr/local/bin/nctls", &bin.display().to_string());
    let (credentials, exec) = service_lines(&unit);

    // What systemd does before ExecStart: read each credential as root and
    // give the service user a read-only copy in a directory of its own.
    let dir = fake_root.path().join("credentials");
    std::fs::create_dir(&dir).expect("credentials dir");
    for (id, path) in &credentials {
        let copy = dir.join(id);
        std::fs::copy(path, &copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        chown(&copy, Some(SERVICE_ID), Some(SERVICE_ID)).expect("chown");
        set_mode(&copy, 0o400);
    }
    chown(&dir, Some(SERVICE_ID), Some(SERVICE_ID)).expect("chown");
    set_mode(&dir, 0o500);
    let dir_text = dir.display().to_string();
    let mut argv: Vec<String> = exec
        .iter()
        .map(|w| {
            w.replace("${CREDENTIALS_DIRECTORY}", &dir_text)
                .replace("%d", &dir_text)
        })
        .collect();
    argv.push("--check".into());

    let out = run_as_service(&argv, &dir);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("configuration OK"),
        "the unit's ExecStart as the service user: {argv:?}\n{out:?}"
    );

    // The same user reading the key from /etc/nctls, as the unit did before
    // it used a credential: refused.
    let direct = [
        bin.display().to_string(),
        "--config".into(),
        etc.join("nctls.conf").display().to_string(),
        "--key".into(),
        etc.join("x509-server-key.pem").display().to_string(),
        "--check".into(),
    ];
    let out = run_as_service(&direct, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Permission denied"),
        "the service user read a root-only key: {out:?}"
    );
}

#[test]
fn backend_sockets_are_under_run_not_the_units_private_tmp() {
    let unit = shipped_unit();
    assert!(
        unit.lines().any(|l| l == "PrivateTmp=yes"),
        "the unit should keep PrivateTmp=yes"
    );
    // With PrivateTmp= the service's /tmp is its own: no socket there is reachable.
    let mut docs = vec![
        root().join("README.md"),
        root().join("contrib/nctls.service"),
    ];
    for page in ["nctls.8.scd", "nctls.conf.5.scd"] {
        docs.push(root().join("man").join(page));
    }
    let mut bad = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("doc");
        for (n, line) in text.lines().enumerate() {
            if line.contains("unix:/tmp/") || line.contains("unix:/var/tmp/") {
                bad.push(format!("{}:{}: {line}", doc.display(), n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unix backends under /tmp:\n{}",
        bad.join("\n")
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    assert!(
        readme.contains("--backend unix:/run/"),
        "README's netconfd recipe should put the socket under /run"
    );
}
