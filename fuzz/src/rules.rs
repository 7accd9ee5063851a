//! Cert-to-name rules (`identity::rules`): `Rule::parse` over arbitrary
//! lines, and `Mapper::user_for` over the fixed test PKI's chains (or a
//! certificate from the input).
//!
//! Input: rule lines up to a NUL; a selector byte (bits 0-1 the session
//! header: confd, confd-b64, ncx, none; bits 2-3 the chain: `client`,
//! `oper` + `inter`, `other`, `client` + `oper` as a bogus intermediate);
//! then, if any bytes are left, a DER certificate that replaces the chain's
//! first. In the rules, `@0` … `@9` stand for a fingerprint no mutation
//! would find: of `client`, `oper`, `inter`, `ca`, `ca_renewed` (0-4 as
//! SHA-256, 5-9 as SHA-1).
//!
//! Invariants: a rule prints as text that parses back to it (`--check`
//! prints rules); errors are one line; a user name found is one the header
//! carries; the rules are tried in order (the answer is the first rule's
//! that yields a name alone); the order of the CA certificates never
//! changes the answer.

use nctls::identity::header::HeaderKind;
use nctls::identity::rules::{Fingerprint, Mapper, Rule};
use rustls::pki_types::CertificateDer;

use super::input::Input;
use super::pki;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let text = String::from_utf8_lossy(input.field()).into_owned();
    let selector = input.byte();
    let own = input.rest();

    let named = [pki::CLIENT, pki::OPER, pki::INTER, pki::CA, pki::CA_RENEWED].map(pki::cert);
    let text = with_fingerprints(&text, &named);
    let mut rules = Vec::new();
    for line in text.lines() {
        if let Some(word) = line.split_whitespace().next() {
            if let Ok(fp) = Fingerprint::parse(word) {
                assert_eq!(Fingerprint::parse(&fp.to_string()), Ok(fp));
            }
        }
        match Rule::parse(line) {
            Ok(rule) => {
                let printed = rule.to_string();
                assert_eq!(Rule::parse(&printed).as_ref(), Ok(&rule), "{printed:?}");
                rules.push(rule);
            }
            Err(why) => assert!(!why.contains(char::is_control), "one line: {why:?}"),
        }
    }

    let header = [
        HeaderKind::Confd,
        HeaderKind::ConfdB64,
        HeaderKind::Ncx { port: 830 },
        HeaderKind::None,
    ][usize::from(selector & 3)];
    let [client, oper, inter, ..] = named.clone();
    let mut chain: Vec<CertificateDer<'static>> = match (selector >> 2) & 3 {
        0 => vec![client],
        1 => vec![oper, inter],
        2 => vec![pki::cert(pki::OTHER)],
        _ => vec![client, oper],
    };
    if !own.is_empty() {
        chain[0] = CertificateDer::from(own.to_vec());
    }
    let cas = vec![pki::cert(pki::CA), pki::cert(pki::CA_RENEWED)];
    let reversed: Vec<_> = cas.iter().rev().cloned().collect();
    let mapper = Mapper::new(rules.clone(), cas.clone()).for_header(header);
    let answer = mapper.user_for(&chain);
    match &answer {
        Ok(user) => assert_eq!(header.check_user(user), Ok(()), "{user:?}"),
        Err(why) => assert!(!why.contains(char::is_control), "one line: {why:?}"),
    }
    let other_order = Mapper::new(rules.clone(), reversed).for_header(header);
    assert_eq!(other_order.user_for(&chain), answer, "the order of --ca");
    let first_alone = rules.iter().find_map(|rule| {
        let alone = Mapper::new(vec![rule.clone()], cas.clone()).for_header(header);
        alone.user_for(&chain).ok()
    });
    assert_eq!(answer.as_ref().ok(), first_alone.as_ref(), "rules in order");
}

/// The rule text with each `@N` replaced by the fingerprint it stands for.
fn with_fingerprints(text: &str, named: &[CertificateDer<'static>; 5]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let Some(n) = chars
            .peek()
            .and_then(|d| d.to_digit(10))
            .filter(|_| c == '@')
        else {
            out.push(c);
            continue;
        };
        chars.next();
        let n = n as usize;
        let id = if n < 5 { 4 } else { 2 };
        let fp = Fingerprint::of(&named[n % 5], id).expect("a supported hash");
        out.push_str(&fp.to_string());
    }
    out
}
