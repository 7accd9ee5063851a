//! The rustls server configuration: PEM files, client-certificate
//! verification, protocol versions and the session policy RFC 7589 needs.
//!
//! Kept in one module so the rustls version (0.23) stays a local concern.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::config::{Config, FileOption, MinTls};
use crate::identity::Mapper;

/// TLS record header bytes, which rustls counts in `max_fragment_size`.
const RECORD_HEADER: usize = 5;

/// What every new session is verified and identified with; replaced as a
/// whole on reload.
#[derive(Clone)]
pub struct Loaded {
    pub server: Arc<ServerConfig>,
    pub mapper: Mapper,
}

/// Loads the files named in `config` and builds the server configuration.
/// Errors name the option, the file and the reason.
pub fn load(config: &Config) -> Result<Loaded, String> {
    let chain = read_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key.path)
        .map_err(|e| config.key.error(pem_error(e, "private key")))?;
    let roots = read_certs(&config.ca)?;
    let mut crls = Vec::new();
    for path in &config.crls {
        crls.extend(read_crls(path)?);
    }
    let policy = Policy {
        crls,
        min_tls: config.min_tls,
        max_record: config.max_record,
    };
    let server = build(chain, key, roots.clone(), policy).map_err(|e| match e {
        BuildError::Roots(why) => config.ca.error(why),
        BuildError::Key(why) => format!(
            "{} {} / {}",
            config.key.origin,
            config.key.path.display(),
            config.cert.error(why)
        ),
        BuildError::Crls(why) => format!("--crl: {why}"),
    })?;
    Ok(Loaded {
        server,
        mapper: Mapper::new(config.identity.clone(), roots).for_header(config.header),
    })
}

/// TLS choices besides the certificates.
pub struct Policy {
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub min_tls: MinTls,
    /// Largest plaintext per record sent.
    pub max_record: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            crls: Vec::new(),
            min_tls: MinTls::V12,
            max_record: 4096,
        }
    }
}

/// Which input a build error is about.
#[derive(Debug)]
pub enum BuildError {
    Roots(String),
    Key(String),
    Crls(String),
}

/// Builds from DER: mutual TLS against `roots`, TLS 1.3 and 1.2, no
/// resumption (a certificate revoked later must not resume), no 0-RTT.
///
/// With CRLs, the client certificate's issuer must have one (unknown status
/// is refused) and an expired CRL refuses too: fail closed, since a stale
/// list cannot vouch for a certificate.
pub fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
    policy: Policy,
) -> Result<Arc<ServerConfig>, BuildError> {
    let provider = Arc::new(ring::default_provider());
    let mut store = RootCertStore::empty();
    for (i, root) in roots.into_iter().enumerate() {
        store.add(root).map_err(|e| {
            BuildError::Roots(format!("certificate {} is not a usable CA: {e}", i + 1))
        })?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone());
    if !policy.crls.is_empty() {
        verifier = verifier
            .with_crls(policy.crls)
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration();
    }
    let verifier = verifier.build().map_err(|e| match e {
        rustls::server::VerifierBuilderError::InvalidCrl(e) => BuildError::Crls(format!("{e:?}")),
        other => BuildError::Roots(other.to_string()),
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match policy.min_tls {
        MinTls::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::V13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| BuildError::Key(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| BuildError::Key(key_error(e)))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.max_fragment_size = Some(policy.max_record + RECORD_HEADER);
    Ok(Arc::new(config))
}

fn read_certs(file: &FileOption) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(&file.path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file.error(pem_error(e, "certificate")))?;
    if certs.is_empty() {
        return Err(file.error("no certificate found"));
    }
    Ok(certs)
}

fn read_crls(file: &FileOption) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(&file.path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file.error(pem_error(e, "CRL")))?;
    if crls.is_empty() {
        return Err(file.error("no CRL found (expected PEM X509 CRL)"));
    }
    Ok(crls)
}

fn pem_error(e: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read: {e}"),
        Error::NoItemsFound => format!("no {what} found (expected PEM)"),
        other => format!("not valid PEM: {other:?}"),
    }
}

fn key_error(e: rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate".into()
        }
        rustls::Error::InvalidCertificate(e) => format!("unusable certificate: {e:?}"),
        other => format!("unusable certificate or key: {other}"),
    }
}
