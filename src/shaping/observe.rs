//! Observing what the shaper holds, for the plan: the program on each
//! link's egress hook (podnet's pinned TCX link, podnet's clsact filter),
//! the ledger entry of the root qdisc podnet replaced, and the kernel
//! features the plan decides by. The root qdiscs themselves and the map's
//! entries are observed with the rest (`crate::observe`, [`Endpoints::observed`]).
//!
//! [`Endpoints::observed`]: super::Endpoints::observed

use std::path::Path;

use super::tc::{self, Qdiscs, RootState};
use super::{program, Prog, ShaperPaths};
use crate::error::Result;
use crate::kernel::Kernel;
use crate::state::{BpfProgram, HtbTree, KernelFeatures, LinkShaping, Observed};
use aya::programs::TcAttachType;

/// The shaper's state on every link of `observed` that has any: one read
/// of the pin directory and one of the record directory, a pin opened only
/// where a TCX link is pinned, a filter dump only where a clsact qdisc is.
/// Links with none of it are left out.
pub async fn links(
    kernel: &Kernel,
    observed: &Observed,
    paths: &ShaperPaths,
) -> Result<Vec<LinkShaping>> {
    let mut records = super::records(&paths.state_dir);
    let pinned = program::tcx_pinned(&paths.pin_dir);
    let mut out = Vec::new();
    for link in &observed.links {
        let has_clsact = observed
            .qdiscs
            .iter()
            .any(|q| q.link == link.name && q.kind == "clsact");
        let mut found = [None, None, None, None];
        for (i, (prog, hook)) in [
            (Prog::Egress, TcAttachType::Egress),
            (Prog::Redirect, TcAttachType::Ingress),
        ]
        .into_iter()
        .enumerate()
        {
            let pin = (prog.hook_name().to_string(), link.index);
            found[2 * i] = match pinned
                .contains(&pin)
                .then(|| program::tcx_program_id(prog, link.index, &paths.pin_dir))
                .transpose()?
                .flatten()
            {
                Some(id) => Some(tcx_program_info(&link.name, hook, id)?),
                None => None,
            };
            found[2 * i + 1] = if has_clsact {
                match super::podnet_filter(kernel, link.index, prog).await? {
                    Some(Some(id)) => Some(program_info(id)?),
                    // A filter at podnet's place whose program the kernel
                    // does not name: podnet's, to be swapped for a known one.
                    Some(None) => Some(unknown(0)),
                    None => None,
                }
            } else {
                None
            };
        }
        let [tcx, clsact, ingress_tcx, ingress_clsact] = found;
        let previous_root = records
            .remove(&link.index)
            .map(|r| r.previous_root.describe());
        if tcx.is_some()
            || clsact.is_some()
            || ingress_tcx.is_some()
            || ingress_clsact.is_some()
            || previous_root.is_some()
        {
            out.push(LinkShaping {
                link: link.name.clone(),
                tcx,
                clsact,
                ingress_tcx,
                ingress_clsact,
                previous_root,
            });
        }
    }
    Ok(out)
}

/// podnet's HTB tree on every link whose root is podnet's htb: its
/// classes with their leaves and counters, and the u32 filters on it.
pub async fn htb(kernel: &Kernel, observed: &Observed) -> Result<Vec<HtbTree>> {
    let mut out = Vec::new();
    for link in &observed.links {
        if Qdiscs::observed(observed, &link.name).root_state() != RootState::Htb {
            continue;
        }
        // The leaves' options (bfifo's limit) are not in the observation.
        let qdiscs = tc::dump(kernel, link.index).await?;
        out.push(tc::htb_tree(kernel, &link.name, link.index, &qdiscs).await?);
    }
    Ok(out)
}

/// The TCX program `id` on `device`'s `hook`: asked of the device (its one
/// or two programs), not of every program the kernel has loaded.
fn tcx_program_info(device: &str, hook: TcAttachType, id: u32) -> Result<BpfProgram> {
    use aya::programs::SchedClassifier;
    if let Ok((_, programs)) = SchedClassifier::query_tcx(device, hook) {
        if let Some(info) = programs.iter().find(|p| p.id() == id) {
            return Ok(program::describe(info));
        }
    }
    program_info(id)
}

/// A program by id; one that went away meanwhile keeps its id only.
fn program_info(id: u32) -> Result<BpfProgram> {
    Ok(match program::program_by_id(id)? {
        Some(info) => program::describe(&info),
        None => unknown(id),
    })
}

/// A program known by its id alone (or not even that: 0).
fn unknown(id: u32) -> BpfProgram {
    BpfProgram {
        id,
        tag: String::new(),
        map_ids: Vec::new(),
    }
}

/// What this kernel offers shaping: sch_fq built in, loaded or installed
/// as a module (the kernel loads it on first use), and TCX (>= 6.6).
/// Read once per process: a kernel's features stay as they are while it
/// runs (a module installed meanwhile counts from the next start).
pub fn features() -> KernelFeatures {
    static FEATURES: std::sync::OnceLock<KernelFeatures> = std::sync::OnceLock::new();
    FEATURES.get_or_init(read_features).clone()
}

fn read_features() -> KernelFeatures {
    let release = sysinfo::System::kernel_version().unwrap_or_default();
    KernelFeatures {
        sch_fq: has_module(
            "sch_fq",
            Path::new("/sys/module"),
            &Path::new("/lib/modules").join(release),
        ),
        tcx: super::AttachMode::auto() == super::AttachMode::Tcx,
    }
}

/// `name` is loaded (under `sys_module`), built in or installed (in the
/// lists of `modules_dir`, as depmod writes them).
fn has_module(name: &str, sys_module: &Path, dir: &Path) -> bool {
    if sys_module.join(name).exists() {
        return true;
    }
    let file = format!("/{name}.ko");
    ["modules.builtin", "modules.dep"].iter().any(|list| {
        std::fs::read_to_string(dir.join(list)).is_ok_and(|text| {
            text.lines().any(|l| {
                let path = l.split(':').next().unwrap_or_default();
                path.strip_suffix(".xz")
                    .or_else(|| path.strip_suffix(".zst"))
                    .or_else(|| path.strip_suffix(".gz"))
                    .unwrap_or(path)
                    .ends_with(&file)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_module_is_found_loaded_or_in_the_lists_whatever_its_compression() {
        let root = std::env::temp_dir().join(format!("podnet-modules-{}", std::process::id()));
        let (sys, lib) = (root.join("sys"), root.join("lib"));
        std::fs::create_dir_all(sys.join("sch_tbf")).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(
            lib.join("modules.dep"),
            "kernel/net/sched/sch_fq.ko.xz:\nkernel/net/sched/sch_htb.ko: kernel/x.ko\n",
        )
        .unwrap();
        std::fs::write(
            lib.join("modules.builtin"),
            "kernel/net/sched/sch_prio.ko\n",
        )
        .unwrap();
        for m in ["sch_fq", "sch_htb", "sch_prio", "sch_tbf"] {
            assert!(super::has_module(m, &sys, &lib), "{m}");
        }
        // Not a suffix match on the name alone: sch_fq_codel is not sch_fq.
        assert!(!super::has_module("sch_fq_codel", &sys, &lib));
        assert!(!super::has_module("sch_fq", &sys, &root.join("none")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
