//! podnetd's device plugin against a kubelet played with the v1beta1 API
//! (`podnet::deviceplugin::kubelet`), over real Unix sockets in a
//! directory of the test's own. The HCAs come from a source the test
//! controls (this kernel has no RDMA: the VM lab's 73-rdma-device-plugin
//! plays the same against Soft-RoCE devices); their "char devices" are
//! /dev/null and /dev/zero, which Allocate's answer must name and which
//! exist.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use podnet::deviceplugin::{kubelet, Hca, Offer, Settings, Source};

fn hca(name: &str, dev: &str) -> Hca {
    Hca {
        name: name.into(),
        healthy: true,
        char_devices: vec![dev.into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_registers_lists_allocates_turns_unhealthy_and_registers_again() {
    let dir = std::env::temp_dir().join(format!("podnet-dp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let settings = Settings {
        resource: "rdma/hca".into(),
        pods_per_hca: 3,
    };
    let offer = Arc::new(Mutex::new(Offer {
        hcas: vec![hca("mlx5_0", "/dev/null"), hca("mlx5_1", "/dev/zero")],
        rdma_cm: None,
    }));
    let source: Source = {
        let offer = offer.clone();
        let settings = settings.clone();
        Arc::new(move || Some((settings.clone(), offer.lock().unwrap().clone())))
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let plugin = tokio::spawn(podnet::deviceplugin::run(dir.clone(), source, stopped));
    let figures = tokio::time::timeout(
        Duration::from_secs(120),
        kubelet::play(
            &dir,
            "rdma/hca",
            &["mlx5_0".into(), "mlx5_1".into()],
            3,
            |name| {
                offer.lock().unwrap().hcas.retain(|h| h.name != name);
                Ok(())
            },
        ),
    )
    .await
    .expect("the play took over 120 s")
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(figures.devices, 6);
    assert_eq!(
        figures.allocated,
        [vec!["/dev/null".to_string()], vec!["/dev/zero".to_string()]]
    );
    println!("{}", serde_json::to_string(&figures).unwrap());
    stop.send(()).unwrap();
    plugin.await.unwrap();
    assert!(
        !dir.join(podnet::deviceplugin::SOCKET).exists(),
        "the plugin's socket is removed when podnetd stops"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
