//! libnctls, the C API: `libnctls.so` / `libnctls.a`, declared in
//! `include/nctls.h`, which cbindgen generates from these files (`make
//! header`). A crate of its own over the `nctls` crate, so that the core
//! cannot depend on the C API (the compiler refuses the cycle); only `make
//! lib` builds the libraries from it (`cargo rustc --crate-type`), with
//! the unwinding `lib` profile.
//!
//! Conventions (after rustls-ffi): one prefix `nctls_`; opaque objects made
//! by `*_new` and released by a NULL-safe `*_free`; every fallible call
//! returns an `nctls_result` and writes its outputs only on success; every
//! pointer is checked; every exported body runs inside a panic guard, so a
//! Rust panic becomes `NCTLS_RESULT_PANIC`, never an unwind into C.
//!
//! One file per C object family: `result.rs` result codes, `reason.rs`
//! close reasons, `strings.rs` the version and C strings, `config.rs`
//! `nctls_config`, `server.rs` `nctls_server`, `callbacks.rs` the server's
//! callbacks and what they are handed, `conn/` `nctls_conn`. The panic
//! guard and the pointer helpers are in `boundary.rs`.
//!
//! `unsafe` here is the boundary itself: turning the caller's pointers and
//! descriptors into references and owned sockets, and calling its callbacks.

#![warn(missing_docs)]
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod boundary;

// The families in the header's order (cbindgen writes items in the order it
// reads them).
pub mod strings;

pub mod result;

pub mod callbacks;

pub mod reason;

pub mod config;

pub mod server;

pub mod conn;

/// The test PKI, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/pki.rs"]
mod test_pki;
