//! What a relay costs, read from /proc: CPU time, memory and wake-ups of a
//! process and every descendant (hitch forks a worker, socat forks one child
//! per connection, stunnel runs a thread per connection).
//!
//! CPU is utime + stime + cutime + cstime summed over the tree, so a forked
//! child that already exited still counts once its parent has reaped it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One reading of a process tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Clock ticks of CPU (user + system, children included).
    pub ticks: u64,
    /// Processes in the tree and threads across them.
    pub procs: usize,
    pub threads: u64,
}

/// Memory of a process tree, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
}

/// Scheduler view of the live tasks: time on CPU and context switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sched {
    pub run_ns: u64,
    /// Voluntary + involuntary context switches: each blocking wait that
    /// ends is one voluntary switch, so this counts wake-ups.
    pub switches: u64,
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// The fields of /proc/PID/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // Field 3 (state) is a letter; keep the numbers after it.
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> io::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Index 0 here is field 4 (ppid).
        if let Some(f) = stat_fields(pid) {
            children.entry(f[0] as u32).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend_from_slice(c);
        }
        i += 1;
    }
    Ok(out)
}

pub fn snapshot(root: u32) -> io::Result<Snapshot> {
    if stat_fields(root).is_none() {
        return Err(io::Error::other(format!("process {root} is gone")));
    }
    let mut s = Snapshot::default();
    for pid in tree(root)? {
        // Field n is at index n - 4: utime 14, stime 15, cutime 16, cstime 17,
        // num_threads 20.
        if let Some(f) = stat_fields(pid) {
            s.ticks += f[10] + f[11] + f[12] + f[13];
            s.threads += f[16];
            s.procs += 1;
        }
    }
    Ok(s)
}

pub fn memory(root: u32) -> io::Result<Memory> {
    let mut m = Memory::default();
    for pid in tree(root)? {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        for line in text.lines() {
            let kib = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("Rss:") {
                m.rss += kib(line);
            } else if line.starts_with("Pss:") {
                m.pss += kib(line);
            }
        }
    }
    Ok(m)
}

pub fn sched(root: u32) -> io::Result<Sched> {
    let mut s = Sched::default();
    for pid in tree(root)? {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path();
            if let Ok(text) = fs::read_to_string(path.join("schedstat")) {
                s.run_ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(text) = fs::read_to_string(path.join("status")) {
                for line in text.lines() {
                    if line.starts_with("voluntary_ctxt_switches:")
                        || line.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        s.switches += line
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
            }
        }
    }
    Ok(s)
}

/// Waits (at most `limit`) until the tree is back to `baseline`'s shape:
/// forked children reaped, per-connection threads gone. Then the CPU they
/// used is in the counters.
pub fn settle(root: u32, baseline: &Snapshot, limit: Duration) -> io::Result<Snapshot> {
    let deadline = Instant::now() + limit;
    loop {
        sleep(Duration::from_millis(50));
        let s = snapshot(root)?;
        if (s.procs <= baseline.procs && s.threads <= baseline.threads) || Instant::now() > deadline
        {
            return Ok(s);
        }
    }
}
