use prost::Message;

use super::server::{allocate, devices};
use super::v1beta1::*;
use super::*;

/// The encoding kubelet expects, worked out by hand from the API's field
/// numbers and proto3's wire format (tag = number << 3 | wire type; 2:
/// length-delimited, 0: varint): a field renumbered in our proto would
/// change these bytes.
#[test]
fn messages_encode_with_the_apis_field_numbers() {
    let register = RegisterRequest {
        version: "v1beta1".into(),
        endpoint: "p.sock".into(),
        resource_name: "rdma/hca".into(),
        options: Some(DevicePluginOptions {
            pre_start_required: true,
            get_preferred_allocation_available: true,
        }),
    };
    let mut want = vec![0x0a, 7];
    want.extend(b"v1beta1");
    want.extend([0x12, 6]);
    want.extend(b"p.sock");
    want.extend([0x1a, 8]);
    want.extend(b"rdma/hca");
    want.extend([0x22, 4, 0x08, 1, 0x10, 1]);
    assert_eq!(register.encode_to_vec(), want);

    let list = ListAndWatchResponse {
        devices: vec![Device {
            id: "a-0".into(),
            health: "Healthy".into(),
            topology: Some(TopologyInfo {
                nodes: vec![NumaNode { id: 1 }],
            }),
        }],
    };
    let mut device = vec![0x0a, 3];
    device.extend(b"a-0");
    device.extend([0x12, 7]);
    device.extend(b"Healthy");
    device.extend([0x1a, 4, 0x0a, 2, 0x08, 1]);
    let mut want = vec![0x0a, device.len() as u8];
    want.extend(&device);
    assert_eq!(list.encode_to_vec(), want);

    let reply = ContainerAllocateResponse {
        devices: vec![DeviceSpec {
            container_path: "/c".into(),
            host_path: "/h".into(),
            permissions: "rw".into(),
        }],
        cdi_devices: vec![CdiDevice { name: "x".into() }],
        ..Default::default()
    };
    let spec = [
        0x0a, 2, b'/', b'c', 0x12, 2, b'/', b'h', 0x1a, 2, b'r', b'w',
    ];
    let mut want = vec![0x1a, spec.len() as u8];
    want.extend(spec);
    want.extend([0x2a, 3, 0x0a, 1, b'x']);
    assert_eq!(reply.encode_to_vec(), want);

    let request = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: vec!["a-1".into()],
        }],
    };
    assert_eq!(
        request.encode_to_vec(),
        vec![0x0a, 5, 0x0a, 3, b'a', b'-', b'1']
    );
}

fn offer() -> Offer {
    Offer {
        hcas: vec![
            Hca {
                name: "mlx5_0".into(),
                healthy: true,
                char_devices: vec![
                    "/dev/infiniband/uverbs0".into(),
                    "/dev/infiniband/umad0".into(),
                ],
            },
            Hca {
                name: "rxe-a".into(),
                healthy: false,
                char_devices: vec!["/dev/infiniband/uverbs1".into()],
            },
        ],
        rdma_cm: Some("/dev/infiniband/rdma_cm".into()),
    }
}

#[test]
fn each_hca_is_its_pods_per_hca_devices_with_its_health() {
    let list = devices(&offer(), 3);
    let ids: Vec<(&str, &str)> = list
        .iter()
        .map(|d| (d.id.as_str(), d.health.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("mlx5_0-0", HEALTHY),
            ("mlx5_0-1", HEALTHY),
            ("mlx5_0-2", HEALTHY),
            ("rxe-a-0", UNHEALTHY),
            ("rxe-a-1", UNHEALTHY),
            ("rxe-a-2", UNHEALTHY),
        ]
    );
    assert_eq!(offer().hca_of("rxe-a-2").unwrap().name, "rxe-a");
    assert!(offer().hca_of("rxe-a").is_none());
}

#[test]
fn allocate_answers_the_hcas_char_devices_and_rdma_cm() {
    let reply = allocate(&offer(), &["mlx5_0-0".into(), "mlx5_0-2".into()]).unwrap();
    let paths: Vec<(&str, &str, &str)> = reply
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.as_str(),
                d.container_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm", "rw"),
            ("/dev/infiniband/umad0", "/dev/infiniband/umad0", "rw"),
            ("/dev/infiniband/uverbs0", "/dev/infiniband/uverbs0", "rw"),
        ]
    );
    let e = allocate(&offer(), &["mlx5_9-0".into()]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = allocate(&offer(), &["rxe-a-0".into()]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("HCA rxe-a is not on this node now"),
        "{e}"
    );
}

#[test]
fn an_hca_that_goes_stays_listed_unhealthy_and_comes_back_healthy() {
    let mut seen = Vec::new();
    let first = remember(&mut seen, offer());
    assert_eq!(first.hcas.len(), 2);
    let mut only_rxe = offer();
    only_rxe.hcas.remove(0);
    let gone = remember(&mut seen, only_rxe);
    let m = gone.hcas.iter().find(|h| h.name == "mlx5_0").unwrap();
    assert!(!m.healthy);
    assert_eq!(m.char_devices.len(), 2, "what it had is remembered");
    let back = remember(&mut seen, offer());
    assert!(
        back.hcas
            .iter()
            .find(|h| h.name == "mlx5_0")
            .unwrap()
            .healthy
    );
}
