//! podnet-cni as a runtime calls it: CNI_COMMAND in the environment, the
//! network config on stdin, the result (or a CNI error) on stdout.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn cni(command: &str, stdin: &Value) -> (i32, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "c0ffee")
        .env("CNI_NETNS", "/var/run/netns/none")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // VERSION reads no config: the plugin may exit before the write lands.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (out.status.code().unwrap(), v)
}

#[test]
fn version_lists_the_supported_spec_versions() {
    let (code, v) = cni("VERSION", &json!({}));
    assert_eq!(code, 0);
    for ver in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&ver.into()),
            "{v}"
        );
    }
}

#[test]
fn add_passes_prev_result_through_untouched() {
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/none"}],
        "ips": [{"address": "172.51.0.10/24", "interface": 0}],
        "dns": {}
    });
    let conf =
        json!({"cniVersion": "1.0.0", "name": "pods", "type": "podnet-cni", "prevResult": prev});
    let (code, out) = cni("ADD", &conf);
    assert_eq!(code, 0);
    assert_eq!(out, prev);
}

#[test]
fn add_without_prev_result_is_a_cni_error() {
    let (code, out) = cni(
        "ADD",
        &json!({"cniVersion": "1.0.0", "name": "pods", "type": "podnet-cni"}),
    );
    assert_ne!(code, 0);
    assert_eq!(out["code"], 7);
    assert!(out["msg"].as_str().unwrap().contains("chained"), "{out}");
}

#[test]
fn del_succeeds_and_prints_nothing() {
    let (code, out) = cni(
        "DEL",
        &json!({"cniVersion": "1.0.0", "name": "pods", "type": "podnet-cni"}),
    );
    assert_eq!((code, out), (0, Value::Null));
}
