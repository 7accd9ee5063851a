//! `loadgen report`: measurement lines (every repeat) → bench/RESULTS.md,
//! medians per relay and nctls's ratio to each peer in the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;

/// The relays in table order; any other label follows them.
const ORDER: [&str; 6] = [
    "nctls",
    "nctls-before",
    "nctls-16k",
    "hitch",
    "stunnel",
    "socat",
];
/// Ratio columns: nctls before a change (when measured), then the peers.
const PEERS: [&str; 4] = ["nctls-before", "hitch", "stunnel", "socat"];

struct Data {
    /// (label, workload, metric) → every value measured.
    values: BTreeMap<(String, String, String), Vec<String>>,
    labels: Vec<String>,
    meta: Vec<(String, String)>,
}

impl Data {
    fn all(&self, label: &str, workload: &str, metric: &str) -> Option<&Vec<String>> {
        self.values
            .get(&(label.to_string(), workload.to_string(), metric.to_string()))
    }

    /// The median of the numeric values (the lower middle of an even count).
    fn median(&self, label: &str, workload: &str, metric: &str) -> Option<f64> {
        let mut v: Vec<f64> = self
            .all(label, workload, metric)?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[(v.len() - 1) / 2])
    }

    fn text(&self, label: &str, workload: &str, metric: &str) -> Option<&str> {
        self.all(label, workload, metric)?
            .last()
            .map(String::as_str)
    }

    fn meta(&self, key: &str) -> Vec<&str> {
        self.meta
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn meta1(&self, key: &str) -> &str {
        self.meta(key).first().copied().unwrap_or("?")
    }

    fn has(&self, label: &str, workload: &str) -> bool {
        self.values
            .keys()
            .any(|(l, w, _)| l == label && w == workload)
    }
}

fn load(results: &str, meta: &str) -> Result<Data, String> {
    let text = fs::read_to_string(results).map_err(|e| format!("{results}: {e}"))?;
    let mut values: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let mut labels: Vec<String> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        if f.len() != 4 {
            continue;
        }
        if !labels.iter().any(|l| l == f[0]) {
            labels.push(f[0].to_string());
        }
        values
            .entry((f[0].into(), f[1].into(), f[2].into()))
            .or_default()
            .push(f[3].to_string());
    }
    labels.sort_by_key(|l| ORDER.iter().position(|o| o == l).unwrap_or(ORDER.len()));
    // What a relay needs on disk: its binary and the libraries beyond libc.
    for l in &labels {
        let get = |m: &str| {
            values
                .get(&(l.clone(), "footprint".to_string(), m.to_string()))
                .and_then(|v| v.last()?.parse::<u64>().ok())
        };
        if let (Some(bin), Some(libs)) = (get("binary_bytes"), get("lib_bytes")) {
            values.insert(
                (l.clone(), "footprint".into(), "total_bytes".into()),
                vec![(bin + libs).to_string()],
            );
        }
    }
    let meta = fs::read_to_string(meta)
        .map_err(|e| format!("{meta}: {e}"))?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Data {
        values,
        labels,
        meta,
    })
}

/// A column: header, workload, metric, decimals.
type Col<'a> = (&'a str, &'a str, &'a str, usize);

fn fmt_num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if decimals == 0 => group(v.round() as i64),
        Some(v) => format!("{v:.decimals$}"),
        None => "—".into(),
    }
}

/// 12345 → 12,345
fn group(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn table(d: &Data, out: &mut String, cols: &[Col]) {
    let rows: Vec<&String> = d
        .labels
        .iter()
        .filter(|l| cols.iter().any(|(_, w, _, _)| d.has(l, w)))
        .collect();
    if rows.is_empty() {
        out.push_str("(not measured in this run)\n\n");
        return;
    }
    out.push_str("| relay |");
    for (h, ..) in cols {
        let _ = write!(out, " {h} |");
    }
    out.push_str("\n| --- |");
    for _ in cols {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for l in rows {
        let _ = write!(out, "| {l} |");
        for (_, w, m, dec) in cols {
            let _ = write!(out, " {} |", fmt_num(d.median(l, w, m), *dec));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// nctls ÷ each peer for a list of metrics, with the issue's target.
fn ratios(d: &Data, out: &mut String, rows: &[(&str, &str, &str, &str)]) {
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| d.labels.iter().any(|l| l == p))
        .collect();
    out.push_str("| nctls ÷ peer |");
    for p in &peers {
        let _ = write!(out, " {p} |");
    }
    out.push_str(" target |\n| --- |");
    for _ in &peers {
        out.push_str(" ---: |");
    }
    out.push_str(" --- |\n");
    for (name, w, m, target) in rows {
        let _ = write!(out, "| {name} |");
        let ours = d.median("nctls", w, m);
        for p in &peers {
            let cell = match (ours, d.median(p, w, m)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                (Some(0.0), Some(_)) => "0 vs 0".into(),
                (Some(_), Some(_)) => "n/a (peer 0)".into(),
                _ => "—".into(),
            };
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out, " {target} |");
    }
    out.push('\n');
}

pub fn write(results: &str, meta: &str, path: &str) -> Result<(), String> {
    if results.is_empty() || meta.is_empty() || path.is_empty() {
        return Err("report needs --results, --meta and --out".into());
    }
    let d = load(results, meta)?;
    let mut o = String::new();
    let repeats = d.meta1("repeats");
    let _ = write!(
        o,
        "# nctls benchmarks: side by side with hitch, stunnel and socat\n\n\
         Generated by `{}` (bench/run.sh) on {}.\n\n\
         Machine: {}; {} cores; kernel {}; {}.\n\n\
         Every relay is configured for mutual TLS on 127.0.0.1 with the same ECDSA P-256 \
         certificates; the load generator (`examples/loadgen`, rustls clients offering only \
         AES-128-GCM, no resumption) decides TLS 1.3 (or 1.2 in the last table). The relay \
         runs alone on CPU 0 (`taskset -c 0`), the load generator and its plain-TCP backend \
         on CPU 1. Relay CPU is utime+stime (children included) of the relay's process tree \
         from /proc. Each figure is the median of {repeats} runs; every repeat starts each \
         relay afresh and runs the relays one after another, so noise hits all alike. \
         Ratios are nctls ÷ peer from this same run: below 1 means nctls uses less. \
         nctls writes its ConfD header (`--header confd`) to the backend, which skips it; \
         the peers write none.\n\n",
        d.meta1("command"),
        d.meta1("date"),
        d.meta1("cpu"),
        d.meta1("cores"),
        d.meta1("kernel"),
        d.meta1("memory"),
    );

    let small = d.meta1("stage_small").to_string();
    let big = d.meta1("stage_big").to_string();
    let idle_small = format!("kib_per_idle_{small}");
    let idle_big = format!("kib_per_idle_{big}");
    let per_small = format!("KiB per idle session ({small})");
    let per_big = format!("KiB per idle session ({big})");
    o.push_str("## Summary: nctls ÷ peer\n\n");
    ratios(
        &d,
        &mut o,
        &[
            (
                "bulk up, CPU-s/GiB",
                "bulk-up",
                "cpu_s_per_gib",
                "≤ 0.8× hitch (aim 0.6×)",
            ),
            (
                "bulk down, CPU-s/GiB",
                "bulk-down",
                "cpu_s_per_gib",
                "≤ 0.8× hitch (aim 0.6×)",
            ),
            (
                "CPU per full session",
                "sessions",
                "cpu_ms_per_session",
                "≤ 0.5× hitch (aim 0.3×)",
            ),
            (&per_small, "idle", &idle_small, "≤ 12 KiB (aim 6)"),
            (&per_big, "idle", &idle_big, "≤ 12 KiB (aim 6)"),
            (
                "close_notify after backend close, p99",
                "close",
                "p99_ms",
                "< 1 ms",
            ),
            (
                "idle CPU ms over the idle period",
                "idle",
                "idle_cpu_ms",
                "zero",
            ),
            (
                "bulk up, CPU-s/GiB, TLS 1.2",
                "bulk-up/tls12",
                "cpu_s_per_gib",
                "",
            ),
            (
                "bulk down, CPU-s/GiB, TLS 1.2",
                "bulk-down/tls12",
                "cpu_s_per_gib",
                "",
            ),
            (
                "CPU per full session, TLS 1.2",
                "sessions/tls12",
                "cpu_ms_per_session",
                "",
            ),
            (
                "stripped binary size",
                "footprint",
                "binary_bytes",
                "< 1.5 MiB",
            ),
            (
                "binary + libraries beyond libc",
                "footprint",
                "total_bytes",
                "",
            ),
        ],
    );

    let _ = write!(
        o,
        "## 1. Bulk throughput, one stream of {} each way\n\n\
         MB/s is bounded by whichever CPU saturates first; with nctls that is often the \
         load generator's core, so CPU-s/GiB of the relay is the figure to compare. \
         nctls sends records of at most 4096 bytes of plaintext by default (`--max-record`); \
         `nctls-16k` is the same binary with `--max-record 16384`. The client sends 16 KiB \
         records.\n\n",
        d.meta1("bulk_bytes"),
    );
    table(
        &d,
        &mut o,
        &[
            ("up MB/s", "bulk-up", "mb_per_s", 0),
            ("up CPU-s/GiB", "bulk-up", "cpu_s_per_gib", 3),
            ("down MB/s", "bulk-down", "mb_per_s", 0),
            ("down CPU-s/GiB", "bulk-down", "cpu_s_per_gib", 3),
        ],
    );
    let _ = write!(
        o,
        "Ceiling: `openssl speed -evp aes-128-gcm` on one core, 16 KiB blocks: {} CPU-s/GiB \
         ({}).\n\n",
        d.meta1("ceiling_cpu_s_per_gib"),
        d.meta1("ceiling_line"),
    );

    let _ = write!(
        o,
        "## 2. New sessions\n\n\
         {} sessions, {} at a time: full TLS 1.3 handshake with client certificate (no \
         resumption), the relay connects to the backend (nctls writes its header), 1 KiB \
         each way, the backend closes first, close_notify both ways.\n\n",
        d.meta1("sessions"),
        d.meta1("concurrency"),
    );
    table(
        &d,
        &mut o,
        &[
            ("sessions/s", "sessions", "sessions_per_s", 0),
            ("relay CPU ms/session", "sessions", "cpu_ms_per_session", 3),
            ("failed", "sessions", "failed", 0),
            ("clean closes", "sessions", "clean_closes", 0),
        ],
    );

    let _ = write!(
        o,
        "## 3. Memory\n\n\
         PSS (proportional set size, KiB) summed over the relay's processes, so socat's \
         forked children count their own pages only; for a one-process relay it is its RSS \
         less a share of library pages. Idle sessions: handshake done, backend connected, \
         one short reply, then silence. KiB per session = (PSS with N − PSS with 0) ÷ N. \
         The large stage is {big} sessions, not 10,000: this machine's hard descriptor \
         limit is {} and cannot be raised here, and a relay needs two descriptors per \
         session; it runs in the first repeat only. \
         Streaming: {} sessions each receiving an endless backend stream, PSS peak over \
         five samples.\n\n",
        d.meta1("hard_fds"),
        d.meta1("streams"),
    );
    let pss_small = format!("pss_kib_{small}");
    let pss_big = format!("pss_kib_{big}");
    let held_big = format!("held_{big}");
    let h_pss_small = format!("PSS, {small} idle");
    let h_pss_big = format!("PSS, {big} idle");
    let h_small = format!("KiB/idle ({small})");
    let h_big = format!("KiB/idle ({big})");
    let h_held = format!("held of {big}");
    table(
        &d,
        &mut o,
        &[
            ("PSS, 0 sessions", "idle", "pss_kib_0", 0),
            (&h_pss_small, "idle", &pss_small, 0),
            (&h_pss_big, "idle", &pss_big, 0),
            (&h_small, "idle", &idle_small, 1),
            (&h_big, "idle", &idle_big, 1),
            (&h_held, "idle", &held_big, 0),
            ("PSS, streaming", "stream", "pss_kib", 0),
            ("KiB/stream", "stream", "kib_per_stream", 1),
        ],
    );

    let _ = write!(
        o,
        "## 4. Close latency\n\n\
         {} sessions one after another: the backend closes its socket, the clock runs until \
         the client has the relay's close_notify (or EOF). Backend and client share one \
         process and clock.\n\n",
        d.meta1("close_count"),
    );
    table(
        &d,
        &mut o,
        &[
            ("p50 ms", "close", "p50_ms", 3),
            ("p99 ms", "close", "p99_ms", 3),
            ("max ms", "close", "max_ms", 3),
            ("clean (close_notify)", "close", "clean_closes", 0),
        ],
    );

    let _ = write!(
        o,
        "## 5. Idle cost\n\n\
         {} s with {small} established idle sessions: CPU time of the relay (scheduler \
         run time, ns precision) and its wake-ups (context switches of all its threads).\n\n",
        d.meta1("idle_seconds"),
    );
    table(
        &d,
        &mut o,
        &[
            ("CPU ms", "idle", "idle_cpu_ms", 3),
            ("wake-ups", "idle", "idle_wakeups", 0),
        ],
    );

    o.push_str(
        "## 6. Footprint\n\n\
         Stripped executable; shared libraries it links beyond the C runtime (libc, libm, \
         libgcc_s, ld.so), and the size of those.\n\n\
         | relay | binary bytes | other libraries | their bytes | total |\n\
         | --- | ---: | --- | ---: | ---: |\n",
    );
    for l in &d.labels {
        if let Some(size) = d.median(l, "footprint", "binary_bytes") {
            let _ = writeln!(
                o,
                "| {l} | {} | {} | {} | {} |",
                fmt_num(Some(size), 0),
                d.text(l, "footprint", "libs")
                    .filter(|t| !t.is_empty())
                    .unwrap_or("(none)"),
                fmt_num(d.median(l, "footprint", "lib_bytes"), 0),
                fmt_num(d.median(l, "footprint", "total_bytes"), 0),
            );
        }
    }
    o.push('\n');

    o.push_str("## 7. TLS 1.2 (ECDHE-ECDSA-AES128-GCM-SHA256)\n\n");
    table(
        &d,
        &mut o,
        &[
            ("up MB/s", "bulk-up/tls12", "mb_per_s", 0),
            ("up CPU-s/GiB", "bulk-up/tls12", "cpu_s_per_gib", 3),
            ("down MB/s", "bulk-down/tls12", "mb_per_s", 0),
            ("down CPU-s/GiB", "bulk-down/tls12", "cpu_s_per_gib", 3),
            ("sessions/s", "sessions/tls12", "sessions_per_s", 0),
            ("CPU ms/session", "sessions/tls12", "cpu_ms_per_session", 3),
        ],
    );

    o.push_str("## How each relay ran\n\n```\n");
    for v in d.meta("version") {
        let _ = writeln!(o, "{v}");
    }
    o.push('\n');
    for v in d.meta("relay") {
        let _ = writeln!(o, "{v}");
    }
    o.push_str("```\n\n");
    for v in d.meta("config") {
        let _ = writeln!(o, "{}\n", v.replace("\\n", "\n"));
    }

    // Hand-written analysis kept next to the generated tables.
    if let Ok(notes) = fs::read_to_string("bench/notes.md") {
        o.push_str(&notes);
        o.push('\n');
    }

    let failures = d.meta("failure");
    if !failures.is_empty() {
        o.push_str("## Failed runs\n\n");
        for f in failures {
            let _ = writeln!(o, "- {f}");
        }
        o.push('\n');
    }

    o.push_str(
        "## Every run\n\n| relay | workload | metric | values |\n| --- | --- | --- | --- |\n",
    );
    for ((l, w, m), v) in &d.values {
        if w == "footprint" {
            continue;
        }
        let _ = writeln!(o, "| {l} | {w} | {m} | {} |", v.join(", "));
    }
    fs::write(path, o).map_err(|e| format!("{path}: {e}"))
}
