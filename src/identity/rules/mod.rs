//! Who the client is: RFC 7589 §7 / RFC 7407 cert-to-name, from a verified
//! certificate chain to a NETCONF user name.
//!
//! Rules are tried in order. A rule applies when its fingerprint matches the
//! client certificate or any CA certificate on the verified path to a
//! configured trust anchor (or when it has no fingerprint); it then derives a
//! name by its map type. A rule that applies but yields no usable name falls
//! through to the next, as the RFC says. No name at all refuses the session.
//!
//! The shortcuts are rules too: `--user NAME` is `* specified NAME`, and the
//! default is `* common-name` (every certificate that verified was issued
//! under `--ca`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ring::digest;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::identity::der::{self, AltName, Validity};
use crate::identity::header::{self, HeaderKind};

/// RFC 7407's fingerprint: a TLS HashAlgorithm octet, then the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    alg: &'static digest::Algorithm,
    id: u8,
    digest: Vec<u8>,
}

impl Fingerprint {
    /// Parses `04:AB:CD:...` (case-insensitive hex pairs joined by `:`).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let bytes = text
            .split(':')
            .map(|pair| match pair.len() {
                2 => u8::from_str_radix(pair, 16).ok(),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("{text:?} is not hex octets joined by ':'"))?;
        let (&id, digest) = bytes.split_first().ok_or("empty fingerprint")?;
        let alg = hash_alg(id).ok_or_else(|| {
            format!(
                "hash algorithm {id:02x} is not supported \
                 (02 = SHA-1, 04 = SHA-256, 05 = SHA-384, 06 = SHA-512)"
            )
        })?;
        if digest.len() != alg.output_len() {
            return Err(format!(
                "a {} fingerprint has {} digest octets, not {}",
                alg_name(id),
                alg.output_len(),
                digest.len()
            ));
        }
        Ok(Fingerprint {
            alg,
            id,
            digest: digest.to_vec(),
        })
    }

    /// The fingerprint of `cert` with hash algorithm `id`.
    pub fn of(cert: &[u8], id: u8) -> Option<Fingerprint> {
        let alg = hash_alg(id)?;
        Some(Fingerprint {
            alg,
            id,
            digest: digest::digest(alg, cert).as_ref().to_vec(),
        })
    }

    fn matches(&self, cert: &[u8]) -> bool {
        digest::digest(self.alg, cert).as_ref() == self.digest.as_slice()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}:{}", self.id, hex_colon(&self.digest))
    }
}

/// The RFC 5246 HashAlgorithm ids ring can compute (not md5 or sha224).
fn hash_alg(id: u8) -> Option<&'static digest::Algorithm> {
    match id {
        2 => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        4 => Some(&digest::SHA256),
        5 => Some(&digest::SHA384),
        6 => Some(&digest::SHA512),
        _ => None,
    }
}

fn alg_name(id: u8) -> &'static str {
    match id {
        2 => "SHA-1",
        4 => "SHA-256",
        5 => "SHA-384",
        6 => "SHA-512",
        _ => "unknown",
    }
}

/// How a matching rule derives the name (RFC 7407 §2 map types, in
/// `--map`'s words). A SAN type takes the first SAN of its kind that
/// yields a name; none yields no name, and the next rule is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapType {
    /// `specified NAME`: this name, whatever the certificate holds.
    Specified(String),
    /// `san-rfc822-name`: an email SAN, local part as is, host lowercased.
    SanRfc822Name,
    /// `san-dns-name`: a DNS SAN, lowercased.
    SanDnsName,
    /// `san-ip-address`: an IP SAN, IPv4 dotted, IPv6 as 32 lowercase hex
    /// digits.
    SanIpAddress,
    /// `san-any`: the first SAN of those three kinds, mapped as its kind is.
    SanAny,
    /// `common-name`: the subject's CommonName; none when it has none,
    /// several, or one that is not text.
    CommonName,
}

/// One cert-to-name entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `None` matches every verified certificate (written `*`).
    pub fingerprint: Option<Fingerprint>,
    /// How the name is derived once the fingerprint matched.
    pub map: MapType,
}

impl Rule {
    /// Parses `FINGERPRINT MAP-TYPE [NAME]`, FINGERPRINT being `*` for any.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (fp, map, name) = match words.as_slice() {
            [fp, map] => (*fp, *map, None),
            [fp, map, name] => (*fp, *map, Some(*name)),
            _ => return Err("expected FINGERPRINT MAP-TYPE [NAME]".into()),
        };
        let fingerprint = match fp {
            "*" => None,
            _ => Some(Fingerprint::parse(fp)?),
        };
        let map = match (map, name) {
            ("specified", Some(name)) => {
                header::check_name(name)
                    .map_err(|why| format!("{name:?} cannot be a user name: {why}"))?;
                MapType::Specified(name.to_string())
            }
            ("specified", None) => return Err("map type specified needs a NAME".into()),
            (_, Some(_)) => return Err("only map type specified takes a NAME".into()),
            ("san-rfc822-name", None) => MapType::SanRfc822Name,
            ("san-dns-name", None) => MapType::SanDnsName,
            ("san-ip-address", None) => MapType::SanIpAddress,
            ("san-any", None) => MapType::SanAny,
            ("common-name", None) => MapType::CommonName,
            (other, None) => {
                return Err(format!(
                    "unknown map type {other:?} (specified, san-rfc822-name, san-dns-name, \
                     san-ip-address, san-any, common-name)"
                ))
            }
        };
        Ok(Rule { fingerprint, map })
    }

    /// The name this rule's map type derives from `cert`, if any.
    fn derive(&self, cert: &[u8]) -> Option<String> {
        let alt = || der::alt_names(cert).unwrap_or_default();
        match &self.map {
            MapType::Specified(name) => Some(name.clone()),
            MapType::CommonName => der::common_name(cert),
            MapType::SanRfc822Name => alt().iter().find_map(|n| match n {
                AltName::Email(e) => rfc822_name(e),
                _ => None,
            }),
            MapType::SanDnsName => alt().iter().find_map(|n| match n {
                AltName::Dns(d) => dns_name(d),
                _ => None,
            }),
            MapType::SanIpAddress => alt().iter().find_map(|n| match n {
                AltName::Ip(ip) => ip_name(ip),
                _ => None,
            }),
            // The first SAN of the three kinds, mapped by its own rule.
            MapType::SanAny => alt().first().and_then(|n| match n {
                AltName::Email(e) => rfc822_name(e),
                AltName::Dns(d) => dns_name(d),
                AltName::Ip(ip) => ip_name(ip),
            }),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fingerprint {
            Some(fp) => write!(f, "{fp} ")?,
            None => write!(f, "* ")?,
        }
        match &self.map {
            MapType::Specified(name) => write!(f, "specified {name}"),
            MapType::SanRfc822Name => write!(f, "san-rfc822-name"),
            MapType::SanDnsName => write!(f, "san-dns-name"),
            MapType::SanIpAddress => write!(f, "san-ip-address"),
            MapType::SanAny => write!(f, "san-any"),
            MapType::CommonName => write!(f, "common-name"),
        }
    }
}

/// rfc822Name: local part as is, host part lowercased.
fn rfc822_name(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let (local, host) = text.rsplit_once('@')?;
    Some(format!("{local}@{}", host.to_ascii_lowercase()))
}

/// dNSName: lowercased.
fn dns_name(raw: &[u8]) -> Option<String> {
    Some(std::str::from_utf8(raw).ok()?.to_ascii_lowercase())
}

/// iPAddress: IPv4 dotted quad, IPv6 as 32 lowercase hex digits.
fn ip_name(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()),
        16 => {
            let octets: [u8; 16] = raw.try_into().ok()?;
            Some(
                Ipv6Addr::from(octets)
                    .octets()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// One `--ca` certificate as a trust anchor.
#[derive(Clone)]
struct Anchor {
    anchor: TrustAnchor<'static>,
    /// What an anchor fingerprint is computed over.
    der: CertificateDer<'static>,
    validity: Option<Validity>,
}

/// The identity rules plus the trust anchors needed to find a client's
/// verified path (rustls only reports what the client sent).
#[derive(Clone)]
pub struct Mapper {
    rules: Vec<Rule>,
    /// The CA certificates as trust anchors, parsed once. Empty unless a
    /// rule has a fingerprint.
    anchors: Vec<Anchor>,
    /// The signature algorithms the handshake verified the chain with (ring).
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    /// The session header, which decides what a usable name is.
    header: HeaderKind,
}

impl Mapper {
    /// `rules` in the order they are tried, and the `--ca` certificates
    /// (DER) a rule's fingerprint may name as the trust anchor. A CA that
    /// is not a usable trust anchor is left out (rustls would not verify
    /// with it either). Names are checked for ConfD's plain header until
    /// [`Mapper::for_header`] says otherwise.
    pub fn new(rules: Vec<Rule>, cas: Vec<CertificateDer<'static>>) -> Mapper {
        let needs_path = rules.iter().any(|r| r.fingerprint.is_some());
        let anchors = match needs_path {
            true => cas
                .into_iter()
                .filter_map(|ca| {
                    let anchor = webpki::anchor_from_trusted_cert(&ca).ok()?.to_owned();
                    let validity = der::validity(&ca);
                    Some(Anchor {
                        anchor,
                        der: ca,
                        validity,
                    })
                })
                .collect(),
            false => Vec::new(),
        };
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        Mapper {
            rules,
            anchors,
            algorithms,
            header: HeaderKind::Confd,
        }
    }

    /// Names are usable when `header` carries them exactly (the default,
    /// ConfD's plain line, is the strictest).
    pub fn for_header(self, header: HeaderKind) -> Mapper {
        Mapper { header, ..self }
    }

    /// The user for a verified chain (end-entity first), or why there is none.
    pub fn user_for(&self, chain: &[CertificateDer<'_>]) -> Result<String, String> {
        let Some(cert) = chain.first() else {
            return Err("no client certificate".into());
        };
        let path = if self.rules.iter().any(|r| r.fingerprint.is_some()) {
            self.verified_path(chain)
        } else {
            Vec::new()
        };
        let mut why = Vec::new();
        for rule in &self.rules {
            if let Some(fp) = &rule.fingerprint {
                if !path.iter().any(|c| fp.matches(c)) {
                    continue;
                }
            }
            // A `specified` name may hold control characters.
            let shown = || rule.to_string().escape_debug().to_string();
            match rule.derive(cert) {
                Some(user) => match self.header.check_user(&user) {
                    Ok(()) => return Ok(user),
                    Err(e) => why.push(format!(
                        "rule '{}' gave unusable name {user:?}: {e}",
                        shown()
                    )),
                },
                None => why.push(format!("rule '{}' found no name", shown())),
            }
        }
        if why.is_empty() {
            return Err("no identity rule matches the certificate or its CAs".into());
        }
        Err(why.join("; "))
    }

    /// The client certificate, the intermediates and the anchor's own
    /// certificate on the path webpki verifies (the handshake already did).
    fn verified_path(&self, chain: &[CertificateDer<'_>]) -> Vec<Vec<u8>> {
        let mut path = vec![chain[0].to_vec()];
        let trust: Vec<TrustAnchor<'_>> = self.anchors.iter().map(|a| a.anchor.clone()).collect();
        let now = UnixTime::now();
        let Ok(ee) = EndEntityCert::try_from(&chain[0]) else {
            return path;
        };
        let Ok(verified) = ee.verify_for_usage(
            self.algorithms,
            &trust,
            &chain[1..],
            now,
            KeyUsage::client_auth(),
            None,
            None,
        ) else {
            return path;
        };
        path.extend(
            verified
                .intermediate_certificates()
                .map(|c| c.der().to_vec()),
        );
        let anchor = verified.anchor();
        // A renewed CA is the same subject and key in another certificate;
        // webpki reports whichever copy it tried first. The copy valid now
        // (then the newest) is the one that vouches, whatever the order of
        // `--ca`, so the order never changes a user.
        let now = now.as_secs() as i64;
        fn rank(a: &Anchor, now: i64) -> (bool, Option<i64>, &[u8]) {
            let v = a.validity;
            (
                v.is_some_and(|v| v.contains(now)),
                v.map(|v| v.not_before),
                a.der.as_ref(),
            )
        }
        if let Some(best) = self
            .anchors
            .iter()
            .filter(|a| {
                a.anchor.subject == anchor.subject
                    && a.anchor.subject_public_key_info == anchor.subject_public_key_info
            })
            .max_by(|a, b| rank(a, now).cmp(&rank(b, now)))
        {
            path.push(best.der.to_vec());
        }
        path
    }
}

/// What the logs say about a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The subject as RFC 4514-style text (`CN=admin,O=Example`), or
    /// `<unparsable certificate>`.
    pub subject: String,
    /// SHA-256 of the certificate, hex pairs joined by `:`.
    pub sha256: String,
}

impl Peer {
    /// The subject and SHA-256 of a DER certificate; never fails.
    pub fn of(cert: &[u8]) -> Peer {
        Peer {
            subject: der::subject_text(cert),
            sha256: hex_colon(digest::digest(&digest::SHA256, cert).as_ref()),
        }
    }
}

/// `nctls fingerprint`: the RFC 7407 fingerprints operators write rules with.
pub fn describe_fingerprints(cert: &[u8]) -> String {
    let mut out = format!("subject: {}\n", der::subject_text(cert));
    for id in [2, 4, 6] {
        if let Some(fp) = Fingerprint::of(cert, id) {
            out.push_str(&format!("{:<8} {fp}\n", alg_name(id)));
        }
    }
    out
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
