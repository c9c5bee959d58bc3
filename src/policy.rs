//! Which rates a pod gets: its tier, the rates it asked for (Kubernetes'
//! bandwidth annotations, through the CNI `bandwidth` capability), and the
//! node's policy in `[shaping]`.
//!
//! The rules, per direction:
//! - the pod's tier is the one it names, else `shaping.default_tier`;
//! - with no explicit rate, the tier's rate applies (none: not limited);
//! - an explicit rate under `annotations = "cap"` (the default) is honoured,
//!   but never above `shaping.max_rate`;
//! - under `annotations = "tier"` it becomes the slowest tier at least as
//!   fast (the fastest tier when none is), so operators keep a few classes;
//! - under `annotations = "ignore"` only the tier counts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::api::types::{EndpointRecord, Limits as RecordLimits};
use crate::shaping::{EgressLimit, DEFAULT_BURST_BYTES, DEFAULT_HORIZON};
use crate::state::Direction;

use crate::config::{AnnotationPolicy, NodeConfig, Rate, ShapingBackend};

/// The backend the node files ask for (`auto` when unset).
pub fn backend(config: &NodeConfig) -> ShapingBackend {
    config
        .shaping
        .as_ref()
        .and_then(|s| s.backend)
        .unwrap_or(ShapingBackend::Auto)
}

/// The masters the node files have shaped (by EDT or HTB, as [`backend`]
/// and the kernel decide): `shaping = true`, or by default once
/// `[shaping]` exists.
pub fn shaping_masters(config: &NodeConfig) -> BTreeSet<String> {
    let by_default = config.shaping.is_some();
    config
        .masters
        .iter()
        .filter(|(_, m)| m.shaping.unwrap_or(by_default))
        .map(|(name, _)| name.clone())
        .collect()
}

/// How long an endpoint's packets may wait in its EDT queue: the drop
/// horizon and the CE-marking threshold. A tier's own values win, then
/// `[shaping]`'s, then defaults that follow the endpoint's rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queueing {
    horizon: Option<Duration>,
    ce_threshold: Option<Duration>,
    /// tier -> (horizon, ce_threshold)
    tiers: BTreeMap<String, (Option<Duration>, Option<Duration>)>,
}

/// The shortest default horizon. bench/latency: with 128 connections at
/// 100M, each keeping at least two segments queued (387 KB, 31 ms), 25 ms
/// and 100 ms dropped enough to leave the link 70-85% used; 250 ms kept it
/// at 91-100%.
pub const MIN_DEFAULT_HORIZON: Duration = Duration::from_millis(250);
/// The shortest default marking threshold: fq_codel's target. bench/latency
/// at 100M: 1 ms held one flow at 97-99% and 128 at 85-91% of the limit;
/// 2 ms one flow at 96.8-99.9% (short of the limit when the guest's RTT
/// jittered by more than the threshold); 5 ms at 99.9%. A pod's probes do
/// not wait for it either way: they take the lane ahead of the queue.
pub const MIN_DEFAULT_CE_THRESHOLD: Duration = Duration::from_millis(5);

/// The time `bytes` take at `rate_bps` (None for no rate).
fn time_at(bytes: u64, rate_bps: u64) -> Option<Duration> {
    (rate_bps > 0).then(|| {
        Duration::from_nanos(
            u64::try_from(u128::from(bytes) * 8 * 1_000_000_000 / u128::from(rate_bps))
                .unwrap_or(u64::MAX),
        )
    })
}

impl Queueing {
    /// What the node files say.
    pub fn of(config: &NodeConfig) -> Queueing {
        let shaping = config.shaping.as_ref();
        Queueing {
            horizon: shaping.and_then(|s| s.horizon).map(|h| h.0),
            ce_threshold: shaping.and_then(|s| s.ce_threshold).map(|d| d.0),
            tiers: config
                .tiers
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        (t.horizon.map(|h| h.0), t.ce_threshold.map(|d| d.0)),
                    )
                })
                .collect(),
        }
    }

    fn tier(&self, tier: Option<&str>) -> (Option<Duration>, Option<Duration>) {
        tier.and_then(|t| self.tiers.get(t))
            .copied()
            .unwrap_or_default()
    }

    /// The drop horizon of an endpoint of `tier` at `rate_bps`: by default
    /// the time four 64 KiB packets take at the rate (a TCP flow keeps at
    /// most about two of them queued, so one flow alone never reaches it),
    /// at least 250 ms, at most the 2 s Cilium uses.
    pub fn horizon(&self, tier: Option<&str>, rate_bps: u64) -> Duration {
        self.tier(tier).0.or(self.horizon).unwrap_or_else(|| {
            time_at(4 * DEFAULT_BURST_BYTES, rate_bps)
                .unwrap_or_default()
                .clamp(MIN_DEFAULT_HORIZON, DEFAULT_HORIZON)
        })
    }

    /// The marking threshold of an endpoint of `tier` at `rate_bps`: by
    /// default 5 ms, or two full 1514-byte frames at the rate when that is
    /// longer (below ~4.8 Mbit/s), so a queue of one frame is not a mark.
    pub fn ce_threshold(&self, tier: Option<&str>, rate_bps: u64) -> Duration {
        self.tier(tier).1.or(self.ce_threshold).unwrap_or_else(|| {
            time_at(2 * 1514, rate_bps)
                .unwrap_or_default()
                .max(MIN_DEFAULT_CE_THRESHOLD)
        })
    }
}

/// Whether any tier of the node files limits ingress (a pod may also ask
/// for one itself, which the registry shows).
pub fn any_ingress(config: &NodeConfig) -> bool {
    config.tiers.values().any(|t| t.ingress.is_some())
}

/// The map entry an endpoint's limits call for, if any.
pub fn egress_limit(limits: &RecordLimits, queueing: &Queueing) -> Option<EgressLimit> {
    limit_in(limits, queueing, Direction::Egress)
}

/// The limit an endpoint's limits call for in `direction`, if any: the
/// tier's queueing and burst either way.
pub fn limit_in(
    limits: &RecordLimits,
    queueing: &Queueing,
    direction: Direction,
) -> Option<EgressLimit> {
    let tier = limits.tier.as_deref();
    let rate = match direction {
        Direction::Egress => limits.egress,
        Direction::Ingress | Direction::PodIngress => limits.ingress,
    };
    rate.map(|rate| EgressLimit {
        rate_bps: rate,
        horizon: queueing.horizon(tier, rate),
        burst_bytes: limits.burst.map_or(DEFAULT_BURST_BYTES, |bits| bits / 8),
        ce_threshold: queueing.ce_threshold(tier, rate),
    })
}

/// Whether an endpoint's traffic leaves through a device in `devices`
/// (an endpoint that names no master may leave through any).
pub fn leaves_through(e: &EndpointRecord, devices: &BTreeSet<String>) -> bool {
    e.endpoint
        .master
        .as_ref()
        .map_or(!devices.is_empty(), |m| devices.contains(m))
}

/// The map's egress entries that the registered endpoints on `devices` need.
pub fn wanted(
    records: &[EndpointRecord],
    devices: &BTreeSet<String>,
    queueing: &Queueing,
) -> BTreeMap<IpAddr, EgressLimit> {
    wanted_in(records, devices, queueing, Direction::Egress)
}

/// The limits in `direction` of the registered endpoints (`records`, any
/// selection of them) whose traffic passes through a device in `devices`,
/// by address.
pub fn wanted_in<'a>(
    records: impl IntoIterator<Item = &'a EndpointRecord>,
    devices: &BTreeSet<String>,
    queueing: &Queueing,
    direction: Direction,
) -> BTreeMap<IpAddr, EgressLimit> {
    let mut wanted = BTreeMap::new();
    for e in records.into_iter().filter(|e| leaves_through(e, devices)) {
        let Some(limit) = e
            .limits
            .as_ref()
            .and_then(|l| limit_in(l, queueing, direction))
        else {
            continue;
        };
        for ip in &e.endpoint.ips {
            wanted.insert(ip.addr(), limit);
        }
    }
    wanted
}

/// What one endpoint is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// bit/s; None: not limited.
    pub egress: Option<u64>,
    pub ingress: Option<u64>,
    /// Bits above the rate that may leave at once.
    pub burst: Option<u64>,
    /// The tier the limits come from, when they come from one.
    pub tier: Option<String>,
}

/// The limits for a pod that names `tier` (or none) and asks for explicit
/// `egress`/`ingress` rates (or none). An undefined tier is an error.
pub fn limits(
    config: &NodeConfig,
    tier: Option<&str>,
    egress: Option<u64>,
    ingress: Option<u64>,
) -> Result<Limits, String> {
    let shaping = config.shaping.clone().unwrap_or_default();
    let name = tier.map(str::to_string).or(shaping.default_tier.clone());
    let base = match &name {
        Some(n) => Some(
            config
                .tiers
                .get(n)
                .ok_or_else(|| format!("undefined tier `{n}`"))?,
        ),
        None => None,
    };
    let policy = shaping.annotations.unwrap_or_default();
    let cap = shaping.max_rate.map(Rate::bits_per_second);
    let mut chosen = name.clone();
    let mut pick = |asked: Option<u64>, of_tier: fn(&crate::config::Tier) -> Option<Rate>| {
        let from_tier = base.and_then(of_tier).map(Rate::bits_per_second);
        match (asked, policy) {
            (None, _) | (Some(_), AnnotationPolicy::Ignore) => from_tier,
            (Some(r), AnnotationPolicy::Cap) => Some(cap.map_or(r, |c| r.min(c))),
            (Some(r), AnnotationPolicy::Tier) => {
                let mut tiers: Vec<(u64, &String)> = config
                    .tiers
                    .iter()
                    .filter_map(|(n, t)| of_tier(t).map(|x| (x.bits_per_second(), n)))
                    .collect();
                tiers.sort();
                let hit = tiers.iter().find(|(x, _)| *x >= r).or(tiers.last());
                match hit {
                    Some((x, n)) => {
                        chosen = Some((*n).clone());
                        Some(*x)
                    }
                    None => from_tier,
                }
            }
        }
    };
    let egress = pick(egress, |t| t.egress);
    let ingress = pick(ingress, |t| t.ingress);
    let burst = chosen
        .as_ref()
        .and_then(|n| config.tiers.get(n))
        .and_then(|t| t.burst)
        .map(|b| b.0);
    Ok(Limits {
        egress,
        ingress,
        burst,
        tier: chosen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_files;

    fn node(shaping: &str) -> NodeConfig {
        let text = format!(
            "version = 1\n\
             [tiers.gold]\negress = \"1G\"\ningress = \"1G\"\nburst = \"1Mbit\"\n\
             [tiers.silver]\negress = \"100M\"\ningress = \"100M\"\n\
             [tiers.bronze]\negress = \"10M\"\n\
             [shaping]\n{shaping}\n"
        );
        load_files(vec![("n.toml".into(), text)])
            .map_err(|d| d.render())
            .unwrap()
            .config
    }

    #[test]
    fn a_tier_alone_gives_its_rates() {
        let c = node("default_tier = \"silver\"");
        let l = limits(&c, None, None, None).unwrap();
        assert_eq!(
            (l.egress, l.ingress, l.tier.as_deref()),
            (Some(100_000_000), Some(100_000_000), Some("silver"))
        );
        let l = limits(&c, Some("gold"), None, None).unwrap();
        assert_eq!((l.egress, l.burst), (Some(1_000_000_000), Some(1_000_000)));
        let l = limits(&c, Some("bronze"), None, None).unwrap();
        assert_eq!((l.egress, l.ingress), (Some(10_000_000), None));
        assert!(limits(&c, Some("platinum"), None, None)
            .unwrap_err()
            .contains("undefined tier"));
    }

    #[test]
    fn without_a_tier_or_a_rate_nothing_is_limited() {
        let c = node("");
        assert_eq!(limits(&c, None, None, None).unwrap().egress, None);
    }

    #[test]
    fn explicit_rates_are_honoured_up_to_the_node_cap() {
        let c = node("default_tier = \"silver\"\nmax_rate = \"500M\"");
        let l = limits(&c, None, Some(200_000_000), None).unwrap();
        assert_eq!(
            (l.egress, l.ingress),
            (Some(200_000_000), Some(100_000_000))
        );
        let l = limits(&c, None, Some(2_000_000_000), Some(7_000_000)).unwrap();
        assert_eq!((l.egress, l.ingress), (Some(500_000_000), Some(7_000_000)));
    }

    #[test]
    fn explicit_rates_can_map_to_the_slowest_tier_that_is_fast_enough() {
        let c = node("annotations = \"tier\"");
        let l = limits(&c, None, Some(50_000_000), None).unwrap();
        assert_eq!(
            (l.egress, l.tier.as_deref()),
            (Some(100_000_000), Some("silver"))
        );
        let l = limits(&c, None, Some(5_000_000_000), None).unwrap();
        assert_eq!(
            (l.egress, l.tier.as_deref()),
            (Some(1_000_000_000), Some("gold"))
        );
    }

    #[test]
    fn queueing_follows_the_tier_then_the_node_then_the_rate() {
        let ms = Duration::from_millis;
        let q = Queueing::of(&node(""));
        // Defaults: four 64 KiB packets at the rate, within [250 ms, 2 s];
        // 5 ms or two full frames.
        assert_eq!(q.horizon(None, 100_000_000), ms(250));
        assert_eq!(
            q.horizon(None, 5_000_000),
            Duration::from_nanos(419_430_400)
        );
        assert_eq!(q.horizon(None, 1_000_000), DEFAULT_HORIZON);
        assert_eq!(q.ce_threshold(None, 100_000_000), ms(5));
        assert_eq!(q.ce_threshold(None, 10_000_000), ms(5));
        assert_eq!(
            q.ce_threshold(None, 2_000_000),
            Duration::from_nanos(12_112_000)
        );
        let text = "version = 1\n\
             [tiers.gold]\negress = \"1G\"\nhorizon = \"5ms\"\nce_threshold = \"200us\"\n\
             [tiers.silver]\negress = \"100M\"\n\
             [shaping]\nhorizon = \"50ms\"\nce_threshold = \"3ms\"\n";
        let c = load_files(vec![("n.toml".into(), text.into())])
            .map_err(|d| d.render())
            .unwrap()
            .config;
        let q = Queueing::of(&c);
        assert_eq!(q.horizon(Some("gold"), 1), ms(5));
        assert_eq!(q.ce_threshold(Some("gold"), 1), Duration::from_micros(200));
        assert_eq!(q.horizon(Some("silver"), 1), ms(50));
        assert_eq!(q.ce_threshold(None, 1), ms(3));
        let l = RecordLimits {
            egress: Some(1_000_000_000),
            ingress: None,
            burst: None,
            tier: Some("gold".into()),
        };
        let e = egress_limit(&l, &q).unwrap();
        assert_eq!(
            (e.horizon, e.ce_threshold),
            (ms(5), Duration::from_micros(200))
        );
    }

    #[test]
    fn explicit_rates_can_be_ignored() {
        let c = node("default_tier = \"bronze\"\nannotations = \"ignore\"");
        let l = limits(&c, None, Some(1), Some(1)).unwrap();
        assert_eq!((l.egress, l.ingress), (Some(10_000_000), None));
    }
}
