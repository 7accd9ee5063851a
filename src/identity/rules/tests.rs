//! Cert-to-name rules over a generated PKI: map types, order and fall
//! through, fingerprints of the client, an intermediate and the anchor,
//! and the anchor choice among renewed CA copies.

use super::*;
use crate::test_pki as pki;

fn der(issued: &pki::Issued) -> CertificateDer<'static> {
    CertificateDer::from(issued.der().to_vec())
}

fn mapper(rules: &[&str], cas: &[&pki::Ca]) -> Mapper {
    Mapper::new(
        rules.iter().map(|r| Rule::parse(r).unwrap()).collect(),
        cas.iter()
            .map(|c| CertificateDer::from(c.der().to_vec()))
            .collect(),
    )
}

fn fp(cert: &[u8]) -> String {
    Fingerprint::of(cert, 4).unwrap().to_string()
}

#[test]
fn common_name_is_the_default_rule() {
    let ca = pki::Ca::new("CA");
    let m = mapper(&["* common-name"], &[&ca]);
    assert_eq!(m.user_for(&[der(&ca.client("oper"))]), Ok("oper".into()));
}

#[test]
fn specified_user_ignores_the_certificate() {
    let ca = pki::Ca::new("CA");
    let m = mapper(&["* specified admin"], &[&ca]);
    assert_eq!(m.user_for(&[der(&ca.client("x;y"))]), Ok("admin".into()));
}

#[test]
fn unsafe_common_names_are_refused() {
    let ca = pki::Ca::new("CA");
    let m = mapper(&["* common-name"], &[&ca]);
    for cn in ["a;b", "evil]", "two\nlines", ""] {
        assert!(m.user_for(&[der(&ca.client(cn))]).is_err(), "{cn:?}");
    }
    assert!(m.user_for(&[]).is_err());
}

/// Found by the rules fuzz target: a `specified` name may hold control
/// characters (the header then refuses it), and the refusal quoted the
/// rule as it was: an escape sequence reached the reason the C API's
/// identity callback gets. Rules in reasons are shown escaped.
#[test]
fn refusal_reasons_show_rules_escaped() {
    let ca = pki::Ca::new("CA");
    let m = mapper(&["* specified a\u{1b}[2Jb"], &[&ca]);
    let why = m.user_for(&[der(&ca.client("x"))]).unwrap_err();
    assert!(!why.contains(char::is_control), "{why:?}");
    assert!(
        why.starts_with("rule '* specified a\\u{1b}[2Jb' gave"),
        "{why}"
    );
}

#[test]
fn the_header_decides_which_names_are_usable() {
    let ca = pki::Ca::new("CA");
    let m = mapper(&["* common-name"], &[&ca]).for_header(HeaderKind::ConfdB64);
    for cn in ["a;b", "evil]", "two\nlines", "j\u{fc}rgen"] {
        assert_eq!(m.user_for(&[der(&ca.client(cn))]), Ok(cn.into()));
    }
    assert!(m.user_for(&[der(&ca.client(""))]).is_err());
    // netconfd's XML attribute takes separators but no control character.
    let rules = ["* common-name", "* specified fallback"];
    let m = mapper(&rules, &[&ca]).for_header(HeaderKind::Ncx { port: 830 });
    assert_eq!(m.user_for(&[der(&ca.client("a;b"))]), Ok("a;b".into()));
    let two_lines = der(&ca.client("two\nlines"));
    assert_eq!(m.user_for(&[two_lines]), Ok("fallback".into()));
}

#[test]
fn each_san_map_type_normalises_as_rfc7407_says() {
    let ca = pki::Ca::new("CA");
    let cert = ca.client_with_sans(
        "cn",
        &[
            pki::San::Email("Alice.Smith@Example.COM"),
            pki::San::Dns("Router-1.Example.NET"),
            pki::San::Ip("192.0.2.9"),
            pki::San::Ip("2001:db8::1"),
        ],
    );
    let user = |rule: &str| mapper(&[rule], &[&ca]).user_for(&[der(&cert)]);
    assert_eq!(
        user("* san-rfc822-name"),
        Ok("Alice.Smith@example.com".into())
    );
    assert_eq!(user("* san-dns-name"), Ok("router-1.example.net".into()));
    assert_eq!(user("* san-ip-address"), Ok("192.0.2.9".into()));
    assert_eq!(user("* san-any"), Ok("Alice.Smith@example.com".into()));
    assert_eq!(user("* common-name"), Ok("cn".into()));

    let v6 = ca.client_with_sans("cn", &[pki::San::Ip("2001:db8::1")]);
    let m = mapper(&["* san-ip-address"], &[&ca]);
    assert_eq!(
        m.user_for(&[der(&v6)]),
        Ok("20010db8000000000000000000000001".into())
    );
    let dns_first =
        ca.client_with_sans("cn", &[pki::San::Dns("A.example"), pki::San::Email("b@c")]);
    let m = mapper(&["* san-any"], &[&ca]);
    assert_eq!(m.user_for(&[der(&dns_first)]), Ok("a.example".into()));
}

#[test]
fn rules_apply_in_order_and_fall_through() {
    let ca = pki::Ca::new("CA");
    let cert = ca.client_with_sans("fallback", &[pki::San::Dns("dev.example")]);
    // No rfc822 SAN: the first rule applies but yields nothing.
    let m = mapper(
        &["* san-rfc822-name", "* san-dns-name", "* common-name"],
        &[&ca],
    );
    assert_eq!(m.user_for(&[der(&cert)]), Ok("dev.example".into()));
    let m = mapper(&["* common-name", "* san-dns-name"], &[&ca]);
    assert_eq!(m.user_for(&[der(&cert)]), Ok("fallback".into()));
    // An unusable name falls through too.
    let bad = ca.client_with_sans("a;b", &[pki::San::Dns("ok.example")]);
    let m = mapper(&["* common-name", "* san-dns-name"], &[&ca]);
    assert_eq!(m.user_for(&[der(&bad)]), Ok("ok.example".into()));
    // Nothing left: refused, saying why.
    let m = mapper(&["* san-ip-address"], &[&ca]);
    let err = m.user_for(&[der(&cert)]).unwrap_err();
    assert!(err.contains("found no name"), "{err}");
}

#[test]
fn fingerprint_of_the_client_certificate() {
    let ca = pki::Ca::new("CA");
    let alice = ca.client("alice");
    let bob = ca.client("bob");
    let rule = format!("{} specified operator", fp(alice.der()));
    let m = mapper(&[&rule], &[&ca]);
    assert_eq!(m.user_for(&[der(&alice)]), Ok("operator".into()));
    let err = m.user_for(&[der(&bob)]).unwrap_err();
    assert!(err.contains("no identity rule matches"), "{err}");
}

#[test]
fn fingerprint_of_the_trust_anchor_and_of_an_intermediate() {
    let root = pki::Ca::new("Root");
    let other = pki::Ca::new("Other root");
    let inter = root.intermediate("Intermediate");
    let leaf = inter.client("carol");
    let chain = [der(&leaf), CertificateDer::from(inter.der().to_vec())];
    // The anchor is never sent by the client: it comes from the verified path.
    let by_root = format!("{} common-name", fp(root.der()));
    let m = mapper(&[&by_root], &[&other, &root]);
    assert_eq!(m.user_for(&chain), Ok("carol".into()));
    let by_inter = format!("{} specified ops", fp(inter.der()));
    assert_eq!(
        mapper(&[&by_inter], &[&root]).user_for(&chain),
        Ok("ops".into())
    );
    // Another CA's fingerprint does not match.
    let by_other = format!("{} common-name", fp(other.der()));
    assert!(mapper(&[&by_other], &[&other, &root])
        .user_for(&chain)
        .is_err());
}

/// Issue 10 item 2: `--ca` holds an expired copy of the CA and the
/// renewed one (same subject, same key); a rule on each fingerprint.
#[test]
fn the_ca_copy_valid_now_is_the_anchor_whatever_the_order() {
    let renewed = pki::Ca::new("Renewed CA");
    let expired = renewed.renewed((2019, 1, 1), (2020, 1, 1));
    let client = der(&renewed.client("carol"));
    let by_expired = format!("{} specified old-user", fp(expired.der()));
    let by_renewed = format!("{} specified new-user", fp(renewed.der()));
    for cas in [[&expired, &renewed], [&renewed, &expired]] {
        let both = mapper(&[&by_expired, &by_renewed], &cas);
        assert_eq!(
            both.user_for(std::slice::from_ref(&client)),
            Ok("new-user".into())
        );
        let only_renewed = mapper(&[&by_renewed], &cas);
        assert_eq!(
            only_renewed.user_for(std::slice::from_ref(&client)),
            Ok("new-user".into())
        );
        let only_expired = mapper(&[&by_expired], &cas);
        assert!(only_expired
            .user_for(std::slice::from_ref(&client))
            .is_err());
    }
}

#[test]
fn among_valid_ca_copies_the_newest_is_the_anchor() {
    let ca = pki::Ca::new("CA");
    let older = ca.renewed((2020, 1, 1), (2090, 1, 1));
    let newer = ca.renewed((2021, 1, 1), (2080, 1, 1));
    let client = der(&ca.client("dan"));
    let rules = [
        format!("{} specified older", fp(older.der())),
        format!("{} specified newer", fp(newer.der())),
    ];
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    for cas in [[&older, &newer], [&newer, &older]] {
        assert_eq!(
            mapper(&rules, &cas).user_for(std::slice::from_ref(&client)),
            Ok("newer".into())
        );
    }
}

#[test]
fn fingerprint_algorithms() {
    let ca = pki::Ca::new("CA");
    let cert = ca.client("dave");
    for id in [2u8, 4, 5, 6] {
        let text = Fingerprint::of(cert.der(), id)
            .unwrap()
            .to_string()
            .to_lowercase();
        let rule = format!("{text} common-name");
        assert_eq!(
            mapper(&[&rule], &[&ca]).user_for(&[der(&cert)]),
            Ok("dave".into())
        );
    }
}

#[test]
fn rule_syntax_errors_say_what_is_wrong() {
    // Which names the header can carry is checked with the header.
    let too_long = format!("* specified {}", "x".repeat(header::MAX_NAME + 1));
    let cases = [
        ("", "expected FINGERPRINT MAP-TYPE"),
        ("* specified", "needs a NAME"),
        ("* common-name bob", "only map type specified"),
        ("* cn", "unknown map type \"cn\""),
        ("04:zz common-name", "not hex octets"),
        ("01:00 common-name", "hash algorithm 01 is not supported"),
        (
            "04:00:11 common-name",
            "SHA-256 fingerprint has 32 digest octets, not 2",
        ),
        (too_long.as_str(), "cannot be a user name"),
    ];
    for (text, want) in cases {
        let err = Rule::parse(text).unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    let rule = Rule::parse("* specified admin").unwrap();
    assert_eq!(rule.to_string(), "* specified admin");
}

#[test]
fn san_with_embedded_nul_is_not_a_name() {
    assert_eq!(
        dns_name(b"a\0b").map(|n| header::check_name(&n).is_ok()),
        Some(false)
    );
    assert_eq!(ip_name(&[1, 2, 3]), None);
    assert_eq!(rfc822_name(b"no-at-sign"), None);
}

#[test]
fn peer_fingerprint_is_sha256() {
    let peer = Peer::of(b"abc");
    assert!(peer.sha256.starts_with("BA:78:16:BF"));
    assert_eq!(peer.sha256.len(), 32 * 3 - 1);
}

#[test]
fn describe_lists_three_algorithms() {
    let text = describe_fingerprints(b"abc");
    assert!(text.contains("SHA-1    02:A9:99:3E"), "{text}");
    assert!(text.contains("SHA-256  04:BA:78:16:BF"), "{text}");
    assert!(text.contains("SHA-512  06:DD:AF:35"), "{text}");
}
