//! Plays kubelet against podnetd's device plugin (the VM lab's
//! 73-rdma-device-plugin): serves kubelet's registration socket in
//! `--dir`, and runs `podnet::deviceplugin::kubelet::play`: Register,
//! ListAndWatch, Allocate (the char devices must exist), `--remove` on the
//! first HCA (its devices must turn Unhealthy), kubelet's restart (the
//! plugin must register again). Prints the figures as JSON; exits 1 with
//! what differed.
//!
//! ```text
//! kubelet-harness --dir DIR --resource rdma/hca --pods-per-hca N \
//!     --remove 'rdma link delete {}' HCA...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut dir = None;
    let mut resource = "rdma/hca".to_string();
    let mut per = 1000u32;
    let mut remove = String::new();
    let mut hcas = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--resource" => resource = args.next().unwrap_or_default(),
            "--pods-per-hca" => per = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--remove" => remove = args.next().unwrap_or_default(),
            _ => hcas.push(a),
        }
    }
    let (Some(dir), false, false, true) = (dir, hcas.is_empty(), remove.is_empty(), per > 0) else {
        eprintln!("usage: kubelet-harness --dir DIR [--resource R] [--pods-per-hca N] --remove CMD HCA...");
        return ExitCode::from(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let played = rt.block_on(podnet::deviceplugin::kubelet::play(
        &dir,
        &resource,
        &hcas,
        per,
        |hca| {
            let cmd = remove.replace("{}", hca);
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .status();
            match status {
                Ok(s) if s.success() => Ok(()),
                other => Err(format!("{cmd}: {other:?}")),
            }
        },
    ));
    match played {
        Ok(f) => {
            println!("{}", serde_json::to_string(&f).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubelet-harness: {e}");
            ExitCode::FAILURE
        }
    }
}
