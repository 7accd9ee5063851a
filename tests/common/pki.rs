//! A throw-away test PKI made at test time (ECDSA P-256): a CA, a server
//! certificate for localhost, and client certificates by CommonName.
//! Shared by unit tests (via `#[path]`) and integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// A UTC date for certificate and CRL validity: (year, month, day).
pub type Ymd = (i32, u8, u8);

macro_rules! date {
    ($ymd:expr) => {{
        let (y, m, d): Ymd = $ymd;
        rcgen::date_time_ymd(y, m, d)
    }};
}

/// A subjectAltName for [`Ca::client_with_sans`].
pub enum San<'a> {
    Email(&'a str),
    Dns(&'a str),
    Ip(&'a str),
}

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    params: CertificateParams,
}

/// A certificate with its private key.
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    pub fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// Writes `NAME.pem` and `NAME-key.pem` (mode 0600, as keys should
    /// be) into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, self.cert.pem()).expect("write cert");
        write_private(&key, &self.key.serialize_pem());
        (cert, key)
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("keygen");
        let cert = params.clone().self_signed(&key).expect("self-sign CA");
        Ca { cert, key, params }
    }

    /// The same CA (same subject, same key) self-signed again for another
    /// validity period: what renewing a CA certificate gives.
    pub fn renewed(&self, not_before: Ymd, not_after: Ymd) -> Ca {
        let mut params = self.params.clone();
        params.not_before = date!(not_before);
        params.not_after = date!(not_after);
        let key = KeyPair::from_pem(&self.key.serialize_pem()).expect("same key");
        let cert = params.clone().self_signed(&key).expect("self-sign CA");
        Ca { cert, key, params }
    }

    /// A CRL (DER) with `number`, dates, and `revoked` listed by serial.
    pub fn crl(
        &self,
        number: u64,
        this_update: Ymd,
        next_update: Ymd,
        revoked: &[&[u8]],
    ) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: date!(this_update),
            next_update: date!(next_update),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: date!((2020, 1, 1)),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.cert, &self.key).expect("sign CRL");
        crl.der().to_vec()
    }
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate as `NAME.pem` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path
    }

    /// Writes the CA's private key as `NAME-key.pem` (mode 0600) into `dir`.
    pub fn write_key(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}-key.pem"));
        write_private(&path, &self.key.serialize_pem());
        path
    }

    /// A server certificate for `localhost`, 127.0.0.1 and ::1.
    pub fn server(&self) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .subject_alt_names
            .push(SanType::IpAddress("::1".parse().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with subject `CN=cn`.
    pub fn client(&self, cn: &str) -> Issued {
        self.issue(client_params(cn))
    }

    /// A client certificate with subjectAltNames, in the given order.
    pub fn client_with_sans(&self, cn: &str, sans: &[San]) -> Issued {
        let mut params = client_params(cn);
        for san in sans {
            params.subject_alt_names.push(match san {
                San::Email(e) => SanType::Rfc822Name((*e).try_into().expect("ia5")),
                San::Dns(d) => SanType::DnsName((*d).try_into().expect("ia5")),
                San::Ip(ip) => SanType::IpAddress(ip.parse().expect("ip")),
            });
        }
        self.issue(params)
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issued = self.issue(params.clone());
        Ca {
            cert: issued.cert,
            key: issued.key,
            params,
        }
    }

    /// A server certificate for `localhost` valid from `not_before` to `not_after`.
    pub fn server_valid(&self, not_before: Ymd, not_after: Ymd) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = date!(not_before);
        params.not_after = date!(not_after);
        self.issue(params)
    }

    /// A client certificate that expired in 2020.
    pub fn expired_client(&self, cn: &str) -> Issued {
        let mut params = client_params(cn);
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        self.issue(params)
    }

    /// A client certificate valid only from 2090 on.
    pub fn not_yet_valid_client(&self, cn: &str) -> Issued {
        let mut params = client_params(cn);
        params.not_before = rcgen::date_time_ymd(2090, 1, 1);
        params.not_after = rcgen::date_time_ymd(2091, 1, 1);
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("keygen");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign certificate");
        Issued { cert, key }
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .expect("write key");
}

/// A client certificate with subject `CN=cn` that signs itself (no CA).
pub fn self_signed_client(cn: &str) -> Issued {
    let key = KeyPair::generate().expect("keygen");
    let cert = client_params(cn).self_signed(&key).expect("self-sign");
    Issued { cert, key }
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}
