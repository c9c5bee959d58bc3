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

/// Whose root qdisc a device has, as far as shaping goes. The one rule both
/// podnetd (before it touches the device) and the plan (what `--dry-run`
/// says podnetd will do) decide by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootState {
    /// podnet's fq, or podnet's mq with an fq on every queue: packets meet
    /// fq, the device is shaped once the program is on its hook.
    Shaping,
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
        matches!(self, RootState::Shaping | RootState::PodnetsNotFq { .. })
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

/// The filter at `priority`/`handle` on the clsact egress hook: None when
/// there is none, Some(program id) when there is one (Some(None) if the
/// kernel does not say which program it runs).
pub async fn egress_filter(
    kernel: &Kernel,
    ifindex: u32,
    priority: u16,
    handle: u32,
) -> Result<Option<Option<u32>>> {
    Ok(filters(kernel, ifindex, TC_H_MIN_EGRESS)
        .await?
        .iter()
        .find(|f| f.priority == priority && f.handle == handle)
        .map(|f| f.program))
}

/// Deletes clsact when no filter is left on either hook (its filters would
/// go with it, and they are not podnet's).
pub async fn remove_clsact_if_unused(kernel: &Kernel, device: &str, ifindex: u32) -> Result<()> {
    if !filters(kernel, ifindex, TC_H_MIN_INGRESS).await?.is_empty()
        || !filters(kernel, ifindex, TC_H_MIN_EGRESS).await?.is_empty()
    {
        return Ok(());
    }
    match delete(
        kernel,
        qdisc_msg(ifindex, TC_H_CLSACT, CLSACT_HANDLE, "clsact", &[]),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                errno(&e),
                Some(Errno::ENOENT) | Some(Errno::EINVAL) | Some(Errno::ENODEV)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(refused(e).context(format!("{device}: removing clsact"))),
    }
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
