//! Taplo, the engine of Even Better TOML, checks a node file as an editor
//! does: against the per-file schema its `#:schema` line names. Every example
//! passes, the drop-in `50-bandwidth.toml` included, and a broken file is
//! flagged at the line of what is wrong in it.

#[path = "common/prereq.rs"]
mod prereq;

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One problem taplo reports: its message and where.
#[derive(Debug)]
struct Report {
    message: String,
    file: String,
    line: usize,
}

/// Runs `taplo check` on `files` (with `schema`, if given, instead of their
/// `#:schema` lines): whether it passed, and what it reported.
fn taplo_check(files: &[PathBuf], schema: Option<&Path>) -> (bool, Vec<Report>, String) {
    let mut cmd = Command::new(prereq::tool_path("taplo"));
    cmd.args(["check", "--colors", "never", "--no-auto-config"]);
    if let Some(schema) = schema {
        cmd.arg("--schema")
            .arg(format!("file://{}", schema.display()));
    }
    // Away from any taplo configuration of the checkout.
    let out = cmd
        .args(files)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("taplo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // error: MESSAGE
    //   ┌─ FILE:LINE:COLUMN
    let mut reports = Vec::new();
    let mut message = None;
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("error: ") {
            message = Some(m.to_string());
        } else if let Some(at) = line.trim_start().strip_prefix("┌─ ") {
            let mut parts = at.rsplitn(3, ':');
            let (_col, line, file) = (parts.next(), parts.next(), parts.next());
            if let (Some(message), Some(line), Some(file)) = (message.take(), line, file) {
                reports.push(Report {
                    message,
                    file: file.to_string(),
                    line: line.parse().expect("a line number"),
                });
            }
        }
    }
    (out.status.success(), reports, text)
}

fn file_schema() -> PathBuf {
    Path::new(ROOT).join("schemas/podnet.file.schema.json")
}

fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(Path::new(ROOT).join("examples")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "toml") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("podnet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_example_passes_taplo_with_the_schema_its_line_names() {
    if !prereq::require("every_example_passes_taplo", &["taplo"]) {
        return;
    }
    let files = example_files();
    assert!(files.len() >= 5, "examples: {files:?}");
    // Their `#:schema ../../schemas/podnet.file.schema.json` lines: taplo
    // fails a file whose schema it cannot load, so this finds the schema.
    let (ok, reports, text) = taplo_check(&files, None);
    assert!(
        ok && reports.is_empty(),
        "taplo refuses an example:\n{text}"
    );
    let (ok, reports, text) = taplo_check(&files, Some(&file_schema()));
    assert!(
        ok && reports.is_empty(),
        "taplo refuses an example:\n{text}"
    );
}

#[test]
fn the_merged_schema_would_refuse_the_drop_in() {
    if !prereq::require("the_merged_schema_would_refuse_the_drop_in", &["taplo"]) {
        return;
    }
    // Why a file needs its own schema: 50-bandwidth.toml sets only
    // `shaping` of [masters.ens192]; `kind` and `version` are 10-node.toml's.
    let drop_in = Path::new(ROOT).join("examples/ipvlan-bandwidth/50-bandwidth.toml");
    let merged = Path::new(ROOT).join("schemas/podnet.schema.json");
    let (ok, reports, text) = taplo_check(&[drop_in], Some(&merged));
    assert!(!ok, "the merged schema takes the drop-in:\n{text}");
    for wanted in [
        "\"kind\" is a required property",
        "\"version\" is a required property",
    ] {
        assert!(
            reports.iter().any(|r| r.message == wanted),
            "no {wanted:?}:\n{text}"
        );
    }
}

/// A broken node file: its body (after the `#:schema` line, which is line
/// 1), what taplo says, the line it must say it at, and the lines its
/// reports may span.
struct Broken {
    name: &'static str,
    body: &'static str,
    message: &'static str,
    line: usize,
    span: std::ops::RangeInclusive<usize>,
}

const fn at(name: &'static str, body: &'static str, message: &'static str, line: usize) -> Broken {
    Broken {
        name,
        body,
        message,
        line,
        span: line..=line,
    }
}

const BROKEN: [Broken; 10] = [
    // Taplo reports an unknown key at each key of its table, the unknown
    // one included.
    Broken {
        name: "unknown-key",
        body: "version = 1\n\n[tiers.gold]\negress = \"1G\"\nshaped = true\n",
        message: "Additional properties are not allowed ('shaped' was unexpected)",
        line: 6,
        span: 4..=6,
    },
    at(
        "bad-mode",
        "[masters.ens192]\nkind = \"macvlan\"\nmode = \"l4\"\n",
        "\"l4\" is not one of",
        4,
    ),
    at(
        "rate-in-bytes",
        "[tiers.limited]\negress = \"100Mbps\"\ningress = \"100M\"\n",
        "\"100Mbps\" does not match",
        3,
    ),
    at(
        "long-horizon",
        "[shaping]\nbackend = \"edt\"\nhorizon = \"2h\"\n",
        "\"2h\" does not match",
        4,
    ),
    at(
        "short-delay",
        "[tiers.t]\ningress = 1000\nce_threshold = \"5us\"\n",
        "\"5us\" does not match",
        4,
    ),
    at(
        "ifname-colon",
        "[masters.ens192.shim]\nname = \"pn:shim\"\n",
        "\"pn:shim\" does not match",
        3,
    ),
    at(
        "ip-leading-zero",
        "[[ipip.peers]]\nnode = \"010.0.19.91\"\npod_cidr = \"192.168.118.64/26\"\n",
        "\"010.0.19.91\" does not match",
        3,
    ),
    at(
        "prefix-too-long",
        "[masters.ens192]\nshim = { addresses = [\"172.51.0.230/33\"] }\n",
        "\"172.51.0.230/33\" does not match",
        3,
    ),
    at(
        "mac-five-pairs",
        "[sriov.ens2f0.vfs.0]\nmac = \"02:00:00:00:00\"\n",
        "\"02:00:00:00:00\" does not match",
        3,
    ),
    // An entry of an array of tables is written whole in one file: a later
    // file replaces the array, so its keys stay required.
    Broken {
        name: "peer-without-range",
        body: "[ipip]\nmode = \"always\"\n\n[[ipip.peers]]\nnode = \"10.0.19.91\"\n",
        message: "\"pod_cidr\" is a required property",
        line: 5,
        span: 5..=6,
    },
];

#[test]
fn taplo_flags_broken_files_at_their_line() {
    if !prereq::require("taplo_flags_broken_files_at_their_line", &["taplo"]) {
        return;
    }
    let dir = TempDir::new("taplo");
    let schema_line = format!("#:schema {}\n", file_schema().display());
    for case in &BROKEN {
        let path = dir.0.join(format!("{}.toml", case.name));
        std::fs::write(&path, format!("{schema_line}{}", case.body)).unwrap();
        let (ok, reports, text) = taplo_check(std::slice::from_ref(&path), None);
        assert!(!ok, "{}: taplo takes it:\n{text}", case.name);
        assert!(
            !reports.is_empty(),
            "{}: nothing reported:\n{text}",
            case.name
        );
        for r in &reports {
            assert_eq!(r.file, path.display().to_string(), "{}: {r:?}", case.name);
            assert!(
                r.message.contains(case.message),
                "{}: reports {r:?}, not {:?}:\n{text}",
                case.name,
                case.message
            );
            assert!(
                case.span.contains(&r.line),
                "{}: reported at line {}, outside {:?}:\n{text}",
                case.name,
                r.line,
                case.span
            );
        }
        assert!(
            reports.iter().any(|r| r.line == case.line),
            "{}: nothing reported at line {}:\n{text}",
            case.name,
            case.line
        );
    }
}

#[test]
fn taplo_takes_a_drop_in_with_every_format() {
    if !prereq::require("taplo_takes_a_drop_in_with_every_format", &["taplo"]) {
        return;
    }
    // No `version`, no `kind`, an [ipip] without `mode`: all another
    // file's to give. Each custom format's pattern is exercised.
    let body = r#"
[masters.ens192]
shim = { name = "pn-shim0", addresses = ["172.51.0.230/32", "fd00::1/64"], routes = ["172.51.0.0/24"] }

[tiers.t]
egress = "1.5G"
ingress = 1000000
burst = "64Ki"
horizon = "500ms"
ce_threshold = "off"

[shaping]
max_rate = "10Gbit"
ce_threshold = "500us"

[ipip]
device = "tunl0"

[[ipip.peers]]
node = "::ffff:10.0.19.91"
pod_cidr = "192.168.118.64/26"

[sriov.ens2f0.vfs.0]
mac = "02:00:00:00:00:10"
"#;
    let dir = TempDir::new("taplo-formats");
    let path = dir.0.join("50-formats.toml");
    std::fs::write(
        &path,
        format!("#:schema {}\n{body}", file_schema().display()),
    )
    .unwrap();
    let (ok, reports, text) = taplo_check(&[path], None);
    assert!(ok && reports.is_empty(), "taplo refuses it:\n{text}");
}
