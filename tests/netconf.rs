//! Interop with real NETCONF software through nctls: yuma123 `netconfd`
//! (behind `--header ncx --backend unix:...`) and the ConfD emulator as
//! servers; ncclient, netconf-client (PyPI), libnetconf2 (a small C client),
//! `openssl s_client` and `gnutls-cli` as clients, TLS 1.3 and 1.2.
//!
//! Every client runs the same scenarios (README, Interoperability):
//! 1 `basic`: hello, `<get-config>` and `<get>` of several MiB, `<lock>`;
//! 3 ... then `<close-session>`: `<ok/>` first, then close_notify;
//! 2 `kill`: A locks, B is denied, B kills A: A's TLS session ends with a
//!   clean close_notify within 100 ms of B's `<ok/>`, then B can lock;
//! 4 `drop`: A locks and drops TCP without close_notify: B can lock within 1 s;
//! 5 `notify`: A locks and sends close_notify: B can lock within 1 s.
//! The drivers report what they saw (`key=value`); the assertions are here.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::netconf::*;
use common::tlscli::*;
use common::*;

/// netconfd defers, then never answers, an `<rpc>` that arrives before it
/// processed the client's `<hello>`: clients wait this long after hello.
const SETTLE: Duration = Duration::from_millis(200);
const DRIVER_LIMIT: Duration = Duration::from_secs(60);
/// How soon after B's `<ok/>` to `<kill-session>` A must see close_notify.
const KILL_CLOSE_MS: f64 = 100.0;
/// How soon after A's end B must get the lock.
const RELOCK_MS: f64 = 1000.0;

struct Setup {
    pki: Pki,
    server: Server,
    daemon: Daemon,
    _backend: Running,
}

fn setup(server: Server, extra: &[&str]) -> Setup {
    let pki = Pki::new();
    pki.ca.client("admin").write(pki.dir.path(), "client");
    let backend = Running::start(server);
    let mut args = backend.nctls_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&pki, &args);
    Setup {
        pki,
        server,
        daemon,
        _backend: backend,
    }
}

impl Setup {
    fn settle(&self) -> Duration {
        match self.server {
            Server::Netconfd => SETTLE,
            Server::ConfdEmu => Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Basic,
    Kill,
    Drop,
    Notify,
}

const ALL: [Scenario; 4] = [
    Scenario::Basic,
    Scenario::Kill,
    Scenario::Drop,
    Scenario::Notify,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Basic => "basic",
            Scenario::Kill => "kill",
            Scenario::Drop => "drop",
            Scenario::Notify => "notify",
        }
    }
}

/// Asserts what a driver reported for `scenario`.
fn check(s: &Setup, scenario: Scenario, r: &Report, what: &str) {
    let ctx = |msg: &str| format!("{what} {scenario:?}: {msg}\n{}", r.text);
    let eq = |key: &str, want: &str| assert_eq!(r.get(key), want, "{}", ctx(key));
    eq("done", "yes");
    match scenario {
        Scenario::Basic => {
            assert!(r.num("session_id") > 0.0, "{}", ctx("session-id"));
            for prefix in ["get_config", "get"] {
                eq(prefix, "data");
                let bytes = r.num(&format!("{prefix}_bytes"));
                match s.server {
                    Server::Netconfd => {
                        assert!(bytes > 4_000_000.0, "{}", ctx(prefix));
                        eq(&format!("{prefix}_blobs"), &BLOBS.to_string());
                        eq(&format!("{prefix}_utf8"), "yes");
                        eq(&format!("{prefix}_escapes"), "yes");
                    }
                    Server::ConfdEmu => {
                        // libyang re-prints without the padding: count entries.
                        assert!(bytes > 2_900_000.0, "{}", ctx(prefix));
                        eq(&format!("{prefix}_filler"), &EMU_FILLER.to_string());
                    }
                }
            }
            eq("lock", "ok");
            eq("close_session", "ok");
            eq("end", "clean");
            // The reply came first: the end is seen after it, promptly.
            assert!(r.num("end_after_reply_ms") < 1000.0, "{}", ctx("end"));
        }
        Scenario::Kill => {
            eq("a_lock", "ok");
            eq("b_lock_before", "lock-denied");
            eq("kill", "ok");
            eq("a_end", "clean");
            let ms = r.num("a_end_after_ok_ms");
            assert!(ms < KILL_CLOSE_MS, "{}", ctx("close_notify too late"));
            eq("b_lock_after", "ok");
        }
        Scenario::Drop | Scenario::Notify => {
            eq("a_lock", "ok");
            if scenario == Scenario::Notify {
                eq("a_unwrap", "clean");
            }
            eq("b_lock_after", "ok");
            assert!(r.num("relock_ms") < RELOCK_MS, "{}", ctx("relock"));
        }
    }
}

fn pyclient(s: &Setup, lib: &str, scenario: Scenario, tls: &str) -> Command {
    let mut cmd = Command::new(venv_python());
    cmd.arg(root().join("tests/interop/pyclient.py"))
        .args([lib, scenario.name(), "--tls", tls])
        .args(["--port", &s.daemon.addr.port().to_string()])
        .arg("--pki")
        .arg(s.pki.dir.path());
    if s.server == Server::Netconfd {
        cmd.arg("--settle");
    }
    cmd
}

fn ln2(s: &Setup, scenario: Scenario, tls: &str) -> Command {
    let mut cmd = Command::new(ln2_client());
    cmd.args([scenario.name(), "--tls", tls])
        .args(["--port", &s.daemon.addr.port().to_string()])
        .arg("--pki")
        .arg(s.pki.dir.path())
        // libnetconf2 needs ietf-netconf & co. locally when the server
        // does not offer <get-schema>: netconfd's package ships them.
        .args(["--yang", "/usr/share/yuma/modules"]);
    if s.server == Server::Netconfd {
        cmd.arg("--settle");
    }
    cmd
}

fn run(cmd: Command, what: &str) -> Report {
    let (report, text) = run_driver(cmd, DRIVER_LIMIT);
    report.unwrap_or_else(|| panic!("{what}: killed after {DRIVER_LIMIT:?}\n{text}"))
}

fn python_matrix(server: Server, lib: &str, versions: &[&str]) {
    let s = setup(server, &[]);
    for scenario in ALL {
        for tls in versions {
            let what = format!("{lib} TLS {tls} via nctls to {server:?}");
            let r = run(pyclient(&s, lib, scenario, tls), &what);
            assert_eq!(r.get("tls"), format!("TLSv{tls}"), "{what}");
            check(&s, scenario, &r, &what);
        }
    }
}

fn ln2_matrix(server: Server) {
    let s = setup(server, &[]);
    for scenario in ALL {
        // `lib`: nc_connect_tls() with libnetconf2's own TLS setup.
        for tls in ["lib", "1.3", "1.2"] {
            if tls == "lib" && matches!(scenario, Scenario::Drop | Scenario::Notify) {
                continue; // these need the client's SSL object
            }
            let what = format!("libnetconf2 TLS {tls} via nctls to {server:?}");
            let r = run(ln2(&s, scenario, tls), &what);
            if tls != "lib" {
                assert_eq!(r.get("tls"), format!("TLSv{tls}"), "{what}");
            }
            check(&s, scenario, &r, &what);
        }
    }
}

#[test]
fn ncclient_through_nctls_to_netconfd() {
    python_matrix(Server::Netconfd, "ncclient", &["1.3", "1.2"]);
}

#[test]
fn ncclient_through_nctls_to_confd_emu() {
    python_matrix(Server::ConfdEmu, "ncclient", &["1.3", "1.2"]);
}

#[test]
fn netconf_client_through_nctls_to_netconfd() {
    python_matrix(Server::Netconfd, "netconf-client", &["1.2"]);
}

#[test]
fn netconf_client_through_nctls_to_confd_emu() {
    python_matrix(Server::ConfdEmu, "netconf-client", &["1.2"]);
}

#[test]
fn libnetconf2_through_nctls_to_netconfd() {
    ln2_matrix(Server::Netconfd);
}

#[test]
fn libnetconf2_through_nctls_to_confd_emu() {
    ln2_matrix(Server::ConfdEmu);
}

/// Stock ncclient 0.7.x reads 4096 bytes at a time and then waits for the
/// socket to become readable again, so a TLS record with more plaintext
/// strands the rest in OpenSSL's buffer (its bug #651): with 16 KiB
/// records netconfd's 4.3 KB hello can never complete. Whether it does
/// depends on netconfd writing its hello in one piece (most runs here), so
/// a few attempts are made and one hang proves the point. The default
/// (`--max-record 4096`) is what makes every ncclient test above pass.
#[test]
fn stock_ncclient_hangs_with_16k_records() {
    let s = setup(Server::Netconfd, &["--max-record", "16384"]);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (report, text) = run_driver(
            pyclient(&s, "ncclient", Scenario::Basic, "1.3"),
            Duration::from_secs(5),
        );
        if report.is_none() && !text.contains("session_id=") {
            return;
        }
        seen.push(text);
    }
    panic!(
        "ncclient connected 5 times despite 16 KiB records: its bug #651 may be fixed; \
         revisit --max-record's default\n{seen:?}"
    );
}

/// netconf-console2 (Tail-f's client) speaks ConfD's TCP transport itself:
/// it writes its own `[user;ip;tcp;uid;gid;;home;;]` header and prefixed
/// `<nc:rpc>`s, so the emulator is checked against real ConfD client input.
#[test]
fn netconf_console2_talks_to_confd_emu_over_tcp() {
    let emu = ConfdEmu::start();
    let python = venv_python();
    let console = python.with_file_name("netconf-console2");
    let base = |cmd: &mut Command| {
        cmd.args(["--host", "127.0.0.1", "--port"])
            .arg(emu.addr.port().to_string())
            .args(["--tcp", "-u", "admin"]);
    };
    // Session 1 locks, then sleeps with the session open.
    let mut a = Command::new(&console);
    base(&mut a);
    a.args(["--lock", "--sleep", "4", "--get-config"]);
    let holder = std::thread::spawn(move || run_status(a, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(1500));
    // Session 2 kills session 1 (the emulator numbers sessions from 1),
    // takes the lock and reads the data.
    let mut b = Command::new(&console);
    base(&mut b);
    b.args(["--kill-session", "1", "--lock", "--get-config"]);
    let (report, text) = run_driver(b, Duration::from_secs(20));
    let report = report.unwrap_or_else(|| panic!("netconf-console2 hung\n{text}"));
    assert!(
        report.text.matches("<ok").count() >= 2,
        "kill-session and lock not both ok\n{}",
        report.text
    );
    assert!(
        report.text.matches("nctls filler").count() == EMU_FILLER,
        "{}",
        report.text
    );
    // Session 1 was killed while it slept: its <get-config> fails.
    let (status, first) = holder.join().expect("session 1 thread");
    assert!(
        status.is_some_and(|s| !s.success()) && !first.text.contains("nctls filler"),
        "session 1 survived its kill ({status:?})\n{}",
        first.text
    );
}

/// A third-party TLS client (openssl, gnutls-cli) as party A, fed NETCONF
/// through its stdin; party B is our rustls client.
struct Raw {
    client: Client,
    session_id: u32,
    messages: usize,
}

impl Raw {
    fn open(s: &Setup, tool: Tool, version: Version) -> Raw {
        let mut client = Client::start(tool, &s.pki, s.daemon.addr, version);
        client.send(HELLO.as_bytes());
        let out = client
            .wait_stdout("]]>]]>", 1, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{tool:?} {version:?}: no hello"));
        let session_id = session_id(&out).expect("session-id");
        std::thread::sleep(s.settle());
        Raw {
            client,
            session_id,
            messages: 1,
        }
    }

    /// Sends an RPC and returns its reply (the text after the previous message).
    fn call(&mut self, body: &str) -> String {
        self.client.send(rpc(self.messages as u32, body).as_bytes());
        self.messages += 1;
        let out = self
            .client
            .wait_stdout("]]>]]>", self.messages, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no reply to {body}"));
        let replies: Vec<&str> = out.split("]]>]]>").collect();
        replies[self.messages - 1].to_string()
    }
}

fn party_b(s: &Setup, version: Version) -> Nc10 {
    let stream = connect(s.daemon.addr, s.pki.client("admin", version)).expect("B connects");
    Nc10::open(stream, s.settle())
}

fn relock(b: &mut Nc10) -> f64 {
    let since = Instant::now();
    loop {
        let got = b.call(LOCK);
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        if got == "ok" {
            return ms;
        }
        assert!(ms < 3000.0, "lock still {got} after {ms} ms");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raw_matrix(server: Server, tool: Tool) {
    let s = setup(server, &[]);
    for version in BOTH {
        let what = format!("{tool:?} {version:?} via nctls to {server:?}");
        // 1 and 3: data, lock, then close-session: <ok/>, then close_notify.
        let mut a = Raw::open(&s, tool, version);
        for body in [GET_CONFIG, GET] {
            let reply = a.call(body);
            match server {
                Server::Netconfd => {
                    assert!(reply.len() > 4_000_000, "{what}: {} bytes", reply.len());
                    assert_eq!(reply.matches("<blob>").count(), BLOBS, "{what}");
                    assert!(reply.contains("\u{fc}\u{20ac} #0 &amp; &lt;tag&gt; ]]&gt;]]&gt;"));
                }
                Server::ConfdEmu => {
                    assert!(reply.len() > EMU_DATA, "{what}: {} bytes", reply.len());
                    assert_eq!(reply.matches("nctls filler").count(), EMU_FILLER, "{what}");
                }
            }
        }
        assert_eq!(outcome(&a.call(LOCK)), "ok", "{what}");
        assert_eq!(outcome(&a.call(CLOSE_SESSION)), "ok", "{what}");
        let run = a.client.finish();
        assert_version(tool, version, &run);
        assert_clean_close_received(tool, version, &run);

        // 2: kill-session.
        let mut a = Raw::open(&s, tool, version);
        assert_eq!(outcome(&a.call(LOCK)), "ok", "{what}");
        let mut b = party_b(&s, version);
        assert_eq!(b.call(LOCK), "lock-denied", "{what}");
        assert_eq!(b.call(&kill_session(a.session_id)), "ok", "{what}");
        let ok_at = Instant::now();
        let run = a.client.finish();
        let took = ok_at.elapsed();
        assert_clean_close_received(tool, version, &run);
        // The process exit (polled every 10 ms) bounds when it saw the close.
        assert!(
            took.as_secs_f64() * 1000.0 < KILL_CLOSE_MS,
            "{what}: exited {took:?} after the kill's <ok/>"
        );
        assert_eq!(b.call(LOCK), "ok", "{what}");
        drop(b);

        // 4: A is killed (its socket closes without close_notify).
        let mut a = Raw::open(&s, tool, version);
        assert_eq!(outcome(&a.call(LOCK)), "ok", "{what}");
        let mut b = party_b(&s, version);
        a.client.child.kill().expect("kill client");
        let ms = relock(&mut b);
        assert!(ms < RELOCK_MS, "{what}: relock after drop took {ms} ms");
        drop(b);

        // 5: stdin EOF: the client sends close_notify.
        let mut a = Raw::open(&s, tool, version);
        assert_eq!(outcome(&a.call(LOCK)), "ok", "{what}");
        let mut b = party_b(&s, version);
        a.client.close_stdin();
        let ms = relock(&mut b);
        assert!(
            ms < RELOCK_MS,
            "{what}: relock after close_notify took {ms} ms"
        );
        let run = a.client.finish();
        assert!(run.status.success(), "{what}\n{}", run.dump());
        assert!(
            !run.stderr.contains("unexpected eof"),
            "{what}\n{}",
            run.dump()
        );
        if tool == Tool::GnuTls {
            // gnutls-cli reads on after its close_notify: it sees ours.
            assert_clean_close_received(tool, version, &run);
        }
    }
}

#[test]
fn openssl_through_nctls_to_netconfd() {
    raw_matrix(Server::Netconfd, Tool::OpenSsl);
}

#[test]
fn openssl_through_nctls_to_confd_emu() {
    raw_matrix(Server::ConfdEmu, Tool::OpenSsl);
}

#[test]
fn gnutls_through_nctls_to_netconfd() {
    raw_matrix(Server::Netconfd, Tool::GnuTls);
}

#[test]
fn gnutls_through_nctls_to_confd_emu() {
    raw_matrix(Server::ConfdEmu, Tool::GnuTls);
}
