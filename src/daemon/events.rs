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
use tracing::{debug, error, warn};

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
        options: crate::api::types::ReconcileOptions,
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

/// How long the watcher waits before subscribing again after the kernel's
/// event stream ended (or a new subscription failed).
const RESUBSCRIBE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Subscribes to link, address, route and qdisc events and forwards the
/// ones about watched objects (or about anything podnet marked as its own).
/// Should the stream ever end, the watcher says so, subscribes again and
/// asks for a full pass: the daemon never falls back to its timer unnoticed.
pub fn watch_kernel(tx: Triggers, watch: Arc<RwLock<Watch>>) -> std::io::Result<()> {
    let first = subscribe()?;
    tokio::spawn(forward(first, subscribe, tx, watch, RESUBSCRIBE_PAUSE));
    Ok(())
}

type Event = (
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
);

fn subscribe() -> std::io::Result<futures::channel::mpsc::UnboundedReceiver<Event>> {
    let (connection, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Tc,
    ])?;
    tokio::spawn(connection);
    Ok(messages)
}

/// Forwards relevant events from `messages` until the daemon stops
/// listening; a stream that ends is replaced by a new `subscribe()`.
async fn forward<S, A>(
    mut messages: S,
    mut subscribe: impl FnMut() -> std::io::Result<S>,
    tx: Triggers,
    watch: Arc<RwLock<Watch>>,
    pause: std::time::Duration,
) where
    S: futures::Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, A)> + Unpin,
{
    loop {
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
        error!("the kernel's event stream ended: subscribing again");
        loop {
            tokio::time::sleep(pause).await;
            if tx.is_closed() {
                return;
            }
            match subscribe() {
                Ok(m) => {
                    messages = m;
                    break;
                }
                Err(e) => error!(
                    "subscribing to kernel events again: {e}; retrying in {}s",
                    pause.as_secs()
                ),
            }
        }
        // Nobody listened for a while: read the whole state again.
        if tx.send(Trigger::Overrun).is_err() {
            return;
        }
    }
}

/// A short description of the event when it concerns a watched object.
fn relevant(
    message: &NetlinkMessage<RouteNetlinkMessage>,
    watch: &RwLock<Watch>,
) -> Option<String> {
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        return None;
    };
    let w = watch.read().unwrap_or_else(|p| p.into_inner());
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
        // HTB's classes and u32 filters: a class deleted or changed by hand
        // (its leaf goes with it without a qdisc event), a filter deleted.
        RouteNetlinkMessage::NewTrafficClass(t)
        | RouteNetlinkMessage::DelTrafficClass(t)
        | RouteNetlinkMessage::DelTrafficFilter(t) => {
            let index = u32::try_from(t.header.index).ok()?;
            w.indexes
                .contains(&index)
                .then(|| format!("tc class or filter on ifindex {index}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that ends is replaced, and the loop is told to read the
    /// state again; a failed subscription is retried, not the end.
    #[tokio::test(flavor = "current_thread")]
    async fn an_ended_event_stream_is_replaced_and_asks_for_a_full_pass() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let subscribe = move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 0 {
                Err(std::io::Error::other("no socket"))
            } else {
                Ok(futures::stream::iter(Vec::<(
                    NetlinkMessage<RouteNetlinkMessage>,
                    (),
                )>::new()))
            }
        };
        let task = tokio::spawn(forward(
            futures::stream::iter(Vec::new()),
            subscribe,
            tx,
            Arc::new(RwLock::new(Watch::default())),
            std::time::Duration::from_millis(1),
        ));
        for _ in 0..2 {
            assert!(matches!(rx.recv().await, Some(Trigger::Overrun)));
        }
        drop(rx);
        task.await.unwrap();
        // One failed attempt, then one subscription per ended stream.
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }
}
