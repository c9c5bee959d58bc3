//! The daemon's side of EDT shaping: which masters shape, which map entries
//! the registered endpoints need, and the view the request path keeps so a
//! pod is shaped from its first packet (ADD writes its entries at once;
//! the next pass only confirms them) and CHECK can ask whether it is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tracing::warn;

use super::sampler::Source;
use crate::api::types::{EndpointRecord, Enforcement, Traffic};
use crate::policy::{egress_limit, leaves_through, limit_in};
use crate::shaping::{EndpointStats, Endpoints};
use crate::state::{Direction, HtbClass};

/// The map's entries by address and direction.
pub type Entries = BTreeMap<(IpAddr, Direction), EndpointStats>;

/// What the request path knows about shaping, refreshed by every pass.
#[derive(Default)]
pub struct ShapingView {
    /// The masters the node files have shaped.
    pub configured: BTreeSet<String>,
    /// Of those, the ones the last pass found shaped: device -> program id.
    pub shaped: BTreeMap<String, u32>,
    pub queueing: crate::policy::Queueing,
    /// The pinned endpoint map, for the request path's writes and reads.
    pub map: Option<Endpoints>,
    /// Of the shaped devices, those the HTB backend shapes: their limits
    /// are HTB classes a pass adds, not map entries.
    pub htb: BTreeSet<String>,
    /// The addresses whose HTB class and filter the last pass left in
    /// place, with their limit (bit/s).
    pub htb_in_force: BTreeMap<IpAddr, u64>,
    /// The shaped addresses' counters as podnetd's sampler last read them,
    /// for the achieved rate (and HTB's counters).
    pub rates: super::sampler::Rates,
    /// The ingress side as the last pass left it in force (podnet's ifb,
    /// its root and program, the redirects): its backend, `edt` or `htb`;
    /// None while podnet shapes no ingress.
    pub ingress: Option<&'static str>,
    /// With HTB ingress: the addresses whose class on the ifb (or on a
    /// veth pod's veth) the last pass left in place, with their limit.
    pub ingress_in_force: BTreeMap<IpAddr, u64>,
    /// The veth pods' host-side veths the last pass left shaping what the
    /// pods receive, with the backend (`edt` or `htb`).
    pub pod_ingress: BTreeMap<String, &'static str>,
    /// The veth pods' addresses the last pass wanted tagged (see
    /// `bpf/edt.c`, edt_classify) and did not leave so: a step on the tag
    /// or on the tag program on the pod's veth is undone.
    pub untagged: BTreeSet<IpAddr>,
    /// When the last pass refreshed this view.
    pub refreshed_at: Option<std::time::Instant>,
}

impl ShapingView {
    /// Writes the entries of a newly registered endpoint, so that it is
    /// shaped before ADD returns. False when that could not be done here
    /// (its master not shaped yet, or a failed write, which is logged):
    /// then a pass must do it.
    pub fn install(&mut self, e: &EndpointRecord) -> bool {
        let Some(limits) = e.limits.as_ref() else {
            return true;
        };
        if !leaves_through(e, &self.configured) {
            return true;
        }
        let shaped: BTreeSet<String> = self.shaped.keys().cloned().collect();
        let on_shaped = leaves_through(e, &shaped);
        // Ingress: where the ifb and the redirects are in force, the entry
        // written now makes the redirect take the pod's packets at once
        // (EDT shapes them from there; HTB once the pass adds the class).
        // Otherwise the ifb itself is the pass's to make.
        let ingress = self.ingress_of(e);
        let mut done = match limit_in(limits, &self.queueing, Direction::Ingress) {
            None => true,
            Some(limit) => match (ingress, self.map.as_mut()) {
                (Some((backend, dir)), Some(map)) if on_shaped => {
                    let written = write_entries(map, e, &limit, dir);
                    written && backend == "edt"
                }
                _ => false,
            },
        };
        let Some(limit) = egress_limit(limits, &self.queueing) else {
            return done;
        };
        // A veth pod's tag (past masquerade) is the pass's: a slot comes
        // from the whole tag map. Not in force until that pass says so.
        if e.endpoint.veth.is_some() && on_shaped {
            self.untagged
                .extend(e.endpoint.ips.iter().map(|i| i.addr()));
            done = false;
        }
        // An HTB class is a plan's step (its minor comes from the whole
        // tree): the pass this asks for adds it, within milliseconds.
        if leaves_through(e, &self.htb) {
            return false;
        }
        let Some(map) = self.map.as_mut().filter(|_| on_shaped) else {
            return false;
        };
        done &= write_entries(map, e, &limit, Direction::Egress);
        done
    }

    /// Removes the entries of an endpoint that is gone, except addresses
    /// another registered endpoint still holds (`held`). False after a
    /// failed removal (logged), or when the rest of it is a pass's (an HTB
    /// class, a veth pod's tag and programs): then a pass must do it.
    pub fn uninstall(&mut self, gone: &EndpointRecord, held: impl Fn(IpAddr) -> bool) -> bool {
        let by_pass = gone.endpoint.veth.is_some()
            || leaves_through(gone, &self.htb)
            || self.ingress == Some("htb");
        let Some(map) = self.map.as_mut() else {
            return !by_pass;
        };
        let mut done = true;
        for ip in &gone.endpoint.ips {
            if !held(ip.addr()) {
                // Its ingress entry too: the redirect stops at once (the
                // pass then takes its class or nothing else is left).
                for dir in [Direction::Egress, Direction::Ingress, Direction::PodIngress] {
                    if let Err(err) = map.remove_in(ip.addr(), dir) {
                        warn!("{}: removing the {dir} map entry: {err}", ip.addr());
                        done = false;
                    }
                }
            }
        }
        done && !by_pass
    }

    /// The map's entries by address and direction (one walk of the map).
    pub fn entries(&self) -> Result<Entries, String> {
        let map = self
            .map
            .as_ref()
            .ok_or_else(|| "the shaper's map is not open".to_string())?;
        let stats = map
            .stats()
            .map_err(|err| format!("reading the shaper's map: {err}"))?;
        Ok(stats
            .into_iter()
            .map(|s| ((s.ip, s.direction), s))
            .collect())
    }

    /// [`ShapingView::enforcement_in`] with the endpoint's own entries
    /// read now: one lookup per address, whatever the map holds.
    #[cfg(test)]
    pub fn enforcement(&self, e: &EndpointRecord) -> Option<Enforcement> {
        self.enforcement_in(e, &self.entries_of(e))
    }

    /// The map's entries of `e`'s addresses: one lookup per address and
    /// direction.
    pub fn entries_of(&self, e: &EndpointRecord) -> Result<Entries, String> {
        match &self.map {
            None => Err("the shaper's map is not open".to_string()),
            Some(map) => e
                .endpoint
                .ips
                .iter()
                .flat_map(|ip| {
                    [Direction::Egress, Direction::Ingress, Direction::PodIngress]
                        .map(|d| (ip.addr(), d))
                })
                .filter_map(|(ip, dir)| match map.get_in(ip, dir) {
                    Ok(Some(s)) => Some(Ok(((ip, dir), s))),
                    Ok(None) => None,
                    Err(err) => Some(Err(format!("reading the shaper's map: {err}"))),
                })
                .collect(),
        }
    }

    /// What the shaper does with `e`'s traffic, per direction it shapes:
    /// the limit, the rate over the sampler's last interval, and the
    /// counters (EDT: from `entries`, read now; HTB: the sampler's last
    /// read of the classes), summed over the addresses found. Empty when
    /// podnet does not shape `e`.
    pub fn traffic_in(
        &self,
        e: &EndpointRecord,
        entries: &Result<Entries, String>,
        now_ns: u64,
    ) -> Vec<Traffic> {
        let Some(limits) = e.limits.as_ref() else {
            return Vec::new();
        };
        if !leaves_through(e, &self.configured) {
            return Vec::new();
        }
        let mut rows = Vec::new();
        if let Some(limit) = egress_limit(limits, &self.queueing) {
            let htb = leaves_through(e, &self.htb);
            rows.push(self.row(e, Direction::Egress, limit.rate_bps, htb, entries, now_ns));
        }
        if let (Some(limit), Some((backend, dir))) = (
            limit_in(limits, &self.queueing, Direction::Ingress),
            self.ingress_of(e),
        ) {
            let htb = backend == "htb";
            rows.push(self.row(e, dir, limit.rate_bps, htb, entries, now_ns));
        }
        rows
    }

    /// One direction's row of [`ShapingView::traffic_in`].
    fn row(
        &self,
        e: &EndpointRecord,
        dir: Direction,
        limit_bps: u64,
        htb: bool,
        entries: &Result<Entries, String>,
        now_ns: u64,
    ) -> Traffic {
        let source = if htb { Source::Htb } else { Source::Edt };
        let classes = match dir {
            Direction::Egress => &self.rates.htb,
            Direction::Ingress | Direction::PodIngress => &self.rates.htb_ingress,
        };
        let mut row = Traffic {
            direction: dir.way().into(),
            backend: if htb { "htb" } else { "edt" }.into(),
            limit_bps,
            rate_bps: Some(0),
            bytes: 0,
            packets: 0,
            drops: 0,
            marks: (!htb).then_some(0),
            queue_delay_us: (!htb).then_some(0),
            overlimits: htb.then_some(0),
        };
        for ip in e.endpoint.ips.iter().map(|i| i.addr()) {
            row.rate_bps = row
                .rate_bps
                .zip(self.rates.rate_bps(source, ip, dir))
                .map(|(a, b)| a + b);
            if htb {
                if let Some(c) = classes.get(&ip) {
                    row.bytes += c.stats.bytes;
                    row.packets += c.stats.packets;
                    row.drops += c.stats.drops;
                    row.overlimits = row.overlimits.map(|o| o + c.stats.overlimits);
                }
            } else if let Some(s) = entries.as_ref().ok().and_then(|m| m.get(&(ip, dir))) {
                row.bytes += s.bytes;
                row.packets += s.packets;
                row.drops += s.drops;
                row.marks = row.marks.map(|m| m + s.marks);
                let delay = s.queue_delay_ns(now_ns) / 1000;
                row.queue_delay_us = row.queue_delay_us.map(|d| d.max(delay));
            }
        }
        row
    }

    /// Whether the endpoint's egress limit is in force now: its master is
    /// shaped and the map (`entries`, from [`ShapingView::entries`]) holds
    /// the right entry for each of its addresses. None when podnet does not
    /// shape it (no egress limit, or a master the node files do not shape).
    pub fn enforcement_in(
        &self,
        e: &EndpointRecord,
        entries: &Result<Entries, String>,
    ) -> Option<Enforcement> {
        self.enforcement_with(e, entries, self.htb_sampled())
    }

    /// The HTB classes the sampler read after the last pass refreshed this
    /// view, if it did: newer than what the pass left.
    fn htb_sampled(&self) -> Option<&BTreeMap<IpAddr, HtbClass>> {
        self.rates
            .htb_at
            .filter(|at| self.refreshed_at.is_none_or(|r| *at > r))
            .map(|_| &self.rates.htb)
    }

    /// The backend shaping `e`'s ingress now (its veth's for a veth pod,
    /// the ifb's for the others) and the map direction of its entries;
    /// None while nothing does.
    fn ingress_of(&self, e: &EndpointRecord) -> Option<(&'static str, Direction)> {
        match &e.endpoint.veth {
            Some(v) => self.pod_ingress.get(v).map(|b| (*b, Direction::PodIngress)),
            None => self.ingress.map(|b| (b, Direction::Ingress)),
        }
    }

    /// The ingress problems of `e`, which has ingress limit `limit_bps`:
    /// the ifb not in force, or an address without its ingress entry (EDT)
    /// or class (HTB: as the pass left it, and as the sampler read the
    /// ifb after it, at most a second ago).
    fn ingress_problems(
        &self,
        e: &EndpointRecord,
        limit_bps: u64,
        entries: &Result<Entries, String>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let Some((backend, dir)) = self.ingress_of(e) else {
            problems.push(match &e.endpoint.veth {
                Some(v) => format!("ingress: {v} is not shaped yet (see `podnetctl status`)"),
                None => format!(
                    "ingress: {} and its redirects are not in force yet (see `podnetctl status`)",
                    crate::shaping::INGRESS_DEVICE
                ),
            });
            return problems;
        };
        let sampled = self
            .rates
            .htb_at
            .filter(|at| self.refreshed_at.is_none_or(|r| *at > r))
            .map(|_| &self.rates.htb_ingress);
        for ip in e.endpoint.ips.iter().map(|i| i.addr()) {
            if backend == "htb" {
                match self.ingress_in_force.get(&ip) {
                    None => problems.push(format!(
                        "{ip}: no ingress HTB class in force yet (the next pass adds it)"
                    )),
                    Some(r) if *r != limit_bps => problems.push(format!(
                        "{ip}: the ingress HTB class holds {r} bit/s, the limit is {limit_bps} bit/s"
                    )),
                    Some(_) => {}
                }
                if sampled.is_some_and(|h| !h.contains_key(&ip))
                    && self.ingress_in_force.contains_key(&ip)
                {
                    problems.push(format!(
                        "{ip}: no ingress HTB class in the kernel (its class or u32 filter on {} was removed behind podnetd's back; the next pass puts it back)",
                        e.endpoint.veth.as_deref().unwrap_or(crate::shaping::INGRESS_DEVICE)
                    ));
                }
                continue;
            }
            match entries.as_ref().map(|m| m.get(&(ip, dir))) {
                Err(err) => problems.push(err.clone()),
                Ok(None) => problems.push(format!("{ip}: no ingress entry in the shaper's map")),
                Ok(Some(s)) if s.rate_bps != limit_bps => problems.push(format!(
                    "{ip}: the map holds {} bit/s for ingress, the limit is {limit_bps} bit/s",
                    s.rate_bps
                )),
                Ok(Some(_)) => {}
            }
        }
        problems
    }

    /// [`ShapingView::enforcement_in`], with HTB's classes as the kernel
    /// holds them (`htb`, by address: from a read after the last pass) when
    /// there is such a read: a class or filter removed, or a rate changed,
    /// behind podnetd's back since the pass is then seen, not assumed.
    pub fn enforcement_with(
        &self,
        e: &EndpointRecord,
        entries: &Result<Entries, String>,
        htb: Option<&BTreeMap<IpAddr, HtbClass>>,
    ) -> Option<Enforcement> {
        if !leaves_through(e, &self.configured) {
            return None;
        }
        let limits = e.limits.as_ref()?;
        let ingress = limit_in(limits, &self.queueing, Direction::Ingress)
            .map(|l| self.ingress_problems(e, l.rate_bps, entries));
        let Some(limit) = egress_limit(limits, &self.queueing) else {
            return ingress.map(|problems| Enforcement {
                enforced: problems.is_empty(),
                device: e.endpoint.master.clone(),
                problems,
            });
        };
        let mut problems = ingress.unwrap_or_default();
        for ip in e.endpoint.ips.iter().map(|i| i.addr()) {
            if self.untagged.contains(&ip) {
                problems.push(format!(
                    "{ip}: its egress tag is not in force yet (past masquerade its packets would leave unshaped; the next pass puts it in place)"
                ));
            }
        }
        if leaves_through(e, &self.htb) {
            for ip in &e.endpoint.ips {
                match self.htb_in_force.get(&ip.addr()) {
                    None => problems.push(format!(
                        "{}: no HTB class in force yet (the next pass adds it; see `podnetctl status`)",
                        ip.addr()
                    )),
                    Some(r) if *r != limit.rate_bps => problems.push(format!(
                        "{}: the HTB class holds {r} bit/s, the limit is {} bit/s",
                        ip.addr(),
                        limit.rate_bps
                    )),
                    Some(_) => {}
                }
                match htb.map(|h| h.get(&ip.addr())) {
                    Some(None) if self.htb_in_force.contains_key(&ip.addr()) => problems.push(format!(
                        "{}: no HTB class in the kernel (its class or u32 filter on {} was removed behind podnetd's back since its last pass; the next pass puts it back)",
                        ip.addr(),
                        e.endpoint.master.as_deref().unwrap_or("its master")
                    )),
                    Some(Some(c)) if c.rate_bps != limit.rate_bps => problems.push(format!(
                        "{}: the kernel's HTB class 706e:{:x} holds {} bit/s, the limit is {} bit/s",
                        ip.addr(),
                        c.minor,
                        c.rate_bps,
                        limit.rate_bps
                    )),
                    _ => {}
                }
            }
            return Some(Enforcement {
                enforced: problems.is_empty(),
                device: e.endpoint.master.clone(),
                problems,
            });
        }
        match &e.endpoint.master {
            Some(m) if !self.shaped.contains_key(m) => {
                problems.push(format!("{m} is not shaped yet (see `podnetctl status`)"))
            }
            None if self.shaped.is_empty() => {
                problems.push("no master is shaped yet (see `podnetctl status`)".into())
            }
            _ => {}
        }
        match entries {
            Err(err) => problems.push(err.clone()),
            Ok(have) if problems.is_empty() => {
                for ip in &e.endpoint.ips {
                    match have.get(&(ip.addr(), Direction::Egress)) {
                        None => {
                            problems.push(format!("{}: no entry in the shaper's map", ip.addr()))
                        }
                        Some(s) if !limit.matches(s) => problems.push(format!(
                            "{}: the map holds {} bit/s, the limit is {} bit/s",
                            ip.addr(),
                            s.rate_bps,
                            limit.rate_bps
                        )),
                        Some(_) => {}
                    }
                }
            }
            Ok(_) => {}
        }
        Some(Enforcement {
            enforced: problems.is_empty(),
            device: e.endpoint.master.clone(),
            problems,
        })
    }
}

/// Writes `e`'s entries in `dir` at `limit`; false after a failed write
/// (logged).
fn write_entries(
    map: &mut Endpoints,
    e: &EndpointRecord,
    limit: &crate::shaping::EgressLimit,
    dir: Direction,
) -> bool {
    let mut done = true;
    for ip in &e.endpoint.ips {
        if let Err(err) = map.set_in(ip.addr(), limit, dir) {
            warn!("{}: writing the {dir} map entry: {err}", ip.addr());
            done = false;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Endpoint, Limits};

    fn record(master: Option<&str>, egress: Option<u64>) -> EndpointRecord {
        EndpointRecord {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            endpoint: Endpoint {
                netns: None,
                ips: vec!["10.0.0.5/24".parse().unwrap()],
                master: master.map(Into::into),
                veth: None,
                tier: None,
                egress,
                ingress: None,
                network: None,
                vf: None,
                rdma: None,
            },
            registered_at: 0,
            limits: Some(Limits {
                egress,
                ingress: None,
                burst: Some(8000),
                tier: None,
            }),
            enforcement: None,
            traffic: Vec::new(),
        }
    }

    fn view(configured: &[&str], shaped: &[&str]) -> ShapingView {
        ShapingView {
            configured: configured.iter().map(|s| s.to_string()).collect(),
            shaped: shaped.iter().map(|s| (s.to_string(), 7)).collect(),
            queueing: Default::default(),
            map: None,
            htb: Default::default(),
            htb_in_force: Default::default(),
            rates: Default::default(),
            refreshed_at: None,
            ingress: None,
            ingress_in_force: Default::default(),
            pod_ingress: Default::default(),
            untagged: Default::default(),
        }
    }

    /// An endpoint with an ingress limit alone: its ADD asks for a pass
    /// while the ifb is not in force (the pass makes it); with HTB ingress
    /// it is in force once the pass left its class on the ifb at the
    /// limit, and /v1/endpoints then has an `ingress` row and no egress one.
    #[test]
    fn an_ingress_limit_is_in_force_once_the_ifb_and_its_class_are() {
        let mut v = view(&["m0"], &["m0"]);
        let mut e = record(Some("m0"), None);
        e.limits.as_mut().unwrap().ingress = Some(50_000_000);
        assert!(!v.install(&e), "ADD must ask for a pass");
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(!got.enforced);
        assert!(got.problems[0].contains("podnet-ifb"), "{got:?}");
        assert!(v.traffic_in(&e, &Ok(BTreeMap::new()), 0).is_empty());
        v.ingress = Some("htb");
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(
            got.problems[0].contains("no ingress HTB class in force yet"),
            "{got:?}"
        );
        v.ingress_in_force = [("10.0.0.5".parse().unwrap(), 50_000_000)].into();
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(got.enforced, "{got:?}");
        let rows = v.traffic_in(&e, &Ok(BTreeMap::new()), 0);
        assert_eq!(
            rows.iter()
                .map(|t| (t.direction.as_str(), t.backend.as_str(), t.limit_bps))
                .collect::<Vec<_>>(),
            [("ingress", "htb", 50_000_000)]
        );
        // EDT ingress: the entry in the map is what is in force.
        v.ingress = Some("edt");
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(
            got.problems[0].contains("no ingress entry in the shaper's map"),
            "{got:?}"
        );
    }

    /// An HTB endpoint is in force once a pass left its class in place at
    /// its limit; its ADD asks for that pass instead of writing the map.
    #[test]
    fn an_htb_endpoint_is_in_force_once_a_pass_left_its_class() {
        let mut v = view(&["m0"], &["m0"]);
        v.htb = ["m0".to_string()].into();
        let e = record(Some("m0"), Some(100_000_000));
        assert!(!v.install(&e), "ADD must ask for a pass");
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(!got.enforced);
        assert!(
            got.problems[0].contains("no HTB class in force yet"),
            "{got:?}"
        );
        v.htb_in_force = [("10.0.0.5".parse().unwrap(), 10_000_000)].into();
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(got.problems[0].contains("holds 10000000 bit/s"), "{got:?}");
        v.htb_in_force = [("10.0.0.5".parse().unwrap(), 100_000_000)].into();
        let got = v.enforcement_in(&e, &Ok(BTreeMap::new())).unwrap();
        assert!(got.enforced, "{got:?}");
    }

    #[test]
    fn nothing_to_enforce_without_a_limit_or_a_shaping_master() {
        assert_eq!(
            view(&["m0"], &["m0"]).enforcement(&record(Some("m0"), None)),
            None
        );
        assert_eq!(
            view(&["m1"], &["m1"]).enforcement(&record(Some("m0"), Some(1_000_000))),
            None
        );
        assert_eq!(
            view(&[], &[]).enforcement(&record(None, Some(1_000_000))),
            None
        );
    }

    #[test]
    fn a_configured_master_not_yet_shaped_is_reported() {
        let e = view(&["m0"], &[]).enforcement(&record(Some("m0"), Some(1_000_000)));
        let e = e.expect("m0 shapes");
        assert!(!e.enforced);
        assert_eq!(e.device.as_deref(), Some("m0"));
        assert_eq!(
            e.problems,
            [
                "m0 is not shaped yet (see `podnetctl status`)",
                "the shaper's map is not open"
            ]
        );
    }

    #[test]
    fn without_the_map_nothing_is_claimed() {
        let e = view(&["m0"], &["m0"])
            .enforcement(&record(Some("m0"), Some(1_000_000)))
            .expect("m0 shapes");
        assert!(!e.enforced);
        assert_eq!(e.problems, ["the shaper's map is not open"]);
    }

    #[test]
    fn wanted_entries_follow_masters_and_carry_the_burst() {
        let records = [
            record(Some("m0"), Some(10_000_000)),
            EndpointRecord {
                endpoint: Endpoint {
                    ips: vec!["10.0.1.5/24".parse().unwrap()],
                    ..record(Some("m1"), Some(5)).endpoint
                },
                ..record(Some("m1"), Some(5))
            },
        ];
        let devices: BTreeSet<String> = ["m0".to_string()].into();
        let w = crate::policy::wanted(&records, &devices, &crate::policy::Queueing::default());
        assert_eq!(w.len(), 1);
        let l = &w[&"10.0.0.5".parse::<IpAddr>().unwrap()];
        assert_eq!((l.rate_bps, l.burst_bytes), (10_000_000, 1000));
    }
}
