//! The config file (`--config FILE`): its syntax and every option read
//! from it, as the daemon reads it (`config::parse_args`).
//!
//! Invariants: an error is one line (no control character) starting with
//! `FILE:LINE: `; a file
//! that loads prints (`--check`) as a config file that loads to the same
//! configuration, which prints the same again.

use std::path::PathBuf;

use nctls::config::{parse_args, Command, Config};

use super::netns;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `backend = HOST:PORT` resolves HOST: only where that sends nothing.
    if !netns::isolate() && text.contains("backend") {
        return;
    }
    let file = scratch_file();
    let config = match load(&file, text) {
        Ok(config) => config,
        Err(why) => {
            let at = format!("{}:", file.display());
            let line = why
                .strip_prefix(&at)
                .unwrap_or_else(|| panic!("FILE:LINE: {why:?}"));
            let (number, rest) = line.split_once(':').expect("FILE:LINE:");
            assert!(number.parse::<usize>().is_ok_and(|n| n > 0), "{why:?}");
            assert!(rest.starts_with(' '), "{why:?}");
            assert!(!why.contains(char::is_control), "one line: {why:?}");
            return;
        }
    };
    let printed = config.to_string();
    let again = load(&file, &printed)
        .unwrap_or_else(|why| panic!("--check output does not load: {why}\n{printed}"));
    assert_eq!(
        again.to_string(),
        printed,
        "--check output loads to another configuration"
    );
}

/// The configuration `text` gives as the file `file`.
fn load(file: &PathBuf, text: &str) -> Result<Config, String> {
    std::fs::write(file, text).expect("write the scratch config file");
    let args = ["--config".to_string(), file.display().to_string()];
    let parsed = parse_args(args);
    let _ = std::fs::remove_file(file);
    match parsed.map_err(|e| e.0)? {
        Command::Run(config) => Ok(config),
        other => panic!("--config alone gave {other:?}"),
    }
}

/// A file of this process and thread: replays run on several threads.
fn scratch_file() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let name: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!("nctls-fuzz-{}-{name}.conf", std::process::id()))
}
