//! Bytes that one side produced and the other could not take yet.
//!
//! Only the remainder of a short write lands here; the common case (the
//! receiving side keeps up) never touches it, and an empty `Pending` holds no
//! heap memory, so an idle session costs nothing here.

use std::io::{self, Write};

/// A FIFO of bytes waiting to be written, freed when it empties.
#[derive(Default)]
pub struct Pending {
    buf: Vec<u8>,
    start: usize,
}

impl Pending {
    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// The bytes still to be written.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Adds `data` at the back.
    pub fn push(&mut self, data: &[u8]) {
        if self.is_empty() {
            self.clear();
        }
        self.buf.extend_from_slice(data);
    }

    /// Marks `n` bytes from the front as written.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            self.clear();
        }
    }

    /// Drops everything and releases the memory.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }

    /// One write of the front bytes; returns how many were taken.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let n = w.write(self.bytes())?;
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empties_release_memory() {
        let mut p = Pending::default();
        p.push(b"hello");
        p.consume(2);
        assert_eq!(p.bytes(), b"llo");
        p.consume(3);
        assert!(p.is_empty());
        assert_eq!(p.buf.capacity(), 0);
    }

    #[test]
    fn short_writes_keep_order() {
        struct Two(Vec<u8>);
        impl Write for Two {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let n = b.len().min(2);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut p = Pending::default();
        p.push(b"abcde");
        let mut out = Two(Vec::new());
        while !p.is_empty() {
            p.write_to(&mut out).unwrap();
        }
        assert_eq!(out.0, b"abcde");
    }
}
