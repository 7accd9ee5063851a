//! Just enough DER to read the certificate and CRL fields nctls needs.
//!
//! rustls verifies certificates but does not expose their fields; a full
//! X.509 crate would be the biggest dependency of the project for the few
//! values needed: RFC 7407's cert-to-name (CommonName, rfc822/DNS/IP SANs),
//! subjects for logs, validity and public keys (expiry checks, anchor
//! choice, key/certificate pairing), and a CRL's issuer, dates and number
//! (choosing the current CRL, RFC 5280 §5).
//! Everything here is bounds-checked and returns `None` on malformed input.

/// One TLV: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    /// Tag, length and contents: the whole encoding.
    raw: &'a [u8],
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
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            body: &rest[..len],
            raw: &input[..header + len],
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
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
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
                raw: &[],
            },
        );
    }
    Some(fields)
}

// Indexes into `tbs_fields`: version, serial, signature, issuer, validity,
// subject, subjectPublicKeyInfo, then optional unique ids and extensions.
const VALIDITY: usize = 4;
const SUBJECT: usize = 5;
const PUBLIC_KEY: usize = 6;
const EXTENSIONS: u8 = 0xa3;

/// The subject's attributes in certificate order, or `None` if the
/// certificate cannot be parsed.
pub fn subject(cert: &[u8]) -> Option<Vec<Attribute>> {
    let fields = tbs_fields(cert)?;
    name_attributes(fields.get(SUBJECT)?)
}

/// A certificate's validity period, in seconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The first second it is valid (notBefore).
    pub not_before: i64,
    /// The last second it is valid (notAfter, inclusive: RFC 5280 §4.1.2.5).
    pub not_after: i64,
}

impl Validity {
    /// Whether `now` (seconds since the epoch) is inside the period.
    pub fn contains(&self, now: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }
}

/// The certificate's notBefore and notAfter; `None` if the certificate
/// or either time cannot be parsed.
pub fn validity(cert: &[u8]) -> Option<Validity> {
    let fields = tbs_fields(cert)?;
    let validity = fields.get(VALIDITY).filter(|v| v.tag == SEQUENCE)?;
    let (not_before, rest) = next(validity.body)?;
    let (not_after, _) = next(rest)?;
    Some(Validity {
        not_before: time(&not_before)?,
        not_after: time(&not_after)?,
    })
}

/// The certificate's SubjectPublicKeyInfo, whole (as a key's public half is
/// encoded), to pair certificates with private keys; `None` if the
/// certificate cannot be parsed.
pub fn public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let fields = tbs_fields(cert)?;
    let spki = fields.get(PUBLIC_KEY).filter(|k| k.tag == SEQUENCE)?;
    Some(spki.raw)
}

/// The fields of a CRL (RFC 5280 §5.1) that decide which CRL is current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlFields {
    /// The issuer Name, whole (compared byte for byte, as webpki does).
    pub issuer: Vec<u8>,
    /// The issuer as text, for messages.
    pub issuer_text: String,
    /// Seconds since the epoch.
    pub this_update: i64,
    /// When the next CRL is due, in seconds since the epoch; after it this
    /// one has expired. `None` when absent (RFC 5280 requires it).
    pub next_update: Option<i64>,
    /// The cRLNumber extension's integer, big-endian without leading zeros.
    pub number: Option<Vec<u8>>,
    /// The issuingDistributionPoint extension, whole: CRLs with different
    /// ones cover different certificates (RFC 5280 §5.2.5).
    pub scope: Option<Vec<u8>>,
}

/// Reads a CRL's issuer, dates, number and scope (DER); `None` if it
/// cannot be parsed.
pub fn crl_fields(crl: &[u8]) -> Option<CrlFields> {
    let (list, _) = next(crl).filter(|(t, _)| t.tag == SEQUENCE)?;
    let (tbs, _) = next(list.body).filter(|(t, _)| t.tag == SEQUENCE)?;
    let mut fields = children(tbs.body).collect::<Option<Vec<_>>>()?.into_iter();
    // An optional version (v2), then the signature algorithm.
    if fields.next()?.tag == INTEGER {
        fields.next()?;
    }
    let issuer = fields.next().filter(|i| i.tag == SEQUENCE)?;
    let this_update = time(&fields.next()?)?;
    let mut next_update = None;
    let mut number = None;
    let mut scope = None;
    for field in fields {
        match field.tag {
            UTC_TIME | GENERALIZED_TIME => next_update = Some(time(&field)?),
            0xa0 => {
                for (oid, value) in extensions(&field)? {
                    match oid {
                        [0x55, 0x1d, 0x14] => {
                            let (n, _) = next(value).filter(|(n, _)| n.tag == INTEGER)?;
                            let start = n.body.iter().position(|&b| b != 0).unwrap_or(n.body.len());
                            number = Some(n.body[start..].to_vec());
                        }
                        [0x55, 0x1d, 0x1c] => scope = Some(value.to_vec()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(CrlFields {
        issuer: issuer.raw.to_vec(),
        issuer_text: attributes_text(&name_attributes(&issuer)?),
        this_update,
        next_update,
        number,
        scope,
    })
}

/// The (OID, value) pairs of an extensions wrapper (`[0]` or `[3]`
/// holding a SEQUENCE of Extension); the value is the OCTET STRING's contents.
fn extensions<'a>(wrapper: &Tlv<'a>) -> Option<Vec<(&'a [u8], &'a [u8])>> {
    let (list, _) = next(wrapper.body).filter(|(l, _)| l.tag == SEQUENCE)?;
    let mut out = Vec::new();
    for ext in children(list.body) {
        let ext = ext.filter(|e| e.tag == SEQUENCE)?;
        let (oid, rest) = next(ext.body).filter(|(o, _)| o.tag == OID)?;
        let (mut value, after) = next(rest)?;
        if value.tag == BOOLEAN {
            value = next(after)?.0;
        }
        if value.tag != OCTET_STRING {
            return None;
        }
        out.push((oid.body, value.body));
    }
    Some(out)
}

/// A Name's attributes in order.
fn name_attributes(name: &Tlv<'_>) -> Option<Vec<Attribute>> {
    if name.tag != SEQUENCE {
        return None;
    }
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
    let mut names = Vec::new();
    for (oid, value) in self::extensions(extensions)? {
        if oid != [0x55, 0x1d, 0x11] {
            continue;
        }
        let (general_names, _) = next(value).filter(|(g, _)| g.tag == SEQUENCE)?;
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
        Some(attrs) => attributes_text(&attrs),
        None => "<unparsable certificate>".into(),
    }
}

fn attributes_text(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .rev()
        .map(|a| format!("{}={}", a.name, a.value.as_deref().unwrap_or("<binary>")))
        .collect::<Vec<_>>()
        .join(",")
}

/// An ASN.1 UTCTime or GeneralizedTime in RFC 5280's DER profile
/// (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`) as seconds since the epoch.
fn time(value: &Tlv<'_>) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (value.tag, value.body.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&value.body[..2])?;
            // RFC 5280 §4.1.2.5.1: 50-99 are 19YY, 00-49 are 20YY.
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                &value.body[2..],
            )
        }
        (GENERALIZED_TIME, 15) => (digits(&value.body[..4])?, &value.body[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]).unwrap_or(-1));
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Seconds since the epoch as `2026-11-29T23:20:14Z`, for messages.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
mod tests;
