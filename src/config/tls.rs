//! The rustls server configuration: PEM files, client-certificate
//! verification, protocol versions and the session policy RFC 7589 needs.
//!
//! Kept in one module so the rustls version (0.23) stays a local concern.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::crl::{self, Crl};
use crate::config::inventory::Inventory;
use crate::config::pem::Pem;
use crate::config::{Config, FileOption, KeySource, MinTls};
use crate::identity::der;
use crate::identity::rules::Mapper;
use crate::relay::handshake;

/// TLS record header bytes, which rustls counts in `max_fragment_size`.
const RECORD_HEADER: usize = 5;

/// What every new session is verified and identified with; replaced as a
/// whole on reload.
#[derive(Clone)]
pub struct Loaded {
    /// rustls's server configuration: certificate, key, client verifier.
    pub server: Arc<ServerConfig>,
    /// The cert-to-name rules and the CA certificates they may name.
    pub mapper: Mapper,
    /// What was loaded: for `--check`, and for the expiry checks at start,
    /// on reload and daily.
    pub inventory: Arc<Inventory>,
    /// A key in a PKCS#11 token: whether it still signs after `--run-as`
    /// is worth a look ([`still_signs`]).
    pub token_key: Option<Arc<dyn SigningKey>>,
}

/// Loads the files named in `config` and builds the server configuration.
/// Errors name the option, the file and the reason.
pub fn load(config: &Config) -> Result<Loaded, String> {
    let chain = read(&config.cert)?
        .certificates()
        .map_err(|e| config.cert.error(e))?;
    let key = match &config.key {
        KeySource::File(file) => {
            let key = read(file)?.private_key().map_err(|e| file.error(e))?;
            check_pairing(&chain, &key).map_err(|why| config.cert.error(why))?;
            ServerKey::Der(key)
        }
        KeySource::Token { uri, .. } => token_key(config, uri, &chain[0])?,
    };
    let token_key = match &key {
        ServerKey::Signer(key) => Some(key.clone()),
        ServerKey::Der(_) => None,
    };
    let roots = read(&config.ca)?
        .certificates()
        .map_err(|e| config.ca.error(e))?;
    let mut crls = Vec::new();
    for file in &config.crls {
        for (i, der) in read(file)?
            .crls()
            .map_err(|e| file.error(e))?
            .into_iter()
            .enumerate()
        {
            let crl = Crl::parse(der).map_err(|e| file.error(format!("CRL {}: {e}", i + 1)))?;
            crls.push((format!("{} {}", file.origin, file.path.display()), crl));
        }
    }
    let inventory = Inventory::new(
        format!("{} {}", config.cert.origin, config.cert.path.display()),
        &chain[0],
        format!("{} {}", config.ca.origin, config.ca.path.display()),
        &roots,
        &crls,
        secret_permissions(config).into_iter().collect(),
    );
    let policy = Policy {
        crls: crls.into_iter().map(|(_, crl)| crl).collect(),
        min_tls: config.min_tls,
        max_record: config.max_record,
    };
    let server = build(chain, key, roots.clone(), policy).map_err(|e| match e {
        BuildError::Roots(why) => config.ca.error(why),
        BuildError::Key(why) => format!("{} / {}", config.key.name(), config.cert.error(why)),
        BuildError::Crls(why) => format!("--crl: {why}"),
    })?;
    Ok(Loaded {
        server,
        mapper: Mapper::new(config.identity.clone(), roots).for_header(config.header),
        inventory: Arc::new(inventory),
        token_key,
    })
}

/// Whether a key still signs (one signature of a probe): after `--run-as`
/// a token module may lose access to its own files (SoftHSM's token
/// directory), which would otherwise fail every handshake.
pub fn still_signs(key: &dyn SigningKey) -> Result<(), String> {
    let all = [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];
    let signer = key
        .choose_scheme(&all)
        .ok_or("the key offers no signature scheme")?;
    signer
        .sign(b"nctls: does the key still sign?")
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The key of a `pkcs11:` URI, signing in its token.
#[cfg(feature = "pkcs11")]
fn token_key(
    config: &Config,
    uri: &crate::config::pkcs11_uri::Pkcs11Uri,
    certificate: &CertificateDer<'_>,
) -> Result<ServerKey, String> {
    crate::config::pkcs11::load(config, uri, certificate).map(ServerKey::Signer)
}

/// Without the `pkcs11` feature the option table refuses `pkcs11:` keys;
/// this says the same should a configuration get here anyway.
#[cfg(not(feature = "pkcs11"))]
fn token_key(
    config: &Config,
    _: &crate::config::pkcs11_uri::Pkcs11Uri,
    _: &CertificateDer<'_>,
) -> Result<ServerKey, String> {
    Err(config
        .key
        .error("nctls was built without the pkcs11 feature"))
}

/// The server's private key as rustls takes it: the key itself (from a
/// file), or something that signs with it (a PKCS#11 token).
pub enum ServerKey {
    /// The key itself, read from a file.
    Der(PrivateKeyDer<'static>),
    /// Something that signs with a key it keeps (a PKCS#11 token).
    Signer(Arc<dyn SigningKey>),
}

impl From<PrivateKeyDer<'static>> for ServerKey {
    fn from(key: PrivateKeyDer<'static>) -> ServerKey {
        ServerKey::Der(key)
    }
}

/// TLS choices besides the certificates.
pub struct Policy {
    /// Every CRL loaded; [`build`] keeps the current one per issuer.
    pub crls: Vec<Crl>,
    /// The oldest TLS version offered.
    pub min_tls: MinTls,
    /// Largest plaintext per record sent, in bytes.
    pub max_record: usize,
}

impl Default for Policy {
    /// No CRLs; `--min-tls` and `--max-record` at their defaults.
    fn default() -> Policy {
        let config = Config::default();
        Policy {
            crls: Vec::new(),
            min_tls: config.min_tls,
            max_record: config.max_record,
        }
    }
}

/// Which input a build error is about.
#[derive(Debug)]
pub enum BuildError {
    /// A CA certificate is not a usable trust anchor, or the client
    /// verifier could not be built from them.
    Roots(String),
    /// The key and certificate chain cannot serve: a key rustls cannot
    /// use, or one that does not match the certificate.
    Key(String),
    /// A CRL rustls cannot use.
    Crls(String),
}

/// Builds from DER: mutual TLS against `roots`, TLS 1.3 and 1.2, no
/// resumption (a certificate revoked later must not resume), no 0-RTT.
///
/// With CRLs, only the newest CRL of each issuer is used (see
/// [`crl::select`]), the client certificate's issuer must have one (unknown
/// status is refused), and an expired CRL refuses too: fail closed, since a
/// stale list cannot vouch for a certificate.
pub fn build(
    chain: Vec<CertificateDer<'static>>,
    key: impl Into<ServerKey>,
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
            .with_crls(crl::current(&policy.crls))
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
    let certified = match key.into() {
        ServerKey::Der(key) => CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| BuildError::Key(key_error(e)))?,
        // Checked against the certificate when it was loaded (one signature).
        ServerKey::Signer(key) => CertifiedKey::new(chain, key),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| BuildError::Key(e.to_string()))?
        .with_client_cert_verifier(Arc::new(Recording { inner: verifier }))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.max_fragment_size = Some(policy.max_record + RECORD_HEADER);
    Ok(Arc::new(config))
}

fn read(file: &FileOption) -> Result<Pem, String> {
    Pem::read(&file.path).map_err(|e| file.error(e))
}

/// The key must belong to the first certificate of the chain file; when it
/// belongs to another one, the file is out of order, which rustls would
/// only call a mismatch.
fn check_pairing(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    // A key type rustls cannot use is left for `build` to report.
    let Some(public) = ring::sign::any_supported_type(key)
        .ok()
        .and_then(|k| k.public_key().map(|p| p.as_ref().to_vec()))
    else {
        return Ok(());
    };
    let owner = chain
        .iter()
        .position(|c| der::public_key_info(c) == Some(public.as_slice()));
    match owner {
        Some(0) | None => Ok(()),
        Some(i) => Err(format!(
            "the chain is out of order: the private key belongs to certificate {} in this \
             file ({}), not to the first ({}); put the server's own certificate first, then \
             the CA certificates that issued it",
            i + 1,
            der::subject_text(&chain[i]),
            der::subject_text(&chain[0]),
        )),
    }
}

/// A warning when the key file (or the PKCS#11 PIN file) can be read (or
/// written) by group or others.
fn secret_permissions(config: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let (file, what) = match (&config.key, &config.pkcs11_pin_file) {
        (KeySource::File(file), _) => (file, "private key"),
        (KeySource::Token { .. }, Some(pin)) => (pin, "PIN"),
        (KeySource::Token { .. }, None) => return None,
    };
    let mode = std::fs::metadata(&file.path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        file.error(format!(
            "the {what} file is accessible to group or others (mode {mode:04o}); \
             make it readable by nctls's user only (chmod 600)"
        ))
    })
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

/// The webpki verifier, recording the end-entity certificate it is given.
/// rustls calls it on the thread driving the handshake, inside that
/// session's processing, so a thread-local hands the certificate to exactly
/// that session (the C library may run sessions on several threads).
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        handshake::record_presented_certificate(end_entity);
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
