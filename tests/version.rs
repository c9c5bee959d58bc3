//! `--version` names the commit a binary was built from; `-V` only the
//! version.

use std::process::Command;

fn run(bin: &str, arg: &str) -> String {
    let out = Command::new(bin).arg(arg).output().unwrap();
    assert!(out.status.success(), "{bin} {arg}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    // What build.rs read: PODNET_COMMIT, or git's HEAD when this is a
    // checkout (the test asks git the same).
    let expected = std::env::var("PODNET_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short=12",
                "HEAD",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    });
    let version = env!("CARGO_PKG_VERSION");
    for (name, bin) in [
        ("podnetctl", env!("CARGO_BIN_EXE_podnetctl")),
        ("podnetd", env!("CARGO_BIN_EXE_podnetd")),
    ] {
        let long = run(bin, "--version");
        let commit = expected.as_deref().unwrap_or("unknown");
        assert_eq!(long.trim(), format!("{name} {version} (commit {commit})"));
        assert_eq!(run(bin, "-V").trim(), format!("{name} {version}"));
    }
}
