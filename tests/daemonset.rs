//! `packaging/kubernetes/podnet.yaml` held against podnet's own code (the
//! arguments and probes parse as its command lines, the paths are the ones
//! its binaries use, the ConfigMap's node files load with its loader) and
//! against Kubernetes' schemas (kubernetes-validate, offline).

#[path = "common/prereq.rs"]
mod prereq;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use serde::Deserialize;
use serde_json::Value;

use prereq::{require, tool_path};

/// A fresh temporary folder, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(files: &[(&str, &str)]) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "podnet-daemonset-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        for (name, text) in files {
            std::fs::write(path.join(name), text).unwrap();
        }
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/kubernetes/podnet.yaml"
);

/// Every object of the manifest, as JSON.
fn objects() -> Vec<Value> {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{MANIFEST}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn object(kind: &str) -> Value {
    let mut found: Vec<Value> = objects()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {MANIFEST}");
    found.remove(0)
}

/// The DaemonSet's pod spec.
fn pod() -> Value {
    object("DaemonSet")["spec"]["template"]["spec"].clone()
}

fn container(pod: &Value, list: &str, name: &str) -> Value {
    pod[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
        .clone()
}

fn podnetd() -> Value {
    container(&pod(), "containers", "podnetd")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not a list"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{s} is no string"))
                .to_string()
        })
        .collect()
}

/// Where a path inside `container` lives on the host, through its mounts
/// of hostPath volumes (the longest mount that holds it); None when no
/// hostPath holds it. Also returns the mount.
fn on_host(pod: &Value, container: &Value, path: &str) -> Option<(String, Value)> {
    let mount = container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| {
            let at = m["mountPath"].as_str().unwrap_or_default();
            Path::new(path).starts_with(at)
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or_default().len())?
        .clone();
    let volume = volume(pod, mount["name"].as_str()?);
    let host = volume["hostPath"]["path"].as_str()?;
    let rest = Path::new(path)
        .strip_prefix(mount["mountPath"].as_str()?)
        .ok()?;
    let joined = Path::new(host).join(rest);
    Some((joined.to_str()?.trim_end_matches('/').to_string(), mount))
}

fn volume(pod: &Value, name: &str) -> Value {
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
        .clone()
}

/// The command line a container runs: command, then args.
fn command_line(c: &Value) -> Vec<String> {
    let mut line = strings(&c["command"]);
    if !c["args"].is_null() {
        line.extend(strings(&c["args"]));
    }
    line
}

#[test]
fn the_manifest_is_valid_kubernetes_for_1_30_and_the_newest() {
    let tool = "kubernetes-validate";
    if !require(
        "the_manifest_is_valid_kubernetes_for_1_30_and_the_newest",
        &[tool],
    ) {
        return;
    }
    let validate = |file: &Path, version: Option<&str>| {
        let mut cmd = Command::new(tool_path(tool));
        cmd.arg("--strict");
        if let Some(v) = version {
            cmd.args(["--kubernetes-version", v]);
        }
        let out = cmd.arg(file).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // 1.30: the first with the appArmorProfile field; None: the newest
    // schemas the package bundles.
    for version in [Some("1.30.0"), None] {
        let (ok, text) = validate(Path::new(MANIFEST), version);
        assert!(ok, "{version:?}:\n{text}");
        for resource in [
            "serviceaccount/podnet",
            "configmap/podnet-node-files",
            "daemonset/podnetd",
        ] {
            assert!(
                text.contains(&format!("passed for resource {resource}")),
                "{version:?}: {resource} not checked:\n{text}"
            );
        }
    }
    // And the check sees what it checks: a misspelt key fails it.
    let dir = TempDir::new(&[]);
    let bad = dir.path.join("bad.yaml");
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    assert!(text.contains("mountPropagation: HostToContainer"));
    std::fs::write(
        &bad,
        text.replacen("mountPropagation:", "mountPropogation:", 1),
    )
    .unwrap();
    let (ok, text) = validate(&bad, None);
    assert!(!ok, "a misspelt key passed:\n{text}");
    assert!(text.contains("mountPropogation"), "{text}");
}

#[test]
fn podnetd_is_not_privileged_and_has_only_the_capabilities_it_needs() {
    let pod = pod();
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["hostPID"], false,
        "see the manifest: hostPID is not needed"
    );
    assert!(pod["hostIPC"].is_null() || pod["hostIPC"] == false);
    for list in ["initContainers", "containers"] {
        for c in pod[list].as_array().unwrap() {
            let sc = &c["securityContext"];
            let name = &c["name"];
            assert_eq!(sc["privileged"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
            assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
            assert_eq!(
                c["image"],
                format!("ghcr.io/podnet/podnet:{}", env!("CARGO_PKG_VERSION")),
                "{name}: the image tag is podnet's version"
            );
        }
    }
    let install = container(&pod, "initContainers", "install-cni");
    assert!(install["securityContext"]["capabilities"]["add"].is_null());
    assert_eq!(
        install["securityContext"]["allowPrivilegeEscalation"],
        false
    );

    let sc = &podnetd()["securityContext"];
    let mut add = strings(&sc["capabilities"]["add"]);
    add.sort();
    assert_eq!(add, ["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"]);
    // The unit's set, but CHOWN (there for the socket's group, which the
    // image does not have).
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/podnetd.service"
    ))
    .unwrap();
    let mut bounding: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .filter(|c| c != "CHOWN")
        .collect();
    bounding.sort();
    assert_eq!(
        add, bounding,
        "the DaemonSet and systemd/podnetd.service differ"
    );
    // Kubernetes: with SYS_ADMIN a container can always escalate, and
    // false is refused next to it.
    assert_eq!(sc["allowPrivilegeEscalation"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["runAsUser"], 0);
}

#[test]
fn it_runs_on_every_node_before_anything_else_one_node_at_a_time() {
    let ds = object("DaemonSet");
    let pod = pod();
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()),
        "no toleration of every taint: {tolerations:?}"
    );
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 0);
    let selector = ds["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (k, v) in selector {
        assert_eq!(&ds["spec"]["template"]["metadata"]["labels"][k], v, "{k}");
    }
    let account = object("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);
}

#[test]
fn podnetd_runs_its_own_command_line_on_the_hosts_paths() {
    let pod = pod();
    let c = podnetd();
    let line = command_line(&c);
    let args = podnet::daemon::Args::try_parse_from(&line)
        .unwrap_or_else(|e| panic!("{line:?} is no podnetd command line: {e}"));
    let host = |p: &Path| on_host(&pod, &c, p.to_str().unwrap());

    // The socket is where podnet-cni, run on the host, looks by default.
    let (socket, mount) = host(&args.socket).expect("the socket is on a hostPath");
    assert_eq!(socket, podnet::api::DEFAULT_SOCKET);
    assert!(mount["readOnly"].is_null() || mount["readOnly"] == false);
    let (state, mount) = host(&args.state_dir).expect("the state is on a hostPath");
    assert_eq!(state, podnet::daemon::registry::DEFAULT_STATE_DIR);
    assert!(mount["readOnly"].is_null() || mount["readOnly"] == false);
    // The pins on the host's bpffs, seeing mounts the host makes later.
    let (pins, mount) = host(&args.bpf_dir).expect("the pins are on a hostPath");
    assert_eq!(pins, podnet::shaping::DEFAULT_PIN_DIR);
    assert_eq!(mount["mountPath"], "/sys/fs/bpf");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    // A pod's namespace path from the runtime means the same file inside:
    // a namespace mounted after podnetd started must show up there too.
    let (ns, mount) = on_host(&pod, &c, "/run/netns/cni-1234").expect("/run/netns");
    assert_eq!(ns, "/run/netns/cni-1234");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    assert_eq!(mount["readOnly"], true);
    let (modules, mount) = on_host(&pod, &c, "/lib/modules/6.12.0/modules.dep").unwrap();
    assert_eq!(modules, "/lib/modules/6.12.0/modules.dep");
    assert_eq!(mount["readOnly"], true);

    // The node files: the ConfigMap, read-only, at --config-dir.
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == args.config_dir.to_str().unwrap())
        .expect("a mount at --config-dir")
        .clone();
    assert_eq!(mount["readOnly"], true);
    let files = object("ConfigMap");
    assert_eq!(
        volume(&pod, mount["name"].as_str().unwrap())["configMap"]["name"],
        files["metadata"]["name"]
    );
    assert_eq!(
        files["metadata"]["namespace"],
        object("DaemonSet")["metadata"]["namespace"]
    );

    // No host path beyond these.
    let mut hostpaths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    hostpaths.sort();
    assert_eq!(
        hostpaths,
        [
            "/etc/modprobe.d",
            "/lib/modules",
            "/opt/cni/bin",
            "/run/netns",
            "/run/podnet",
            "/sys/fs/bpf",
            "/var/lib/kubelet/device-plugins",
            "/var/lib/podnet"
        ]
    );
}

#[test]
fn the_node_name_comes_from_the_downward_api_under_the_name_the_code_reads() {
    let env_of = |cmd: clap::Command| {
        cmd.get_arguments()
            .find(|a| a.get_id() == "node_name")
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .expect("a --node-name with an environment variable")
    };
    let name = env_of(podnet::daemon::Args::command());
    assert_eq!(name, env_of(podnet::cli::Cli::command()));
    let c = podnetd();
    let var = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .unwrap_or_else(|| panic!("podnetd's env has no {name}"))
        .clone();
    assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    // No --node-name overrides it (podnetctl_validate_says_which_files_a_node_skips
    // runs the variable through podnetctl).
    assert!(!command_line(&c)
        .iter()
        .any(|a| a.starts_with("--node-name")));
}

#[test]
fn the_probes_are_podnetctl_command_lines_asking_the_daemon() {
    use podnet::cli::{Cli, Command as Verb};
    let c = podnetd();
    let daemon = podnet::daemon::Args::try_parse_from(command_line(&c)).unwrap();
    let probe = |kind: &str| {
        let line = strings(&c[kind]["exec"]["command"]);
        assert_eq!(line[0], "/usr/bin/podnetctl", "{kind}");
        let cli = Cli::try_parse_from(&line)
            .unwrap_or_else(|e| panic!("{kind} {line:?} is no podnetctl command line: {e}"));
        assert_eq!(
            cli.socket.as_deref(),
            Some(daemon.socket.as_path()),
            "{kind}"
        );
        assert_eq!(cli.config_dir, daemon.config_dir, "{kind}");
        (line, cli)
    };
    let (_, ready) = probe("readinessProbe");
    assert!(
        matches!(ready.command, Verb::Status(_)),
        "readiness: {:?}",
        ready.command
    );
    for kind in ["livenessProbe", "startupProbe"] {
        let (line, alive) = probe(kind);
        assert!(matches!(alive.command, Verb::Endpoints(_)), "{kind}");
        // With no daemon answering, the probe fails (rather than answering
        // from the host, as `status` would).
        let dir = TempDir::new(&[]);
        let gone = dir.path.join("podnet.sock");
        let mut args: Vec<String> = line[1..].to_vec();
        let at = args.iter().position(|a| a == "--socket").unwrap();
        args[at + 1] = gone.to_str().unwrap().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains("podnetd is not running"),
            "{kind}: {stderr}"
        );
    }
}

/// The ConfigMap's files, laid out as the kubelet mounts a ConfigMap: the
/// names are symlinks into a hidden, timestamped directory via `..data`.
fn mounted_configmap() -> TempDir {
    let files = object("ConfigMap");
    let dir = TempDir::new(&[]);
    let stamp = dir.path.join("..2025_01_01_00_00_00.000000001");
    std::fs::create_dir(&stamp).unwrap();
    for (name, text) in files["data"].as_object().unwrap() {
        std::fs::write(stamp.join(name), text.as_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.path.join("..data")).unwrap();
    dir
}

fn skipped(loaded: &podnet::config::Loaded) -> Vec<String> {
    loaded
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_configmaps_files_load_on_matching_and_other_nodes() {
    let dir = mounted_configmap();
    let load = |node: &str| {
        podnet::config::load_dir_for(&dir.path, Some(node))
            .unwrap_or_else(|d| panic!("on {node}:\n{}", d.render()))
    };
    let masters = |l: &podnet::config::Loaded| l.config.masters.keys().cloned().collect::<Vec<_>>();

    let gpu = load("gpu-3");
    assert_eq!(masters(&gpu), ["ens192", "ens2f0"]);
    assert!(gpu.config.tiers.contains_key("gpu"));
    assert_eq!(skipped(&gpu), ["90-worker-7.toml"]);

    let seven = load("worker-7");
    assert_eq!(masters(&seven), ["ens192"]);
    assert!(!seven.config.tiers.contains_key("gpu"));
    let shim = seven.config.masters["ens192"].shim.as_ref().unwrap();
    assert_eq!(shim.name, "pn-shim0");
    assert_eq!(shim.addresses, ["172.51.0.7/32".parse().unwrap()]);
    assert_eq!(skipped(&seven), ["50-gpu.toml"]);

    let other = load("worker-3");
    assert_eq!(masters(&other), ["ens192"]);
    assert!(other.config.masters["ens192"]
        .shim
        .as_ref()
        .unwrap()
        .addresses
        .is_empty());
    assert_eq!(skipped(&other), ["50-gpu.toml", "90-worker-7.toml"]);
    assert!(other.skipped[0]
        .reason
        .contains("does not match node `worker-3`"));
    // Only the files merged are the load's: the ..data copies never count.
    assert_eq!(other.sources.len(), 1);
}

#[test]
fn podnetctl_validate_says_which_files_a_node_skips() {
    let dir = mounted_configmap();
    let validate = |node_env: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
            .arg("-c")
            .arg(&dir.path)
            .args(extra)
            .arg("validate")
            .env("PODNET_NODE_NAME", node_env)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.path.display();
    let (code, stdout, stderr) = validate("worker-3", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{d}: 1 file(s) valid on node worker-3: 1 master(s), 0 SR-IOV PF(s), 2 tier(s)\n\
             skipped {d}/50-gpu.toml: [match] nodes = [\"gpu-*\"] does not match node `worker-3`\n\
             skipped {d}/90-worker-7.toml: [match] nodes = [\"worker-7\"] does not match node `worker-3`\n"
        )
    );
    // --node-name wins over the environment.
    let (code, stdout, stderr) = validate("worker-3", &["--node-name", "gpu-1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{d}: 2 file(s) valid on node gpu-1: 2 master(s), 0 SR-IOV PF(s), 3 tier(s)\n"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("50-gpu.toml"), "{stdout}");

    // A bad glob is an error with its file, line and key, on every node.
    std::fs::write(
        dir.path.join("95-bad.toml"),
        "[match]\nnodes = [\"gpu-[12]\"]\n",
    )
    .unwrap();
    let (code, _, stderr) = validate("worker-3", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("match.nodes[0]: invalid node glob \"gpu-[12]\""),
        "{stderr}"
    );
    assert!(stderr.contains("95-bad.toml:2:10"), "{stderr}");
}

#[test]
fn the_install_step_puts_podnet_cni_in_the_hosts_cni_bin_dir_whole() {
    let pod = pod();
    let init = container(&pod, "initContainers", "install-cni");
    let line = strings(&init["command"]);
    assert!(init["args"].is_null());
    // sh -ec SCRIPT $0 $1=the image's plugin $2=the host's bin dir.
    assert_eq!(line[..2], ["/bin/sh", "-ec"]);
    assert_eq!(line.len(), 6, "{line:?}");
    assert_eq!(line[4], "/usr/bin/podnet-cni");
    let (bin, mount) = on_host(&pod, &init, &line[5]).expect("the bin dir is a hostPath");
    assert_eq!(bin, "/opt/cni/bin");
    assert!(mount["readOnly"].is_null() || mount["readOnly"] == false);

    // The script itself, run here: a fresh install and an upgrade over a
    // plugin already there leave the new plugin whole and nothing else.
    let dir = TempDir::new(&[("podnet-cni", "old plugin")]);
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_podnet-cni"));
    for _ in 0..2 {
        let out = Command::new(&line[0])
            .args([&line[1], &line[2], &line[3]])
            .arg(&plugin)
            .arg(&dir.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let installed = dir.path.join("podnet-cni");
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(&plugin).unwrap()
        );
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "not executable: {mode:o}");
        let names: Vec<String> = std::fs::read_dir(&dir.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["podnet-cni"]);
    }
}
