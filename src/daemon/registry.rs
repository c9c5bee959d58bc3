//! The endpoint registry: the pod interfaces the CNI plugin registered,
//! kept in memory and in one JSON file under `/var/lib/podnet`.
//!
//! Every change is written to a temporary file beside the registry and
//! renamed over it, so a crash (even `kill -9`) leaves the old or the new
//! registry, never half of one. There is no fsync: the registry describes
//! running pods, and after a power loss no pod is running any more.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::types::{Endpoint, EndpointRecord, Limits};

/// Where podnetd keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/podnet";

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    endpoints: Vec<EndpointRecord>,
}

/// The registered endpoints, by (container id, interface name).
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    entries: BTreeMap<(String, String), EndpointRecord>,
}

impl Registry {
    /// Opens the registry at `path`, empty when the file does not exist. A
    /// file that cannot be parsed is moved aside (`.corrupt`) and reported,
    /// never silently dropped.
    pub fn open(path: &Path) -> io::Result<(Registry, Option<String>)> {
        let mut warning = None;
        let entries = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) => f
                    .endpoints
                    .into_iter()
                    .map(|e| ((e.container_id.clone(), e.ifname.clone()), e))
                    .collect(),
                Err(e) => {
                    let aside = path.with_extension("corrupt");
                    std::fs::rename(path, &aside)?;
                    warning = Some(format!(
                        "endpoint registry {} unreadable ({e}); moved to {} and starting empty",
                        path.display(),
                        aside.display()
                    ));
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok((
            Registry {
                path: path.to_path_buf(),
                entries,
            },
            warning,
        ))
    }

    pub fn list(&self) -> Vec<EndpointRecord> {
        self.entries.values().cloned().collect()
    }

    pub fn get(&self, container_id: &str, ifname: &str) -> Option<&EndpointRecord> {
        self.entries
            .get(&(container_id.to_string(), ifname.to_string()))
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
        let key = (container_id.to_string(), ifname.to_string());
        let record = EndpointRecord {
            container_id: key.0.clone(),
            ifname: key.1.clone(),
            endpoint,
            registered_at: now,
            limits,
            enforcement: None,
        };
        let previous = self.entries.insert(key.clone(), record.clone());
        if let Err(e) = self.persist() {
            // Memory and disk must agree: put back what was there.
            match previous {
                Some(p) => self.entries.insert(key, p),
                None => self.entries.remove(&key),
            };
            return Err(e);
        }
        Ok(record)
    }

    /// Removes an endpoint; false when it was not registered.
    pub fn delete(&mut self, container_id: &str, ifname: &str) -> io::Result<bool> {
        let key = (container_id.to_string(), ifname.to_string());
        let Some(previous) = self.entries.remove(&key) else {
            return Ok(false);
        };
        if let Err(e) = self.persist() {
            self.entries.insert(key, previous);
            return Err(e);
        }
        Ok(true)
    }

    /// Removes every endpoint `gone` says is gone; returns them.
    pub fn prune(
        &mut self,
        gone: impl Fn(&EndpointRecord) -> bool,
    ) -> io::Result<Vec<EndpointRecord>> {
        let keys: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| gone(e))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let removed: Vec<EndpointRecord> =
            keys.iter().filter_map(|k| self.entries.remove(k)).collect();
        if let Err(e) = self.persist() {
            for r in removed {
                self.entries
                    .insert((r.container_id.clone(), r.ifname.clone()), r);
            }
            return Err(e);
        }
        Ok(removed)
    }

    /// Recomputes every endpoint's limits (the node files changed); writes
    /// only when something changed.
    pub fn relimit(&mut self, limits: impl Fn(&Endpoint) -> Option<Limits>) -> io::Result<usize> {
        let mut changed = 0;
        for e in self.entries.values_mut() {
            let new = limits(&e.endpoint);
            if new != e.limits {
                e.limits = new;
                changed += 1;
            }
        }
        if changed > 0 {
            self.persist()?;
        }
        Ok(changed)
    }

    fn persist(&self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File {
            version: 1,
            endpoints: self.list(),
        };
        let tmp = self.path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&file).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.path)
    }
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
            tier: Some("gold".into()),
            egress: None,
            ingress: Some(100_000_000),
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
        assert!(!r.delete("c2", "eth0").unwrap());
        let (again, _) = Registry::open(&path).unwrap();
        assert_eq!(again.list(), r.list());
        assert_eq!(
            again.get("c1", "eth0").unwrap().endpoint.ips[0].to_string(),
            "10.0.0.9/32"
        );
        assert!(!path.with_extension("tmp").exists());
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
