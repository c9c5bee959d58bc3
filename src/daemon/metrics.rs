//! `GET /metrics`: the daemon in the Prometheus/OpenMetrics text format.
//!
//! The counters the reconcile loop keeps live here (atomics, cheap to bump
//! under the shared lock); the per-endpoint traffic is read from the
//! shaper's map or the HTB classes at scrape time, exactly as
//! `GET /v1/endpoints` reports it, so the two never disagree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::api::types::{EndpointRecord, Reconcile, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    trigger: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    container_id: String,
    ifname: String,
    direction: String,
    backend: String,
}

/// What the reconcile loop counts.
#[derive(Clone)]
pub struct Metrics {
    passes: Family<PassLabels, Counter>,
    durations: Histogram,
    repairs: Family<ObjectLabels, Counter>,
    errors: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            passes: Family::default(),
            // 0.5 ms to about 4 s: a converged pass takes about a
            // millisecond, a first apply of many endpoints seconds.
            durations: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            repairs: Family::default(),
            errors: Family::default(),
        }
    }
}

impl Metrics {
    /// One reconcile pass, as reported.
    pub fn pass(&self, report: &Reconcile) {
        self.passes
            .get_or_create(&PassLabels {
                trigger: report.trigger.clone(),
                outcome: report.outcome.clone(),
            })
            .inc();
        self.durations.observe(report.took_ms / 1e3);
        let kind = match report.outcome.as_str() {
            "failed" => "apply",
            "blocked" => "blocked",
            _ => return,
        };
        self.error(kind);
    }

    /// An error outside a pass's report (`files`: an edit rejected).
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// An object changed by something else and put back by a pass.
    pub fn repaired(&self, object: &str) {
        self.repairs
            .get_or_create(&ObjectLabels {
                object: object.into(),
            })
            .inc();
    }

    /// The text of a scrape: the counters, the state in `status`, and the
    /// traffic of `endpoints`.
    pub fn render(&self, status: &Status, endpoints: &[EndpointRecord]) -> String {
        let mut r = Registry::with_prefix("podnet");
        r.register(
            "reconciles",
            "Reconcile passes, by what started them and how they ended",
            self.passes.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "How long reconcile passes took",
            Unit::Seconds,
            self.durations.clone(),
        );
        r.register(
            "drift_repairs",
            "Objects changed by something else and put back, by object",
            self.repairs.clone(),
        );
        r.register(
            "errors",
            "Errors by kind: files (an edit rejected), apply (a pass failed), blocked (a plan could not run)",
            self.errors.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
            let g: Gauge = Gauge::default();
            g.set(v);
            r.register(name, help, g);
        };
        gauge(
            &mut r,
            "generation",
            "Generation of the node files in force",
            status.generation as i64,
        );
        gauge(
            &mut r,
            "converged_generation",
            "Newest generation the host was verified to match (-1: none yet)",
            status.converged_generation.map_or(-1, |g| g as i64),
        );
        gauge(
            &mut r,
            "converged",
            "1 when the host matches the node files in force",
            i64::from(status.converged),
        );
        gauge(
            &mut r,
            "fights",
            "Objects another agent keeps changing back, left alone for now",
            status.fights.len() as i64,
        );
        gauge(
            &mut r,
            "endpoints",
            "Pod interfaces registered by the CNI plugin",
            endpoints.len() as i64,
        );
        let bytes = Family::<TrafficLabels, Counter>::default();
        let packets = Family::<TrafficLabels, Counter>::default();
        let drops = Family::<TrafficLabels, Counter>::default();
        for e in endpoints {
            for t in &e.traffic {
                let labels = TrafficLabels {
                    container_id: e.container_id.clone(),
                    ifname: e.ifname.clone(),
                    direction: t.direction.clone(),
                    backend: t.backend.clone(),
                };
                bytes.get_or_create(&labels).inc_by(t.bytes);
                packets.get_or_create(&labels).inc_by(t.packets);
                drops.get_or_create(&labels).inc_by(t.drops);
            }
        }
        r.register_with_unit(
            "endpoint_shaped",
            "Bytes an endpoint's shaper let through, on the wire",
            Unit::Bytes,
            bytes,
        );
        r.register(
            "endpoint_shaped_packets",
            "Packets an endpoint's shaper let through",
            packets,
        );
        r.register(
            "endpoint_drops",
            "Packets an endpoint's shaper dropped (EDT: past the horizon; HTB: by the class's leaf)",
            drops,
        );
        process(&mut r);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// The daemon's own memory and CPU, read with sysinfo.
fn process(r: &mut Registry) {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(std::process::id());
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    let Some(p) = sys.process(pid) else { return };
    let resident: Gauge = Gauge::default();
    resident.set(p.memory() as i64);
    r.register_with_unit(
        "process_resident_memory",
        "podnetd's resident memory",
        Unit::Bytes,
        resident,
    );
    let cpu = Counter::<f64>::default();
    cpu.inc_by(p.accumulated_cpu_time() as f64 / 1e3);
    r.register_with_unit(
        "process_cpu",
        "CPU time podnetd used, user and system",
        Unit::Seconds,
        cpu,
    );
}
