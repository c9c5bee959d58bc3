//! Which processes hold a file open: how podnet tells that a VF bound to
//! vfio-pci is in use (a DPDK or KubeVirt pod holds its VFIO files). The
//! process table comes from sysinfo ([`processes`], which the RDMA netns
//! mode's look for other namespaces shares); each process's open files
//! are the links in its `/proc/<pid>/fd`, which sysinfo counts but does
//! not name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

/// For each of `files` some process holds open, who: `pid 123 (qemu)`,
/// one entry per process. One pass over the process table, and none when
/// `files` is empty (no VF is bound to vfio-pci).
pub fn holders(files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut out: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    if files.is_empty() {
        return out;
    }
    for (pid, name) in processes() {
        let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else {
            continue;
        };
        let mut held: Vec<PathBuf> = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| files.contains(target))
            .collect();
        held.dedup();
        for f in held {
            out.entry(f)
                .or_default()
                .push(format!("pid {pid} ({name})"));
        }
    }
    out
}

/// Every process (threads share their process's files and, but for one
/// that called setns, its namespaces: each process once), by pid, with
/// its name, from sysinfo's process table.
pub fn processes() -> Vec<(u32, String)> {
    let mut sys = System::new();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    let mut procs: Vec<(u32, String)> = sys
        .processes()
        .iter()
        .filter(|(_, p)| p.thread_kind().is_none())
        .map(|(pid, p)| (pid.as_u32(), p.name().to_string_lossy().into_owned()))
        .collect();
    procs.sort_unstable();
    procs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test's own process holds a file open: it is found, by pid and
    /// name; a file nobody holds is not.
    #[test]
    fn finds_this_process_holding_a_file() {
        let path = std::env::temp_dir().join(format!("podnet-holders-{}", std::process::id()));
        let _held = std::fs::File::create(&path).unwrap();
        let idle = path.with_extension("idle");
        std::fs::write(&idle, "").unwrap();
        let found = holders(&[path.clone(), idle.clone()]);
        let who = &found[&path];
        assert!(
            who.iter()
                .any(|w| w.starts_with(&format!("pid {} (", std::process::id()))),
            "{who:?}"
        );
        assert!(!found.contains_key(&idle), "{found:?}");
        assert!(holders(&[]).is_empty());
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&idle).unwrap();
    }
}
