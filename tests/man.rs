//! The man pages (`man/*.scd`, the scdoc sources of nctls(8) and
//! nctls.conf(5)) and README's option table against `nctls --help`, the
//! option table the binary prints: an option missing from a page, a page
//! naming an option that does not exist, or a value form or default that
//! differs from `--help` fails here. The pages must also build with scdoc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An option as `--help` lists it: its value form (none for a flag) and
/// its default (the trailing `[...]`), if any.
#[derive(Debug)]
struct Listed {
    arg: Option<String>,
    default: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--help`'s option lines: `  --NAME ARG   help [DEFAULT]` or `  --FLAG   help`.
fn help_options() -> BTreeMap<String, Listed> {
    let out = Command::new(env!("CARGO_BIN_EXE_nctls"))
        .arg("--help")
        .output()
        .expect("run nctls --help");
    assert!(out.status.success(), "nctls --help: {out:?}");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let mut options = BTreeMap::new();
    for line in help.lines() {
        let Some(rest) = line.strip_prefix("  --") else {
            continue;
        };
        let name_end = rest.find(' ').unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        // One space after the name: a value form follows (quoted ones may
        // hold spaces); more: the column padding before a flag's help.
        let arg = match after.strip_prefix(' ') {
            Some(a) if !a.starts_with(' ') => Some(if let Some(q) = a.strip_prefix('\'') {
                let end = q.find('\'').expect("closing quote in the value form");
                format!("'{}'", &q[..end])
            } else {
                a.split(' ').next().unwrap_or_default().to_string()
            }),
            _ => None,
        };
        let default = line
            .strip_suffix(']')
            .and_then(|l| l.rfind(" [").map(|i| l[i + 2..].to_string()));
        options.insert(name.to_string(), Listed { arg, default });
    }
    assert!(options.len() > 20, "no options parsed from --help:\n{help}");
    options
}

/// scdoc text as it reads: `\X` is X.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// The entries of a page's OPTIONS section: definition line → the text of
/// its indented body, whitespace collapsed and unescaped.
fn page_entries(page: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("man").join(page))
        .unwrap_or_else(|e| panic!("man/{page}: {e}"));
    let section = text
        .split("\n# ")
        .find(|s| s.starts_with("OPTIONS\n"))
        .unwrap_or_else(|| panic!("man/{page} has no OPTIONS section"));
    let mut entries = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in section.lines().skip(1) {
        if let Some(body) = line.strip_prefix('\t') {
            if let Some(def) = &current {
                let entry: &mut String = entries.entry(def.clone()).or_default();
                entry.push(' ');
                entry.push_str(&unescape(body));
            }
        } else if line.starts_with('*') {
            current = Some(line.to_string());
            entries.insert(line.to_string(), String::new());
        } else if !line.is_empty() {
            current = None;
        }
    }
    for body in entries.values_mut() {
        *body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    entries
}

/// A definition line as a page writes it: `*--NAME* _ARG_` in nctls(8),
/// `*NAME* = _ARG_` in nctls.conf(5); None for any other line.
fn defined_name(line: &str, conf: bool) -> Option<(String, Option<String>)> {
    let rest = line.strip_prefix('*')?;
    let rest = if conf { rest } else { rest.strip_prefix("--")? };
    let (name, after) = rest.split_once('*')?;
    let arg = if conf {
        after.strip_prefix(" = ")
    } else {
        after.strip_prefix(' ')
    };
    let arg = arg.map(|a| unescape(a.trim_start_matches('_').trim_end_matches('_')));
    Some((name.to_string(), arg))
}

/// Every problem of one page against `--help`, as lines.
fn compare(page: &str, conf: bool) -> Vec<String> {
    let help = help_options();
    let entries = page_entries(page);
    let mut problems = Vec::new();
    let mut defined = BTreeMap::new();
    for (line, body) in &entries {
        match defined_name(line, conf) {
            Some((name, arg)) => {
                defined.insert(name, (arg, body.clone()));
            }
            None => problems.push(format!("{page}: not an option definition: {line:?}")),
        }
    }
    for (name, listed) in &help {
        // The file names no config file, and flags are command-line only.
        if conf && (name == "config" || listed.arg.is_none()) {
            continue;
        }
        let Some((arg, body)) = defined.get(name) else {
            problems.push(format!("{page}: no entry for {name} (it is in --help)"));
            continue;
        };
        if *arg != listed.arg {
            problems.push(format!(
                "{page}: {name} takes {arg:?}, --help says {:?}",
                listed.arg
            ));
        }
        if let Some(default) = &listed.default {
            if !body.contains(&format!("Default: {default}")) {
                problems.push(format!(
                    "{page}: {name} does not say \"Default: {default}\" (--help's default): {body}"
                ));
            }
        }
    }
    for name in defined.keys() {
        let known = help
            .get(name)
            .is_some_and(|l| !conf || (name != "config" && l.arg.is_some()));
        if !known {
            problems.push(format!("{page}: {name} is not an option of --help"));
        }
    }
    problems
}

#[test]
fn nctls_8_documents_every_option_of_help() {
    let problems = compare("nctls.8.scd", false);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn nctls_conf_5_documents_every_option_of_help() {
    let problems = compare("nctls.conf.5.scd", true);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_options_table_matches_help() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let table = readme
        .split("| option | default | meaning |")
        .nth(1)
        .expect("README's options table");
    let mut listed = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for word in first.split('`') {
            if let Some(name) = word.strip_prefix("--") {
                listed.push(name.split(' ').next().unwrap_or_default().to_string());
            }
        }
    }
    let help: Vec<String> = help_options().into_keys().collect();
    let mut problems = Vec::new();
    for name in &help {
        if !listed.contains(name) {
            problems.push(format!("README's options table lacks --{name}"));
        }
    }
    for name in &listed {
        if !help.contains(name) {
            problems.push(format!(
                "README's options table has --{name}, not in --help"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn man_pages_build_with_scdoc() {
    for page in ["nctls.8.scd", "nctls.conf.5.scd"] {
        let path = root().join("man").join(page);
        let out = Command::new("scdoc")
            .stdin(std::fs::File::open(&path).expect("page"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "scdoc ({e}) builds the man pages: apt-get install -y scdoc (or run .ci/run)"
                )
            });
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "scdoc {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let roff = String::from_utf8_lossy(&out.stdout);
        let title = Path::new(page)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name");
        let (name, section) = title.rsplit_once('.').expect("NAME.SECTION");
        assert!(
            roff.contains(&format!(".TH \"{name}\" \"{section}\"")),
            "{page}: no .TH {name} {section}:\n{roff}"
        );
    }
}
