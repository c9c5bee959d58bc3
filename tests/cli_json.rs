//! Every podnetctl verb speaks JSON for scripts (`-o json`), and
//! `validate -o json` reports valid and invalid files alike.

use clap::CommandFactory;
use std::process::Command;

/// Verbs and sub-verbs that act (those with sub-verbs only route).
fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    if cmd.get_subcommands().next().is_none() {
        out.push((path.clone(), cmd.clone()));
    }
    for sub in cmd.get_subcommands() {
        leaves(sub, format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_verb_has_output_json() {
    let mut verbs = Vec::new();
    for sub in podnet::cli::Cli::command().get_subcommands() {
        leaves(sub, sub.get_name().to_string(), &mut verbs);
    }
    assert!(verbs.len() >= 8, "{verbs:?}");
    for (path, cmd) in verbs {
        let output = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some("output"))
            .unwrap_or_else(|| panic!("`podnetctl {path}` has no --output"));
        assert_eq!(output.get_short(), Some('o'), "podnetctl {path}");
        let values: Vec<String> = output
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        assert!(
            values.contains(&"json".to_string()),
            "podnetctl {path}: {values:?}"
        );
    }
}

fn validate_json(dir: &std::path::Path) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
        .arg("-c")
        .arg(dir)
        .args(["--node-name", "worker-1", "validate", "-o", "json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), json)
}

#[test]
fn validate_reports_in_json() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ipvlan-bandwidth");
    let (code, j) = validate_json(std::path::Path::new(dir));
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["valid"], true);
    assert_eq!(j["node"], "worker-1");
    assert_eq!(j["files"].as_array().unwrap().len(), 2, "{j:#}");
    assert!(
        j["masters"].as_array().is_some_and(|m| !m.is_empty()),
        "{j:#}"
    );

    let broken = std::env::temp_dir().join(format!("podnet-json-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("10-node.toml"),
        "version = 1\n[masters.ens192]\nkind = \"macvlan\"\nmtu = \"big\"\n",
    )
    .unwrap();
    let (code, j) = validate_json(&broken);
    std::fs::remove_dir_all(&broken).unwrap();
    assert_eq!(code, 2, "{j:#}");
    assert_eq!(j["valid"], false);
    let errors = j["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{j:#}");
    let e = errors[0].as_str().unwrap();
    assert!(
        e.contains("10-node.toml:4:") && e.contains("masters.ens192.mtu"),
        "{e}"
    );
}
