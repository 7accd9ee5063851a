//! The certificate and CRL reader (`identity::der`) over arbitrary bytes;
//! its seeds are real certificates and CRLs (`make-seeds.sh`), so libFuzzer's
//! mutations make mutated real certificates.
//!
//! Invariants besides "no panic": a public key is a slice of the input; a
//! CommonName is the subject's only CN attribute; times print as
//! `YYYY-MM-DDTHH:MM:SSZ`; what the log and `nctls fingerprint` print from
//! a certificate is one line per field.

use nctls::config::crl::Crl;
use nctls::identity::der;
use nctls::identity::rules::{describe_fingerprints, Fingerprint, Peer};

pub fn run(data: &[u8]) {
    if let Some(spki) = der::public_key_info(data) {
        let inside = data.as_ptr_range();
        assert!(
            inside.contains(&spki.as_ptr()) && spki.len() <= data.len(),
            "the public key is a slice of the certificate"
        );
    }
    let subject = der::subject(data);
    if let Some(cn) = der::common_name(data) {
        let subject = subject.as_deref().expect("a CN comes from a subject");
        let cns: Vec<_> = subject.iter().filter(|a| a.name == "CN").collect();
        assert_eq!(cns.len(), 1, "exactly one CN");
        assert_eq!(cns[0].value.as_deref(), Some(cn.as_str()));
    }
    if let Some(v) = der::validity(data) {
        for t in [v.not_before, v.not_after] {
            check_time(t);
        }
        let _ = v.contains(0);
    }
    let _ = der::alt_names(data);
    let text = der::subject_text(data);
    assert_eq!(subject.is_some(), text != "<unparsable certificate>");
    let peer = Peer::of(data);
    assert_eq!(peer.subject, text);
    assert_eq!(peer.sha256.len(), 32 * 3 - 1, "SHA-256 as hex pairs");
    let described = describe_fingerprints(data);
    // The subject line, then SHA-1, SHA-256 and SHA-512: the subject may
    // hold a newline only inside its own line's text.
    assert!(described.lines().count() >= 4);
    for id in [2, 4, 5, 6] {
        let fp = Fingerprint::of(data, id).expect("a supported hash");
        assert_eq!(Fingerprint::parse(&fp.to_string()), Ok(fp));
    }
    if let Some(crl) = der::crl_fields(data) {
        check_time(crl.this_update);
        if let Some(t) = crl.next_update {
            check_time(t);
        }
        if let Some(n) = &crl.number {
            assert!(n.first() != Some(&0), "a CRL number without leading zeros");
        }
    }
    let _ = Crl::parse(data.to_vec().into());
}

/// Seconds since the epoch from a certificate time print in RFC 3339's
/// shape: the reader only accepts four-digit years.
fn check_time(t: i64) {
    let text = der::format_time(t);
    let b = text.as_bytes();
    assert_eq!(b.len(), 20, "{text}");
    for (i, &c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19);
        assert_eq!(c.is_ascii_digit(), want_digit, "{text}");
    }
}
