//! The server's private key in a PKCS#11 token (`--key pkcs11:...`, the
//! `pkcs11` cargo feature): a TPM (tpm2-pkcs11), a secure element, an HSM
//! or SoftHSM. The key never enters nctls's memory: rustls asks the
//! [`SigningKey`] made here for each handshake's signature, and the token
//! computes it (`C_Sign`). nctls hashes the handshake message itself and
//! asks for a raw ECDSA, RSA-PSS or PKCS#1 v1.5 signature of the hash, the
//! mechanisms every token has.
//!
//! The module is loaded at run time (`dlopen`, through the cryptoki crate),
//! so the binary links no PKCS#11 library.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use ring::digest;
use rustls::pki_types::CertificateDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::config::pkcs11_uri::{hex, Pkcs11Uri};
use crate::config::{Config, FileOption};

/// DER OIDs of the curves rustls can sign with (CKA_EC_PARAMS holds one).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// What a handshake signs in the start-up test of the key (any bytes do).
const PROBE: &[u8] = b"nctls: does the token's key belong to the certificate?";

/// Opens `config.pkcs11_module`, logs in to the token `uri` names with the
/// PIN from `config.pkcs11_pin_file` (if any), finds the private key, and
/// signs once to check that it belongs to `certificate`. Errors are one
/// line naming the option to fix (the module, the PIN file, or the URI).
pub fn load(
    config: &Config,
    uri: &Pkcs11Uri,
    certificate: &CertificateDer<'_>,
) -> Result<Arc<dyn SigningKey>, String> {
    let module_option = config
        .pkcs11_module
        .as_ref()
        .ok_or_else(|| config.key.error("needs --pkcs11-module PATH"))?;
    let module = module(&module_option.path).map_err(|why| module_option.error(why))?;
    let (slot, info) = token(&module, uri).map_err(|why| config.key.error(why))?;
    let session = module.open_ro_session(slot).map_err(|e| {
        config
            .key
            .error(format!("cannot open a session: {}", rv(&e)))
    })?;
    match &config.pkcs11_pin_file {
        Some(pin_file) => login(&session, pin_file)?,
        None if info.login_required() => {
            return Err(config.key.error(format!(
                "token {:?} needs a login: give its user PIN with --pkcs11-pin-file FILE",
                info.label()
            )))
        }
        None => {}
    }
    let key = private_key(&session, uri, &info).map_err(|why| config.key.error(why))?;
    // Asked one by one: cryptoki logs an error for each listed mechanism it
    // does not know.
    let has = |mechanism| module.get_mechanism_info(slot, mechanism).is_ok();
    let kind = key_kind(&session, key, has).map_err(|why| config.key.error(why))?;
    let token_key = TokenKey {
        shared: Arc::new(Shared {
            session: Mutex::new(session),
            key,
        }),
        kind,
    };
    token_key
        .check_certificate(certificate)
        .map_err(|why| config.key.error(why))?;
    Ok(Arc::new(token_key))
}

/// The module at `path`, loaded and initialised once per process: PKCS#11
/// allows one `C_Initialize` per module and process, and `C_Finalize` would
/// end every session, so a reload reuses the module (and its login).
fn module(path: &Path) -> Result<Pkcs11, String> {
    static MODULES: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, module)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(module.clone());
    }
    let module = Pkcs11::new(path).map_err(|e| match e {
        P11Error::LibraryLoading(e) => format!("cannot load the PKCS#11 module: {e}"),
        e => format!("not a PKCS#11 module: {}", rv(&e)),
    })?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(format!(
                "the module failed to start (C_Initialize): {}",
                rv(&e)
            ))
        }
    }
    modules.push((path.to_path_buf(), module.clone()));
    Ok(module)
}

/// The one initialised token the URI's token attributes match.
fn token(module: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, TokenInfo), String> {
    let slots = module
        .get_slots_with_initialized_token()
        .map_err(|e| format!("cannot list the module's tokens: {}", rv(&e)))?;
    let mut all = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = module
            .get_token_info(slot)
            .map_err(|e| format!("cannot read token information: {}", rv(&e)))?;
        all.push(format!("{:?} (slot-id={})", info.label(), slot.id()));
        let wanted = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if wanted(&uri.token, info.label())
            && wanted(&uri.manufacturer, info.manufacturer_id())
            && wanted(&uri.model, info.model())
            && wanted(&uri.serial, info.serial_number())
            && uri.slot_id.is_none_or(|id| id == slot.id())
        {
            matching.push((slot, info));
        }
    }
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 if all.is_empty() => Err("the module has no initialised token".into()),
        0 => Err(format!(
            "no token matches {} (the module's tokens: {})",
            uri.token_wanted(),
            all.join(", ")
        )),
        n => Err(format!(
            "{n} tokens match {}: add token=, serial= or slot-id= to the URI",
            uri.token_wanted()
        )),
    }
}

/// Logs in as the token's user with the PIN file's first line.
fn login(session: &Session, pin_file: &FileOption) -> Result<(), String> {
    let text = std::fs::read_to_string(&pin_file.path)
        .map_err(|e| pin_file.error(format!("cannot read: {e}")))?;
    let pin = text.lines().next().unwrap_or_default();
    if pin.is_empty() {
        return Err(pin_file.error("empty: the PIN is the file's first line"));
    }
    match session.login(UserType::User, Some(&AuthPin::from(pin))) {
        // The login is the application's, shared by its sessions: a reload
        // finds it done.
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => Err(pin_file.error(
            "the token refused this PIN (CKR_PIN_INCORRECT); tokens lock the PIN after a few \
             wrong tries",
        )),
        Err(P11Error::Pkcs11(RvError::PinLocked, _)) => Err(pin_file
            .error("the token's user PIN is locked (CKR_PIN_LOCKED): unlock it with the SO PIN")),
        Err(e) => Err(pin_file.error(format!("login failed: {}", rv(&e)))),
    }
}

/// The one private key the URI's object attributes name.
fn private_key(
    session: &Session,
    uri: &Pkcs11Uri,
    info: &TokenInfo,
) -> Result<ObjectHandle, String> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&template)
        .map_err(|e| format!("cannot search the token: {}", rv(&e)))?;
    match found.as_slice() {
        [key] => Ok(*key),
        [] => Err(format!(
            "no private key with {} in token {:?} (its private keys: {})",
            uri.object_wanted(),
            info.label(),
            describe_keys(session)
        )),
        many => Err(format!(
            "{} private keys match {} in token {:?}: add id= or object= to the URI",
            many.len(),
            uri.object_wanted(),
            info.label()
        )),
    }
}

/// Every private key the session sees, as URI attributes, for an error.
fn describe_keys(session: &Session) -> String {
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap_or_default();
    let names: Vec<String> = keys
        .into_iter()
        .map(|key| {
            let attributes = session
                .get_attributes(key, &[AttributeType::Label, AttributeType::Id])
                .unwrap_or_default();
            let mut words = Vec::new();
            for attribute in attributes {
                match attribute {
                    Attribute::Label(l) => {
                        words.push(format!("object={:?}", String::from_utf8_lossy(&l)))
                    }
                    Attribute::Id(id) => words.push(format!("id={}", hex(&id))),
                    _ => {}
                }
            }
            words.join(" ")
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// How the key signs: its type, curve, and the mechanisms the token has.
fn key_kind(
    session: &Session,
    key: ObjectHandle,
    has: impl Fn(MechanismType) -> bool,
) -> Result<Kind, String> {
    let attribute = |kind: AttributeType| {
        session
            .get_attributes(key, &[kind])
            .map_err(|e| format!("cannot read the key's attributes: {}", rv(&e)))
    };
    let key_type = attribute(AttributeType::KeyType)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        });
    match key_type {
        Some(t) if t == KeyType::EC => {
            let params = attribute(AttributeType::EcParams)?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcParams(p) => Some(p),
                    _ => None,
                });
            if !has(MechanismType::ECDSA) {
                return Err("the token cannot make ECDSA signatures (no CKM_ECDSA)".into());
            }
            match params.as_deref() {
                Some(P256) => Ok(Kind::Ecdsa(Curve::P256)),
                Some(P384) => Ok(Kind::Ecdsa(Curve::P384)),
                _ => Err(
                    "an EC key on a curve TLS signing here does not support: use P-256 or P-384"
                        .into(),
                ),
            }
        }
        Some(t) if t == KeyType::RSA => {
            let pss = has(MechanismType::RSA_PKCS_PSS);
            let pkcs1 = has(MechanismType::RSA_PKCS);
            if !pss && !pkcs1 {
                return Err(
                    "the token cannot make RSA signatures (no CKM_RSA_PKCS_PSS or CKM_RSA_PKCS)"
                        .into(),
                );
            }
            Ok(Kind::Rsa { pss, pkcs1 })
        }
        _ => Err("not an EC or RSA key".into()),
    }
}

/// A token error's return value, named as PKCS#11 names it where it has one.
fn rv(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
        other => other.to_string(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Curve {
    P256,
    P384,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ecdsa(Curve),
    /// Which RSA mechanisms the token offers (TLS 1.3 needs PSS).
    Rsa {
        pss: bool,
        pkcs1: bool,
    },
}

/// The session and key handle, shared by the key and its signers.
struct Shared {
    /// One session, one operation at a time (`C_Sign` is stateful per session).
    session: Mutex<Session>,
    key: ObjectHandle,
}

/// A private key that stays in its token.
struct TokenKey {
    shared: Arc<Shared>,
    kind: Kind,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:?})", self.kind)
    }
}

impl TokenKey {
    /// The schemes this key signs with, best first.
    fn schemes(&self) -> Vec<SignatureScheme> {
        use SignatureScheme::*;
        match self.kind {
            Kind::Ecdsa(Curve::P256) => vec![ECDSA_NISTP256_SHA256],
            Kind::Ecdsa(Curve::P384) => vec![ECDSA_NISTP384_SHA384],
            Kind::Rsa { pss, pkcs1 } => {
                let mut schemes = Vec::new();
                if pss {
                    schemes.extend([RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512]);
                }
                if pkcs1 {
                    schemes.extend([RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512]);
                }
                schemes
            }
        }
    }

    /// Signs a probe with the first scheme and verifies it with the
    /// certificate's public key: the key is the certificate's, and the
    /// token signs.
    fn check_certificate(&self, certificate: &CertificateDer<'_>) -> Result<(), String> {
        let scheme = self.schemes()[0];
        let signer = TokenSigner {
            shared: self.shared.clone(),
            scheme,
        };
        let signature = signer
            .sign(PROBE)
            .map_err(|e| format!("the token cannot sign: {e}"))?;
        let algorithm = match scheme {
            SignatureScheme::ECDSA_NISTP256_SHA256 => webpki::ring::ECDSA_P256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384 => webpki::ring::ECDSA_P384_SHA384,
            SignatureScheme::RSA_PSS_SHA256 => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            _ => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        };
        let cert = webpki::EndEntityCert::try_from(certificate)
            .map_err(|e| format!("the certificate cannot be read: {e}"))?;
        cert.verify_signature(algorithm, PROBE, &signature)
            .map_err(|_| {
                "the token's key does not belong to the server certificate (--cert): its \
                 signature does not verify with the certificate's public key"
                    .to_string()
            })
    }
}

impl SigningKey for TokenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.schemes().into_iter().find(|s| offered.contains(s))?;
        Some(Box::new(TokenSigner {
            shared: self.shared.clone(),
            scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.kind {
            Kind::Ecdsa(_) => SignatureAlgorithm::ECDSA,
            Kind::Rsa { .. } => SignatureAlgorithm::RSA,
        }
    }
}

/// One handshake's signature, by the token.
struct TokenSigner {
    shared: Arc<Shared>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSigner({:?})", self.scheme)
    }
}

impl Signer for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        use SignatureScheme::*;
        let (hash, hash_mechanism, mgf) = match self.scheme {
            ECDSA_NISTP256_SHA256 | RSA_PSS_SHA256 | RSA_PKCS1_SHA256 => (
                &digest::SHA256,
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
            ),
            ECDSA_NISTP384_SHA384 | RSA_PSS_SHA384 | RSA_PKCS1_SHA384 => (
                &digest::SHA384,
                MechanismType::SHA384,
                PkcsMgfType::MGF1_SHA384,
            ),
            _ => (
                &digest::SHA512,
                MechanismType::SHA512,
                PkcsMgfType::MGF1_SHA512,
            ),
        };
        let hashed = digest::digest(hash, message);
        let hashed = hashed.as_ref();
        let (mechanism, input) = match self.scheme {
            ECDSA_NISTP256_SHA256 | ECDSA_NISTP384_SHA384 => (Mechanism::Ecdsa, hashed.to_vec()),
            // TLS 1.3 (RFC 8446 §4.2.3): the salt is as long as the hash.
            RSA_PSS_SHA256 | RSA_PSS_SHA384 | RSA_PSS_SHA512 => (
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: hash_mechanism,
                    mgf,
                    s_len: (hashed.len() as u64).into(),
                }),
                hashed.to_vec(),
            ),
            _ => (Mechanism::RsaPkcs, digest_info(self.scheme, hashed)),
        };
        let session = self
            .shared
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let signature = session
            .sign(&mechanism, self.shared.key, &input)
            .map_err(|e| rustls::Error::General(format!("PKCS#11 token: {}", rv(&e))))?;
        match self.scheme {
            ECDSA_NISTP256_SHA256 | ECDSA_NISTP384_SHA384 => {
                ecdsa_der(&signature).ok_or_else(|| {
                    rustls::Error::General("PKCS#11 token: malformed ECDSA signature".into())
                })
            }
            _ => Ok(signature),
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// PKCS#1 v1.5's DigestInfo around a hash (RFC 8017 §9.2, note 1): what
/// CKM_RSA_PKCS signs.
fn digest_info(scheme: SignatureScheme, hashed: &[u8]) -> Vec<u8> {
    const SHA256: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    const SHA384: [u8; 19] = [
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0x04, 0x30,
    ];
    const SHA512: [u8; 19] = [
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];
    let prefix = match scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => &SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &SHA384,
        _ => &SHA512,
    };
    [prefix.as_slice(), hashed].concat()
}

/// A PKCS#11 ECDSA signature (r and s, each the curve's size, big-endian)
/// as TLS carries it: DER `SEQUENCE { INTEGER r, INTEGER s }` (RFC 8446
/// §4.2.3). P-256 and P-384 keep every length under 128 (short form).
fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 || raw.len() > 2 * 48 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let integer = |n: &[u8]| {
        let first = n.iter().position(|&b| b != 0).unwrap_or(n.len() - 1);
        let n = &n[first..];
        let mut out = vec![0x02];
        if n[0] & 0x80 != 0 {
            out.extend([n.len() as u8 + 1, 0x00]);
        } else {
            out.push(n.len() as u8);
        }
        out.extend_from_slice(n);
        out
    };
    let body = [integer(r), integer(s)].concat();
    Some([vec![0x30, body.len() as u8], body].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der() {
        // High bit set: a 0x00 is added; leading zeros go.
        let mut raw = vec![0x80; 32];
        raw.extend([0x00, 0x00, 0x01]);
        raw.extend([0x7f; 29]);
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 2 + 33 + 2 + 30, 0x02, 33, 0x00]);
        assert_eq!(&der[37..40], &[0x02, 30, 0x01]);
        assert_eq!(der.len(), 2 + 35 + 32);
        // All zero: one zero byte.
        assert_eq!(ecdsa_der(&[0; 64]).unwrap(), [0x30, 6, 2, 1, 0, 2, 1, 0]);
        assert!(ecdsa_der(&[1; 63]).is_none());
        assert!(ecdsa_der(&[]).is_none());
    }

    #[test]
    fn digest_info_is_rfc_8017s() {
        let hashed = [0xab; 32];
        let info = digest_info(SignatureScheme::RSA_PKCS1_SHA256, &hashed);
        assert_eq!(info.len(), 19 + 32);
        assert_eq!(info[1] as usize, info.len() - 2);
        let info = digest_info(SignatureScheme::RSA_PKCS1_SHA512, &[0; 64]);
        assert_eq!(info[1] as usize, info.len() - 2);
    }
}
