//! Compiles the eBPF programs in `bpf/` with `clang -target bpf` into
//! OUT_DIR (embedded by `src/shaping/program.rs`), and reads the layout of
//! the map structs the programs share with podnet from `bpf/abi/layout.c`,
//! compiled for the same target, into `OUT_DIR/bpf_layout.rs` (checked
//! against the Rust mirrors by a unit test in `src/shaping/abi.rs`).
//!
//! `CLANG=/path/to/clang` picks the compiler; otherwise the first of
//! `clang`, `clang-19` ... `clang-14` on PATH.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The flags every program is built with. `-mcpu=v3`: the datapath uses
/// atomic fetch-add and compare-and-exchange (Linux >= 5.12). `-g`: aya
/// reads the BTF that describes the maps. `-O2`: the verifier needs the
/// helpers inlined and the dead paths gone.
const BPF_CFLAGS: &[&str] = &[
    "-target",
    "bpf",
    "-mcpu=v3",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fno-stack-protector",
];

/// The kubelet device plugin API (`proto/deviceplugin-v1beta1.proto`),
/// compiled by protox (no protoc on the build machine) into tonic's
/// server and client code in OUT_DIR (`src/deviceplugin/mod.rs` includes
/// it).
fn device_plugin_api(root: &Path) {
    let proto = root.join("proto/deviceplugin-v1beta1.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let files = protox::compile([&proto], [root.join("proto")])
        .unwrap_or_else(|e| panic!("{}: {e}", proto.display()));
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("generating the device plugin API: {e}"));
}

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let bpf = root.join("bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf");

    println!("cargo:rustc-env=PODNET_COMMIT={}", commit(&root));
    device_plugin_api(&root);

    let clang = find_clang();
    let include = bpf.join("include");

    let mut sources: Vec<PathBuf> = fs::read_dir(&bpf)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", bpf.display()))
        .map(|e| e.expect("reading bpf/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src.file_stem().expect("file name").to_string_lossy();
        let obj = out.join(format!("{stem}.o"));
        run(Command::new(&clang)
            .args(BPF_CFLAGS)
            .arg("-I")
            .arg(&include)
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&obj));
    }
    for header in fs::read_dir(&include).expect("bpf/include").flatten() {
        println!("cargo:rerun-if-changed={}", header.path().display());
    }

    let layout_c = bpf.join("abi/layout.c");
    println!("cargo:rerun-if-changed={}", layout_c.display());
    let asm = out.join("layout.s");
    run(Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-S"])
        .arg("-I")
        .arg(&include)
        .arg(&layout_c)
        .arg("-o")
        .arg(&asm));
    let asm = fs::read_to_string(&asm).expect("reading layout.s");
    fs::write(out.join("bpf_layout.rs"), layout_rs(&asm)).expect("writing bpf_layout.rs");
}

/// The compiler, or a build failure that says how to get one.
fn find_clang() -> PathBuf {
    if let Some(c) = env::var_os("CLANG") {
        let c = PathBuf::from(c);
        let found = if c.components().count() > 1 {
            is_executable(&c).then_some(c.clone())
        } else {
            which(&c.to_string_lossy())
        };
        return found.unwrap_or_else(|| {
            panic!(
                "\n\npodnet: CLANG={} is not an executable clang. Unset it, or install clang: \
                 apt-get install clang llvm\n\n",
                c.display()
            )
        });
    }
    let names = ["clang"]
        .into_iter()
        .map(String::from)
        .chain((14..=19).rev().map(|v| format!("clang-{v}")));
    for name in names {
        if let Some(p) = which(&name) {
            return p;
        }
    }
    panic!(
        "\n\npodnet: clang not found.\n\
         The eBPF programs in bpf/ are compiled with `clang -target bpf` (clang >= 14).\n\
         Install it with:   apt-get install clang llvm\n\
         or point CLANG at a clang binary: CLANG=/usr/lib/llvm-16/bin/clang cargo build\n\n"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("podnet: cannot run {shown}: {e}"));
    assert!(status.success(), "podnet: {shown} failed ({status})");
}

/// Turns clang's assembly for layout.c into Rust: each
/// `layout_<name>:` label is followed by the `.quad <value>` it holds.
fn layout_rs(asm: &str) -> String {
    let mut entries = Vec::new();
    let mut lines = asm.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_suffix(':')
            .and_then(|l| l.strip_prefix("layout_"))
        else {
            continue;
        };
        let value = lines
            .next()
            .and_then(|l| l.strip_prefix(".quad"))
            .map(|v| v.split('#').next().unwrap_or("").trim())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("layout.s: no .quad after layout_{name}"));
        entries.push((name.replace("__", "."), value));
    }
    assert!(!entries.is_empty(), "layout.s: no layout_ constants found");
    let mut s = String::from(
        "// Generated by build.rs from bpf/abi/layout.c compiled for the BPF target.\n\
         /// (`struct.field` or `struct.size` or `const.NAME`, value)\n\
         pub const BPF_LAYOUT: &[(&str, u64)] = &[\n",
    );
    for (name, value) in entries {
        writeln!(s, "    ({name:?}, {value}),").expect("write to String");
    }
    s.push_str("];\n");
    s
}

/// The commit being built, for `--version`: `PODNET_COMMIT` (a package
/// built from a tarball says it), else git's short hash of HEAD, else
/// "unknown". Rebuilt when HEAD moves.
fn commit(root: &std::path::Path) -> String {
    println!("cargo:rerun-if-env-changed=PODNET_COMMIT");
    if let Ok(c) = env::var("PODNET_COMMIT") {
        return c;
    }
    let git = root.join(".git");
    for watched in ["HEAD", "refs/heads", "packed-refs"] {
        if git.join(watched).exists() {
            println!("cargo:rerun-if-changed={}", git.join(watched).display());
        }
    }
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
