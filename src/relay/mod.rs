//! The relay core: one session's TLS handshake, the bytes both ways and how
//! the session ends (the close-semantics table in the README), as a state
//! machine over byte streams. No sockets, no configuration files, no
//! logging: the daemon and the C API drive it and decide policy.

pub mod handshake;
mod pending;
pub mod session;
mod tls_io;
