//! What README says about the tree stays true: its Layout table names every
//! folder and file under `src/`, and nothing that is not there; every row of
//! its close table ("How a session ends") has unit tests
//! (`src/relay/session/tests/`) and integration tests (`tests/close.rs`)
//! named `rowN_...` after it, and no test names a row that does not exist.
//!
//! How the Layout table names the tree: each entry of `src/` has a row of
//! its own (`src/main.rs`, `src/identity/`). In a folder's row, its files
//! are named `file.rs` and its subfolders `name/`, each in backticks; the
//! contents of a subfolder are in the first parentheses after it, before
//! any other name: `session/` ... (`mod.rs` ..., `tests/` ... (`rows.rs`
//! ...)). A folder's `mod.rs` is the folder itself and may go unnamed.
//! Other backticked words, such as those with a `/` inside
//! (`daemon/conn.rs`), point elsewhere and are not read as names.

use std::collections::BTreeSet;
use std::path::Path;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of README's section `## TITLE`.
fn section<'a>(readme: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("## {title}");
    readme
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// Every file and folder under `dir`, relative to it, folders ending in `/`.
fn tree(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            let folder = format!("{prefix}{name}/");
            out.insert(folder.clone());
            tree(&entry.path(), &folder, out);
        } else {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

/// A word that names a file or folder of the row's folder: no `/` but a
/// trailing one, and a folder or a file with an extension.
fn is_name(word: &str) -> bool {
    let bare = word.strip_suffix('/').unwrap_or(word);
    !bare.is_empty()
        && !bare.contains('/')
        && (word.ends_with('/') || bare.contains('.'))
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The paths a folder row's text names, relative to its folder (see the
/// module documentation).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // The folder each open parenthesis is inside of.
    let mut open: Vec<String> = Vec::new();
    let mut last_folder: Option<String> = None;
    let mut rest = text;
    while let Some(i) = rest.find(['`', '(', ')']) {
        let prefix = open.last().cloned().unwrap_or_default();
        match rest.as_bytes()[i] {
            b'`' => {
                let after = &rest[i + 1..];
                let end = after.find('`').expect("unbalanced backticks in Layout");
                let word = &after[..end];
                if is_name(word) {
                    names.insert(format!("{prefix}{word}"));
                    last_folder = word.ends_with('/').then(|| format!("{prefix}{word}"));
                }
                rest = &after[end + 1..];
                continue;
            }
            b'(' => open.push(last_folder.take().unwrap_or(prefix)),
            _ => {
                open.pop();
            }
        }
        rest = &rest[i + 1..];
    }
    names
}

/// The Layout table's rows for `src/`: (path, what).
fn src_rows(readme: &str) -> Vec<(String, String)> {
    section(readme, "Layout")
        .into_iter()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let path = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            let what = cells.get(1..)?.join(" | ");
            path.starts_with("src/")
                .then(|| (path.to_string(), what.trim_end_matches(" |").to_string()))
        })
        .collect()
}

#[test]
fn layout_names_every_folder_and_file_under_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = readme();
    let rows = src_rows(&readme);
    let mut problems = Vec::new();

    let mut top = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("src")).unwrap() {
        let entry = entry.unwrap();
        let slash = if entry.file_type().unwrap().is_dir() {
            "/"
        } else {
            ""
        };
        top.insert(format!(
            "src/{}{slash}",
            entry.file_name().to_str().unwrap()
        ));
    }
    let row_paths: BTreeSet<String> = rows.iter().map(|(p, _)| p.clone()).collect();
    for missing in top.difference(&row_paths) {
        problems.push(format!("{missing}: no row of its own"));
    }
    for stale in row_paths.difference(&top) {
        problems.push(format!("{stale}: a row, but not in the tree"));
    }

    for (path, what) in rows.iter().filter(|(p, _)| p.ends_with('/')) {
        let mut present = BTreeSet::new();
        let dir = root.join(path);
        if !dir.is_dir() {
            continue;
        }
        tree(&dir, "", &mut present);
        let named = names_in(what);
        for missing in present.difference(&named) {
            if missing != "mod.rs" && !missing.ends_with("/mod.rs") {
                problems.push(format!("{path}{missing}: not named in the {path} row"));
            }
        }
        for stale in named.difference(&present) {
            problems.push(format!(
                "{path}{stale}: named in the {path} row, not in the tree"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "README's Layout table and src/ disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn layout_names_are_read_as_written() {
    let names = names_in(
        "`a.rs` x (y, z); `sub/` s (`mod.rs` m, `deep/` d `Type` (`x.rs`)), `b.rs`; \
         `other/file.rs` elsewhere, `Config`, `--flag` (`c.rs`)",
    );
    let expected = [
        "a.rs",
        "sub/",
        "sub/mod.rs",
        "sub/deep/",
        "sub/deep/x.rs",
        "b.rs",
        "c.rs",
    ];
    assert_eq!(names, expected.iter().map(|s| s.to_string()).collect());
}

/// The numbers of the close table's rows.
fn close_rows(readme: &str) -> BTreeSet<u32> {
    section(readme, "How a session ends")
        .into_iter()
        .filter_map(|line| line.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// The N of every `fn rowN_` in the files under `path` (or the file itself).
fn row_tests(path: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            found.extend(row_tests(&entry.unwrap().path()));
        }
        return found;
    }
    let text = std::fs::read_to_string(path).unwrap();
    for piece in text.split("fn row").skip(1) {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        if piece[digits.len()..].starts_with('_') {
            found.push(digits.parse().unwrap());
        }
    }
    found
}

#[test]
fn every_close_table_row_has_tests_named_after_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = close_rows(&readme());
    assert_eq!(rows, (1..=7).collect(), "the close table's row numbers");
    for place in ["src/relay/session/tests", "tests/close.rs"] {
        let tests = row_tests(&root.join(place));
        for row in &rows {
            assert!(tests.contains(row), "{place}: no test named row{row}_...");
        }
        for n in &tests {
            assert!(
                rows.contains(n),
                "{place}: fn row{n}_... names no row of the close table"
            );
        }
    }
}
