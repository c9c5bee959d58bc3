//! Every folder under `examples/` is a config directory an operator can point
//! `podnetctl -c` at: it loads and validates, each node file starts with the
//! `#:schema` line editors use, and each declares the master `ens192` that
//! the sandbox provides.

use std::path::{Path, PathBuf};

const SCHEMA_LINE: &str = "#:schema ../../schemas/podnet.file.schema.json";

/// The example folders, sorted.
fn example_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The node files of one folder, as `load_dir` picks them.
fn node_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}

fn load(dir: &Path) -> podnet::config::Loaded {
    podnet::config::load_dir(dir)
        .unwrap_or_else(|d| panic!("example {} does not load:\n{}", dir.display(), d.render()))
}

#[test]
fn the_documented_examples_exist() {
    let names: Vec<String> = example_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "calico-ipip-off",
        "ipvlan-bandwidth",
        "macvlan-sriov",
        "rdma-hca",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "examples/{wanted} is missing; found {names:?}"
        );
    }
}

#[test]
fn every_example_loads_and_validates() {
    for dir in example_dirs() {
        assert!(
            !node_files(&dir).is_empty(),
            "{} has no *.toml node files",
            dir.display()
        );
        load(&dir);
    }
}

#[test]
fn every_node_file_starts_with_the_schema_line() {
    for dir in example_dirs() {
        for file in node_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().next().unwrap_or("");
            assert_eq!(
                first,
                SCHEMA_LINE,
                "first line of {} must be the #:schema line",
                file.display()
            );
        }
    }
}

#[test]
fn every_example_declares_master_ens192() {
    for dir in example_dirs() {
        let loaded = load(&dir);
        assert!(
            loaded.config.masters.contains_key("ens192"),
            "{} declares no [masters.ens192]; the sandbox's stand-in NIC is ens192",
            dir.display()
        );
    }
}

#[test]
fn the_bandwidth_example_merges_its_two_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ipvlan-bandwidth");
    assert!(node_files(&dir).len() >= 2, "it shows a merge of files");
    let loaded = load(&dir);
    let c = &loaded.config;
    let master = &c.masters["ens192"];
    assert_eq!(master.shaping, Some(true));
    assert_eq!(master.mtu, Some(1500));
    // `shaping` comes from the later file, `kind` from the earlier one.
    let shaping = loaded.locate("/masters/ens192/shaping").unwrap();
    let kind = loaded.locate("/masters/ens192/kind").unwrap();
    assert_ne!(shaping.file, kind.file);
    assert!(shaping.file > kind.file, "later file wins");
    // The pod annotation `kubernetes.io/egress-bandwidth: 100M` is 100·10^6 bit/s.
    assert!(c
        .tiers
        .values()
        .any(|t| t.egress.map(|r| r.bits_per_second()) == Some(100_000_000)));
}
