//! kubelet's side of the device plugin API, played for tests and the lab
//! (kubelet cannot run here): the Registration service on `kubelet.sock`
//! in a directory, which hands each RegisterRequest to the test, a
//! restart as kubelet does one (its socket made anew, the plugins'
//! removed), and a client for a registered plugin's socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::v1beta1::{
    device_plugin_client::DevicePluginClient,
    registration_server::{Registration, RegistrationServer},
    Empty, RegisterRequest,
};
use super::KUBELET_SOCKET;

struct Registrar {
    requests: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for Registrar {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        if r.version != super::VERSION {
            return Err(Status::invalid_argument(format!(
                "version {:?}: this kubelet speaks {}",
                r.version,
                super::VERSION
            )));
        }
        let _ = self.requests.send(r);
        Ok(Response::new(Empty {}))
    }
}

/// A kubelet's registration socket, served until dropped or restarted.
pub struct Kubelet {
    dir: PathBuf,
    requests: mpsc::UnboundedReceiver<RegisterRequest>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Kubelet {
    /// Serves `kubelet.sock` in `dir` (made if missing).
    pub fn start(dir: &Path) -> std::io::Result<Kubelet> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(KUBELET_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        let (tx, requests) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(Registrar { requests: tx }))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Kubelet {
            dir: dir.to_path_buf(),
            requests,
            stop: Some(stop),
        })
    }

    /// The next RegisterRequest, if one comes within `within`.
    pub async fn registration(&mut self, within: Duration) -> Option<RegisterRequest> {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .ok()
            .flatten()
    }

    /// Stops, removes every socket in the directory (kubelet removes the
    /// plugins' when it starts) and serves a new `kubelet.sock`.
    pub fn restart(mut self) -> std::io::Result<Kubelet> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            if std::os::unix::fs::FileTypeExt::is_socket(&entry.file_type()?) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Kubelet::start(&self.dir)
    }

    /// A client of the plugin that registered `endpoint`.
    pub async fn plugin(
        &self,
        endpoint: &str,
    ) -> Result<DevicePluginClient<tonic::transport::Channel>, tonic::transport::Error> {
        Ok(DevicePluginClient::new(
            super::channel(&self.dir.join(endpoint)).await?,
        ))
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// What [`play`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// From the kubelet's start to the plugin's RegisterRequest.
    pub register_ms: u128,
    /// From `remove` to the ListAndWatch update that shows it Unhealthy.
    pub unhealthy_ms: u128,
    /// From kubelet's restart to the plugin's new RegisterRequest.
    pub reregister_ms: u128,
    /// Devices in the first ListAndWatch answer.
    pub devices: usize,
    /// What Allocate answered for one device of each HCA.
    pub allocated: Vec<Vec<String>>,
}

/// Plays kubelet against the plugin that registers in `dir`, as kubelet
/// would: waits for its RegisterRequest (`resource`), lists its devices
/// (every HCA of `hcas`, `pods_per_hca` each, Healthy), allocates one of
/// each HCA (the answer's device nodes must exist as char devices) and an
/// unknown one (refused), runs `remove` on the first HCA and waits for it
/// to turn Unhealthy (then refused), restarts and waits for the plugin to
/// register again and list it as it stands. Fails with what differed.
pub async fn play(
    dir: &Path,
    resource: &str,
    hcas: &[String],
    pods_per_hca: u32,
    remove: impl FnOnce(&str) -> Result<(), String>,
) -> Result<Figures, String> {
    use super::v1beta1::{AllocateRequest, ContainerAllocateRequest};
    use super::{Offer, HEALTHY, SOCKET, UNHEALTHY};
    use std::time::Instant;
    const WAIT: Duration = Duration::from_secs(60);
    let first = hcas.first().ok_or("no HCA to play with")?.clone();
    let start = Instant::now();
    let mut kubelet = Kubelet::start(dir).map_err(|e| format!("kubelet.sock: {e}"))?;
    let reg = kubelet
        .registration(WAIT)
        .await
        .ok_or("the plugin did not register within 60 s")?;
    let register_ms = start.elapsed().as_millis();
    if reg.resource_name != resource || reg.endpoint != SOCKET {
        return Err(format!(
            "registered {reg:?}, expected resource {resource} on {SOCKET}"
        ));
    }
    let mut client = kubelet
        .plugin(&reg.endpoint)
        .await
        .map_err(|e| format!("plugin socket: {e}"))?;
    client
        .get_device_plugin_options(Empty {})
        .await
        .map_err(|e| format!("GetDevicePluginOptions: {e}"))?;
    let mut stream = client
        .list_and_watch(Empty {})
        .await
        .map_err(|e| format!("ListAndWatch: {e}"))?
        .into_inner();
    let list = stream
        .message()
        .await
        .map_err(|e| format!("ListAndWatch: {e}"))?
        .ok_or("ListAndWatch ended")?;
    let mut want: Vec<String> = hcas
        .iter()
        .flat_map(|h| Offer::ids(h, pods_per_hca).collect::<Vec<_>>())
        .collect();
    want.sort();
    let mut got: Vec<String> = list.devices.iter().map(|d| d.id.clone()).collect();
    got.sort();
    if got != want || list.devices.iter().any(|d| d.health != HEALTHY) {
        return Err(format!("ListAndWatch listed {:?}", list.devices));
    }
    let mut allocated = Vec::new();
    for h in hcas {
        let reply = client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: vec![format!("{h}-0")],
                }],
            })
            .await
            .map_err(|e| format!("Allocate {h}-0: {e}"))?
            .into_inner();
        let specs = &reply
            .container_responses
            .first()
            .ok_or("Allocate: no container answer")?
            .devices;
        if specs.is_empty() {
            return Err(format!("Allocate {h}-0: no device nodes"));
        }
        for s in specs {
            let is_char = std::fs::metadata(&s.host_path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()));
            if !is_char || s.container_path != s.host_path {
                return Err(format!("Allocate {h}-0: {s:?} is not a char device here"));
            }
        }
        allocated.push(specs.iter().map(|s| s.host_path.clone()).collect());
    }
    match client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["not-served-0".into()],
            }],
        })
        .await
    {
        Err(s) if s.code() == tonic::Code::InvalidArgument => {}
        other => return Err(format!("Allocate of an unknown device: {other:?}")),
    }
    let removed = Instant::now();
    remove(&first)?;
    let unhealthy = |l: &super::v1beta1::ListAndWatchResponse| {
        l.devices
            .iter()
            .filter(|d| d.id.starts_with(&format!("{first}-")))
            .all(|d| d.health == UNHEALTHY)
    };
    loop {
        let next = tokio::time::timeout(WAIT, stream.message())
            .await
            .map_err(|_| format!("{first} not Unhealthy within 60 s"))?
            .map_err(|e| format!("ListAndWatch: {e}"))?
            .ok_or("ListAndWatch ended")?;
        if unhealthy(&next) {
            break;
        }
    }
    let unhealthy_ms = removed.elapsed().as_millis();
    match client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("{first}-0")],
            }],
        })
        .await
    {
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
        other => return Err(format!("Allocate of an unhealthy device: {other:?}")),
    }
    drop(stream);
    let restarted = Instant::now();
    let mut kubelet = kubelet.restart().map_err(|e| format!("restart: {e}"))?;
    let reg = kubelet
        .registration(WAIT)
        .await
        .ok_or("the plugin did not register again within 60 s of kubelet's restart")?;
    let reregister_ms = restarted.elapsed().as_millis();
    let mut client = kubelet
        .plugin(&reg.endpoint)
        .await
        .map_err(|e| format!("plugin socket after the restart: {e}"))?;
    let list = client
        .list_and_watch(Empty {})
        .await
        .map_err(|e| format!("ListAndWatch after the restart: {e}"))?
        .into_inner()
        .message()
        .await
        .map_err(|e| format!("ListAndWatch after the restart: {e}"))?
        .ok_or("ListAndWatch ended")?;
    if !unhealthy(&list) || list.devices.len() != want.len() {
        return Err(format!(
            "after the restart, ListAndWatch listed {:?}",
            list.devices
        ));
    }
    Ok(Figures {
        register_ms,
        unhealthy_ms,
        reregister_ms,
        devices: want.len(),
        allocated,
    })
}
