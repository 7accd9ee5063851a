//! What a failed handshake tells the log: the client certificate that was
//! presented (rustls reports peer certificates only after a successful
//! handshake) and why it failed, in words an operator can act on.

use std::cell::RefCell;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{CertificateError, PeerIncompatible};

use crate::identity::der;

thread_local! {
    /// The client certificate the last verification on this thread was
    /// asked about (see [`take_presented_certificate`]).
    static PRESENTED: RefCell<Option<CertificateDer<'static>>> = const { RefCell::new(None) };
}

/// Records the end-entity certificate a client presented, from inside the
/// client-certificate verifier (which rustls calls on the thread driving
/// that session's handshake, inside its processing).
pub fn record_presented_certificate(end_entity: &CertificateDer<'_>) {
    PRESENTED.with(|p| *p.borrow_mut() = Some(end_entity.clone().into_owned()));
}

/// The client certificate presented during the last rustls call on this
/// thread, whether or not it verified; `None` if none was presented. Call
/// right after each handshake step: rustls reports the peer's certificates
/// only once the handshake has succeeded, but a refused client's
/// certificate is what the log needs most.
pub fn take_presented_certificate() -> Option<CertificateDer<'static>> {
    PRESENTED.with(|p| p.borrow_mut().take())
}

/// Why a handshake failed, in words an operator can act on (rustls's own
/// texts are its enum names).
pub fn describe_error(e: &rustls::Error) -> String {
    use rustls::Error as E;
    let date = |t: &UnixTime| der::format_time(t.as_secs() as i64);
    match e {
        E::NoCertificatesPresented => "client sent no certificate (a client sends none when \
             it has none, or when its key needs a signature scheme nctls does not accept, \
             such as ECDSA P-521 or RSA-PSS keys; nctls accepts ECDSA P-256/P-384, Ed25519 \
             and RSA keys)"
            .into(),
        E::InvalidCertificate(c) => match c {
            CertificateError::Revoked => "client certificate revoked (CRL)".into(),
            CertificateError::UnknownIssuer => {
                "client certificate issued by an unknown CA (not in --ca)".into()
            }
            CertificateError::BadSignature => "client certificate signature does not verify \
                 against its issuer"
                .into(),
            CertificateError::Expired => "client certificate expired".into(),
            CertificateError::ExpiredContext { time, not_after } => format!(
                "client certificate expired on {} (now {})",
                date(not_after),
                date(time)
            ),
            CertificateError::NotValidYet => "client certificate not valid yet".into(),
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "client certificate not valid until {} (now {}; is the clock right?)",
                date(not_before),
                date(time)
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "client certificate is not for client authentication (its extended key \
                 usage lacks clientAuth)"
                    .into()
            }
            CertificateError::UnknownRevocationStatus => "no CRL from the client certificate's \
                 issuer among --crl (its revocation status is unknown)"
                .into(),
            CertificateError::ExpiredRevocationList => {
                "the CRL of the client certificate's issuer has expired (refresh it)".into()
            }
            CertificateError::ExpiredRevocationListContext { next_update, .. } => format!(
                "the CRL of the client certificate's issuer expired on {} (nextUpdate); \
                 refresh it and send SIGHUP",
                date(next_update)
            ),
            CertificateError::UnhandledCriticalExtension => {
                "client certificate has a critical extension nctls does not know".into()
            }
            CertificateError::BadEncoding => "client certificate is not valid DER".into(),
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                public_key_algorithm_id,
                ..
            } => format!(
                "unsupported key: {} (nctls verifies ECDSA P-256/P-384, Ed25519 and RSA keys)",
                key_kind(public_key_algorithm_id)
            ),
            CertificateError::UnsupportedSignatureAlgorithmContext { .. } => {
                "client certificate chain uses a signature algorithm nctls does not support".into()
            }
            other => format!("client certificate refused: {other:?}"),
        },
        E::PeerIncompatible(p) => match p {
            PeerIncompatible::SignatureAlgorithmsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled => "client offered only TLS 1.1 or \
                 older (its hello has no TLS 1.2 signature algorithms); nctls needs TLS 1.2 \
                 or 1.3"
                .into(),
            PeerIncompatible::SupportedVersionsExtensionRequired => {
                "client did not offer TLS 1.3, which --min-tls 1.3 requires".into()
            }
            PeerIncompatible::NoCipherSuitesInCommon => {
                "no cipher suite in common with the client".into()
            }
            PeerIncompatible::NoKxGroupsInCommon => {
                "no key exchange group in common with the client".into()
            }
            PeerIncompatible::NoSignatureSchemesInCommon => "no signature scheme in common \
                 with the client for the server certificate's key"
                .into(),
            other => format!("client lacks a TLS feature nctls needs: {other:?}"),
        },
        E::AlertReceived(alert) => format!(
            "client aborted the handshake with alert {}{}",
            format!("{alert:?}").to_lowercase(),
            match alert {
                rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::CertificateExpired
                | rustls::AlertDescription::CertificateUnknown => {
                    " (it does not accept the server certificate)"
                }
                _ => "",
            }
        ),
        E::DecryptError => "client signature or key exchange does not verify".into(),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "not a TLS client (or a corrupt TLS message)".into()
        }
        E::InappropriateHandshakeMessage { .. } | E::PeerMisbehaved(_) => {
            format!("client broke the TLS protocol: {e}")
        }
        other => other.to_string(),
    }
}

/// A public key algorithm, from an AlgorithmIdentifier's contents.
fn key_kind(algorithm: &[u8]) -> &'static str {
    let has = |oid: &[u8]| algorithm.windows(oid.len()).any(|w| w == oid);
    if has(&[0x2b, 0x81, 0x04, 0x00, 0x23]) {
        "ECDSA P-521"
    } else if has(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]) {
        "RSA-PSS"
    } else if has(&[0x2b, 0x65, 0x71]) {
        "Ed448"
    } else if has(&[0x2b, 0x81, 0x04, 0x00, 0x0a]) {
        "ECDSA secp256k1"
    } else {
        "this key type"
    }
}
