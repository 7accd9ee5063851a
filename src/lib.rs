//! nctls: a TLS relay for NETCONF over TLS (RFC 7589) in front of a NETCONF
//! server's plain TCP port (ConfD's `netconf/transport/tcp`).
//!
//! Data flows top to bottom: [`server`] accepts and polls, [`session`] moves
//! bytes and decides how each session ends, [`identity`] and [`header`] decide
//! once per session what the backend is told.

pub mod addr;
mod admission;
pub mod backend;
pub mod config;
mod config_file;
mod crl;
mod der;
pub mod ffi;
pub mod header;
pub mod hooks;
pub mod identity;
pub mod inventory;
mod logfmt;
pub mod logging;
mod pem;
mod pending;
pub mod reload;
pub mod server;
pub mod session;
pub mod sys;
pub mod tls;
mod tls_io;

/// The test PKI, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/common/pki.rs"]
mod test_pki;
