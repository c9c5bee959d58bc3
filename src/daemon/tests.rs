//! The registry and the shaper's map against each other, on a real map (a
//! private bpffs; no device, no qdisc): what the request path writes, a
//! pass running at the same moment never undoes. The pass is the engine's
//! own map part: the registry and the map read under the lock, the plan,
//! its entry steps run by the shaping backend. Only the device it shapes
//! is described (fq and podnet's program on `m0`: the development kernel
//! has no fq), so the plan has entry steps alone. Needs root: a loud skip
//! otherwise, and a failure under scripts/test.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::backend::DaemonBackend;
use super::engine::SharedRegistry;
use super::registry::Registry;
use super::shared::Shared;
use crate::api::types::{Endpoint, MasterInfo};
use crate::api::Backend;
use crate::plan::Role;
use crate::shaping::tests::{endpoint_map, BpfFs};
use crate::shaping::{Endpoints, Shaper, ShaperPaths};
use crate::state::{LinkShaping, Observed};

const NODE: &str = "version = 1\n[masters.m0]\nkind = \"macvlan\"\nshaping = true\n";

/// A daemon's shared state on a shaped master `m0`, with the map open for
/// the request path, and the handle a pass would use on the same map.
fn node(test: &str) -> Option<(BpfFs, Arc<Mutex<Shared>>, Pass, std::path::PathBuf)> {
    let (fs, _map) = endpoint_map(test)?;
    let (shared, pass, dir) = node_on(&fs.pin_dir(), test);
    Some((fs, shared, pass, dir))
}

/// [`node`] on the map pinned under `pin_dir`.
fn node_on(
    pin_dir: &std::path::Path,
    test: &str,
) -> (Arc<Mutex<Shared>>, Pass, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("podnet-daemon-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (registry, _) = Registry::open(&dir.join("endpoints.json")).unwrap();
    let config = crate::config::load_files(vec![("10-node.toml".into(), NODE.into())])
        .unwrap()
        .config;
    let pass = Pass::new(pin_dir.to_path_buf(), config.clone());
    let mut shared = Shared {
        status: Default::default(),
        node: Default::default(),
        config: Some(config),
        registry,
        shaping: Default::default(),
        metrics: Default::default(),
    };
    shared.status.converged_generation = Some(1);
    shared.node.masters.push(MasterInfo {
        name: "m0".into(),
        kind: "macvlan".into(),
        mode: "bridge".into(),
        mtu: None,
        shim: None,
    });
    shared.shaping.configured = devices();
    shared.shaping.shaped = [("m0".to_string(), 1)].into();
    shared.shaping.map = Some(Endpoints::open(pin_dir).unwrap());
    (Arc::new(Mutex::new(shared)), pass, dir)
}

/// The request path on `shared` (its triggers go nowhere: no loop runs).
fn request_path(shared: &Arc<Mutex<Shared>>) -> DaemonBackend {
    let (triggers, _) = tokio::sync::mpsc::unbounded_channel();
    DaemonBackend {
        shared: shared.clone(),
        triggers,
        kernel: None,
    }
}

fn devices() -> BTreeSet<String> {
    ["m0".to_string()].into()
}

fn pod(i: usize) -> Endpoint {
    Endpoint {
        netns: None,
        ips: vec![format!("10.9.{}.{}/32", i / 250, 1 + i % 250)
            .parse()
            .unwrap()],
        master: Some("m0".into()),
        veth: None,
        tier: None,
        egress: Some(10_000_000),
        ingress: None,
        network: None,
        vf: None,
        rdma: None,
    }
}

/// A pass over the map, as the engine makes one (see the module doc).
struct Pass {
    rt: tokio::runtime::Runtime,
    shaper: Option<Shaper>,
    paths: ShaperPaths,
    desired: crate::config::NodeConfig,
}

impl Pass {
    fn new(pin_dir: std::path::PathBuf, desired: crate::config::NodeConfig) -> Pass {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Pass {
            rt,
            shaper: None,
            paths: ShaperPaths {
                state_dir: std::env::temp_dir().join(format!("podnet-pass-{}", std::process::id())),
                pin_dir,
                modprobe_dir: std::env::temp_dir()
                    .join(format!("podnet-pass-{}-modprobe", std::process::id())),
            },
            desired,
        }
    }

    /// One pass's map part; how many entries it removed.
    fn run(&mut self, shared: &Arc<Mutex<Shared>>) -> usize {
        let registry = SharedRegistry(shared.clone());
        let (paths, desired) = (self.paths.clone(), self.desired.clone());
        let shaper = &mut self.shaper;
        self.rt.block_on(async {
            let kernel = crate::kernel::Kernel::connect().unwrap();
            let mut shaping = crate::apply::Shaping::new(shaper, kernel, paths, &registry);
            let ours = shaping
                .loaded()
                .unwrap()
                .identity(crate::shaping::Prog::Egress)
                .unwrap();
            let mut observed = shaped_m0(ours);
            let inputs = shaping.inputs(&mut observed).unwrap();
            let plan = crate::plan::plan(&desired, &observed, &inputs);
            assert!(
                plan.actions.iter().all(|a| a.role == Role::Endpoint),
                "{plan}"
            );
            let removed = plan
                .actions
                .iter()
                .filter(|a| matches!(a.change, crate::plan::Change::RemoveEntry { .. }))
                .count();
            let mut backend = crate::apply::ShapingBackend::new(&mut shaping);
            for a in &plan.actions {
                backend.execute(a).await.unwrap();
            }
            removed
        })
    }
}

/// The host as a pass on a shaped `m0` observes it.
fn shaped_m0(ours: crate::state::BpfProgram) -> Observed {
    serde_json::from_value(serde_json::json!({
        "links": [{"index": 2, "name": "m0", "mtu": 1500, "up": true}],
        "qdiscs": [{"link": "m0", "kind": "fq", "handle": "706e:0", "parent": "root"}],
    }))
    .map(|mut o: Observed| {
        o.shaping.push(LinkShaping {
            link: "m0".into(),
            tcx: Some(ours),
            clsact: None,
            ingress_tcx: None,
            ingress_clsact: None,
            previous_root: Some("default noqueue".into()),
        });
        o
    })
    .unwrap()
}

fn mapped(map: &Endpoints) -> BTreeSet<IpAddr> {
    map.stats().unwrap().into_iter().map(|s| s.ip).collect()
}

/// 200 endpoints registered while passes sync the map back to back: after
/// each PUT returns its entry is in the map, no pass ever removes one, and
/// at the end map == registry. (A pass that read the registry, let go of
/// the lock and then removed what it had not seen took new pods' entries
/// away.)
#[test]
fn a_pass_never_undoes_a_put_that_lands_during_it() {
    let Some((_fs, shared, mut pass, dir)) = node("put-during-pass") else {
        return;
    };
    let backend = request_path(&shared);
    let probe = Endpoints::open(&_fs.pin_dir()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let passes = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut n, mut removed) = (0u64, 0);
            while !stop.load(Ordering::Relaxed) {
                removed += pass.run(&shared);
                n += 1;
            }
            (n, removed, pass)
        })
    };
    let mut registered = BTreeSet::new();
    for i in 0..200 {
        let e = pod(i);
        let ip = e.ips[0].addr();
        let r = backend
            .put_endpoint(&format!("c{i}"), "eth0", e)
            .unwrap_or_else(|r| panic!("PUT {i}: {r:?}"));
        assert_eq!(r.enforcement.map(|e| e.enforced), Some(true), "PUT {i}");
        registered.insert(ip);
        let have = mapped(&probe);
        assert!(
            registered.is_subset(&have),
            "after PUT {i}, entries missing from the map: {:?}",
            registered.difference(&have).collect::<Vec<_>>()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (n, removed, mut pass) = passes.join().unwrap();
    assert!(n > 0, "no pass ran");
    // Every entry a pass found was registered: it never removed one.
    assert_eq!(
        removed, 0,
        "{n} passes removed {removed} registered pods' entries"
    );
    pass.run(&shared);
    assert_eq!(mapped(&probe), registered, "map == registry");
    let _ = std::fs::remove_dir_all(dir);
}

/// A panic while the lock was held (anywhere in the daemon) leaves the
/// registry as it was: a pass keeps every registered pod shaped.
#[test]
fn a_poisoned_lock_unshapes_nobody() {
    let Some((fs, shared, mut pass, dir)) = node("poisoned") else {
        return;
    };
    let backend = request_path(&shared);
    backend.put_endpoint("c0", "eth0", pod(0)).unwrap();
    let poisoner = shared.clone();
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.lock().unwrap();
        panic!("a bug while holding the lock (expected by this test)");
    })
    .join();
    assert!(shared.is_poisoned());
    pass.run(&shared);
    let map = Endpoints::open(&fs.pin_dir()).unwrap();
    assert_eq!(mapped(&map), [pod(0).ips[0].addr()].into());
    let _ = std::fs::remove_dir_all(dir);
}

/// `/v1/endpoints`' traffic row of an EDT pod is the map's counters, with
/// real packets run through the EDT program (BPF_PROG_TEST_RUN) into the
/// map the request path reads: bytes and packets as sent, CE marks of the
/// ECN-capable packets that waited past the threshold, the queue delay
/// the departure clock says, and the achieved rate from two samples of
/// podnetd's sampler (within what the times around them allow), 0 once
/// idle.
#[test]
fn an_edt_pods_traffic_is_its_map_entry_sampled() {
    use crate::shaping::monotonic_ns;
    use crate::shaping::testrun::TC_ACT_UNSPEC;
    use crate::shaping::tests::{datapath, ecn_frame, ECT0};
    use std::time::{Duration, Instant};
    let Some(mut dp) = datapath("edt-traffic") else {
        return;
    };
    let pin_dir = dp._fs.pin_dir();
    let (shared, _pass, dir) = node_on(&pin_dir, "edt-traffic");
    let backend = request_path(&shared);
    backend.put_endpoint("c0", "eth0", pod(0)).unwrap();
    let src = pod(0).ips[0].addr();
    let entry = dp.endpoints.get(src).unwrap().expect("ADD wrote the entry");
    assert!(entry.ce_threshold_ns > 0, "marking is on by default");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kernel = rt
        .block_on(async { crate::kernel::Kernel::connect() })
        .unwrap();
    let mut sampler = super::sampler::Sampler::new(pin_dir.clone());
    let row = |b: &DaemonBackend| {
        let list = b.endpoints();
        let e = list.iter().find(|e| e.container_id == "c0").unwrap();
        assert_eq!(e.traffic.len(), 1, "{:?}", e.traffic);
        e.traffic[0].clone()
    };
    let a = Instant::now();
    rt.block_on(sampler.round(&shared, &kernel));
    let b = Instant::now();
    assert_eq!(row(&backend).rate_bps, None, "one sample");

    // 10 Mbit/s: 1514 bytes take 1.2112 ms. After the 64 KiB burst, 200
    // frames queue up to ~190 ms, under the 250 ms horizon.
    const FRAME: u64 = 1514;
    let frame_ns = FRAME * 1_000_000_000 / (10_000_000 / 8);
    let (plain, marked) = (200u64, 5u64);
    let t0 = monotonic_ns();
    for _ in 0..plain {
        assert_eq!(dp.send(src, FRAME as usize).action, TC_ACT_UNSPEC);
    }
    for _ in 0..marked {
        let v = dp.run(&ecn_frame(src, FRAME as usize, ECT0), 0, 0);
        assert_eq!(v.action, TC_ACT_UNSPEC);
    }
    let t1 = monotonic_ns();
    let (r0, t, r1) = (monotonic_ns(), row(&backend), monotonic_ns());
    let sent = plain + marked;
    assert_eq!(
        (
            t.direction.as_str(),
            t.backend.as_str(),
            t.limit_bps,
            t.bytes,
            t.packets,
            t.drops,
            t.marks,
            t.overlimits
        ),
        (
            "egress",
            "edt",
            10_000_000,
            sent * FRAME,
            sent,
            0,
            Some(marked),
            None
        ),
        "{t:?}"
    );
    // The departure clock: the first packet's now less the burst, plus
    // every frame's time at the rate (the datapath's multiplier rounds up:
    // at most a few ns a frame).
    let queued = sent * frame_ns;
    let lo = (t0 + queued).saturating_sub(entry.burst_ns + r1) / 1000;
    let hi = (t1 + queued + sent * 4).saturating_sub(entry.burst_ns + r0) / 1000 + 1;
    let delay = t.queue_delay_us.expect("EDT has a queue delay");
    assert!(
        (lo..=hi).contains(&delay),
        "queue delay {delay} us, expected {lo}..={hi}"
    );
    assert!(delay > 150_000, "a backlog of some 196 ms: {delay} us");
    std::thread::sleep(Duration::from_millis(300));
    let c = Instant::now();
    rt.block_on(sampler.round(&shared, &kernel));
    let d = Instant::now();
    let t = row(&backend);
    assert_eq!(t.queue_delay_us, Some(0), "sent out by now: {t:?}");
    let bits = (sent * FRAME * 8) as f64;
    let (slow, fast) = (
        bits / d.duration_since(a).as_secs_f64(),
        bits / c.duration_since(b).as_secs_f64(),
    );
    let rate = t.rate_bps.expect("two samples") as f64;
    eprintln!(
        "EDT row: {} bytes, {} packets, {:?} marks; queue delay {delay} us in {lo}..={hi}; rate {rate} bit/s in {slow:.0}..={fast:.0}",
        t.bytes, t.packets, t.marks
    );
    assert!(
        (slow.floor()..=fast.ceil()).contains(&rate),
        "rate {rate} bit/s outside {slow:.0}..={fast:.0}"
    );
    // Idle: a third sample with nothing sent.
    rt.block_on(sampler.round(&shared, &kernel));
    let t = row(&backend);
    assert_eq!((t.rate_bps, t.bytes), (Some(0), sent * FRAME), "{t:?}");
    // The entry gone (a DEL), its samples go with it.
    backend.delete_endpoint("c0", "eth0").unwrap();
    rt.block_on(sampler.round(&shared, &kernel));
    assert!(shared
        .lock()
        .unwrap()
        .shaping
        .rates
        .rate_bps(
            super::sampler::Source::Edt,
            src,
            crate::state::Direction::Egress
        )
        .is_none());
    let _ = std::fs::remove_dir_all(dir);
}
