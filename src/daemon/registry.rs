//! The endpoint registry: the pod interfaces the CNI plugin registered,
//! kept in memory and on disk under `/var/lib/podnet`.
//!
//! On disk: a snapshot (`endpoints.json`) and an append log beside it
//! (`endpoints.log`, one JSON line per change). A request appends one line,
//! so its cost does not grow with the number of endpoints; once the log
//! holds more lines than there are endpoints (and at least
//! [`COMPACT_MIN`]), the snapshot is rewritten (a temporary file renamed
//! over it) and the log emptied. Every change is idempotent (put this
//! record, delete this key), so a crash (even `kill -9`) at any point,
//! compaction included, leaves the old or the new registry, never half of
//! one: a write the kernel took is read back, and a torn last line (a write
//! cut short) is ignored. There is no fsync: the registry describes running
//! pods, and after a power loss no pod is running any more.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::types::{Endpoint, EndpointRecord, Limits};

/// Where podnetd keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/podnet";

/// The log is compacted into the snapshot past this many lines, or past
/// as many lines as there are endpoints, whichever is more.
pub const COMPACT_MIN: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    endpoints: Vec<EndpointRecord>,
}

/// One line of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Put(Box<EndpointRecord>),
    Delete {
        container_id: String,
        ifname: String,
    },
}

type Key = (String, String);

/// The registry's content from its snapshot and log. `aside`: a part that
/// cannot be parsed is moved aside and reported (podnetd); else it is an
/// error (a reader, such as `podnetctl apply` with no daemon running).
fn replay(path: &Path, aside: bool) -> io::Result<(BTreeMap<Key, EndpointRecord>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut entries: BTreeMap<Key, EndpointRecord> = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
            Ok(f) => f.endpoints.into_iter().map(|e| (key_of(&e), e)).collect(),
            Err(e) if !aside => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                ))
            }
            Err(e) => {
                let aside = path.with_extension("corrupt");
                std::fs::rename(path, &aside)?;
                warnings.push(format!(
                    "endpoint registry {} unreadable ({e}); moved to {} and starting from its log",
                    path.display(),
                    aside.display()
                ));
                BTreeMap::new()
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e),
    };
    let log_path = path.with_extension("log");
    match std::fs::File::open(&log_path) {
        Ok(f) => {
            let lines: Vec<String> = io::BufReader::new(f).lines().collect::<io::Result<_>>()?;
            let last = lines.len().saturating_sub(1);
            for (n, line) in lines.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
                match serde_json::from_str::<Change>(line) {
                    Ok(Change::Put(r)) => {
                        entries.insert(key_of(&r), *r);
                    }
                    Ok(Change::Delete {
                        container_id,
                        ifname,
                    }) => {
                        entries.remove(&(container_id, ifname));
                    }
                    // A write cut short by a crash: never acknowledged.
                    Err(_) if n == last => {}
                    Err(e) if !aside => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} line {}: {e}", log_path.display(), n + 1),
                        ))
                    }
                    Err(e) => {
                        let aside = log_path.with_extension("log.corrupt");
                        std::fs::copy(&log_path, &aside)?;
                        warnings.push(format!(
                            "endpoint registry log {} unreadable at line {} ({e}); copied to {}, the lines after it dropped",
                            log_path.display(),
                            n + 1,
                            aside.display()
                        ));
                        break;
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok((entries, warnings))
}

/// The registered endpoints, by (container id, interface name).
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    entries: BTreeMap<Key, EndpointRecord>,
    /// How many registered endpoints hold each address.
    by_ip: HashMap<IpAddr, usize>,
    log: std::fs::File,
    log_lines: usize,
    /// Changes made since it was opened: a plan made from one look at the
    /// registry knows, by this count, whether it still describes it.
    changes: u64,
}

impl Registry {
    /// The registered endpoints, read without changing anything on disk
    /// (for `podnetctl` when podnetd does not run).
    pub fn read(path: &Path) -> io::Result<Vec<EndpointRecord>> {
        Ok(replay(path, false)?.0.into_values().collect())
    }

    /// Opens the registry whose snapshot is `path` (the log beside it),
    /// empty when neither exists. A snapshot or a log line that cannot be
    /// parsed is moved aside (`.corrupt`) and reported, never silently
    /// dropped. The log is compacted into the snapshot at once.
    pub fn open(path: &Path) -> io::Result<(Registry, Option<String>)> {
        let (entries, warnings) = replay(path, true)?;
        let log_path = path.with_extension("log");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut r = Registry {
            path: path.to_path_buf(),
            by_ip: HashMap::new(),
            entries,
            log,
            log_lines: 0,
            changes: 0,
        };
        for e in r.entries.values() {
            for ip in &e.endpoint.ips {
                *r.by_ip.entry(ip.addr()).or_default() += 1;
            }
        }
        r.compact()?;
        let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
        Ok((r, warning))
    }

    pub fn list(&self) -> Vec<EndpointRecord> {
        self.entries.values().cloned().collect()
    }

    pub fn get(&self, container_id: &str, ifname: &str) -> Option<&EndpointRecord> {
        self.entries
            .get(&(container_id.to_string(), ifname.to_string()))
    }

    /// The network namespaces the registered endpoints name.
    pub fn namespaces(&self) -> std::collections::BTreeSet<String> {
        self.entries
            .values()
            .filter_map(|e| e.endpoint.netns.clone())
            .collect()
    }

    /// How many changes were made since it was opened.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether any registered endpoint holds `ip`.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.by_ip.get(&ip).is_some_and(|n| *n > 0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers or replaces an endpoint; on disk before it returns.
    pub fn put(
        &mut self,
        container_id: &str,
        ifname: &str,
        endpoint: Endpoint,
        limits: Option<Limits>,
        now: u64,
    ) -> io::Result<EndpointRecord> {
        let record = EndpointRecord {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            endpoint,
            registered_at: now,
            limits,
            enforcement: None,
            traffic: Vec::new(),
        };
        self.append(&[Change::Put(Box::new(record.clone()))])?;
        self.insert(record.clone());
        self.maybe_compact();
        Ok(record)
    }

    /// Removes an endpoint; false when it was not registered.
    pub fn delete(&mut self, container_id: &str, ifname: &str) -> io::Result<bool> {
        let key = (container_id.to_string(), ifname.to_string());
        if !self.entries.contains_key(&key) {
            return Ok(false);
        }
        self.append(&[Change::Delete {
            container_id: key.0.clone(),
            ifname: key.1.clone(),
        }])?;
        self.remove(&key);
        self.maybe_compact();
        Ok(true)
    }

    /// Removes every endpoint `gone` says is gone; returns them.
    pub fn prune(
        &mut self,
        gone: impl Fn(&EndpointRecord) -> bool,
    ) -> io::Result<Vec<EndpointRecord>> {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| gone(e))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let changes: Vec<Change> = keys
            .iter()
            .map(|(c, i)| Change::Delete {
                container_id: c.clone(),
                ifname: i.clone(),
            })
            .collect();
        self.append(&changes)?;
        let removed = keys.iter().filter_map(|k| self.remove(k)).collect();
        self.maybe_compact();
        Ok(removed)
    }

    /// Recomputes every endpoint's limits (the node files changed); writes
    /// only what changed.
    pub fn relimit(&mut self, limits: impl Fn(&Endpoint) -> Option<Limits>) -> io::Result<usize> {
        let changed: Vec<EndpointRecord> = self
            .entries
            .values()
            .filter_map(|e| {
                let new = limits(&e.endpoint);
                (new != e.limits).then(|| EndpointRecord {
                    limits: new,
                    ..e.clone()
                })
            })
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let n = changed.len();
        self.append(
            &changed
                .iter()
                .map(|r| Change::Put(Box::new(r.clone())))
                .collect::<Vec<_>>(),
        )?;
        for r in changed {
            self.insert(r);
        }
        self.maybe_compact();
        Ok(n)
    }

    fn insert(&mut self, record: EndpointRecord) {
        for ip in &record.endpoint.ips {
            *self.by_ip.entry(ip.addr()).or_default() += 1;
        }
        if let Some(old) = self.entries.insert(key_of(&record), record) {
            self.forget_ips(&old);
        }
    }

    fn remove(&mut self, key: &Key) -> Option<EndpointRecord> {
        let old = self.entries.remove(key)?;
        self.forget_ips(&old);
        Some(old)
    }

    fn forget_ips(&mut self, old: &EndpointRecord) {
        for ip in &old.endpoint.ips {
            if let Some(n) = self.by_ip.get_mut(&ip.addr()) {
                *n -= 1;
                if *n == 0 {
                    self.by_ip.remove(&ip.addr());
                }
            }
        }
    }

    /// Appends `changes` to the log in one write: all of them or (torn by
    /// a crash, or refused) none that counts. Memory changes only after.
    fn append(&mut self, changes: &[Change]) -> io::Result<()> {
        let mut buf = Vec::new();
        for c in changes {
            serde_json::to_writer(&mut buf, c).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.log.write_all(&buf)?;
        self.log_lines += changes.len();
        self.changes += changes.len() as u64;
        Ok(())
    }

    fn maybe_compact(&mut self) {
        if self.log_lines > self.entries.len().max(COMPACT_MIN) {
            if let Err(e) = self.compact() {
                // The log still holds everything: compaction waits for the next change.
                tracing::warn!("compacting the endpoint registry: {e}");
            }
        }
    }

    /// Writes the snapshot (temporary file renamed over it), then empties
    /// the log, whose changes the snapshot now holds.
    fn compact(&mut self) -> io::Result<()> {
        let file = File {
            version: 1,
            endpoints: self.list(),
        };
        let tmp = self.path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&file).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.path)?;
        self.log.set_len(0)?;
        self.log_lines = 0;
        Ok(())
    }
}

fn key_of(e: &EndpointRecord) -> Key {
    (e.container_id.clone(), e.ifname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "podnet-registry-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn ep(ip: &str) -> Endpoint {
        Endpoint {
            netns: Some("/var/run/netns/cni-1".into()),
            ips: vec![ip.parse().unwrap()],
            master: Some("ens192".into()),
            veth: None,
            tier: Some("gold".into()),
            egress: None,
            ingress: Some(100_000_000),
            network: None,
            vf: None,
            rdma: None,
        }
    }

    #[test]
    fn endpoints_survive_a_reopen() {
        let d = dir();
        let path = d.join("endpoints.json");
        let (mut r, w) = Registry::open(&path).unwrap();
        assert!(w.is_none() && r.is_empty());
        r.put("c1", "eth0", ep("10.0.0.1/32"), None, 1).unwrap();
        r.put("c2", "eth0", ep("10.0.0.2/32"), None, 2).unwrap();
        r.put("c1", "eth0", ep("10.0.0.9/32"), None, 3).unwrap();
        assert!(r.delete("c2", "eth0").unwrap());
        // Every change moves the count a plan checks its map writes by;
        // deleting what is not there changes nothing.
        let changes = r.changes();
        assert_eq!(changes, 4);
        assert!(!r.delete("c2", "eth0").unwrap());
        assert_eq!(r.changes(), changes);
        let (again, _) = Registry::open(&path).unwrap();
        assert_eq!(again.list(), r.list());
        // A reader sees the same registry and writes nothing.
        let before = std::fs::read(path.with_extension("log")).unwrap();
        assert_eq!(Registry::read(&path).unwrap(), r.list());
        assert_eq!(std::fs::read(path.with_extension("log")).unwrap(), before);
        assert_eq!(
            again.get("c1", "eth0").unwrap().endpoint.ips[0].to_string(),
            "10.0.0.9/32"
        );
        assert!(!path.with_extension("tmp").exists());
        let _ = std::fs::remove_dir_all(d);
    }

    /// A request appends one line to the log and leaves the snapshot
    /// alone: its cost does not grow with the endpoints registered. The log
    /// is folded into the snapshot once it outgrows the registry.
    #[test]
    fn a_request_appends_one_line_and_the_log_is_compacted() {
        let d = dir();
        let path = d.join("endpoints.json");
        let log = path.with_extension("log");
        let (mut r, _) = Registry::open(&path).unwrap();
        let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
        r.put("keep", "eth0", ep("10.0.0.3/32"), None, 1).unwrap();
        let snapshot = std::fs::read(&path).unwrap();
        // The same pod re-registered again and again: the log grows one
        // line at a time and the snapshot is left alone...
        for i in 1..COMPACT_MIN {
            r.put("c1", "eth0", ep("10.0.0.1/32"), None, i as u64)
                .unwrap();
            assert_eq!(lines(), i + 1);
        }
        assert_eq!(std::fs::read(&path).unwrap(), snapshot);
        // ...until it holds more than COMPACT_MIN lines: folded in.
        r.put("c1", "eth0", ep("10.0.0.1/32"), None, 0).unwrap();
        assert_eq!(lines(), 0);
        assert_ne!(std::fs::read(&path).unwrap(), snapshot);
        assert!(r.holds("10.0.0.1".parse().unwrap()));
        r.delete("c1", "eth0").unwrap();
        assert_eq!(lines(), 1);
        assert!(!r.holds("10.0.0.1".parse().unwrap()));
        assert!(r.holds("10.0.0.3".parse().unwrap()));
        let (again, w) = Registry::open(&path).unwrap();
        assert!(w.is_none());
        assert_eq!(again.list(), r.list());
        assert_eq!(again.len(), 1);
        let _ = std::fs::remove_dir_all(d);
    }

    /// What a crash can leave: a last line cut short (never acknowledged),
    /// or a compaction stopped between the new snapshot and emptying the
    /// log (whose changes the snapshot already holds). Both read back as
    /// the registry that was acknowledged.
    #[test]
    fn a_crash_at_any_point_leaves_the_acknowledged_registry() {
        let d = dir();
        let path = d.join("endpoints.json");
        let log = path.with_extension("log");
        let (mut r, _) = Registry::open(&path).unwrap();
        r.put("c1", "eth0", ep("10.0.0.1/32"), None, 1).unwrap();
        r.put("c2", "eth0", ep("10.0.0.2/32"), None, 2).unwrap();
        r.delete("c1", "eth0").unwrap();
        let want = r.list();
        let log_text = std::fs::read_to_string(&log).unwrap();
        drop(r);
        // A torn last line.
        std::fs::write(&log, format!("{log_text}{{\"put\":{{\"container_id\":\"c3")).unwrap();
        let (r, w) = Registry::open(&path).unwrap();
        assert!(w.is_none(), "{w:?}");
        assert_eq!(r.list(), want);
        // Compaction cut after the rename: the snapshot holds the changes
        // and the log still lists them.
        drop(r);
        std::fs::write(&log, &log_text).unwrap();
        let (r, _) = Registry::open(&path).unwrap();
        assert_eq!(r.list(), want);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_corrupt_registry_is_moved_aside_and_reported() {
        let d = dir();
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("endpoints.json");
        std::fs::write(&path, b"{ not json").unwrap();
        let (r, w) = Registry::open(&path).unwrap();
        assert!(r.is_empty());
        assert!(w.unwrap().contains("unreadable"));
        assert!(path.with_extension("corrupt").exists());
        let _ = std::fs::remove_dir_all(d);
    }
}
