//! The network side of nctls (issue 10, items 3 to 7): every backend
//! address tried, TCP keepalive on client sockets, sessions nctls ends
//! itself never ending in a TCP reset, canonical client addresses, v4 and
//! v6 wildcard listeners together and IPv6 zones by name.
//!
//! Tests that need fixed ports, extra addresses or the kernel's TCP
//! counters run in a network namespace of their own (`common::netns`).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::netns::Netns;
use common::*;

const SOON: Duration = Duration::from_secs(5);

/// `pki`'s server files plus `args`, started in the current namespace.
fn daemon(pki: &Pki, args: &[&str]) -> Daemon {
    let mut all = pki.server_args();
    all.extend(args.iter().map(|s| s.to_string()));
    Daemon::spawn(&all, pki.dir.path())
}

/// One session from `client_to`: its backend header and session-end line.
fn one_session(daemon: &Daemon, pki: &Pki, backend: &Backend, to: SocketAddr) -> (String, String) {
    let mut c = connect(to, pki.client("admin", Version::Tls13)).unwrap();
    c.write_all(b"x").unwrap();
    let (b, header) = backend
        .accept_within(SOON)
        .unwrap_or_else(|| panic!("no backend connection: {:#?}", daemon.log_lines()));
    drop(b);
    let (_, ending) = read_to_end(&mut c);
    assert_eq!(ending, Ending::CloseNotify);
    let port = local(&c).port();
    drop(c);
    let line = daemon
        .wait_log(&format!(":{port} "), SOON)
        .unwrap_or_else(|| panic!("no session end: {:#?}", daemon.log_lines()));
    (header, line)
}

// ---------------------------------------------------------------------------
// Item 6: source addresses are canonical everywhere.

/// An IPv4 client on a `[::]` listener is 127.0.0.1 in ConfD's header and
/// in the log, and counts as the same address as on a v4 listener for
/// `--max-sessions-per-ip`.
#[test]
fn item6_ipv4_client_on_a_v6_wildcard_is_ipv4_everywhere() {
    let pki = Pki::new();
    let backend = Backend::new();
    let d = daemon(
        &pki,
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::]:0",
            "--backend",
            &backend.arg(),
            "--max-sessions-per-ip",
            "1",
        ],
    );
    let addrs = d.listen_addrs();
    let v6_port = addrs[1].port();
    let via_v6: SocketAddr = format!("127.0.0.1:{v6_port}").parse().unwrap();
    let (header, line) = one_session(&d, &pki, &backend, via_v6);
    assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
    assert!(line.contains("client=127.0.0.1:"), "{line}");

    // One live session over the v4 listener; a second one from the same
    // address through the v6 listener is the same client address.
    let mut first = connect(addrs[0], pki.client("admin", Version::Tls13)).unwrap();
    first.write_all(b"x").unwrap();
    let (_b, _) = backend.accept_within(SOON).expect("first session");
    let mut second = connect(via_v6, pki.client("admin", Version::Tls13)).unwrap();
    let (_, ending) = read_to_end(&mut second);
    assert_eq!(ending, Ending::CloseNotify);
    send_close_notify(&mut second);
    let line = end_line(&d, local(&second));
    assert_reason(&line, "refused");
    assert_eq!(end_detail(&line), "max-sessions-per-ip reached", "{line}");
}

// ---------------------------------------------------------------------------
// Item 7: listeners.

/// `--listen 0.0.0.0:6513 --listen [::]:6513` binds both (IPV6_V6ONLY on the
/// v6 one) and serves IPv4 and IPv6 clients, each shown in its own family.
#[test]
fn item7_v4_and_v6_wildcards_on_one_port() {
    let ns = Netns::new();
    ns.run(|| {
        let pki = Pki::new();
        let backend = Backend::new();
        let d = daemon(
            &pki,
            &[
                "--listen",
                "0.0.0.0:6513",
                "--listen",
                "[::]:6513",
                "--backend",
                &backend.arg(),
            ],
        );
        let (header, line) = one_session(&d, &pki, &backend, "127.0.0.1:6513".parse().unwrap());
        assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
        assert!(line.contains("client=127.0.0.1:"), "{line}");
        let (header, line) = one_session(&d, &pki, &backend, "[::1]:6513".parse().unwrap());
        assert!(header.starts_with("[admin;::1/"), "{header}");
        assert!(line.contains("client=[::1]:"), "{line}");
    });
}

/// `[::]` alone accepts IPv4 clients too (dual stack, whatever the
/// system's `net.ipv6.bindv6only`).
#[test]
fn item7_v6_wildcard_alone_accepts_ipv4() {
    let ns = Netns::new();
    ns.run(|| {
        // This namespace only: a system that makes v6 sockets v6-only by default.
        std::fs::write("/proc/sys/net/ipv6/bindv6only", "1").expect("set bindv6only");
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
                .unwrap()
                .trim(),
            "1"
        );
        let pki = Pki::new();
        let backend = Backend::new();
        let d = daemon(
            &pki,
            &["--listen", "[::]:6513", "--backend", &backend.arg()],
        );
        let (header, _) = one_session(&d, &pki, &backend, "127.0.0.1:6513".parse().unwrap());
        assert!(header.starts_with("[admin;127.0.0.1/"), "{header}");
    });
}

/// A link-local address with its zone by interface name, in `--listen` and
/// `--backend`; the zone stays in ConfD's source field and the log.
#[test]
fn item7_link_local_addresses_with_zone_names() {
    let ns = Netns::new();
    ns.ip(&["addr", "add", "fe80::1/64", "dev", "lo", "nodad"]);
    ns.run(|| {
        let pki = Pki::new();
        // lo is interface 1 in every network namespace.
        let local: SocketAddr =
            std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 2023, 0, 1).into();
        let listener = TcpListener::bind(local).expect("bind fe80::1%lo");
        let backend = Backend {
            addr: local,
            listener,
        };
        let d = daemon(
            &pki,
            &[
                "--listen",
                "127.0.0.1:6514",
                "--listen",
                "[fe80::1%lo]:6513",
                "--backend",
                "[fe80::1%lo]:2023",
            ],
        );
        let to: SocketAddr =
            std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 6513, 0, 1).into();
        let (header, line) = one_session(&d, &pki, &backend, to);
        assert!(header.starts_with("[admin;fe80::1%lo/"), "{header}");
        assert!(line.contains("client=[fe80::1%lo]:"), "{line}");
    });
}

// ---------------------------------------------------------------------------
// Item 3: every backend address is tried.

/// Stock Debian's `/etc/hosts` lines for localhost (this machine's own may
/// differ): `localhost` resolves to `::1` first, then 127.0.0.1.
const DEBIAN_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// nctls with `hosts` as its `/etc/hosts`.
fn daemon_with_hosts(pki: &Pki, hosts: &std::path::Path, args: &[&str]) -> Daemon {
    let hosts = hosts.to_path_buf();
    Daemon::start_with(pki, args, move |cmd| netns::private_hosts(cmd, &hosts))
}

/// `--backend localhost:PORT` with the backend on 127.0.0.1 only: `::1`
/// refuses, 127.0.0.1 serves at once, the log says which served, and
/// `--check` lists both in order.
#[test]
fn item3_refused_address_gives_way_to_the_next() {
    let pki = Pki::new();
    let hosts = pki.dir.path().join("hosts");
    std::fs::write(&hosts, DEBIAN_HOSTS).unwrap();
    let backend = Backend::new();
    let port = backend.addr.port();
    let name = format!("localhost:{port}");

    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_nctls"));
    check
        .args(pki.server_args())
        .args(["--backend", &name, "--check"]);
    netns::private_hosts(&mut check, &hosts);
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "# backend addresses: [::1]:{port} 127.0.0.1:{port}\n"
        )),
        "{stdout}"
    );

    let d = daemon_with_hosts(&pki, &hosts, &["--backend", &name]);
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let (header, line) = one_session(&d, &pki, &backend, d.addr);
        assert!(header.starts_with("[admin;"), "{header}");
        assert_eq!(
            end_field(&line, "backend"),
            Some(&*format!("127.0.0.1:{port}")),
            "{line}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "refused means next at once"
        );
    }
}

/// A first address that never answers (SYNs dropped) gives way to the next
/// after `--connect-timeout`.
#[test]
fn item3_silent_address_gives_way_after_the_connect_timeout() {
    let pki = Pki::new();
    let hosts = pki.dir.path().join("hosts");
    std::fs::write(&hosts, DEBIAN_HOSTS).unwrap();
    let backend = Backend::new();
    let port = backend.addr.port();
    // [::1]:PORT: a listener with backlog 0 whose one queue entry is taken.
    let silent = sys_listener(format!("[::1]:{port}").parse().unwrap(), 0);
    let _filler =
        std::net::TcpStream::connect_timeout(&silent.local_addr().unwrap(), SOON).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        std::net::TcpStream::connect_timeout(
            &silent.local_addr().unwrap(),
            Duration::from_millis(300)
        )
        .is_err(),
        "the silent listener answered"
    );
    let name = format!("localhost:{port}");
    let d = daemon_with_hosts(
        &pki,
        &hosts,
        &["--backend", &name, "--connect-timeout", "0.5"],
    );
    let t = std::time::Instant::now();
    let (header, line) = one_session(&d, &pki, &backend, d.addr);
    let took = t.elapsed();
    assert!(header.starts_with("[admin;"), "{header}");
    assert_eq!(
        end_field(&line, "backend"),
        Some(&*format!("127.0.0.1:{port}")),
        "{line}"
    );
    assert!(
        took >= Duration::from_millis(400),
        "served after the timeout: {took:?}"
    );
}

/// A listener with the given backlog (std always uses 128).
fn sys_listener(addr: SocketAddr, backlog: i32) -> TcpListener {
    use std::os::fd::AsRawFd;
    let l = TcpListener::bind(addr).unwrap();
    // SAFETY: listen() on a socket we own, changing only its backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), backlog) }, 0);
    l
}

/// SIGHUP resolves the backend's name again, on a thread: while the reload
/// is stuck (its config file is a FIFO nobody writes yet) sessions are still
/// served with the old configuration; SIGHUPs meanwhile make one more reload.
#[test]
fn item3_sighup_resolves_again_off_the_loop() {
    let pki = Pki::new();
    let hosts = pki.dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1\tnctls-backend\n").unwrap();
    let old = Backend::new();
    let port = old.addr.port();
    let new = Backend {
        listener: TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2"),
        addr: format!("127.0.0.2:{port}").parse().unwrap(),
    };
    let conf = pki.dir.path().join("nctls.conf");
    let text = format!("backend = nctls-backend:{port}\n");
    std::fs::write(&conf, &text).unwrap();
    let d = daemon_with_hosts(&pki, &hosts, &["--config", conf.to_str().unwrap()]);
    one_session(&d, &pki, &old, d.addr);

    // The name moves; the config file becomes a FIFO the reload blocks on.
    std::fs::write(&hosts, "127.0.0.2\tnctls-backend\n").unwrap();
    std::fs::remove_file(&conf).unwrap();
    let path = std::ffi::CString::new(conf.to_str().unwrap()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    d.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    let (_, line) = one_session(&d, &pki, &old, d.addr);
    assert!(
        line.contains("backend=127.0.0.1:"),
        "old configuration meanwhile: {line}"
    );
    d.signal("HUP");
    d.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));

    // Two reloads read the FIFO: the one running and one more.
    for n in 1..=2 {
        std::fs::write(&conf, &text).unwrap();
        d.wait_logs("reload: done", n, SOON)
            .unwrap_or_else(|| panic!("reload {n}: {:#?}", d.log_lines()));
    }
    let (_, line) = one_session(&d, &pki, &new, d.addr);
    assert!(
        line.contains(&format!("backend=127.0.0.2:{port}")),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.wait_logs("reload: done", 3, Duration::ZERO),
        None,
        "coalesced"
    );
}

// ---------------------------------------------------------------------------
// Item 4: TCP keepalive on client sockets.

/// `ss -o`'s line for the daemon's side of `client`'s connection.
fn ss_server_side(daemon: &Daemon, client: &TlsStream) -> String {
    let filter = format!(
        "( sport = :{} and dport = :{} )",
        daemon.addr.port(),
        local(client).port()
    );
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

/// By default an accepted client socket has a 300 s keepalive timer;
/// `--tcp-keepalive SECS` sets it; 0 turns it off.
#[test]
fn item4_keepalive_timer_on_client_sockets() {
    let pki = Pki::new();
    let backend = Backend::new();
    for (arg, expect) in [
        (None, Some("timer:(keepalive,4min5")),
        (Some("7"), Some("timer:(keepalive,")),
        (Some("0"), None),
    ] {
        let mut args = vec!["--backend".to_string(), backend.arg()];
        if let Some(secs) = arg {
            args.extend(["--tcp-keepalive".to_string(), secs.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let d = Daemon::start(&pki, &args);
        let mut c = connect(d.addr, pki.client("admin", Version::Tls13)).unwrap();
        c.write_all(b"x").unwrap();
        let (_b, _) = backend.accept_within(SOON).expect("session");
        let line = ss_server_side(&d, &c);
        match expect {
            Some(timer) => assert!(line.contains(timer), "{arg:?}: {line}"),
            None => assert!(!line.contains("keepalive"), "{arg:?}: {line}"),
        }
        if arg == Some("7") {
            // 7 s idle: the timer counts down from at most 7 s.
            let secs: u64 = line
                .split("timer:(keepalive,")
                .nth(1)
                .and_then(|t| t.split("sec").next())
                .and_then(|t| t.split('.').next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("{line}"));
            assert!(secs <= 7, "{line}");
        }
    }
}

// ---------------------------------------------------------------------------
// Item 5: a session nctls ends itself never ends in a TCP reset.

/// The kernel's count of connections it reset because the application
/// closed with unread data, or data came after the close (this namespace).
fn aborts() -> (u64, u64) {
    (
        netns::tcp_ext("TCPAbortOnClose"),
        netns::tcp_ext("TCPAbortOnData"),
    )
}

/// 1 MiB of one NETCONF RPC, as a client pipelining right after its hello.
fn big_rpc() -> Vec<u8> {
    let mut rpc = b"<rpc message-id=\"1\"><edit-config><config>".to_vec();
    rpc.resize(1 << 20, b'x');
    rpc
}

/// A client that writes `data` right after the handshake, then reads to the
/// end, then closes (FIN): the write must go through and the end must be a
/// close_notify, not a reset or EPIPE.
fn pipeline_then_read(
    d: &Daemon,
    config: std::sync::Arc<rustls::ClientConfig>,
    data: &[u8],
) -> (SocketAddr, Ending) {
    let mut c = connect(d.addr, config).unwrap();
    c.sock
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let wrote = c.write_all(data).and_then(|()| c.flush());
    let (_, ending) = read_to_end(&mut c);
    assert!(
        wrote.is_ok(),
        "the client's write failed: {wrote:?} (then {ending:?})"
    );
    (local(&c), ending)
}

/// Waits for the daemon's session end line, then for the kernel to act on
/// the close, and checks that no connection in this namespace was reset.
fn assert_no_reset(d: &Daemon, client: SocketAddr, reason: &str) {
    let line = end_line(d, client);
    assert_reason(&line, reason);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        aborts(),
        (0, 0),
        "TCPAbortOnClose, TCPAbortOnData after {line}"
    );
}

/// A client whose certificate maps to no user pipelines a 1 MiB RPC right
/// after the handshake: it reads a clean close_notify, and the kernel
/// resets nothing.
#[test]
fn item5_refused_identity_with_a_pipelined_rpc_is_no_reset() {
    let ns = Netns::new();
    ns.run(|| {
        let pki = Pki::new();
        let backend = Backend::new();
        let d = Daemon::start(
            &pki,
            &["--backend", &backend.arg(), "--map", "* san-dns-name"],
        );
        assert_eq!(aborts(), (0, 0));
        for version in BOTH {
            let (client, ending) = pipeline_then_read(&d, pki.client("admin", version), &big_rpc());
            assert_eq!(ending, Ending::CloseNotify, "{version:?}");
            assert_no_reset(&d, client, "refused");
        }
    });
}

/// The same when the backend refuses the connection.
#[test]
fn item5_backend_refused_with_a_pipelined_rpc_is_no_reset() {
    let ns = Netns::new();
    ns.run(|| {
        let pki = Pki::new();
        let dead = Backend::new().arg();
        let d = Daemon::start(&pki, &["--backend", &dead]);
        for version in BOTH {
            let (client, ending) = pipeline_then_read(&d, pki.client("admin", version), &big_rpc());
            assert_eq!(ending, Ending::CloseNotify, "{version:?}");
            assert_no_reset(&d, client, "backend-unreachable");
        }
    });
}

/// SIGTERM while a client is in the middle of sending 64 MiB the backend
/// is not reading: close_notify, the rest of the client's bytes drained,
/// no reset, exit 0.
#[test]
fn item5_shutdown_mid_upload_is_no_reset() {
    let ns = Netns::new();
    ns.run(|| {
        let pki = Pki::new();
        let backend = Backend::new();
        let mut d = Daemon::start(
            &pki,
            &["--backend", &backend.arg(), "--drain-timeout", "30"],
        );
        let mut c = connect(d.addr, pki.client("admin", Version::Tls13)).unwrap();
        c.write_all(b"<hello/>").unwrap();
        // The backend takes the header and hello, then reads no more.
        let (_b, _) = backend.accept_within(SOON).expect("session");
        let client = local(&c);
        let upload = std::thread::spawn(move || {
            c.sock
                .set_write_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            // More than the socket buffers on the way hold, so some is
            // still unsent when nctls stops.
            let chunk = big_rpc();
            let wrote = (0..64)
                .try_for_each(|_| c.write_all(&chunk))
                .and_then(|()| c.flush());
            let (_, ending) = read_to_end(&mut c);
            (wrote.map_err(|e| e.to_string()), ending)
        });
        std::thread::sleep(Duration::from_millis(300));
        d.signal("TERM");
        let (wrote, ending) = upload.join().unwrap();
        assert_eq!(wrote, Ok(()), "the client's write (then {ending:?})");
        assert_eq!(ending, Ending::CloseNotify);
        assert!(d
            .wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success()));
        assert_no_reset(&d, client, "shutdown");
    });
}
