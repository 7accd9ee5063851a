//! What nctls writes to the backend before any client byte, telling the
//! NETCONF server who the user is.
//!
//! - ConfD's NETCONF TCP session header,
//!   `[USER;SOURCE;PROTO;UID;GID;SUBGIDS;HOMEDIR;GROUPS;]\n`, SOURCE being
//!   the client's `IP/port` (IPv4-mapped IPv6 as IPv4, an IPv6 zone by
//!   interface name: `fe80::1%eth0/40001`). ConfD trusts this line blindly, so a value that
//!   could break its shape (a `;`, a bracket, a control character) is
//!   refused here, never written.
//! - Its base64 form, `b64[B64USER;SOURCE;...;]\n` (ConfD User Guide,
//!   NETCONF server chapter, "Internal TCP Transport"): the same line with
//!   only the user name base64-encoded, so any name reaches ConfD exactly;
//!   the other fields are checked as in the plain form.
//! - yuma123 `netconfd`'s `<ncx-connect>` message, the one its
//!   `netconf-subsystem` sends on the server's local socket: the user goes
//!   into an XML attribute, escaped; control characters are refused.

use std::fmt;
use std::net::SocketAddr;

use crate::identity::addr::{self, ShowIp};

/// Which header the backend expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// ConfD's `[USER;SOURCE;...;]` line (the GnuTLS demo's).
    Confd,
    /// ConfD's `b64[B64USER;SOURCE;...;]` line: the user name in base64.
    ConfdB64,
    /// yuma123 netconfd's `<ncx-connect>`; `port` must be in netconfd's
    /// `--port` list (its default list is 830 alone).
    Ncx { port: u16 },
    /// No header: a plain byte relay.
    None,
}

/// The port netconfd allows when started without `--port`.
pub(crate) const NCX_DEFAULT_PORT: u16 = 830;

impl HeaderKind {
    /// `confd`, `confd-b64`, `none`, `ncx` or `ncx:PORT`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confd" => Some(HeaderKind::Confd),
            "confd-b64" => Some(HeaderKind::ConfdB64),
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
            HeaderKind::ConfdB64 => f.write_str("confd-b64"),
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

impl HeaderFields {
    /// One field as text, by its name in [`FIELD_NAMES`].
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "proto" => self.proto.clone(),
            "uid" => self.uid.to_string(),
            "gid" => self.gid.to_string(),
            "subgids" => self.subgids.clone(),
            "home" => self.home.clone(),
            "groups" => self.groups.clone(),
            _ => return None,
        })
    }

    /// `key=value` for each field that differs from `base`, in
    /// [`FIELD_NAMES`] order: what `--user-fields` needs to say.
    pub fn differences(&self, base: &HeaderFields) -> Vec<String> {
        FIELD_NAMES
            .iter()
            .filter_map(|name| {
                let (mine, theirs) = (self.get(name)?, base.get(name)?);
                (mine != theirs).then(|| format!("{name}={mine}"))
            })
            .collect()
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
        check_name(name).map_err(|why| format!("{name:?} cannot be a user name: {why}"))?;
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

/// Longest user name accepted, in bytes (ConfD and Unix tools expect short names).
pub const MAX_NAME: usize = 255;

/// What every user name must be, whatever the header: non-empty, at most
/// [`MAX_NAME`] bytes, and without NUL, which would end the name early in
/// every C string on the way (ConfD's, the C API's): a different user.
pub fn check_name(name: &str) -> Result<(), Unsafe> {
    if name.is_empty() {
        return Err(Unsafe::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(Unsafe::TooLong);
    }
    match name.contains('\0') {
        true => Err(Unsafe::Char('\0')),
        false => Ok(()),
    }
}

impl HeaderKind {
    /// Whether this header carries `name` exactly; an identity rule that
    /// yields a name the header cannot carry falls through to the next.
    pub fn check_user(self, name: &str) -> Result<(), Unsafe> {
        check_name(name)?;
        match self {
            HeaderKind::Confd => check_field(name),
            // XML attribute values normalise tabs and newlines to spaces:
            // refuse every control character rather than hand netconfd a
            // different name.
            HeaderKind::Ncx { .. } => match name.chars().find(|c| c.is_control()) {
                Some(c) => Err(Unsafe::Char(c)),
                None => Ok(()),
            },
            HeaderKind::ConfdB64 | HeaderKind::None => Ok(()),
        }
    }
}

impl HeaderKind {
    /// Why a session of `name` with `fields` could never get a header, if
    /// so: for names known before any session (`--user`, `specified` rules,
    /// `--user-fields`), so that the configuration is refused at start
    /// rather than every such session. Only HOMEDIR depends on the name.
    pub fn check_account(self, name: &str, fields: &HeaderFields) -> Result<(), String> {
        self.check_user(name)
            .map_err(|why| format!("{name:?} cannot be a user name: {why}"))?;
        if matches!(self, HeaderKind::Confd | HeaderKind::ConfdB64) {
            let home = fields.home.replace("%u", name);
            check_field(&home).map_err(|why| {
                format!("{name:?} cannot be a user name: its HOMEDIR {home:?} {why}")
            })?;
        }
        Ok(())
    }
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
/// Refuses a user name the header cannot carry ([`HeaderKind::check_user`])
/// and fields that would break its shape, HOMEDIR after `%u` is replaced.
pub fn build(
    kind: HeaderKind,
    user: &str,
    source: SocketAddr,
    fields: &HeaderFields,
) -> Result<Vec<u8>, Unsafe> {
    kind.check_user(user)?;
    match kind {
        HeaderKind::None => Ok(Vec::new()),
        HeaderKind::Confd => confd("", user, user, source, fields),
        HeaderKind::ConfdB64 => confd("b64", &base64(user.as_bytes()), user, source, fields),
        HeaderKind::Ncx { port } => Ok(ncx(user, source, port)),
    }
}

/// ConfD's line: `{prefix}[{user_field};...;]\n`, with `user` (the name
/// itself) in HOMEDIR's `%u`.
fn confd(
    prefix: &str,
    user_field: &str,
    user: &str,
    source: SocketAddr,
    fields: &HeaderFields,
) -> Result<Vec<u8>, Unsafe> {
    let home = fields.home.replace("%u", user);
    for value in [&fields.proto, &fields.subgids, &home, &fields.groups] {
        check_field(value)?;
    }
    let source = addr::canonical(source);
    Ok(format!(
        "{prefix}[{user_field};{}/{};{};{};{};{};{home};{};]\n",
        source_ip(source),
        source.port(),
        fields.proto,
        fields.uid,
        fields.gid,
        fields.subgids,
        fields.groups,
    )
    .into_bytes())
}

/// RFC 4648 §4 base64: standard alphabet, `=` padding, no line breaks.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = byte(0) << 16 | byte(1) << 8 | byte(2);
        // n input bytes give n + 1 digits, then padding up to 4.
        for i in 0..4 {
            out.push(match i <= chunk.len() {
                true => char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]),
                false => '=',
            });
        }
    }
    out
}

/// netconfd's shared secret for local subsystems (yuma123's
/// `NCX_SERVER_MAGIC`); it keeps nothing secret, the socket's permissions do.
const NCX_MAGIC: &str = "x56o8937ab17eg922z34rwhobskdbyswfehkpsqq3i55a0an960ccw24a4ek864aOpal1t2p";

/// The `<ncx-connect>` message as yuma123's `netconf-subsystem` writes it,
/// old-style `]]>]]>` framed. netconfd checks version, magic, transport
/// (only `ssh`) and port, and takes `address` as the client's bare IP.
/// `user` has passed [`HeaderKind::check_user`].
fn ncx(user: &str, source: SocketAddr, port: u16) -> Vec<u8> {
    let address = xml_escape(&source_ip(addr::canonical(source)));
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ncx-connect xmlns=\"http://netconfcentral.org/ns/yuma-ncx\" version=\"1\" \
         user=\"{}\" address=\"{address}\" magic=\"{NCX_MAGIC}\" transport=\"ssh\" \
         port=\"{port}\" />\n]]>]]>",
        xml_escape(user)
    )
    .into_bytes()
}

/// The client's IP as the headers' SOURCE shows it: an IPv6 zone by
/// interface name, or by index when the name holds a character no header
/// may carry raw (Linux refuses only `/`, `:` and whitespace in a name,
/// so `;`, brackets and control characters are possible; XML's specials
/// are escaped where needed).
fn source_ip(source: SocketAddr) -> String {
    let shown = ShowIp(source).to_string();
    match source {
        SocketAddr::V6(v6) if check_field(&shown).is_err() => {
            format!("{}%{}", v6.ip(), v6.scope_id())
        }
        _ => shown,
    }
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
        let header =
            |kind, s| String::from_utf8(build(kind, "admin", s, &fields).unwrap()).unwrap();
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
}
