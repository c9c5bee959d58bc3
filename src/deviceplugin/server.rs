//! The DevicePlugin service kubelet calls on podnet's socket.

use std::collections::BTreeSet;
use std::pin::Pin;

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::v1beta1::{
    device_plugin_server::DevicePlugin, AllocateRequest, AllocateResponse,
    ContainerAllocateResponse, Device, DevicePluginOptions, DeviceSpec, Empty,
    ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use super::{Offer, Settings, HEALTHY, UNHEALTHY};

/// The service: the settings it registered with and the HCAs as they
/// stand (a watch: ListAndWatch follows it).
pub struct Plugin {
    settings: Settings,
    offers: watch::Receiver<Offer>,
}

impl Plugin {
    pub fn new(settings: Settings, offers: watch::Receiver<Offer>) -> Plugin {
        Plugin { settings, offers }
    }
}

/// The devices of `offer`: each HCA's `pods_per_hca`, with its health.
pub fn devices(offer: &Offer, pods_per_hca: u32) -> Vec<Device> {
    offer
        .hcas
        .iter()
        .flat_map(|h| {
            Offer::ids(&h.name, pods_per_hca).map(move |id| Device {
                id,
                health: if h.healthy { HEALTHY } else { UNHEALTHY }.into(),
                topology: None,
            })
        })
        .collect()
}

/// Allocate's answer for one container: the char devices of the HCAs its
/// device IDs belong to, and rdma_cm. An ID podnet does not serve, or of
/// an HCA that is gone, is refused.
pub fn allocate(offer: &Offer, ids: &[String]) -> Result<ContainerAllocateResponse, Status> {
    let mut paths = BTreeSet::new();
    for id in ids {
        let hca = offer
            .hca_of(id)
            .ok_or_else(|| Status::invalid_argument(format!("no device {id} here")))?;
        if !hca.healthy {
            return Err(Status::failed_precondition(format!(
                "device {id}: HCA {} is not on this node now",
                hca.name
            )));
        }
        paths.extend(hca.char_devices.iter().cloned());
    }
    paths.extend(offer.rdma_cm.iter().cloned());
    Ok(ContainerAllocateResponse {
        devices: paths
            .into_iter()
            .map(|p| DeviceSpec {
                container_path: p.clone(),
                host_path: p,
                permissions: "rw".into(),
            })
            .collect(),
        ..Default::default()
    })
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Plugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions::default()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut offers = self.offers.clone();
        let per = self.settings.pods_per_hca;
        let stream = async_stream(move |tx| async move {
            loop {
                let list = devices(&offers.borrow_and_update(), per);
                if tx
                    .send(Ok(ListAndWatchResponse { devices: list }))
                    .await
                    .is_err()
                {
                    return;
                }
                if offers.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_preferred_allocation(
        &self,
        _: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        // Not announced (get_preferred_allocation_available is false).
        Ok(Response::new(PreferredAllocationResponse::default()))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let offer = self.offers.borrow().clone();
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|c| allocate(&offer, &c.devices_ids))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// A stream fed by `f` through a channel (ends when `f` returns or the
/// receiver goes: kubelet hung up).
fn async_stream<T: Send + 'static, F, Fut>(f: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
