//! `podnet-cni`: the chained CNI plugin (after ipvlan/macvlan in a conflist).
//!
//! This first version answers VERSION and passes `prevResult` through
//! unchanged on ADD, so a conflist can already name it; registering the pod
//! with podnetd for shaping comes with the shaping issue.

use std::io::Read;
use std::process::ExitCode;

use serde_json::{json, Value};

const SUPPORTED: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = String::new();
    if command != "VERSION" {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    let conf: Value = serde_json::from_str(&stdin).unwrap_or(Value::Null);
    let version = conf["cniVersion"].as_str().unwrap_or("1.1.0").to_string();
    match command.as_str() {
        "VERSION" => {
            println!("{}", json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}));
            ExitCode::SUCCESS
        }
        "ADD" => match conf.get("prevResult") {
            Some(prev) => {
                // A chained plugin returns what it was given when it adds nothing.
                let mut out = prev.clone();
                if let Some(o) = out.as_object_mut() {
                    o.insert("cniVersion".into(), version.into());
                }
                println!("{out}");
                ExitCode::SUCCESS
            }
            None => error(&version, 7, "podnet-cni is a chained plugin: no prevResult (put it after ipvlan or macvlan in the conflist)"),
        },
        "DEL" | "CHECK" | "GC" | "STATUS" => ExitCode::SUCCESS,
        "" => error(&version, 4, "CNI_COMMAND is not set: podnet-cni is run by a container runtime"),
        other => error(&version, 4, &format!("unknown CNI_COMMAND {other}")),
    }
}

/// A CNI error on stdout, as the spec wants, with a non-zero exit.
fn error(version: &str, code: u32, msg: &str) -> ExitCode {
    println!(
        "{}",
        json!({"cniVersion": version, "code": code, "msg": msg})
    );
    ExitCode::FAILURE
}
