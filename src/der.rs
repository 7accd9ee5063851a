//! Just enough DER to read a certificate's subject and subjectAltNames.
//!
//! rustls verifies certificates but does not expose their fields; a full
//! X.509 crate would be the biggest dependency of the project for the few
//! values RFC 7407's cert-to-name needs (CommonName, rfc822/DNS/IP SANs)
//! and the subject for logs.
//! Everything here is bounds-checked and returns `None` on malformed input.

/// One TLV: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and the rest.
fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Iterates over the TLVs inside a constructed value.
fn children(mut body: &[u8]) -> impl Iterator<Item = Option<Tlv<'_>>> + '_ {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        match next(body) {
            Some((tlv, rest)) => {
                body = rest;
                Some(Some(tlv))
            }
            None => {
                body = &[];
                Some(None)
            }
        }
    })
}

const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// One attribute of a distinguished name, e.g. `CN=admin`.
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Short name (`CN`, `O`, …) or the dotted OID when unknown.
    pub name: String,
    /// The value as text; `None` if its string type or bytes are not text.
    pub value: Option<String>,
}

/// The fields of a certificate's TBSCertificate, in order.
fn tbs_fields(cert: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let (cert, _) = next(cert).filter(|(t, _)| t.tag == SEQUENCE)?;
    let (tbs, _) = next(cert.body).filter(|(t, _)| t.tag == SEQUENCE)?;
    let mut fields = children(tbs.body).collect::<Option<Vec<_>>>()?;
    if fields.first()?.tag != VERSION {
        // v1 certificates have no version field; keep indexes uniform.
        fields.insert(
            0,
            Tlv {
                tag: VERSION,
                body: &[],
            },
        );
    }
    Some(fields)
}

// Indexes into `tbs_fields`: version, serial, signature, issuer, validity,
// subject, subjectPublicKeyInfo, then optional unique ids and extensions.
const SUBJECT: usize = 5;
const EXTENSIONS: u8 = 0xa3;

/// The subject's attributes in certificate order, or `None` if the
/// certificate cannot be parsed.
pub fn subject(cert: &[u8]) -> Option<Vec<Attribute>> {
    let fields = tbs_fields(cert)?;
    let name = fields.get(SUBJECT).filter(|n| n.tag == SEQUENCE)?;
    let mut attributes = Vec::new();
    for rdn in children(name.body) {
        let rdn = rdn.filter(|r| r.tag == SET)?;
        for atv in children(rdn.body) {
            let atv = atv.filter(|a| a.tag == SEQUENCE)?;
            let (oid, rest) = next(atv.body).filter(|(o, _)| o.tag == OID)?;
            let (value, _) = next(rest)?;
            attributes.push(Attribute {
                name: attribute_name(oid.body),
                value: text(&value),
            });
        }
    }
    Some(attributes)
}

/// One subjectAltName entry of the kinds RFC 7407 maps to user names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AltName {
    /// rfc822Name, as raw bytes (IA5String; may hold anything in a hostile cert).
    Email(Vec<u8>),
    /// dNSName, raw bytes.
    Dns(Vec<u8>),
    /// iPAddress: 4 or 16 bytes (anything else is kept raw and rejected later).
    Ip(Vec<u8>),
}

/// The certificate's subjectAltName entries of those kinds, in order;
/// `None` if the certificate cannot be parsed, empty if it has none.
pub fn alt_names(cert: &[u8]) -> Option<Vec<AltName>> {
    let fields = tbs_fields(cert)?;
    let Some(extensions) = fields
        .iter()
        .skip(SUBJECT + 2)
        .find(|f| f.tag == EXTENSIONS)
    else {
        return Some(Vec::new());
    };
    let (list, _) = next(extensions.body).filter(|(l, _)| l.tag == SEQUENCE)?;
    let mut names = Vec::new();
    for ext in children(list.body) {
        let ext = ext.filter(|e| e.tag == SEQUENCE)?;
        let (oid, mut rest) = next(ext.body).filter(|(o, _)| o.tag == OID)?;
        if oid.body != [0x55, 0x1d, 0x11] {
            continue;
        }
        let (mut value, after) = next(rest)?;
        if value.tag == BOOLEAN {
            rest = after;
            value = next(rest)?.0;
        }
        if value.tag != OCTET_STRING {
            return None;
        }
        let (general_names, _) = next(value.body).filter(|(g, _)| g.tag == SEQUENCE)?;
        for name in children(general_names.body) {
            let name = name?;
            let bytes = name.body.to_vec();
            match name.tag {
                0x81 => names.push(AltName::Email(bytes)),
                0x82 => names.push(AltName::Dns(bytes)),
                0x87 => names.push(AltName::Ip(bytes)),
                _ => {}
            }
        }
    }
    Some(names)
}

/// The subject's single CommonName; `None` if absent, repeated or not text.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let attrs = subject(cert)?;
    let mut cns = attrs.into_iter().filter(|a| a.name == "CN");
    let cn = cns.next()?;
    if cns.next().is_some() {
        return None;
    }
    cn.value
}

/// RFC 4514-style text (`CN=admin,O=Example`), for logs.
pub fn subject_text(cert: &[u8]) -> String {
    match subject(cert) {
        Some(attrs) => attrs
            .iter()
            .rev()
            .map(|a| format!("{}={}", a.name, a.value.as_deref().unwrap_or("<binary>")))
            .collect::<Vec<_>>()
            .join(","),
        None => "<unparsable certificate>".into(),
    }
}

fn attribute_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return dotted(oid),
    };
    known.to_string()
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Directory string types as text.
fn text(value: &Tlv<'_>) -> Option<String> {
    match value.tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(value.body.to_vec()).ok(),
        // TeletexString: in practice Latin-1
        0x14 => Some(value.body.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2 big-endian
        0x1e if value.body.len() % 2 == 0 => {
            let units = value
                .body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_pki as pki;

    #[test]
    fn reads_subject_of_generated_cert() {
        let ca = pki::Ca::new("Test CA");
        let cert = ca.client("admin");
        assert_eq!(common_name(cert.der()).as_deref(), Some("admin"));
        assert!(subject_text(cert.der()).contains("CN=admin"));
    }

    #[test]
    fn unicode_common_name() {
        let ca = pki::Ca::new("Test CA");
        let cert = ca.client("jöran");
        assert_eq!(common_name(cert.der()).as_deref(), Some("jöran"));
    }

    #[test]
    fn garbage_never_panics() {
        let ca = pki::Ca::new("Test CA");
        let der = ca.client("admin").der().to_vec();
        for cut in 0..der.len() {
            let _ = subject(&der[..cut]);
            let _ = alt_names(&der[..cut]);
        }
        let mut seed = 7u32;
        let mut flipped = der.clone();
        for i in 0..4000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = (seed as usize >> 8) % flipped.len();
            flipped[at] ^= (seed >> 3) as u8;
            let _ = subject(&flipped);
            let _ = alt_names(&flipped);
            if i % 50 == 0 {
                flipped.copy_from_slice(&der);
            }
        }
    }

    #[test]
    fn reads_alt_names_in_order() {
        let ca = pki::Ca::new("Test CA");
        let cert = ca.server();
        let names = alt_names(cert.der()).unwrap();
        assert_eq!(
            names,
            vec![
                AltName::Dns(b"localhost".to_vec()),
                AltName::Ip(vec![127, 0, 0, 1]),
                AltName::Ip([0u8; 15].iter().copied().chain([1]).collect()),
            ]
        );
        assert_eq!(alt_names(ca.client("x").der()), Some(Vec::new()));
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(dotted(&[0x55, 0x04, 0x2a]), "2.5.4.42");
    }
}
