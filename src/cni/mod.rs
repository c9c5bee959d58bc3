//! `podnet-cni`: the chained CNI plugin. It goes in a conflist after the
//! plugin that makes the pod's interface (ipvlan or macvlan), where the
//! Spiderpool guides put `cilium-cni`, and registers each pod interface with
//! podnetd over its socket so podnetd can shape it:
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0",
//!   "cniVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
//!   "name": "pods",
//!   "plugins": [
//!     {"type": "ipvlan", "master": "ens192", "mode": "l2",
//!      "ipam": {"type": "host-local", "subnet": "172.51.0.0/24"}},
//!     {"type": "podnet-cni", "master": "ens192", "tier": "silver",
//!      "capabilities": {"bandwidth": true}}
//!   ]
//! }
//! ```
//!
//! It speaks CNI spec 0.3.1, 0.4.0, 1.0.0 and 1.1.0, one verb per file:
//!
//! - **ADD** ([`add`]) takes the pod's addresses from `prevResult`, the
//!   explicit rates from `runtimeConfig.bandwidth` and a tier (`args.cni.tier`,
//!   else `PODNET_TIER` in `CNI_ARGS`, else the entry's `tier`), registers
//!   `PUT /v1/endpoints/{CNI_CONTAINERID}/{CNI_IFNAME}` and prints
//!   `prevResult` unchanged, with the config's `cniVersion`.
//! - **DEL** ([`del`]) unregisters. It succeeds when nothing is registered,
//!   when the netns is gone and when podnetd is down or hangs (it says so on
//!   stderr): a failed DEL would keep the pod from being torn down, and
//!   podnetd drops endpoints whose netns died, as GC does.
//! - **CHECK** ([`check`]) wants the endpoint registered as ADD would
//!   register it now.
//! - **STATUS** ([`status`]) is ready when podnetd answers and has converged
//!   a generation of the node files.
//! - **GC** ([`gc`]) unregisters the endpoints of this network that are not
//!   in `cni.dev/valid-attachments`.
//! - **VERSION** answers the supported versions.
//!
//! Each invocation talks to podnetd for at most [`BUDGET`] in all, so a hung
//! daemon never hangs the runtime. Errors are CNI error objects on stdout
//! with a non-zero exit; [`types::code`] lists the codes and when each is
//! used.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod rdma;
pub mod status;
pub mod types;

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::client::{BlockingClient, Error as ClientError};
use types::{code, CniError, NetConf, SpecVersion, SUPPORTED_VERSIONS};

/// The time one invocation may spend on podnetd, connecting included.
pub const BUDGET: Duration = Duration::from_secs(5);

/// The `CNI_ARGS` key that names a tier for one attachment.
pub const TIER_ARG: &str = "PODNET_TIER";

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        match s {
            "ADD" => Some(Command::Add),
            "DEL" => Some(Command::Del),
            "CHECK" => Some(Command::Check),
            "STATUS" => Some(Command::Status),
            "GC" => Some(Command::Gc),
            "VERSION" => Some(Command::Version),
            _ => None,
        }
    }
}

/// The attachment an ADD, DEL or CHECK is about, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`: required by ADD and CHECK, optional for DEL.
    pub netns: Option<String>,
    /// `PODNET_TIER` from `CNI_ARGS`.
    pub args_tier: Option<String>,
}

/// The invocation's environment, checked for the command it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// For ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
}

impl Env {
    /// Reads and checks the `CNI_*` variables through `var`. Every variable
    /// the command requires but misses is named in one error.
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let Some(command) = get("CNI_COMMAND") else {
            return Err(CniError::new(
                code::INVALID_ENV,
                "required env variables [CNI_COMMAND] missing",
                "podnet-cni is a CNI plugin: a container runtime runs it with CNI_COMMAND and the network configuration on stdin",
            ));
        };
        let command = Command::parse(&command).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("unknown CNI_COMMAND {command:?}"),
                "CNI_COMMAND is one of ADD, DEL, CHECK, STATUS, GC, VERSION",
            )
        })?;
        let (needs_netns, needs_attachment) = match command {
            Command::Add | Command::Check => (true, true),
            Command::Del => (false, true),
            Command::Status | Command::Gc | Command::Version => (false, false),
        };
        if !needs_attachment {
            return Ok(Env {
                command,
                attachment: None,
            });
        }
        let container_id = get("CNI_CONTAINERID");
        let ifname = get("CNI_IFNAME");
        let netns = get("CNI_NETNS");
        let mut missing = Vec::new();
        if container_id.is_none() {
            missing.push("CNI_CONTAINERID");
        }
        if needs_netns && netns.is_none() {
            missing.push("CNI_NETNS");
        }
        if ifname.is_none() {
            missing.push("CNI_IFNAME");
        }
        let (Some(container_id), Some(ifname), true) = (container_id, ifname, missing.is_empty())
        else {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
                "",
            ));
        };
        if !types::valid_cni_name(&container_id)
            || !crate::api::server::valid_container_id(&container_id)
        {
            return Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_CONTAINERID",
                format!(
                    "{container_id:?}: a container id starts with a letter or digit, continues with letters, digits, `_`, `.` or `-`, and podnetd takes at most 128 of them"
                ),
            ));
        }
        if !crate::config::schema::valid_ifname(&ifname) {
            return Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_IFNAME",
                format!("{ifname:?}: an interface name has 1 to 15 bytes, without `/`, `:` or whitespace, and is not `.` or `..`"),
            ));
        }
        // DEL needs no tier: a CNI_ARGS it cannot read must not stop a teardown.
        let args_tier = match command {
            Command::Del => None,
            _ => parse_cni_args(get("CNI_ARGS").as_deref().unwrap_or(""))?,
        };
        Ok(Env {
            command,
            attachment: Some(Attachment {
                container_id,
                ifname,
                netns,
                args_tier,
            }),
        })
    }
}

/// The tier in `CNI_ARGS` (`K=V;K2=V2`), if any. The runtime passes the
/// same `CNI_ARGS` to every plugin of a chain, and kubelet adds
/// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID`,
/// `K8S_POD_UID` and `IgnoreUnknown`: keys other than [`TIER_ARG`] are
/// ignored whether or not `IgnoreUnknown` is set. A pair without `=` is an
/// error, as it is for every plugin built on the reference library.
pub fn parse_cni_args(args: &str) -> Result<Option<String>, CniError> {
    let mut tier = None;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_ARGS",
                format!("{pair:?} is not KEY=VALUE (CNI_ARGS is KEY=VALUE pairs separated by `;`)"),
            ));
        };
        if key == TIER_ARG {
            let t = types::check_tier(value, "CNI_ARGS PODNET_TIER")
                .map_err(|e| CniError::new(code::INVALID_ENV, e.msg, e.details))?;
            tier = Some(t);
        }
    }
    Ok(tier)
}

/// What a command prints on success: a result, or nothing.
pub type Outcome = Result<Option<Value>, CniError>;

/// Runs one invocation: the environment through `var`, the configuration in
/// `stdin`. Returns the `cniVersion` to answer in and the outcome.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> (String, Outcome) {
    let decoded = types::decode(stdin);
    // The answer's version is the config's, even for an error about the
    // environment.
    let reply = decoded
        .as_ref()
        .map_or(types::LATEST, types::reply_version)
        .as_str()
        .to_string();
    let env = match Env::parse(var) {
        Ok(env) => env,
        Err(e) => return (reply, Err(e)),
    };
    if env.command == Command::Version {
        return version(decoded.as_ref().unwrap_or(&Value::Null));
    }
    let outcome = decoded.and_then(|raw| match (env.command, &env.attachment) {
        (Command::Del, Some(at)) => del::del_raw(&raw, at),
        _ => NetConf::parse(&raw).and_then(|conf| dispatch(&env, &conf)),
    });
    (reply, outcome)
}

fn dispatch(env: &Env, conf: &NetConf) -> Outcome {
    let needs = |ok: bool, what: &str, since: SpecVersion| {
        if ok {
            Ok(())
        } else {
            Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version does not allow {what}"),
                format!(
                    "{what} exists since CNI {since}; the network's cniVersion is {}",
                    conf.version
                ),
            ))
        }
    };
    let attachment = || {
        env.attachment
            .as_ref()
            .ok_or_else(|| CniError::new(code::INVALID_ENV, "no attachment", ""))
    };
    match env.command {
        Command::Add => add::add(conf, attachment()?),
        Command::Del => del::del(&conf.socket, attachment()?),
        Command::Check => {
            needs(conf.version.has_check(), "CHECK", SpecVersion::V0_4_0)?;
            check::check(conf, attachment()?)
        }
        Command::Status => {
            needs(
                conf.version.has_status_and_gc(),
                "STATUS",
                SpecVersion::V1_1_0,
            )?;
            status::status(conf)
        }
        Command::Gc => {
            needs(conf.version.has_status_and_gc(), "GC", SpecVersion::V1_1_0)?;
            gc::gc(conf)
        }
        Command::Version => version(&Value::Null).1,
    }
}

/// VERSION: the supported versions, in the version the input names (the
/// spec's rule), or the newest when it names none.
fn version(input: &Value) -> (String, Outcome) {
    let asked = input
        .get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| looks_like_a_version(v))
        .unwrap_or(types::LATEST.as_str())
        .to_string();
    let answer = json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS});
    (asked, Ok(Some(answer)))
}

fn looks_like_a_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The process entry point of `podnet-cni`.
pub fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    // A person running the binary by hand has a terminal on stdin: do not
    // wait for it. Runtimes always pass a pipe (or /dev/null).
    if !std::io::stdin().is_terminal() {
        if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
            if command != "VERSION" {
                let err = CniError::new(
                    code::IO_FAILURE,
                    "cannot read the network configuration from stdin",
                    e.to_string(),
                );
                println!("{}", err.to_json(types::LATEST.as_str()));
                return ExitCode::FAILURE;
            }
        }
    }
    let (reply, outcome) = run(|k| std::env::var(k).ok(), &stdin);
    match outcome {
        Ok(Some(result)) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            if command.is_empty() {
                eprintln!(
                    "podnet-cni {}: the podnet chained CNI plugin; CNI spec versions {}",
                    env!("CARGO_PKG_VERSION"),
                    SUPPORTED_VERSIONS.join(", ")
                );
            }
            println!("{}", e.to_json(&reply));
            ExitCode::FAILURE
        }
    }
}

/// podnetd's socket within this invocation's [`BUDGET`]. The calls are
/// blocking: a plugin that makes one or two of them has no use for a
/// runtime, which would cost more to build than the call takes.
pub(crate) struct Podnetd {
    client: BlockingClient,
    deadline: Instant,
}

impl Podnetd {
    pub(crate) fn new(socket: &Path) -> Podnetd {
        Podnetd {
            client: BlockingClient::new(socket),
            deadline: Instant::now() + BUDGET,
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// Runs one call with what is left of the budget as its timeout.
    pub(crate) fn call<T>(
        &self,
        f: impl FnOnce(&BlockingClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout(BUDGET));
        }
        f(&self.client.clone().with_timeout(left))
    }
}

/// A failure to get an answer from podnetd (or its refusal) as the CNI
/// error for a command that needs the answer. podnetd down, hung or unable
/// to persist is transient: "try again later" (11), which is what a runtime
/// does with a failed ADD anyway. A refusal of the request itself is an
/// invalid network config (7), with podnetd's reason.
pub(crate) fn daemon_error(e: ClientError, doing: &str) -> CniError {
    let details = e.to_string();
    match e {
        ClientError::NotRunning { .. } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("podnetd is not running; cannot {doing}"),
            format!("{details}; start it (systemctl start podnetd), then retry"),
        ),
        ClientError::Timeout(_) => CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "podnetd did not answer within {}s; cannot {doing}",
                BUDGET.as_secs()
            ),
            details,
        ),
        ClientError::Io { .. } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("lost podnetd's socket; cannot {doing}"),
            details,
        ),
        ClientError::NoAccess { .. } => CniError::new(
            code::IO_FAILURE,
            format!("may not use podnetd's socket; cannot {doing}"),
            details,
        ),
        ClientError::Api { status, message } if (400..500).contains(&status) => {
            CniError::config(format!("podnetd refused to {doing}: {message}"), details)
        }
        ClientError::Api { message, .. } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("podnetd failed to {doing}: {message}"),
            details,
        ),
        ClientError::Protocol(_) => CniError::new(
            code::PROTOCOL,
            format!("unexpected answer from podnetd; cannot {doing}"),
            format!("{details} (are podnet-cni and podnetd from the same release?)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let e = Env::parse(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"
        );
        let ok = Env::parse(env(&ADD)).unwrap();
        assert_eq!(ok.command, Command::Add);
        let a = ok.attachment.unwrap();
        assert_eq!(
            (a.container_id.as_str(), a.ifname.as_str()),
            ("c0ffee", "eth0")
        );
        assert_eq!(a.netns.as_deref(), Some("/var/run/netns/cni-1"));
    }

    #[test]
    fn del_does_without_netns_and_tolerates_any_cni_args() {
        let e = Env::parse(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c0ffee"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "garbage"),
        ]))
        .unwrap();
        assert_eq!(e.attachment.unwrap().netns, None);
    }

    #[test]
    fn status_gc_and_version_need_no_attachment() {
        for c in ["STATUS", "GC", "VERSION"] {
            let e = Env::parse(env(&[("CNI_COMMAND", c)])).unwrap();
            assert_eq!(e.attachment, None);
        }
    }

    #[test]
    fn bad_environments_are_named() {
        for (vars, needle) in [
            (vec![], "CNI_COMMAND"),
            (vec![("CNI_COMMAND", "UP")], "CNI_COMMAND"),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "-bad"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_CONTAINERID",
            ),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", &"a".repeat(129)),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_CONTAINERID",
            ),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "abc"),
                    ("CNI_IFNAME", "this-is-too-long0"),
                ],
                "CNI_IFNAME",
            ),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "abc"),
                    ("CNI_IFNAME", "a/b"),
                ],
                "CNI_IFNAME",
            ),
        ] {
            let e = Env::parse(env(&vars)).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{vars:?}");
            assert!(e.msg.contains(needle), "{vars:?}: {e}");
        }
    }

    #[test]
    fn cni_args_give_the_tier_and_ignore_the_rest() {
        assert_eq!(parse_cni_args("").unwrap(), None);
        assert_eq!(
            parse_cni_args(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=1234;PODNET_TIER=gold"
            )
            .unwrap()
            .as_deref(),
            Some("gold")
        );
        assert_eq!(parse_cni_args("K8S_POD_NAME=x;;FOO=a=b").unwrap(), None);
        assert_eq!(
            parse_cni_args("PODNET_TIER").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            parse_cni_args("PODNET_TIER=").unwrap_err().code,
            code::INVALID_ENV
        );
        let mut vars = ADD.to_vec();
        vars.push(("CNI_ARGS", "K8S_POD_NAME=x;PODNET_TIER=silver"));
        let a = Env::parse(env(&vars)).unwrap().attachment.unwrap();
        assert_eq!(a.args_tier.as_deref(), Some("silver"));
    }

    #[test]
    fn version_echoes_the_asked_version() {
        let (v, out) = run(env(&[("CNI_COMMAND", "VERSION")]), b"");
        assert_eq!(v, "1.1.0");
        assert_eq!(
            out.unwrap().unwrap(),
            json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        let (v, out) = run(
            env(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"0.4.0"}"#,
        );
        assert_eq!(v, "0.4.0");
        assert_eq!(out.unwrap().unwrap()["cniVersion"], "0.4.0");
        let (_, out) = run(
            env(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"x; rm"}"#,
        );
        assert_eq!(out.unwrap().unwrap()["cniVersion"], "1.1.0");
    }

    #[test]
    fn errors_answer_in_the_configs_version() {
        let (v, out) = run(env(&[("CNI_COMMAND", "ADD")]), br#"{"cniVersion":"0.3.1"}"#);
        assert_eq!(v, "0.3.1");
        assert_eq!(out.unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn commands_newer_than_the_config_are_incompatible() {
        let conf = |v: &str| format!(r#"{{"cniVersion":"{v}","name":"pods","type":"podnet-cni"}}"#);
        let mut check = ADD.to_vec();
        check[0] = ("CNI_COMMAND", "CHECK");
        let (_, out) = run(env(&check), conf("0.3.1").as_bytes());
        assert_eq!(out.unwrap_err().code, code::INCOMPATIBLE_VERSION);
        for c in ["STATUS", "GC"] {
            let (_, out) = run(env(&[("CNI_COMMAND", c)]), conf("1.0.0").as_bytes());
            let e = out.unwrap_err();
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{c}");
            assert!(e.msg.contains(c), "{e}");
        }
    }

    #[test]
    fn daemon_errors_map_to_cni_codes() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let socket = std::path::PathBuf::from("/run/podnet/podnet.sock");
        for (e, want) in [
            (
                ClientError::NotRunning {
                    socket: socket.clone(),
                    source: io(),
                },
                code::TRY_AGAIN_LATER,
            ),
            (ClientError::Timeout(BUDGET), code::TRY_AGAIN_LATER),
            (
                ClientError::Io {
                    socket: socket.clone(),
                    source: io(),
                },
                code::TRY_AGAIN_LATER,
            ),
            (
                ClientError::NoAccess {
                    socket,
                    source: io(),
                },
                code::IO_FAILURE,
            ),
            (
                ClientError::Api {
                    status: 422,
                    message: "undefined tier `x`".into(),
                },
                code::INVALID_CONFIG,
            ),
            (
                ClientError::Api {
                    status: 503,
                    message: "cannot persist".into(),
                },
                code::TRY_AGAIN_LATER,
            ),
            (ClientError::Protocol("x".into()), code::PROTOCOL),
        ] {
            let text = e.to_string();
            let got = daemon_error(e, "register the pod");
            assert_eq!(got.code, want, "{text}");
            assert!(got.details.contains(&text), "{got:?}");
        }
        let e = daemon_error(
            ClientError::Api {
                status: 422,
                message: "undefined tier `x`".into(),
            },
            "register the pod",
        );
        assert!(e.msg.contains("undefined tier `x`"), "{e}");
    }
}
