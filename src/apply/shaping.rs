//! The shaping backend: root qdiscs, the EDT program on egress hooks and
//! the endpoint map's entries, through the [`Shaper`]. Map entries are
//! written under the endpoint registry's lock, so a step planned from an
//! older look at the registry never undoes a registration made since.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::programs::ProgramFd;

use crate::api::types::EndpointRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;
use crate::plan::{Action, Change, Inputs};
use crate::shaping::tc::{self, RootKind};
use crate::shaping::{hold_program, AttachMode, Endpoints, Prog, Shaper, ShaperPaths};
use crate::state::{EndpointMap, Observed};

/// The endpoint registry, as the plan and the shaping backend see it.
pub trait Registry: Sync {
    /// Runs `f` holding the registry's lock, with the endpoints it holds
    /// and whether any of them holds an address.
    fn locked(&self, f: &mut dyn FnMut(&dyn RegistryView));
}

/// A registry under its lock.
pub trait RegistryView {
    fn endpoints(&self) -> Vec<EndpointRecord>;
    fn holds(&self, ip: IpAddr) -> bool;
    /// A count that moves with every registration and removal.
    fn changes(&self) -> u64;
}

/// A registry read once (`podnetctl` with no daemon running): nothing
/// registers meanwhile.
pub struct Fixed(pub Vec<EndpointRecord>);

impl Registry for Fixed {
    fn locked(&self, f: &mut dyn FnMut(&dyn RegistryView)) {
        f(self)
    }
}

impl RegistryView for Fixed {
    fn endpoints(&self) -> Vec<EndpointRecord> {
        self.0.clone()
    }
    fn holds(&self, ip: IpAddr) -> bool {
        self.0
            .iter()
            .any(|e| e.endpoint.ips.iter().any(|n| n.addr() == ip))
    }
    fn changes(&self) -> u64 {
        0
    }
}

/// What shaping steps run with: the shaper (loaded on first need), where
/// it pins, the registry, and the attach mode if not the kernel's best.
pub struct Shaping<'a> {
    pub shaper: &'a mut Option<Shaper>,
    pub kernel: Kernel,
    pub paths: ShaperPaths,
    pub registry: &'a dyn Registry,
    pub mode: Option<AttachMode>,
    /// The registry's change count when the plan's inputs were read.
    pub planned_at: Option<u64>,
}

impl<'a> Shaping<'a> {
    /// The context of one pass or one `podnetctl apply`; the attach mode
    /// from `PODNET_ATTACH_MODE` if set.
    pub fn new(
        shaper: &'a mut Option<Shaper>,
        kernel: Kernel,
        paths: ShaperPaths,
        registry: &'a dyn Registry,
    ) -> Self {
        Shaping {
            shaper,
            kernel,
            paths,
            registry,
            mode: AttachMode::from_env(),
            planned_at: None,
        }
    }

    /// Loads the shaper if shaping is (or was) in play on this host: a
    /// shaping master declared on a kernel with fq, podnet's program or
    /// record on a link, or the map pinned. `create` false (a dry run):
    /// only if the map is pinned already, as loading would pin a new one.
    /// A map whose pin went away is loaded again with a new map (the plan
    /// then writes every entry before it swaps the programs to it).
    pub fn prepare(
        &mut self,
        desired: &crate::config::NodeConfig,
        observed: &Observed,
        create: bool,
    ) -> Result<()> {
        if create {
            // Records and TCX pins of devices that are gone (a veth pod's
            // host side goes with the pod) serve nothing any more.
            crate::shaping::forget_gone(&self.paths, observed);
        }
        let pinned = crate::shaping::map_pin(&self.paths.pin_dir).exists();
        if self.shaper.is_some() && !pinned {
            tracing::warn!(
                "the endpoint map's pin is gone: loading the shaper again with a new map"
            );
            *self.shaper = None;
        }
        // The HTB backend needs no program and no map: only EDT (or an
        // EDT program still on a hook, to take off) loads the shaper.
        let wanted = crate::plan::root_kind(desired, observed) == Ok(RootKind::Fq)
            && crate::policy::shaping_masters(desired)
                .iter()
                .any(|m| observed.link(m).is_some());
        let programs = observed.shaping.iter().any(|s| {
            s.tcx.is_some()
                || s.clsact.is_some()
                || s.ingress_tcx.is_some()
                || s.ingress_clsact.is_some()
        });
        // Ingress needs the redirect program with either root.
        let ingress = crate::policy::shaping_masters(desired)
            .iter()
            .any(|m| observed.link(m).is_some())
            && crate::policy::any_ingress(desired);
        let needed = wanted || ingress || programs || pinned;
        if needed && (create || pinned) {
            self.loaded()?;
        }
        Ok(())
    }

    /// The shaper, loaded now if it is not yet (which pins its map).
    pub fn loaded(&mut self) -> Result<&mut Shaper> {
        if self.shaper.is_none() {
            *self.shaper = Some(Shaper::load(&self.kernel, self.paths.clone())?);
            tracing::info!(
                "EDT shaper loaded; map pinned under {}",
                self.paths.pin_dir.display()
            );
        }
        self.shaper
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Bug, "the shaper is not loaded"))
    }

    /// The plan's inputs, and the map's entries into `observed`: read under
    /// the registry's lock together, so a registration lands wholly before
    /// or wholly after (never "in the registry, not yet seen in the map").
    pub fn inputs(&mut self, observed: &mut Observed) -> Result<Inputs> {
        let mut ids = Prog::ALL.map(|_| None);
        if let Some(s) = self.shaper.as_mut() {
            for (id, prog) in ids.iter_mut().zip(Prog::ALL) {
                *id = Some(s.identity(prog)?);
            }
        }
        let [program, ingress_program, redirect_program, pod_ingress_program, classify_program, redirect_ahead_program] =
            ids;
        let opened;
        let map: Option<&Endpoints> = match self.shaper.as_mut() {
            Some(s) => Some(&*s.endpoints()),
            None if crate::shaping::map_pin(&self.paths.pin_dir).exists() => {
                opened = Endpoints::open(&self.paths.pin_dir)?;
                Some(&opened)
            }
            None => None,
        };
        let mut out: Result<(Vec<EndpointRecord>, Option<EndpointMap>)> = Ok((Vec::new(), None));
        let mut changes = 0;
        self.registry.locked(&mut |view| {
            changes = view.changes();
            out = map
                .map(Endpoints::observed)
                .transpose()
                .map(|m| (view.endpoints(), m));
        });
        let (endpoints, mut map) = out?;
        if let Some(m) = map.as_mut() {
            m.ingress_device = crate::shaping::pinned_ingress_device(&self.paths.pin_dir)?;
            m.tags = crate::shaping::pinned_tags(&self.paths.pin_dir)?;
        }
        self.planned_at = Some(changes);
        observed.endpoint_map = map;
        Ok(Inputs {
            endpoints,
            program,
            mode: self.mode,
            ingress_program,
            redirect_program,
            pod_ingress_program,
            classify_program,
            redirect_ahead_program,
            sriov_refused: super::sriov::refusals(&super::sriov::ledger_path(&self.paths)),
            rdma_owned: super::rdma::owned(&super::rdma::ledger_path(&self.paths)),
            rdma_boot: super::rdma::boot_setting(&self.paths.modprobe_dir),
        })
    }
}

/// The address an HTB filter step is for (its object's name).
fn endpoint_ip(action: &Action) -> Result<IpAddr> {
    action.name.parse().map_err(|_| {
        Error::new(
            ErrorKind::Bug,
            format!("{}: a filter step names no address", action.object()),
        )
    })
}

/// Runs shaping steps; keeps the programs it swapped out or detached
/// loaded until the apply ends, so an undo can put them back.
pub struct ShapingBackend<'s, 'a> {
    shaping: &'s mut Shaping<'a>,
    held: BTreeMap<u32, ProgramFd>,
}

impl<'s, 'a> ShapingBackend<'s, 'a> {
    pub fn new(shaping: &'s mut Shaping<'a>) -> Self {
        ShapingBackend {
            shaping,
            held: BTreeMap::new(),
        }
    }

    fn shaper(&mut self) -> Result<&mut Shaper> {
        self.shaping.loaded()
    }

    /// Keeps program `id` loaded for an undo (0: podnet's own, which the
    /// shaper holds anyway).
    fn hold(&mut self, id: u32) -> Result<()> {
        if id != 0 && !self.held.contains_key(&id) {
            self.held.insert(id, hold_program(id)?);
        }
        Ok(())
    }

    pub async fn execute(&mut self, action: &Action) -> Result<()> {
        let dev = action.name.as_str();
        match &action.change {
            Change::ReplaceRoot { kind, .. } => {
                let s = &self.shaping;
                crate::shaping::replace_root(&s.kernel, &s.paths, dev, *kind)
                    .await
                    .map(drop)
            }
            Change::RestoreRoot { .. } => {
                let s = &self.shaping;
                crate::shaping::restore_root(&s.kernel, &s.paths, dev).await
            }
            Change::AddClass { class } | Change::ChangeClass { class, .. } => {
                let kernel = &self.shaping.kernel;
                let ifindex = crate::shaping::ifindex(kernel, &class.device).await?;
                tc::set_class(
                    kernel,
                    &class.device,
                    ifindex,
                    class.minor,
                    class.rate_bps,
                    class.burst_ns,
                    class.limit_bytes,
                )
                .await
            }
            Change::RemoveClass { was } => {
                let kernel = &self.shaping.kernel;
                let ifindex = crate::shaping::ifindex(kernel, &was.device).await?;
                tc::remove_class(kernel, &was.device, ifindex, was.minor).await
            }
            Change::AddFilter { device, minor, dst } => {
                let kernel = &self.shaping.kernel;
                let ifindex = crate::shaping::ifindex(kernel, device).await?;
                tc::add_filter(kernel, device, ifindex, endpoint_ip(action)?, *dst, *minor).await
            }
            Change::RemoveFilter { device, .. } => {
                let kernel = &self.shaping.kernel;
                let ifindex = crate::shaping::ifindex(kernel, device).await?;
                tc::remove_filters(kernel, device, ifindex, endpoint_ip(action)?).await
            }
            Change::AttachProgram { mode, prog } => self
                .shaper()?
                .attach_program_to(dev, *mode, *prog)
                .await
                .map(drop),
            Change::SwapProgram { mode, from, prog } => {
                self.hold(*from)?;
                self.shaper()?
                    .attach_program_to(dev, *mode, *prog)
                    .await
                    .map(drop)
            }
            Change::DetachProgram {
                mode,
                program,
                prog,
            } => {
                self.hold(*program)?;
                self.shaper()?.detach_program(dev, *mode, *prog).await
            }
            Change::PutBackProgram {
                mode,
                program,
                prog,
            } => {
                let fd = self.held.remove(program).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Bug,
                        format!("{dev}: program {program} was not held to put back"),
                    )
                })?;
                let done = self.shaper()?.put_back(dev, *mode, *prog, &fd).await;
                self.held.insert(*program, fd);
                done
            }
            Change::CreateIngressDevice => {
                crate::shaping::create_ingress_device(&self.shaping.kernel).await
            }
            Change::DeleteIngressDevice => {
                crate::shaping::delete_ingress_device(&self.shaping.kernel).await
            }
            // podnet's ifb found down: up again (the create does that too).
            Change::SetUp { up: true } if dev == crate::shaping::INGRESS_DEVICE => {
                crate::shaping::create_ingress_device(&self.shaping.kernel).await
            }
            Change::SetIngressDevice { to, .. } => {
                let ifindex = match to {
                    Some(i) => *i,
                    None => crate::shaping::ifindex(&self.shaping.kernel, dev).await?,
                };
                self.shaper()?.set_ingress_device(ifindex)
            }
            Change::SetEntry { entry, .. } => {
                // If the registry changed since the plan was made, only for
                // an endpoint still registered: one removed since took its
                // entry with it.
                self.entry(entry.ip, true, |map| map.set_entry(entry))
            }
            Change::RemoveEntry { was } => {
                // If the registry changed since, only while no endpoint
                // holds the address: one registered since wrote its own.
                self.entry(was.ip, false, |map| {
                    map.remove_in(was.ip, was.direction).map(drop)
                })
            }
            Change::SetTag { tag, was, .. } => self.shaper()?.set_tag(tag, was.as_ref()),
            Change::RemoveTag { was } => self.shaper()?.remove_tag(was),
            other => Err(Error::new(
                ErrorKind::Bug,
                format!("{}: {other:?} is not a shaping step", action.object()),
            )),
        }
    }

    /// A map write under the registry's lock: as planned while the
    /// registry is as the plan saw it; after a registration or removal
    /// since, only where `ip` is (`if_held`) or is not registered, so the
    /// request path's own write for it stands. The next pass plans from
    /// the registry as it is then.
    fn entry(
        &mut self,
        ip: IpAddr,
        if_held: bool,
        write: impl Fn(&mut Endpoints) -> Result<()>,
    ) -> Result<()> {
        let registry = self.shaping.registry;
        let planned_at = self.shaping.planned_at;
        let map = self.shaper()?.endpoints();
        let mut out = Ok(());
        registry.locked(&mut |view| {
            if Some(view.changes()) == planned_at || view.holds(ip) == if_held {
                out = write(map);
            }
        });
        out
    }
}
