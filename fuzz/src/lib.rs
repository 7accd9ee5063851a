//! The fuzz targets' bodies: one `run(data)` per target, shared by the
//! libFuzzer targets (`fuzz_targets/`, nightly, `make fuzz`) and by their
//! replay over every committed input on stable (`tests/fuzz.rs`, part of
//! `cargo test`), so they use only nctls's public API, rustls and libc.
//! Every invariant is an assert: a failure is a crash.

pub mod config_file;
pub mod der;
pub mod header;
pub mod input;
pub mod netns;
pub mod pem;
pub mod pki;
pub mod rules;
pub mod session;
