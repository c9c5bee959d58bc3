//! What a test needs before it can make its real check, looked up first.
//!
//! Under `scripts/test` (which sets `PODNET_NO_SKIP=1`) a missing
//! prerequisite fails the test and names the Debian package that brings it,
//! read from `scripts/deps.list`, the one list `scripts/install-deps`
//! installs. Under a plain `cargo test` (say, as a normal user) the test
//! skips instead, and says so on stderr directly: cargo hides what a passing
//! test prints, and a skip must never pass for a pass unnoticed.
//!
//! Shared by the integration tests (`tests/common`) and the library's own
//! root tests (`src/shaping/tests.rs`, through `#[path]`).
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;

/// The environment variable that turns every skip into a failure.
pub const NO_SKIP: &str = "PODNET_NO_SKIP";

/// Stands for "runs as root" in a list of needs.
pub const ROOT: &str = "root";

const DEPS: &str = include_str!("../../scripts/deps.list");

/// The row of `scripts/deps.list` that brings `tool`: package and suite.
fn row_of(tool: &str) -> Option<(&'static str, &'static str)> {
    DEPS.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[3..].contains(&tool))
        .map(|f| (f[0], f[1]))
}

/// The Debian package (or `NAME==VERSION` from PyPI) that brings `tool`
/// (a command, an absolute path or `python:MODULE`).
pub fn package_of(tool: &str) -> Option<&'static str> {
    row_of(tool).map(|(package, _)| package)
}

/// The venv `scripts/install-deps` installs the PyPI rows into.
pub fn pypi_venv() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/pypi")
}

/// Where to run `tool` from: a PyPI row's command from the venv (the venv's
/// python for `python:MODULE`), anything else as named (looked up on PATH).
pub fn tool_path(tool: &str) -> std::path::PathBuf {
    match row_of(tool) {
        Some((_, "pypi")) => {
            let bin = pypi_venv().join("bin");
            match tool.strip_prefix("python:") {
                Some(_) => bin.join("python"),
                None => bin.join(tool),
            }
        }
        _ => tool.into(),
    }
}

fn found(tool: &str) -> bool {
    if let Some((_, "pypi")) = row_of(tool) {
        let path = tool_path(tool);
        return match tool.strip_prefix("python:") {
            Some(module) => std::process::Command::new(path)
                .args(["-c", &format!("import {module}")])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            None => path.exists(),
        };
    }
    if tool.starts_with('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// True when skips are failures (`PODNET_NO_SKIP` set to anything but "" or "0").
pub fn strict() -> bool {
    std::env::var(NO_SKIP).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// True when `test` has everything in `needs` ([`ROOT`] and tools). When it
/// has not: fails under `scripts/test`, otherwise says loudly that it skips
/// and returns false. A tool missing from `scripts/deps.list` is a bug in
/// the test and always fails.
pub fn require(test: &str, needs: &[&str]) -> bool {
    let mut missing = Vec::new();
    for &need in needs {
        if need == ROOT {
            if !nix::unistd::geteuid().is_root() {
                missing.push("root (network namespaces, bpf(), mounts)".to_string());
            }
            continue;
        }
        let Some(package) = package_of(need) else {
            panic!("{test} needs `{need}`, which scripts/deps.list does not list: add the package that brings it");
        };
        if !found(need) {
            missing.push(format!(
                "`{need}` ({} package {package}: run scripts/install-deps)",
                if row_of(need).is_some_and(|(_, suite)| suite == "pypi") {
                    "PyPI"
                } else {
                    "Debian"
                }
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{test} cannot make its real check: it needs {}",
        missing.join(", ")
    );
    if strict() {
        panic!("{what}. Under scripts/test ({NO_SKIP}=1) that is a failure, not a skip.");
    }
    // Straight to the process's stderr, past the test harness's capture.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED, NOT PASSED: {what}");
    false
}
