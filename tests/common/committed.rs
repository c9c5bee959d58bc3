//! Files generated from the code and committed (man pages, completions):
//! `PODNET_BLESS=1` writes them, and otherwise a file that differs from
//! what the code generates fails the test, naming the command to run.

use std::path::Path;

/// Checks (or, blessing, writes) each `(file, text)` under `dir`; `test`
/// is the test target that regenerates them.
pub fn check(dir: &Path, files: &[(String, Vec<u8>)], test: &str) {
    let bless = std::env::var_os("PODNET_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut stale = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if bless {
            std::fs::write(&path, text).unwrap();
        }
        if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
            stale.push(file.as_str());
        }
    }
    assert!(
        stale.is_empty(),
        "stale {stale:?} under {}: run `PODNET_BLESS=1 cargo test --test {test}` and commit",
        dir.display()
    );
}
