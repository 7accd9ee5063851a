//! Every header form byte for byte, the names each refuses, base64 against
//! RFC 4648 and an independent decoder, and round trips of any name.

use super::*;

fn src() -> SocketAddr {
    "192.0.2.7:40001".parse().unwrap()
}

#[test]
fn demo_defaults() {
    let h = build(HeaderKind::Confd, "admin", src(), &HeaderFields::default()).unwrap();
    assert_eq!(
        h,
        b"[admin;192.0.2.7/40001;ssh;9000;100;;/var/confd/homes/admin;;]\n"
    );
}

/// Found by the header fuzz target: an interface named `n;x]` (Linux
/// allows it) put a `;` and a `]` into SOURCE, and `q"<&'` broke the
/// `<ncx-connect>` address attribute. Such a zone goes by index. The
/// interfaces are made in a network namespace of this test's thread
/// (root and iproute2, as the tests' other namespaces).
#[test]
fn zone_names_that_break_a_header_go_by_index() {
    use std::net::SocketAddrV6;
    // SAFETY: no pointers; only this thread moves to the new namespace.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "needs root"
    );
    let made = std::process::Command::new("ip")
        .args([
            "link", "add", "n;x]", "type", "veth", "peer", "name", "q\"<&'",
        ])
        .status()
        .expect("iproute2");
    assert!(made.success());
    let fields = HeaderFields::default();
    let at = |name| {
        let index = crate::identity::addr::interface_index(name).expect("made above");
        SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, index))
    };
    let header = |kind, s| String::from_utf8(build(kind, "admin", s, &fields).unwrap()).unwrap();
    let ncx = HeaderKind::Ncx { port: 830 };
    // `;` and `]` go by index in every header.
    let s = at("n;x]");
    let index = crate::identity::addr::interface_index("n;x]").unwrap();
    let h = header(HeaderKind::Confd, s);
    assert!(
        h.starts_with(&format!("[admin;fe80::1%{index}/7;ssh;")),
        "{h}"
    );
    assert!(header(ncx, s).contains(&format!(" address=\"fe80::1%{index}\" ")));
    // Quotes are fine in ConfD's line and escaped in netconfd's XML.
    let s = at("q\"<&'");
    let h = header(HeaderKind::Confd, s);
    assert!(h.starts_with("[admin;fe80::1%q\"<&'/7;ssh;"), "{h}");
    let h = header(ncx, s);
    assert!(
        h.contains(" address=\"fe80::1%q&quot;&lt;&amp;&apos;\" "),
        "{h}"
    );
    // A name a header carries stays a name.
    let lo = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, 1));
    let h = build(HeaderKind::Confd, "admin", lo, &fields).unwrap();
    assert!(h.starts_with(b"[admin;fe80::1%lo/7;"));
}

#[test]
fn ipv6_source() {
    let s: SocketAddr = "[::1]:6000".parse().unwrap();
    let h = build(HeaderKind::Confd, "oper", s, &HeaderFields::default()).unwrap();
    assert!(h.starts_with(b"[oper;::1/6000;ssh;"));
}

/// An IPv4 client on a dual-stack listener is shown as IPv4, and an
/// IPv6 zone by its interface name, in both header forms.
#[test]
fn mapped_and_zoned_sources() {
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:47776".parse().unwrap();
    let h = build(HeaderKind::Confd, "admin", mapped, &HeaderFields::default()).unwrap();
    assert!(h.starts_with(b"[admin;127.0.0.1/47776;ssh;"), "{h:?}");
    let zoned = crate::identity::addr::parse_ip_port("[fe80::1%lo]:7000").unwrap();
    let h = build(HeaderKind::Confd, "admin", zoned, &HeaderFields::default()).unwrap();
    assert!(h.starts_with(b"[admin;fe80::1%lo/7000;ssh;"), "{h:?}");
    let ncx = HeaderKind::Ncx { port: 830 };
    let h = build(ncx, "admin", zoned, &HeaderFields::default()).unwrap();
    assert!(String::from_utf8(h)
        .unwrap()
        .contains(" address=\"fe80::1%lo\" "));
}

#[test]
fn unsafe_names_are_refused() {
    for bad in ["", "a;b", "a]b", "[a", "a\nb", "a\rb", "a\0b", "a\x7fb"] {
        assert!(
            build(HeaderKind::Confd, bad, src(), &HeaderFields::default()).is_err(),
            "{bad:?} accepted"
        );
    }
    let long = "x".repeat(MAX_NAME + 1);
    assert_eq!(HeaderKind::Confd.check_user(&long), Err(Unsafe::TooLong));
}

#[test]
fn per_user_fields_override_the_defaults() {
    let mut accounts = Accounts::default();
    accounts.defaults.set("groups", "oper").unwrap();
    accounts
        .add_user("admin uid=1000 gid=10 subgids=20,30 groups=admin,wheel home=/home/%u")
        .unwrap();
    let admin = build(
        HeaderKind::Confd,
        "admin",
        src(),
        accounts.fields_for("admin"),
    )
    .unwrap();
    assert_eq!(
        admin,
        b"[admin;192.0.2.7/40001;ssh;1000;10;20,30;/home/admin;admin,wheel;]\n"
    );
    let other = build(HeaderKind::Confd, "bob", src(), accounts.fields_for("bob")).unwrap();
    assert_eq!(
        other,
        b"[bob;192.0.2.7/40001;ssh;9000;100;;/var/confd/homes/bob;oper;]\n"
    );
}

#[test]
fn field_values_are_checked() {
    let mut f = HeaderFields::default();
    for (key, value, want) in [
        ("uid", "x", "not a numeric id"),
        ("subgids", "1,a", "not comma-separated numeric ids"),
        ("groups", "a;b", "cannot go into the header"),
        ("groups", "a,,b", "empty group name"),
        ("home", "/x]", "cannot go into the header"),
        ("proto", "", "must not be empty"),
        ("shell", "sh", "unknown field"),
    ] {
        let err = f.set(key, value).unwrap_err();
        assert!(err.contains(want), "{key}={value}: {err}");
    }
    let mut accounts = Accounts::default();
    assert!(accounts
        .add_user("admin uid")
        .unwrap_err()
        .contains("key=value"));
    accounts.add_user("admin").unwrap();
    assert!(accounts.add_user("admin").unwrap_err().contains("twice"));
    // Which names fit is the header's to say (config checks it); NUL never does.
    assert!(accounts.add_user("a;b uid=1").is_ok());
    assert!(accounts.add_user("a\0b uid=1").is_err());
}

#[test]
fn none_writes_nothing() {
    let h = build(
        HeaderKind::None,
        "any;thing",
        src(),
        &HeaderFields::default(),
    )
    .unwrap();
    assert!(h.is_empty());
}

/// Whatever the name, a header has exactly 8 fields and one line.
#[test]
fn any_name_keeps_the_shape() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 12) as usize;
        let name: String = (0..len)
            .map(|i| char::from(((seed >> (i * 5)) & 0x7f) as u8))
            .collect();
        if let Ok(h) = build(HeaderKind::Confd, &name, src(), &HeaderFields::default()) {
            let line = std::str::from_utf8(&h).unwrap();
            assert_eq!(line.matches('\n').count(), 1, "{name:?}");
            assert!(line.ends_with(";]\n"));
            assert_eq!(line.matches(';').count(), 8, "{name:?}");
        }
    }
}

/// RFC 4648 §4 decoding, written apart from the encoder: `None` for
/// anything but canonical padded base64.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    const DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if text.len() % 4 != 0 {
        return None;
    }
    let mut bits = Vec::new();
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    for c in body.chars() {
        let v = DIGITS.find(c)?;
        bits.extend((0..6).rev().map(|i| (v >> i) & 1 == 1));
    }
    let bytes: Vec<u8> = bits
        .chunks_exact(8)
        .map(|b| b.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit)))
        .collect();
    let leftover = &bits[bytes.len() * 8..];
    (leftover.len() < 6 && leftover.iter().all(|b| !b)).then_some(bytes)
}

#[test]
fn base64_is_rfc4648_section_10() {
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        assert_eq!(unbase64(want).as_deref(), Some(input.as_bytes()));
    }
    // The two digits the URL-safe alphabet replaces, and every byte.
    assert_eq!(base64(&[0xfb, 0xef, 0xbe]), "++++");
    assert_eq!(base64(&[0xff, 0xff, 0xff]), "////");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(unbase64(&base64(&all)), Some(all));
}

#[test]
fn confd_b64_encodes_the_user_name_only() {
    let h = build(
        HeaderKind::ConfdB64,
        "admin",
        src(),
        &HeaderFields::default(),
    )
    .unwrap();
    assert_eq!(
        h,
        b"b64[YWRtaW4=;192.0.2.7/40001;ssh;9000;100;;/var/confd/homes/admin;;]\n"
    );
    assert_eq!(HeaderKind::parse("confd-b64"), Some(HeaderKind::ConfdB64));
    assert_eq!(HeaderKind::ConfdB64.to_string(), "confd-b64");
    // Separators, a newline and non-ASCII reach ConfD exactly, when
    // HOMEDIR does not repeat the name.
    let fixed_home = HeaderFields {
        home: "/var/confd/homes/tls".into(),
        ..HeaderFields::default()
    };
    let name = "a;b]\n[c \u{fc}\u{20ac}";
    let h = build(HeaderKind::ConfdB64, name, src(), &fixed_home).unwrap();
    let want = format!(
        "b64[{};192.0.2.7/40001;ssh;9000;100;;/var/confd/homes/tls;;]\n",
        base64(name.as_bytes())
    );
    assert_eq!(String::from_utf8(h).unwrap(), want);
    // The other fields are checked as in the plain form.
    assert_eq!(
        build(HeaderKind::ConfdB64, "a;b", src(), &HeaderFields::default()),
        Err(Unsafe::Char(';'))
    );
    let bad_groups = HeaderFields {
        groups: "x;y".into(),
        ..fixed_home.clone()
    };
    assert!(build(HeaderKind::ConfdB64, "admin", src(), &bad_groups).is_err());
    for bad in ["", "a\0b"] {
        assert!(build(HeaderKind::ConfdB64, bad, src(), &fixed_home).is_err());
    }
    let long = "\u{fc}".repeat(MAX_NAME / 2 + 1);
    assert_eq!(
        build(HeaderKind::ConfdB64, &long, src(), &fixed_home),
        Err(Unsafe::TooLong)
    );
}

/// Whatever the name, a b64 header is one line of 8 fields whose first
/// decodes to exactly that name; it is refused only for an empty name,
/// a NUL, or a HOMEDIR the name would break.
#[test]
fn confd_b64_any_name_round_trips() {
    let pool = [
        ';',
        '[',
        ']',
        '\n',
        '\r',
        '\0',
        '%',
        ' ',
        'a',
        '\u{fc}',
        '\u{85}',
        '\u{1F600}',
    ];
    let fixed_home = HeaderFields {
        home: "/var/confd/homes/tls".into(),
        ..HeaderFields::default()
    };
    let mut seed = 0x9E3779B97F4A7C15u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 10) as usize;
        let name: String = (0..len)
            .map(|i| match (seed >> (i * 6)) & 63 {
                n if n < 32 => pool[n as usize % pool.len()],
                n => char::from(n as u8 + 64),
            })
            .collect();
        for fields in [&fixed_home, &HeaderFields::default()] {
            let home = fields.home.replace("%u", &name);
            let Ok(h) = build(HeaderKind::ConfdB64, &name, src(), fields) else {
                assert!(
                    name.is_empty() || name.contains('\0') || check_field(&home).is_err(),
                    "{name:?} refused"
                );
                continue;
            };
            let line = String::from_utf8(h).unwrap();
            let body = line
                .strip_prefix("b64[")
                .unwrap()
                .strip_suffix(";]\n")
                .unwrap();
            let fields: Vec<&str> = body.split(';').collect();
            assert_eq!(fields.len(), 8, "{name:?}: {line:?}");
            assert_eq!(fields[6], home);
            let decoded = unbase64(fields[0]).unwrap();
            assert_eq!(String::from_utf8(decoded).unwrap(), name);
        }
    }
}

const NCX: HeaderKind = HeaderKind::Ncx { port: 830 };

#[test]
fn ncx_connect_as_netconf_subsystem_writes_it() {
    let h = build(NCX, "admin", src(), &HeaderFields::default()).unwrap();
    let h = String::from_utf8(h).unwrap();
    assert_eq!(
        h,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ncx-connect \
             xmlns=\"http://netconfcentral.org/ns/yuma-ncx\" version=\"1\" user=\"admin\" \
             address=\"192.0.2.7\" magic=\"{NCX_MAGIC}\" transport=\"ssh\" port=\"830\" />\n]]>]]>"
        )
    );
}

#[test]
fn ncx_port_and_address_forms() {
    assert_eq!(HeaderKind::parse("ncx"), Some(NCX));
    assert_eq!(
        HeaderKind::parse("ncx:1830"),
        Some(HeaderKind::Ncx { port: 1830 })
    );
    for bad in ["ncx:", "ncx:x", "ncx:70000", "NCX", "ncx830"] {
        assert_eq!(HeaderKind::parse(bad), None, "{bad}");
    }
    assert_eq!(NCX.to_string(), "ncx");
    assert_eq!(HeaderKind::Ncx { port: 1830 }.to_string(), "ncx:1830");
    let kind = HeaderKind::Ncx { port: 1830 };
    let mapped: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
    let h = build(kind, "u", mapped, &HeaderFields::default()).unwrap();
    let h = String::from_utf8(h).unwrap();
    assert!(h.contains(" address=\"10.1.2.3\" "), "{h}");
    assert!(h.contains(" port=\"1830\" />"), "{h}");
    let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
    let h = build(NCX, "u", v6, &HeaderFields::default()).unwrap();
    assert!(String::from_utf8(h)
        .unwrap()
        .contains(" address=\"2001:db8::1\" "));
}

#[test]
fn ncx_user_is_escaped_or_refused() {
    let h = build(NCX, "a&b<c>\"d'", src(), &HeaderFields::default()).unwrap();
    let h = String::from_utf8(h).unwrap();
    assert!(
        h.contains(" user=\"a&amp;b&lt;c&gt;&quot;d&apos;\" "),
        "{h}"
    );
    // ConfD's separators mean nothing in XML.
    let h = build(NCX, "x;[y]", src(), &HeaderFields::default()).unwrap();
    assert!(String::from_utf8(h).unwrap().contains(" user=\"x;[y]\" "));
    for bad in ["", "a\tb", "a\nb", "a\0b", "a\x7fb", "a\u{85}b"] {
        assert!(
            build(NCX, bad, src(), &HeaderFields::default()).is_err(),
            "{bad:?} accepted"
        );
    }
    let long = "x".repeat(MAX_NAME + 1);
    assert_eq!(
        build(NCX, &long, src(), &HeaderFields::default()),
        Err(Unsafe::TooLong)
    );
}

/// Whatever the name, the message is one empty element whose `user`
/// attribute unescapes to exactly that name.
#[test]
fn ncx_any_name_round_trips() {
    let mut seed = 0x9E3779B97F4A7C15u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed % 12) as usize;
        let name: String = (0..len)
            .map(|i| char::from(((seed >> (i * 5)) & 0x7f) as u8))
            .collect();
        let Ok(h) = build(NCX, &name, src(), &HeaderFields::default()) else {
            assert!(name.chars().any(char::is_control), "{name:?} refused");
            continue;
        };
        let h = String::from_utf8(h).unwrap();
        assert!(h.ends_with(" />\n]]>]]>"), "{name:?}");
        assert_eq!(h.matches('<').count(), 2, "{name:?}");
        assert_eq!(h.matches('>').count(), 4, "{name:?}");
        let value = h.split(" user=\"").nth(1).unwrap();
        let value = &value[..value.find('"').unwrap()];
        let unescaped = value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        assert_eq!(unescaped, name);
    }
}
