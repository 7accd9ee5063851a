//! `--help` and what the documentation shows of each option (the man pages
//! and README's table, checked in `tests/man.rs`), from the option table.

use crate::config::options::{CONFIG, FLAGS, OPTIONS};

/// The width of `--NAME ARG` in `--help`; a longer one has its help on the
/// next line, so every help text starts in the same column.
const OPTION_WIDTH: usize = 32;

/// The `--help` text, generated from the option table.
pub fn usage() -> String {
    let mut s = String::from(
        "nctls: a TLS relay for NETCONF over TLS (RFC 7589) in front of ConfD's plain TCP port.\n\
         \n\
         It accepts TLS with mandatory client certificates, maps the certificate to a user,\n\
         writes ConfD's session header to the backend, then relays bytes both ways, and ends\n\
         every session with a clean TLS close_notify.\n\
         \n\
         Usage: nctls [OPTIONS]\n",
    );
    s.push_str(
        "       nctls fingerprint FILE.pem...   (print RFC 7407 fingerprints for --map rules)\n",
    );
    s.push_str("\nOptions (defaults in brackets):\n");
    let mut line = |left: String, help: String| match left.len() <= OPTION_WIDTH {
        true => s.push_str(&format!("  {left:<OPTION_WIDTH$} {help}\n")),
        false => s.push_str(&format!("  {left}\n   {:OPTION_WIDTH$}{help}\n", "")),
    };
    for o in OPTIONS {
        let help = match o.bracket() {
            Some(default) => format!("{} [{default}]", o.help),
            None => o.help.to_string(),
        };
        line(format!("--{} {}", o.name, o.arg), help);
    }
    for flag in FLAGS {
        line(format!("--{}", flag.name), flag.help.to_string());
    }
    s.push_str(
        "\nSignals: SIGTERM/SIGINT stop accepting and end every session with close_notify;\n\
         SIGHUP re-reads the config file, certificates, CRLs and identity rules, resolves the\n\
         backend's name again, for new sessions, and applies the log options; SIGUSR1 reopens\n\
         --log-file; SIGUSR2 logs the live sessions.\n\
         Logs go to stderr unless --log-file or --syslog: a logfmt line when a session starts and when it ends.\n",
    );
    s
}

/// An option or flag as the documentation shows it: `--help`, the man pages
/// and README's options table (`tests/man.rs` compares them).
#[derive(Clone, Debug)]
pub struct OptionDoc {
    /// Without `--`.
    pub name: &'static str,
    /// The value's form (`FILE`, `1.2|1.3`, `[FACILITY]`); `None` for a flag.
    pub arg: Option<&'static str>,
    /// What `--help` shows in brackets: the default, or the value a
    /// `[VALUE]` option takes when given alone; `empty` for the empty value.
    pub default: Option<String>,
    /// Whether a config file may set it (every option but `config`; no flag).
    pub in_file: bool,
}

/// Every option, then every flag, in `--help` order.
pub fn documented() -> Vec<OptionDoc> {
    let options = OPTIONS.iter().map(|o| OptionDoc {
        name: o.name,
        arg: Some(o.arg),
        default: o.bracket(),
        in_file: o.name != CONFIG,
    });
    let flags = FLAGS.iter().map(|f| OptionDoc {
        name: f.name,
        arg: None,
        default: None,
        in_file: false,
    });
    options.chain(flags).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options;

    /// `--help` lists every option with its help and default from the table
    /// (its layout: `tests/cli.rs`).
    #[test]
    fn help_is_the_table() {
        let help = usage();
        let lines: Vec<&str> = help.lines().collect();
        let mut listed = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("  --") else {
                continue;
            };
            let name = rest.split(' ').next().unwrap();
            // A long `--NAME ARG` has its help on the next line.
            let text = match line.get(OPTION_WIDTH + 2..OPTION_WIDTH + 3) {
                Some(" ") => &line[OPTION_WIDTH + 3..],
                _ => lines[i + 1].trim_start(),
            };
            if let Some(o) = options::find(name) {
                assert!(rest.starts_with(&format!("{name} {}", o.arg)), "{line}");
                let want = match o.bracket() {
                    Some(default) => format!("{} [{default}]", o.help),
                    None => o.help.to_string(),
                };
                assert_eq!(text, want, "--{name}");
                assert!(!o.help.ends_with(']'), "--{name}: a default in its help");
                listed.push(name);
            }
        }
        let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        assert_eq!(listed, names);
        // `--header ncx` means netconfd's default port.
        let port = crate::identity::header::NCX_DEFAULT_PORT;
        assert!(help.contains(&format!("default {port})")), "{help}");
    }
}
