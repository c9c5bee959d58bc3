//! Shell completions for `podnetctl` and `podnetd` (bash, zsh, fish),
//! generated from the command-line definitions (clap) like the man pages,
//! so they never disagree with `--help`; the packages install the
//! committed files under `completions/`. `PODNET_BLESS=1` rewrites them.
//! Each is also loaded by its own shell: bash completes a verb and an
//! option from the script, zsh and fish parse theirs.

#[path = "common/committed.rs"]
mod committed;
#[path = "common/prereq.rs"]
mod prereq;

use std::process::Command;

use clap::CommandFactory;
use clap_complete::Shell;

/// (file, text) of every completion script.
fn scripts() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, mut cmd) in [
        ("podnetctl", podnet::cli::Cli::command()),
        ("podnetd", podnet::daemon::Args::command()),
    ] {
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut text);
            out.push((file, text));
        }
    }
    out
}

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions")
}

#[test]
fn committed_completions_are_current() {
    committed::check(&dir(), &scripts(), "completions");
}

/// What bash's completion offers for the words `line` (the last one being
/// completed), from the committed script.
fn bash_completes(line: &str) -> Vec<String> {
    let script = dir().join("podnetctl.bash");
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; _podnetctl podnetctl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words.get(words.len().wrapping_sub(2)).copied().unwrap_or(""),
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_verbs_and_options_from_the_script() {
    if !prereq::require(
        "bash_completes_verbs_and_options_from_the_script",
        &["bash"],
    ) {
        return;
    }
    let verbs = bash_completes("podnetctl ap");
    assert_eq!(verbs, vec!["apply".to_string()], "{verbs:?}");
    let options = bash_completes("podnetctl apply --dry");
    assert!(options.contains(&"--dry-run".to_string()), "{options:?}");
}

#[test]
fn zsh_and_fish_parse_their_scripts() {
    if !prereq::require("zsh_and_fish_parse_their_scripts", &["zsh", "fish"]) {
        return;
    }
    for name in ["podnetctl", "podnetd"] {
        for (shell, check, file) in [
            ("zsh", "-n", format!("_{name}")),
            ("fish", "--no-execute", format!("{name}.fish")),
        ] {
            let out = Command::new(shell)
                .arg(check)
                .arg(dir().join(&file))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{shell} {check} {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // fish itself completes a verb from the script.
    let script = dir().join("podnetctl.fish");
    let out = Command::new("fish")
        .args([
            "-c",
            &format!("source {}; complete -C 'podnetctl ap'", script.display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("apply")), "{text}");
}
