//! The fuzz targets' committed inputs, replayed on stable as ordinary
//! tests: each target's seed corpus (`fuzz/corpus/TARGET/`) and every input
//! that once broke it (`fuzz/regressions/TARGET/`), through the same bodies
//! the libFuzzer targets run (`fuzz/src/`), asserts and all. Neither
//! nightly nor libFuzzer is needed; `make fuzz` is what finds new inputs.

use std::panic;
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod bodies;

/// Runs `run` over every committed input of `target`; fails naming each
/// input that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files(&fuzz.join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{target} holds the target's seeds"
    );
    let mut failed = Vec::new();
    for file in seeds
        .iter()
        .chain(&files(&fuzz.join("regressions").join(target)))
    {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn der() {
    replay("der", bodies::der::run);
}

#[test]
fn rules() {
    replay("rules", bodies::rules::run);
}

#[test]
fn config_file() {
    replay("config_file", bodies::config_file::run);
}

#[test]
fn header() {
    replay("header", bodies::header::run);
}

#[test]
fn pem() {
    replay("pem", bodies::pem::run);
}

#[test]
fn session() {
    replay("session", bodies::session::run);
}
