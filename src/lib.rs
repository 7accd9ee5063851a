//! nctls: a TLS relay for NETCONF over TLS (RFC 7589) in front of a NETCONF
//! server's plain TCP port (ConfD's `netconf/transport/tcp`).
//!
//! The layers, each depending only on those listed before it:
//! - [`identity`]: who the client is (cert-to-name) and what the backend is
//!   told (session headers), from certificates and addresses; pure.
//! - [`relay`]: one session's TLS, relay and close state machine; pure, no
//!   sockets, no configuration, no logging policy.
//! - [`config`]: options, the config file, and the TLS configuration built
//!   from the files they name.
//! - [`daemon`]: the event loop that drives sessions over real sockets,
//!   with admission, backend addresses, logging, signals and OS calls.
//!
//! The C API (libnctls) is the crate in `capi/`, over all of these.

#![warn(missing_docs)]

pub mod config;
pub mod daemon;
pub mod identity;
pub mod relay;

/// The test PKI, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/common/pki.rs"]
mod test_pki;
