//! The daemon: one thread, one event loop driving every session over real
//! sockets through the connection driver it shares with the C API
//! ([`conn`]); who is admitted when full, which backend address is tried,
//! what an embedder plugs in, log output and signals, and the OS calls
//! std and mio do not offer.

pub mod admission;
pub mod backend;
pub mod conn;
pub mod hooks;
pub mod listen;
pub mod logfmt;
pub mod logging;
pub mod privilege;
pub mod reload;
pub mod sandbox;
pub mod server;
pub mod slots;
pub mod sys;
