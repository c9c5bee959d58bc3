//! The one module that speaks tc for shaping: the root qdisc EDT needs (fq,
//! or mq with an fq per transmit queue), the record of the root qdisc it
//! replaced, and putting that back. netlink-packet-route has no typed fq
//! options, so they are raw attributes here, and so are the saved options
//! of whatever qdisc was there before (re-sent byte for byte: the kernel
//! dumps a qdisc's options in the form it accepts them).

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{errno, refused, Errno, Kernel};

/// Handle major of every qdisc podnet puts at the root of a shaped device
/// (`706e:` = "pn"): how podnet recognises its own root after a restart.
/// Below 0x8000, so the kernel never hands it out automatically.
pub const PODNET_QDISC_MAJOR: u16 = 0x706e;

/// fq's own horizon: 60 s, the longest horizon the node files accept (fq's
/// default is 10 s). The datapath drops at each endpoint's horizon, at most
/// this, so fq's never decides.
pub const FQ_HORIZON_US: u32 = 60_000_000;

const TC_H_ROOT: u32 = 0xffff_ffff;
/// Parent of the ingress and clsact qdiscs (`ffff:fff1`).
const TC_H_CLSACT: u32 = 0xffff_fff1;
/// The clsact qdisc's own handle (`ffff:`).
const CLSACT_HANDLE: u32 = 0xffff_0000;
/// Filter parents of clsact's two hooks.
const TC_H_MIN_INGRESS: u32 = 0xffff_fff2;
const TC_H_MIN_EGRESS: u32 = 0xffff_fff3;

const TCA_OPTIONS: u16 = 2;
const TCA_FQ_RATE_ENABLE: u16 = 5;
const TCA_FQ_HORIZON: u16 = 14;
const TCA_FQ_HORIZON_DROP: u16 = 15;

/// Root qdiscs podnet does not replace: their classes, filters and child
/// qdiscs are a configuration it cannot save and put back.
const CLASSFUL: &[&str] = &[
    "htb", "hfsc", "prio", "drr", "qfq", "cbq", "ets", "multiq", "mqprio", "taprio", "cake_mq",
];

/// One qdisc as the kernel dumps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQdisc {
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
    /// The raw `TCA_OPTIONS` payload.
    #[serde(default)]
    pub options: Vec<u8>,
}

impl SavedQdisc {
    fn major(&self) -> u16 {
        (self.handle >> 16) as u16
    }

    fn parent_major(&self) -> u16 {
        (self.parent >> 16) as u16
    }

    /// Made by the kernel, not configured: handle `0:`.
    fn is_default(&self) -> bool {
        self.major() == 0
    }
}

/// The root qdisc a device had before podnet shaped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PreviousRoot {
    /// The kernel's default (`noqueue`, `pfifo_fast`, `mq`, `fq_codel`...
    /// with handle `0:`). Deleting podnet's root brings the default back.
    Default { kind: String },
    /// A single qdisc someone configured, re-created with its handle and
    /// options.
    Leaf { qdisc: SavedQdisc },
    /// mq with its per-queue qdiscs; children with handle `0:` are the
    /// kernel's defaults and come back by themselves.
    Mq {
        mq: SavedQdisc,
        children: Vec<SavedQdisc>,
    },
}

impl PreviousRoot {
    pub fn describe(&self) -> String {
        match self {
            PreviousRoot::Default { kind } => format!("default {kind}"),
            PreviousRoot::Leaf { qdisc } => format!("{} {}", qdisc.kind, tc_handle(qdisc.handle)),
            PreviousRoot::Mq { mq, children } => {
                format!(
                    "mq {} with {} queue qdiscs",
                    tc_handle(mq.handle),
                    children.len()
                )
            }
        }
    }
}

/// `major:minor` the way tc prints it.
pub fn tc_handle(h: u32) -> String {
    match h {
        TC_H_ROOT => "root".into(),
        TC_H_CLSACT => "ingress".into(),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}

/// Reads what [`tc_handle`] writes.
pub fn parse_tc_handle(text: &str) -> Option<u32> {
    match text {
        "root" => Some(TC_H_ROOT),
        "ingress" => Some(TC_H_CLSACT),
        _ => {
            let (major, minor) = text.split_once(':')?;
            let major = u32::from_str_radix(major, 16).ok()?;
            let minor = if minor.is_empty() {
                0
            } else {
                u32::from_str_radix(minor, 16).ok()?
            };
            (major <= 0xffff && minor <= 0xffff).then_some(major << 16 | minor)
        }
    }
}

/// The root podnet puts on a shaping device: fq for EDT (the program
/// stamps, fq holds each packet to its stamp), htb for the HTB backend
/// (a class per endpoint address, selected by u32 filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    #[default]
    Fq,
    Htb,
}

impl std::fmt::Display for RootKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RootKind::Fq => "fq",
            RootKind::Htb => "htb",
        })
    }
}

/// Whose root qdisc a device has, as far as shaping goes. The one rule both
/// podnetd (before it touches the device) and the plan (what `--dry-run`
/// says podnetd will do) decide by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootState {
    /// podnet's fq, or podnet's mq with an fq on every queue: packets meet
    /// fq, the device is shaped once the program is on its hook.
    Shaping,
    /// podnet's htb: the HTB backend's root (its classes and filters are
    /// observed apart, [`crate::state::HtbTree`]).
    Htb,
    /// podnet's handle on something else (fq replaced behind podnet's back,
    /// or a root set up half way): podnet's to put fq back on, or to take off.
    PodnetsNotFq { kind: String },
    /// Not podnet's: the kernel's default (`handle 0:`) or a qdisc someone
    /// configured.
    Other { kind: String, default: bool },
    /// No root in the dump: the device went away meanwhile.
    Missing,
}

impl RootState {
    /// podnet's handle is on the root.
    pub fn is_podnets(&self) -> bool {
        matches!(
            self,
            RootState::Shaping | RootState::Htb | RootState::PodnetsNotFq { .. }
        )
    }

    /// podnet's root of `kind` is in place.
    pub fn is(&self, kind: RootKind) -> bool {
        match kind {
            RootKind::Fq => *self == RootState::Shaping,
            RootKind::Htb => *self == RootState::Htb,
        }
    }
}

/// The egress qdiscs of one device (clsact/ingress left out).
#[derive(Debug, Clone, Default)]
pub struct Qdiscs(pub Vec<SavedQdisc>);

impl Qdiscs {
    /// The qdiscs of `link` in an observation of the host, for the plan.
    pub fn observed(observed: &crate::state::Observed, link: &str) -> Qdiscs {
        Qdiscs(
            observed
                .qdiscs
                .iter()
                .filter(|q| q.link == link && q.parent != TC_H_CLSACT)
                .map(|q| SavedQdisc {
                    kind: q.kind.clone(),
                    handle: q.handle,
                    parent: q.parent,
                    options: Vec::new(),
                })
                .collect(),
        )
    }

    pub fn root(&self) -> Option<&SavedQdisc> {
        self.0.iter().find(|q| q.parent == TC_H_ROOT)
    }

    /// See [`RootState`].
    pub fn root_state(&self) -> RootState {
        let Some(root) = self.root() else {
            return RootState::Missing;
        };
        if root.major() != PODNET_QDISC_MAJOR {
            return RootState::Other {
                kind: root.kind.clone(),
                default: root.is_default(),
            };
        }
        let fq = match root.kind.as_str() {
            "htb" => return RootState::Htb,
            "fq" => true,
            "mq" => {
                let mut children = self.children_of(PODNET_QDISC_MAJOR).peekable();
                children.peek().is_some() && children.all(|c| c.kind == "fq")
            }
            _ => false,
        };
        if fq {
            RootState::Shaping
        } else {
            RootState::PodnetsNotFq {
                kind: root.kind.clone(),
            }
        }
    }

    fn children_of(&self, major: u16) -> impl Iterator<Item = &SavedQdisc> {
        self.0
            .iter()
            .filter(move |q| q.parent != TC_H_ROOT && q.parent_major() == major)
    }

    /// podnet's handle is on the root (it may still need checking: `is_shaping`).
    pub fn root_is_podnets(&self) -> bool {
        self.root_state().is_podnets()
    }

    /// podnet's fq at the root, or mq whose every queue has fq: packets meet fq.
    pub fn is_shaping(&self) -> bool {
        self.root_state() == RootState::Shaping
    }

    /// What to put back later, or why podnet will not replace this root.
    pub fn previous_root(&self, device: &str) -> Result<PreviousRoot> {
        let Some(root) = self.root() else {
            // A device always has a root (noqueue at least); none means it
            // went away mid-dump.
            return Err(Error::new(
                ErrorKind::NotFoundYet,
                format!("{device}: no root qdisc"),
            ));
        };
        if root.is_default() {
            return Ok(PreviousRoot::Default {
                kind: root.kind.clone(),
            });
        }
        if root.kind == "mq" {
            let children: Vec<SavedQdisc> = self.children_of(root.major()).cloned().collect();
            if let Some(deep) = children
                .iter()
                .find(|c| !c.is_default() && self.children_of(c.major()).next().is_some())
            {
                return Err(refuse(
                    device,
                    root,
                    &format!(
                        "its queue qdisc {} {} has children",
                        deep.kind,
                        tc_handle(deep.handle)
                    ),
                ));
            }
            return Ok(PreviousRoot::Mq {
                mq: root.clone(),
                children,
            });
        }
        if CLASSFUL.contains(&root.kind.as_str()) {
            return Err(refuse(device, root, "it is classful"));
        }
        if let Some(child) = self.children_of(root.major()).next() {
            return Err(refuse(
                device,
                root,
                &format!(
                    "it has a child qdisc {} {}",
                    child.kind,
                    tc_handle(child.handle)
                ),
            ));
        }
        Ok(PreviousRoot::Leaf {
            qdisc: root.clone(),
        })
    }
}

fn refuse(device: &str, root: &SavedQdisc, why: &str) -> Error {
    Error::new(
        ErrorKind::Host,
        format!(
            "{device}: will not replace the root qdisc {} {} to shape: {why}, and podnet could not \
             put that configuration back when shaping is turned off; remove it or shape another device",
            root.kind,
            tc_handle(root.handle)
        ),
    )
}

/// Dumps the egress qdiscs of `ifindex`.
pub async fn dump(kernel: &Kernel, ifindex: u32) -> Result<Qdiscs> {
    let msgs: Vec<TcMessage> = kernel
        .handle()
        .qdisc()
        .get()
        .index(ifindex as i32)
        .execute()
        .try_collect()
        .await
        .map_err(|e| refused(e).context("reading qdiscs"))?;
    Ok(Qdiscs(
        msgs.iter()
            // The kernel may dump every device whatever the filter says.
            .filter(|m| m.header.index == ifindex as i32)
            .map(saved)
            .filter(|q| q.parent != TC_H_CLSACT)
            .collect(),
    ))
}

fn saved(m: &TcMessage) -> SavedQdisc {
    let mut q = SavedQdisc {
        kind: String::new(),
        handle: u32::from(m.header.handle),
        parent: u32::from(m.header.parent),
        options: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            TcAttribute::Kind(k) => q.kind = k.clone(),
            TcAttribute::Options(opts) => q.options = raw_options(opts),
            _ => {}
        }
    }
    q
}

/// The `TCA_OPTIONS` payload back as bytes. netlink-packet-route keeps the
/// payload of a kind it does not know as one attribute of type TCA_OPTIONS
/// (it may be a struct, not attributes), and parses known kinds into
/// attributes, which re-emit to the same bytes.
fn raw_options(opts: &[TcOption]) -> Vec<u8> {
    if let [TcOption::Other(nla)] = opts {
        if nla.kind() == TCA_OPTIONS {
            let mut v = vec![0; nla.value_len()];
            nla.emit_value(&mut v);
            return v;
        }
    }
    let mut v = vec![0; opts.buffer_len()];
    opts.emit(&mut v);
    v
}

/// fq's options: its horizon above every endpoint's, dropping beyond it.
fn fq_options() -> Vec<u8> {
    let mut v = Vec::new();
    push_attr(&mut v, TCA_FQ_HORIZON, &FQ_HORIZON_US.to_ne_bytes());
    push_attr(&mut v, TCA_FQ_HORIZON_DROP, &[1]);
    // `nopacing`: fq holds a packet only to the departure time on it (the
    // EDT program's stamp). It does not pace sockets at their own rate, so
    // a pod the shaper does not limit sends as it did before fq came
    // (under noqueue), and TCP does not switch to fq pacing.
    push_attr(&mut v, TCA_FQ_RATE_ENABLE, &0u32.to_ne_bytes());
    v
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn qdisc_msg(ifindex: u32, parent: u32, handle: u32, kind: &str, options: &[u8]) -> TcMessage {
    let mut m = TcMessage::default();
    m.header.index = ifindex as i32;
    m.header.parent = TcHandle::from(parent);
    m.header.handle = TcHandle::from(handle);
    // A delete names no kind: the kernel refuses one that does not match.
    if !kind.is_empty() {
        m.attributes.push(TcAttribute::Kind(kind.to_string()));
    }
    if !options.is_empty() {
        m.attributes.push(TcAttribute::Other(DefaultNla::new(
            TCA_OPTIONS,
            options.to_vec(),
        )));
    }
    m
}

async fn send(
    kernel: &Kernel,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut resp = kernel.handle().clone().request(req)?;
    while let Some(m) = resp.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
    }
    Ok(())
}

async fn replace(kernel: &Kernel, m: TcMessage) -> Result<(), rtnetlink::Error> {
    send(
        kernel,
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .await
}

async fn delete(kernel: &Kernel, m: TcMessage) -> Result<(), rtnetlink::Error> {
    send(kernel, RouteNetlinkMessage::DelQueueDiscipline(m), 0).await
}

/// Puts podnet's root on `ifindex`: mq with fq on every transmit queue of a
/// multiqueue device (one fq would serialise all queues behind one lock),
/// else fq alone. Replacing the root swaps it in one step; the brief moment
/// between mq and its fq children only exists before the program is
/// attached, so no stamped packet ever meets a non-fq qdisc.
pub async fn install(kernel: &Kernel, device: &str, ifindex: u32, tx_queues: u32) -> Result<()> {
    let root = u32::from(PODNET_QDISC_MAJOR) << 16;
    let fq = fq_options();
    let nofq = |e: rtnetlink::Error| {
        let text = refused(e);
        Error::new(
            ErrorKind::NotSupported,
            format!(
                "{device}: cannot set fq as root qdisc ({text}); EDT shaping needs the fq qdisc \
                 (CONFIG_NET_SCH_FQ, module sch_fq)"
            ),
        )
    };
    // podnet's htb (the HTB backend's root) cannot be changed into fq.
    clear_other_kind(kernel, device, ifindex, &["fq", "mq"]).await?;
    if tx_queues > 1 {
        match replace(kernel, qdisc_msg(ifindex, TC_H_ROOT, root, "mq", &[])).await {
            Ok(()) => {
                let now = dump(kernel, ifindex).await?;
                let queues: Vec<u32> = now
                    .children_of(PODNET_QDISC_MAJOR)
                    .map(|c| c.parent)
                    .collect();
                for parent in queues {
                    replace(kernel, qdisc_msg(ifindex, parent, 0, "fq", &fq))
                        .await
                        .map_err(nofq)?;
                }
                return Ok(());
            }
            // Not really multiqueue (real_num_tx_queues == 1): fq alone.
            Err(e) if errno(&e).is_some() => {}
            Err(e) => return Err(refused(e).context(format!("{device}: setting mq"))),
        }
    }
    replace(kernel, qdisc_msg(ifindex, TC_H_ROOT, root, "fq", &fq))
        .await
        .map_err(nofq)
}

/// Puts `prev` back at the root of `ifindex`, replacing podnet's.
pub async fn restore(
    kernel: &Kernel,
    device: &str,
    ifindex: u32,
    prev: &PreviousRoot,
) -> Result<()> {
    let ctx = |e: rtnetlink::Error| {
        refused(e).context(format!(
            "{device}: restoring the root qdisc ({})",
            prev.describe()
        ))
    };
    match prev {
        PreviousRoot::Default { .. } => {
            let root = u32::from(PODNET_QDISC_MAJOR) << 16;
            match delete(kernel, qdisc_msg(ifindex, TC_H_ROOT, root, "", &[])).await {
                Ok(()) => Ok(()),
                // Already gone (or the device is): nothing of ours left.
                Err(e) if matches!(errno(&e), Some(Errno::ENOENT) | Some(Errno::ENODEV)) => Ok(()),
                Err(e) => Err(ctx(e)),
            }
        }
        PreviousRoot::Leaf { qdisc } => replace(
            kernel,
            qdisc_msg(
                ifindex,
                TC_H_ROOT,
                qdisc.handle,
                &qdisc.kind,
                &qdisc.options,
            ),
        )
        .await
        .map_err(ctx),
        PreviousRoot::Mq { mq, children } => {
            replace(
                kernel,
                qdisc_msg(ifindex, TC_H_ROOT, mq.handle, "mq", &mq.options),
            )
            .await
            .map_err(ctx)?;
            for c in children.iter().filter(|c| !c.is_default()) {
                replace(
                    kernel,
                    qdisc_msg(ifindex, c.parent, c.handle, &c.kind, &c.options),
                )
                .await
                .map_err(ctx)?;
            }
            Ok(())
        }
    }
}

/// Adds clsact; false when one was already there.
pub async fn add_clsact(kernel: &Kernel, device: &str, ifindex: u32) -> Result<bool> {
    let m = qdisc_msg(ifindex, TC_H_CLSACT, CLSACT_HANDLE, "clsact", &[]);
    match send(
        kernel,
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(Errno::EEXIST) => Ok(false),
        Err(e) => Err(refused(e).context(format!("{device}: adding clsact"))),
    }
}

/// Filters on a clsact hook of `ifindex`, as (priority, handle, kind).
/// One tc filter, as far as shaping cares.
struct Filter {
    priority: u16,
    handle: u32,
    /// The program a `bpf` filter runs (TCA_BPF_ID), when the kernel says.
    program: Option<u32>,
}

async fn filters(kernel: &Kernel, ifindex: u32, parent: u32) -> Result<Vec<Filter>> {
    use netlink_packet_route::tc::TcFilterBpfOption;
    let mut req = kernel.handle().traffic_filter(ifindex as i32).get();
    req = if parent == TC_H_MIN_INGRESS {
        req.ingress()
    } else {
        req.egress()
    };
    let msgs: Vec<TcMessage> = match req.execute().try_collect().await {
        Ok(m) => m,
        // No clsact, no filters.
        Err(e) if matches!(errno(&e), Some(Errno::EINVAL) | Some(Errno::ENOENT)) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(refused(e).context("reading tc filters")),
    };
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == ifindex as i32 && u32::from(m.header.handle) != 0)
        .map(|m| Filter {
            priority: (m.header.info >> 16) as u16,
            handle: u32::from(m.header.handle),
            program: m.attributes.iter().find_map(|a| match a {
                TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                    TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => Some(*id),
                    _ => None,
                }),
                _ => None,
            }),
        })
        .collect())
}

/// The `TCA_KIND` of a qdisc or filter message (`fq`, `bpf`...).
pub fn kind(msg: &TcMessage) -> String {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The filter at `priority`/`handle` on the clsact egress (or `ingress`)
/// hook: None when there is none, Some(program id) when there is one
/// (Some(None) if the kernel does not say which program it runs).
pub async fn clsact_filter(
    kernel: &Kernel,
    ifindex: u32,
    ingress: bool,
    priority: u16,
    handle: u32,
) -> Result<Option<Option<u32>>> {
    let parent = if ingress {
        TC_H_MIN_INGRESS
    } else {
        TC_H_MIN_EGRESS
    };
    Ok(filters(kernel, ifindex, parent)
        .await?
        .iter()
        .find(|f| f.priority == priority && f.handle == handle)
        .map(|f| f.program))
}

/// Deletes clsact when no filter is left on either hook (its filters would
/// go with it, and they are not podnet's). False when it stays.
pub async fn remove_clsact_if_unused(kernel: &Kernel, device: &str, ifindex: u32) -> Result<bool> {
    if !filters(kernel, ifindex, TC_H_MIN_INGRESS).await?.is_empty()
        || !filters(kernel, ifindex, TC_H_MIN_EGRESS).await?.is_empty()
    {
        return Ok(false);
    }
    match delete(
        kernel,
        qdisc_msg(ifindex, TC_H_CLSACT, CLSACT_HANDLE, "clsact", &[]),
    )
    .await
    {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                errno(&e),
                Some(Errno::ENOENT) | Some(Errno::EINVAL) | Some(Errno::ENODEV)
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(refused(e).context(format!("{device}: removing clsact"))),
    }
}

// ---- The HTB backend: podnet's htb root, a class per endpoint address
// with a bfifo leaf, and a u32 filter per address selecting it. The kernel
// has typed options for none of htb and bfifo in netlink-packet-route:
// raw structs and attributes, as for fq.

const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_RATE64: u16 = 6;
const TCA_HTB_CEIL64: u16 = 7;
const TC_HTB_PROTOVER: u32 = 3;
/// `struct tc_ratespec.linklayer`: with ethernet, the kernel computes
/// transmission times itself and needs no rate table (iproute2's old way).
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// The kernel's psched tick is 2^6 ns (`PSCHED_SHIFT`; /proc/net/psched's
/// second field, 0x40, says the same): HTB's buffer is in ticks.
pub const PSCHED_TICK_NS: u64 = 64;
const TCA_U32_CLASSID: u16 = 1;
const TCA_U32_SEL: u16 = 5;
const TC_U32_TERMINAL: u8 = 1;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// The u32 priorities of podnet's filters: IPv4 first, then IPv6. One
/// priority per family keeps each family's filters in one list.
pub const U32_PRIO_V4: u16 = 1;
pub const U32_PRIO_V6: u16 = 2;

/// podnet's htb root handle, `706e:`.
pub fn htb_root() -> u32 {
    u32::from(PODNET_QDISC_MAJOR) << 16
}

/// htb's global options: `default 0`, so a packet no filter classifies
/// goes out direct (unshaped, not held in any class); r2q is moot, as every
/// class sets its quantum.
fn htb_init() -> Vec<u8> {
    let mut glob = Vec::with_capacity(20);
    for v in [TC_HTB_PROTOVER, 10, 0, 0, 0] {
        glob.extend_from_slice(&v.to_ne_bytes());
    }
    let mut v = Vec::new();
    push_attr(&mut v, TCA_HTB_INIT, &glob);
    v
}

/// A class's options: rate = ceil = `rate_bps`, burst = cburst = `burst_ns`
/// (in psched ticks), quantum from the rate (set, so htb never warns about
/// r2q). Rates of 2^32 bytes/s and more go in the 64-bit attributes.
pub(crate) fn htb_class_options(rate_bps: u64, burst_ns: u64) -> Vec<u8> {
    let bytes = (rate_bps / 8).max(1);
    let rate32 = u32::try_from(bytes).unwrap_or(u32::MAX);
    let ticks = u32::try_from(burst_ns / PSCHED_TICK_NS).unwrap_or(u32::MAX);
    // DRR among classes that may send: about a tenth of a second's bytes
    // at r2q 10 would be htb's own choice; bounded as htb bounds it.
    let quantum = u32::try_from((bytes / 10).clamp(1514, 200_000)).unwrap_or(200_000);
    let mut parms = Vec::with_capacity(44);
    for _ in 0..2 {
        // struct tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate
        parms.push(0);
        parms.push(TC_LINKLAYER_ETHERNET);
        parms.extend_from_slice(&0u16.to_ne_bytes());
        parms.extend_from_slice(&0i16.to_ne_bytes());
        parms.extend_from_slice(&0u16.to_ne_bytes());
        parms.extend_from_slice(&rate32.to_ne_bytes());
    }
    // buffer, cbuffer, quantum, level, prio
    for v in [ticks, ticks, quantum, 0, 0] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }
    let mut v = Vec::new();
    push_attr(&mut v, TCA_HTB_PARMS, &parms);
    if rate32 == u32::MAX {
        push_attr(&mut v, TCA_HTB_RATE64, &bytes.to_ne_bytes());
        push_attr(&mut v, TCA_HTB_CEIL64, &bytes.to_ne_bytes());
    }
    v
}

/// Reads what [`htb_class_options`] writes (and what the kernel dumps):
/// (rate bit/s, ceil bit/s, burst ns).
fn parse_htb_class(options: &[u8]) -> Option<(u64, u64, u64)> {
    let mut parms = None;
    let (mut rate64, mut ceil64) = (None, None);
    for (kind, payload) in attrs(options) {
        match kind {
            TCA_HTB_PARMS if payload.len() >= 44 => parms = Some(payload),
            TCA_HTB_RATE64 if payload.len() >= 8 => rate64 = Some(u64_at(payload, 0)),
            TCA_HTB_CEIL64 if payload.len() >= 8 => ceil64 = Some(u64_at(payload, 0)),
            _ => {}
        }
    }
    let p = parms?;
    let rate = rate64.unwrap_or(u64::from(u32_at(p, 8)));
    let ceil = ceil64.unwrap_or(u64::from(u32_at(p, 20)));
    let buffer = u64::from(u32_at(p, 24));
    Some((rate * 8, ceil * 8, buffer * PSCHED_TICK_NS))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(x)
}

/// The (type, payload) of each attribute in `buf`.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// Where an address starts in the IP header: IPv4 source 12 and
/// destination 16, IPv6 source 8 and destination 24.
fn addr_offset(v4: bool, dst: bool) -> i32 {
    match (v4, dst) {
        (true, false) => 12,
        (true, true) => 16,
        (false, false) => 8,
        (false, true) => 24,
    }
}

/// The u32 options matching source (or `dst`: destination) address `ip`
/// exactly and sending to class `classid`: `match ip src A/32` (IPv4
/// header offset 12; dst 16) or `match ip6 src A/128` (offsets 8..24; dst
/// 24..40), terminal.
fn u32_options(ip: std::net::IpAddr, dst: bool, classid: u32) -> Vec<u8> {
    let keys: Vec<(u32, i32)> = match ip {
        std::net::IpAddr::V4(a) => vec![(u32::from(a), addr_offset(true, dst))],
        std::net::IpAddr::V6(a) => a
            .octets()
            .chunks(4)
            .zip((0..4).map(|i| addr_offset(false, dst) + 4 * i))
            .map(|(c, off)| (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), off))
            .collect(),
    };
    // struct tc_u32_sel: flags, offshift, nkeys, pad, offmask (be16), off,
    // offoff, hoff, hmask (be32); then struct tc_u32_key each: mask, val
    // (be32), off, offmask.
    let mut sel = vec![TC_U32_TERMINAL, 0, keys.len() as u8, 0];
    sel.extend_from_slice(&[0; 12]);
    for (val, off) in keys {
        sel.extend_from_slice(&u32::MAX.to_be_bytes());
        sel.extend_from_slice(&val.to_be_bytes());
        sel.extend_from_slice(&off.to_ne_bytes());
        sel.extend_from_slice(&0i32.to_ne_bytes());
    }
    let mut v = Vec::new();
    push_attr(&mut v, TCA_U32_CLASSID, &classid.to_ne_bytes());
    push_attr(&mut v, TCA_U32_SEL, &sel);
    v
}

/// The address a u32 selector matches and whether it is the destination,
/// if it is exactly one of podnet's selectors: a source (see
/// [`u32_address`]) or a destination.
fn u32_match(sel: &netlink_packet_route::tc::TcU32Selector) -> Option<(std::net::IpAddr, bool)> {
    u32_address(sel, false)
        .map(|ip| (ip, false))
        .or_else(|| u32_address(sel, true).map(|ip| (ip, true)))
}

/// The source (or `dst`: destination) address a u32 selector matches, if
/// it is exactly one of podnet's: one full-mask key at 12 (IPv4; dst 16),
/// or four at 8..24 (IPv6; dst 24..40).
fn u32_address(
    sel: &netlink_packet_route::tc::TcU32Selector,
    dst: bool,
) -> Option<std::net::IpAddr> {
    let full = |k: &netlink_packet_route::tc::TcU32Key| k.mask == u32::MAX && k.offmask == 0;
    let v6 = addr_offset(false, dst);
    match sel.keys.as_slice() {
        [k] if full(k) && k.off == addr_offset(true, dst) => {
            Some(std::net::Ipv4Addr::from(k.val).into())
        }
        ks if ks.len() == 4
            && ks.iter().all(full)
            && ks.iter().map(|k| k.off).eq((0..4).map(|i| v6 + 4 * i)) =>
        {
            let mut o = [0u8; 16];
            for (i, k) in ks.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&k.val.to_be_bytes());
            }
            Some(std::net::Ipv6Addr::from(o).into())
        }
        _ => None,
    }
}

/// A class or filter dump. The kernel runs one dump at a time per netlink
/// socket and answers EBUSY to a second one, which podnetd's sampler and a
/// request's own read (CHECK) can start together on its one socket: such a
/// dump is tried again after the other's few milliseconds, up to 50 times.
async fn dump_tc(
    kernel: &Kernel,
    msg: RouteNetlinkMessage,
) -> Result<Vec<TcMessage>, rtnetlink::Error> {
    let mut tries = 0;
    loop {
        match dump_tc_once(kernel, msg.clone()).await {
            Err(e) if errno(&e) == Some(Errno::EBUSY) && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            done => return done,
        }
    }
}

async fn dump_tc_once(
    kernel: &Kernel,
    msg: RouteNetlinkMessage,
) -> Result<Vec<TcMessage>, rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | rtnetlink::packet_core::NLM_F_DUMP;
    let mut resp = kernel.handle().clone().request(req)?;
    let mut out = Vec::new();
    while let Some(m) = resp.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewTrafficClass(t) | RouteNetlinkMessage::NewTrafficFilter(t),
            ) => out.push(t),
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// podnet's HTB tree on `ifindex` (classes under `706e:` with their leaves
/// and counters, filters on `706e:`), given its qdiscs (`leaves`: every
/// qdisc of the device, raw, to find each class's leaf).
pub async fn htb_tree(
    kernel: &Kernel,
    link: &str,
    ifindex: u32,
    leaves: &Qdiscs,
) -> Result<crate::state::HtbTree> {
    use netlink_packet_route::tc::{TcFilterU32Option, TcStats2};
    let root = htb_root();
    let mut m = TcMessage::default();
    m.header.index = ifindex as i32;
    let classes = dump_tc(kernel, RouteNetlinkMessage::GetTrafficClass(m.clone()))
        .await
        .map_err(|e| refused(e).context(format!("{link}: reading htb classes")))?;
    m.header.parent = TcHandle::from(root);
    let filters = match dump_tc(kernel, RouteNetlinkMessage::GetTrafficFilter(m)).await {
        Ok(f) => f,
        // The root went away meanwhile.
        Err(e) if matches!(errno(&e), Some(Errno::EINVAL) | Some(Errno::ENOENT)) => Vec::new(),
        Err(e) => return Err(refused(e).context(format!("{link}: reading u32 filters"))),
    };
    let mut tree = crate::state::HtbTree {
        link: link.to_string(),
        ..Default::default()
    };
    for c in classes.iter().filter(|c| c.header.index == ifindex as i32) {
        let handle = u32::from(c.header.handle);
        if handle >> 16 != root >> 16 || handle & 0xffff == 0 || kind(c) != "htb" {
            continue;
        }
        let mut stats = crate::state::ClassStats::default();
        let mut params = None;
        for a in &c.attributes {
            match a {
                TcAttribute::Options(opts) => params = parse_htb_class(&raw_options(opts)),
                TcAttribute::Stats2(s2) => {
                    for s in s2 {
                        match s {
                            TcStats2::Basic(b) => {
                                stats.bytes = b.bytes;
                                stats.packets = u64::from(b.packets);
                            }
                            TcStats2::Queue(q) => {
                                stats.drops = u64::from(q.drops);
                                stats.overlimits = u64::from(q.overlimits);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let (rate_bps, ceil_bps, burst_ns) = params.unwrap_or_default();
        let leaf = leaves
            .0
            .iter()
            .find(|q| q.parent == handle)
            .map(|q| crate::state::HtbLeaf {
                kind: q.kind.clone(),
                limit_bytes: if q.kind == "bfifo" && q.options.len() >= 4 {
                    u32_at(&q.options, 0)
                } else {
                    0
                },
            });
        tree.classes.push(crate::state::HtbClass {
            minor: (handle & 0xffff) as u16,
            rate_bps,
            ceil_bps,
            burst_ns,
            leaf,
            stats,
        });
    }
    for f in filters.iter().filter(|f| f.header.index == ifindex as i32) {
        let handle = u32::from(f.header.handle);
        // The per-priority entries and the hash table itself carry no node.
        if handle & 0xfff == 0 {
            continue;
        }
        let (mut ip, mut class) = (None, None);
        let mut dst = false;
        for a in &f.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    match o {
                        TcOption::U32(TcFilterU32Option::Selector(sel)) => {
                            (ip, dst) = u32_match(sel).map_or((None, false), |(a, d)| (Some(a), d))
                        }
                        TcOption::U32(TcFilterU32Option::ClassId(id)) => {
                            let id = u32::from(*id);
                            class = (id >> 16 == root >> 16).then_some((id & 0xffff) as u16);
                        }
                        _ => {}
                    }
                }
            }
        }
        tree.filters.push(crate::state::HtbFilter {
            priority: (f.header.info >> 16) as u16,
            handle,
            ip,
            dst,
            class,
        });
    }
    tree.classes.sort_by_key(|c| c.minor);
    tree.filters.sort_by_key(|f| (f.priority, f.handle));
    Ok(tree)
}

/// Puts podnet's htb at the root of `ifindex` (see [`htb_init`]). A root of
/// podnet's of another kind is deleted first: the kernel changes a qdisc in
/// place under its handle, never into another kind.
pub async fn install_htb(kernel: &Kernel, device: &str, ifindex: u32) -> Result<()> {
    clear_other_kind(kernel, device, ifindex, &["htb"]).await?;
    replace(
        kernel,
        qdisc_msg(ifindex, TC_H_ROOT, htb_root(), "htb", &htb_init()),
    )
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::NotSupported,
            format!(
                "{device}: cannot set htb as root qdisc ({}); the HTB backend needs the htb qdisc \
                 (CONFIG_NET_SCH_HTB, module sch_htb)",
                refused(e)
            ),
        )
    })
}

/// Deletes podnet's root when it is of another kind than `want`.
async fn clear_other_kind(
    kernel: &Kernel,
    device: &str,
    ifindex: u32,
    want: &[&str],
) -> Result<()> {
    let now = dump(kernel, ifindex).await?;
    if let Some(root) = now.root() {
        if root.major() == PODNET_QDISC_MAJOR && !want.contains(&root.kind.as_str()) {
            delete(kernel, qdisc_msg(ifindex, TC_H_ROOT, root.handle, "", &[]))
                .await
                .map_err(|e| {
                    refused(e).context(format!("{device}: removing podnet's {} root", root.kind))
                })?;
        }
    }
    Ok(())
}

fn class_msg(ifindex: u32, minor: u16, options: &[u8]) -> TcMessage {
    let mut m = qdisc_msg(
        ifindex,
        htb_root(),
        htb_root() | u32::from(minor),
        "htb",
        options,
    );
    if options.is_empty() {
        m.attributes.clear();
    }
    m
}

/// Creates or changes class `706e:minor` (in place: its queue stays), then
/// its bfifo leaf: changed in place when one is there (bfifo's change keeps
/// its packets), else grafted.
pub async fn set_class(
    kernel: &Kernel,
    device: &str,
    ifindex: u32,
    minor: u16,
    rate_bps: u64,
    burst_ns: u64,
    limit_bytes: u32,
) -> Result<()> {
    let ctx = |what: &'static str| {
        move |e: rtnetlink::Error| refused(e).context(format!("{device}: {what} 706e:{minor:x}"))
    };
    let m = class_msg(ifindex, minor, &htb_class_options(rate_bps, burst_ns));
    send(
        kernel,
        RouteNetlinkMessage::NewTrafficClass(m),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .await
    .map_err(ctx("setting htb class"))?;
    let classid = htb_root() | u32::from(minor);
    let leaf = dump(kernel, ifindex)
        .await?
        .0
        .into_iter()
        .find(|q| q.parent == classid && q.kind == "bfifo")
        .map_or(0, |q| q.handle);
    replace(
        kernel,
        qdisc_msg(ifindex, classid, leaf, "bfifo", &limit_bytes.to_ne_bytes()),
    )
    .await
    .map_err(ctx("setting the bfifo leaf of"))
}

/// Deletes class `706e:minor` (its leaf goes with it); gone already is fine.
pub async fn remove_class(kernel: &Kernel, device: &str, ifindex: u32, minor: u16) -> Result<()> {
    match send(
        kernel,
        RouteNetlinkMessage::DelTrafficClass(class_msg(ifindex, minor, &[])),
        0,
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(Errno::ENOENT) | Some(Errno::ENODEV)) => Ok(()),
        Err(e) => Err(refused(e).context(format!("{device}: removing htb class 706e:{minor:x}"))),
    }
}

fn filter_msg(ifindex: u32, ip: std::net::IpAddr, handle: u32, priority: u16) -> TcMessage {
    let proto = if ip.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
    let mut m = TcMessage::default();
    m.header.index = ifindex as i32;
    m.header.parent = TcHandle::from(htb_root());
    m.header.handle = TcHandle::from(handle);
    m.header.info = u32::from(priority) << 16 | u32::from(proto.to_be());
    m.attributes.push(TcAttribute::Kind("u32".into()));
    m
}

/// Adds the u32 filter sending `ip`'s packets (those from it; `dst`: to
/// it) to class `706e:minor`.
pub async fn add_filter(
    kernel: &Kernel,
    device: &str,
    ifindex: u32,
    ip: std::net::IpAddr,
    dst: bool,
    minor: u16,
) -> Result<()> {
    let prio = if ip.is_ipv4() {
        U32_PRIO_V4
    } else {
        U32_PRIO_V6
    };
    let mut m = filter_msg(ifindex, ip, 0, prio);
    m.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        u32_options(ip, dst, htb_root() | u32::from(minor)),
    )));
    send(
        kernel,
        RouteNetlinkMessage::NewTrafficFilter(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    .map_err(|e| refused(e).context(format!("{device}: adding the u32 filter of {ip}")))
}

/// Removes every u32 filter on podnet's root that matches `ip` (found by a
/// dump: the kernel picks a filter's handle when it is added).
pub async fn remove_filters(
    kernel: &Kernel,
    device: &str,
    ifindex: u32,
    ip: std::net::IpAddr,
) -> Result<()> {
    let tree = htb_tree(kernel, device, ifindex, &Qdiscs::default()).await?;
    for f in tree.filters.iter().filter(|f| f.ip == Some(ip)) {
        match send(
            kernel,
            RouteNetlinkMessage::DelTrafficFilter(filter_msg(ifindex, ip, f.handle, f.priority)),
            0,
        )
        .await
        {
            Ok(()) => {}
            Err(e) if matches!(errno(&e), Some(Errno::ENOENT) | Some(Errno::ENODEV)) => {}
            Err(e) => {
                return Err(refused(e).context(format!("{device}: removing the u32 filter of {ip}")))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(kind: &str, handle: u32, parent: u32) -> SavedQdisc {
        SavedQdisc {
            kind: kind.into(),
            handle,
            parent,
            options: vec![1, 2, 3],
        }
    }

    #[test]
    fn one_rule_says_whose_root_it_is() {
        const PN: u32 = (PODNET_QDISC_MAJOR as u32) << 16;
        let state = |qs: Vec<SavedQdisc>| Qdiscs(qs).root_state();
        assert_eq!(state(vec![q("fq", PN, TC_H_ROOT)]), RootState::Shaping);
        assert_eq!(
            state(vec![
                q("mq", PN, TC_H_ROOT),
                q("fq", 0x0001_0000, PN | 1),
                q("fq", 0x0002_0000, PN | 2),
            ]),
            RootState::Shaping
        );
        // One queue without fq, or none at all: not shaping, still podnet's.
        for qs in [
            vec![
                q("mq", PN, TC_H_ROOT),
                q("fq", 0x0001_0000, PN | 1),
                q("pfifo_fast", 0, PN | 2),
            ],
            vec![q("mq", PN, TC_H_ROOT)],
        ] {
            assert_eq!(state(qs), RootState::PodnetsNotFq { kind: "mq".into() });
        }
        let tbf = state(vec![q("tbf", PN, TC_H_ROOT)]);
        assert_eq!(tbf, RootState::PodnetsNotFq { kind: "tbf".into() });
        assert!(tbf.is_podnets());
        // fq under another handle is someone else's.
        let theirs = state(vec![q("fq", 0x0001_0000, TC_H_ROOT)]);
        assert_eq!(
            theirs,
            RootState::Other {
                kind: "fq".into(),
                default: false
            }
        );
        assert!(!theirs.is_podnets());
        assert_eq!(
            state(vec![q("noqueue", 0, TC_H_ROOT)]),
            RootState::Other {
                kind: "noqueue".into(),
                default: true
            }
        );
        assert_eq!(state(vec![]), RootState::Missing);
    }

    #[test]
    fn handles_read_back_as_tc_prints_them() {
        for h in [
            TC_H_ROOT,
            TC_H_CLSACT,
            0,
            0x706e_0000,
            0x0007_0002,
            0xffff_0000,
        ] {
            assert_eq!(parse_tc_handle(&tc_handle(h)), Some(h), "{}", tc_handle(h));
        }
        assert_eq!(parse_tc_handle("706e:"), Some(0x706e_0000));
        assert_eq!(parse_tc_handle("1:2:3"), None);
        assert_eq!(parse_tc_handle("10000:0"), None);
    }

    #[test]
    fn a_default_root_is_restored_by_deleting_ours() {
        let qs = Qdiscs(vec![q("noqueue", 0, TC_H_ROOT)]);
        assert_eq!(
            qs.previous_root("eth0").unwrap(),
            PreviousRoot::Default {
                kind: "noqueue".into()
            }
        );
        let mq = Qdiscs(vec![
            q("mq", 0, TC_H_ROOT),
            q("fq_codel", 0, 1),
            q("fq_codel", 0, 2),
        ]);
        assert!(matches!(
            mq.previous_root("eth0").unwrap(),
            PreviousRoot::Default { .. }
        ));
    }

    #[test]
    fn a_configured_leaf_is_saved_with_its_options() {
        let qs = Qdiscs(vec![q("fq_codel", 0x0005_0000, TC_H_ROOT)]);
        let PreviousRoot::Leaf { qdisc } = qs.previous_root("eth0").unwrap() else {
            panic!("not a leaf")
        };
        assert_eq!(qdisc.options, vec![1, 2, 3]);
        assert_eq!(tc_handle(qdisc.handle), "5:0");
    }

    #[test]
    fn a_configured_mq_is_saved_with_its_queues() {
        let qs = Qdiscs(vec![
            q("mq", 0x0007_0000, TC_H_ROOT),
            q("fq_codel", 0, 0x0007_0001),
            q("pfifo", 0x0008_0000, 0x0007_0002),
        ]);
        let PreviousRoot::Mq { mq, children } = qs.previous_root("eth0").unwrap() else {
            panic!("not mq")
        };
        assert_eq!(mq.handle, 0x0007_0000);
        assert_eq!(children.len(), 2);
    }

    #[test]
    fn trees_are_refused_not_replaced() {
        let htb = Qdiscs(vec![q("htb", 0x0001_0000, TC_H_ROOT)]);
        let e = htb.previous_root("eth0").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Host);
        assert!(e.to_string().contains("classful"), "{e}");
        let tbf_with_child = Qdiscs(vec![
            q("tbf", 0x0001_0000, TC_H_ROOT),
            q("netem", 0x0010_0000, 0x0001_0001),
        ]);
        assert!(tbf_with_child.previous_root("eth0").is_err());
    }

    #[test]
    fn podnets_root_is_recognised() {
        let ours = u32::from(PODNET_QDISC_MAJOR) << 16;
        let fq = Qdiscs(vec![q("fq", ours, TC_H_ROOT)]);
        assert!(fq.root_is_podnets() && fq.is_shaping());
        let mq = Qdiscs(vec![
            q("mq", ours, TC_H_ROOT),
            q("fq", 0x8001_0000, ours | 1),
            q("pfifo_fast", 0, ours | 2),
        ]);
        assert!(mq.root_is_podnets());
        assert!(!mq.is_shaping(), "one queue without fq");
        let foreign_fq = Qdiscs(vec![q("fq", 0x0001_0000, TC_H_ROOT)]);
        assert!(!foreign_fq.root_is_podnets() && !foreign_fq.is_shaping());
    }

    #[test]
    fn htb_class_options_read_back_and_use_64_bit_rates_above_u32() {
        for (rate, burst) in [(10_000_000, 52_428_800), (800_000_000_000, 64_000)] {
            let o = htb_class_options(rate, burst);
            assert_eq!(parse_htb_class(&o), Some((rate, rate, burst)));
        }
        // 44 bytes of tc_htb_opt + header: no 64-bit attributes below 2^32 B/s.
        assert_eq!(htb_class_options(10_000_000, 640).len(), 48);
        assert_eq!(htb_class_options(800_000_000_000, 640).len(), 48 + 12 + 12);
    }

    #[test]
    fn u32_selectors_read_back_to_their_address() {
        use netlink_packet_route::tc::{TcFilterU32Option, TcU32Selector};
        for (ip, dst) in ["10.0.0.5", "fd00::5", "2001:db8:1:2:3:4:5:6"]
            .into_iter()
            .flat_map(|ip| [(ip, false), (ip, true)])
        {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let o = u32_options(ip, dst, htb_root() | 7);
            let (_, sel) = attrs(&o)
                .into_iter()
                .find(|(k, _)| *k == TCA_U32_SEL)
                .unwrap();
            let sel = TcU32Selector::parse(sel).unwrap();
            assert_eq!(u32_address(&sel, dst), Some(ip), "{ip} dst={dst}");
            // A source match is no destination match, nor the reverse.
            assert_eq!(u32_address(&sel, !dst), None, "{ip} dst={dst}");
            let _ = TcFilterU32Option::Selector(sel);
        }
    }

    #[test]
    fn fq_options_are_aligned_attributes() {
        let v = fq_options();
        // horizon: 4-byte header + u32; horizon_drop: header + u8 + 3 pad;
        // rate_enable: header + u32
        assert_eq!(v.len(), 8 + 8 + 8);
        assert_eq!(u16::from_ne_bytes([v[2], v[3]]), TCA_FQ_HORIZON);
        assert_eq!(u32::from_ne_bytes([v[4], v[5], v[6], v[7]]), FQ_HORIZON_US);
        assert_eq!(u16::from_ne_bytes([v[8], v[9]]), 5);
        assert_eq!(u16::from_ne_bytes([v[10], v[11]]), TCA_FQ_HORIZON_DROP);
        assert_eq!(u16::from_ne_bytes([v[18], v[19]]), TCA_FQ_RATE_ENABLE);
        assert_eq!(u32::from_ne_bytes([v[20], v[21], v[22], v[23]]), 0);
    }
}
