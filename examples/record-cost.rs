//! record-cost: what `--max-record` costs. Relays a bulk backend → client
//! transfer through a real nctls process with each record size and reports
//! the relay's CPU time (utime + stime from /proc/PID/stat) and wall time.
//!
//! usage: cargo run --release --example record-cost -- [MIB] [ROUNDS]
//! (uses the release nctls next to this example's directory, wherever cargo
//! builds; build it first with `make build`)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[path = "../tests/common/pki.rs"]
mod pki;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    // This example runs from PROFILE/examples/; the daemon is PROFILE/nctls.
    let exe = std::env::current_exe().expect("own path");
    let nctls = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("nctls"))
        .filter(|p| p.exists())
        .expect("build nctls first (make build)");

    let dir = std::env::temp_dir().join(format!("nctls-record-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = pki::Ca::new("record-cost CA");
    ca.write(&dir, "x509-ca");
    ca.server().write(&dir, "x509-server");
    let client = ca.client("admin");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("root");
    let config = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(client.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client.key_der())),
            )
            .expect("client cert"),
    );

    println!("{mib} MiB backend -> client per run, TLS 1.3 AES-256-GCM, best of {rounds}");
    let mut results = Vec::new();
    for record in [4096usize, 16384] {
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..rounds {
            let backend = TcpListener::bind("127.0.0.1:0").expect("backend");
            let baddr = backend.local_addr().expect("addr");
            let mut child = Command::new(&nctls)
                .current_dir(&dir)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--header",
                    "none",
                    "--log-level",
                    "info",
                ])
                .args(["--backend", &baddr.to_string()])
                .args(["--max-record", &record.to_string()])
                .stderr(Stdio::piped())
                .spawn()
                .expect("start nctls");
            let mut log = BufReader::new(child.stderr.take().expect("stderr")).lines();
            let line = log.next().and_then(Result::ok).unwrap_or_default();
            let start = line.find("listening on [").expect("listening") + 14;
            let end = line[start..].find([',', ']']).expect("addr") + start;
            let addr = &line[start..end];
            std::thread::spawn(move || log.for_each(drop));

            let sender = std::thread::spawn(move || {
                let (mut s, _) = backend.accept().expect("accept");
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..mib {
                    s.write_all(&chunk).expect("backend write");
                }
            });
            let tcp = TcpStream::connect(addr).expect("connect");
            let conn =
                ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
                    .expect("client");
            let mut tls = StreamOwned::new(conn, tcp);
            let before = cpu_ticks(child.id());
            let t0 = Instant::now();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0usize;
            while got < mib << 20 {
                match tls.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => panic!("read: {e}"),
                }
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = (cpu_ticks(child.id()) - before) as f64 / ticks_per_second();
            assert_eq!(got, mib << 20, "short transfer");
            sender.join().expect("sender");
            let _ = child.kill();
            let _ = child.wait();
            if best.is_none_or(|(c, _)| cpu < c) {
                best = Some((cpu, wall));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (cpu, wall) = best.expect("a run");
        println!(
            "--max-record {record:>5}: relay CPU {cpu:.2} s ({:.0} MiB/s of relay CPU), wall {wall:.2} s ({:.0} MiB/s)",
            mib as f64 / cpu,
            mib as f64 / wall
        );
        results.push(cpu);
    }
    println!("relay CPU ratio 4096/16384: {:.2}", results[0] / results[1]);
    let _ = std::fs::remove_dir_all(&dir);
}
