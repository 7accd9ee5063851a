//! Third-party TLS clients as child processes: `openssl s_client` and
//! `gnutls-cli`, fed through stdin, their output collected, and how each
//! saw the end of its TLS session (see tests/interop.rs for what each
//! prints and what we assert on).

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{send_all, Pki, Version};

pub const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    OpenSsl,
    GnuTls,
}

/// Fails (never skips) when a client program is missing.
pub fn require(program: &str) {
    let found = Command::new(program)
        .arg(if program == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = found {
        panic!(
            "{program} is needed by the interop tests and cannot be run ({e}): \
             install it with `apt-get install -y gnutls-bin openssl` (or run .ci/run)"
        );
    }
}

/// A third-party client process, its stdin held open until we drop it.
pub struct Client {
    pub tool: Tool,
    pub version: Version,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<JoinHandle<Vec<u8>>>,
    /// stdout as it arrives, for waiting on replies mid-session.
    pub live: Arc<(Mutex<Vec<u8>>, Condvar)>,
    pub stderr: Option<JoinHandle<Vec<u8>>>,
    /// openssl's `-msgfile`: the protocol trace.
    pub msgfile: Option<PathBuf>,
}

/// What a finished client printed.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// openssl's protocol trace (empty for gnutls-cli, which traces on stderr).
    pub trace: String,
}

impl Run {
    pub fn dump(&self) -> String {
        format!(
            "status {}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}\n--- trace (tail)\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr),
            tail(&self.trace)
        )
    }
}

pub fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(3000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Client {
    pub fn start(tool: Tool, pki: &Pki, addr: SocketAddr, version: Version) -> Client {
        let (program, args, msgfile) = match tool {
            Tool::OpenSsl => {
                let trace =
                    pki.dir
                        .path()
                        .join(format!("openssl-msg-{:?}-{}.txt", version, next_id()));
                let args = vec![
                    "s_client".to_string(),
                    "-connect".into(),
                    addr.to_string(),
                    "-cert".into(),
                    pki.file("client.pem"),
                    "-key".into(),
                    pki.file("client-key.pem"),
                    "-CAfile".into(),
                    pki.file("x509-ca.pem"),
                    "-verify_return_error".into(),
                    match version {
                        Version::Tls13 => "-tls1_3".into(),
                        Version::Tls12 => "-tls1_2".into(),
                    },
                    "-msg".into(),
                    "-msgfile".into(),
                    trace.display().to_string(),
                ];
                ("openssl", args, Some(trace))
            }
            Tool::GnuTls => {
                let args = vec![
                    "--x509cafile".to_string(),
                    pki.file("x509-ca.pem"),
                    "--x509certfile".into(),
                    pki.file("client.pem"),
                    "--x509keyfile".into(),
                    pki.file("client-key.pem"),
                    "--priority".into(),
                    match version {
                        Version::Tls13 => "NORMAL:-VERS-ALL:+VERS-TLS1.3".into(),
                        Version::Tls12 => "NORMAL:-VERS-ALL:+VERS-TLS1.2".into(),
                    },
                    "-d".into(),
                    "5".into(),
                    "-p".into(),
                    addr.port().to_string(),
                    addr.ip().to_string(),
                ];
                ("gnutls-cli", args, None)
            }
        };
        require(program);
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let live = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = live.clone();
        let stdout = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
                        sink.1.notify_all();
                    }
                }
            }
            let v = sink.0.lock().unwrap().clone();
            v
        });
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        Client {
            tool,
            version,
            child,
            stdin,
            stdout: Some(stdout),
            live,
            stderr: Some(stderr),
            msgfile,
        }
    }

    /// Waits until stdout so far contains `pattern` `count` times; returns
    /// stdout so far, or `None` after `timeout`.
    pub fn wait_stdout(&self, pattern: &str, count: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.live;
        let mut out = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&out);
            if text.matches(pattern).count() >= count {
                return Some(text.into_owned());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            out = cond.wait_timeout(out, deadline - now).unwrap().0;
        }
    }

    pub fn send(&mut self, data: &[u8]) {
        send_all(self.stdin.as_mut().expect("stdin still open"), data);
    }

    /// EOF on the client's stdin: both clients then close the session.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the client to exit by itself (stdin still open), killing it
    /// and failing after the deadline.
    pub fn finish(mut self) -> Run {
        self.wait_and_collect()
    }

    pub fn wait_and_collect(&mut self) -> Run {
        let deadline = Instant::now() + CLIENT_DEADLINE;
        let mut killed = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                killed = true;
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.stdin = None;
        let join = |h: Option<JoinHandle<Vec<u8>>>| {
            let bytes = h.map(|h| h.join().unwrap()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let trace = self
            .msgfile
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .unwrap_or_default();
        let run = Run {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
            trace: String::from_utf8_lossy(&trace).into_owned(),
        };
        assert!(
            !killed,
            "{:?} {:?} did not exit within {CLIENT_DEADLINE:?} (killed)\n{}",
            self.tool,
            self.version,
            run.dump()
        );
        run
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

pub fn tls_name(version: Version) -> &'static str {
    match version {
        Version::Tls13 => "TLSv1_3",
        Version::Tls12 => "TLSv1_2",
    }
}

/// The client used the version it was asked for, by its own account.
pub fn assert_version(tool: Tool, version: Version, run: &Run) {
    let want = match (tool, version) {
        (Tool::OpenSsl, Version::Tls13) => "New, TLSv1.3, Cipher is ",
        (Tool::OpenSsl, Version::Tls12) => "New, TLSv1.2, Cipher is ",
        (Tool::GnuTls, Version::Tls13) => "- Description: (TLS1.3-",
        (Tool::GnuTls, Version::Tls12) => "- Description: (TLS1.2-",
    };
    assert!(
        run.stdout.contains(want),
        "{tool:?} {version:?}: no {want:?}\n{}",
        run.dump()
    );
}

/// The client saw the server's close_notify after all data, and no ragged EOF.
pub fn assert_clean_close_received(tool: Tool, version: Version, run: &Run) {
    let ctx = || format!("{tool:?} {version:?}\n{}", run.dump());
    assert!(run.status.success(), "exit status: {}", ctx());
    match tool {
        Tool::OpenSsl => {
            let alert = match version {
                Version::Tls13 => "<<< TLS 1.3, Alert [length 0002], warning close_notify",
                Version::Tls12 => "<<< TLS 1.2, Alert [length 0002], warning close_notify",
            };
            let at = run
                .trace
                .find(alert)
                .unwrap_or_else(|| panic!("no received close_notify: {}", ctx()));
            assert!(
                !run.trace[at..].contains("\n<<< "),
                "records after the close_notify: {}",
                ctx()
            );
            assert!(
                // Right after the data: NETCONF messages end without a newline.
                run.stdout
                    .lines()
                    .any(|l| l == "closed" || l.ends_with("]]>]]>closed")),
                "no `closed`: {}",
                ctx()
            );
            assert!(
                !run.stderr.contains("unexpected eof"),
                "ragged EOF: {}",
                ctx()
            );
            assert!(!run.stderr.contains(":error:"), "error: {}", ctx());
        }
        Tool::GnuTls => {
            let all = format!("{}\n{}", run.stdout, run.stderr);
            assert!(
                run.stderr
                    .contains("Alert[1|0] - Close notify - was received"),
                "no received close_notify: {}",
                ctx()
            );
            assert!(
                all.contains("Peer has closed the GnuTLS connection"),
                "no `Peer has closed`: {}",
                ctx()
            );
            for bad in [
                "Error in the pull function",
                "non-properly terminated",
                "*** Fatal error",
                "terminated the connection abnormally",
            ] {
                assert!(!all.contains(bad), "{bad:?}: {}", ctx());
            }
        }
    }
}
