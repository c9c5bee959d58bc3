//! podnet-cni(8). The spec versions, the time budget, the error codes
//! (read from `src/cni/types/error.rs`, the one place they are defined
//! and documented) and the error example (podnet-cni's own answer) come
//! from the code; the conflist example is checked by the test that the
//! plugin reads its entry.

use std::fmt::Write as _;

use podnet::cni::types::{SpecVersion, LATEST, SUPPORTED_VERSIONS};

use super::roff::{self, b};

/// The conflist of EXAMPLES: `@VERSIONS@` and `@LATEST@` are filled in
/// from the plugin's supported versions.
const CONFLIST: &str = r#"{
  "cniVersion": "@LATEST@",
  "cniVersions": [@VERSIONS@],
  "name": "pods",
  "plugins": [
    {
      "type": "macvlan",
      "master": "ens192",
      "mode": "bridge",
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "172.51.0.0/24",
                     "rangeStart": "172.51.0.10",
                     "rangeEnd": "172.51.0.200"}]]
      }
    },
    {
      "type": "podnet-cni",
      "master": "ens192",
      "tier": "silver",
      "capabilities": {"bandwidth": true}
    }
  ]
}"#;

/// The conflist example as a runtime reads it.
pub fn conflist() -> String {
    let versions: Vec<String> = SUPPORTED_VERSIONS
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect();
    CONFLIST
        .replace("@LATEST@", LATEST.as_str())
        .replace("@VERSIONS@", &versions.join(", "))
}

/// An error code: its number, and its doc comment.
#[derive(Debug)]
pub struct Code {
    pub name: String,
    pub value: u32,
    pub doc: String,
}

/// The codes of `pub mod code` in `src/cni/types/error.rs`, in order.
pub fn codes() -> Vec<Code> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cni/types/error.rs");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("pub mod code {")
        .expect("src/cni/types/error.rs has `pub mod code {`");
    let body = &text[start..];
    let body = &body[..body.find("\n}").expect("`pub mod code` ends")];
    let mut codes = Vec::new();
    let mut doc = Vec::new();
    for l in body.lines().skip(1).map(str::trim) {
        if let Some(d) = l.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(c) = l.strip_prefix("pub const ") {
            let (name, rest) = c.split_once(':').expect("pub const NAME: u32 = N;");
            let value = rest
                .split_once('=')
                .and_then(|(_, v)| v.trim().trim_end_matches(';').parse().ok())
                .unwrap_or_else(|| panic!("src/cni/types/error.rs: cannot read `{l}`"));
            assert!(
                !doc.is_empty(),
                "src/cni/types/error.rs: code {name} has no doc comment"
            );
            codes.push(Code {
                name: name.trim().to_string(),
                value,
                doc: doc.join("\n"),
            });
            doc.clear();
        } else if !l.is_empty() {
            doc.clear();
        }
    }
    codes
}

/// The oldest supported version with a command.
fn since(has: fn(SpecVersion) -> bool) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| SpecVersion::parse(v).is_some_and(has))
        .expect("a supported version has the command")
}

/// podnet-cni's answer to an ADD while podnetd is not running.
fn error_example() -> String {
    let conf = serde_json::json!({
        "cniVersion": LATEST.as_str(),
        "name": "pods",
        "type": "podnet-cni",
        "socket": "/run/podnet/not-here/podnet.sock",
        "prevResult": {
            "cniVersion": LATEST.as_str(),
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/cni-1"}],
            "ips": [{"address": "172.51.0.10/24", "interface": 0}]
        }
    });
    let env = |k: &str| {
        match k {
            "CNI_COMMAND" => Some("ADD"),
            "CNI_CONTAINERID" => Some("c0ffee"),
            "CNI_NETNS" => Some("/var/run/netns/cni-1"),
            "CNI_IFNAME" => Some("eth0"),
            _ => None,
        }
        .map(str::to_string)
    };
    let (reply, outcome) = podnet::cni::run(env, conf.to_string().as_bytes());
    let e = outcome.expect_err("ADD without podnetd fails");
    serde_json::to_string_pretty(&e.to_json(&reply)).unwrap()
}

pub fn page() -> (String, Vec<u8>) {
    let mut p = String::new();
    p.push_str(&roff::th("podnet-cni", "8", "podnet Manual"));
    p.push_str(&roff::sh("NAME"));
    p.push_str("podnet\\-cni \\- chained CNI plugin that registers pods with podnetd for bandwidth shaping\n");
    p.push_str(&roff::sh("SYNOPSIS"));
    p.push_str(
        "\\fBCNI_COMMAND\\fR=\\fIcommand\\fR [\\fBCNI_CONTAINERID\\fR=\\fIid\\fR \\fBCNI_NETNS\\fR=\\fIpath\\fR \\fBCNI_IFNAME\\fR=\\fIname\\fR] \\fBpodnet\\-cni\\fR < \\fInetwork\\-configuration\\fR\n",
    );
    let versions = SUPPORTED_VERSIONS.join(", ");
    write!(
        p,
        r#".SH DESCRIPTION
\fBpodnet\-cni\fR is run by a container runtime (containerd, CRI\-O, Multus),
never by hand. It goes in a network's conflist after the plugin that makes the
pod's interface (\fBipvlan\fR or \fBmacvlan\fR with an IPAM plugin), where
Spiderpool's guides put \fBcilium\-cni\fR, and registers each pod interface
with \fBpodnetd\fR(8) over its socket: the pod's addresses, its master, its
tier and the rates it asked for. \fBpodnetd\fR then shapes the pod's traffic
as the node files say (\fBpodnet.toml\fR(5)). \fBpodnet\-cni\fR changes
nothing in the pod: it passes the previous plugin's result on unchanged.
.PP
It speaks the CNI specification versions {versions}. Each invocation talks
to \fBpodnetd\fR for at most {budget} seconds in all, connecting included, so a
hung daemon never hangs the runtime.
"#,
        versions = roff::esc(&versions),
        budget = podnet::cni::BUDGET.as_secs(),
    )
    .unwrap();
    p.push_str(&install());
    p.push_str(&configuration());
    p.push_str(&commands());
    p.push_str(&environment());
    p.push_str(&exit_status());
    p.push_str(&examples());
    p.push_str(
        r#".SH "SEE ALSO"
\fBpodnetd\fR(8), \fBpodnetctl\-endpoints\fR(8), \fBpodnetctl\-bandwidth\fR(8),
\fBpodnet.toml\fR(5); the CNI specification,
\fIhttps://www.cni.dev/docs/spec/\fR, and its conventions,
\fIhttps://www.cni.dev/docs/conventions/\fR
"#,
    );
    ("podnet-cni.8".into(), p.into_bytes())
}

fn install() -> String {
    r#".SH INSTALLATION
The runtime finds a plugin by its \fBtype\fR in its CNI binary directories
(containerd's \fBbin_dir\fR, CRI\-O's \fBplugin_dirs\fR, the \fBCNI_PATH\fR it
passes to plugins). The packages install the binary where those look:
.TP
\fI/usr/lib/cni/podnet\-cni\fR
the Debian package: where Debian's \fBcontainernetworking\-plugins\fR
(\fBmacvlan\fR, \fBipvlan\fR, \fBhost\-local\fR) are;
.TP
\fI/opt/cni/bin/podnet\-cni\fR
the RPM package: the usual CNI binary directory elsewhere;
.TP
\fI/usr/bin/podnet\-cni\fR
both packages.
.PP
On Debian, a runtime configured for \fI/opt/cni/bin\fR (containerd's default)
needs \fI/usr/lib/cni\fR in its binary directories, or a link. The binary is
linked statically and needs no library of the host. The conflist goes where
the runtime reads networks, usually \fI/etc/cni/net.d/\fR, or into a Multus
NetworkAttachmentDefinition's \fBconfig\fR.
"#
    .to_string()
}

fn configuration() -> String {
    let mut p = String::from(
        r#".SH CONFIGURATION
The keys of the conflist entry (\fB{"type": "podnet\-cni", ...}\fR); other
keys are ignored, as the runtime passes other plugins' conventions to every
plugin of a chain.
.TP
\fBtype\fR
\fB"podnet\-cni"\fR.
.TP
\fBmaster\fR
The master the network's pods hang off (the previous plugin's \fBmaster\fR),
passed on to \fBpodnetd\fR, which shapes the pod's egress there. An interface
name. Optional, but without it a pod's traffic is taken to leave through any
shaped master.
.TP
\fBtier\fR
The network's tier: a \fB[tiers.\fR\fIname\fR\fB]\fR table of the node files.
Optional; a pod's own tier wins (see \fBTIERS AND RATES\fR).
.TP
\fBsocket\fR
"#,
    );
    writeln!(
        p,
        "\\fBpodnetd\\fR's socket, an absolute path. Default: \\fI{}\\fR.",
        roff::code(podnet::api::DEFAULT_SOCKET)
    )
    .unwrap();
    write!(
        p,
        r#".TP
\fBcapabilities\fR
\fB{{"bandwidth": true}}\fR makes the runtime pass the pod's
\fBkubernetes.io/ingress\-bandwidth\fR and \fBegress\-bandwidth\fR
annotations as \fBruntimeConfig.bandwidth\fR. Without it a pod gets its
tier's rates only.
.TP
\fBrdma\fR
Hands the pod an RDMA device (HCA): \fBtrue\fR, the one on its VF
(\fBdeviceID\fR) or else on \fBmaster\fR; a string names one
(\fB"mlx5_3"\fR). The node files must offer it (\fB[rdma] devices\fR in
\fBpodnet.toml\fR(5)). In the kernel's exclusive netns mode ADD moves it
into the pod's namespace and DEL moves it back (after the namespace is
gone the kernel has returned it); in shared mode every namespace sees it
and nothing moves. Either way the endpoint records it, and \fBpodnetd\fR
reports it in use. A device whose driver cannot change namespaces
(Soft\-RoCE, siw) fails an exclusive-mode ADD with code 103, nothing
registered.
.PP
The runtime adds to the entry what \fBpodnet\-cni\fR also reads:
\fBcniVersion\fR (one of {versions}; a network without it is refused, as
spec 0.1.0), \fBname\fR (the network's; GC and the registry record it),
\fBprevResult\fR (required by ADD and CHECK: the pod's interfaces and
addresses), \fBruntimeConfig.bandwidth\fR (\fBingressRate\fR and
\fBegressRate\fR in bits per second, 0 or absent: no explicit limit;
\fBingressBurst\fR and \fBegressBurst\fR, which are ignored, as kubelet
passes "no limit" there and the burst comes from the tier),
\fBargs.cni.tier\fR, \fBdeviceID\fR (an SR\-IOV pod's VF, by PCI address, as
Multus puts it into every plugin of the chain from the device plugin's
allocation: \fBpodnetd\fR then counts the VF in use while the pod is
registered, and refuses to destroy or rebind it), and, for GC,
\fBcni.dev/valid\-attachments\fR.
.SS "TIERS AND RATES"
A pod's tier is the first of: \fBargs.cni.tier\fR (the runtime's
\fBargs\fR, which the CNI conventions prefer), \fB{tier_arg}\fR in
\fBCNI_ARGS\fR, the entry's \fBtier\fR; with none, \fBpodnetd\fR gives it
\fB[shaping] default_tier\fR. A tier \fBpodnetd\fR does not know fails the
ADD. How the tier and the explicit rates combine is the node's policy,
\fB[shaping] annotations\fR and \fBmax_rate\fR in \fBpodnet.toml\fR(5).
"#,
        versions = roff::esc(&SUPPORTED_VERSIONS.join(", ")),
        tier_arg = roff::code(podnet::cni::TIER_ARG),
    )
    .unwrap();
    p
}

fn commands() -> String {
    format!(
        r#".SH COMMANDS
.TP
\fBADD\fR
Reads the pod's addresses on \fBCNI_IFNAME\fR from \fBprevResult\fR (an
address is required: podnet shapes a pod by its addresses) and its rates and
tier, registers the endpoint \fBCNI_CONTAINERID\fR/\fBCNI_IFNAME\fR with
\fBpodnetd\fR (\fBPUT /v1/endpoints/\fR\fIid\fR\fB/\fR\fIifname\fR) and prints
\fBprevResult\fR unchanged, in the configuration's \fBcniVersion\fR. Every
check is made before \fBpodnetd\fR is asked; nothing is registered when one
fails.
.TP
\fBDEL\fR
Unregisters the endpoint. It succeeds when nothing is registered, when the
network namespace is gone, when the configuration is invalid in ways that do
not hide the socket, and when \fBpodnetd\fR is down or does not answer (it
says so on stderr): a failed DEL would keep the runtime from tearing the pod
down, and \fBpodnetd\fR drops endpoints whose network namespace died, as GC
does.
.TP
\fBCHECK\fR
Since CNI {check}. Succeeds when the endpoint is registered as ADD would
register it now (addresses, network namespace, master, tier, rates) and its
egress limit is in force (its master shaped, the shaper's map holding its
entry).
.TP
\fBSTATUS\fR
Since CNI {status}. Succeeds when \fBpodnetd\fR answers and has converged a
generation of the node files; until then the runtime is told that the plugin
cannot serve ADD, with the reason.
.TP
\fBGC\fR
Since CNI {status}. Unregisters this network's endpoints (by the network's
\fBname\fR) that are not in \fBcni.dev/valid\-attachments\fR. Unlike DEL it
reports failures, \fBpodnetd\fR down included: the runtime calls GC again
later.
.TP
\fBVERSION\fR
Prints the supported versions ({versions}).
"#,
        check = since(SpecVersion::has_check),
        status = since(SpecVersion::has_status_and_gc),
        versions = roff::esc(&SUPPORTED_VERSIONS.join(", ")),
    )
}

fn environment() -> String {
    format!(
        r#".SH ENVIRONMENT
.TP
\fBCNI_COMMAND\fR
ADD, DEL, CHECK, STATUS, GC or VERSION.
.TP
\fBCNI_CONTAINERID\fR
The container's id (ADD, DEL, CHECK): a letter or digit, then letters,
digits, \fB_\fR, \fB.\fR or \fB\-\fR.
.TP
\fBCNI_NETNS\fR
The pod's network namespace (ADD, CHECK; optional for DEL).
.TP
\fBCNI_IFNAME\fR
The pod's interface (ADD, DEL, CHECK).
.TP
\fBCNI_ARGS\fR
\fIKEY\fR\fB=\fR\fIVALUE\fR pairs separated by \fB;\fR.
\fB{tier_arg}=\fR\fItier\fR names the pod's tier; other keys (kubelet's
\fBK8S_POD_NAME\fR and the like) are ignored.
.PP
A variable the command needs and misses is an error (code 4) naming every
missing one.
"#,
        tier_arg = roff::code(podnet::cni::TIER_ARG),
    )
}

fn exit_status() -> String {
    let mut p = String::from(
        r#".SH "EXIT STATUS"
0 on success, with the result on stdout for ADD (\fBprevResult\fR) and
VERSION, nothing for the others. On failure, a non\-zero status and a CNI
error object on stdout: \fBcniVersion\fR, \fBcode\fR, \fBmsg\fR (what went
wrong) and \fBdetails\fR (why, and how to fix it). The codes:
"#,
    );
    for c in codes() {
        writeln!(p, ".TP\n{}", b(&c.value.to_string())).unwrap();
        p.push_str(&roff::paragraphs(&c.doc).replace(".PP\n", ".IP\n"));
    }
    p.push_str(".PP\nCodes below 100 are the specification's; 100 and up are podnet's own.\n");
    p
}

fn examples() -> String {
    let mut p = String::from(
        r#".SH EXAMPLES
A network of macvlan pods on \fBens192\fR, addressed by \fBhost\-local\fR,
registered with \fBpodnetd\fR, tier \fBsilver\fR unless a pod says otherwise,
honouring the pods' bandwidth annotations
(\fI/etc/cni/net.d/10\-pods.conflist\fR):
"#,
    );
    p.push_str(&roff::example(&conflist()));
    p.push_str(
        r#".PP
The node files must declare the master and the tier, for example:
"#,
    );
    p.push_str(&roff::example(NODE));
    p.push_str(
        r#".PP
ADD while \fBpodnetd\fR is not running fails with code 11, "try again
later" (the runtime retries a failed ADD anyway):
"#,
    );
    p.push_str(&roff::example(&error_example()));
    p
}

/// The node files of EXAMPLES (the test loads them).
pub const NODE: &str = r#"version = 1

[masters.ens192]
kind = "macvlan"
mode = "bridge"

[tiers.silver]
egress = "100M"
ingress = "100M"

[shaping]
default_tier = "silver"
"#;
