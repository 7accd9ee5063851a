//! The daemon's slot table: each live connection in a numbered slot, the
//! poll tokens of its two sockets derived from the number, and the exact
//! set of deadlines.
//!
//! Tokens: slot `i` uses `2i` for its client socket and `2i + 1` for its
//! backend socket (the loop keeps the top of the token space for its
//! listeners, signals and waker). A slot freed while a batch of events is
//! handled is reused only after the batch ([`Slots::end_batch`]): an event
//! already fetched for the old connection must not reach a new one.
//!
//! The timer set holds exactly one entry per connection that has a
//! deadline, replaced when the deadline moves and removed when it goes, so
//! a connection without a deadline never wakes the loop.

use std::collections::BTreeSet;
use std::time::Instant;

use mio::Token;

use crate::daemon::conn::Tokens;
use crate::relay::session::Side;

/// The tokens of slot `slot`'s sockets.
pub fn tokens(slot: usize) -> Tokens {
    Tokens {
        client: Token(2 * slot),
        backend: Token(2 * slot + 1),
    }
}

/// The slot and socket a token made by [`tokens`] stands for.
pub fn owner(token: Token) -> (usize, Side) {
    let side = if token.0 % 2 == 0 {
        Side::Client
    } else {
        Side::Backend
    };
    (token.0 / 2, side)
}

struct Entry<T> {
    value: T,
    /// This slot's entry in the timer set.
    deadline: Option<Instant>,
}

/// Live connections (or anything else) by slot, with their deadlines.
pub struct Slots<T> {
    entries: Vec<Option<Entry<T>>>,
    /// Slots that may be taken again.
    free: Vec<usize>,
    /// Slots emptied during the current batch of events.
    released: Vec<usize>,
    timers: BTreeSet<(Instant, usize)>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            timers: BTreeSet::new(),
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    /// The slot the next [`Slots::insert`] fills (for its tokens, which
    /// are needed before the value exists).
    pub fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    /// Puts `value` in [`Slots::next_slot`]; returns that slot.
    pub fn insert(&mut self, value: T) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        self.entries[slot] = Some(Entry {
            value,
            deadline: None,
        });
        self.len += 1;
        slot
    }

    /// The value in `slot`, if any (an event may name an emptied slot).
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.entries.get(slot)?.as_ref().map(|e| &e.value)
    }

    /// The value in `slot`, if any, to change.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.entries.get_mut(slot)?.as_mut().map(|e| &mut e.value)
    }

    /// Empties a slot and drops its deadline; the slot is taken again only
    /// after [`Slots::end_batch`].
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let entry = self.entries.get_mut(slot)?.take()?;
        if let Some(t) = entry.deadline {
            self.timers.remove(&(t, slot));
        }
        self.released.push(slot);
        self.len -= 1;
        Some(entry.value)
    }

    /// The batch of events is handled: slots emptied meanwhile may be taken.
    pub fn end_batch(&mut self) {
        self.free.append(&mut self.released);
    }

    /// How many slots hold a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No slot holds a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values, by slot.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten().map(|e| &e.value)
    }

    /// The slots that hold a value now.
    pub fn occupied(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&slot| self.entries[slot].is_some())
            .collect()
    }

    /// Makes the timer set hold `deadline` for `slot`, and only that.
    pub fn schedule(&mut self, slot: usize, deadline: Option<Instant>) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if entry.deadline == deadline {
            return;
        }
        if let Some(old) = entry.deadline {
            self.timers.remove(&(old, slot));
        }
        if let Some(t) = deadline {
            self.timers.insert((t, slot));
        }
        entry.deadline = deadline;
    }

    /// The earliest deadline of any slot.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Takes out every deadline due at `now`; the slots, earliest first.
    /// Each has no deadline until it is scheduled again, so a handler that
    /// sets a new one is not called twice in one pass.
    pub fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&(t, slot)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(entry) = self.entries[slot].as_mut() {
                entry.deadline = None;
            }
            due.push(slot);
        }
        due
    }

    /// Entries in the timer set (for tests: one per slot with a deadline).
    #[cfg(test)]
    fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_name_their_slot_and_side() {
        for slot in [0, 1, 7, 1 << 40] {
            let t = tokens(slot);
            assert_eq!(owner(t.client), (slot, Side::Client));
            assert_eq!(owner(t.backend), (slot, Side::Backend));
        }
    }

    #[test]
    fn a_slot_is_reused_only_after_the_batch() {
        let mut slots = Slots::default();
        let a = slots.insert("a");
        assert_eq!(slots.next_slot(), 1);
        let b = slots.insert("b");
        assert_eq!(slots.remove(a), Some("a"));
        assert_eq!(slots.get(a), None, "an event for `a` finds nothing");
        assert_eq!(
            slots.next_slot(),
            2,
            "not yet: events of this batch may name it"
        );
        let c = slots.insert("c");
        assert_eq!(c, 2);
        slots.end_batch();
        assert_eq!(slots.next_slot(), a);
        assert_eq!(slots.insert("d"), a);
        assert_eq!(slots.len(), 3);
        assert_eq!(slots.occupied(), [a, b, c]);
        assert_eq!(slots.values().copied().collect::<Vec<_>>(), ["d", "b", "c"]);
        assert_eq!(slots.remove(a), Some("d"));
        assert_eq!(slots.remove(a), None);
        assert_eq!(slots.len(), 2);
    }

    #[test]
    fn the_timer_set_holds_exactly_the_current_deadlines() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut slots = Slots::default();
        let (a, b, c) = (slots.insert(()), slots.insert(()), slots.insert(()));
        slots.schedule(a, Some(at(10)));
        slots.schedule(b, Some(at(5)));
        slots.schedule(a, Some(at(3)));
        slots.schedule(c, None);
        assert_eq!(slots.timer_count(), 2, "one entry per slot with a deadline");
        assert_eq!(slots.next_deadline(), Some(at(3)));
        slots.schedule(a, None);
        assert_eq!(slots.next_deadline(), Some(at(5)));
        slots.schedule(a, Some(at(7)));
        slots.remove(b);
        assert_eq!(
            slots.timer_count(),
            1,
            "a removed slot's deadline goes with it"
        );
        slots.schedule(b, Some(at(1)));
        assert_eq!(slots.timer_count(), 1, "an empty slot gets none");
        slots.schedule(c, Some(at(7)));
        assert!(slots.take_due(at(6)).is_empty());
        assert_eq!(slots.take_due(at(7)), [a, c]);
        assert_eq!(slots.next_deadline(), None);
        slots.schedule(a, Some(at(7)));
        assert_eq!(slots.timer_count(), 1, "taken out: scheduled anew");
    }
}
