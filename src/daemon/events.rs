//! What wakes the daemon: edits under the config directory, kernel events
//! on objects podnet owns or depends on, requests on the socket, a timer.
//! Each becomes a [`Trigger`] on one channel; the loop coalesces them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::RouteAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::MulticastGroup;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::api::types::{Reconcile, Trial, TryAnswer};
use crate::api::Refusal;
use crate::state::{OWNER_ALIAS_PREFIX, RTPROT_PODNET};

/// A reason to reconcile.
#[derive(Debug)]
pub enum Trigger {
    Files,
    Kernel(String),
    /// The kernel dropped events (socket overrun): state must be re-read.
    Overrun,
    /// An endpoint was registered or removed: the shaper's map follows.
    Endpoints,
    Request {
        force: bool,
        reply: oneshot::Sender<Reconcile>,
    },
    Try {
        timeout: std::time::Duration,
        reply: oneshot::Sender<Result<TryAnswer, Refusal>>,
    },
    Confirm {
        reply: oneshot::Sender<Result<Trial, Refusal>>,
    },
}

pub type Triggers = mpsc::UnboundedSender<Trigger>;

/// The objects whose kernel events matter: the declared masters and shims
/// (by name and by ifindex, as address and route events only carry the index).
#[derive(Debug, Default)]
pub struct Watch {
    pub names: HashSet<String>,
    pub indexes: HashSet<u32>,
}

/// Watches the config directory. Editors that write a temporary file and
/// rename it over the original, and Kubernetes ConfigMap mounts that swap a
/// `..data` symlink, both show up as events in the directory itself.
pub fn watch_files(dir: &Path, tx: Triggers) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Reading the files ourselves must not wake us again.
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(e) => {
                debug!(paths = ?e.paths, kind = ?e.kind, "config directory event");
                let _ = tx.send(Trigger::Files);
            }
            Err(e) => warn!("watching the config directory: {e}"),
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Subscribes to link, address, route and qdisc events and forwards the
/// ones about watched objects (or about anything podnet marked as its own).
pub fn watch_kernel(tx: Triggers, watch: Arc<RwLock<Watch>>) -> std::io::Result<()> {
    let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Tc,
    ])?;
    tokio::spawn(connection);
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let trigger = match relevant(&message, &watch) {
                Some(what) => Trigger::Kernel(what),
                None if matches!(message.payload, NetlinkPayload::Overrun(_)) => Trigger::Overrun,
                None => continue,
            };
            if tx.send(trigger).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A short description of the event when it concerns a watched object.
fn relevant(
    message: &NetlinkMessage<RouteNetlinkMessage>,
    watch: &RwLock<Watch>,
) -> Option<String> {
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        return None;
    };
    let w = watch.read().ok()?;
    match inner {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            let mut name = None;
            let mut owned = false;
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.as_str()),
                    LinkAttribute::IfAlias(al) => owned = al.starts_with(OWNER_ALIAS_PREFIX),
                    _ => {}
                }
            }
            let named = name.is_some_and(|n| w.names.contains(n));
            (named || owned || w.indexes.contains(&l.header.index))
                .then(|| format!("link {}", name.unwrap_or("?")))
        }
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => w
            .indexes
            .contains(&a.header.index)
            .then(|| format!("address on ifindex {}", a.header.index)),
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let ours = u8::from(r.header.protocol) == RTPROT_PODNET;
            (ours || oif.is_some_and(|i| w.indexes.contains(&i))).then(|| "route".to_string())
        }
        RouteNetlinkMessage::NewQueueDiscipline(q) | RouteNetlinkMessage::DelQueueDiscipline(q) => {
            let index = u32::try_from(q.header.index).ok()?;
            w.indexes
                .contains(&index)
                .then(|| format!("qdisc on ifindex {index}"))
        }
        _ => None,
    }
}
