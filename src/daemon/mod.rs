//! The daemon: one thread, one event loop driving every session over real
//! sockets; who is admitted when full, which backend address is tried,
//! what an embedder plugs in, log output and signals, and the OS calls
//! std and mio do not offer.

pub mod admission;
pub mod backend;
pub mod hooks;
pub mod logfmt;
pub mod logging;
pub mod privilege;
pub mod reload;
pub mod sandbox;
pub mod server;
pub mod sys;
