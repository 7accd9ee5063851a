//! System users and groups made for one test (`useradd`, `groupadd`; the
//! tests run as root) and removed when dropped, also when the test fails.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A system user with a group of its own, no home and no login shell.
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// A system group.
pub struct SystemGroup {
    pub name: String,
    pub gid: u32,
}

/// A name no other test (or test process) uses.
fn unique(kind: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "nct{kind}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a shadow-utils command, retrying while another test holds the
/// passwd or group file's lock.
fn shadow(program: &str, args: &[&str]) {
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("{program} ({e}): the tests run as root with passwd installed")
            });
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{program} {args:?}: {last}");
}

fn id(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {name}: {out:?}"))
}

impl SystemUser {
    pub fn new() -> SystemUser {
        let name = unique("u");
        shadow(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        let (uid, gid) = (id("-u", &name), id("-g", &name));
        SystemUser { name, uid, gid }
    }

    /// Adds the user to `group` (a supplementary group).
    pub fn join(&self, group: &SystemGroup) {
        shadow(
            "usermod",
            &["--append", "--groups", &group.name, &self.name],
        );
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        // Its own group goes with it (USERGROUPS_ENAB).
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

impl SystemGroup {
    pub fn new() -> SystemGroup {
        let name = unique("g");
        shadow("groupadd", &["--system", &name]);
        let out = Command::new("getent")
            .args(["group", &name])
            .output()
            .expect("getent");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let gid = line
            .split(':')
            .nth(2)
            .and_then(|g| g.parse().ok())
            .expect("gid");
        SystemGroup { name, gid }
    }
}

impl Drop for SystemGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}
