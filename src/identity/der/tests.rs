//! The DER reader on generated certificates and CRLs: names, SANs, times in
//! both encodings, validity, public key, CRL fields, OIDs, and garbage.

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
        let _ = validity(&flipped);
        let _ = public_key_info(&flipped);
        let _ = crl_fields(&flipped);
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

/// `YYYY-MM-DD` as seconds since the epoch, via the formatter's inverse.
fn day(text: &str) -> i64 {
    let p: Vec<i64> = text.split('-').map(|n| n.parse().unwrap()).collect();
    days_from_civil(p[0], p[1], p[2]) * 86400
}

#[test]
fn times_in_both_encodings_and_back() {
    let utc = |s: &str| {
        time(&Tlv {
            tag: UTC_TIME,
            body: s.as_bytes(),
            raw: &[],
        })
    };
    let gen = |s: &str| {
        time(&Tlv {
            tag: GENERALIZED_TIME,
            body: s.as_bytes(),
            raw: &[],
        })
    };
    assert_eq!(utc("700101000000Z"), Some(0));
    assert_eq!(
        utc("491231235959Z").map(format_time).as_deref(),
        Some("2049-12-31T23:59:59Z")
    );
    assert_eq!(
        utc("500101000000Z").map(format_time).as_deref(),
        Some("1950-01-01T00:00:00Z")
    );
    assert_eq!(
        gen("20240229120000Z").map(format_time).as_deref(),
        Some("2024-02-29T12:00:00Z")
    );
    assert_eq!(
        gen("99991231235959Z").map(format_time).as_deref(),
        Some("9999-12-31T23:59:59Z")
    );
    for bad in [
        "20230229000000Z",
        "20241301000000Z",
        "20240101240000Z",
        "2024010100000Z",
        "20240101000000+",
        "2024-1-01000000Z",
    ] {
        assert_eq!(gen(bad), None, "{bad}");
    }
    assert_eq!(utc("240101000000"), None);
    assert_eq!(day("2000-03-01") - day("2000-02-28"), 2 * 86400);
}

#[test]
fn validity_and_public_key_of_generated_certs() {
    let ca = pki::Ca::new("Test CA");
    let old = ca.renewed((2019, 1, 1), (2020, 1, 1));
    let v = validity(old.der()).unwrap();
    assert_eq!(
        (v.not_before, v.not_after),
        (day("2019-01-01"), day("2020-01-01"))
    );
    assert!(v.contains(day("2019-06-01")) && !v.contains(day("2021-01-01")));
    // Renewed with the same key: the same public key, another certificate.
    assert_eq!(public_key_info(old.der()), public_key_info(ca.der()));
    assert_ne!(old.der(), ca.der());
    let leaf = ca.client("x");
    assert_ne!(public_key_info(leaf.der()), public_key_info(ca.der()));
    assert_eq!(public_key_info(leaf.der()).map(|k| k[0]), Some(SEQUENCE));
}

#[test]
fn crl_fields_of_a_generated_crl() {
    let ca = pki::Ca::new("CRL CA");
    let crl = ca.crl(258, (2024, 1, 2), (2024, 2, 3), &[&[1, 2, 3]]);
    let f = crl_fields(&crl).unwrap();
    assert_eq!(f.issuer_text, "CN=CRL CA");
    assert_eq!(f.this_update, day("2024-01-02"));
    assert_eq!(f.next_update, Some(day("2024-02-03")));
    assert_eq!(f.number, Some(vec![1, 2]));
    assert_eq!(f.scope, None);
    let other = crl_fields(&ca.crl(1, (2024, 1, 2), (2024, 2, 3), &[])).unwrap();
    assert_eq!(other.issuer, f.issuer);
    for cut in 0..crl.len() {
        let _ = crl_fields(&crl[..cut]);
    }
}

#[test]
fn dotted_oids() {
    assert_eq!(
        dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
        "1.2.840.113549"
    );
    assert_eq!(dotted(&[0x55, 0x04, 0x2a]), "2.5.4.42");
}
