//! The sandbox (`--sandbox on`, the default): once started, the daemon
//! asks Landlock (Linux 5.13 and later) to confine it to what its
//! configuration names, so that a flaw in the code facing the network
//! cannot read the device's other secrets or reach its other services.
//!
//! What stays allowed ([`Rules::for_config`]):
//! - reading files beneath the directories of the files it was configured
//!   with (config file, certificate, key, CA, CRLs: a reload re-reads them,
//!   also when they were replaced by a new file, as certbot and editors do);
//!   with a host name as `--backend`, the resolver's files;
//! - creating and writing files in the log file's directory (SIGUSR1 reopens
//!   the file by name after logrotate moved it);
//! - binding the listen ports and connecting to the backend's port (and to
//!   port 53, DNS over TCP, for a host name), where the kernel's Landlock
//!   ABI has network rules (4 and later, Linux 6.7).
//!
//! Nothing else on the filesystem: no other file is opened, none executed.
//! Unix sockets (a `unix:` backend, `/dev/log`) are not covered by the
//! Landlock rights handled here and keep working. With a PKCS#11 key only
//! the network rules apply: the module reads and writes files of its own
//! (SoftHSM's token directory, tpm2-pkcs11's store) that nctls cannot know.
//!
//! Best effort: a kernel without Landlock, or with an older ABI, enforces
//! what it has, and [`Outcome`] says what that was. Landlock confines the
//! calling thread and the threads it starts later, so this runs before the
//! daemon starts any thread.

use std::fmt;
#[cfg(feature = "landlock")]
use std::path::Path;
use std::path::PathBuf;

use crate::config::Config;
#[cfg(feature = "landlock")]
use crate::config::{backend::BackendAddr, KeySource, LogOutput};
#[cfg(feature = "landlock")]
use crate::identity::addr;

/// The resolver's files glibc reads to resolve a host name.
#[cfg(feature = "landlock")]
const RESOLVER_FILES: [&str; 5] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
];

/// DNS over TCP, which a resolver falls back to for large answers.
#[cfg(feature = "landlock")]
const DNS_PORT: u16 = 53;

/// What the sandbox leaves allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Whether the filesystem rules apply (not with a PKCS#11 key).
    pub filesystem: bool,
    /// Whether the network rules apply (a kernel may lack them).
    pub network: bool,
    /// Files beneath these directories may be read.
    pub read_dirs: Vec<PathBuf>,
    /// These files may be read.
    pub read_files: Vec<PathBuf>,
    /// Files beneath these directories may be created and written.
    pub write_dirs: Vec<PathBuf>,
    /// TCP ports the daemon may bind (its listeners).
    pub bind_ports: Vec<u16>,
    /// TCP ports the daemon may connect to (the backend's, DNS for a name).
    pub connect_ports: Vec<u16>,
}

impl Rules {
    /// What a daemon running `config` needs after start-up. Without the
    /// `landlock` feature there is nothing to enforce, so nothing to find.
    #[cfg(not(feature = "landlock"))]
    pub fn for_config(_: &Config) -> Rules {
        Rules::default()
    }

    /// What a daemon running `config` needs after start-up.
    #[cfg(feature = "landlock")]
    pub fn for_config(config: &Config) -> Rules {
        let mut rules = Rules {
            filesystem: matches!(config.key, KeySource::File(_)),
            network: true,
            ..Rules::default()
        };
        for file in read_files(config) {
            add(&mut rules.read_dirs, directory_of(&file));
        }
        if let LogOutput::File(log) = &config.log_output {
            add(&mut rules.write_dirs, directory_of(&log.path));
        }
        if needs_resolver(&config.backend) {
            for file in RESOLVER_FILES {
                if let Ok(real) = std::fs::canonicalize(file) {
                    add(&mut rules.read_files, real);
                }
            }
            add(&mut rules.connect_ports, DNS_PORT);
        }
        for listen in &config.listen {
            add(&mut rules.bind_ports, listen.port());
        }
        if let BackendAddr::Tcp { addrs, .. } = &config.backend {
            for a in addrs.iter() {
                add(&mut rules.connect_ports, a.port());
            }
        }
        rules
    }

    /// Why a reloaded configuration needs more than these rules allow
    /// (`None`: it fits). The rules are fixed at start: such a change needs
    /// a restart.
    pub fn refuses(&self, config: &Config) -> Option<String> {
        let new = Rules::for_config(config);
        let restart = "the sandbox set at start does not allow it; restart nctls to apply it";
        if self.filesystem {
            if !new.filesystem {
                return Some(format!("a PKCS#11 key: {restart}"));
            }
            let outside =
                |dir: &PathBuf, allowed: &[PathBuf]| !allowed.iter().any(|a| dir.starts_with(a));
            if let Some(dir) = new.read_dirs.iter().find(|d| outside(d, &self.read_dirs)) {
                return Some(format!("files in {}: {restart}", dir.display()));
            }
            if let Some(dir) = new.write_dirs.iter().find(|d| outside(d, &self.write_dirs)) {
                return Some(format!("a log file in {}: {restart}", dir.display()));
            }
            if new.read_files.iter().any(|f| !self.read_files.contains(f)) {
                return Some(format!("a backend host name to resolve: {restart}"));
            }
        }
        if let Some(port) = new
            .connect_ports
            .iter()
            .find(|p| !self.connect_ports.contains(p))
        {
            if self.network {
                return Some(format!("backend port {port}: {restart}"));
            }
        }
        None
    }

    /// These rules as far as `outcome` says they were enforced: what a
    /// reload must stay within.
    pub fn as_enforced(&self, outcome: &Outcome) -> Rules {
        let (filesystem, network) = match outcome {
            Outcome::Enforced {
                filesystem,
                network,
                ..
            } => (*filesystem, *network),
            Outcome::Off | Outcome::None(_) => (false, false),
        };
        Rules {
            filesystem,
            network,
            ..self.clone()
        }
    }
}

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths = |list: &[PathBuf]| {
            let shown: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(" ")
            }
        };
        let ports = |list: &[u16]| {
            let shown: Vec<String> = list.iter().map(u16::to_string).collect();
            shown.join(" ")
        };
        if self.filesystem {
            write!(
                f,
                "read beneath: {}; read: {}; write beneath: {}; ",
                paths(&self.read_dirs),
                paths(&self.read_files),
                paths(&self.write_dirs)
            )?;
        }
        write!(
            f,
            "TCP bind: {}; TCP connect: {}",
            ports(&self.bind_ports),
            ports(&self.connect_ports)
        )
    }
}

/// What was enforced, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `--sandbox off`.
    Off,
    /// Nothing enforced, and why.
    None(String),
    /// Landlock enforces these kinds of rules (ABI `abi`).
    Enforced {
        /// The kernel's Landlock ABI version.
        abi: i32,
        /// Filesystem rules are enforced.
        filesystem: bool,
        /// Network (TCP bind/connect) rules are enforced (ABI 4 and later).
        network: bool,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Off => f.write_str("sandbox: off (--sandbox off)"),
            Outcome::None(why) => write!(f, "sandbox: none enforced: {why}"),
            Outcome::Enforced {
                abi,
                filesystem,
                network,
            } => {
                let what = match (filesystem, network) {
                    (true, true) => "filesystem and network",
                    (true, false) => {
                        "filesystem only (this kernel's Landlock has no network rules)"
                    }
                    (false, true) => "network only (a PKCS#11 module's files are its own)",
                    (false, false) => "nothing",
                };
                write!(f, "sandbox: Landlock ABI {abi}: {what}")
            }
        }
    }
}

/// Confines this thread and those it starts later to `rules`, as far as
/// the kernel can. An error (a seccomp filter refusing Landlock's calls, a
/// directory gone) says why nothing was enforced.
#[cfg(feature = "landlock")]
pub fn enforce(rules: &Rules) -> Result<Outcome, String> {
    use landlock::{
        Access, AccessFs, AccessNet, LandlockStatus, NetPort, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    // The rights of the newest ABI this was tested with (Linux 6.15); a
    // newer kernel's extra rights are not asked for.
    const TESTED: ABI = ABI::V7;
    let fail = |e: &dyn fmt::Display| format!("cannot set up Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessNet::from_all(TESTED))
        .map_err(|e| fail(&e))?;
    if rules.filesystem {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(TESTED))
            .map_err(|e| fail(&e))?
            .scope(Scope::from_all(TESTED))
            .map_err(|e| fail(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail(&e))?;
    if rules.filesystem {
        let path = |p: &Path| {
            PathFd::new(p).map_err(|e| format!("cannot set up Landlock: {}: {e}", p.display()))
        };
        for dir in &rules.read_dirs {
            created = created
                .add_rule(PathBeneath::new(path(dir)?, AccessFs::ReadFile))
                .map_err(|e| fail(&e))?;
        }
        for file in &rules.read_files {
            created = created
                .add_rule(PathBeneath::new(path(file)?, AccessFs::ReadFile))
                .map_err(|e| fail(&e))?;
        }
        for dir in &rules.write_dirs {
            created = created
                .add_rule(PathBeneath::new(
                    path(dir)?,
                    AccessFs::WriteFile | AccessFs::MakeReg,
                ))
                .map_err(|e| fail(&e))?;
        }
    }
    for &port in &rules.bind_ports {
        created = created
            .add_rule(NetPort::new(port, AccessNet::BindTcp))
            .map_err(|e| fail(&e))?;
    }
    for &port in &rules.connect_ports {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(|e| fail(&e))?;
    }
    let status = created.restrict_self().map_err(|e| fail(&e))?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi,
        LandlockStatus::NotEnabled => {
            return Ok(Outcome::None(
                "this kernel has Landlock but it is not enabled (lsm= boot option)".into(),
            ))
        }
        LandlockStatus::NotImplemented => {
            return Ok(Outcome::None(
                "this kernel has no Landlock (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK)"
                    .into(),
            ))
        }
    };
    if status.ruleset == RulesetStatus::NotEnforced {
        return Ok(Outcome::None(format!(
            "Landlock ABI {} enforced none of the rules",
            abi as i32
        )));
    }
    Ok(Outcome::Enforced {
        abi: abi as i32,
        filesystem: rules.filesystem,
        network: abi >= ABI::V4,
    })
}

/// Without the `landlock` feature (the minimal build) there is no sandbox.
#[cfg(not(feature = "landlock"))]
pub fn enforce(_: &Rules) -> Result<Outcome, String> {
    Ok(Outcome::None(
        "nctls was built without the landlock feature".into(),
    ))
}

/// A test hook, only in debug builds (those `cargo test` runs): opens
/// `FILE` and connects to `127.0.0.1:PORT` (`spec` is `FILE PORT`), and
/// says how each went, so a test can see the sandbox refuse both.
#[cfg(debug_assertions)]
pub fn probe(spec: &str) -> Vec<String> {
    let Some((file, port)) = spec.rsplit_once(' ') else {
        return vec![format!("sandbox probe: {spec:?}: expected FILE PORT")];
    };
    let open = match std::fs::File::open(file) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let connect = match std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap_or(0))) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    vec![
        format!("sandbox probe: open {file}: {open}"),
        format!("sandbox probe: connect 127.0.0.1:{port}: {connect}"),
    ]
}

/// The files a daemon re-reads on reload (a PKCS#11 key is in its token).
#[cfg(feature = "landlock")]
fn read_files(config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = vec![config.cert.path.clone(), config.ca.path.clone()];
    files.extend(config.key.file().map(|f| f.path.clone()));
    files.extend(config.crls.iter().map(|f| f.path.clone()));
    files.extend(config.config_file.clone());
    files
}

/// The directory a file is in, symbolic links resolved (Landlock looks at
/// the file itself, wherever a link to it sits), absolute.
#[cfg(feature = "landlock")]
fn directory_of(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    real.parent().map(Path::to_path_buf).unwrap_or(real)
}

/// A backend named by a host name, which the resolver looks up on reload.
#[cfg(feature = "landlock")]
fn needs_resolver(backend: &BackendAddr) -> bool {
    match backend {
        BackendAddr::Tcp { name, .. } => addr::parse_ip_port(name).is_err(),
        BackendAddr::Unix(_) => false,
    }
}

/// Adds `item` once.
#[cfg(feature = "landlock")]
fn add<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(all(test, feature = "landlock"))]
mod tests {
    use super::*;
    use crate::config::parse_args;
    use crate::config::Command;

    fn config(args: &[&str]) -> Config {
        match parse_args(args.iter().map(|s| s.to_string())) {
            Ok(Command::Run(config)) => config,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rules_name_the_files_directories_and_the_ports() {
        let c = config(&[
            "--cert",
            "/etc/nctls/a/cert.pem",
            "--key",
            "/etc/nctls/b/key.pem",
            "--ca",
            "/etc/nctls/a/ca.pem",
            "--crl",
            "/var/lib/crl/x.crl",
            "--listen",
            "0.0.0.0:6513",
            "--listen",
            "[::]:830",
            "--backend",
            "127.0.0.1:2023",
            "--log-file",
            "/var/log/nctls.log",
        ]);
        let rules = Rules::for_config(&c);
        assert!(rules.filesystem);
        let dirs: Vec<&str> = rules
            .read_dirs
            .iter()
            .map(|d| d.to_str().unwrap())
            .collect();
        assert_eq!(dirs, ["/etc/nctls/a", "/etc/nctls/b", "/var/lib/crl"]);
        assert_eq!(rules.write_dirs, [PathBuf::from("/var/log")]);
        assert!(rules.read_files.is_empty(), "an address needs no resolver");
        assert_eq!(rules.bind_ports, [6513, 830]);
        assert_eq!(rules.connect_ports, [2023]);
        assert!(rules.refuses(&c).is_none());
        let moved = config(&["--cert", "/srv/cert.pem", "--backend", "127.0.0.1:2023"]);
        let why = rules.refuses(&moved).unwrap();
        assert!(
            why.starts_with("files in /srv: the sandbox set at start"),
            "{why}"
        );
        let port = config(&[
            "--cert",
            "/etc/nctls/a/cert.pem",
            "--key",
            "/etc/nctls/b/key.pem",
            "--ca",
            "/etc/nctls/a/ca.pem",
            "--backend",
            "127.0.0.1:2024",
        ]);
        assert!(rules
            .refuses(&port)
            .unwrap()
            .starts_with("backend port 2024"));
    }

    #[test]
    fn a_host_name_needs_the_resolver_and_dns() {
        let rules = Rules::for_config(&config(&["--backend", "localhost:2023"]));
        assert!(
            rules.read_files.iter().any(|f| f.ends_with("hosts")),
            "{rules}"
        );
        assert_eq!(rules.connect_ports, [DNS_PORT, 2023]);
        assert!(needs_resolver(&BackendAddr::parse("localhost:1").unwrap()));
        assert!(!needs_resolver(&BackendAddr::parse("[::1]:1").unwrap()));
    }

    #[test]
    fn outcomes_say_what_was_enforced() {
        let both = Outcome::Enforced {
            abi: 7,
            filesystem: true,
            network: true,
        };
        assert_eq!(
            both.to_string(),
            "sandbox: Landlock ABI 7: filesystem and network"
        );
        assert_eq!(Outcome::Off.to_string(), "sandbox: off (--sandbox off)");
    }
}
