//! The achieved rate of shaped endpoints: podnetd samples the shaper's
//! counters about once a second, on its own (one walk of the EDT map; one
//! class and one filter dump per HTB device; never a pass), keeps the last
//! two samples of each address, and the request path serves
//! Δbytes·8/Δt over the last interval. The kernel is read outside the lock
//! the request path and the passes share; the lock is held only to see
//! what to read and to store what was read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::shared::Shared;
use crate::kernel::Kernel;
use crate::shaping::Endpoints;
use crate::state::{Direction, HtbClass};

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What a sample is of: the EDT map or the HTB classes. A source that
/// could not be read keeps its samples; only its own addresses are
/// forgotten when it no longer has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Edt,
    Htb,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes: u64,
}

/// The last two samples of every shaped address, per source and direction.
#[derive(Default)]
pub struct Rates {
    samples: HashMap<(Source, IpAddr, Direction), (Option<Sample>, Sample)>,
    /// Each HTB address's class (its rate and counters) as the last
    /// sample read it (the list of endpoints reads no tc classes itself).
    pub htb: BTreeMap<IpAddr, HtbClass>,
    /// The same for each address's ingress class on podnet's ifb.
    pub htb_ingress: BTreeMap<IpAddr, HtbClass>,
    /// When that sample was read.
    pub htb_at: Option<Instant>,
}

impl Rates {
    /// Stores one sample of `source` taken at `at`: the byte counter of
    /// every address it has now. Addresses of `source` it no longer has are
    /// forgotten.
    pub fn record(
        &mut self,
        source: Source,
        at: Instant,
        counters: impl IntoIterator<Item = (IpAddr, Direction, u64)>,
    ) {
        let seen: BTreeSet<(IpAddr, Direction)> = self.update(source, at, counters);
        self.samples
            .retain(|(s, ip, d), _| *s != source || seen.contains(&(*ip, *d)));
    }

    /// Stores the counters of some of `source`'s addresses (the others
    /// could not be read), forgetting none. A counter that went back (an
    /// entry or a class made anew) starts over from this sample.
    pub fn update(
        &mut self,
        source: Source,
        at: Instant,
        counters: impl IntoIterator<Item = (IpAddr, Direction, u64)>,
    ) -> BTreeSet<(IpAddr, Direction)> {
        let mut seen = BTreeSet::new();
        for (ip, direction, bytes) in counters {
            let key = (source, ip, direction);
            seen.insert((ip, direction));
            let now = Sample { at, bytes };
            let pair = match self.samples.get(&key) {
                Some((_, last)) if last.bytes <= bytes && last.at < at => (Some(*last), now),
                _ => (None, now),
            };
            self.samples.insert(key, pair);
        }
        seen
    }

    /// Forgets every sample (nothing is shaped any more).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.htb.clear();
        self.htb_ingress.clear();
        self.htb_at = None;
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.htb.is_empty() && self.htb_ingress.is_empty()
    }

    /// bit/s over the last interval; None until two samples exist.
    pub fn rate_bps(&self, source: Source, ip: IpAddr, direction: Direction) -> Option<u64> {
        let (older, newer) = self.samples.get(&(source, ip, direction))?;
        let older = older.as_ref()?;
        let secs = newer.at.duration_since(older.at).as_secs_f64();
        (secs > 0.0).then(|| ((newer.bytes - older.bytes) as f64 * 8.0 / secs).round() as u64)
    }
}

/// What one round must read, as the view says under the lock.
struct Wanted {
    /// The map's id when an EDT device is shaped.
    edt_map: Option<u32>,
    /// The HTB devices shaped now, with the direction their classes
    /// shape: masters egress, the ifb and veth pods' veths ingress.
    htb: Vec<(String, Direction)>,
}

/// The sampler's own handles, kept from round to round.
pub struct Sampler {
    pin_dir: PathBuf,
    map: Option<Endpoints>,
    ifindex: HashMap<String, u32>,
}

impl Sampler {
    pub fn new(pin_dir: PathBuf) -> Sampler {
        Sampler {
            pin_dir,
            map: None,
            ifindex: HashMap::new(),
        }
    }

    /// One round: see what is shaped, read its counters, store them.
    /// Nothing shaped: no kernel read at all.
    pub async fn round(&mut self, shared: &Mutex<Shared>, kernel: &Kernel) {
        let wanted = {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let view = &s.shaping;
            let edt = view.shaped.keys().any(|d| !view.htb.contains(d))
                || view.ingress == Some("edt")
                || view.pod_ingress.values().any(|b| *b == "edt");
            let masters = view
                .htb
                .iter()
                .filter(|d| view.shaped.contains_key(*d))
                .map(|d| (d.clone(), Direction::Egress));
            let ifb = (view.ingress == Some("htb")).then(|| {
                (
                    crate::shaping::INGRESS_DEVICE.to_string(),
                    Direction::Ingress,
                )
            });
            let veths = view
                .pod_ingress
                .iter()
                .filter(|(_, b)| **b == "htb")
                .map(|(v, _)| (v.clone(), Direction::PodIngress));
            let wanted = Wanted {
                edt_map: edt
                    .then(|| view.map.as_ref().and_then(|m| m.id().ok()))
                    .flatten(),
                htb: masters.chain(ifb).chain(veths).collect(),
            };
            if wanted.edt_map.is_none() && wanted.htb.is_empty() && !s.shaping.rates.is_empty() {
                s.shaping.rates.clear();
            }
            wanted
        };
        if wanted.edt_map.is_none() {
            self.map = None;
        } else {
            self.sample_edt(shared, wanted.edt_map).await;
        }
        if !wanted.htb.is_empty() {
            self.sample_htb(shared, kernel, &wanted.htb).await;
        }
    }

    async fn sample_edt(&mut self, shared: &Mutex<Shared>, map_id: Option<u32>) {
        // The pass may have loaded a new map (its pin was gone): follow it.
        if self.map.as_ref().and_then(|m| m.id().ok()) != map_id {
            self.map = match Endpoints::open(&self.pin_dir) {
                Ok(m) => Some(m),
                Err(e) => {
                    debug!("sampling: opening the endpoint map: {e}");
                    None
                }
            };
        }
        let Some(map) = self.map.take() else { return };
        // A walk of the map is a syscall per entry: off the runtime's
        // thread, which also serves the socket.
        let walked = tokio::task::spawn_blocking(move || {
            let stats = map.stats();
            (map, stats, Instant::now())
        })
        .await;
        let (map, stats, at) = match walked {
            Ok(w) => w,
            Err(e) => {
                warn!("sampling the endpoint map: {e}");
                return;
            }
        };
        self.map = Some(map);
        match stats {
            Ok(stats) => {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                s.shaping.rates.record(
                    Source::Edt,
                    at,
                    stats.iter().map(|e| (e.ip, e.direction, e.bytes)),
                );
            }
            Err(e) => debug!("sampling: reading the endpoint map: {e}"),
        }
    }

    async fn sample_htb(
        &mut self,
        shared: &Mutex<Shared>,
        kernel: &Kernel,
        devices: &[(String, Direction)],
    ) {
        // The sample is of the kernel as it was from here on: a pass that
        // ends during the read is not taken as seen by it.
        let at = Instant::now();
        let (mut classes, mut ingress) = (BTreeMap::new(), BTreeMap::new());
        let mut counters = Vec::new();
        let mut complete = true;
        for (device, dir) in devices {
            match htb_classes(kernel, device, &mut self.ifindex).await {
                Ok(c) => {
                    counters.extend(c.iter().map(|(ip, c)| (*ip, *dir, c.stats.bytes)));
                    // The ifb's and the veths' classes are the addresses'
                    // ingress ones (their filters match the destination).
                    match dir {
                        Direction::Egress => classes.extend(c),
                        _ => ingress.extend(c),
                    }
                }
                Err(e) => {
                    debug!("sampling: {e}");
                    complete = false;
                }
            }
        }
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        let rates = &mut s.shaping.rates;
        if complete {
            rates.record(Source::Htb, at, counters);
            rates.htb = classes;
            rates.htb_ingress = ingress;
            rates.htb_at = Some(at);
        } else {
            // A device not read this time keeps its addresses' samples.
            rates.update(Source::Htb, at, counters);
            rates.htb.extend(classes);
            rates.htb_ingress.extend(ingress);
        }
    }
}

/// The class each address's u32 filter sends to on `device`'s HTB root,
/// read from the kernel now (one class dump, one filter dump). `ifindex`
/// caches the device's index; a failed read forgets it (the device may
/// have been made anew).
pub async fn htb_classes(
    kernel: &Kernel,
    device: &str,
    ifindex: &mut HashMap<String, u32>,
) -> crate::error::Result<BTreeMap<IpAddr, HtbClass>> {
    let cached = ifindex.get(device).copied();
    let index = match cached {
        Some(i) => i,
        None => {
            let i = crate::shaping::ifindex(kernel, device).await?;
            ifindex.insert(device.to_string(), i);
            i
        }
    };
    // Counters and rates only: the leaves' options are not needed.
    let leaves = crate::shaping::tc::Qdiscs(Vec::new());
    let mut tree = match crate::shaping::tc::htb_tree(kernel, device, index, &leaves).await {
        Ok(t) => t,
        Err(e) => {
            ifindex.remove(device);
            return Err(e);
        }
    };
    // Nothing at a cached index: the device may have been made anew under
    // its name (podnet's ifb is, after its last ingress limit went), and
    // a dump of an index no device has is empty, not an error.
    if cached.is_some() && tree.classes.is_empty() && tree.filters.is_empty() {
        ifindex.remove(device);
        let fresh = crate::shaping::ifindex(kernel, device).await?;
        ifindex.insert(device.to_string(), fresh);
        if fresh != index {
            tree = crate::shaping::tc::htb_tree(kernel, device, fresh, &leaves).await?;
        }
    }
    let mut out = BTreeMap::new();
    for f in &tree.filters {
        let class = tree.classes.iter().find(|c| Some(c.minor) == f.class);
        if let (Some(ip), Some(c)) = (f.ip, class) {
            out.insert(ip, c.clone());
        }
    }
    Ok(out)
}

/// Samples every [`SAMPLE_EVERY`] until `stop` fires.
pub async fn run(
    shared: Arc<Mutex<Shared>>,
    kernel: Kernel,
    pin_dir: PathBuf,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut sampler = Sampler::new(pin_dir);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => sampler.round(&shared, &kernel).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_rate_is_the_last_intervals_bytes_over_its_time() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let a = ip("10.0.0.5");
        r.record(Source::Htb, t0, [(a, Direction::Egress, 1000)]);
        assert_eq!(
            r.rate_bps(Source::Htb, a, Direction::Egress),
            None,
            "one sample"
        );
        r.record(
            Source::Htb,
            t0 + Duration::from_millis(500),
            [(a, Direction::Egress, 1000 + 625_000)],
        );
        assert_eq!(
            r.rate_bps(Source::Htb, a, Direction::Egress),
            Some(10_000_000)
        );
        r.record(
            Source::Htb,
            t0 + Duration::from_millis(1500),
            [(a, Direction::Egress, 1000 + 625_000)],
        );
        assert_eq!(
            r.rate_bps(Source::Htb, a, Direction::Egress),
            Some(0),
            "idle"
        );
        assert_eq!(
            r.rate_bps(Source::Edt, a, Direction::Egress),
            None,
            "by source"
        );
    }

    #[test]
    fn a_counter_that_goes_back_starts_over_and_gone_addresses_are_forgotten() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let (a, b) = (ip("10.0.0.5"), ip("10.0.0.6"));
        r.record(
            Source::Edt,
            t0,
            [(a, Direction::Egress, 5000), (b, Direction::Egress, 1)],
        );
        r.record(Source::Htb, t0, [(a, Direction::Egress, 7)]);
        let t1 = t0 + Duration::from_secs(1);
        r.record(Source::Edt, t1, [(a, Direction::Egress, 10)]);
        assert_eq!(
            r.rate_bps(Source::Edt, a, Direction::Egress),
            None,
            "made anew"
        );
        assert_eq!(r.rate_bps(Source::Edt, b, Direction::Egress), None);
        assert!(
            !r.samples.contains_key(&(Source::Edt, b, Direction::Egress)),
            "b's entry is gone"
        );
        assert!(
            r.samples.contains_key(&(Source::Htb, a, Direction::Egress)),
            "another source's sample stays"
        );
        r.record(
            Source::Edt,
            t1 + Duration::from_secs(2),
            [(a, Direction::Egress, 1010)],
        );
        assert_eq!(r.rate_bps(Source::Edt, a, Direction::Egress), Some(4000));
    }
}
