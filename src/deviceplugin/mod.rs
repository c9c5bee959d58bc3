//! podnetd's kubelet device plugin: the HCAs `[rdma] devices` offers, as
//! the extended resource `rdma/hca` (kubelet's device plugin API v1beta1,
//! gRPC over Unix sockets in kubelet's directory).
//!
//! Each offered HCA is `pods_per_hca` devices (`mlx5_0-0`, `mlx5_0-1`...)
//! that pods share, as the RDMA shared-device plugin's `rdmaHcaMax` does:
//! a pod that asks for `rdma/hca: 1` gets one, and Allocate answers the
//! char devices of its HCA (uverbs, umad, issm) and `rdma_cm` for kubelet
//! to make in the container. ListAndWatch sends the list again whenever
//! it changes: an HCA the host no longer shows (and no pod holds) turns
//! Unhealthy, one that comes back Healthy.
//!
//! [`run`] keeps the plugin registered: it binds `podnet-rdma.sock` and
//! registers with `kubelet.sock`; when kubelet restarts (it makes its
//! socket anew and removes the plugins') or the settings change, it binds
//! and registers again. It checks each [`CHECK_EVERY`].

pub mod kubelet;
mod server;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

pub use server::Plugin;

/// The generated API (`proto/deviceplugin-v1beta1.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

/// The API version podnet speaks (`RegisterRequest.version`).
pub const VERSION: &str = "v1beta1";
/// kubelet's directory of device plugin sockets.
pub const DEFAULT_DIR: &str = "/var/lib/kubelet/device-plugins";
/// kubelet's registration socket, in that directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// podnet's socket, in that directory.
pub const SOCKET: &str = "podnet-rdma.sock";
/// How often [`run`] looks for a restarted kubelet and for changed HCAs.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// What the node files ask of the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `rdma/hca`.
    pub resource: String,
    /// Devices per HCA: how many pods may share one.
    pub pods_per_hca: u32,
}

/// An HCA as the plugin offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hca {
    pub name: String,
    pub healthy: bool,
    /// `/dev/infiniband/uverbs0`...: what a container that uses it needs.
    pub char_devices: Vec<String>,
}

/// What the plugin serves: the HCAs (each with its devices), `rdma_cm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub hcas: Vec<Hca>,
    /// `/dev/infiniband/rdma_cm`, where rdma_ucm is loaded.
    pub rdma_cm: Option<String>,
}

impl Offer {
    /// The device IDs of `hca`, given `pods_per_hca`.
    pub fn ids(hca: &str, pods_per_hca: u32) -> impl Iterator<Item = String> + '_ {
        (0..pods_per_hca).map(move |i| format!("{hca}-{i}"))
    }

    /// The HCA a device ID belongs to.
    pub fn hca_of<'a>(&'a self, id: &str) -> Option<&'a Hca> {
        let (name, slot) = id.rsplit_once('-')?;
        slot.parse::<u32>().ok()?;
        self.hcas.iter().find(|h| h.name == name)
    }
}

/// Where the plugin's HCAs come from: called (on a blocking thread) each
/// [`CHECK_EVERY`]; None when the node files want no plugin.
pub type Source = Arc<dyn Fn() -> Option<(Settings, Offer)> + Send + Sync>;

/// Keeps the plugin served and registered with the kubelet in `dir`
/// until `stop` resolves. HCAs once offered stay listed (Unhealthy) when
/// they go, so kubelet sees them go rather than vanish.
pub async fn run(dir: PathBuf, source: Source, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let (offers, offer_rx) = watch::channel(Offer::default());
    let mut serving: Option<Serving> = None;
    let mut seen: Vec<Hca> = Vec::new();
    let mut said_no_kubelet = false;
    loop {
        let src = source.clone();
        let wanted = tokio::task::spawn_blocking(move || src())
            .await
            .ok()
            .flatten();
        match wanted {
            None => {
                if let Some(s) = serving.take() {
                    info!(
                        "device plugin {}: no HCA offered in the node files: stopped",
                        s.settings.resource
                    );
                    s.stop();
                }
                seen.clear();
            }
            Some((settings, offer)) => {
                let offer = remember(&mut seen, offer);
                offers.send_if_modified(|o| {
                    let changed = *o != offer;
                    *o = offer.clone();
                    changed
                });
                let restart = match &serving {
                    None => true,
                    Some(s) => s.settings != settings || s.kubelet_restarted(&dir),
                };
                if restart {
                    if let Some(s) = serving.take() {
                        s.stop();
                    }
                    match Serving::start(&dir, settings, offer_rx.clone()).await {
                        Ok(s) => {
                            said_no_kubelet = false;
                            serving = Some(s);
                        }
                        Err(e) if !said_no_kubelet => {
                            warn!(
                                "device plugin: {e}; trying again each {}s",
                                CHECK_EVERY.as_secs()
                            );
                            said_no_kubelet = true;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    if let Some(s) = serving.take() {
        s.stop();
    }
}

/// `offer` with every HCA seen before and now missing listed Unhealthy.
fn remember(seen: &mut Vec<Hca>, mut offer: Offer) -> Offer {
    for h in &offer.hcas {
        match seen.iter_mut().find(|s| s.name == h.name) {
            Some(s) => *s = h.clone(),
            None => seen.push(h.clone()),
        }
    }
    for s in seen.iter() {
        if !offer.hcas.iter().any(|h| h.name == s.name) {
            offer.hcas.push(Hca {
                healthy: false,
                ..s.clone()
            });
        }
    }
    offer.hcas.sort_by(|a, b| a.name.cmp(&b.name));
    offer
}

/// The plugin served on its socket and registered with kubelet.
struct Serving {
    settings: Settings,
    /// kubelet's socket's inode when podnet registered: a new one is a
    /// restarted kubelet.
    kubelet: u64,
    /// podnet's socket's inode: kubelet removes it when it starts.
    socket: u64,
    dir: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
}

fn inode(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}

impl Serving {
    async fn start(
        dir: &Path,
        settings: Settings,
        offers: watch::Receiver<Offer>,
    ) -> Result<Serving, String> {
        let kubelet_socket = dir.join(KUBELET_SOCKET);
        let kubelet = inode(&kubelet_socket)
            .ok_or_else(|| format!("kubelet is not there: no {}", kubelet_socket.display()))?;
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let socket = inode(&path).unwrap_or_default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let plugin = Plugin::new(settings.clone(), offers);
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(v1beta1::device_plugin_server::DevicePluginServer::new(
                    plugin,
                ))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
            {
                warn!("device plugin server: {e}");
            }
        });
        let serving = Serving {
            settings,
            kubelet,
            socket,
            dir: dir.to_path_buf(),
            stop,
        };
        if let Err(e) = register(&kubelet_socket, &serving.settings.resource).await {
            serving.stop();
            return Err(format!(
                "registering with {}: {e}",
                kubelet_socket.display()
            ));
        }
        info!(
            "device plugin {}: registered with {} ({} per HCA)",
            serving.settings.resource,
            kubelet_socket.display(),
            serving.settings.pods_per_hca
        );
        Ok(serving)
    }

    fn kubelet_restarted(&self, dir: &Path) -> bool {
        inode(&dir.join(KUBELET_SOCKET)) != Some(self.kubelet)
            || inode(&dir.join(SOCKET)) != Some(self.socket)
    }

    fn stop(self) {
        let _ = self.stop.send(());
        // Only podnet's own socket: a kubelet that made it anew keeps its.
        if inode(&self.dir.join(SOCKET)) == Some(self.socket) {
            let _ = std::fs::remove_file(self.dir.join(SOCKET));
        }
    }
}

/// A gRPC channel over the Unix socket at `path`.
pub async fn channel(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is not used: the connector dials the socket.
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Registers `resource` (served on [`SOCKET`]) with the kubelet on `socket`.
async fn register(socket: &Path, resource: &str) -> Result<(), String> {
    let channel = tokio::time::timeout(Duration::from_secs(5), channel(socket))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let mut client = v1beta1::registration_client::RegistrationClient::new(channel);
    let request = v1beta1::RegisterRequest {
        version: VERSION.into(),
        endpoint: SOCKET.into(),
        resource_name: resource.into(),
        options: Some(v1beta1::DevicePluginOptions::default()),
    };
    tokio::time::timeout(Duration::from_secs(5), client.register(request))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map(drop)
        .map_err(|s| format!("{}: {}", s.code(), s.message()))
}
