//! The man pages (`man/*.scd`, the scdoc sources of nctls(8) and
//! nctls.conf(5)) and README's options table against the option table
//! (`nctls::config::documented()`, what `--help` prints): an option missing
//! from a page or the README, one they name that does not exist, or a value
//! form or default that differs from the table's fails here. The pages must
//! also build with scdoc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nctls::config::{documented, OptionDoc};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The option table's options and flags, by name.
fn table() -> BTreeMap<String, OptionDoc> {
    let options: BTreeMap<String, OptionDoc> = documented()
        .into_iter()
        .map(|doc| (doc.name.to_string(), doc))
        .collect();
    assert!(options.len() > 20, "too few options: {options:?}");
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

/// Every problem of one page against the option table, as lines.
fn compare(page: &str, conf: bool) -> Vec<String> {
    let help = table();
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
        if conf && !listed.in_file {
            continue;
        }
        let Some((arg, body)) = defined.get(name) else {
            problems.push(format!("{page}: no entry for {name} (it is in --help)"));
            continue;
        };
        if arg.as_deref() != listed.arg {
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
        let known = help.get(name).is_some_and(|l| !conf || l.in_file);
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

/// README's options table names every option and flag of the table, and no
/// other, and gives each option's default in its default column.
#[test]
fn readme_options_table_matches_the_option_table() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let rows = readme
        .split("| option | default | meaning |")
        .nth(1)
        .expect("README's options table");
    // Option name -> the default cell of its row, backticks removed.
    let mut listed = BTreeMap::new();
    for row in rows.lines().skip(2).take_while(|l| l.starts_with('|')) {
        // `\|` is a `|` inside a cell.
        let row = row.replace("\\|", "/");
        let cells: Vec<&str> = row.split('|').collect();
        let (first, default) = (cells.get(1).unwrap_or(&""), cells.get(2).unwrap_or(&""));
        for word in first.split('`') {
            if let Some(name) = word.strip_prefix("--") {
                let name = name.split(' ').next().unwrap_or_default().to_string();
                listed.insert(name, default.replace('`', "").trim().to_string());
            }
        }
    }
    let table = table();
    let mut problems = Vec::new();
    for (name, doc) in &table {
        let Some(cell) = listed.get(name) else {
            problems.push(format!("README's options table lacks --{name}"));
            continue;
        };
        // `x, y, z` for a row of several options; `0 (off)`: words may follow.
        let states = |default: &str| {
            cell.split(", ")
                .any(|item| item == default || item.starts_with(&format!("{default} ")))
        };
        if let Some(default) = doc.default.as_deref().filter(|d| !states(d)) {
            problems.push(format!(
                "README's options table gives --{name} the default {cell:?}, the option table {default:?}"
            ));
        }
    }
    for name in listed.keys() {
        if !table.contains_key(name) {
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
