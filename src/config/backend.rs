//! What `--backend` names: the NETCONF server's TCP port (ConfD's
//! `netconf/transport/tcp`), as every address its name resolves to, or a
//! unix socket (yuma123 netconfd's ncxserver socket).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use crate::identity::addr::{self, Show};

/// The backend's address, from `--backend HOST:PORT` or `--backend unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendAddr {
    /// `name` as written; `addrs` every address it resolved to, in the
    /// resolver's order (RFC 6724: `localhost` may give `::1` first), never
    /// empty. A session tries them in that order (the daemon's `Dialer`).
    Tcp {
        /// `HOST:PORT` as given, for messages and `--check`.
        name: String,
        /// Every address `name` resolved to, in order; never empty.
        addrs: Arc<[SocketAddr]>,
    },
    /// `unix:PATH`: a unix stream socket (netconfd's ncxserver socket).
    Unix(PathBuf),
}

impl BackendAddr {
    /// `unix:PATH`, a literal `IP:PORT` (IPv6 as `[::1]:2023`, a zone as
    /// `[fe80::1%eth0]:2023`), or `HOST:PORT` resolved now to all its
    /// addresses. Resolving may block (DNS): never call it on the event loop.
    pub fn parse(v: &str) -> Result<BackendAddr, String> {
        if let Some(path) = v.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{v:?}: empty socket path"));
            }
            return Ok(BackendAddr::Unix(PathBuf::from(path)));
        }
        let tcp = |addrs: Vec<SocketAddr>| BackendAddr::Tcp {
            name: v.to_string(),
            addrs: addrs.into(),
        };
        if let Ok(addr) = addr::parse_ip_port(v) {
            return Ok(tcp(vec![addr]));
        }
        let (host, port) = v
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| format!("{v:?} is not HOST:PORT or unix:PATH"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{v:?}: cannot resolve {host:?}: {e}"))?
        {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(format!("{v:?} resolves to no address"));
        }
        Ok(tcp(addrs))
    }

    /// Every address a session may try, as text (`--check`, logs).
    pub fn addresses(&self) -> Vec<String> {
        match self {
            BackendAddr::Tcp { addrs, .. } => addrs.iter().map(|a| Show(*a).to_string()).collect(),
            BackendAddr::Unix(_) => vec![self.to_string()],
        }
    }

    /// How many addresses a session may try.
    pub fn address_count(&self) -> usize {
        match self {
            BackendAddr::Tcp { addrs, .. } => addrs.len(),
            BackendAddr::Unix(_) => 1,
        }
    }

    /// The `i`th address as logs show it (a zone by name).
    pub fn describe(&self, i: usize) -> String {
        match self {
            BackendAddr::Tcp { addrs, .. } => Show(addrs[i]).to_string(),
            BackendAddr::Unix(_) => self.to_string(),
        }
    }
}

impl fmt::Display for BackendAddr {
    /// As written: `localhost:2023`, `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp { name, .. } => f.write_str(name),
            BackendAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(name: &str, addrs: &[&str]) -> BackendAddr {
        BackendAddr::Tcp {
            name: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            BackendAddr::parse("127.0.0.1:2023"),
            Ok(tcp("127.0.0.1:2023", &["127.0.0.1:2023"]))
        );
        assert_eq!(
            BackendAddr::parse("unix:/run/ncx.sock"),
            Ok(BackendAddr::Unix("/run/ncx.sock".into()))
        );
        assert!(BackendAddr::parse("unix:").is_err());
        assert!(BackendAddr::parse("/run/ncx.sock").is_err());
        assert!(BackendAddr::parse("localhost").is_err());
        assert!(BackendAddr::parse(":2023").is_err());
        assert_eq!(
            BackendAddr::parse("unix:/a b").unwrap().to_string(),
            "unix:/a b"
        );
        let zoned = BackendAddr::parse("[fe80::1%lo]:2023").unwrap();
        assert_eq!(zoned.to_string(), "[fe80::1%lo]:2023");
        assert_eq!(zoned.addresses(), ["[fe80::1%lo]:2023"]);
        // A name keeps its spelling and gets every address.
        let named = BackendAddr::parse("localhost:2023").unwrap();
        assert_eq!(named.to_string(), "localhost:2023");
        assert!(named.addresses().contains(&"127.0.0.1:2023".to_string()));
        let err = BackendAddr::parse("no-such-host.invalid:2023").unwrap_err();
        assert!(err.contains("cannot resolve"), "{err}");
    }
}
