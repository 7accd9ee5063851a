//! Who gets a session when the daemon is full.
//!
//! Up to `--max-sessions` connections (and `--max-sessions-per-ip` per
//! client address) are admitted. Beyond that a bounded number more are still
//! accepted, only to complete the handshake and receive a close_notify with a
//! logged reason, so a client learns why instead of hanging; past that
//! budget, connections wait in the kernel's listen backlog.

use std::collections::HashMap;
use std::net::IpAddr;

/// What [`Admission::decide`] says about a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it: it counts against both limits until it ends.
    Admit,
    /// Refuse it after its handshake with close_notify, for this reason
    /// (`max-sessions reached`, `max-sessions-per-ip reached`).
    Refuse(&'static str),
}

/// The counts behind `--max-sessions` and `--max-sessions-per-ip`: sessions
/// admitted (in all and per client IP) and refusals in flight. The caller
/// reports each end with the verdict it got.
pub struct Admission {
    max: usize,
    /// 0: no per-address limit.
    per_ip: usize,
    admitted: usize,
    refusing: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// At most `max` sessions at once, and `per_ip` from one client
    /// address (0: no per-address limit); none admitted yet.
    pub fn new(max: usize, per_ip: usize) -> Admission {
        Admission {
            max,
            per_ip,
            admitted: 0,
            refusing: 0,
            by_ip: HashMap::new(),
        }
    }

    /// New limits (after a reload); sessions already admitted stay.
    pub fn set_limits(&mut self, max: usize, per_ip: usize) {
        self.max = max;
        self.per_ip = per_ip;
    }

    /// Refusals in flight at most: enough to answer a burst, bounded so a
    /// flood cannot turn the limit into unbounded handshake work.
    fn refusal_budget(&self) -> usize {
        (self.max / 16).max(16)
    }

    /// Whether to take another connection from the backlog at all.
    pub fn can_accept(&self) -> bool {
        self.refusing < self.refusal_budget()
            && self.admitted + self.refusing < self.max + self.refusal_budget()
    }

    /// Decides for a new connection from `ip` and counts it.
    pub fn decide(&mut self, ip: IpAddr) -> Verdict {
        let from_ip = self.by_ip.get(&ip).copied().unwrap_or(0);
        let verdict = if self.admitted >= self.max {
            Verdict::Refuse("max-sessions reached")
        } else if self.per_ip > 0 && from_ip >= self.per_ip {
            Verdict::Refuse("max-sessions-per-ip reached")
        } else {
            Verdict::Admit
        };
        match verdict {
            Verdict::Admit => {
                self.admitted += 1;
                if self.per_ip > 0 {
                    *self.by_ip.entry(ip).or_insert(0) += 1;
                }
            }
            Verdict::Refuse(_) => self.refusing += 1,
        }
        verdict
    }

    /// A session decided earlier has ended.
    pub fn release(&mut self, ip: IpAddr, verdict: Verdict) {
        match verdict {
            Verdict::Admit => {
                self.admitted = self.admitted.saturating_sub(1);
                if let Some(n) = self.by_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.by_ip.remove(&ip);
                    }
                }
            }
            Verdict::Refuse(_) => self.refusing = self.refusing.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn refuses_beyond_the_limit_then_defers() {
        let mut a = Admission::new(2, 0);
        assert_eq!(a.decide(ip(1)), Verdict::Admit);
        assert_eq!(a.decide(ip(2)), Verdict::Admit);
        for _ in 0..16 {
            assert!(a.can_accept());
            assert_eq!(a.decide(ip(3)), Verdict::Refuse("max-sessions reached"));
        }
        assert!(!a.can_accept(), "refusal budget spent: wait in the backlog");
        a.release(ip(3), Verdict::Refuse("max-sessions reached"));
        assert!(a.can_accept());
        a.release(ip(1), Verdict::Admit);
        assert_eq!(a.decide(ip(4)), Verdict::Admit);
    }

    #[test]
    fn per_address_limit() {
        let mut a = Admission::new(100, 2);
        assert_eq!(a.decide(ip(1)), Verdict::Admit);
        assert_eq!(a.decide(ip(1)), Verdict::Admit);
        assert_eq!(
            a.decide(ip(1)),
            Verdict::Refuse("max-sessions-per-ip reached")
        );
        assert_eq!(a.decide(ip(2)), Verdict::Admit);
        a.release(ip(1), Verdict::Admit);
        assert_eq!(a.decide(ip(1)), Verdict::Admit);
        a.release(ip(1), Verdict::Admit);
        a.release(ip(1), Verdict::Admit);
        assert!(
            !a.by_ip.contains_key(&ip(1)),
            "entries go when their count does"
        );
    }
}
