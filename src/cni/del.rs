//! DEL: unregister the pod's interface. Best effort, as the spec asks: it
//! succeeds when the endpoint is not registered, when the netns is gone,
//! and when podnetd is down or does not answer in time. A failed DEL keeps
//! the runtime from tearing the pod down; an endpoint left behind costs
//! nothing until podnetd drops it (its netns died) or a GC does.

use serde_json::Value;

use super::types::{code, NetConf, RdmaWant};
use super::{Attachment, Outcome, Podnetd};

/// DEL with the request configuration as given. Only the socket matters
/// here, so a configuration that is invalid in other ways (it would have
/// failed ADD, and the runtime still calls DEL after a failed ADD) does not
/// stop the teardown: podnet-cni says so on stderr and uses the socket it
/// can make out.
pub fn del_raw(raw: &Value, at: &Attachment) -> Outcome {
    let socket: std::path::PathBuf = match NetConf::parse(raw) {
        Ok(conf) => {
            // One budget for the whole DEL: the RDMA lookup and the
            // unregistration share it.
            let podnetd = Podnetd::new(&conf.socket);
            give_back(&conf, at, &podnetd);
            return unregister(&podnetd, at);
        }
        Err(e) if e.code == code::INVALID_CONFIG => {
            let socket = raw
                .get("socket")
                .and_then(Value::as_str)
                .filter(|s| s.starts_with('/'))
                .unwrap_or(crate::api::DEFAULT_SOCKET);
            eprintln!(
                "podnet-cni: DEL {}/{}: going on despite an invalid network configuration ({e}), with socket {socket}",
                at.container_id, at.ifname
            );
            socket.into()
        }
        Err(e) => return Err(e),
    };
    del(&socket, at)
}

/// Moves the pod's RDMA device (the one its endpoint records, else the one
/// the entry names) back to the host, before the endpoint goes. When the
/// namespace is gone there is nothing to do: the kernel returned the
/// device when the namespace died. A device that cannot be moved back is
/// said on stderr and does not stop the teardown, as the kernel returns
/// it when the pod's namespace goes.
fn give_back(conf: &NetConf, at: &Attachment, podnetd: &Podnetd) {
    let Some(want) = &conf.rdma else {
        return;
    };
    // The namespace gone, the kernel has returned the device: nothing to
    // ask podnetd.
    let Some(netns) = at
        .netns
        .as_ref()
        .filter(|n| crate::netns::is_namespace(std::path::Path::new(n)))
    else {
        return;
    };
    let name = super::rdma::registered(podnetd, at).or(match want {
        RdmaWant::Named(n) => Some(n.clone()),
        RdmaWant::OnInterface => None,
    });
    // Not registered (a failed ADD rolled its move back) or podnetd down:
    // what the pod may hold goes back when its namespace does.
    let Some(name) = name else {
        return;
    };
    if let Err(e) = super::rdma::give_back(netns, &name) {
        eprintln!(
            "podnet-cni: DEL {}/{}: {e}; it goes back to the host when the pod's namespace does",
            at.container_id, at.ifname
        );
    }
}

/// Unregisters `at` with the podnetd on `socket`; always succeeds.
pub fn del(socket: &std::path::Path, at: &Attachment) -> Outcome {
    unregister(&Podnetd::new(socket), at)
}

fn unregister(podnetd: &Podnetd, at: &Attachment) -> Outcome {
    let done = podnetd.call(|c| c.delete_endpoint(&at.container_id, &at.ifname));
    if let Err(e) = done {
        eprintln!(
            "podnet-cni: DEL {}/{}: {e}; DEL succeeds anyway so the pod can go, and podnetd drops the endpoint once its netns is gone (or the next GC does)",
            at.container_id, at.ifname
        );
    }
    Ok(None)
}
