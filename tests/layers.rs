//! The source tree's layers point one way: identity ← relay ← config ←
//! daemon (each may use only those before it). A `crate::LAYER` path in a
//! layer's non-test code that names a later layer fails here, so the pure
//! core never grows a dependency on sockets or configuration. The C API
//! comes after them all as a crate of its own (`capi/`, over this one): the
//! compiler keeps the core from depending on it.

use std::path::{Path, PathBuf};

const LAYERS: &[&str] = &["identity", "relay", "config", "daemon"];

/// The `.rs` files under `dir`, in subfolders too, except unit-test
/// modules kept in files of their own (`tests.rs`, `tests/`).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `(file, used layer)` for every back-arrow under `src/LAYER/`.
fn back_arrows(src: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (rank, layer) in LAYERS.iter().enumerate() {
        for file in sources(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests may use anything (the test PKI, say).
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for later in &LAYERS[rank + 1..] {
                if code.contains(&format!("crate::{later}::")) {
                    found.push((file.display().to_string(), later.to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn layers_depend_only_on_earlier_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let arrows = back_arrows(&src);
    assert!(
        arrows.is_empty(),
        "back-arrows (file, later layer): {arrows:#?}"
    );
}

#[test]
fn a_back_arrow_is_found() {
    let dir = std::env::temp_dir().join(format!("nctls-layers-{}", std::process::id()));
    for layer in LAYERS {
        std::fs::create_dir_all(dir.join(layer)).unwrap();
    }
    std::fs::create_dir_all(dir.join("relay/session/tests")).unwrap();
    std::fs::write(
        dir.join("relay/session/x.rs"),
        "use crate::daemon::server::Server;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("relay/session/tests/mod.rs"),
        "use crate::config::tls;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config/y.rs"),
        "use crate::relay::session::Session;\n#[cfg(test)]\nmod tests {\n    use crate::daemon::x;\n}\n",
    )
    .unwrap();
    let arrows = back_arrows(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        arrows,
        vec![(
            dir.join("relay/session/x.rs").display().to_string(),
            "daemon".to_string()
        )]
    );
}
