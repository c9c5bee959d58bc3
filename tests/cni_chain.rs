//! Real peers: Debian's containernetworking-plugins (macvlan + host-local,
//! and bandwidth) chained with podnet-cni, run the way libcni runs a
//! conflist: each plugin in order with the previous result as
//! `prevResult`, `runtimeConfig` only for the capabilities a plugin
//! declares, DEL in reverse. Needs root and /usr/lib/cni (scripts/test
//! installs `containernetworking-plugins`); macvlan exists on the
//! development kernel, ipvlan is the VM lab's.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{require, within, ConfigDir, Daemon, Netns, PROMPTLY, ROOT};
use serde_json::{json, Value};

const CNI_DIR: &str = "/usr/lib/cni";

const NODE: &str = r#"version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
# The development kernel has no sch_fq: EDT shaping is the VM lab's.
shaping = false
shim = { name = "pn-shim0", addresses = ["172.51.0.230/32"], routes = ["172.51.0.0/24"] }
[tiers.silver]
egress = "100M"
ingress = "100M"
[shaping]
default_tier = "silver"
max_rate = "1G"
"#;

fn plugin_path(kind: &str) -> PathBuf {
    if kind == "podnet-cni" {
        PathBuf::from(env!("CARGO_BIN_EXE_podnet-cni"))
    } else {
        Path::new(CNI_DIR).join(kind)
    }
}

/// Runs one plugin as libcni does; returns (exit status, stdout as JSON).
fn exec(
    command: &str,
    plugin: &Value,
    list: &Value,
    prev: Option<&Value>,
    runtime: &Value,
    netns: &str,
    id: &str,
) -> (i32, Value) {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    // libcni passes runtimeConfig keys only for the capabilities declared.
    let mut rc = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (cap, on) in caps {
            if on == true && runtime.get(cap).is_some() {
                rc.insert(cap.clone(), runtime[cap].clone());
            }
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    let kind = plugin["type"].as_str().unwrap();
    let mut child = Command::new(plugin_path(kind))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", format!("{CNI_DIR}:{}", plugin_path("podnet-cni").parent().unwrap().display()))
        .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id};K8S_POD_INFRA_CONTAINER_ID={id}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !out.status.success() {
        eprintln!(
            "{kind} {command}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.code().unwrap_or(-1), v)
}

/// ADD through the whole list; the final result, or the failing plugin's error.
fn add(list: &Value, runtime: &Value, netns: &str, id: &str) -> Result<Value, (String, Value)> {
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().unwrap() {
        let (code, out) = exec("ADD", plugin, list, prev.as_ref(), runtime, netns, id);
        if code != 0 {
            return Err((plugin["type"].as_str().unwrap().to_string(), out));
        }
        prev = Some(out);
    }
    Ok(prev.unwrap())
}

fn del(list: &Value, result: &Value, runtime: &Value, netns: &str, id: &str) {
    for plugin in list["plugins"].as_array().unwrap().iter().rev() {
        let (code, out) = exec("DEL", plugin, list, Some(result), runtime, netns, id);
        assert_eq!(code, 0, "{} DEL: {out}", plugin["type"]);
    }
}

fn conflist(second: Value, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {
                "type": "macvlan",
                "master": "ens192",
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "172.51.0.0/24", "rangeStart": "172.51.0.10", "rangeEnd": "172.51.0.100"}]],
                    "dataDir": ipam_dir
                }
            },
            second
        ]
    })
}

#[test]
fn macvlan_pods_chained_with_podnet_cni_are_registered_with_their_limits() {
    if !require(
        "macvlan_pods_chained_with_podnet_cni_are_registered_with_their_limits",
        &[
            ROOT,
            "ip",
            "ping",
            "/usr/lib/cni/macvlan",
            "/usr/lib/cni/host-local",
        ],
    ) {
        return;
    }
    let node = Netns::new("chain");
    node.veth("ens192");
    node.ip("link set ens192-p up");
    let cfg = ConfigDir::new(&[("10-node.toml", NODE)]);
    let state = cfg.path.with_extension("state");
    let d = Daemon::start(&node, &cfg.path, &state);
    let client = d.client();
    within(PROMPTLY, "converged", || client.status().unwrap().converged);

    // The plugins run in the node's namespace, as kubelet's runtime does.
    let list = conflist(
        json!({"type": "podnet-cni", "socket": d.socket(), "master": "ens192", "capabilities": {"bandwidth": true}}),
        &state.join("ipam"),
    );
    // kubelet: kubernetes.io/egress-bandwidth: 200M, ingress-bandwidth: 5G.
    let runtime = json!({"bandwidth": {"egressRate": 200_000_000u64, "egressBurst": 2147483647u64,
                                       "ingressRate": 5_000_000_000u64, "ingressBurst": 2147483647u64}});
    let pod = Netns::new("chainpod");
    let id = "3f1c0ffee0ddba11";
    let result = in_netns(&node.name, || add(&list, &runtime, &pod.name, id))
        .unwrap_or_else(|(p, e)| panic!("{p}: {e}"));

    // The pod got its macvlan and address from the real plugins...
    let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
    let pod_links = pod.ip_json("-d link show eth0");
    assert_eq!(pod_links[0]["linkinfo"]["info_kind"], "macvlan");
    // ...and podnetd knows it, with the policy applied to its rates.
    let record = client
        .endpoint(id, "eth0")
        .unwrap()
        .expect("endpoint registered");
    assert_eq!(record.endpoint.ips[0].to_string(), ip);
    assert_eq!(
        record.endpoint.netns.as_deref(),
        Some(format!("/run/netns/{}", pod.name).as_str())
    );
    let limits = record.limits.unwrap();
    assert_eq!(
        (limits.egress, limits.ingress),
        (Some(200_000_000), Some(1_000_000_000)),
        "capped by max_rate"
    );
    // The host reaches the pod through podnet's shim.
    let ping = Command::new("ip")
        .args(["netns", "exec", &node.name, "ping", "-c", "1", "-W", "2"])
        .arg(ip.split('/').next().unwrap())
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, id));
    assert!(
        client.endpoint(id, "eth0").unwrap().is_none(),
        "DEL left the endpoint"
    );
    in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, id));
}

#[test]
fn debians_bandwidth_plugin_refuses_a_macvlan_pod() {
    if !require(
        "debians_bandwidth_plugin_refuses_a_macvlan_pod",
        &[
            ROOT,
            "ip",
            "/usr/lib/cni/macvlan",
            "/usr/lib/cni/host-local",
            "/usr/lib/cni/bandwidth",
        ],
    ) {
        return;
    }
    // Why podnet exists: the reference bandwidth plugin needs a veth peer.
    let node = Netns::new("bwpeer");
    node.veth("ens192");
    let state = std::env::temp_dir().join(format!("podnet-bwpeer-{}", std::process::id()));
    let list = conflist(
        json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        &state.join("ipam"),
    );
    let runtime =
        json!({"bandwidth": {"egressRate": 100_000_000u64, "egressBurst": 2147483647u64}});
    let pod = Netns::new("bwpeerpod");
    let err = in_netns(&node.name, || add(&list, &runtime, &pod.name, "b0b")).unwrap_err();
    assert_eq!(err.0, "bandwidth");
    let msg = err.1["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("veth"), "{}", err.1);
    let _ = std::fs::remove_dir_all(&state);
}

/// Runs `f` on a thread inside the named network namespace (plugins inherit it).
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}
