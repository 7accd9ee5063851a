//! Network namespaces of a test's own (loopback only), for tests that need
//! fixed ports, extra local addresses or the kernel's TCP counters without
//! seeing other tests' traffic; and a private `/etc/hosts` for one child.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A network namespace with `lo` up, removed when dropped (also when the
/// test fails).
pub struct Netns {
    pub name: String,
    handle: File,
}

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "nctls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        // From here on Drop removes it, whatever fails next.
        let handle = File::open(format!("/run/netns/{name}"));
        let ns = Netns {
            name,
            handle: handle.expect("open /run/netns/NAME"),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `f` on a thread inside the namespace: its sockets, and the
    /// processes it starts, live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let thread = s.spawn(|| {
                // SAFETY: setns on a namespace descriptor we hold; it moves
                // only the calling thread.
                let rc = unsafe { libc::setns(self.handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            });
            match thread.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `TcpExt` counter of the calling thread's network namespace (call it
/// inside [`Netns::run`]), e.g. `TCPAbortOnData`.
pub fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").expect("netstat");
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().expect("names"), lines.next().expect("values"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.parse().expect("a number"))
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Makes the child see `hosts` as its `/etc/hosts` (a mount namespace of
/// its own, made between fork and exec), so a test controls name lookups.
pub fn private_hosts(command: &mut Command, hosts: &Path) {
    let source = CString::new(hosts.as_os_str().as_encoded_bytes()).unwrap();
    let target = CString::new("/etc/hosts").unwrap();
    let root = CString::new("/").unwrap();
    // SAFETY: only async-signal-safe system calls between fork and exec,
    // on strings made before the fork.
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            // Keep the bind mount out of the parent's namespace.
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
}
