//! The socket API over a real Unix socket: every route against an in-memory
//! registry, each answer checked against the committed OpenAPI document,
//! the error answers, the peer check with real other users (as root), the
//! limits, and 10,000 malformed requests after which the server still
//! answers.
//!
//! `bench_socket` (ignored here) is the socket benchmark; `bench/socket`
//! runs it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podnet::api::client::{BlockingClient, Client, Error as ClientError};
use podnet::api::openapi::{openapi_json, openapi_text};
use podnet::api::server::{bind, Policy, Server, ServerStats};
use podnet::api::types::*;
use podnet::api::{Backend, Refusal};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

// ---------------------------------------------------------------------------
// An in-memory daemon.

#[derive(Default)]
struct Memory {
    endpoints: Mutex<BTreeMap<(String, String), EndpointRecord>>,
    reconciles: AtomicU64,
    trial: Mutex<Option<Trial>>,
}

fn reconcile_record(trigger: &str) -> Reconcile {
    Reconcile {
        at: 1_700_000_000_000,
        took_ms: 3.25,
        trigger: trigger.into(),
        outcome: "converged".into(),
        steps: 0,
        error: None,
    }
}

impl Backend for Memory {
    fn metrics(&self) -> String {
        "# TYPE podnet_generation gauge\npodnet_generation 3\n# EOF\n".into()
    }

    fn status(&self) -> Status {
        Status {
            generation: 3,
            converged_generation: Some(3),
            converged: false,
            passes: 7,
            last_reconcile: Some(reconcile_record("timer")),
            rejected: Some(Rejection {
                at: 1_700_000_000_001,
                errors: vec!["10-node.toml:3:8: masters.ens192.mtu: expected an integer".into()],
            }),
            objects: vec![ObjectState {
                object: "shim pn-shim0".into(),
                state: "drifted".into(),
                pending: vec!["~ set up".into()],
            }],
            problems: vec![],
            pending_reboot: vec![],
            fights: vec![Fight {
                object: "shim pn-shim0".into(),
                repairs: 4,
                backoff_until: 1_700_000_060_000,
            }],
            unsupported: vec!["sriov".into()],
            shaping: vec![podnet::api::types::ShapedDevice {
                device: "ens192".into(),
                program_id: 42,
                backend: "edt".into(),
            }],
            trial: self.trial.lock().unwrap().clone(),
            reverted: Some(Reverted {
                generation: 2,
                to_generation: 1,
                at: 1_700_000_000_002,
            }),
        }
    }

    fn node(&self) -> Node {
        Node {
            generation: 3,
            converged_generation: Some(3),
            masters: vec![
                MasterInfo {
                    name: "ens192".into(),
                    kind: "ipvlan".into(),
                    mode: "l2".into(),
                    mtu: Some(9000),
                    shim: Some("pn-shim0".into()),
                },
                MasterInfo {
                    name: "ens224".into(),
                    kind: "macvlan".into(),
                    mode: "bridge".into(),
                    mtu: None,
                    shim: None,
                },
            ],
            tiers: vec![
                TierInfo {
                    name: "gold".into(),
                    egress: Some(1_000_000_000),
                    ingress: Some(1_000_000_000),
                },
                TierInfo {
                    name: "silver".into(),
                    egress: Some(100_000_000),
                    ingress: None,
                },
            ],
            default_tier: Some("silver".into()),
            sriov: vec![podnet::api::types::PfInfo {
                name: "ens2f0".into(),
                pci: "0000:01:00.0".into(),
                driver: Some("igb".into()),
                total_vfs: 7,
                num_vfs: 2,
                vfs: [None, Some("its netdev left this network namespace")]
                    .into_iter()
                    .enumerate()
                    .map(|(i, in_use)| podnet::api::types::VfInfo {
                        index: i as u32,
                        pci: Some(format!("0000:01:10.{i}")),
                        netdev: in_use.is_none().then(|| format!("ens2f0v{i}")),
                        driver: Some("igbvf".into()),
                        in_use: in_use.map(String::from),
                        mac: Some("02:00:00:00:00:10".into()),
                        vlan: 100,
                        qos: 3,
                        vlan_proto: podnet::config::VlanProto::Dot1q,
                        spoofchk: Some(false),
                        trust: Some(true),
                        link_state: Some(podnet::config::VfLinkState::Auto),
                        min_tx_rate_mbps: 0,
                        max_tx_rate_mbps: 100,
                    })
                    .collect(),
            }],
            rdma: Some(RdmaInfo {
                netns_mode: Some(podnet::config::RdmaNetnsMode::Exclusive),
                rdma_cm: Some("/dev/infiniband/rdma_cm".into()),
                hcas: vec![
                    HcaInfo {
                        name: "mlx5_0".into(),
                        offered: true,
                        driver: Some("mlx5".into()),
                        node_type: Some("ca".into()),
                        node_guid: Some("b859:9f03:00c1:2a40".into()),
                        fw: Some("22.39.1002".into()),
                        pci: Some("0000:3b:00.0".into()),
                        ports: vec![HcaPortInfo {
                            index: 1,
                            state: "ACTIVE".into(),
                            phys_state: "LINK_UP".into(),
                            link_layer: Some("Ethernet".into()),
                            netdev: Some("ens2f0".into()),
                        }],
                        char_devices: vec![
                            "/dev/infiniband/uverbs0".into(),
                            "/dev/infiniband/umad0".into(),
                            "/dev/infiniband/issm0".into(),
                        ],
                        netns: "host".into(),
                        endpoint: None,
                    },
                    HcaInfo {
                        name: "mlx5_3".into(),
                        offered: true,
                        driver: None,
                        node_type: None,
                        node_guid: None,
                        fw: None,
                        pci: None,
                        ports: Vec::new(),
                        char_devices: Vec::new(),
                        netns: "/var/run/netns/cni-1".into(),
                        endpoint: Some("c0ffee/net1".into()),
                    },
                ],
            }),
        }
    }

    fn endpoints(&self) -> Vec<EndpointRecord> {
        self.endpoints.lock().unwrap().values().cloned().collect()
    }

    async fn endpoint(&self, container_id: &str, ifname: &str) -> Option<EndpointRecord> {
        let key = (container_id.to_string(), ifname.to_string());
        self.endpoints.lock().unwrap().get(&key).cloned()
    }

    fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: Endpoint,
    ) -> Result<EndpointRecord, Refusal> {
        if let Some(tier) = &endpoint.tier {
            if tier != "gold" && tier != "silver" {
                return Err(Refusal::new(422, format!("no tier {tier:?} on this node")));
            }
        }
        let record = EndpointRecord {
            container_id: container_id.into(),
            ifname: ifname.into(),
            endpoint,
            registered_at: 1_700_000_000_002,
            limits: Some(Limits {
                egress: Some(100_000_000),
                ingress: None,
                burst: None,
                tier: Some("gold".into()),
            }),
            enforcement: None,
            traffic: Vec::new(),
        };
        let key = (container_id.to_string(), ifname.to_string());
        self.endpoints.lock().unwrap().insert(key, record.clone());
        Ok(record)
    }

    fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<bool, Refusal> {
        let key = (container_id.to_string(), ifname.to_string());
        Ok(self.endpoints.lock().unwrap().remove(&key).is_some())
    }

    fn reconcile(
        &self,
        _options: podnet::api::types::ReconcileOptions,
    ) -> impl Future<Output = Result<ReconcileAnswer, Refusal>> + Send {
        let n = self.reconciles.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(ReconcileAnswer {
                generation: 3 + n,
                reconcile: reconcile_record("request"),
            })
        }
    }

    fn try_files(
        &self,
        timeout_seconds: u64,
    ) -> impl Future<Output = Result<TryAnswer, Refusal>> + Send {
        let mut trial = self.trial.lock().unwrap();
        let answer = if trial.is_some() {
            Err(Refusal::new(409, "a trial is already pending"))
        } else {
            let t = Trial {
                generation: 4,
                previous_generation: 3,
                deadline: 1_800_000_000_000 + timeout_seconds * 1000,
            };
            *trial = Some(t.clone());
            Ok(TryAnswer {
                trial: t,
                reconcile: reconcile_record("request"),
            })
        };
        async move { answer }
    }

    fn confirm(&self) -> impl Future<Output = Result<Trial, Refusal>> + Send {
        let answer = self
            .trial
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| Refusal::new(409, "no trial is pending"));
        async move { answer }
    }
}

/// A server on its own thread and runtime (podnetd runs a single-threaded
/// runtime too), on a socket in a fresh directory; stopped when dropped.
struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    backend: Arc<Memory>,
    stats: ServerStats,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn fresh_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "podnet-api-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Other users must reach the socket for the peer tests.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

impl Daemon {
    fn start(policy: Policy) -> Daemon {
        let dir = fresh_dir();
        // A socket below a directory bind() has to make.
        let socket = dir.join("run/podnet.sock");
        let backend = Arc::new(Memory::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel();
        let thread = {
            let socket = socket.clone();
            let backend = backend.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = bind(&socket, policy.group).expect("bind");
                    let server = Server::new(listener, backend, policy);
                    ready.send(server.stats()).unwrap();
                    server
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
        };
        let stats = started.recv().expect("the server started");
        Daemon {
            dir,
            socket,
            backend,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until every connection is closed.
    async fn settle(&self, within: Duration) -> u64 {
        let until = Instant::now() + within;
        while self.stats.open() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stats.open()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quick_policy() -> Policy {
    Policy {
        read_timeout: Duration::from_millis(400),
        ..Policy::default()
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP, to see exactly what goes over the socket.

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Parses one answer from the bytes a connection delivered; `None` when the
/// server closed without one.
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

/// Writes `request` on a new connection and reads until the server closes
/// (or `limit` passes). `half_close` ends the client's side after writing.
async fn exchange(socket: &Path, request: &[u8], half_close: bool, limit: Duration) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    let mut out = Vec::new();
    let io = async {
        // The server may answer and close before it has read everything.
        if s.write_all(request).await.is_ok() && half_close {
            let _ = s.shutdown().await;
        }
        let _ = s.read_to_end(&mut out).await;
    };
    let _ = tokio::time::timeout(limit, io).await;
    out
}

fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            r.push_str("Content-Type: application/json\r\n");
        }
        r.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        r.push_str("\r\n");
    }
    r.into_bytes()
}

async fn call(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> Answer {
    call_with(d, method, path, &[], body).await
}

async fn call_with(
    d: &Daemon,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let raw = exchange(
        &d.socket,
        &request_bytes(method, path, headers, body),
        false,
        Duration::from_secs(5),
    )
    .await;
    parse_answer(&raw).unwrap_or_else(|| {
        panic!(
            "no answer to {method} {path}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

// ---------------------------------------------------------------------------
// The OpenAPI document, and answers checked against it.

#[test]
fn committed_openapi_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/podnet-api.openapi.json"
    );
    let fresh = openapi_text();
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/podnet-api.openapi.json is stale: run `PODNET_BLESS=1 cargo test --test api` and commit it"
    );
}

/// The routes the contract in `src/api/mod.rs` lists, as (METHOD, template).
fn contract_routes() -> Vec<(String, String)> {
    include_str!("../src/api/mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! - `"))
        .filter_map(|l| l.split('`').next())
        .map(|r| {
            let mut parts = r.split_whitespace();
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

fn documented_routes(doc: &Json) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_document_covers_exactly_the_contract() {
    let doc = openapi_json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut contract = contract_routes();
    let mut documented = documented_routes(&doc);
    contract.sort();
    documented.sort();
    assert_eq!(contract.len(), 10, "{contract:?}");
    assert_eq!(contract, documented);

    // Every `$ref` points at something in the document.
    fn refs(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(o) => {
                if let Some(Json::String(r)) = o.get("$ref") {
                    out.push(r.clone());
                }
                o.values().for_each(|v| refs(v, out));
            }
            Json::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 10);
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

/// Components where every object also refuses undocumented fields, so an
/// answer carrying a field the document lacks fails the check.
fn strict_components(doc: &Json) -> Json {
    fn tighten(v: &mut Json) {
        match v {
            Json::Object(o) => {
                if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                    o.insert("additionalProperties".into(), false.into());
                }
                o.values_mut().for_each(tighten);
            }
            Json::Array(a) => a.iter_mut().for_each(tighten),
            _ => {}
        }
    }
    let mut c = doc["components"].clone();
    tighten(&mut c);
    c
}

/// Validates `instance` against `schema`, a schema from the document whose
/// `$ref`s point into its components.
fn validate(doc: &Json, schema: &Json, instance: &Json, what: &str) {
    let mut root = schema.as_object().expect("a schema object").clone();
    root.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    root.insert("components".into(), strict_components(doc));
    let validator = jsonschema::validator_for(&Json::Object(root)).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not match: {errors:#?}"
    );
}

/// Checks an answer against what the document says `method template`
/// answers with its status: the status is documented (or falls under
/// `default`) and the body matches the schema.
fn conforms(doc: &Json, method: &str, template: &str, answer: &Answer) {
    let what = format!("{method} {template} -> {}", answer.status);
    let op = &doc["paths"][template][method.to_lowercase()];
    assert!(op.is_object(), "{what}: not in the document");
    let responses = &op["responses"];
    let documented = &responses[answer.status.to_string()];
    let response = if documented.is_object() {
        documented
    } else {
        assert!(answer.status >= 400, "{what}: success not documented");
        &responses["default"]
    };
    match response.pointer("/content/application~1json/schema") {
        Some(schema) => {
            assert_eq!(
                answer.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            validate(doc, schema, &answer.json(), &what);
        }
        None => assert!(
            answer.body.is_empty(),
            "{what}: a body where none is documented"
        ),
    }
}

// ---------------------------------------------------------------------------
// Every route's happy path.

#[tokio::test]
async fn every_route_answers_as_documented() {
    let doc = openapi_json();
    let d = Daemon::start(Policy::default());
    let ep = "/v1/endpoints/{container_id}/{ifname}";

    let a = call(&d, "GET", "/metrics", None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.starts_with(b"# TYPE podnet_generation gauge"),
        "{:?}",
        String::from_utf8_lossy(&a.body)
    );

    let a = call(&d, "GET", "/v1/status", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "GET", "/v1/status", &a);
    assert_eq!(
        serde_json::from_slice::<Status>(&a.body).unwrap(),
        d.backend.status()
    );

    let a = call(&d, "GET", "/v1/node", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "GET", "/v1/node", &a);
    assert_eq!(
        serde_json::from_slice::<Node>(&a.body).unwrap(),
        d.backend.node()
    );

    let a = call(&d, "GET", "/v1/endpoints", None).await;
    assert_eq!((a.status, a.json()), (200, json!([])));
    conforms(&doc, "GET", "/v1/endpoints", &a);

    let body = json!({
        "netns": "/var/run/netns/cni-1234",
        "ips": ["10.1.2.3/24", "fd00::3/64"],
        "master": "ens192",
        "tier": "gold",
        "egress": 100_000_000
    });
    validate(
        &doc,
        &doc["paths"][ep]["put"]["requestBody"]["content"]["application/json"]["schema"],
        &body,
        "the PUT body",
    );
    let cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let path = format!("/v1/endpoints/{cid}/eth0");
    let a = call(&d, "PUT", &path, Some(&body.to_string())).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    conforms(&doc, "PUT", ep, &a);
    let record: EndpointRecord = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        (record.container_id.as_str(), record.ifname.as_str()),
        (cid, "eth0")
    );
    assert_eq!(record.endpoint.ips.len(), 2);
    assert_eq!(record.endpoint.tier.as_deref(), Some("gold"));

    let a = call(&d, "GET", &path, None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "GET", ep, &a);
    assert_eq!(
        serde_json::from_slice::<EndpointRecord>(&a.body).unwrap(),
        record
    );

    let a = call(&d, "GET", "/v1/endpoints", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "GET", "/v1/endpoints", &a);
    assert_eq!(
        serde_json::from_slice::<Vec<EndpointRecord>>(&a.body).unwrap(),
        vec![record]
    );

    let a = call(&d, "POST", "/v1/reconcile", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "POST", "/v1/reconcile", &a);
    assert_eq!(d.backend.reconciles.load(Ordering::SeqCst), 1);

    // DELETE is idempotent: 204 both times.
    for _ in 0..2 {
        let a = call(&d, "DELETE", &path, None).await;
        assert_eq!(a.status, 204);
        conforms(&doc, "DELETE", ep, &a);
    }
    let a = call(&d, "GET", &path, None).await;
    assert_eq!(a.status, 404);
    conforms(&doc, "GET", ep, &a);
    assert!(d.backend.endpoints().is_empty());

    // try, then confirm; a second confirm has nothing to confirm.
    let a = call(&d, "POST", "/v1/confirm", None).await;
    assert_eq!(a.status, 409);
    conforms(&doc, "POST", "/v1/confirm", &a);
    let a = call(&d, "POST", "/v1/try?timeout=30", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "POST", "/v1/try", &a);
    assert_eq!(a.json()["trial"]["deadline"], 1_800_000_030_000u64);
    let a = call(&d, "POST", "/v1/try", None).await;
    assert_eq!(a.status, 409);
    conforms(&doc, "POST", "/v1/try", &a);
    let a = call(&d, "GET", "/v1/status", None).await;
    conforms(&doc, "GET", "/v1/status", &a);
    assert_eq!(a.json()["trial"]["generation"], 4);
    let a = call(&d, "POST", "/v1/confirm", None).await;
    assert_eq!(a.status, 200);
    conforms(&doc, "POST", "/v1/confirm", &a);
    for bad in ["timeout=0", "timeout=3601", "timeout=x", "wait=3"] {
        let a = call(&d, "POST", &format!("/v1/try?{bad}"), None).await;
        assert_eq!(a.status, 400, "{bad}");
        conforms(&doc, "POST", "/v1/try", &a);
    }
}

#[tokio::test]
async fn methods_the_document_lacks_are_405_with_allow() {
    let doc = openapi_json();
    let d = Daemon::start(Policy::default());
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = template
            .replace("{container_id}", "c1")
            .replace("{ifname}", "eth0");
        let mut allowed: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
            .map(|m| m.to_uppercase())
            .collect();
        allowed.sort();
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"] {
            if allowed.iter().any(|m| m == method) {
                continue;
            }
            let a = call(&d, method, &path, None).await;
            assert_eq!(a.status, 405, "{method} {path}");
            let mut allow: Vec<&str> = a.header("allow").unwrap().split(", ").collect();
            allow.sort();
            assert_eq!(allow, allowed, "{method} {path}");
            if method != "HEAD" {
                conforms(&doc, allowed[0].as_str(), template, &a);
            }
        }
    }
}

#[tokio::test]
async fn bad_requests_get_the_right_4xx() {
    let doc = openapi_json();
    let d = Daemon::start(Policy::default());
    let ep = "/v1/endpoints/{container_id}/{ifname}";
    let put = |path: &'static str, body: &'static str| (path, body);

    // Unknown routes.
    for path in [
        "/v1/nope",
        "/v2/status",
        "/",
        "/v1/status/",
        "/v1/endpoints/c1",
    ] {
        let a = call(&d, "GET", path, None).await;
        assert_eq!(a.status, 404, "{path}");
        assert!(a.json()["error"].as_str().unwrap().contains("no such path"));
    }

    // Malformed path segments.
    for path in [
        "/v1/endpoints/bad!id/eth0",
        "/v1/endpoints/../eth0",
        "/v1/endpoints/c1/a:b",
        "/v1/endpoints/c1/waytoolonginterface",
        "/v1/endpoints/c1/%2F",
        "/v1/endpoints/c1/%zz",
    ] {
        let a = call(&d, "PUT", path, Some("{}")).await;
        assert_eq!(a.status, 400, "{path}");
        conforms(&doc, "PUT", ep, &a);
        let a = call(&d, "DELETE", path, None).await;
        assert_eq!(a.status, 400, "{path}");
        conforms(&doc, "DELETE", ep, &a);
    }
    let long = format!("/v1/endpoints/{}/eth0", "a".repeat(129));
    assert_eq!(call(&d, "GET", &long, None).await.status, 400);
    // A percent-encoded name is decoded.
    let a = call(&d, "PUT", "/v1/endpoints/c1/net%31", Some("{}")).await;
    assert_eq!((a.status, a.json()["ifname"].clone()), (200, json!("net1")));

    for ((path, body), status) in [
        (put("/v1/endpoints/c1/eth0", r#"{"ips": ["#), 400),
        (put("/v1/endpoints/c1/eth0", ""), 400),
        (put("/v1/endpoints/c1/eth0", "not json"), 400),
        (put("/v1/endpoints/c1/eth0", r#"{"bogus": 1}"#), 422),
        (
            put("/v1/endpoints/c1/eth0", r#"{"ips": "10.0.0.1/32"}"#),
            422,
        ),
        (
            put("/v1/endpoints/c1/eth0", r#"{"ips": ["10.0.0.300/32"]}"#),
            422,
        ),
        (put("/v1/endpoints/c1/eth0", r#"{"egress": -1}"#), 422),
        (put("/v1/endpoints/c1/eth0", "[]"), 422),
        // The backend's own refusal keeps its status and message.
        (put("/v1/endpoints/c1/eth0", r#"{"tier": "platinum"}"#), 422),
    ] {
        let a = call(&d, "PUT", path, Some(body)).await;
        assert_eq!(
            a.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        conforms(&doc, "PUT", ep, &a);
    }
    let a = call(
        &d,
        "PUT",
        "/v1/endpoints/c1/eth0",
        Some(r#"{"tier": "platinum"}"#),
    )
    .await;
    assert_eq!(a.json()["error"], "no tier \"platinum\" on this node");
    let a = call(&d, "PUT", "/v1/endpoints/c1/eth0", Some(r#"{"bogus": 1}"#)).await;
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `bogus`"));

    // Not JSON by its own declaration.
    let a = call_with(
        &d,
        "PUT",
        "/v1/endpoints/c1/eth0",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("{}"),
    )
    .await;
    assert_eq!(a.status, 415);
    conforms(&doc, "PUT", ep, &a);
    let a = call_with(
        &d,
        "PUT",
        "/v1/endpoints/c1/eth0",
        &[("Content-Type", "application/json; charset=utf-8")],
        Some("{}"),
    )
    .await;
    assert_eq!(a.status, 200);

    // Too large: declared, and streamed in chunks without a length.
    let big = format!(r#"{{"netns": "{}"}}"#, "x".repeat(70 * 1024));
    let a = call(&d, "PUT", "/v1/endpoints/c1/eth0", Some(&big)).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.header("connection"), Some("close"));
    conforms(&doc, "PUT", ep, &a);
    let mut chunked = b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(format!("400\r\n{}\r\n", "x".repeat(1024)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = exchange(&d.socket, &chunked, false, Duration::from_secs(5)).await;
    assert_eq!(parse_answer(&raw).unwrap().status, 413);

    // Headers past 16 KiB: hyper's own 431.
    let huge = "y".repeat(20 * 1024);
    let raw = exchange(
        &d.socket,
        &request_bytes("GET", "/v1/status", &[("X-Huge", &huge)], None),
        false,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(parse_answer(&raw).unwrap().status, 431);

    // Nothing above changed the registry but the two good PUTs.
    let ids: Vec<String> = d
        .backend
        .endpoints()
        .into_iter()
        .map(|r| r.ifname)
        .collect();
    assert_eq!(ids, ["eth0", "net1"]);
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let d = Daemon::start(quick_policy());
    let limit = Duration::from_secs(3);

    // Half a request line, then nothing: 408 after the header timeout.
    let t = Instant::now();
    let raw = exchange(&d.socket, b"GET /v1/sta", false, limit).await;
    let a = parse_answer(&raw).expect("an answer");
    assert_eq!(a.status, 408);
    assert!(t.elapsed() >= Duration::from_millis(350) && t.elapsed() < limit);

    // Headers, then half the body: 408 after the body timeout.
    let raw = exchange(
        &d.socket,
        b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"ips\":",
        false,
        limit,
    )
    .await;
    let a = parse_answer(&raw).expect("an answer");
    assert_eq!(a.status, 408);
    assert_eq!(a.header("connection"), Some("close"));

    // A connection that never sends anything is closed without a word.
    let t = Instant::now();
    let raw = exchange(&d.socket, b"", false, limit).await;
    assert!(raw.is_empty() && t.elapsed() < limit);

    // Keep-alive works, and an idle keep-alive connection is closed later.
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    let one = b"GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..3 {
        s.write_all(one).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(parse_answer(&buf[..n]).unwrap().status, 200);
    }
    let n = tokio::time::timeout(limit, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "an idle connection is closed without an answer");

    assert_eq!(d.settle(limit).await, 0);
}

#[tokio::test]
async fn beyond_max_connections_clients_wait_in_the_backlog() {
    let d = Daemon::start(Policy {
        max_connections: 4,
        read_timeout: Duration::from_secs(3),
        ..Policy::default()
    });
    // Four connections that send nothing hold every permit.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(UnixStream::connect(&d.socket).await.unwrap());
    }
    while d.stats.open() < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = d.client().with_timeout(Duration::from_millis(300));
    match client.status().await {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("a fifth client should wait, got {other:?}"),
    }
    // As soon as one ends, the next is served.
    drop(idle.pop());
    let t = Instant::now();
    d.client().status().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(idle);
    assert_eq!(d.settle(Duration::from_secs(5)).await, 0);
}

// ---------------------------------------------------------------------------
// The client.

#[tokio::test]
async fn the_client_speaks_every_route() {
    let d = Daemon::start(Policy::default());
    let c = d.client();
    assert_eq!(c.status().await.unwrap(), d.backend.status());
    assert_eq!(c.node().await.unwrap(), d.backend.node());
    assert!(c.endpoints().await.unwrap().is_empty());
    let ep = Endpoint {
        netns: Some("/var/run/netns/x".into()),
        ips: vec!["10.0.0.5/32".parse().unwrap()],
        master: Some("ens192".into()),
        veth: None,
        tier: None,
        egress: Some(5_000_000),
        ingress: None,
        network: None,
        vf: None,
        rdma: None,
    };
    let record = c.put_endpoint("abc", "eth0", &ep).await.unwrap();
    assert_eq!(record.endpoint, ep);
    assert_eq!(
        c.endpoint("abc", "eth0").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(c.endpoint("abc", "eth1").await.unwrap(), None);
    assert_eq!(c.endpoints().await.unwrap(), vec![record]);
    assert_eq!(c.reconcile().await.unwrap().generation, 4);
    c.delete_endpoint("abc", "eth0").await.unwrap();
    c.delete_endpoint("abc", "eth0").await.unwrap();
    assert!(c.endpoints().await.unwrap().is_empty());

    // Refusals carry the status and the server's message.
    let bad = Endpoint {
        tier: Some("platinum".into()),
        ..ep
    };
    match c.put_endpoint("abc", "eth0", &bad).await {
        Err(ClientError::Api {
            status: 422,
            message,
        }) => assert!(message.contains("platinum")),
        other => panic!("{other:?}"),
    }
    match c.delete_endpoint("../x", "eth0").await {
        Err(e) => assert_eq!(e.status(), Some(400), "{e}"),
        other => panic!("{other:?}"),
    }
    // Names that need escaping arrive intact.
    let odd = Endpoint { tier: None, ..bad };
    let r = c.put_endpoint("abc", "ä%1", &odd).await.unwrap();
    assert_eq!(r.ifname, "ä%1");
}

#[tokio::test]
async fn the_client_tells_a_missing_daemon_from_other_failures() {
    let dir = fresh_dir();

    // No socket at all.
    let e = Client::new(dir.join("none.sock"))
        .status()
        .await
        .unwrap_err();
    assert!(e.is_not_running(), "{e}");
    assert!(e.to_string().contains("not running"), "{e}");

    // A socket a dead daemon left behind: ECONNREFUSED.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = Client::new(&stale).node().await.unwrap_err();
    assert!(e.is_not_running(), "{e}");

    // A daemon that accepts and never answers: a timeout.
    let hung = dir.join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&hung).unwrap();
    let t = Instant::now();
    let e = Client::new(&hung)
        .with_timeout(Duration::from_millis(200))
        .status()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));

    // Something that is not HTTP.
    let junk = dir.join("junk.sock");
    let junk_listener = std::os::unix::net::UnixListener::bind(&junk).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = junk_listener.accept().unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let e = Client::new(&junk).status().await.unwrap_err();
    assert!(!e.is_not_running() && e.status().is_none(), "{e}");
    server.join().unwrap();

    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_blocking_client_needs_no_runtime() {
    let d = Daemon::start(Policy::default());
    let c = BlockingClient::new(&d.socket);
    assert_eq!(c.status().unwrap(), d.backend.status());
    assert_eq!(c.node().unwrap(), d.backend.node());
    let ep = Endpoint {
        netns: None,
        ips: vec!["10.1.2.3/24".parse().unwrap()],
        master: None,
        veth: None,
        tier: Some("silver".into()),
        egress: Some(100_000_000),
        ingress: None,
        network: Some("pods".into()),
        vf: None,
        rdma: None,
    };
    let put = c.put_endpoint("c9", "net1", &ep).unwrap();
    assert_eq!(put.endpoint, ep);
    assert_eq!(c.endpoints().unwrap(), vec![put.clone()]);
    assert_eq!(c.endpoint("c9", "net1").unwrap(), Some(put));
    // Names that need escaping arrive intact.
    assert_eq!(c.put_endpoint("abc", "ä%1", &ep).unwrap().ifname, "ä%1");
    // DELETE answers 204 without a body, also when nothing is registered.
    for _ in 0..2 {
        c.delete_endpoint("c9", "net1").unwrap();
    }
    assert!(c.endpoint("c9", "net1").unwrap().is_none());
    assert_eq!(c.reconcile().unwrap().reconcile.trigger, "request");
    let e = c.confirm().unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert_eq!(c.try_files(30).unwrap().trial.deadline, 1_800_000_030_000);
    c.confirm().unwrap();
    // A refusal carries the daemon's reason.
    let bad = Endpoint {
        tier: Some("no-such-tier".into()),
        ..ep.clone()
    };
    match c.put_endpoint("c9", "net1", &bad).unwrap_err() {
        ClientError::Api {
            status: 422,
            message,
        } => assert!(message.contains("no-such-tier")),
        other => panic!("{other:?}"),
    }
    let gone = BlockingClient::new(d.dir.join("nothing.sock"));
    assert!(gone.status().unwrap_err().is_not_running());
}

/// A peer that answers each connection with `answer` and closes.
fn fake_peer(path: &Path, answer: &'static [u8]) -> std::thread::JoinHandle<()> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = s.read(&mut request);
        let _ = s.write_all(answer);
    })
}

#[test]
fn the_blocking_client_tells_failures_apart_within_its_timeout() {
    let dir = fresh_dir();

    // No socket at all, and one a dead daemon left behind.
    let e = BlockingClient::new(dir.join("none.sock"))
        .status()
        .unwrap_err();
    assert!(e.is_not_running(), "{e}");
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = BlockingClient::new(&stale).node().unwrap_err();
    assert!(e.is_not_running(), "{e}");

    // A daemon that accepts and never answers, and one whose backlog is
    // full (it never accepts): each a timeout, in time.
    let hung = dir.join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&hung).unwrap();
    let full = dir.join("full.sock");
    let full_listener = std::os::unix::net::UnixListener::bind(&full).unwrap();
    nix::sys::socket::listen(&full_listener, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
    let mut queued = Vec::new();
    while queued.len() < 8 {
        match nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .and_then(|fd| {
            let addr = nix::sys::socket::UnixAddr::new(&full)?;
            nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map(|()| fd)
        }) {
            Ok(fd) => queued.push(fd),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    for socket in [&hung, &full] {
        let t = Instant::now();
        let e = BlockingClient::new(socket)
            .with_timeout(Duration::from_millis(200))
            .status()
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Timeout(_)),
            "{}: {e}",
            socket.display()
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    // Answers this client cannot take: not HTTP, chunked, cut short.
    for (name, answer, want) in [
        (
            "junk",
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            "not an HTTP answer",
        ),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "transfer-encoding",
        ),
        (
            "short",
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"generation\"",
            "without an answer",
        ),
        ("silent", b"", "without an answer"),
    ] {
        let path = dir.join(format!("{name}.sock"));
        let peer = fake_peer(&path, answer);
        let e = BlockingClient::new(&path).status().unwrap_err();
        assert!(!e.is_not_running() && e.status().is_none(), "{name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        peer.join().unwrap();
    }

    // An answer without a length is read to the end of the connection.
    let path = dir.join("close.sock");
    let peer = fake_peer(
        &path,
        b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"no endpoint c1/eth0\"}",
    );
    assert_eq!(
        BlockingClient::new(&path).endpoint("c1", "eth0").unwrap(),
        None
    );
    peer.join().unwrap();

    drop((listener, full_listener, queued));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// bind().

#[tokio::test]
async fn bind_makes_the_socket_and_refuses_to_steal_one() {
    let dir = fresh_dir();
    let socket = dir.join("a/b/podnet.sock");
    // Handing the socket to the podnet group takes root.
    let group = require(
        "bind_makes_the_socket_and_refuses_to_steal_one (the socket's group)",
        &[ROOT],
    )
    .then_some(4242);
    let listener = bind(&socket, group).unwrap();
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    if let Some(g) = group {
        assert_eq!((meta.uid(), meta.gid()), (0, g));
    }
    assert_eq!(
        std::fs::metadata(dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // Someone is listening: refused, and the socket is left alone.
    let e = bind(&socket, None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(e.to_string().contains("another podnetd"), "{e}");
    assert!(std::fs::metadata(&socket).is_ok());

    // The daemon died and left its socket: replaced.
    drop(listener);
    assert!(std::fs::metadata(&socket).is_ok());
    let _again = bind(&socket, None).unwrap();

    // Not a socket: left alone.
    let file = dir.join("plain");
    std::fs::write(&file, "keep me").unwrap();
    let e = bind(&file, None).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// The peer check, with real other users.

#[path = "common/prereq.rs"]
mod prereq;
use prereq::{require, ROOT};

const GROUP: u32 = 4242;
const NOBODY: u32 = 65534;

/// Not a test of its own, so ignored: the peer tests run this test binary
/// again as another user (`--ignored --exact peer_helper`), with
/// `PODNET_PEER_HELPER` naming the socket, and read what it prints.
#[test]
#[ignore = "a helper the peer tests run as another user, not a test"]
fn peer_helper() {
    let socket = std::env::var("PODNET_PEER_HELPER").expect("run by the peer tests only");
    let mode = std::env::var("PODNET_PEER_MODE").unwrap_or_default();
    let request = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let ask = |s: &mut std::os::unix::net::UnixStream| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        match parse_answer(&out) {
            Some(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
            None => "closed".to_string(),
        }
    };
    match mode.as_str() {
        "flood" => {
            // Hold a refused peer's share of connections, then ask on more.
            let held: Vec<_> = (0..podnet::api::server::MAX_REFUSED_AT_ONCE)
                .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            for _ in 0..4 {
                let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
                println!("PEER_RESULT: {}", ask(&mut s));
            }
            drop(held);
        }
        _ => match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(mut s) => println!("PEER_RESULT: {}", ask(&mut s)),
            Err(e) => println!("PEER_RESULT: connect {:?}", e.kind()),
        },
    }
}

/// Runs [`peer_helper`] as `uid`/`gid` with `groups`, and returns its results.
fn as_peer(
    exe: &Path,
    socket: &Path,
    uid: u32,
    gid: u32,
    groups: &[u32],
    mode: &str,
) -> Vec<String> {
    let groups: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "peer_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PODNET_PEER_HELPER", socket)
    .env("PODNET_PEER_MODE", mode)
    .current_dir("/");
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
            Ok(())
        });
    }
    let out = cmd.output().expect("run the helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_once("PEER_RESULT: "))
        .map(|(_, r)| r.to_string())
        .collect();
    assert!(
        !results.is_empty(),
        "the helper said nothing: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

#[tokio::test]
async fn only_root_and_the_group_may_use_the_socket() {
    // Running a peer as another user takes root.
    if !require("only_root_and_the_group_may_use_the_socket", &[ROOT]) {
        return;
    }
    let d = Daemon::start(Policy {
        group: Some(GROUP),
        read_timeout: Duration::from_secs(2),
        ..Policy::default()
    });
    // The test binary may sit below a directory other users cannot enter:
    // run a copy from the socket's directory.
    let exe = d.dir.join("peer");
    let me = std::env::current_exe().unwrap();
    if std::fs::hard_link(&me, &exe).is_err() {
        std::fs::copy(&me, &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |uid, gid, groups: &'static [u32], mode: &'static str| {
        let (exe, socket) = (exe.clone(), d.socket.clone());
        tokio::task::spawn_blocking(move || as_peer(&exe, &socket, uid, gid, groups, mode))
    };

    // The socket's mode keeps strangers out before any check of ours.
    let r = run(NOBODY, NOBODY, &[], "one").await.unwrap();
    assert_eq!(r, ["connect PermissionDenied"]);
    // A member of the group, as a supplementary group or as its own.
    let r = run(NOBODY, NOBODY, &[100, GROUP], "one").await.unwrap();
    assert!(r[0].starts_with("200 "), "{r:?}");
    let r = run(NOBODY, GROUP, &[], "one").await.unwrap();
    assert!(r[0].starts_with("200 "), "{r:?}");

    // With the socket opened to all, SO_PEERCRED is what refuses.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused_before = d.stats.refused();
    let r = run(NOBODY, NOBODY, &[100], "one").await.unwrap();
    assert!(r[0].starts_with("403 "), "{r:?}");
    let body: ApiError = serde_json::from_str(&r[0][4..]).unwrap();
    assert!(
        body.error.contains("uid 65534") && body.error.contains("4242"),
        "{}",
        body.error
    );
    assert_eq!(d.stats.refused(), refused_before + 1);
    let r = run(NOBODY, NOBODY, &[GROUP], "one").await.unwrap();
    assert!(r[0].starts_with("200 "), "{r:?}");

    // A stranger holding connections gets only its small share; past it
    // it is closed unanswered, while root is still served.
    let dropped_before = d.stats.dropped();
    let flood = run(NOBODY, NOBODY, &[], "flood");
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.client().status().await.unwrap();
    let r = flood.await.unwrap();
    assert_eq!(r, ["closed", "closed", "closed", "closed"], "{r:?}");
    assert_eq!(d.stats.dropped(), dropped_before + 4);
    d.client().status().await.unwrap();
    assert!(d.backend.endpoints().is_empty());
}

// ---------------------------------------------------------------------------
// 10,000 bad requests.

/// The malformed requests, by kind: the bytes, whether the client closes
/// its side after them, and the statuses acceptable (0: closed unanswered).
fn malformed(kind: usize, i: usize) -> (Vec<u8>, bool, &'static [u16]) {
    let garbage: Vec<u8> = (0..64 + i % 200)
        .map(|j| (j * 131 + i * 7 + 13) as u8)
        .collect();
    match kind {
        0 => (garbage, true, &[400, 0]),
        1 => (
            request_bytes("GET", "/v1/status", &[("X-Big", &"h".repeat(20_000))], None),
            false,
            &[431],
        ),
        2 => (
            b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{}".to_vec(),
            false,
            &[413],
        ),
        3 => (
            // A body shorter than it says, then the client's side closes.
            b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ips\":".to_vec(),
            true,
            &[400, 0],
        ),
        4 => {
            let mut r = b"GET /v1/endpoints/\xff\xfe/\xc0\xaf HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
            r.rotate_left(i % 3);
            (r, true, &[400, 0])
        }
        5 => (
            request_bytes("PUT", "/v1/endpoints/c1/eth0", &[], Some(r#"{"ips": [1, 2"#)),
            false,
            &[400],
        ),
        6 => (
            request_bytes("PUT", "/v1/endpoints/c1/eth0", &[], Some(r#"{"evil": true}"#)),
            false,
            &[422],
        ),
        7 => (
            request_bytes("DELETE", "/v1/endpoints/..%2F..%2Fetc/eth0", &[], None),
            false,
            &[400],
        ),
        8 => {
            // A request cut short anywhere, then the client's side closes.
            let full = request_bytes("PUT", "/v1/endpoints/c1/eth0", &[], Some("{}"));
            let cut = 1 + i % (full.len() - 1);
            (full[..cut].to_vec(), true, &[400, 0])
        }
        9 => {
            let mut r = b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..70 {
                r.extend_from_slice(format!("3e8\r\n{}\r\n", "z".repeat(1000)).as_bytes());
            }
            (r, false, &[413])
        }
        10 => (b"G\x00T /v1/status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false, &[400]),
        11 => (
            b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
            false,
            &[400],
        ),
        12 => (
            b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            false,
            &[400],
        ),
        13 => (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            true,
            &[400, 505, 0],
        ),
        _ => (
            request_bytes("POST", "/v1/status", &[], Some("{}")),
            false,
            &[405],
        ),
    }
}
const KINDS: usize = 15;

#[tokio::test]
async fn ten_thousand_bad_requests_leave_it_answering() {
    let d = Arc::new(Daemon::start(Policy {
        read_timeout: Duration::from_millis(500),
        ..Policy::default()
    }));
    let started = Instant::now();
    const TOTAL: usize = 10_000;
    const WORKERS: usize = 8;
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(BTreeMap::<(usize, u16), usize>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (d, unexpected, seen) = (d.clone(), unexpected.clone(), seen.clone());
        tasks.spawn(async move {
            for i in (w..TOTAL).step_by(WORKERS) {
                let kind = i % KINDS;
                let (bytes, half_close, expected) = malformed(kind, i);
                let raw = exchange(&d.socket, &bytes, half_close, Duration::from_secs(5)).await;
                let status = parse_answer(&raw).map_or(0, |a| a.status);
                *seen.lock().unwrap().entry((kind, status)).or_default() += 1;
                if !expected.contains(&status) {
                    unexpected.lock().unwrap().push(format!(
                        "kind {kind} #{i}: {status} {:?}",
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    ));
                }
            }
        });
    }
    // Slow clients alongside: headers one byte per 100 ms, and a body the
    // same way; each is cut off with a 408.
    for slow_body in [false, false, false, true, true] {
        let d = d.clone();
        let unexpected = unexpected.clone();
        tasks.spawn(async move {
            let mut s = UnixStream::connect(&d.socket).await.unwrap();
            let (head, drip): (&[u8], &[u8]) = if slow_body {
                (
                    b"PUT /v1/endpoints/c1/eth0 HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n",
                    b"{\"ips\": [\"10.0.0.1/32\"]}      ",
                )
            } else {
                (b"", b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            };
            let _ = s.write_all(head).await;
            for b in drip {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            let status = parse_answer(&out).map_or(0, |a| a.status);
            if status != 408 {
                unexpected
                    .lock()
                    .unwrap()
                    .push(format!("slow (body: {slow_body}): {status}"));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let took = started.elapsed();
    let unexpected = unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers: {:#?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(20)]
    );

    assert!(d.alive(), "the server stopped");
    assert!(d.stats.accepted() >= TOTAL as u64 + 5);
    assert_eq!(
        d.settle(Duration::from_secs(3)).await,
        0,
        "connections left open"
    );
    // Nothing malformed reached the registry.
    assert!(d.backend.endpoints().is_empty());

    // Still answering, and with every permit back: 64 clients at once.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let c = d.client();
        clients.spawn(async move { c.status().await });
    }
    let mut ok = 0;
    while let Some(r) = clients.join_next().await {
        assert_eq!(r.unwrap().unwrap(), d.backend.status());
        ok += 1;
    }
    assert_eq!(ok, 64);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("10,000 malformed requests and 5 slow clients in {took:?}");
    eprintln!(
        "(kind, status 0 = closed unanswered): count = {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_requests_finish() {
    let dir = fresh_dir();
    let socket = dir.join("s.sock");
    let listener = bind(&socket, None).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(podnet::api::server::serve(
        listener,
        Arc::new(Memory::default()),
        Policy::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let c = Client::new(&socket);
    c.status().await.unwrap();
    // An idle keep-alive connection does not hold the shutdown up.
    let _idle = UnixStream::connect(&socket).await.unwrap();
    tokio::task::yield_now().await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("shut down in time")
        .unwrap();
    assert!(c.status().await.unwrap_err().is_not_running());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// The benchmark (bench/socket runs it in release mode).

/// The floor: the least a server can do for one HTTP request on a Unix
/// socket (read up to the end of the headers and a declared body, write a
/// canned answer, close), on the same kind of runtime as podnetd.
async fn floor_server(listener: tokio::net::UnixListener, answer: Arc<Vec<u8>>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 4096];
            loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = s.write_all(&answer).await;
        });
    }
}

/// One request on a new connection; the time until the whole answer is in.
async fn timed(socket: &Path, request: &[u8], expect: &[u8]) -> Duration {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::with_capacity(2048);
    s.read_to_end(&mut out).await.unwrap();
    let took = t.elapsed();
    assert!(out.starts_with(expect), "{}", String::from_utf8_lossy(&out));
    took
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(0.50), at(0.99), at(1.0))
}

/// What one bench client does once; returns how long it took.
#[derive(Clone, Copy)]
enum Op {
    /// A raw `GET /v1/node`.
    Node,
    /// A raw PUT of a new endpoint, then its DELETE.
    PutDelete,
    /// `GET /v1/node` through podnet's own client.
    ClientNode,
}

async fn once(op: Op, socket: &Path, i: usize) -> Duration {
    match op {
        Op::Node => {
            let r = request_bytes("GET", "/v1/node", &[], None);
            timed(socket, &r, b"HTTP/1.1 200").await
        }
        Op::PutDelete => {
            let path = format!("/v1/endpoints/bench{i}/eth0");
            let body = r#"{"ips":["10.1.0.1/32"],"tier":"gold"}"#;
            let put = request_bytes("PUT", &path, &[], Some(body));
            let delete = request_bytes("DELETE", &path, &[], None);
            // The floor answers 200 to both.
            timed(socket, &put, b"HTTP/1.1 200").await + timed(socket, &delete, b"HTTP/1.1 2").await
        }
        Op::ClientNode => {
            let t = Instant::now();
            Client::new(socket).node().await.unwrap();
            t.elapsed()
        }
    }
}

/// Runs `op` from `clients` concurrent tasks, `rounds` times each: back to
/// back, or each client once per `pace` (starts spread over the period).
/// The latencies and the wall time.
async fn load(
    op: Op,
    socket: &Path,
    clients: usize,
    rounds: usize,
    pace: Option<Duration>,
) -> (Vec<Duration>, Duration) {
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let socket = socket.to_path_buf();
        tasks.spawn(async move {
            let start = tokio::time::Instant::now();
            let mut v = Vec::with_capacity(rounds);
            for r in 0..rounds {
                if let Some(p) = pace {
                    let offset = p * c as u32 / clients as u32 + p * r as u32;
                    tokio::time::sleep_until(start + offset).await;
                }
                v.push(once(op, &socket, c * rounds + r).await);
            }
            v
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    (all, t.elapsed())
}

#[tokio::test]
#[ignore = "a benchmark: bench/socket runs it"]
async fn bench_socket() {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let clients = var("CLIENTS", 64);
    let rounds = var("ROUNDS", 200);
    let pace = Duration::from_millis(var("PACE_MS", 10) as u64);
    let d = Daemon::start(Policy::default());

    // The floor answers with bodies of the same sizes as podnet's.
    let node_answer = call(&d, "GET", "/v1/node", None).await;
    let put_answer = call(
        &d,
        "PUT",
        "/v1/endpoints/warm/eth0",
        Some(r#"{"ips":["10.1.0.1/32"],"tier":"gold"}"#),
    )
    .await;
    let canned = |body: &[u8]| {
        let mut a = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        Arc::new(a)
    };
    let floor_node = d.dir.join("floor-node.sock");
    let floor_put = d.dir.join("floor-put.sock");
    for (path, answer) in [
        (&floor_node, canned(&node_answer.body)),
        (&floor_put, canned(&put_answer.body)),
    ] {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                floor_server(listener, answer).await
            });
        });
    }

    let total = clients * rounds;
    println!();
    println!(
        "socket round trips: {clients} concurrent clients x {rounds} each, a new connection per request, latency in ms"
    );
    for (title, pace) in [
        (
            "back to back (saturated: latency ~ clients / throughput)",
            None,
        ),
        ("paced: each client once per interval", Some(pace)),
    ] {
        match pace {
            Some(p) => println!(
                "\n{title} of {p:?} ({:.0} requests/s offered)",
                clients as f64 / p.as_secs_f64()
            ),
            None => println!("\n{title}"),
        }
        println!(
            "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "",
            "floor p50",
            "floor p99",
            "floor/s",
            "podnet p50",
            "podnet p99",
            "podnet max",
            "podnet/s",
            "p99 over"
        );
        let rate = |t: Duration| total as f64 / t.as_secs_f64();
        for (what, op, floor) in [
            ("GET /v1/node", Op::Node, Some(&floor_node)),
            ("PUT+DELETE endpoint", Op::PutDelete, Some(&floor_put)),
            ("GET /v1/node, api::Client", Op::ClientNode, None),
        ] {
            let (podnet, pt) = load(op, &d.socket, clients, rounds, pace).await;
            let (p50, p99, max) = percentiles(podnet);
            match floor {
                Some(f) => {
                    let (floor, ft) = load(op, f, clients, rounds, pace).await;
                    let (f50, f99, _) = percentiles(floor);
                    println!(
                        "{what:<26} {f50:>9.3} {f99:>9.3} {:>9.0} {p50:>10.3} {p99:>10.3} {max:>10.3} {:>9.0} {:>8.2}x",
                        rate(ft),
                        rate(pt),
                        p99 / f99
                    );
                }
                None => println!(
                    "{what:<26} {:>9} {:>9} {:>9} {p50:>10.3} {p99:>10.3} {max:>10.3} {:>9.0} {:>9}",
                    "-", "-", "-", rate(pt), "-"
                ),
            }
        }
    }
    println!("(PUT+DELETE: one pair per round; rates are pairs/s)");
    println!();
    assert_eq!(
        d.backend.endpoints().len(),
        1,
        "every bench endpoint was deleted"
    );
}
