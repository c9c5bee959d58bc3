//! Shared pieces of the host tests: a network namespace each test makes and
//! always removes, and the way the tests run podnetctl and read the kernel
//! (iproute2's JSON, the reference for what the kernel holds).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "prereq.rs"]
mod prereq;
#[allow(unused_imports)] // each test binary uses its own part of it
pub use prereq::{require, tool_path, ROOT};

/// A network namespace owned by one test, deleted on drop (even on panic).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pnt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `ip -n <ns> ARGS`, panicking on failure.
    pub fn ip(&self, args: &str) {
        let mut full = vec!["-n", &self.name];
        full.extend(args.split_whitespace());
        run_ok("ip", &full);
    }

    /// `ip -j -n <ns> ARGS` parsed.
    pub fn ip_json(&self, args: &str) -> Value {
        let mut full = vec!["-j", "-n", &self.name];
        full.extend(args.split_whitespace());
        let out = run_ok("ip", &full);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            Value::Array(vec![])
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip {args}: {e}: {text}"))
        }
    }

    /// The link named `name`, from `ip -d -j link show`.
    pub fn link(&self, name: &str) -> Option<Value> {
        self.ip_json("-d link show")
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Everything a test compares to prove "nothing changed": links with
    /// their details, addresses and every route table. State the kernel
    /// changes by itself, later (carrier, operstate, counters, DAD), is left
    /// out: only what a configurator could have set is compared.
    pub fn snapshot(&self) -> String {
        let mut parts = [
            self.ip_json("-d link show"),
            self.ip_json("addr show"),
            self.ip_json("route show table all"),
            self.ip_json("-6 route show table all"),
        ];
        for p in &mut parts {
            settable_only(p);
        }
        parts
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts `ip monitor link address route` in the namespace; `events()`
    /// stops it and returns what it printed.
    pub fn monitor(&self) -> Monitor {
        let child = Command::new("ip")
            .args(["-n", &self.name, "monitor", "link", "address", "route"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Give it time to subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(200));
        Monitor(child)
    }

    /// Makes a veth pair `<name>` / `<name>-p` standing in for a master.
    pub fn veth(&self, name: &str) {
        self.ip(&format!("link add {name} type veth peer name {name}-p"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run_ok(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `ip monitor`.
pub struct Monitor(Child);

impl Monitor {
    /// Every event seen so far (after a short grace for late ones).
    pub fn events(mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.0.kill();
        let out = self
            .0
            .wait_with_output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A config directory of node files in a fresh temporary folder.
pub struct ConfigDir {
    pub path: PathBuf,
}

impl ConfigDir {
    pub fn new(files: &[(&str, &str)]) -> ConfigDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "podnet-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let dir = ConfigDir { path };
        dir.write(files);
        dir
    }

    pub fn write(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(self.path.join(name), text).unwrap();
        }
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A private bpffs mounted at `<state>/bpf`, where [`Daemon::start`] has
/// podnetd pin its maps and links (never the host's /sys/fs/bpf): for the
/// tests whose daemon loads BPF. Unmounted on drop, which frees the pins.
pub struct Bpffs(PathBuf);

impl Bpffs {
    pub fn at(state: &Path) -> Bpffs {
        let dir = state.join("bpf");
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t bpf on {}", dir.display());
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Result of one podnetctl run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs podnetctl with `-c DIR --netns NS ARGS`.
pub fn podnetctl(dir: &Path, ns: &Netns, args: &[&str]) -> Run {
    // podnetd's state (the registry, shaping records, pins) is the test's
    // own, never the machine's.
    let state = dir.with_extension("state");
    let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
        .arg("-c")
        .arg(dir)
        .args(["--netns", &ns.name])
        .arg("--state-dir")
        .arg(&state)
        .arg("--bpf-dir")
        .arg(state.join("bpf"))
        .args(args)
        .output()
        .expect("run podnetctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Drops the state the kernel derives on its own from a `ip -j` document.
pub fn settable_only(v: &mut Value) {
    const DERIVED_KEYS: [&str; 4] = ["stats64", "operstate", "tentative", "dadfailed"];
    const DERIVED_FLAGS: [&str; 5] = ["NO-CARRIER", "M-DOWN", "LOWER_UP", "DORMANT", "linkdown"];
    match v {
        Value::Object(o) => {
            for k in DERIVED_KEYS {
                o.remove(k);
            }
            if let Some(Value::Array(flags)) = o.get_mut("flags") {
                flags.retain(|f| !DERIVED_FLAGS.iter().any(|d| f == d));
            }
            o.values_mut().for_each(settable_only);
        }
        Value::Array(items) => items.iter_mut().for_each(settable_only),
        _ => {}
    }
}

/// A podnetd process, killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    pub state: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns, config: &Path, state: &Path) -> Daemon {
        Daemon::start_with(ns, config, state, &[], &[])
    }

    /// [`Daemon::start`] with more podnetd options and environment.
    pub fn start_with(
        ns: &Netns,
        config: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        std::fs::create_dir_all(state).unwrap();
        // One log per start, so a restarted daemon's log is its own.
        let starts = std::fs::read_dir(state).unwrap().filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("podnetd-"))
        });
        let log = state.join(format!("podnetd-{}.log", starts.count()));
        let child = Command::new(env!("CARGO_BIN_EXE_podnetd"))
            .arg("-c")
            .arg(config)
            .args([
                "--netns",
                &ns.name,
                "--log-level",
                "debug",
                "--interval",
                "3600",
            ])
            .arg("--state-dir")
            .arg(state)
            .arg("--socket")
            .arg(state.join("podnet.sock"))
            // Never the host's own pins (and not a bpffs: shaping is the VM lab's).
            .arg("--bpf-dir")
            .arg(state.join("bpf"))
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            log,
            state: state.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.state.join("podnet.sock")
    }

    /// A client of this daemon's socket, once it answers.
    pub fn client(&self) -> podnet::api::client::BlockingClient {
        let c = podnet::api::client::BlockingClient::new(self.socket());
        within(Duration::from_secs(5), "socket answers", || {
            c.status().is_ok()
        });
        c
    }

    /// Whether the process has ended (on its own, or by a failpoint).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `check` every 10 ms; returns how long it took to hold, or panics.
/// How long a test waits for podnetd to act on an event (an edit, drift, a
/// request): far below the 3600 s timer the tests run it with, so a pass
/// proves the event itself started the work, and far above the tens of
/// milliseconds it takes (bench/daemon measures that), so a slow or busy
/// machine does not fail a test of podnet.
pub const PROMPTLY: Duration = Duration::from_secs(20);

pub fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: not within {limit:?}");
}
