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
    Ncx {
        /// The `port` attribute: the port netconfd believes the client
        /// reached, checked against its `--port` list.
        port: u16,
    },
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
    /// PROTO: the transport ConfD records for the session (`ssh`).
    pub proto: String,
    /// UID: the numeric user id ConfD runs the session as.
    pub uid: u32,
    /// GID: the numeric primary group id.
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
    /// For every user not in `users` (`--proto`, `--uid`, ...).
    pub defaults: HeaderFields,
    /// Per user name, in `--user-fields` order; each name once.
    pub users: Vec<(String, HeaderFields)>,
}

impl Accounts {
    /// The fields for `user`: its own, or the defaults.
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
    /// The value is empty (a user name must not be).
    Empty,
    /// Longer than [`MAX_NAME`] bytes.
    TooLong,
    /// Holds this character, which the header form cannot carry.
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

/// Whether a ConfD header field other than the user (PROTO, SUBGIDS,
/// HOMEDIR, GROUPS) keeps the line's shape: it may be empty, and holds no
/// `;`, `[`, `]` or control character (the first one found is the error).
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
mod tests;
