//! `podnetd`: converges the host to the node files and keeps it there.
//!
//! It runs the pipeline (load, observe, plan, apply, verify) on every
//! trigger: an edit under the config directory, a kernel event on an object
//! podnet owns or depends on, a request on the socket, a periodic timer.
//! Triggers that arrive together make one pass. An invalid edit changes
//! nothing: the last good files stay in force and the errors are logged and
//! reported in the status. SIGTERM leaves the data path as it is.

mod backend;
mod engine;
mod events;
mod metrics;
pub mod registry;
mod sampler;
mod shaping;
mod shared;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

pub use backend::DaemonBackend;
use engine::Engine;
use events::Trigger;
use shared::Shared;

use crate::config::DEFAULT_CONFIG_DIR;
use crate::kernel::Kernel;

/// How long triggers are gathered into one pass after the first arrives.
const COALESCE_QUIET: Duration = Duration::from_millis(20);
const COALESCE_MAX: Duration = Duration::from_millis(200);

/// podnet's node daemon: converges the host to the node files and keeps it there.
#[derive(Debug, Parser)]
#[command(name = "podnetd", version, long_version = crate::LONG_VERSION)]
pub struct Args {
    /// Directory of node files.
    #[arg(short = 'c', long, value_name = "DIR", env = "PODNET_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// Run inside the named network namespace.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// This node's name, which the node files' `[match]` tables are held
    /// against (a file that names other nodes is skipped). Default: the
    /// host name.
    #[arg(long, value_name = "NAME", env = "PODNET_NODE_NAME")]
    pub node_name: Option<String>,
    /// Seconds between two reconciles when nothing else wakes the daemon.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub interval: u64,
    /// Seconds podnetd leaves alone an object that another agent changed
    /// back three times within a minute (doubling while the fight lasts, up
    /// to 300). An edit of the node files applies at once regardless.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub fight_backoff: u64,
    /// Reconcile once and exit (status 0 converged, 1 failed, 2 invalid files).
    #[arg(long)]
    pub once: bool,
    /// Directory of the daemon's state (the endpoint registry).
    #[arg(long, value_name = "DIR", default_value = registry::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Where the shaper's map and links are pinned (bpffs).
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/podnet")]
    pub bpf_dir: PathBuf,
    /// Where podnet writes the module options that must hold from boot on
    /// (`podnet-rdma.conf`: the RDMA netns mode ib_core loads with).
    #[arg(long, value_name = "DIR", default_value = crate::shaping::DEFAULT_MODPROBE_DIR)]
    pub modprobe_dir: PathBuf,
    /// The API socket.
    #[arg(long, value_name = "PATH", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// kubelet's device plugin directory: where podnetd serves the HCAs
    /// `[rdma] devices` offers (`rdma/hca`) and registers them with
    /// kubelet's socket.
    #[arg(long, value_name = "DIR", default_value = crate::deviceplugin::DEFAULT_DIR)]
    pub device_plugin_dir: PathBuf,
    /// Also serve `GET /metrics` (and nothing else) over TCP on ADDR, for a
    /// Prometheus on the node, e.g. 127.0.0.1:9464. Off by default. Under
    /// the systemd unit this needs a drop-in allowing AF_INET/AF_INET6.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Group whose members may use the socket (besides root).
    #[arg(long, value_name = "GROUP", default_value = "podnet")]
    pub socket_group: String,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

/// Parses the command line and runs the daemon.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if let Some(ns) = &args.netns {
        if let Err(e) = crate::netns::enter(ns) {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    // The loop runs on this thread (block_on); the API server on one
    // worker, so a request never waits for a pass. Threads inherit the
    // network namespace entered above.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let kernel = match Kernel::connect() {
        Ok(k) => k,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (registry, warning) = match registry::Registry::open(&args.state_dir.join("endpoints.json"))
    {
        Ok(r) => r,
        Err(e) => {
            error!("endpoint registry in {}: {e}", args.state_dir.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(w) = warning {
        warn!("{w}");
    }
    let shared = Arc::new(Mutex::new(Shared {
        status: Default::default(),
        node: Default::default(),
        config: None,
        registry,
        shaping: Default::default(),
        metrics: Default::default(),
    }));
    let watch = Arc::new(RwLock::new(events::Watch::default()));
    let shaping_paths = crate::shaping::ShaperPaths {
        pin_dir: args.bpf_dir.clone(),
        state_dir: args.state_dir.join("shaping"),
        modprobe_dir: args.modprobe_dir.clone(),
    };
    let sampler_kernel = kernel.clone();
    let request_kernel = kernel.clone();
    let node = args
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(crate::config::host_node_name);
    match &node {
        Some(n) => info!("node {n}"),
        None => warn!(
            "no node name (no --node-name, no host name): node files with [match] are skipped"
        ),
    }
    let mut engine = Engine::new(
        kernel,
        args.config_dir.clone(),
        node,
        shared.clone(),
        watch.clone(),
        shaping_paths,
        Duration::from_secs(args.fight_backoff.max(1)),
    );

    if args.once {
        let report = engine.pass("start", true, Default::default()).await;
        return ExitCode::from(match report.outcome.as_str() {
            "converged" | "applied" => 0,
            _ if report.error.as_deref() == Some("no valid node files yet") => 2,
            _ => 1,
        });
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    // Subscribe before the first pass, so no change made meanwhile is missed.
    if let Err(e) = events::watch_kernel(tx.clone(), watch) {
        error!("cannot subscribe to kernel events: {e}");
        return ExitCode::FAILURE;
    }
    let _files = match events::watch_files(&args.config_dir, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(
                "cannot watch {}: {e}; edits are picked up by the timer only",
                args.config_dir.display()
            );
            None
        }
    };
    let backend = Arc::new(DaemonBackend {
        shared: shared.clone(),
        triggers: tx.clone(),
        kernel: Some(request_kernel),
    });
    let group = match nix::unistd::Group::from_name(&args.socket_group) {
        Ok(Some(g)) => Some(g.gid.as_raw()),
        _ => {
            info!(
                "group {} does not exist: the socket is for root only",
                args.socket_group
            );
            None
        }
    };
    let listener = match crate::api::server::bind(&args.socket, group) {
        Ok(l) => l,
        Err(e) => {
            error!("socket {}: {e}", args.socket.display());
            return ExitCode::FAILURE;
        }
    };
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let policy = crate::api::server::Policy {
        group,
        ..Default::default()
    };
    let server = tokio::spawn(crate::api::server::serve(
        listener,
        backend.clone(),
        policy,
        async {
            let _ = server_stopped.await;
        },
    ));
    info!("API on {}", args.socket.display());
    let metrics_server = match args.metrics_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                info!("metrics on http://{addr}/metrics");
                Some(tokio::spawn(crate::api::server::serve_metrics(
                    l,
                    backend.clone(),
                )))
            }
            Err(e) => {
                error!("--metrics-listen {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The achieved rates: sampled on this runtime, beside the passes.
    let (stop_sampler, sampler_stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(sampler::run(
        shared.clone(),
        sampler_kernel,
        args.bpf_dir.clone(),
        sampler_stopped,
    ));
    let (stop_plugin, plugin_stopped) = tokio::sync::oneshot::channel::<()>();
    let plugin = tokio::spawn(crate::deviceplugin::run(
        args.device_plugin_dir.clone(),
        plugin_source(shared.clone()),
        plugin_stopped,
    ));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };

    info!(
        "watching {} (timer {}s)",
        args.config_dir.display(),
        args.interval
    );
    let report = engine.pass("start", true, Default::default()).await;
    notify_systemd(&report, true);
    let interval = Duration::from_secs(args.interval.max(1));
    let mut next_timer = Instant::now() + interval;
    // systemd's watchdog is fed from this loop, between passes, never from
    // the API's thread: a pass that hangs stops the pings, and systemd
    // restarts podnetd while links, addresses, routes and the shaper's
    // pinned program and map stay as they are.
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    if let Some(every) = watchdog {
        info!("systemd watchdog: fed every {} ms", every.as_millis());
    }
    let mut next_ping = Instant::now();
    loop {
        if let Some(every) = watchdog.filter(|_| Instant::now() >= next_ping) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            next_ping = Instant::now() + every;
        }
        let deadline = match engine.next_deadline() {
            Some(b) => next_timer.min(Instant::from_std(b)),
            None => next_timer,
        };
        let wake = match watchdog {
            Some(_) => deadline.min(next_ping),
            None => deadline,
        };
        let first = tokio::select! {
            t = rx.recv() => match t { Some(t) => Some(t), None => break },
            _ = tokio::time::sleep_until(wake) => None,
            _ = term.recv() => { info!("SIGTERM: exiting; links, addresses and routes stay as applied"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupted: exiting"); break; }
        };
        if first.is_none() && Instant::now() < deadline {
            // Only the watchdog's turn.
            continue;
        }
        let mut batch: Vec<Trigger> = first.into_iter().collect();
        let woke = batch.is_empty();
        let reverting = woke && engine.revert_if_due();
        let timer = woke && !reverting && Instant::now() >= next_timer;
        // Gather what arrives together: a burst of kernel events or an
        // editor's several writes make one pass.
        let started = Instant::now();
        while started.elapsed() < COALESCE_MAX {
            match tokio::time::timeout(COALESCE_QUIET, rx.recv()).await {
                Ok(Some(t)) => batch.push(t),
                _ => break,
            }
        }
        let mut seen: Vec<&str> = batch
            .iter()
            .filter_map(|t| match t {
                Trigger::Kernel(what) => Some(what.as_str()),
                _ => None,
            })
            .collect();
        seen.dedup();
        if !seen.is_empty() {
            tracing::debug!(events = seen.len(), "kernel events: {}", seen.join(", "));
        }
        // Trials first: arming one reloads the files, confirming needs no pass.
        let mut trials = Vec::new();
        for t in std::mem::take(&mut batch) {
            match t {
                Trigger::Confirm { reply } => {
                    let _ = reply.send(engine.confirm());
                }
                Trigger::Try { timeout, reply } => match engine.arm_trial(timeout) {
                    Ok(trial) => trials.push((trial, reply)),
                    Err(refusal) => {
                        let _ = reply.send(Err(refusal));
                    }
                },
                other => batch.push(other),
            }
        }
        if batch.is_empty() && trials.is_empty() && !woke {
            continue;
        }
        let files = batch.iter().any(|t| matches!(t, Trigger::Files));
        let request = batch.iter().any(|t| matches!(t, Trigger::Request { .. }));
        // Options of the requests in this batch: forced if any asked, the
        // strictest disruption limit of those given.
        let mut options = crate::api::types::ReconcileOptions::default();
        for t in &batch {
            if let Trigger::Request { options: o, .. } = t {
                options.force |= o.force;
                options.max_disruption = match (options.max_disruption, o.max_disruption) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let trigger = if reverting {
            "try-timeout"
        } else if files {
            "files"
        } else if request || !trials.is_empty() {
            "request"
        } else if timer {
            "timer"
        } else if batch.iter().all(|t| matches!(t, Trigger::Endpoints)) && !batch.is_empty() {
            "endpoints"
        } else {
            "kernel"
        };
        let report = engine
            .pass(trigger, files || request || timer, options)
            .await;
        notify_systemd(&report, false);
        for t in batch {
            if let Trigger::Request { reply, .. } = t {
                let _ = reply.send(report.clone());
            }
        }
        for (trial, reply) in trials {
            let _ = reply.send(Ok(crate::api::types::TryAnswer {
                trial,
                reconcile: report.clone(),
            }));
        }
        if timer {
            next_timer = Instant::now() + interval;
        }
    }
    let _ = stop_sampler.send(());
    let _ = sampler.await;
    let _ = stop_plugin.send(());
    let _ = plugin.await;
    let _ = stop_server.send(());
    let _ = server.await;
    if let Some(m) = metrics_server {
        m.abort();
    }
    let _ = std::fs::remove_file(&args.socket);
    ExitCode::SUCCESS
}

/// The device plugin's HCAs: those `[rdma] devices` offers, as the
/// kernel shows them now, with the ones endpoints hold (in a pod's
/// namespace, in exclusive mode) healthy too; None without offered HCAs.
fn plugin_source(shared: Arc<Mutex<Shared>>) -> crate::deviceplugin::Source {
    use crate::deviceplugin::{Hca, Offer, Settings};
    Arc::new(move || {
        // Each second: nothing is copied on a node that offers no HCA.
        let (config, endpoints) = {
            let s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let c = s.config.as_ref()?;
            c.rdma.as_ref().filter(|r| !r.devices.is_empty())?;
            (c.clone(), s.registry.list())
        };
        let r = config.rdma.as_ref()?;
        let settings = Settings {
            resource: r
                .resource_name
                .clone()
                .unwrap_or_else(|| crate::config::Rdma::DEFAULT_RESOURCE.into()),
            pods_per_hca: r
                .pods_per_hca
                .unwrap_or(crate::config::Rdma::DEFAULT_PODS_PER_HCA),
        };
        let mut observed = crate::state::Observed {
            rdma: crate::rdma::observe(),
            ..Default::default()
        };
        observed.mark_rdma_users(&endpoints);
        let info = crate::status::rdma_info(&config, &observed)?;
        let hcas = info
            .hcas
            .into_iter()
            .filter(|h| h.offered)
            .map(|h| Hca {
                healthy: !h.ports.is_empty() || h.endpoint.is_some(),
                name: h.name,
                char_devices: h.char_devices,
            })
            .collect();
        Some((
            settings,
            Offer {
                hcas,
                rdma_cm: info.rdma_cm,
            },
        ))
    })
}

/// Tells systemd (when it started us with Type=notify) how things stand.
fn notify_systemd(report: &crate::api::types::Reconcile, first: bool) {
    use sd_notify::NotifyState;
    let status = format!(
        "{} ({} trigger, {} step(s), {:.1} ms){}",
        report.outcome,
        report.trigger,
        report.steps,
        report.took_ms,
        report
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    let mut states = vec![NotifyState::Status(&status)];
    if first {
        states.push(NotifyState::Ready);
    }
    let _ = sd_notify::notify(&states);
}
