//! Every session header form (`identity::header::build`): ConfD's line,
//! its base64 form, netconfd's `<ncx-connect>`, none. A header is one line
//! with the right field count carrying exactly the values given, or a
//! refusal, never anything else; and a refusal only when a value could not
//! be carried.
//!
//! Input: a byte choosing the header (`ncx` then reads a port), the client
//! address (a byte: even for IPv4, odd for IPv6, then the address, a port
//! and for IPv6 a scope id byte, see `netns`), uid and gid (4 bytes each),
//! then NUL-separated texts: the user, proto, subgids, home, groups, a
//! `--user-fields` value and a `--header` value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use nctls::identity::header::{self, Accounts, HeaderFields, HeaderKind};

use super::input::Input;
use super::netns;

pub fn run(data: &[u8]) {
    netns::isolate();
    let mut input = Input::new(data);
    let kind = match input.byte() % 4 {
        0 => HeaderKind::Confd,
        1 => HeaderKind::ConfdB64,
        2 => HeaderKind::Ncx { port: input.u16() },
        _ => HeaderKind::None,
    };
    let source = match input.byte() % 2 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(input.u32())), input.u16()),
        _ => {
            let mut octets = [0; 16];
            octets.copy_from_slice(&[input.bytes(16), &[0; 16]].concat()[..16]);
            let port = input.u16();
            let scope = u32::from(input.byte() % 8);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, scope))
        }
    };
    let (uid, gid) = (input.u32(), input.u32());
    let mut text = || String::from_utf8_lossy(input.field()).into_owned();
    let user = text();
    let fields = HeaderFields {
        proto: text(),
        uid,
        gid,
        subgids: text(),
        home: text(),
        groups: text(),
    };
    let (spec, kind_text) = (text(), text());

    let built = header::build(kind, &user, source, &fields);
    match &built {
        Ok(h) => check_header(kind, h, &user, source, &fields),
        Err(_) => assert!(needs_refusal(kind, &user, &fields), "refused without cause"),
    }

    // The text forms around it: fields set from text read back the same,
    // and a header kind prints as what parses back to it.
    let mut set = HeaderFields::default();
    for name in header::FIELD_NAMES {
        let value = fields.get(name).expect("a field name");
        if set.set(name, &value).is_ok() {
            assert_eq!(set.get(name).as_deref(), Some(value.as_str()));
        }
    }
    let mut accounts = Accounts::default();
    if accounts.add_user(&spec).is_ok() {
        let (name, mine) = accounts.users.last().expect("a user was added");
        assert_eq!(accounts.fields_for(name), mine);
    }
    if let Some(k) = HeaderKind::parse(&kind_text) {
        assert_eq!(HeaderKind::parse(&k.to_string()), Some(k));
    }
    assert_eq!(HeaderKind::parse(&kind.to_string()), Some(kind));
}

/// Whether some value cannot go into the header: only then may `build`
/// refuse.
fn needs_refusal(kind: HeaderKind, user: &str, fields: &HeaderFields) -> bool {
    if kind.check_user(user).is_err() {
        return true;
    }
    if !matches!(kind, HeaderKind::Confd | HeaderKind::ConfdB64) {
        return false;
    }
    let home = fields.home.replace("%u", user);
    [&fields.proto, &fields.subgids, &home, &fields.groups]
        .iter()
        .any(|v| header::check_field(v).is_err())
}

fn check_header(kind: HeaderKind, h: &[u8], user: &str, source: SocketAddr, f: &HeaderFields) {
    let text = std::str::from_utf8(h).expect("a header is UTF-8");
    match kind {
        HeaderKind::None => assert!(h.is_empty()),
        HeaderKind::Confd | HeaderKind::ConfdB64 => {
            let line = text.strip_suffix('\n').expect("ends with a newline");
            assert!(!line.chars().any(char::is_control), "one line: {text:?}");
            let prefix = if kind == HeaderKind::Confd {
                "["
            } else {
                "b64["
            };
            let inner = line
                .strip_prefix(prefix)
                .and_then(|l| l.strip_suffix(";]"))
                .unwrap_or_else(|| panic!("{prefix}...;] expected: {text:?}"));
            let fields: Vec<&str> = inner.split(';').collect();
            assert_eq!(fields.len(), 8, "eight fields: {text:?}");
            assert!(!inner.contains(['[', ']']), "no brackets inside: {text:?}");
            match kind {
                HeaderKind::Confd => assert_eq!(fields[0], user),
                _ => assert_eq!(base64_decode(fields[0]).as_deref(), Some(user.as_bytes())),
            }
            check_source(fields[1], source);
            let home = f.home.replace("%u", user);
            let want = [
                &f.proto,
                &f.uid.to_string(),
                &f.gid.to_string(),
                &f.subgids,
                &home,
                &f.groups,
            ];
            for (got, want) in fields[2..].iter().zip(want) {
                assert_eq!(got, want, "{text:?}");
            }
        }
        HeaderKind::Ncx { port } => {
            let body = text.strip_suffix("\n]]>]]>").expect("]]>]]> framing");
            let (decl, element) = body.split_once('\n').expect("two lines");
            assert_eq!(decl, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
            let attrs = element
                .strip_prefix("<ncx-connect ")
                .and_then(|e| e.strip_suffix(" />"))
                .unwrap_or_else(|| panic!("one <ncx-connect/> element: {text:?}"));
            assert!(!attrs.contains(['<', '>', '\n']), "{text:?}");
            let values = attributes(attrs).unwrap_or_else(|| panic!("attributes: {text:?}"));
            let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                names,
                [
                    "xmlns",
                    "version",
                    "user",
                    "address",
                    "magic",
                    "transport",
                    "port"
                ],
                "{text:?}"
            );
            assert_eq!(xml_unescape(values[2].1).as_deref(), Some(user));
            let address = xml_unescape(values[3].1).expect("escaped address");
            check_source(&format!("{address}/{}", source.port()), source);
            assert_eq!(values[5].1, "ssh");
            assert_eq!(values[6].1, port.to_string());
        }
    }
}

/// `IP/PORT` (an IPv6 zone after `%`) names the client address.
fn check_source(field: &str, source: SocketAddr) {
    let (ip, port) = field.rsplit_once('/').expect("IP/PORT");
    assert_eq!(port, source.port().to_string());
    let ip = ip.split_once('%').map_or(ip, |(ip, _zone)| ip);
    let want = match source {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(*v6.ip()), IpAddr::V4),
        v4 => v4.ip(),
    };
    assert_eq!(ip.parse::<IpAddr>().ok(), Some(want), "{field:?}");
}

/// `name="value"` pairs separated by single spaces; `None` if not of that
/// shape (a quote inside a value would end it early).
fn attributes(mut text: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let (value, rest) = rest.split_once('"')?;
        if name.contains([' ', '"']) {
            return None;
        }
        out.push((name, value));
        text = match rest.strip_prefix(' ') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(out)
}

/// The five predefined entities, and nothing else: a `&` that starts none
/// of them, or a raw `'`, is an error.
fn xml_unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['&', '\'']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e))?;
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 4648 base64 with padding, strictly (written apart from nctls's
/// encoder so they check each other).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::new();
    for quad in s.as_bytes().chunks(4) {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut group = 0u32;
        for &c in &quad[..4 - pad] {
            group = group << 6 | ALPHABET.iter().position(|&a| a == c)? as u32;
        }
        group <<= 6 * pad;
        out.extend_from_slice(&group.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}
