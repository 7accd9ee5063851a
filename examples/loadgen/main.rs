//! loadgen: the load generator of `make bench`. It runs one workload against
//! a TLS relay (nctls, hitch, stunnel, socat …) with rustls clients, plays
//! the plain-TCP backend behind the relay itself, and measures the relay's
//! own cost from /proc (the relay runs on another core; see bench/run.sh).
//!
//! Each measurement is printed as one tab-separated line
//! `LABEL  WORKLOAD  METRIC  VALUE`; `loadgen report` turns a file of such
//! lines (three repeats of everything) into bench/RESULTS.md.

mod backend;
mod client;
mod probe;
mod report;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use backend::Backend;
use client::{After, Engine, Script};

const USAGE: &str = "\
usage: loadgen WORKLOAD --relay ADDR --backend ADDR --pid PID --label NAME \\
               --ca FILE --cert FILE --key FILE [--tls 1.3|1.2] [--record BYTES] [options]
workloads and their options:
  bulk-up   --bytes N             one stream client -> backend
  bulk-down --bytes N             one stream backend -> client
  sessions  --count N --concurrency K
                                  full handshake + 1 KiB echo + backend closes first
  close     --count N             backend closes; time until the client has close_notify
  idle      --stages N,M --idle-seconds S
                                  memory with N then M idle sessions; CPU and wake-ups
                                  over S seconds with N idle sessions
  stream    --count N --seconds S memory while N sessions stream backend -> client
  report    --results FILE --meta FILE --out FILE
Output: LABEL<TAB>WORKLOAD<TAB>METRIC<TAB>VALUE lines on stdout.";

/// The longest any one workload may take.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(600);
/// How long forked children / threads get to finish after a workload.
const SETTLE: Duration = Duration::from_secs(5);
const GIB: f64 = (1u64 << 30) as f64;

struct Opts {
    workload: String,
    relay: Option<SocketAddr>,
    backend: Option<SocketAddr>,
    pid: u32,
    label: String,
    ca: String,
    cert: String,
    key: String,
    tls12: bool,
    record: Option<usize>,
    bytes: u64,
    count: usize,
    concurrency: usize,
    stages: Vec<usize>,
    idle_seconds: f64,
    seconds: f64,
    results: String,
    meta: String,
    out: String,
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if opts.workload == "report" {
        report::write(&opts.results, &opts.meta, &opts.out)
    } else {
        raise_fd_limit();
        run(&opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {} {}: {e}", opts.label, opts.workload);
            ExitCode::FAILURE
        }
    }
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut it = args.into_iter();
    let workload = it.next().ok_or("no workload")?;
    if workload == "--help" || workload == "-h" {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut o = Opts {
        workload,
        relay: None,
        backend: None,
        pid: 0,
        label: "relay".into(),
        ca: String::new(),
        cert: String::new(),
        key: String::new(),
        tls12: false,
        record: None,
        bytes: 1 << 30,
        count: 1000,
        concurrency: 16,
        stages: vec![1000, 10_000],
        idle_seconds: 10.0,
        seconds: 3.0,
        results: String::new(),
        meta: String::new(),
        out: String::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {value:?} is not {what}");
        match flag.as_str() {
            "--relay" => o.relay = Some(value.parse().map_err(|_| bad("IP:PORT"))?),
            "--backend" => o.backend = Some(value.parse().map_err(|_| bad("IP:PORT"))?),
            "--pid" => o.pid = value.parse().map_err(|_| bad("a pid"))?,
            "--label" => o.label = value,
            "--ca" => o.ca = value,
            "--cert" => o.cert = value,
            "--key" => o.key = value,
            "--tls" => {
                o.tls12 = match value.as_str() {
                    "1.2" => true,
                    "1.3" => false,
                    _ => return Err(bad("1.2 or 1.3")),
                }
            }
            "--record" => o.record = Some(value.parse().map_err(|_| bad("a size"))?),
            "--bytes" => o.bytes = value.parse().map_err(|_| bad("a byte count"))?,
            "--count" => o.count = value.parse().map_err(|_| bad("a count"))?,
            "--concurrency" => o.concurrency = value.parse().map_err(|_| bad("a count"))?,
            "--stages" => {
                o.stages = value
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("a list of counts"))?
            }
            "--idle-seconds" => o.idle_seconds = value.parse().map_err(|_| bad("seconds"))?,
            "--seconds" => o.seconds = value.parse().map_err(|_| bad("seconds"))?,
            "--results" => o.results = value,
            "--meta" => o.meta = value,
            "--out" => o.out = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn client_config(o: &Opts) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&o.ca).map_err(|e| format!("--ca: {e:?}"))? {
        roots
            .add(c.map_err(|e| format!("--ca: {e:?}"))?)
            .map_err(|e| format!("--ca: {e}"))?;
    }
    let chain = CertificateDer::pem_file_iter(&o.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--cert: {e:?}"))?;
    let key = PrivateKeyDer::from_pem_file(&o.key).map_err(|e| format!("--key: {e:?}"))?;
    // AES-128-GCM in both versions, so every relay does the same cipher work.
    let mut provider = default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let version = if o.tls12 {
        &rustls::version::TLS12
    } else {
        &rustls::version::TLS13
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate: {e}"))?;
    // Every session is a full handshake.
    config.resumption = Resumption::disabled();
    config.max_fragment_size = o.record.map(|r| r + 5);
    Ok(Arc::new(config))
}

/// Prints one measurement line.
struct Out<'a> {
    label: &'a str,
    workload: String,
}

impl Out<'_> {
    fn put(&self, metric: &str, value: impl std::fmt::Display) {
        println!("{}\t{}\t{metric}\t{value}", self.label, self.workload);
    }
}

fn run(o: &Opts) -> Result<(), String> {
    let relay = o.relay.ok_or("--relay is required")?;
    let backend_addr = o.backend.ok_or("--backend is required")?;
    if o.pid == 0 {
        return Err("--pid is required".into());
    }
    let config = client_config(o)?;
    let backend =
        Backend::start(backend_addr).map_err(|e| format!("backend {backend_addr}: {e}"))?;
    let mut engine = Engine::new(config, relay).map_err(|e| e.to_string())?;
    let out = Out {
        label: &o.label,
        workload: if o.tls12 {
            format!("{}/tls12", o.workload)
        } else {
            o.workload.clone()
        },
    };
    let deadline = Instant::now() + WORKLOAD_LIMIT;
    let result = match o.workload.as_str() {
        "bulk-up" | "bulk-down" => bulk(o, &mut engine, &out, deadline),
        "sessions" => sessions(o, &mut engine, &out, deadline),
        "close" => close(o, &mut engine, &backend, &out, deadline),
        "idle" => idle(o, &mut engine, &out, deadline),
        "stream" => stream(o, &mut engine, &out, deadline),
        other => Err(format!("unknown workload {other}")),
    };
    let stopped = backend.stop().map_err(|e| format!("backend: {e}"));
    result.and(stopped)
}

fn snapshot(pid: u32) -> Result<probe::Snapshot, String> {
    probe::snapshot(pid).map_err(|e| e.to_string())
}

fn cpu_seconds(before: &probe::Snapshot, after: &probe::Snapshot) -> f64 {
    after.ticks.saturating_sub(before.ticks) as f64 / probe::ticks_per_second()
}

fn errors(engine: &Engine) -> Vec<&str> {
    engine
        .outcomes
        .iter()
        .filter_map(|o| o.error.as_deref())
        .collect()
}

fn bulk(o: &Opts, engine: &mut Engine, out: &Out, deadline: Instant) -> Result<(), String> {
    let up = o.workload == "bulk-up";
    let n = o.bytes;
    let script = if up {
        Script {
            command: format!("SINK {n}\n").into_bytes(),
            upload: n,
            expect: 3,
            after: After::Close,
        }
    } else {
        Script {
            command: format!("SOURCE {n}\n").into_bytes(),
            upload: 0,
            expect: n,
            after: After::WaitClose,
        }
    };
    let before = snapshot(o.pid)?;
    engine.run(1, 1, &|_| script.clone(), deadline)?;
    let after = probe::settle(o.pid, &before, SETTLE).map_err(|e| e.to_string())?;
    let r = &engine.outcomes[0];
    if let Some(e) = &r.error {
        return Err(e.clone());
    }
    let (Some(start), Some(end)) = (r.handshaken, r.replied) else {
        return Err("no reply".into());
    };
    let secs = (end - start).as_secs_f64();
    let cpu = cpu_seconds(&before, &after);
    out.put("mb_per_s", format!("{:.1}", n as f64 / secs / 1e6));
    out.put("cpu_s_per_gib", format!("{:.3}", cpu / (n as f64 / GIB)));
    Ok(())
}

fn sessions(o: &Opts, engine: &mut Engine, out: &Out, deadline: Instant) -> Result<(), String> {
    let script = Script {
        command: b"ECHO 1024\n".to_vec(),
        upload: 1024,
        expect: 1024,
        after: After::WaitClose,
    };
    let before = snapshot(o.pid)?;
    let t0 = Instant::now();
    engine.run(o.count, o.concurrency, &|_| script.clone(), deadline)?;
    let wall = t0.elapsed().as_secs_f64();
    let after = probe::settle(o.pid, &before, SETTLE).map_err(|e| e.to_string())?;
    let failed = errors(engine);
    if let Some(e) = failed.first() {
        eprintln!(
            "loadgen {}: {} failed sessions, e.g. {e}",
            out.label,
            failed.len()
        );
    }
    let ok = o.count - failed.len();
    let clean = engine.outcomes.iter().filter(|r| r.clean).count();
    let mut took: Vec<f64> = engine
        .outcomes
        .iter()
        .filter_map(|r| Some((r.closed? - r.connected).as_secs_f64() * 1e3))
        .collect();
    took.sort_by(f64::total_cmp);
    out.put("sessions_per_s", format!("{:.0}", ok as f64 / wall));
    out.put(
        "cpu_ms_per_session",
        format!("{:.3}", cpu_seconds(&before, &after) * 1e3 / o.count as f64),
    );
    if !took.is_empty() {
        out.put("session_ms_p50", format!("{:.3}", took[took.len() / 2]));
    }
    out.put("failed", failed.len());
    out.put("clean_closes", clean);
    Ok(())
}

fn close(
    o: &Opts,
    engine: &mut Engine,
    backend: &Backend,
    out: &Out,
    deadline: Instant,
) -> Result<(), String> {
    let script = |id: u64| Script {
        command: format!("CLOSE {id}\n").into_bytes(),
        upload: 0,
        expect: 0,
        after: After::WaitClose,
    };
    engine.run(o.count, 1, &script, deadline)?;
    let closes = backend.closes.lock().map_err(|_| "poisoned")?.clone();
    let mut lat: Vec<f64> = engine
        .outcomes
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| {
            let sent = closes.get(&r.id)?;
            Some(r.closed?.checked_duration_since(*sent)?.as_secs_f64() * 1e3)
        })
        .collect();
    if lat.is_empty() {
        return Err("no close measured".into());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let mut setup: Vec<f64> = engine
        .outcomes
        .iter()
        .filter_map(|r| Some((r.handshaken? - r.connected).as_secs_f64() * 1e3))
        .collect();
    setup.sort_by(f64::total_cmp);
    if !setup.is_empty() {
        out.put("handshake_ms_p50", format!("{:.3}", setup[setup.len() / 2]));
    }
    out.put("p50_ms", format!("{:.3}", pct(0.50)));
    out.put("p99_ms", format!("{:.3}", pct(0.99)));
    out.put("max_ms", format!("{:.3}", pct(1.0)));
    out.put(
        "clean_closes",
        engine.outcomes.iter().filter(|r| r.clean).count(),
    );
    out.put("failed", errors(engine).len());
    Ok(())
}

fn idle(o: &Opts, engine: &mut Engine, out: &Out, deadline: Instant) -> Result<(), String> {
    let script = Script {
        command: b"IDLE\n".to_vec(),
        upload: 0,
        expect: 3,
        after: After::Hold,
    };
    let mem = |pid| probe::memory(pid).map_err(|e| e.to_string());
    let base = mem(o.pid)?;
    out.put("rss_kib_0", base.rss);
    out.put("pss_kib_0", base.pss);
    let mut first = true;
    for &stage in &o.stages {
        let more = stage.saturating_sub(engine.held);
        let t0 = Instant::now();
        let ran = engine.run(more, 64, &|_| script.clone(), deadline);
        let failed = errors(engine).len();
        out.put(&format!("failed_{stage}"), failed);
        out.put(&format!("held_{stage}"), engine.held);
        if let Err(e) = ran {
            engine
                .release(Instant::now() + Duration::from_secs(30))
                .ok();
            return Err(format!("opening {stage} sessions: {e}"));
        }
        eprintln!(
            "loadgen {}: {} idle sessions open in {:.1}s",
            out.label,
            engine.held,
            t0.elapsed().as_secs_f64()
        );
        // Let the relay finish whatever the ramp left (logs, freed buffers).
        sleep(Duration::from_millis(500));
        let m = mem(o.pid)?;
        out.put(&format!("rss_kib_{stage}"), m.rss);
        out.put(&format!("pss_kib_{stage}"), m.pss);
        out.put(
            &format!("kib_per_idle_{stage}"),
            format!(
                "{:.1}",
                (m.pss as f64 - base.pss as f64) / engine.held as f64
            ),
        );
        if first {
            first = false;
            let s0 = probe::sched(o.pid).map_err(|e| e.to_string())?;
            let c0 = snapshot(o.pid)?;
            sleep(Duration::from_secs_f64(o.idle_seconds));
            let s1 = probe::sched(o.pid).map_err(|e| e.to_string())?;
            let c1 = snapshot(o.pid)?;
            out.put("idle_sessions", engine.held);
            out.put(
                "idle_cpu_ms",
                format!("{:.3}", s1.run_ns.saturating_sub(s0.run_ns) as f64 / 1e6),
            );
            out.put("idle_ticks", c1.ticks.saturating_sub(c0.ticks));
            out.put("idle_wakeups", s1.switches.saturating_sub(s0.switches));
        }
    }
    engine.release(Instant::now() + Duration::from_secs(60))
}

fn stream(o: &Opts, engine: &mut Engine, out: &Out, deadline: Instant) -> Result<(), String> {
    // Open every session first, then start all streams at once: streams
    // already running would starve the handshakes of later sessions.
    let script = Script {
        command: b"READY\n".to_vec(),
        upload: 0,
        expect: 3,
        after: After::Hold,
    };
    let base = probe::memory(o.pid).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    engine.run(o.count, 16, &|_| script.clone(), deadline)?;
    eprintln!(
        "loadgen {}: {} streams open in {:.1}s",
        out.label,
        engine.held,
        t0.elapsed().as_secs_f64()
    );
    engine.send_all(b"SOURCE 0\n")?;
    engine.run_for(Duration::from_secs(1))?;
    let (mut rss, mut pss) = (0, 0);
    let samples = 5;
    for _ in 0..samples {
        engine.run_for(Duration::from_secs_f64(o.seconds / samples as f64))?;
        let m = probe::memory(o.pid).map_err(|e| e.to_string())?;
        rss = rss.max(m.rss);
        pss = pss.max(m.pss);
    }
    out.put("streams", engine.held);
    let failed: Vec<String> = errors(engine).into_iter().map(String::from).collect();
    if let Some(e) = failed.first() {
        eprintln!(
            "loadgen {}: {} failed streams, e.g. {e}",
            out.label,
            failed.len()
        );
    }
    let t0 = Instant::now();
    engine.release(Instant::now() + Duration::from_secs(30))?;
    eprintln!(
        "loadgen {}: streams closed in {:.1}s",
        out.label,
        t0.elapsed().as_secs_f64()
    );
    out.put("rss_kib", rss);
    out.put("pss_kib", pss);
    out.put(
        "kib_per_stream",
        format!("{:.1}", (pss as f64 - base.pss as f64) / o.count as f64),
    );
    out.put("failed", failed.len());
    Ok(())
}

/// 10,000 sessions need 20,000 descriptors here (client and backend ends).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
