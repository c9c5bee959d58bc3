//! podnet-cni as a runtime runs it: `CNI_*` in the environment, the request
//! configuration libcni derives from a conflist entry on stdin (name,
//! cniVersion, the entry's keys, runtimeConfig, prevResult), the result or
//! a CNI error on stdout.
//!
//! Without root: VERSION, the checks of the environment and the
//! configuration in every command, and podnetd absent or hung. As root
//! (a loud skip otherwise, a failure under scripts/test): against a real
//! podnetd in a network namespace the test makes, in every spec version;
//! then with that podnetd killed. ADD latency is bench/shaping's.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use podnet::api::client::BlockingClient;
use podnet::api::types::Endpoint;
use serde_json::{json, Value};

const VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// What kubelet (through containerd or CRI-O) puts in CNI_ARGS.
const KUBELET_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=0b1c5e8e-2f4f-4c1e-9d5e-3b1f1e0c1a2b";

// ---------------------------------------------------------------------------
// Running the plugin.

struct Run {
    code: i32,
    /// stdout parsed; `Null` when empty.
    out: Value,
    stderr: String,
    took: Duration,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success, got {} {} (stderr: {})",
            self.code, self.out, self.stderr
        );
        self
    }

    /// Asserts a CNI error with `code`, in the spec's format.
    fn error(&self, code: u64) -> &Self {
        assert_ne!(
            self.code, 0,
            "expected CNI error {code}, got success: {}",
            self.out
        );
        assert_eq!(
            self.out["code"], code,
            "expected CNI error {code}, got {}",
            self.out
        );
        for key in ["cniVersion", "msg", "details"] {
            assert!(
                self.out[key].is_string(),
                "error without {key}: {}",
                self.out
            );
        }
        self
    }

    fn msg(&self) -> String {
        format!("{} {}", self.out["msg"], self.out["details"])
    }
}

/// One invocation: `vars` as the `CNI_*` environment (nothing inherited),
/// `stdin` written and closed the way libcni does.
fn cni_raw(vars: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podnet-cni"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // VERSION may answer before reading: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    Run {
        code: out.status.code().unwrap(),
        out: value,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

fn cni(vars: &[(&str, &str)], stdin: &Value) -> Run {
    cni_raw(vars, stdin.to_string().as_bytes())
}

/// One attachment as the runtime names it.
#[derive(Clone)]
struct Pod {
    id: String,
    ifname: String,
    netns: String,
    args: String,
}

impl Pod {
    fn new(id: &str, netns: &str) -> Pod {
        Pod {
            id: id.into(),
            ifname: "eth0".into(),
            netns: netns.into(),
            args: KUBELET_ARGS.into(),
        }
    }

    fn run(&self, command: &str, stdin: &Value) -> Run {
        cni(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &self.id),
                ("CNI_NETNS", &self.netns),
                ("CNI_IFNAME", &self.ifname),
                ("CNI_ARGS", &self.args),
                ("CNI_PATH", "/opt/cni/bin"),
            ],
            stdin,
        )
    }
}

/// What ipvlan + host-local answer for `pod` in `version`'s format:
/// 0.3.1/0.4.0 IPs carry `version`, 1.x IPs do not.
fn prev_result(version: &str, pod: &Pod, ips: &[&str]) -> Value {
    let v0 = version.starts_with("0.");
    let ips: Vec<Value> = ips
        .iter()
        .map(|a| {
            let mut ip = json!({"interface": 0, "address": a});
            if a.contains('.') {
                ip["gateway"] = "172.51.0.1".into();
            }
            if v0 {
                ip["version"] = if a.contains(':') { "6" } else { "4" }.into();
            }
            ip
        })
        .collect();
    let mut iface = json!({"name": pod.ifname, "mac": "02:42:ac:33:00:0a", "sandbox": pod.netns});
    if !v0 {
        iface["mtu"] = 1500.into();
    }
    json!({
        "cniVersion": version,
        "interfaces": [iface],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0", "gw": "172.51.0.1"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]}
    })
}

/// The request configuration libcni derives from a podnet-cni conflist
/// entry: the network's name and version, the entry's own keys, then
/// runtimeConfig and prevResult.
fn request(version: &str, entry: Value, runtime: Value, prev: Option<Value>) -> Value {
    let mut conf = json!({"cniVersion": version, "name": "pods"});
    for (k, v) in entry.as_object().unwrap() {
        if k != "capabilities" {
            conf[k] = v.clone();
        }
    }
    if !runtime.is_null() {
        conf["runtimeConfig"] = runtime;
    }
    if let Some(p) = prev {
        conf["prevResult"] = p;
    }
    conf
}

/// A conflist entry for podnet-cni on `socket`.
fn entry(socket: &Path, extra: Value) -> Value {
    let mut e = json!({
        "type": "podnet-cni",
        "socket": socket,
        "master": "ens192",
        "capabilities": {"bandwidth": true}
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// kubelet's bandwidth capability for `kubernetes.io/egress-bandwidth: 100M`
/// and `kubernetes.io/ingress-bandwidth: 1G`: bit/s, and containerd's
/// "unlimited" burst of 2^32-1 bits.
fn kubelet_bandwidth() -> Value {
    json!({"bandwidth": {
        "ingressRate": 1_000_000_000u64, "ingressBurst": 4_294_967_295u64,
        "egressRate": 100_000_000u64, "egressBurst": 4_294_967_295u64
    }})
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "podnet-cni-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Without root.

#[test]
fn version_lists_the_supported_spec_versions() {
    let r = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.1.0"}),
    );
    r.ok();
    assert_eq!(
        r.out,
        json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS})
    );
    // The answer is in the version asked for.
    let r = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "0.4.0"}),
    );
    assert_eq!(r.ok().out["cniVersion"], "0.4.0");
    // Nothing on stdin: the newest.
    let r = cni_raw(&[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(r.ok().out["cniVersion"], "1.1.0");
}

#[test]
fn the_environment_is_checked_and_named() {
    let conf = request("1.0.0", json!({"type": "podnet-cni"}), Value::Null, None);
    let r = cni(&[], &conf);
    r.error(4);
    assert!(r.msg().contains("CNI_COMMAND"), "{}", r.out);
    assert!(r.stderr.contains("podnet-cni"), "{}", r.stderr);

    let r = cni(&[("CNI_COMMAND", "BOGUS")], &conf);
    assert!(r.error(4).msg().contains("BOGUS"));

    for command in ["ADD", "CHECK"] {
        let r = cni(&[("CNI_COMMAND", command)], &conf);
        r.error(4);
        assert!(
            r.msg().contains("[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME]"),
            "{command}: {}",
            r.out
        );
        // The error is in the config's version.
        assert_eq!(r.out["cniVersion"], "1.0.0");
    }
    let r = cni(&[("CNI_COMMAND", "DEL")], &conf);
    assert!(
        r.error(4).msg().contains("[CNI_CONTAINERID,CNI_IFNAME]"),
        "{}",
        r.out
    );

    let base = |cid: &'static str, ifname: &'static str| {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", ifname),
        ]
    };
    assert!(cni(&base("-x", "eth0"), &conf)
        .error(4)
        .msg()
        .contains("CNI_CONTAINERID"));
    assert!(cni(&base("x", "eth0:1"), &conf)
        .error(4)
        .msg()
        .contains("CNI_IFNAME"));
    assert!(cni(&base("x", "a-name-too-long16"), &conf)
        .error(4)
        .msg()
        .contains("CNI_IFNAME"));
    let mut vars = base("x", "eth0");
    vars.push(("CNI_ARGS", "PODNET_TIER"));
    assert!(cni(&vars, &conf).error(4).msg().contains("CNI_ARGS"));
}

#[test]
fn the_configuration_is_checked_before_podnetd_is_asked() {
    let tmp = TempDir::new("conf");
    let socket = tmp.0.join("absent.sock");
    let pod = Pod::new("c0ffee", "/var/run/netns/cni-1");
    let prev = prev_result("1.0.0", &pod, &["172.51.0.10/24"]);
    let vars = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
    ];

    cni_raw(&vars, b"").error(6);
    cni_raw(&vars, b"{\"cniVersion\": ").error(6);
    cni_raw(&vars, b"[]").error(6);

    let ok = request(
        "1.0.0",
        entry(&socket, json!({})),
        Value::Null,
        Some(prev.clone()),
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, u64, &str)> = vec![
        (with(&|c| c["cniVersion"] = "0.2.0".into()), 1, "0.2.0"),
        (with(&|c| c["cniVersion"] = "2.0.0".into()), 1, "2.0.0"),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("cniVersion");
            }),
            1,
            "cniVersion",
        ),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("name");
            }),
            7,
            "name",
        ),
        (with(&|c| c["name"] = "bad name".into()), 7, "name"),
        (with(&|c| c["tier"] = 5.into()), 7, "`tier`"),
        (with(&|c| c["master"] = "no/such".into()), 7, "`master`"),
        (with(&|c| c["socket"] = "podnet.sock".into()), 7, "`socket`"),
        (
            with(&|c| c["runtimeConfig"] = json!({"bandwidth": {"egressRate": "100M"}})),
            7,
            "egressRate",
        ),
        (
            with(&|c| c["runtimeConfig"] = json!({"bandwidth": {"ingressRate": -5}})),
            7,
            "ingressRate",
        ),
        (
            with(&|c| c["args"] = json!({"cni": {"tier": 1}})),
            7,
            "args.cni.tier",
        ),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("prevResult");
            }),
            7,
            "chained",
        ),
        (
            with(&|c| c["prevResult"]["ips"][0]["address"] = "172.51.0.10".into()),
            7,
            "CIDR",
        ),
        (
            with(&|c| c["prevResult"]["ips"][0]["interface"] = 3.into()),
            7,
            "interface",
        ),
        (
            with(&|c| c["prevResult"]["interfaces"][0]["name"] = "net1".into()),
            7,
            "no address on eth0",
        ),
    ];
    for (conf, code, needle) in cases {
        let r = cni(&vars, &conf);
        r.error(code);
        assert!(r.msg().contains(needle), "{needle}: {}", r.out);
        // Refused before any attempt to reach podnetd.
        assert!(!r.msg().contains("podnetd"), "{}", r.out);
    }

    // A 0.4.0 prevResult's `version` must match the address.
    let mut p = prev_result("0.4.0", &pod, &["172.51.0.10/24"]);
    p["ips"][0]["version"] = "6".into();
    let r = cni(
        &vars,
        &request("0.4.0", entry(&socket, json!({})), Value::Null, Some(p)),
    );
    assert!(r.error(7).msg().contains("IPv4"), "{}", r.out);

    // CHECK came with 0.4.0, STATUS and GC with 1.1.0.
    let mut check = vars.to_vec();
    check[0] = ("CNI_COMMAND", "CHECK");
    let c = request(
        "0.3.1",
        entry(&socket, json!({})),
        Value::Null,
        Some(prev_result("0.3.1", &pod, &["172.51.0.10/24"])),
    );
    assert!(cni(&check, &c).error(1).msg().contains("CHECK"));
    let mut c = request("1.0.0", entry(&socket, json!({})), Value::Null, None);
    c["cni.dev/valid-attachments"] = json!([]);
    for command in ["STATUS", "GC"] {
        let r = cni(&[("CNI_COMMAND", command)], &c);
        assert!(r.error(1).msg().contains(command), "{}", r.out);
    }
    // CHECK needs prevResult; GC needs the valid attachments.
    let c = request("1.1.0", entry(&socket, json!({})), Value::Null, None);
    assert!(cni(&check, &c).error(7).msg().contains("prevResult"));
    assert!(cni(&[("CNI_COMMAND", "GC")], &c)
        .error(7)
        .msg()
        .contains("valid-attachments"));
}

#[test]
fn with_podnetd_absent_add_fails_fast_and_del_succeeds() {
    let tmp = TempDir::new("absent");
    // Nothing at the path, and a socket file a killed daemon left behind.
    let missing = tmp.0.join("podnet.sock");
    let stale = tmp.0.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    for socket in [&missing, &stale] {
        for version in VERSIONS {
            let pod = Pod::new("c0ffee", "/var/run/netns/cni-1");
            let prev = prev_result(version, &pod, &["172.51.0.10/24"]);
            let conf = request(
                version,
                entry(socket, json!({})),
                kubelet_bandwidth(),
                Some(prev),
            );
            let r = pod.run("ADD", &conf);
            r.error(11);
            assert!(r.msg().contains("podnetd is not running"), "{}", r.out);
            assert!(r.msg().contains(&*socket.to_string_lossy()), "{}", r.out);
            assert_eq!(r.out["cniVersion"], version);
            assert!(r.took < Duration::from_secs(1), "ADD took {:?}", r.took);

            // DEL succeeds, twice, and says why on stderr.
            for _ in 0..2 {
                let r = pod.run("DEL", &conf);
                r.ok();
                assert_eq!(r.out, Value::Null);
                assert!(r.stderr.contains("podnetd is not running"), "{}", r.stderr);
            }
            if version != "0.3.1" {
                pod.run("CHECK", &conf).error(11);
            }
        }
        let mut conf = request("1.1.0", entry(socket, json!({})), Value::Null, None);
        let r = cni(&[("CNI_COMMAND", "STATUS")], &conf);
        assert!(r.error(50).msg().contains("not running"), "{}", r.out);
        conf["cni.dev/valid-attachments"] = json!([{"containerID": "c0ffee", "ifname": "eth0"}]);
        cni(&[("CNI_COMMAND", "GC")], &conf).error(11);
    }
}

#[test]
fn del_with_an_invalid_configuration_still_succeeds() {
    let tmp = TempDir::new("delconf");
    let pod = Pod::new("c0ffee", "/var/run/netns/gone");
    let mut conf = request(
        "1.0.0",
        entry(&tmp.0.join("x.sock"), json!({"tier": 5})),
        Value::Null,
        None,
    );
    conf["runtimeConfig"] = json!({"bandwidth": "lots"});
    let mut pod_bad_args = pod.clone();
    pod_bad_args.args = "not-a-pair".into();
    let r = pod_bad_args.run("DEL", &conf);
    r.ok();
    assert!(
        r.stderr.contains("invalid network configuration"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_hung_podnetd_costs_at_most_the_budget() {
    let tmp = TempDir::new("hung");
    let socket = tmp.0.join("podnet.sock");
    // Bound and listening, never accepting: connections sit in the backlog
    // and no answer ever comes, as with a daemon stuck in a pass.
    let _listener = UnixListener::bind(&socket).unwrap();
    let pod = Pod::new("c0ffee", "/var/run/netns/cni-1");
    let prev = prev_result("1.1.0", &pod, &["172.51.0.10/24"]);
    let conf = request(
        "1.1.0",
        entry(&socket, json!({})),
        Value::Null,
        Some(prev.clone()),
    );
    // A DEL that hands an RDMA device back asks podnetd which one, then
    // unregisters: both within the one budget. Its namespace must exist
    // for the question to be asked (this process's own does).
    let rdma_pod = Pod::new("c0ffee", "/proc/self/ns/net");
    let rdma_conf = request(
        "1.1.0",
        entry(&socket, json!({"rdma": "mlx5_0"})),
        Value::Null,
        Some(prev),
    );
    let runs: Vec<(&str, Run)> = std::thread::scope(|s| {
        let handles: Vec<_> = ["ADD", "DEL", "STATUS", "DEL-RDMA"]
            .into_iter()
            .map(|c| {
                let (pod, conf) = match c {
                    "DEL-RDMA" => (&rdma_pod, &rdma_conf),
                    _ => (&pod, &conf),
                };
                let command = c.trim_end_matches("-RDMA");
                (c, s.spawn(move || pod.run(command, conf)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(c, h)| (c, h.join().unwrap()))
            .collect()
    });
    for (command, r) in &runs {
        assert!(
            r.took >= Duration::from_millis(4500) && r.took < Duration::from_secs(8),
            "{command} took {:?}",
            r.took
        );
        match *command {
            "ADD" => assert!(
                r.error(11).msg().contains("did not answer within 5s"),
                "{}",
                r.out
            ),
            "DEL" | "DEL-RDMA" => {
                assert!(r.ok().stderr.contains("did not answer"), "{}", r.stderr)
            }
            _ => {
                r.error(50);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// With a real podnetd (root).

#[path = "common/prereq.rs"]
mod prereq;
use prereq::{require, ROOT};

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a veth `ens192` standing in for the master,
/// deleted on drop.
struct Sandbox {
    name: String,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pncni-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        sh("ip", &["netns", "add", &name]);
        let sandbox = Sandbox { name };
        sh(
            "ip",
            &[
                "-n",
                &sandbox.name,
                "link",
                "add",
                "ens192",
                "type",
                "veth",
                "peer",
                "name",
                "ens192-p",
            ],
        );
        sh(
            "ip",
            &["-n", &sandbox.name, "link", "set", "ens192-p", "up"],
        );
        sandbox
    }

    /// The namespace's path: what a runtime passes as CNI_NETNS.
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const NODE: &str = r#"version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
mtu = 1500

[tiers.gold]
egress = "1G"
ingress = "1G"

[tiers.silver]
egress = "100M"
ingress = "100M"
"#;

/// podnetd in `sandbox` with its node files, state and socket in `dir`;
/// killed (SIGKILL) on drop.
struct Podnetd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Podnetd {
    fn start(sandbox: &Sandbox, dir: &Path) -> Podnetd {
        let config = dir.join("etc");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("10-node.toml"), NODE).unwrap();
        let socket = dir.join("podnet.sock");
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "podnetd-{}.log",
            STARTS.fetch_add(1, Ordering::SeqCst)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_podnetd"))
            .arg("-c")
            .arg(&config)
            .args(["--netns", &sandbox.name, "--interval", "3600"])
            .arg("--state-dir")
            .arg(dir)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Podnetd { child, socket, log };
        let client = d.client();
        let start = Instant::now();
        loop {
            if client
                .status()
                .is_ok_and(|s| s.converged_generation.is_some())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "podnetd did not converge: {}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn client(&self) -> BlockingClient {
        BlockingClient::new(&self.socket).with_timeout(Duration::from_secs(5))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Podnetd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn registered(d: &Podnetd, pod: &Pod) -> Option<Endpoint> {
    d.client()
        .endpoint(&pod.id, &pod.ifname)
        .unwrap()
        .map(|r| r.endpoint)
}

fn ips(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|i| i.parse().unwrap()).collect()
}

#[test]
fn every_command_in_every_version_against_podnetd() {
    if !require(
        "every_command_in_every_version_against_podnetd",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let sandbox = Sandbox::new("conf");
    let dir = TempDir::new("daemon");
    let d = Podnetd::start(&sandbox, &dir.0);
    let netns = sandbox.path();

    for (n, version) in VERSIONS.into_iter().enumerate() {
        let pod = Pod::new(&format!("pod{n}"), &netns);
        let v4 = format!("172.51.0.1{n}/24");
        let addrs = [v4.as_str(), "fd00::a/64"];
        let prev = prev_result(version, &pod, &addrs);
        let conf = request(
            version,
            entry(&d.socket, json!({"tier": "silver"})),
            kubelet_bandwidth(),
            Some(prev.clone()),
        );

        // ADD registers and answers prevResult untouched.
        let r = pod.run("ADD", &conf);
        assert_eq!(r.ok().out, prev, "{version}");
        assert_eq!(
            registered(&d, &pod),
            Some(Endpoint {
                netns: Some(netns.clone()),
                ips: ips(&addrs),
                master: Some("ens192".into()),
                veth: None,
                tier: Some("silver".into()),
                egress: Some(100_000_000),
                ingress: Some(1_000_000_000),
                network: Some("pods".into()),
                vf: None,
                rdma: None,
            }),
            "{version}"
        );

        // CHECK (from 0.4.0): fine as added, an error once it differs.
        if version == "0.3.1" {
            pod.run("CHECK", &conf).error(1);
        } else {
            pod.run("CHECK", &conf).ok();
            let mut other = registered(&d, &pod).unwrap();
            other.ips = ips(&["172.51.0.99/24"]);
            d.client()
                .put_endpoint(&pod.id, &pod.ifname, &other)
                .unwrap();
            let r = pod.run("CHECK", &conf);
            assert!(r.error(100).msg().contains("172.51.0.99/24"), "{}", r.out);
            // ADD again (as after a runtime's retry) puts it right.
            pod.run("ADD", &conf).ok();
            pod.run("CHECK", &conf).ok();
        }

        // DEL removes; DEL again, and DEL without a netns, succeed.
        assert!(pod.run("DEL", &conf).ok().out.is_null());
        assert_eq!(registered(&d, &pod), None);
        pod.run("DEL", &conf).ok();
        let mut gone = pod.clone();
        gone.netns = String::new();
        gone.run("DEL", &conf).ok();
        if version != "0.3.1" {
            let r = pod.run("CHECK", &conf);
            assert!(r.error(100).msg().contains("not registered"), "{}", r.out);
        }

        // The tier: CNI_ARGS over the entry, args.cni over CNI_ARGS.
        let mut gold = pod.clone();
        gold.args = format!("{KUBELET_ARGS};PODNET_TIER=gold");
        gold.run("ADD", &conf).ok();
        assert_eq!(registered(&d, &pod).unwrap().tier.as_deref(), Some("gold"));
        let mut c = conf.clone();
        c["args"] = json!({"cni": {"tier": "silver"}});
        gold.run("ADD", &c).ok();
        assert_eq!(
            registered(&d, &pod).unwrap().tier.as_deref(),
            Some("silver")
        );
        gold.run("DEL", &c).ok();

        // What the node does not define: podnetd's reason, code 7.
        for (key, value, reason) in [
            ("tier", "platinum", "undefined tier `platinum`"),
            ("master", "ens224", "`ens224` is not a master"),
        ] {
            let mut c = conf.clone();
            c[key] = value.into();
            let r = pod.run("ADD", &c);
            assert!(r.error(7).msg().contains(reason), "{}", r.out);
            assert_eq!(registered(&d, &pod), None);
        }
    }

    // STATUS and GC (1.1.0).
    let status = request("1.1.0", entry(&d.socket, json!({})), Value::Null, None);
    cni(&[("CNI_COMMAND", "STATUS")], &status).ok();

    // Two networks on the same master: "pods" and "batch".
    let add = |id: &str, network: &str| {
        let pod = Pod::new(id, &netns);
        let e = entry(&d.socket, json!({"name": network}));
        let prev = prev_result("1.1.0", &pod, &["172.51.0.50/24"]);
        pod.run("ADD", &request("1.1.0", e, Value::Null, Some(prev)))
            .ok();
        pod
    };
    let keep = add("keep", "pods");
    let stale1 = add("stale1", "pods");
    let stale2 = add("stale2", "pods");
    let other_network = add("other", "batch");
    assert_eq!(
        registered(&d, &other_network).unwrap().network.as_deref(),
        Some("batch")
    );
    let mut gc = status.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "keep", "ifname": "eth0"},
        {"containerID": "not-registered", "ifname": "eth0"}
    ]);
    cni(&[("CNI_COMMAND", "GC")], &gc).ok();
    assert!(registered(&d, &keep).is_some());
    assert!(registered(&d, &stale1).is_none());
    assert!(registered(&d, &stale2).is_none());
    // Another network's, on the same master: left alone.
    assert!(registered(&d, &other_network).is_some());
    // Nothing left to collect: GC again is a no-op.
    cni(&[("CNI_COMMAND", "GC")], &gc).ok();
    assert!(registered(&d, &keep).is_some());
    // The other network's own GC with an empty list collects it.
    let mut gc_other = gc.clone();
    gc_other["name"] = "batch".into();
    gc_other["cni.dev/valid-attachments"] = json!([]);
    cni(&[("CNI_COMMAND", "GC")], &gc_other).ok();
    assert!(registered(&d, &other_network).is_none());
    assert!(registered(&d, &keep).is_some());
}

#[test]
fn with_podnetd_killed_add_fails_and_del_succeeds() {
    if !require(
        "with_podnetd_killed_add_fails_and_del_succeeds",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let sandbox = Sandbox::new("kill");
    let dir = TempDir::new("kill");
    let mut d = Podnetd::start(&sandbox, &dir.0);
    let pod = Pod::new("victim", &sandbox.path());
    let prev = prev_result("1.1.0", &pod, &["172.51.0.20/24"]);
    let conf = request(
        "1.1.0",
        entry(&d.socket, json!({})),
        kubelet_bandwidth(),
        Some(prev),
    );
    pod.run("ADD", &conf).ok();

    d.kill();
    // kill -9 leaves the socket file: connecting is refused.
    assert!(d.socket.exists());
    let mut next = pod.clone();
    next.id = "next".into();
    let r = next.run("ADD", &conf);
    assert!(
        r.error(11).msg().contains("podnetd is not running"),
        "{}",
        r.out
    );
    assert!(r.took < Duration::from_secs(1), "ADD took {:?}", r.took);
    eprintln!("ADD with podnetd killed: {:?}: {}", r.took, r.out);
    let r = pod.run("DEL", &conf);
    r.ok();
    assert!(r.stderr.contains("not running"), "{}", r.stderr);
    pod.run("CHECK", &conf).error(11);
    cni(&[("CNI_COMMAND", "STATUS")], &conf).error(50);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    cni(&[("CNI_COMMAND", "GC")], &gc).error(11);

    // Restarted, podnetd still holds the endpoint the DEL could not remove;
    // a GC (or a DEL) clears it.
    let d = Podnetd::start(&sandbox, &dir.0);
    assert!(registered(&d, &pod).is_some());
    cni(&[("CNI_COMMAND", "GC")], &gc).ok();
    assert!(registered(&d, &pod).is_none());
}
