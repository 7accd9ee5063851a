//! PEM files (RFC 7468) read the way OpenSSL reads them, with errors that
//! say what a file holds when it does not hold what was asked for.
//!
//! The file is read once and split into blocks here; each block's base64 is
//! decoded by rustls-pki-types (constant-time for private keys). Like
//! OpenSSL: text around and between blocks is ignored, and a UTF-8
//! byte-order mark at the start of the file is skipped (an editor on
//! Windows adds one; unskipped, it hides the first block's BEGIN line).
//! Encrypted private keys are recognised and refused with a way out, since
//! nctls has no passphrase to give.

use std::fmt::Write as _;
use std::path::Path;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The PEM blocks of one file.
#[derive(Debug)]
pub struct Pem {
    blocks: Vec<Block>,
    /// No block at all, and the bytes start like a DER SEQUENCE.
    looks_like_der: bool,
}

#[derive(Debug)]
struct Block {
    label: String,
    /// 1-based line of the BEGIN line.
    line: usize,
    /// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) before the base64.
    encrypted_header: bool,
    /// The block again without headers, as rustls-pki-types parses it.
    text: Vec<u8>,
}

impl Pem {
    /// Reads and splits `path`; errors are the reason only (the caller
    /// names the file).
    pub fn read(path: &Path) -> Result<Pem, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Pem::parse(&bytes)
    }

    /// Splits PEM text into blocks; an unterminated block is an error.
    pub fn parse(bytes: &[u8]) -> Result<Pem, String> {
        let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        let mut blocks = Vec::new();
        let mut open: Option<Block> = None;
        let mut in_headers = false;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = raw.trim_ascii();
            match &mut open {
                None => {
                    if let Some(label) = marker(line, "BEGIN") {
                        let mut text = line.to_vec();
                        text.push(b'\n');
                        open = Some(Block {
                            label,
                            line: i + 1,
                            encrypted_header: false,
                            text,
                        });
                        in_headers = true;
                    }
                }
                Some(block) => {
                    if let Some(label) = marker(line, "END") {
                        if label != block.label {
                            return Err(format!(
                                "line {}: END {label} closes BEGIN {} of line {}",
                                i + 1,
                                block.label,
                                block.line
                            ));
                        }
                        block.text.extend_from_slice(line);
                        block.text.push(b'\n');
                        blocks.extend(open.take());
                        continue;
                    }
                    if marker(line, "BEGIN").is_some() {
                        return Err(format!(
                            "line {}: BEGIN {} has no END line",
                            block.line, block.label
                        ));
                    }
                    if in_headers && line.contains(&b':') {
                        // RFC 1421 header, e.g. `Proc-Type: 4,ENCRYPTED`.
                        let text = String::from_utf8_lossy(line).to_ascii_uppercase();
                        block.encrypted_header |=
                            text.starts_with("PROC-TYPE:") && text.contains("ENCRYPTED");
                        continue;
                    }
                    in_headers = false;
                    block.text.extend_from_slice(line);
                    block.text.push(b'\n');
                }
            }
        }
        if let Some(block) = open {
            return Err(format!(
                "line {}: BEGIN {} has no END line",
                block.line, block.label
            ));
        }
        Ok(Pem {
            looks_like_der: blocks.is_empty() && bytes.first() == Some(&0x30),
            blocks,
        })
    }

    /// Every `CERTIFICATE` block, in file order.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        self.all("CERTIFICATE", "x509 -inform der")?
            .into_iter()
            .map(|(kind, der)| match kind {
                SectionKind::Certificate => Ok(CertificateDer::from(der)),
                _ => Err("unexpected block".to_string()),
            })
            .collect()
    }

    /// Every `X509 CRL` block, in file order.
    pub fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
        self.all("X509 CRL", "crl -inform der")?
            .into_iter()
            .map(|(kind, der)| match kind {
                SectionKind::Crl => Ok(CertificateRevocationListDer::from(der)),
                _ => Err("unexpected block".to_string()),
            })
            .collect()
    }

    /// The first private key: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY`
    /// (PKCS#1) or `EC PRIVATE KEY` (SEC1). An encrypted key is an error
    /// that says how to write an unencrypted copy.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, String> {
        const LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
        let key = self
            .blocks
            .iter()
            .find(|b| LABELS.contains(&b.label.as_str()) || b.label == "ENCRYPTED PRIVATE KEY");
        let Some(block) = key else {
            return Err(self.missing("PRIVATE KEY", "pkey -inform der"));
        };
        if block.label == "ENCRYPTED PRIVATE KEY" || block.encrypted_header {
            return Err(format!(
                "the private key (line {}) is encrypted with a passphrase, which nctls cannot \
                 ask for; write an unencrypted copy readable only by nctls: \
                 openssl pkey -in KEY -out KEY.plain && chmod 600 KEY.plain",
                block.line
            ));
        }
        let (kind, der) = block.decode()?;
        PrivateKeyDer::from_pem(kind, der)
            .ok_or_else(|| format!("line {}: not a private key", block.line))
    }

    /// The decoded blocks labelled `label`; none is an error saying what
    /// the file holds instead.
    fn all(&self, label: &str, convert: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
        let found: Vec<_> = self
            .blocks
            .iter()
            .filter(|b| b.label == label)
            .map(Block::decode)
            .collect::<Result<_, _>>()?;
        if found.is_empty() {
            return Err(self.missing(label, convert));
        }
        Ok(found)
    }

    /// "no CERTIFICATE block: found 1 PRIVATE KEY block", or a DER hint.
    fn missing(&self, label: &str, convert: &str) -> String {
        let mut why = format!("no {label} block");
        if self.looks_like_der {
            let _ = write!(
                why,
                ": the file looks like DER, not PEM (convert it: \
                 openssl {convert} -in FILE -out FILE.pem)"
            );
            return why;
        }
        if self.blocks.is_empty() {
            why.push_str(": found no PEM block (-----BEGIN ...----- line) at all");
            return why;
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for b in &self.blocks {
            match counts.iter_mut().find(|(l, _)| *l == b.label) {
                Some((_, n)) => *n += 1,
                None => counts.push((&b.label, 1)),
            }
        }
        let found: Vec<String> = counts
            .iter()
            .map(|(l, n)| format!("{n} {l} block{}", if *n == 1 { "" } else { "s" }))
            .collect();
        let _ = write!(why, ": found {}", found.join(", "));
        why
    }
}

impl Block {
    fn decode(&self) -> Result<(SectionKind, Vec<u8>), String> {
        <(SectionKind, Vec<u8>)>::from_pem_slice(&self.text).map_err(|e| {
            format!(
                "line {}: the {} block is not valid PEM ({e})",
                self.line, self.label
            )
        })
    }
}

/// The label of a `-----BEGIN LABEL-----` (or END) line: printable ASCII
/// but `-`, and spaces (RFC 7468 §3), so errors can quote it as it is.
fn marker(line: &[u8], which: &str) -> Option<String> {
    let rest = line.strip_prefix(b"-----")?;
    let rest = rest.strip_prefix(which.as_bytes())?;
    let rest = rest.strip_prefix(b" ")?;
    let label = rest.strip_suffix(b"-----")?;
    let label_char = |&b: &u8| b == b' ' || (b.is_ascii_graphic() && b != b'-');
    let printable = !label.is_empty() && label.iter().all(label_char);
    printable.then(|| String::from_utf8_lossy(label).into_owned())
}

/// `nctls fingerprint FILE`: every certificate in a PEM file, each line
/// prefixed with the file name; the error is one line naming the file.
pub fn fingerprint_file(path: &std::path::Path) -> Result<String, String> {
    let certs = Pem::read(path)
        .and_then(|pem| pem.certificates())
        .map_err(|e| format!("fingerprint {}: {e}", path.display()))?;
    Ok(certs
        .iter()
        .map(|cert| {
            format!(
                "{}: {}",
                path.display(),
                crate::identity::rules::describe_fingerprints(cert)
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki as pki;

    #[test]
    fn fingerprint_file_errors_are_one_line() {
        let err = fingerprint_file(std::path::Path::new("/nonexistent/x.pem")).unwrap_err();
        assert!(
            err.starts_with("fingerprint /nonexistent/x.pem: cannot read: No such file"),
            "{err}"
        );
        assert!(!err.contains('\n') && !err.contains("Os {"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_block() {
        let ca1 = pki::Ca::new("CA1");
        let ca2 = pki::Ca::new("CA2");
        let mut text = BOM.to_vec();
        text.extend(ca1.pem().as_bytes());
        text.extend(ca2.pem().as_bytes());
        let certs = Pem::parse(&text).unwrap().certificates().unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), ca1.der());
        // rustls-pki-types alone drops it: the reason this module exists.
        let theirs: Vec<_> = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(theirs.len(), 1);
    }

    #[test]
    fn crlf_text_around_blocks_and_other_blocks_are_fine() {
        let ca = pki::Ca::new("CA");
        let issued = ca.client("x");
        let text = format!(
            "subject=CN = x\r\n{}\r\nsome note\r\n{}",
            issued.cert.pem().replace('\n', "\r\n"),
            issued.key.serialize_pem()
        );
        let pem = Pem::parse(text.as_bytes()).unwrap();
        assert_eq!(pem.certificates().unwrap()[0].as_ref(), issued.der());
        assert!(pem.private_key().is_ok());
        assert!(pem.crls().is_err());
    }

    #[test]
    fn missing_blocks_say_what_was_found() {
        let ca = pki::Ca::new("CA");
        let key_only = ca.client("x").key.serialize_pem();
        let err = Pem::parse(key_only.as_bytes())
            .unwrap()
            .certificates()
            .unwrap_err();
        assert_eq!(err, "no CERTIFICATE block: found 1 PRIVATE KEY block");
        let two = format!("{}{}", ca.pem(), ca.pem());
        let err = Pem::parse(two.as_bytes()).unwrap().crls().unwrap_err();
        assert_eq!(err, "no X509 CRL block: found 2 CERTIFICATE blocks");
        let err = Pem::parse(b"hello\n").unwrap().private_key().unwrap_err();
        assert!(err.contains("found no PEM block"), "{err}");
        let err = Pem::parse(ca.der()).unwrap().certificates().unwrap_err();
        assert!(
            err.contains("looks like DER") && err.contains("x509 -inform der"),
            "{err}"
        );
    }

    #[test]
    fn encrypted_keys_are_named_as_such() {
        let pkcs8 =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\n\nMIIB\n\
                      -----END RSA PRIVATE KEY-----\n";
        for text in [pkcs8, legacy] {
            let err = Pem::parse(text.as_bytes())
                .unwrap()
                .private_key()
                .unwrap_err();
            assert!(err.contains("encrypted with a passphrase"), "{err}");
            assert!(err.contains("openssl pkey -in KEY -out KEY.plain"), "{err}");
        }
    }

    #[test]
    fn broken_blocks_name_the_line() {
        let err = Pem::parse(b"x\n-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert_eq!(err, "line 2: BEGIN CERTIFICATE has no END line");
        let err = Pem::parse(b"-----BEGIN CERTIFICATE-----\n-----END X509 CRL-----\n").unwrap_err();
        assert!(
            err.starts_with("line 2: END X509 CRL closes BEGIN CERTIFICATE"),
            "{err}"
        );
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = Pem::parse(bad).unwrap().certificates().unwrap_err();
        assert!(
            err.starts_with("line 1: the CERTIFICATE block is not valid PEM"),
            "{err}"
        );
    }

    /// A label is printable ASCII (RFC 7468 §3): a line with anything else
    /// is no BEGIN or END line, so no error ever quotes a control character
    /// (found by the pem fuzz target: `-----BEGIN \r-----`).
    #[test]
    fn labels_with_control_characters_are_not_markers() {
        for text in [
            &b"-----BEGIN \r-----"[..],
            b"-----BEGIN A\x1b[2JB-----\n",
            b"-----BEGIN A-----\n-----END A\rB-----\n",
        ] {
            let pem = Pem::parse(text);
            let err = pem.and_then(|p| p.certificates()).unwrap_err();
            assert!(!err.contains(|c: char| c.is_control()), "{err:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let ca = pki::Ca::new("CA");
        let text = format!("{}{}", ca.pem(), ca.client("x").key.serialize_pem()).into_bytes();
        for cut in 0..text.len() {
            if let Ok(pem) = Pem::parse(&text[..cut]) {
                let _ = pem.certificates();
                let _ = pem.private_key();
            }
        }
    }
}
