//! The fuzz targets' fixed test PKI (`fuzz/pki/`, made by `make-seeds.sh`):
//! Ed25519 throughout, valid for 100 years, the same in every run.
//!
//! - `ca`: the CA (`--ca`); `ca_renewed`: the same subject and key
//!   self-signed again (a renewed CA).
//! - `inter`: an intermediate CA under `ca`.
//! - `server` (+ key): `CN=localhost`, issued by `ca`.
//! - `client` (+ key): `CN=admin`, with an rfc822, a DNS and two IP
//!   subjectAltNames, issued by `ca`.
//! - `oper` (+ key): `CN=oper`, issued by `inter`.
//! - `other` (+ key): `CN=admin`, issued by a CA nctls does not trust.

use nctls::config::pem::Pem;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const CA: &[u8] = include_bytes!("../pki/ca.pem");
pub const CA_RENEWED: &[u8] = include_bytes!("../pki/ca-renewed.pem");
pub const INTER: &[u8] = include_bytes!("../pki/inter.pem");
pub const SERVER: &[u8] = include_bytes!("../pki/server.pem");
pub const SERVER_KEY: &[u8] = include_bytes!("../pki/server-key.pem");
pub const CLIENT: &[u8] = include_bytes!("../pki/client.pem");
pub const CLIENT_KEY: &[u8] = include_bytes!("../pki/client-key.pem");
pub const OPER: &[u8] = include_bytes!("../pki/oper.pem");
pub const OPER_KEY: &[u8] = include_bytes!("../pki/oper-key.pem");
pub const OTHER: &[u8] = include_bytes!("../pki/other.pem");
pub const OTHER_KEY: &[u8] = include_bytes!("../pki/other-key.pem");

/// The one certificate of a PEM file above.
pub fn cert(pem: &[u8]) -> CertificateDer<'static> {
    let mut certs = Pem::parse(pem)
        .and_then(|p| p.certificates())
        .expect("fuzz/pki holds valid certificates");
    certs.remove(0)
}

/// The private key of a PEM file above.
pub fn key(pem: &[u8]) -> PrivateKeyDer<'static> {
    Pem::parse(pem)
        .and_then(|p| p.private_key())
        .expect("fuzz/pki holds valid keys")
}
