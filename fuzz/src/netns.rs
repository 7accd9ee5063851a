//! A network namespace of the calling thread's own, for the targets that
//! reach the network stack: parsing `backend = HOST:PORT` resolves HOST
//! (a DNS query per run, thousands a second, to the machine's resolver),
//! and zones name interfaces (`fe80::1%eth0`).
//!
//! In the new namespace there is no route, so a lookup fails at once and
//! sends nothing; and interfaces named with the characters that break a
//! header or an address (`;`, `[`, `]`, `"`, `<`, `>`, `&`, `'`) exist there,
//! so that scope ids 2 to 5 name them. Needs root (CAP_SYS_ADMIN) and
//! iproute2; without them the targets skip the inputs that would query DNS
//! and have only `lo`.

use std::cell::Cell;
use std::process::{Command, Stdio};

/// The interface names made, as veth pairs: each is at most 15 bytes, the
/// kernel's limit, and free of `/`, `:` and whitespace, which it refuses,
/// and of `%`, which makes a name a pattern.
pub const HOSTILE_INTERFACES: [&str; 4] = ["n;x]", "n[y", "q\"<&'", "x>y"];

thread_local! {
    static ISOLATED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Moves the calling thread into a network namespace of its own, once;
/// whether it is in one.
pub fn isolate() -> bool {
    ISOLATED.with(|done| {
        if let Some(isolated) = done.get() {
            return isolated;
        }
        // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the
        // calling thread (and the processes it starts) to a new namespace.
        let isolated = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
        if isolated {
            for pair in HOSTILE_INTERFACES.chunks(2) {
                // Without iproute2 the names are missing: the targets run
                // with `lo` alone.
                let _ = Command::new("ip")
                    .args([
                        "link", "add", pair[0], "type", "veth", "peer", "name", pair[1],
                    ])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        done.set(Some(isolated));
        isolated
    })
}
