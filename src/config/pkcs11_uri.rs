//! PKCS#11 URIs (RFC 7512) naming the server's private key in a token:
//! `pkcs11:token=nctls;object=server-key;type=private`. Pure: which token
//! and object a URI names; finding them is `pkcs11.rs`'s job.
//!
//! The module and the PIN come from their own options (`--pkcs11-module`,
//! `--pkcs11-pin-file`), so the URI's query attributes that would carry them
//! (`module-path`, `pin-value`, ...) are refused rather than half-honoured:
//! a PIN must never sit on a command line.

use std::fmt;

/// A PKCS#11 URI's path attributes that nctls matches on. `None`: any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The URI as given (shown back by `--check`).
    pub text: String,
    /// Token label (`CK_TOKEN_INFO.label`).
    pub token: Option<String>,
    /// Token manufacturer (`CK_TOKEN_INFO.manufacturerID`).
    pub manufacturer: Option<String>,
    /// Token model (`CK_TOKEN_INFO.model`).
    pub model: Option<String>,
    /// Token serial number (`CK_TOKEN_INFO.serialNumber`).
    pub serial: Option<String>,
    /// The slot's id, a decimal number (`slot-id`: not in RFC 7512 itself,
    /// but p11-kit and GnuTLS's p11tool write it).
    pub slot_id: Option<u64>,
    /// Object label (`CKA_LABEL`).
    pub object: Option<String>,
    /// Object id (`CKA_ID`), bytes.
    pub id: Option<Vec<u8>>,
}

impl Pkcs11Uri {
    /// Whether a `--key` value is meant as a PKCS#11 URI (the scheme is
    /// case-insensitive, RFC 3986 §3.1).
    pub fn is_uri(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
    }

    /// Parses `pkcs11:` path attributes (`;`-separated) and a query
    /// (`?`, `&`-separated); values are percent-decoded. Errors say which
    /// attribute and why.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, String> {
        if !Pkcs11Uri::is_uri(text) {
            return Err("a PKCS#11 URI starts with pkcs11:".into());
        }
        let rest = &text[7..];
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri {
            text: text.to_string(),
            ..Pkcs11Uri::default()
        };
        // Every query attribute nctls could meet gives what its own options give.
        if let Some(attr) = query.and_then(|q| q.split('&').find(|a| !a.is_empty())) {
            let name = attr.split_once('=').map_or(attr, |(n, _)| n);
            return Err(match name {
                "pin-value" | "pin-source" => format!(
                    "{name}: the PIN is not taken from the URI (it would be on a command \
                     line or in a world-readable file); give --pkcs11-pin-file FILE"
                ),
                "module-name" | "module-path" => {
                    format!("{name}: the module is given with --pkcs11-module PATH")
                }
                _ => format!("{name}: unknown query attribute"),
            });
        }
        let mut seen: Vec<&str> = Vec::new();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| format!("{attr:?}: expected name=value"))?;
            if seen.contains(&name) {
                return Err(format!("{name}: given twice (RFC 7512 allows it once)"));
            }
            seen.push(name);
            let bytes = decode(raw).map_err(|why| format!("{name}: {why}"))?;
            let text =
                || String::from_utf8(bytes.clone()).map_err(|_| format!("{name}: not UTF-8"));
            match name {
                "token" => uri.token = Some(text()?),
                "manufacturer" => uri.manufacturer = Some(text()?),
                "model" => uri.model = Some(text()?),
                "serial" => uri.serial = Some(text()?),
                "object" => uri.object = Some(text()?),
                "id" => uri.id = Some(bytes),
                "slot-id" => {
                    let id = text()?
                        .parse()
                        .map_err(|_| format!("{name}: expected a decimal number"))?;
                    uri.slot_id = Some(id);
                }
                "type" => {
                    if text()? != "private" {
                        return Err(format!(
                            "type={}: the server's key is a private key (type=private)",
                            String::from_utf8_lossy(&bytes)
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{name}: not an attribute nctls matches on (token, manufacturer, \
                         model, serial, slot-id, object, id, type); leave it out"
                    ))
                }
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err("name the key with object=LABEL or id=%XX... (or both)".into());
        }
        Ok(uri)
    }

    /// What the URI asks of a token, for error messages: `token="nctls"`.
    pub fn token_wanted(&self) -> String {
        let mut parts = Vec::new();
        let text = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                parts.push(format!("{name}={v:?}"));
            }
        }
        if let Some(id) = self.slot_id {
            parts.push(format!("slot-id={id}"));
        }
        if parts.is_empty() {
            "any token".into()
        } else {
            parts.join(" ")
        }
    }

    /// What the URI asks of the key object: `object="ec" id=01`.
    pub fn object_wanted(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.object {
            parts.push(format!("object={label:?}"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", hex(id)));
        }
        parts.join(" ")
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Bytes as lowercase hex, for ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 percent-decoding; a `%` must be followed by two hex digits.
fn decode(raw: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let pair = [bytes.next(), bytes.next()];
        let digits = match pair {
            [Some(h), Some(l)] => (hex_digit(h), hex_digit(l)),
            _ => (None, None),
        };
        match digits {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err("% must be followed by two hex digits".into()),
        }
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p11tool_uris_parse() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=5e6f;\
             token=nctls;id=%01%AB;object=server%3bkey;type=private",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("nctls"));
        assert_eq!(uri.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(uri.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(uri.serial.as_deref(), Some("5e6f"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xab][..]));
        assert_eq!(uri.object.as_deref(), Some("server;key"));
        assert_eq!(uri.object_wanted(), "object=\"server;key\" id=01ab");
        assert!(Pkcs11Uri::is_uri("PKCS11:object=x"));
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:slot-id=3;object=k")
                .unwrap()
                .slot_id,
            Some(3)
        );
    }

    #[test]
    fn pins_modules_and_unknown_attributes_are_refused() {
        let refused = [
            ("pkcs11:object=k?pin-value=1234", "--pkcs11-pin-file"),
            ("pkcs11:object=k?pin-source=file:/p", "--pkcs11-pin-file"),
            ("pkcs11:object=k?module-path=/x.so", "--pkcs11-module"),
            ("pkcs11:object=k;type=cert", "type=private"),
            ("pkcs11:object=k;object=j", "given twice"),
            ("pkcs11:object=k%4", "two hex digits"),
            ("pkcs11:object=k%zz", "two hex digits"),
            ("pkcs11:object=%ff", "not UTF-8"),
            ("pkcs11:token=t", "object=LABEL"),
            ("pkcs11:object", "name=value"),
            ("pkcs11:library-version=1;object=k", "leave it out"),
            ("pkcs11:slot-id=x;object=k", "decimal"),
            ("file:k", "starts with pkcs11:"),
        ];
        for (uri, why) in refused {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
    }
}
