//! Real NETCONF servers behind nctls (yuma123 `netconfd` on a unix socket,
//! the ConfD emulator on TCP), third-party client drivers
//! (tests/interop/pyclient.py, tests/interop/ln2-client.c) and a minimal
//! NETCONF 1.0 session over our rustls client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{TempDir, TlsStream};

/// The repository root (tests run with it as their working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (wherever CARGO_TARGET_DIR puts it), where
/// `make venv` and `make interop-clients` put the third-party clients: the
/// tests' nctls is TARGET/debug/nctls.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_nctls"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .to_path_buf()
}

/// How many `<blob>` entries netconfd's startup config holds, each of
/// about 2 KiB: a `<get-config>` reply of a little over 4 MiB.
pub const BLOBS: usize = 2000;
/// The size of the ConfD emulator's `<get>`/`<get-config>` data.
pub const EMU_DATA: usize = 3_000_000;
/// How many 1009-byte filler entries confd-emu puts in `EMU_DATA` bytes.
pub const EMU_FILLER: usize = EMU_DATA / 1009;

fn missing(program: &str, e: std::io::Error, hint: &str) -> ! {
    panic!("{program} is needed by the NETCONF interop tests and cannot be run ({e}): {hint}")
}

/// yuma123 netconfd, private to one test: its own HOME, YUMA_HOME and
/// socket in a temp dir, the nctls-interop module loaded with a large
/// startup config.
pub struct Netconfd {
    child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
}

impl Netconfd {
    pub fn start() -> Netconfd {
        let dir = TempDir::new();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("netconfd data dir");
        let startup = dir.path().join("startup.xml");
        std::fs::write(&startup, startup_config()).expect("startup config");
        let socket = dir.path().join("ncx.sock");
        let modpath = format!(
            "{}:/usr/share/yuma/modules",
            root().join("tests/interop").display()
        );
        let mut child = Command::new("netconfd")
            .args([
                "--config=/dev/null".to_string(),
                format!("--ncxserver-sockname={}", socket.display()),
                "--superuser=admin".into(),
                format!("--startup={}", startup.display()),
                "--target=running".into(),
                format!("--modpath={modpath}"),
                "--module=nctls-interop".into(),
                // libnetconf2 fetches every advertised module with
                // <get-schema> right after its hello; netconfd then may
                // stall (see README, Interoperability). Without the
                // capability it uses its own modules.
                "--non-advertised-module=ietf-netconf-monitoring".into(),
            ])
            .env("HOME", dir.path())
            .env("YUMA_HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("netconfd.log")).expect("log"),
            ))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                missing(
                    "netconfd",
                    e,
                    "install it with `apt-get install -y netconfd` (or run .ci/run)",
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "netconfd exited ({status}):\n{}",
                    std::fs::read_to_string(dir.path().join("netconfd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "netconfd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Netconfd { child, dir, socket }
    }

    /// `--backend` for nctls.
    pub fn backend_arg(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("netconfd.log")).unwrap_or_default()
    }
}

impl Drop for Netconfd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of blob `i`: XML escapes that must survive byte-exact, the
/// first one also non-ASCII UTF-8. (Only the first: ncclient decodes each
/// base:1.1 chunk on its own and fails on a character split between
/// chunks, see README.)
fn blob_text(i: usize) -> String {
    let text = format!("#{i} &amp; &lt;tag&gt; ]]&gt;]]&gt; {}", "x".repeat(2000));
    if i == 0 {
        format!("\u{fc}\u{20ac} {text}")
    } else {
        text
    }
}

fn startup_config() -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <config xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\
         <blobs xmlns=\"urn:nctls:interop\">",
    );
    for i in 0..BLOBS {
        s.push_str(&format!(
            "<blob><name>b{i:05}</name><text>{}</text></blob>",
            blob_text(i)
        ));
    }
    s.push_str("</blobs></config>\n");
    s
}

/// examples/confd-emu on a free loopback port.
pub struct ConfdEmu {
    child: Child,
    pub addr: SocketAddr,
    /// Its log lines so far (it logs each session's decoded header).
    log: Arc<Mutex<Vec<String>>>,
}

impl ConfdEmu {
    pub fn start() -> ConfdEmu {
        let exe = Path::new(env!("CARGO_BIN_EXE_nctls"))
            .parent()
            .expect("target dir")
            .join("examples/confd-emu");
        let mut child = Command::new(&exe)
            .args(["--listen", "127.0.0.1:0", "--get-size"])
            .arg(EMU_DATA.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): cargo builds it", exe.display()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("confd-emu: listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("confd-emu did not start: {first:?}"));
        // Keep draining its log so it never blocks on a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ConfdEmu { child, addr, log }
    }

    /// The first log line containing `pattern`, waiting up to `timeout`.
    pub fn wait_log(&self, pattern: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(pattern))
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ConfdEmu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which server is behind nctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Netconfd,
    ConfdEmu,
}

/// A running backend of either kind.
pub enum Running {
    Netconfd(Netconfd),
    ConfdEmu(ConfdEmu),
}

impl Running {
    pub fn start(server: Server) -> Running {
        match server {
            Server::Netconfd => Running::Netconfd(Netconfd::start()),
            Server::ConfdEmu => Running::ConfdEmu(ConfdEmu::start()),
        }
    }

    /// nctls arguments for this backend.
    pub fn nctls_args(&self) -> Vec<String> {
        match self {
            Running::Netconfd(n) => {
                vec![
                    "--backend".into(),
                    n.backend_arg(),
                    "--header".into(),
                    "ncx".into(),
                ]
            }
            Running::ConfdEmu(e) => vec!["--backend".into(), e.addr.to_string()],
        }
    }
}

/// What a client driver printed: its `key=value` lines.
#[derive(Debug)]
pub struct Report {
    pub values: HashMap<String, String>,
    pub text: String,
}

impl Report {
    pub fn parse(stdout: &str, stderr: &str) -> Report {
        let values = stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Report {
            values,
            text: format!("--- stdout\n{stdout}\n--- stderr (tail)\n{}", tail(stderr)),
        }
    }

    pub fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {key}= in the report\n{}", self.text))
    }

    pub fn num(&self, key: &str) -> f64 {
        let v = self.get(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v} is not a number\n{}", self.text))
    }
}

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(4000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs a driver to completion (killed after `limit`): its exit status
/// (`None` if it had to be killed) and what it printed.
pub fn run_status(mut cmd: Command, limit: Duration) -> (Option<ExitStatus>, Report) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
    (status, Report::parse(&stdout, &stderr))
}

/// Like [`run_status`], failing on a non-zero exit; `None` if killed.
pub fn run_driver(cmd: Command, limit: Duration) -> (Option<Report>, String) {
    let what = format!("{cmd:?}");
    match run_status(cmd, limit) {
        (Some(s), report) if s.success() => (Some(report), String::new()),
        (Some(s), report) => panic!("{what} failed ({s})\n{}", report.text),
        (None, report) => (None, report.text),
    }
}

/// The virtualenv's Python with the PyPI clients, or a failure with a hint.
pub fn venv_python() -> PathBuf {
    let python = target_dir().join("venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import ncclient, netconf_client, netconf_console"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with ncclient, netconf-client and netconf-console2 is needed: run `make venv` \
         (needs python3-venv; .ci/run installs everything)",
        python.display()
    );
    python
}

/// The libnetconf2 test client, or a failure with a hint.
pub fn ln2_client() -> PathBuf {
    let exe = target_dir().join("interop/ln2-client");
    assert!(
        exe.exists(),
        "{} is needed: run `make interop-clients` (needs libnetconf2-dev, libssh-dev; \
         .ci/run installs them)",
        exe.display()
    );
    exe
}

/// A NETCONF base:1.0 session over our rustls client, for the second
/// party in scenarios whose first party is openssl or gnutls-cli.
pub struct Nc10 {
    pub stream: TlsStream,
    buf: Vec<u8>,
    next_id: u32,
    pub session_id: u32,
}

pub const HELLO: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>";

/// An `<rpc>` in base:1.0 framing.
pub fn rpc(id: u32, body: &str) -> String {
    format!(
        "<rpc message-id=\"{id}\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">{body}</rpc>]]>]]>"
    )
}

/// The `<session-id>` in a server hello.
pub fn session_id(hello: &str) -> Option<u32> {
    let start = hello.find("<session-id>")? + "<session-id>".len();
    let len = hello[start..].find('<')?;
    hello[start..start + len].trim().parse().ok()
}

/// "ok", the `<error-tag>`, or "data" for a reply.
pub fn outcome(reply: &str) -> String {
    if let Some(i) = reply.find("<error-tag>") {
        let rest = &reply[i + "<error-tag>".len()..];
        return rest[..rest.find('<').unwrap_or(rest.len())].to_string();
    }
    if reply.contains("<ok/>") {
        "ok".into()
    } else {
        "data".into()
    }
}

impl Nc10 {
    /// Hello exchange; waits `settle` before the first RPC (netconfd).
    pub fn open(stream: TlsStream, settle: Duration) -> Nc10 {
        let mut s = Nc10 {
            stream,
            buf: Vec::new(),
            next_id: 1,
            session_id: 0,
        };
        s.stream.write_all(HELLO.as_bytes()).expect("send hello");
        let hello = s.message();
        s.session_id = session_id(&hello).expect("session-id in hello");
        std::thread::sleep(settle);
        s
    }

    /// The next `]]>]]>`-framed message.
    pub fn message(&mut self) -> String {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(i) = self.buf.windows(6).position(|w| w == b"]]>]]>") {
                let msg: Vec<u8> = self.buf.drain(..i + 6).collect();
                return String::from_utf8_lossy(&msg[..i]).into_owned();
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("session ended while waiting for a message"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Sends one RPC, returns its reply's outcome.
    pub fn call(&mut self, body: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        self.stream
            .write_all(rpc(id, body).as_bytes())
            .expect("send rpc");
        outcome(&self.message())
    }
}

pub const LOCK: &str = "<lock><target><running/></target></lock>";
pub const GET_CONFIG: &str = "<get-config><source><running/></source></get-config>";
pub const GET: &str = "<get/>";
pub const CLOSE_SESSION: &str = "<close-session/>";

pub fn kill_session(id: u32) -> String {
    format!("<kill-session><session-id>{id}</session-id></kill-session>")
}
