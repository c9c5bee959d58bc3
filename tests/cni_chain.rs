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
use std::time::Duration;

use common::{require, within, ConfigDir, Daemon, Netns, PROMPTLY, ROOT};
use serde_json::{json, Value};

const CNI_DIR: &str = "/usr/lib/cni";

const NODE: &str = r#"version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
# Registration only: the HTB rate test below shapes (EDT is the VM lab's).
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

/// CHECK through the whole list, as libcni runs it (ADD's final result as
/// every plugin's prevResult); the failing plugin's error, if one fails.
fn check(
    list: &Value,
    result: &Value,
    runtime: &Value,
    netns: &str,
    id: &str,
) -> Result<(), (String, i32, Value)> {
    for plugin in list["plugins"].as_array().unwrap() {
        let (code, out) = exec("CHECK", plugin, list, Some(result), runtime, netns, id);
        if code != 0 {
            return Err((plugin["type"].as_str().unwrap().to_string(), code, out));
        }
    }
    Ok(())
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

/// The HTB backend's done-when, on this machine's kernel (no sch_fq):
/// `backend = "auto"` picks HTB, and real macvlan pods (Debian's macvlan +
/// host-local chained with podnet-cni, registered with podnetd) hold their
/// limits within ±5%, measured by the receiver in a peer namespace behind
/// the master. Rates are bytes on the wire as tc counts them (a 1514-byte
/// frame per 1448 payload bytes), steady state after the first second.
#[test]
fn htb_holds_macvlan_pods_limits_on_a_kernel_without_fq() {
    if !require(
        "htb_holds_macvlan_pods_limits_on_a_kernel_without_fq",
        &[
            ROOT,
            "ip",
            "tc",
            "iperf3",
            "/usr/lib/cni/macvlan",
            "/usr/lib/cni/host-local",
        ],
    ) {
        return;
    }
    let fq = podnet::shaping::observe::features().sch_fq;
    let (node, peer) = node_and_network("htbrate", "htbpeer");
    let cfg = macvlan_node("100M");
    let state = cfg.path.with_extension("state");
    let d = Daemon::start(&node, &cfg.path, &state);
    let client = d.client();
    within(PROMPTLY, "converged", || client.status().unwrap().converged);
    let root = tc_json(&node, "qdisc show dev ens192");
    let want_root = if fq { "fq" } else { "htb" };
    assert_eq!(root[0]["kind"], want_root, "auto's root here: {root}");
    let status = client.status().unwrap();
    assert_eq!(
        status
            .shaping
            .iter()
            .map(|s| s.backend.as_str())
            .collect::<Vec<_>>(),
        [if fq { "edt" } else { "htb" }],
        "{:?}",
        status.shaping
    );
    if fq {
        // A kernel with fq shapes by EDT: the VM lab measures that.
        eprintln!("this kernel has sch_fq: auto picks EDT, the VM lab's rates cover it");
        return;
    }
    let list = conflist(
        json!({"type": "podnet-cni", "socket": d.socket(), "master": "ens192", "capabilities": {"bandwidth": true}}),
        &state.join("ipam"),
    );
    let mut report = Vec::new();
    for (n, limit) in [10_000_000u64, 100_000_000].into_iter().enumerate() {
        let runtime = json!({"bandwidth": {"egressRate": limit, "egressBurst": 2147483647u64}});
        let pod = Netns::new("htbpod");
        let id = format!("htb{n}");
        let result = in_netns(&node.name, || add(&list, &runtime, &pod.name, &id))
            .unwrap_or_else(|(p, e)| panic!("{p}: {e}"));
        let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
        let ip = ip.split('/').next().unwrap().to_string();
        // The pass the ADD asked for adds the pod's class and filter.
        within(PROMPTLY, "the pod's HTB class", || {
            let e = client.endpoint(&id, "eth0").unwrap().unwrap();
            e.enforcement.is_some_and(|e| e.enforced)
        });
        // tc prints classes as text only (no -j): "class htb 706e:1 ... rate 10Mbit".
        let mbit = format!("rate {}Mbit ", limit / 1_000_000);
        let handle = classes(&node)
            .into_iter()
            .find(|(_, line, _)| line.contains(&mbit))
            .unwrap_or_else(|| panic!("no class at {mbit}: {:?}", classes(&node)))
            .0;
        // Idle (the pod has sent nothing): once podnetd's sampler has two
        // samples of its class, /v1/endpoints says 0 bit/s.
        within(
            Duration::from_secs(10),
            "two samples of the idle pod",
            || egress_traffic(&client, &id).is_some_and(|t| t.rate_bps.is_some()),
        );
        let idle = egress_traffic(&client, &id).unwrap();
        assert_eq!(
            (idle.backend.as_str(), idle.limit_bps, idle.rate_bps),
            ("htb", limit, Some(0)),
            "{idle:?}"
        );
        assert_eq!(idle.overlimits, Some(0), "{idle:?}");
        assert_eq!(
            (idle.marks, idle.queue_delay_us),
            (None, None),
            "HTB has neither"
        );
        // While iperf3 sends (6 s), /v1/endpoints once a second from 2.5 s
        // on: the achieved rate within ±10% of the limit, the bytes growing.
        let (steady, seen) =
            iperf3_steady_while(&peer, &pod, "172.51.0.1", 5201 + n as u16, || {
                std::thread::sleep(Duration::from_millis(2500));
                let mut seen = Vec::new();
                for _ in 0..3 {
                    seen.push(egress_traffic(&client, &id).expect("the pod's traffic row"));
                    std::thread::sleep(Duration::from_secs(1));
                }
                // The table as an operator sees it, mid-run (the README's sample).
                let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
                    .args(["--netns", &node.name, "--socket"])
                    .arg(d.socket())
                    .args(["bandwidth", "list"])
                    .output()
                    .unwrap();
                eprintln!(
                    "podnetctl bandwidth list:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
                seen
            });
        let mut sampled = Vec::new();
        for (i, t) in seen.iter().enumerate() {
            let rate = t.rate_bps.unwrap_or_else(|| panic!("no rate: {t:?}"));
            let r = rate as f64 / limit as f64;
            sampled.push(format!(
                "  /v1/endpoints at {:.1} s: rate_bps {rate} = {:.1}% of the limit, bytes {}, overlimits {}, drops {}",
                2.5 + i as f64,
                r * 100.0,
                t.bytes,
                t.overlimits.unwrap_or(0),
                t.drops
            ));
            assert!(
                (0.9..=1.1).contains(&r),
                "limit {limit}: podnetd says {rate} bit/s ({:.1}%): {seen:?}",
                r * 100.0
            );
            if i > 0 {
                assert!(t.bytes > seen[i - 1].bytes, "bytes not growing: {seen:?}");
            }
        }
        let ratio = steady / limit as f64;
        let sent = classes(&node)
            .into_iter()
            .find(|(h, _, _)| *h == handle)
            .map_or(0, |(_, _, sent)| sent);
        report.push(format!(
            "pod {ip} limit {} Mbit/s: steady {:.2} Mbit/s on the wire = {:.1}% (class {handle} sent {sent} bytes)",
            limit / 1_000_000,
            steady / 1e6,
            ratio * 100.0,
        ));
        eprintln!("{}", report.last().unwrap());
        report.extend(sampled);
        assert!(sent > 0, "the pod's traffic did not go through its class");
        // `podnetctl bandwidth list` shows the class's counters for the pod,
        // as podnetd's sampler read them (at most a second ago): once the
        // pod is idle, exactly what tc counts, at 0 bit/s.
        let list_row = || {
            let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
                .args(["--netns", &node.name, "--socket"])
                .arg(d.socket())
                .args(["bandwidth", "list", "-o", "json"])
                .output()
                .unwrap();
            let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "bandwidth list: {e}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            rows.as_array()
                .unwrap()
                .iter()
                .find(|r| r["endpoint"] == format!("{id}/eth0"))
                .unwrap_or_else(|| panic!("{rows}"))
                .clone()
        };
        let mut row = list_row();
        within(
            Duration::from_secs(10),
            "bandwidth list at tc's count, idle",
            || {
                row = list_row();
                let tc = classes(&node)
                    .into_iter()
                    .find(|(h, _, _)| *h == handle)
                    .map_or(0, |(_, _, sent)| sent);
                row["egress_bytes"].as_u64() == Some(tc)
                    && row["traffic"][0]["bytes"].as_u64() == Some(tc)
                    && row["traffic"][0]["rate_bps"] == 0
            },
        );
        assert!(row["egress_bytes"].as_u64().unwrap_or(0) >= sent, "{row}");
        assert_eq!(row["enforced"], true, "{row}");
        assert!(
            (0.95..=1.05).contains(&ratio),
            "limit {limit}: steady {steady:.0} bit/s is {:.1}% of the limit\n{}",
            ratio * 100.0,
            d.log()
        );
        if n == 0 {
            htb_check_follows_the_kernel(&node, &client, &handle, &ip, || {
                in_netns(&node.name, || {
                    check(&list, &result, &runtime, &pod.name, &id)
                })
            });
        }
        in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, &id));
    }
    // The endpoints gone, their classes and filters go by the next pass.
    within(PROMPTLY, "classes of deleted pods removed", || {
        classes(&node).is_empty()
    });
    eprintln!("{}", report.join("\n"));
}

/// CHECK on an HTB pod reads its class from the kernel, not what the last
/// pass left: its u32 filter deleted by hand (a kernel event: the pass it
/// wakes puts it back, so CHECK is tried while it is gone, up to ten
/// times), CHECK fails with code 102 naming the address; after a repair
/// pass it passes. Its class deleted too (its leaf goes with it: a
/// qdisc event, so podnetd's own pass repairs it), CHECK passes again
/// once that pass has run.
fn htb_check_follows_the_kernel(
    node: &Netns,
    client: &podnet::api::client::BlockingClient,
    class: &str,
    ip: &str,
    check: impl Fn() -> Result<(), (String, i32, Value)>,
) {
    check().unwrap_or_else(|e| panic!("CHECK of a shaped pod: {e:?}"));
    let drop_filter = || {
        common::run_ok(
            "tc",
            &[
                "-n", &node.name, "filter", "del", "dev", "ens192", "parent", "706e:", "prio", "1",
            ],
        )
    };
    // The deletion is a kernel event, and the pass it wakes puts the
    // filter back some milliseconds later: CHECK reads the kernel, so it
    // fails when it reads first. When the pass was first (a loaded
    // machine), the filter is taken again, up to ten times.
    let mut failed = None;
    for _ in 0..10 {
        drop_filter();
        if let Err(e) = check() {
            failed = Some(e);
            break;
        }
        within(PROMPTLY, "the filter back", || {
            let args = [
                "-n", &node.name, "filter", "show", "dev", "ens192", "parent", "706e:",
            ];
            !common::run_ok("tc", &args).stdout.is_empty()
        });
    }
    let (plugin, code, err) = failed.expect("CHECK passed ten times with the pod's filter gone");
    assert_eq!(
        (plugin.as_str(), code, err["code"].as_u64()),
        ("podnet-cni", 1, Some(102)),
        "{err}"
    );
    let details = err["details"].as_str().unwrap_or("");
    // Read from the kernel; or, once three repairs in a row made podnetd
    // back off from the endpoint as from a fight, not in force at all.
    assert!(
        details.contains(ip)
            && (details.contains("no HTB class in the kernel")
                || details.contains("no HTB class in force yet")),
        "{err}"
    );
    eprintln!("CHECK with the filter gone: {}: {details}", err["msg"]);
    within(PROMPTLY, "CHECK passing after a repair pass", || {
        client.reconcile().unwrap();
        check().is_ok()
    });
    drop_filter();
    common::run_ok(
        "tc",
        &[
            "-n", &node.name, "class", "del", "dev", "ens192", "classid", class,
        ],
    );
    within(PROMPTLY, "CHECK passing after podnetd's own repair", || {
        check().is_ok()
    });
    assert!(
        classes(node).iter().any(|(h, _, _)| h == class),
        "the class is back: {:?}",
        classes(node)
    );
}

/// The egress row of `id`/eth0 in podnetd's `/v1/endpoints`.
fn egress_traffic(
    client: &podnet::api::client::BlockingClient,
    id: &str,
) -> Option<podnet::api::types::Traffic> {
    client
        .endpoints()
        .unwrap()
        .into_iter()
        .find(|e| e.container_id == id)?
        .traffic
        .into_iter()
        .find(|t| t.direction == "egress")
}

/// `tc -j ARGS` in `ns`, parsed.
fn tc_json(ns: &Netns, args: &str) -> Value {
    let mut full = vec!["-j", "-n", &ns.name];
    full.extend(args.split_whitespace());
    let out = common::run_ok("tc", &full);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// The classes on `ens192` in `ns`: (handle, its line, bytes sent), from
/// `tc -s class show` (text: tc has no JSON for classes).
fn classes(ns: &Netns) -> Vec<(String, String, u64)> {
    classes_of(ns, "ens192")
}

/// The classes on `dev` in `ns`, as [`classes`]; none when `dev` is not
/// there (podnet's ifb comes and goes with the ingress limits).
fn classes_of(ns: &Netns, dev: &str) -> Vec<(String, String, u64)> {
    let Ok(out) = Command::new("tc")
        .args(["-s", "-n", &ns.name, "class", "show", "dev", dev])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut found: Vec<(String, String, u64)> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"class") && words.len() > 2 {
            found.push((words[2].to_string(), line.to_string(), 0));
        } else if words.first() == Some(&"Sent") {
            if let (Some(last), Some(n)) = (found.last_mut(), words.get(1)) {
                last.2 = n.parse().unwrap_or(0);
            }
        }
    }
    found
}

/// Sends from `pod` to `server` (in `peer`) with iperf3 for 6 s, one TCP
/// stream; the receiver's rate after the first second, in bit/s on the
/// wire (1514 bytes per 1448 of payload).
fn iperf3_steady_while<T: Send>(
    peer: &Netns,
    pod: &Netns,
    server: &str,
    port: u16,
    during: impl FnOnce() -> T + Send,
) -> (f64, T) {
    let port = port.to_string();
    let mut srv = Command::new("ip")
        .args([
            "netns", "exec", &peer.name, "iperf3", "-s", "-1", "-J", "-i", "0.5", "-p", &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = Command::new("ip")
        .args([
            "netns", "exec", &pod.name, "iperf3", "-c", server, "-p", &port,
        ])
        .args(["-t", "6", "-Z", "-J", "--get-server-output"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = during();
    let out = client.wait_with_output().unwrap();
    let _ = srv.wait();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let intervals = v["server_output_json"]["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("no server intervals: {v}"));
    let (mut bytes, mut secs) = (0.0, 0.0);
    for i in intervals {
        let sum = &i["sum"];
        if sum["start"].as_f64().unwrap_or(0.0) < 1.0 - 1e-6 {
            continue;
        }
        bytes += sum["bytes"].as_f64().unwrap_or(0.0);
        secs += sum["seconds"].as_f64().unwrap_or(0.0);
    }
    assert!(secs > 3.0, "too few receiver intervals: {v}");
    (bytes * 1514.0 / 1448.0 * 8.0 / secs, seen)
}

/// The receiver's rate in the first second of the last iperf3 run whose
/// JSON `out` holds (bit/s on the wire, as [`iperf3_steady_while`]).
fn first_second(v: &Value) -> f64 {
    let intervals = v["server_output_json"]["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("no server intervals: {v}"));
    let (mut bytes, mut secs) = (0.0, 0.0);
    for i in intervals {
        let sum = &i["sum"];
        if sum["start"].as_f64().unwrap_or(0.0) < 1.0 - 1e-6 {
            bytes += sum["bytes"].as_f64().unwrap_or(0.0);
            secs += sum["seconds"].as_f64().unwrap_or(0.0);
        }
    }
    bytes * 1514.0 / 1448.0 * 8.0 / secs.max(1e-3)
}

/// One iperf3 run for `secs` seconds from `client` to the server in
/// `server_ns` at `server`: its JSON, the server's intervals included.
fn iperf3_json(server_ns: &Netns, client: &Netns, server: &str, port: u16, secs: u32) -> Value {
    let port = port.to_string();
    let mut srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server_ns.name,
            "iperf3",
            "-s",
            "-1",
            "-J",
            "-i",
            "0.5",
            "-p",
            &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client.name,
            "iperf3",
            "-c",
            server,
            "-p",
            &port,
        ])
        .args(["-t", &secs.to_string(), "-Z", "-J", "--get-server-output"])
        .output()
        .unwrap();
    let _ = srv.wait();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The receiver's steady rate (after the first second) of an iperf3 run.
fn steady_of(v: &Value) -> f64 {
    let intervals = v["server_output_json"]["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("no server intervals: {v}"));
    let (mut bytes, mut secs) = (0.0, 0.0);
    for i in intervals {
        let sum = &i["sum"];
        if sum["start"].as_f64().unwrap_or(0.0) >= 1.0 - 1e-6 {
            bytes += sum["bytes"].as_f64().unwrap_or(0.0);
            secs += sum["seconds"].as_f64().unwrap_or(0.0);
        }
    }
    assert!(secs > 3.0, "too few receiver intervals: {v}");
    bytes * 1514.0 / 1448.0 * 8.0 / secs
}

/// Ingress on this machine's kernel (no sch_fq, so HTB): real macvlan
/// pods (Debian's macvlan + host-local chained with podnet-cni) with
/// `ingressRate` receive from a peer behind the master at their limit
/// within ±5% steady and at most HTB's first-second bound (the rate, its
/// burst and one GRO packet: [`htb_first_second`]), measured by the pod's
/// own iperf3 server. podnet's ifb carries it: the master's
/// ingress redirect hands the pods' packets to `podnet-ifb`, whose htb
/// class per address (a u32 filter on the destination) lets them go at
/// the rate. The ifb deleted by hand comes back by the next pass; the
/// last pod gone, the ifb and the redirect go too.
#[test]
fn htb_holds_macvlan_pods_ingress_limits_through_podnets_ifb() {
    let test = "htb_holds_macvlan_pods_ingress_limits_through_podnets_ifb";
    let Some(lab) = IngressLab::new(test, "/usr/lib/cni/macvlan", "ingrate") else {
        return;
    };
    let IngressLab {
        node,
        peer,
        cfg,
        state,
        ..
    } = &lab;
    let mut d = Daemon::start(node, &cfg.path, state);
    let mut client = d.client();
    within(PROMPTLY, "converged", || client.status().unwrap().converged);
    assert!(
        node.link("podnet-ifb").is_none(),
        "no ingress limit yet, no ifb"
    );
    let list = conflist(
        json!({"type": "podnet-cni", "socket": d.socket(), "master": "ens192", "capabilities": {"bandwidth": true}}),
        &state.join("ipam"),
    );
    let mut report = Vec::new();
    for (n, limit) in [10_000_000u64, 100_000_000].into_iter().enumerate() {
        let runtime = json!({"bandwidth": {"ingressRate": limit, "ingressBurst": 2147483647u64}});
        let pod = Netns::new("ingpod");
        let id = format!("ing{n}");
        let result = in_netns(&node.name, || add(&list, &runtime, &pod.name, &id))
            .unwrap_or_else(|(p, e)| panic!("{p}: {e}"));
        let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
        let ip = ip.split('/').next().unwrap().to_string();
        let mbit = format!("rate {}Mbit ", limit / 1_000_000);
        within(PROMPTLY, "the pod's class on podnet-ifb", || {
            ifb_classes(node)
                .iter()
                .any(|(_, line, _)| line.contains(&mbit))
        });
        if n == 0 {
            // Drift: the ifb deleted by hand (a link event) is made again,
            // with its root, class and filter, by the pass it wakes.
            node.ip("link del podnet-ifb");
            within(PROMPTLY, "podnet-ifb back with the class", || {
                ifb_classes(node)
                    .iter()
                    .any(|(_, line, _)| line.contains(&mbit))
            });
            let alias = node.link("podnet-ifb").unwrap()["ifalias"].clone();
            assert_eq!(alias, "podnet:ingress ifb", "podnet's mark");
            // A restart adopts the ifb, its root and class, the redirect
            // and the entries: nothing is made again.
            let index = node.link("podnet-ifb").unwrap()["ifindex"].clone();
            d.kill9();
            d = Daemon::start(node, &cfg.path, state);
            client = d.client();
            within(PROMPTLY, "converged after a restart", || {
                client.status().unwrap().converged
            });
            assert_eq!(node.link("podnet-ifb").unwrap()["ifindex"], index);
            assert!(
                !d.log().contains("podnet-ifb: +") && !d.log().contains("podnet-ifb: ~"),
                "a restart changed the ingress side:\n{}",
                d.log()
            );
        }
        // The peer sends to the pod: the pod's iperf3 server measures.
        report.push(ingress_held(
            &d,
            &client,
            node,
            peer,
            &pod,
            &id,
            &ip,
            limit,
            "podnet-ifb",
            5301 + n as u16,
        ));
        in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, &id));
    }
    // The last ingress limit gone: the ifb goes, and no redirect stays on
    // the master's ingress hook.
    within(PROMPTLY, "podnet-ifb removed", || {
        node.link("podnet-ifb").is_none()
    });
    let ingress = common::run_ok(
        "tc",
        &[
            "-n", &node.name, "filter", "show", "dev", "ens192", "ingress",
        ],
    );
    assert!(
        !String::from_utf8_lossy(&ingress.stdout).contains("edt_redirect"),
        "{}",
        String::from_utf8_lossy(&ingress.stdout)
    );
    eprintln!("{}", report.join("\n"));
}

/// veth pods (Debian's ptp + host-local chained with podnet-cni, the
/// node routing between them and the network) with `ingressRate`, on this
/// machine's kernel (HTB): each pod's host-side veth (which podnet-cni
/// finds in prevResult) gets podnet's htb with a class for the pod's
/// address (a u32 filter on the destination), and the pod receives from
/// a peer behind the node's shaping device at its limit within ±5%
/// steady and at most HTB's first-second bound ([`htb_first_second`]). No ifb: what a veth pod
/// receives leaves through its veth, whatever the way it came.
#[test]
fn htb_holds_veth_pods_ingress_limits_on_their_veth() {
    let test = "htb_holds_veth_pods_ingress_limits_on_their_veth";
    let Some(lab) = IngressLab::new(test, "/usr/lib/cni/ptp", "vethrate") else {
        return;
    };
    let IngressLab { node, peer, .. } = &lab;
    let (d, list) = lab.veth_pods(false);
    let client = d.client();
    let mut report = Vec::new();
    for (n, limit) in [10_000_000u64, 100_000_000].into_iter().enumerate() {
        let runtime = json!({"bandwidth": {"ingressRate": limit, "ingressBurst": 2147483647u64}});
        let pod = Netns::new("vethpod");
        let id = format!("veth{n}");
        let result = in_netns(&node.name, || add(&list, &runtime, &pod.name, &id))
            .unwrap_or_else(|(p, e)| panic!("{p}: {e}"));
        let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
        let ip = ip.split('/').next().unwrap().to_string();
        let host = result["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let record = client.endpoint(&id, "eth0").unwrap().expect("registered");
        assert_eq!(
            record.endpoint.veth.as_deref(),
            Some(host.as_str()),
            "{record:?}"
        );
        let mbit = format!("rate {}Mbit ", limit / 1_000_000);
        within(PROMPTLY, "the pod's class on its veth", || {
            classes_of(node, &host)
                .iter()
                .any(|(_, line, _)| line.contains(&mbit))
        });
        within(PROMPTLY, "the pod's ingress in force", || {
            client
                .endpoint(&id, "eth0")
                .unwrap()
                .and_then(|e| e.enforcement)
                .is_some_and(|e| e.enforced)
        });
        report.push(ingress_held(
            &d,
            &client,
            node,
            peer,
            &pod,
            &id,
            &ip,
            limit,
            &host,
            5401 + n as u16,
        ));
        in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, &id));
    }
    assert!(node.link("podnet-ifb").is_none(), "veth pods need no ifb");
    eprintln!("{}", report.join("\n"));
}

/// A node namespace whose `ens192` is a veth to a peer namespace, "the
/// network" at 172.51.0.1/24.
fn node_and_network(node: &str, peer: &str) -> (Netns, Netns) {
    let node = Netns::new(node);
    let peer = Netns::new(peer);
    node.veth("ens192");
    node.ip(&format!("link set ens192-p netns {}", peer.name));
    peer.ip("link set ens192-p up");
    peer.ip("addr add 172.51.0.1/24 dev ens192-p");
    (node, peer)
}

/// The node file of those tests: `ens192` a macvlan master, shaped with
/// `auto`'s backend, the default tier's egress at `egress`.
fn macvlan_node(egress: &str) -> ConfigDir {
    let file = format!(
        r#"version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
[tiers.silver]
egress = "{egress}"
[shaping]
default_tier = "silver"
backend = "auto"
max_rate = "1G"
"#
    );
    ConfigDir::new(&[("10-node.toml", &file)])
}

/// What the host ingress tests run in: a node namespace whose `ens192`
/// (a macvlan master shaped with `auto`'s backend, tier egress 1G) is a
/// veth to a peer namespace, "the network" at 172.51.0.1/24, and a state
/// dir with a bpffs of its own for podnetd's pins (the redirect is BPF).
struct IngressLab {
    node: Netns,
    peer: Netns,
    cfg: ConfigDir,
    state: PathBuf,
    _bpffs: common::Bpffs,
}

impl IngressLab {
    /// The lab for `test`, whose pods `plugin` makes; None (after the
    /// loud skip, or on a kernel with fq, whose EDT the VM lab measures)
    /// when it cannot run here.
    fn new(test: &str, plugin: &str, tag: &str) -> Option<IngressLab> {
        let needs = [
            ROOT,
            "ip",
            "tc",
            "sysctl",
            "mount",
            "umount",
            "iperf3",
            plugin,
            "/usr/lib/cni/host-local",
        ];
        if !require(test, &needs) {
            return None;
        }
        if podnet::shaping::observe::features().sch_fq {
            eprintln!(
                "this kernel has sch_fq: auto picks EDT, the VM lab's ingress rates cover it"
            );
            return None;
        }
        let (node, peer) = node_and_network(tag, &format!("{tag}p"));
        let cfg = macvlan_node("1G");
        let state = cfg.path.with_extension("state");
        let _bpffs = common::Bpffs::at(&state);
        Some(IngressLab {
            node,
            peer,
            cfg,
            state,
            _bpffs,
        })
    }
}

impl IngressLab {
    /// podnetd on the lab's node for veth pods (Debian's ptp in
    /// 10.61.0.0/24, podnet-cni after it naming ens192), the node routing
    /// between them and the network: through a route in the network to
    /// the pods, or (`masquerade`) behind the node's own 172.51.0.2 on
    /// ens192 (an nft rule, as kube-proxy's or ipMasq's), the network
    /// having no route to them. Returns the daemon, converged, and the
    /// conflist.
    fn veth_pods(&self, masquerade: bool) -> (Daemon, Value) {
        let IngressLab {
            node,
            peer,
            cfg,
            state,
            ..
        } = self;
        node.ip("addr add 172.51.0.2/24 dev ens192");
        if masquerade {
            let rule = "table ip podnettest { chain post { type nat hook postrouting priority srcnat; ip saddr 10.61.0.0/24 oifname \"ens192\" masquerade; }; }";
            common::run_ok("ip", &["netns", "exec", &node.name, "nft", rule]);
        } else {
            peer.ip("route add 10.61.0.0/24 via 172.51.0.2");
        }
        let forward = [
            "netns",
            "exec",
            &node.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ];
        common::run_ok("ip", &forward);
        let d = Daemon::start(node, &cfg.path, state);
        let client = d.client();
        within(PROMPTLY, "converged", || client.status().unwrap().converged);
        let list = json!({
            "cniVersion": "1.0.0",
            "name": "vethpods",
            "plugins": [
                {
                    "type": "ptp",
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.61.0.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": state.join("ipam-veth")
                    }
                },
                {"type": "podnet-cni", "socket": d.socket(), "master": "ens192", "capabilities": {"bandwidth": true}}
            ]
        });
        (d, list)
    }
}

/// Egress of veth pods behind masquerade, on this machine's kernel (HTB):
/// real ptp pods with `egressRate` send to a peer that has no route to
/// them and sees the node's address (nft masquerade on ens192), at their
/// limit within ±5% steady and at most HTB's first-second bound. Their
/// addresses are gone from the packets by the time ens192's HTB sees
/// them: the tag each pod's veth puts on them (edt_classify) is what
/// selects the pod's class (edt_egress on ens192 turns it into the
/// packet's priority), and that class counts the bytes.
#[test]
fn htb_holds_veth_pods_egress_limits_behind_masquerade() {
    let test = "htb_holds_veth_pods_egress_limits_behind_masquerade";
    if !require(test, &["nft"]) {
        return;
    }
    let Some(lab) = IngressLab::new(test, "/usr/lib/cni/ptp", "vethmasq") else {
        return;
    };
    let (d, list) = lab.veth_pods(true);
    let client = d.client();
    let IngressLab { node, peer, .. } = &lab;
    let mut report = Vec::new();
    for (n, limit) in [10_000_000u64, 100_000_000].into_iter().enumerate() {
        let runtime = json!({"bandwidth": {"egressRate": limit, "egressBurst": 2147483647u64}});
        let pod = Netns::new("masqpod");
        let id = format!("masq{n}");
        let result = in_netns(&node.name, || add(&list, &runtime, &pod.name, &id))
            .unwrap_or_else(|(p, e)| panic!("{p}: {e}"));
        let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
        within(
            PROMPTLY,
            "the pod's egress in force, its tag with it",
            || {
                client
                    .endpoint(&id, "eth0")
                    .unwrap()
                    .and_then(|e| e.enforcement)
                    .is_some_and(|e| e.enforced)
            },
        );
        let v = iperf3_json(peer, &pod, "172.51.0.1", 5451 + n as u16, 6);
        assert_eq!(
            v["server_output_json"]["start"]["connected"][0]["remote_host"].as_str(),
            Some("172.51.0.2"),
            "the network must see the node, not the pod: {v}"
        );
        let what = format!("pod {ip} behind masquerade, egress");
        let (line, _) = class_held(&d, node, &v, limit, "ens192", &what);
        in_netns(&node.name, || del(&list, &result, &runtime, &pod.name, &id));
        report.push(line);
    }
    // The pods gone (their veths with them), their tags and tag programs
    // go too: no TCX link left pinned for a veth that is gone.
    let pins = || -> Vec<String> {
        std::fs::read_dir(lab.state.join("bpf"))
            .map(|r| {
                r.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    within(
        PROMPTLY,
        "the tag programs' pins gone with the veths",
        || !pins().iter().any(|p| p.starts_with("tcx-ingress-")),
    );
    within(PROMPTLY, "converged with no pod", || {
        client.status().unwrap().converged
    });
    eprintln!("{}", report.join("\n"));
}

/// The peer sends to `pod` (at `ip`, registered as `id`, ingress limit
/// `limit` held by an HTB class on `dev`) for 6 s, the pod's iperf3 server
/// measuring: the class's bytes grow, the steady rate is within ±5% of the
/// limit, the first second within HTB's bound, and `/v1/endpoints`' HTB
/// ingress row reaches the class's count with a rate. Returns the report
/// line.
#[allow(clippy::too_many_arguments)]
fn ingress_held(
    d: &Daemon,
    client: &podnet::api::client::BlockingClient,
    node: &Netns,
    peer: &Netns,
    pod: &Netns,
    id: &str,
    ip: &str,
    limit: u64,
    dev: &str,
    port: u16,
) -> String {
    let v = iperf3_json(pod, peer, ip, port, 6);
    let (line, sent) = class_held(d, node, &v, limit, dev, &format!("pod {ip} ingress"));
    // /v1/endpoints' ingress row: the class as the sampler read it.
    within(PROMPTLY, "the ingress row at the class's count", || {
        let row = ingress_row(client, id);
        row.backend == "htb"
            && row.limit_bps == limit
            && row.rate_bps.is_some()
            && row.bytes >= sent
    });
    line
}

/// The rates of iperf3 run `v` through an HTB class at `limit` on `dev`
/// (`what` names the pod and direction in the report): the class counted
/// bytes, the receiver's steady rate is within ±5% of the limit and its
/// first second within HTB's bound ([`htb_first_second`]). Returns the
/// report line and the class's bytes.
fn class_held(
    d: &Daemon,
    node: &Netns,
    v: &Value,
    limit: u64,
    dev: &str,
    what: &str,
) -> (String, u64) {
    let (first, steady) = (first_second(v), steady_of(v));
    let mbit = format!("rate {}Mbit ", limit / 1_000_000);
    let sent = classes_of(node, dev)
        .into_iter()
        .find(|(_, line, _)| line.contains(&mbit))
        .map_or(0, |(_, _, sent)| sent);
    let line = format!(
        "{what} limit {} Mbit/s: first second {:.2} Mbit/s = {:.1}%, steady {:.2} Mbit/s = {:.1}% (its class on {dev} sent {sent} bytes)",
        limit / 1_000_000,
        first / 1e6,
        first / limit as f64 * 100.0,
        steady / 1e6,
        steady / limit as f64 * 100.0,
    );
    eprintln!("{line}");
    assert!(
        sent > 0,
        "{what}: the pod's traffic did not go through its class on {dev}"
    );
    let ratio = steady / limit as f64;
    assert!(
        (0.95..=1.05).contains(&ratio),
        "{what} limit {limit}: steady {steady:.0} bit/s is {:.1}%\n{}",
        ratio * 100.0,
        d.log()
    );
    assert!(
        first <= htb_first_second(limit),
        "{what} limit {limit}: first second {first:.0} bit/s is {:.1}%, above HTB's {:.0}",
        first / limit as f64 * 100.0,
        htb_first_second(limit)
    );
    (line, sent)
}

/// The `ingress` row of `id`/eth0 in podnetd's `/v1/endpoints`, once it
/// has one.
fn ingress_row(
    client: &podnet::api::client::BlockingClient,
    id: &str,
) -> podnet::api::types::Traffic {
    let row = || {
        client
            .endpoints()
            .unwrap()
            .into_iter()
            .find(|e| e.container_id == id)?
            .traffic
            .into_iter()
            .find(|t| t.direction == "ingress")
    };
    within(PROMPTLY, "an ingress row", || row().is_some());
    row().unwrap()
}

/// The most an HTB class lets through in its first second, bit/s: the rate,
/// its burst (the tier's default, one 64 KiB packet) and one packet more,
/// as HTB sends a packet while the class has tokens left and lets it take
/// the tokens below zero, and these packets are GRO's 64 KiB aggregates.
/// At 10M that is 110.5% (the VM lab's EDT is held to 110%: EDT charges a
/// packet before it leaves).
fn htb_first_second(limit: u64) -> f64 {
    let burst = podnet::shaping::DEFAULT_BURST_BYTES as f64;
    limit as f64 + 2.0 * burst * 8.0
}

/// The classes on podnet's ifb in `ns`, as [`classes`] reads a master's.
fn ifb_classes(ns: &Netns) -> Vec<(String, String, u64)> {
    if ns.link("podnet-ifb").is_none() {
        return Vec::new();
    }
    classes_of(ns, "podnet-ifb")
}
