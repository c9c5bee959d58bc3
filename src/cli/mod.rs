//! `podnetctl`: one verb per file; this module holds the global flags and
//! the steps every verb shares (load, enter the namespace, connect).

mod apply;
mod bandwidth;
mod endpoints;
mod show;
mod status;
mod try_;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::api::client::BlockingClient;
use crate::config::{self, Diagnostics, Loaded};
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;

/// Declarative node network configurator for Kubernetes underlay networks.
///
/// Reads the node files (*.toml, lexical order, later files override
/// earlier keys), compares them with the host and converges it.
/// Exit status: 0 success, 1 failure on the host, 2 invalid node files.
#[derive(Debug, Parser)]
#[command(
    name = "podnetctl",
    version,
    long_version = crate::LONG_VERSION,
    propagate_version = true
)]
pub struct Cli {
    /// Directory of node files.
    #[arg(short = 'c', long, global = true, value_name = "DIR", env = "PODNET_CONFIG_DIR", default_value = config::DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// Run inside the named network namespace (as made by `ip netns add NAME`).
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,
    /// This node's name, which the node files' `[match]` tables are held
    /// against (a file that names other nodes is skipped). Default: the
    /// host name.
    #[arg(long, global = true, value_name = "NAME", env = "PODNET_NODE_NAME")]
    pub node_name: Option<String>,
    /// podnetd's socket: when a daemon answers there, status, apply and
    /// endpoints go through it, so two appliers never race. Default
    /// /run/podnet/podnet.sock, except with --netns (that namespace's
    /// daemon has its own socket: name it).
    #[arg(long, global = true, value_name = "PATH", env = "PODNET_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Work on the host directly even when podnetd runs.
    #[arg(long, global = true)]
    pub direct: bool,
    /// podnetd's state directory: the endpoint registry a direct apply
    /// plans the shaper's map entries against, and the shaping records.
    #[arg(long, global = true, value_name = "DIR", default_value = crate::daemon::registry::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Where the shaper's map and links are pinned (bpffs), as podnetd's
    /// `--bpf-dir`.
    #[arg(long, global = true, value_name = "DIR", default_value = crate::shaping::DEFAULT_PIN_DIR)]
    pub bpf_dir: PathBuf,
    /// Where podnet writes the module options that must hold from boot on
    /// (`podnet-rdma.conf`: the RDMA netns mode), as podnetd's
    /// `--modprobe-dir`.
    #[arg(long, global = true, value_name = "DIR", default_value = crate::shaping::DEFAULT_MODPROBE_DIR)]
    pub modprobe_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the node files and report every error; touches nothing.
    Validate(validate::Args),
    /// Converge the host to the node files (or, with --dry-run, show the plan).
    Apply(apply::Args),
    /// Print the host's current state in the node file format.
    Show(show::Args),
    /// Compare the node files with the host, object by object.
    Status(status::Args),
    /// List the pod endpoints registered with podnetd.
    Endpoints(endpoints::Args),
    /// Put the node files in force on trial; podnetd rolls back unless confirmed.
    Try(try_::Args),
    /// Keep the generation on trial.
    Confirm(try_::ConfirmArgs),
    /// Pod bandwidth: `bandwidth list`.
    Bandwidth(bandwidth::Args),
}

/// Output formats shared by the verbs that print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs the command line and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validate(ref a) => validate::run(&cli, a),
        Command::Apply(ref a) => apply::run(&cli, a),
        Command::Show(ref a) => show::run(&cli, a),
        Command::Status(ref a) => status::run(&cli, a),
        Command::Endpoints(ref a) => endpoints::run(&cli, a),
        Command::Try(ref a) => try_::run(&cli, a),
        Command::Confirm(ref a) => try_::confirm(&cli, a),
        Command::Bandwidth(ref a) => bandwidth::run(&cli, a),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podnetctl: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Loads the node files, printing every diagnostic on failure.
pub(crate) fn load(cli: &Cli) -> Result<Loaded> {
    config::load_dir_for(&cli.config_dir, cli.node().as_deref()).map_err(|d: Diagnostics| {
        eprint!("{}", d.render());
        Error::new(
            ErrorKind::InvalidConfig,
            format!("invalid node files in {}", cli.config_dir.display()),
        )
    })
}

/// What the host shows wrong in valid node files (a VF count over the
/// device's total): printed like validation errors, and the command fails
/// as for invalid files, before anything is changed.
pub(crate) fn host_problems(loaded: &Loaded, observed: &crate::state::Observed) -> Result<()> {
    let found = crate::plan::host_problems(&loaded.config, observed);
    if found.is_empty() {
        return Ok(());
    }
    let located = loaded.diagnose(
        found
            .iter()
            .map(|h| (h.pointer.as_str(), h.message.as_str())),
    );
    eprint!("{}", located.render());
    Err(Error::new(
        ErrorKind::InvalidConfig,
        "the node files ask what this host's devices cannot take; nothing was changed",
    ))
}

/// Enters `--netns` and runs `f` with a kernel connection on a
/// single-threaded runtime (the namespace is per thread).
pub(crate) fn with_kernel<T>(cli: &Cli, f: impl AsyncFnOnce(&Kernel) -> Result<T>) -> Result<T> {
    if let Some(ns) = &cli.netns {
        crate::netns::enter(ns)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Bug, format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let kernel = Kernel::connect()?;
        f(&kernel).await
    })
}

/// A client for podnetd when one answers on `--socket` (and `--direct` is
/// not given); None means: work on the host directly.
pub(crate) fn daemon(cli: &Cli) -> Result<Option<BlockingClient>> {
    // The host's daemon does not manage another namespace.
    let socket = match (&cli.socket, &cli.netns) {
        (Some(s), _) => s.clone(),
        (None, Some(_)) => return Ok(None),
        (None, None) => PathBuf::from(crate::api::DEFAULT_SOCKET),
    };
    if cli.direct || !socket.exists() {
        return Ok(None);
    }
    let client = BlockingClient::new(&socket);
    match client.status() {
        Ok(_) => Ok(Some(client)),
        Err(e) if e.is_not_running() => Ok(None),
        Err(e) => Err(api_error(e)),
    }
}

/// A client for podnetd, for verbs that only the daemon can answer;
/// `why` says what the daemon holds that the host does not.
pub(crate) fn require_daemon(cli: &Cli, why: &str) -> Result<BlockingClient> {
    daemon(cli)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Host,
            format!(
                "podnetd is not running (no answer on {}){why}",
                cli.socket_path().display()
            ),
        )
    })
}

pub(crate) fn api_error(e: crate::api::client::Error) -> Error {
    Error::new(ErrorKind::Host, e.to_string())
}

/// Observes the host and plans, as podnetd would: the registry read from
/// podnetd's state directory (it does not change while no daemon runs),
/// the shaper loaded when shaping is in play (`create`: even if that pins
/// its map; a dry run never does). Runs `f` with the shaping context, so
/// an apply uses the same shaper and registry.
pub(crate) async fn planned<T>(
    cli: &Cli,
    kernel: &Kernel,
    desired: &crate::config::NodeConfig,
    create: bool,
    f: impl AsyncFnOnce(
        &crate::state::Observed,
        crate::plan::Plan,
        &mut crate::apply::Shaping<'_>,
    ) -> Result<T>,
) -> Result<T> {
    let path = cli.state_dir.join("endpoints.json");
    let endpoints = crate::daemon::registry::Registry::read(&path).map_err(|e| {
        Error::new(
            ErrorKind::Host,
            format!("reading the endpoint registry {}: {e}", path.display()),
        )
    })?;
    let registry = crate::apply::Fixed(endpoints);
    let mut shaper = None;
    let paths = crate::shaping::ShaperPaths {
        pin_dir: cli.bpf_dir.clone(),
        state_dir: cli.state_dir.join("shaping"),
        modprobe_dir: cli.modprobe_dir.clone(),
    };
    let mut shaping = crate::apply::Shaping::new(&mut shaper, kernel.clone(), paths, &registry);
    let (observed, inputs) =
        crate::apply::observe_for_plan(kernel, desired, &mut shaping, create).await?;
    let plan = crate::plan::plan(desired, &observed, &inputs);
    f(&observed, plan, &mut shaping).await
}

impl Cli {
    /// The node's name: `--node-name`, else the host name.
    pub fn node(&self) -> Option<String> {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(config::host_node_name)
    }

    /// The socket podnetctl talks to (for messages).
    pub(crate) fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::api::DEFAULT_SOCKET))
    }
}
