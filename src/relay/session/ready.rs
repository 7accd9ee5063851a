//! Which socket may make progress, and the one place that sorts out a
//! non-blocking call's would-block and interrupted results.
//!
//! Readiness is edge-triggered (mio): an event says a socket became
//! readable or writable and is not repeated while that holds, so the
//! session keeps trying until a call would block, and only then waits.

use std::io::{self, ErrorKind};

/// What one socket may do without blocking, as far as the session knows:
/// set by the driver's events, cleared when a call would block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read may return data, end of stream or an error.
    pub read: bool,
    /// A write may take bytes or return an error.
    pub write: bool,
}

impl Readiness {
    /// Both ways: what a socket is assumed to be when it is new (an attempt
    /// that would block costs one system call).
    pub(super) const BOTH: Readiness = Readiness {
        read: true,
        write: true,
    };

    /// Adds what an event reported; nothing is taken away until a call
    /// would block.
    pub fn add(&mut self, event: Readiness) {
        self.read |= event.read;
        self.write |= event.write;
    }
}

/// One call on a non-blocking socket, made only while `ready`: retried when
/// interrupted (EINTR); when it would block, `ready` is cleared (the side
/// waits for its next event) and the answer is `None`, as it is when the
/// side was not ready.
pub(super) fn attempt<T>(
    ready: &mut bool,
    mut call: impl FnMut() -> io::Result<T>,
) -> Option<io::Result<T>> {
    while *ready {
        match call() {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => *ready = false,
            done => return Some(done),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_is_retried_would_block_clears_readiness() {
        let mut results = vec![
            Err(ErrorKind::WouldBlock.into()),
            Ok(3),
            Err(ErrorKind::Interrupted.into()),
        ];
        let mut ready = true;
        let mut call = || results.pop().unwrap();
        assert_eq!(attempt(&mut ready, &mut call).unwrap().unwrap(), 3);
        assert!(ready);
        assert!(attempt(&mut ready, &mut call).is_none());
        assert!(!ready, "would block: wait for the next event");
        assert!(attempt(&mut ready, || -> io::Result<u8> { panic!("not ready") }).is_none());
    }
}
