//! PEM loading (`config::pem`) over arbitrary bytes, and what is read out of
//! it: certificates, CRLs (and which is current), the private key.
//!
//! Invariants: errors are one line without control characters (they are
//! printed after `FILE:LINE` or the option); certificates and CRLs found are exactly what writing them
//! out as PEM again and reading that back finds.

use nctls::config::crl::{self, Crl};
use nctls::config::pem::Pem;

pub fn run(data: &[u8]) {
    let pem = match Pem::parse(data) {
        Ok(pem) => pem,
        Err(why) => return one_line(&why),
    };
    match pem.certificates() {
        Ok(certs) => {
            let again = reread("CERTIFICATE", certs.iter().map(|c| c.as_ref()));
            let again = again
                .certificates()
                .expect("written certificates read back");
            assert_eq!(again, certs);
        }
        Err(why) => one_line(&why),
    }
    match pem.crls() {
        Ok(crls) => {
            let again = reread("X509 CRL", crls.iter().map(|c| c.as_ref()));
            assert_eq!(again.crls().expect("written CRLs read back"), crls);
            let parsed: Vec<Crl> = crls
                .into_iter()
                .filter_map(|c| Crl::parse(c).ok())
                .collect();
            let chosen = crl::select(&parsed);
            assert_eq!(chosen.len(), parsed.len());
            let current = crl::current(&parsed);
            assert_eq!(current.len(), chosen.iter().filter(|&&c| c).count());
        }
        Err(why) => one_line(&why),
    }
    if let Err(why) = pem.private_key() {
        one_line(&why);
    }
}

/// An error is one line of text: no control character at all (a `\r`
/// or an escape sequence would rewrite the line it is printed on).
fn one_line(why: &str) {
    assert!(!why.contains(char::is_control), "one line: {why:?}");
}

/// `ders` written as PEM blocks labelled `label`, parsed again.
fn reread<'a>(label: &str, ders: impl Iterator<Item = &'a [u8]>) -> Pem {
    let mut text = String::new();
    for der in ders {
        text.push_str(&format!("-----BEGIN {label}-----\n"));
        for chunk in base64(der).as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
    }
    Pem::parse(text.as_bytes()).expect("written PEM parses")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [0, 1, 2].map(|i| u32::from(chunk.get(i).copied().unwrap_or(0)));
        let group = b[0] << 16 | b[1] << 8 | b[2];
        for i in 0..4 {
            out.push(match i <= chunk.len() {
                true => char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]),
                false => '=',
            });
        }
    }
    out
}
