//! Who the client is: from its verified certificate to a NETCONF user name.
//!
//! RFC 7589 §7 asks the server to derive the user from the certificate and to
//! refuse the session when it cannot. Two rules exist so far: every verified
//! client is one fixed user (what ConfD's GnuTLS demo does with `admin`), or
//! the user is the certificate subject's CommonName.

use ring::digest;
use rustls::pki_types::CertificateDer;

use crate::der;
use crate::header;

/// How a verified certificate becomes a user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Every verified client is this user.
    Fixed(String),
    /// The subject's CommonName.
    CommonName,
}

/// What the logs say about a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub subject: String,
    /// SHA-256 of the certificate, hex pairs joined by `:`.
    pub sha256: String,
}

impl Peer {
    pub fn of(cert: &[u8]) -> Peer {
        Peer {
            subject: der::subject_text(cert),
            sha256: hex_colon(digest::digest(&digest::SHA256, cert).as_ref()),
        }
    }
}

/// The user for a verified chain (end-entity first), or why there is none.
pub fn user_for(rule: &Identity, chain: &[CertificateDer<'_>]) -> Result<String, String> {
    let Some(cert) = chain.first() else {
        return Err("no client certificate".into());
    };
    let user = match rule {
        Identity::Fixed(name) => name.clone(),
        Identity::CommonName => {
            der::common_name(cert).ok_or("the certificate subject has no single text CommonName")?
        }
    };
    header::check_user(&user).map_err(|why| format!("user name {user:?} is unusable: {why}"))?;
    Ok(user)
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_pki as pki;

    fn chain(cn: &str) -> Vec<CertificateDer<'static>> {
        let ca = pki::Ca::new("CA");
        vec![CertificateDer::from(ca.client(cn).der().to_vec())]
    }

    #[test]
    fn common_name_is_the_user() {
        assert_eq!(
            user_for(&Identity::CommonName, &chain("oper")),
            Ok("oper".into())
        );
    }

    #[test]
    fn fixed_user_ignores_the_certificate() {
        let rule = Identity::Fixed("admin".into());
        assert_eq!(user_for(&rule, &chain("x;y")), Ok("admin".into()));
    }

    #[test]
    fn unsafe_common_names_are_refused() {
        for cn in ["a;b", "evil]", "two\nlines", ""] {
            let err = user_for(&Identity::CommonName, &chain(cn)).unwrap_err();
            assert!(
                err.contains("unusable") || err.contains("CommonName"),
                "{cn:?}: {err}"
            );
        }
    }

    #[test]
    fn no_certificate_is_refused() {
        assert!(user_for(&Identity::CommonName, &[]).is_err());
    }

    #[test]
    fn peer_fingerprint_is_sha256() {
        let peer = Peer::of(b"abc");
        assert!(peer.sha256.starts_with("BA:78:16:BF"));
        assert_eq!(peer.sha256.len(), 32 * 3 - 1);
    }
}
