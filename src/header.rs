//! What nctls writes to the backend before any client byte, telling the
//! NETCONF server who the user is.
//!
//! - ConfD's NETCONF TCP session header,
//!   `[USER;SOURCE;PROTO;UID;GID;SUBGIDS;HOMEDIR;GROUPS;]\n`, SOURCE being
//!   the client's `IP/port` (IPv4-mapped IPv6 as IPv4, an IPv6 zone by
//!   interface name: `fe80::1%eth0/40001`). ConfD trusts this line blindly, so a value that
//!   could break its shape (a `;`, a bracket, a control character) is
//!   refused here, never written.
//! - yuma123 `netconfd`'s `<ncx-connect>` message, the one its
//!   `netconf-subsystem` sends on the server's local socket: the user goes
//!   into an XML attribute, escaped; control characters are refused.

use std::fmt;
use std::net::SocketAddr;

use crate::addr::{self, ShowIp};

/// Which header the backend expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// ConfD's `[USER;SOURCE;...;]` line (the GnuTLS demo's).
    Confd,
    /// yuma123 netconfd's `<ncx-connect>`; `port` must be in netconfd's
    /// `--port` list (its default list is 830 alone).
    Ncx { port: u16 },
    /// No header: a plain byte relay.
    None,
}

/// The port netconfd allows when started without `--port`.
pub(crate) const NCX_DEFAULT_PORT: u16 = 830;

impl HeaderKind {
    /// `confd`, `none`, `ncx` or `ncx:PORT`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confd" => Some(HeaderKind::Confd),
            "none" => Some(HeaderKind::None),
            "ncx" => Some(HeaderKind::Ncx {
                port: NCX_DEFAULT_PORT,
            }),
            _ => {
                let port = s.strip_prefix("ncx:")?.parse().ok()?;
                Some(HeaderKind::Ncx { port })
            }
        }
    }
}

impl fmt::Display for HeaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderKind::Confd => f.write_str("confd"),
            HeaderKind::Ncx {
                port: NCX_DEFAULT_PORT,
            } => f.write_str("ncx"),
            HeaderKind::Ncx { port } => write!(f, "ncx:{port}"),
            HeaderKind::None => f.write_str("none"),
        }
    }
}

/// The header fields besides user and source; defaults are the GnuTLS demo's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    pub proto: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary group ids, comma-separated.
    pub subgids: String,
    /// Home directory; `%u` stands for the user name.
    pub home: String,
    /// Group names, comma-separated.
    pub groups: String,
}

impl Default for HeaderFields {
    fn default() -> Self {
        HeaderFields {
            proto: "ssh".into(),
            uid: 9000,
            gid: 100,
            subgids: String::new(),
            home: "/var/confd/homes/%u".into(),
            groups: String::new(),
        }
    }
}

/// The field names [`HeaderFields::set`] accepts.
pub const FIELD_NAMES: &[&str] = &["proto", "uid", "gid", "subgids", "home", "groups"];

impl HeaderFields {
    /// Sets one field from text, checking it cannot break the header.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let unsafe_value = |why: Unsafe| format!("{value:?} cannot go into the header: {why}");
        match name {
            "uid" | "gid" => {
                let id = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a numeric id"))?;
                *if name == "uid" {
                    &mut self.uid
                } else {
                    &mut self.gid
                } = id;
            }
            "subgids" => {
                if !value.is_empty() && value.split(',').any(|g| g.parse::<u32>().is_err()) {
                    return Err(format!("{value:?} is not comma-separated numeric ids"));
                }
                self.subgids = value.to_string();
            }
            "groups" => {
                check_field(value).map_err(unsafe_value)?;
                if !value.is_empty() && value.split(',').any(|g| g.trim().is_empty()) {
                    return Err(format!("{value:?} has an empty group name"));
                }
                self.groups = value.to_string();
            }
            "proto" | "home" => {
                if value.is_empty() {
                    return Err("must not be empty".into());
                }
                check_field(value).map_err(unsafe_value)?;
                if name == "proto" {
                    self.proto = value.to_string();
                } else {
                    self.home = value.to_string();
                }
            }
            other => {
                return Err(format!(
                    "unknown field {other:?} (expected one of {})",
                    FIELD_NAMES.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// Header fields for every user: defaults plus per-user overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    pub defaults: HeaderFields,
    pub users: Vec<(String, HeaderFields)>,
}

impl Accounts {
    pub fn fields_for(&self, user: &str) -> &HeaderFields {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map_or(&self.defaults, |(_, fields)| fields)
    }

    /// Adds overrides from `NAME key=value ...` on top of the defaults.
    pub fn add_user(&mut self, spec: &str) -> Result<(), String> {
        let mut words = spec.split_whitespace();
        let name = words.next().ok_or("expected NAME key=value ...")?;
        check_user(name).map_err(|why| format!("{name:?} cannot be a user name: {why}"))?;
        if self.users.iter().any(|(n, _)| n == name) {
            return Err(format!("{name:?} is listed twice"));
        }
        let mut fields = self.defaults.clone();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, found {word:?}"))?;
            fields.set(key, value)?;
        }
        self.users.push((name.to_string(), fields));
        Ok(())
    }
}

/// Why a value cannot go into the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsafe {
    Empty,
    TooLong,
    Char(char),
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsafe::Empty => write!(f, "empty"),
            Unsafe::TooLong => write!(f, "longer than {MAX_NAME} bytes"),
            Unsafe::Char(c) => write!(f, "contains {c:?}"),
        }
    }
}

/// Longest user name accepted (ConfD and Unix tools expect short names).
pub const MAX_NAME: usize = 255;

/// A user name fit for the header: non-empty, short, no separators, no controls.
pub fn check_user(name: &str) -> Result<(), Unsafe> {
    if name.is_empty() {
        return Err(Unsafe::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(Unsafe::TooLong);
    }
    check_field(name)
}

/// Any other field: may be empty, must not break the line's shape.
pub fn check_field(value: &str) -> Result<(), Unsafe> {
    match value
        .chars()
        .find(|c| matches!(c, ';' | '[' | ']') || c.is_control())
    {
        Some(c) => Err(Unsafe::Char(c)),
        None => Ok(()),
    }
}

/// Builds the header for one session; empty for [`HeaderKind::None`].
pub fn build(
    kind: HeaderKind,
    user: &str,
    source: SocketAddr,
    fields: &HeaderFields,
) -> Result<Vec<u8>, Unsafe> {
    match kind {
        HeaderKind::None => Ok(Vec::new()),
        HeaderKind::Confd => confd(user, source, fields),
        HeaderKind::Ncx { port } => ncx(user, source, port),
    }
}

fn confd(user: &str, source: SocketAddr, fields: &HeaderFields) -> Result<Vec<u8>, Unsafe> {
    check_user(user)?;
    let home = fields.home.replace("%u", user);
    for value in [&fields.proto, &fields.subgids, &home, &fields.groups] {
        check_field(value)?;
    }
    let source = addr::canonical(source);
    Ok(format!(
        "[{user};{}/{};{};{};{};{};{home};{};]\n",
        ShowIp(source),
        source.port(),
        fields.proto,
        fields.uid,
        fields.gid,
        fields.subgids,
        fields.groups,
    )
    .into_bytes())
}

/// netconfd's shared secret for local subsystems (yuma123's
/// `NCX_SERVER_MAGIC`); it keeps nothing secret, the socket's permissions do.
const NCX_MAGIC: &str = "x56o8937ab17eg922z34rwhobskdbyswfehkpsqq3i55a0an960ccw24a4ek864aOpal1t2p";

/// The `<ncx-connect>` message as yuma123's `netconf-subsystem` writes it,
/// old-style `]]>]]>` framed. netconfd checks version, magic, transport
/// (only `ssh`) and port, and takes `address` as the client's bare IP.
fn ncx(user: &str, source: SocketAddr, port: u16) -> Result<Vec<u8>, Unsafe> {
    if user.is_empty() {
        return Err(Unsafe::Empty);
    }
    if user.len() > MAX_NAME {
        return Err(Unsafe::TooLong);
    }
    // XML attribute values normalise tabs and newlines to spaces: refuse
    // every control character rather than hand netconfd a different name.
    if let Some(c) = user.chars().find(|c| c.is_control()) {
        return Err(Unsafe::Char(c));
    }
    let address = ShowIp(addr::canonical(source));
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ncx-connect xmlns=\"http://netconfcentral.org/ns/yuma-ncx\" version=\"1\" \
         user=\"{}\" address=\"{address}\" magic=\"{NCX_MAGIC}\" transport=\"ssh\" \
         port=\"{port}\" />\n]]>]]>",
        xml_escape(user)
    )
    .into_bytes())
}

/// Escapes the five XML special characters (safe in either quote style).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        let zoned = crate::addr::parse_ip_port("[fe80::1%lo]:7000").unwrap();
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
        assert_eq!(check_user(&long), Err(Unsafe::TooLong));
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
        assert!(accounts.add_user("a;b uid=1").is_err());
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
}
