//! Validation of merged node files, in two passes that each report every
//! problem they find:
//! 1. structure, against the generated schema: unknown keys, wrong types,
//!    unknown enum values, bad units and names;
//! 2. meaning, on the typed config: modes that do not fit the kind, undefined
//!    tiers, a name used for two interfaces, and so on.

use std::collections::BTreeMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value as Json;

use super::diag::{join_key, locate, Diagnostic, Origins, Sources};
use super::schema::{validator, FORMATS};
use super::units::Rate;
use super::{ChildKind, ChildMode, Match, NodeConfig, VERSION};
use ipnet::IpNet;

pub(crate) fn validate(
    json: Json,
    origins: &Origins,
    sources: &Sources,
) -> Result<NodeConfig, Vec<Diagnostic>> {
    let here = |pointer: &str, d: Diagnostic| place(d, pointer, origins, sources);
    let mut items: Vec<Diagnostic> = structural(&json)
        .into_iter()
        .map(|(pointer, d)| here(&pointer, d))
        .collect();
    if !items.is_empty() {
        dedup(&mut items);
        return Err(items);
    }
    let config: NodeConfig = match serde_json::from_value(json) {
        Ok(c) => c,
        // The schema accepted it, so this is a disagreement between the
        // schema and the types: still report it, at the document root.
        Err(e) => return Err(vec![here("", Diagnostic::new("", e.to_string()))]),
    };
    let problems = semantic(&config);
    if problems.is_empty() {
        return Ok(config);
    }
    let mut items: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| {
            let mut d = here(&p.pointer, p.diag);
            for (ptr, msg) in p.related {
                if let Some(o) = origins.get(&ptr) {
                    d.related
                        .push((locate(sources, o.file, o.key.clone()), msg));
                }
            }
            d
        })
        .collect();
    dedup(&mut items);
    Err(items)
}

/// Checks one file's `[match]` table (as JSON, its origins under
/// `/match`), before any merging: it decides whether the file is merged
/// at all. Its structure is checked against the same schema, inside a
/// document that has nothing else.
pub(crate) fn node_match(
    json: Json,
    origins: &Origins,
    sources: &Sources,
) -> Result<Match, Vec<Diagnostic>> {
    let mut doc = serde_json::json!({ "version": VERSION, "match": json });
    let mut items: Vec<Diagnostic> = structural(&doc)
        .into_iter()
        .map(|(pointer, d)| place(d, &pointer, origins, sources))
        .collect();
    if !items.is_empty() {
        dedup(&mut items);
        return Err(items);
    }
    serde_json::from_value(doc["match"].take()).map_err(|e| {
        vec![place(
            Diagnostic::new("", e.to_string()),
            "/match",
            origins,
            sources,
        )]
    })
}

/// Points a diagnostic at a key: the nearest ancestor that has an origin.
fn place(mut d: Diagnostic, pointer: &str, origins: &Origins, sources: &Sources) -> Diagnostic {
    let mut p = pointer;
    loop {
        if let Some(o) = origins.get(p) {
            if d.key.is_empty() {
                d.key = if p == pointer {
                    o.dotted.clone()
                } else {
                    // The key itself is missing; name it under its parent.
                    let tail = &pointer[p.len()..].trim_start_matches('/');
                    join_key(&o.dotted, &unescape(tail))
                };
            }
            return d.at(sources, o.file, o.key.clone());
        }
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => return d,
        }
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn dedup(items: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|d| seen.insert(d.to_string()));
    items.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            d.location
                .as_ref()
                .map(|l| (l.file_index, l.span.start))
                .unwrap_or_default()
        };
        key(a).cmp(&key(b))
    });
}

/// Pass 1: every schema violation, as (JSON pointer, diagnostic).
fn structural(json: &Json) -> Vec<(String, Diagnostic)> {
    let schema = super::schema::schema();
    let mut out = Vec::new();
    for e in validator().iter_errors(json) {
        let pointer = e.instance_path().as_str().to_string();
        let found = describe(e.instance());
        let d = match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(schema, e.schema_path().as_str());
                for key in unexpected {
                    let mut d = Diagnostic::new("", format!("unknown key `{key}`"));
                    if let Some(s) = suggest(key, &allowed) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    } else if !allowed.is_empty() {
                        d = d.with_help(format!("expected one of: {}", allowed.join(", ")));
                    }
                    let p = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    out.push((p, d));
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or("?").to_string();
                let d = Diagnostic::new("", format!("missing required key `{name}`"));
                out.push((format!("{pointer}/{name}"), d));
                continue;
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    TypeKind::Single(t) => t.to_string(),
                    TypeKind::Multiple(ts) => ts
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                Diagnostic::new("", format!("expected {expected}, found {found}"))
            }
            ValidationErrorKind::Enum { options } => {
                let list = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                Diagnostic::new("", format!("unknown value {found}"))
                    .with_help(format!("expected one of: {list}"))
            }
            ValidationErrorKind::Format { format } => {
                let text = e.instance().as_str().unwrap_or_default();
                let message = match format.as_str() {
                    "rate" => Rate::parse(text).err().map_or_else(String::new, |r| r.to_string()),
                    "ifname" => format!(
                        "invalid interface name {found}: 1-15 bytes, no '/', ':' or whitespace"
                    ),
                    "ip-prefix" => format!(
                        "invalid IP prefix {found}: write an address with its prefix length, e.g. \"10.0.0.1/24\""
                    ),
                    "ip" => format!("invalid IP address {found}"),
                    "mac" => format!("invalid MAC address {found}: write six hex pairs, e.g. \"02:00:00:00:00:10\""),
                    "horizon" => super::units::Horizon::parse(text).err().unwrap_or_default(),
                    "delay" => super::units::Delay::parse(text).err().unwrap_or_default(),
                    "node-glob" => super::nodes::glob_problem(text).unwrap_or_default(),
                    other => format!("{found} is not a valid {other}"),
                };
                debug_assert!(FORMATS.iter().any(|(n, _)| n == format));
                Diagnostic::new("", message)
            }
            ValidationErrorKind::MinItems { limit } => Diagnostic::new(
                "",
                format!(
                    "expected at least {limit} item(s), found {}",
                    e.instance().as_array().map_or(0, Vec::len)
                ),
            ),
            _ => Diagnostic::new("", e.to_string()),
        };
        out.push((pointer, d));
    }
    out
}

fn describe(v: &Json) -> String {
    match v {
        Json::String(s) => format!("string {s:?}"),
        Json::Number(n) => format!("number {n}"),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "a table".into(),
        Json::Null => "nothing".into(),
    }
    .replace("string \"", "\"")
}

/// The keys a table may have, found by following the failing keyword's
/// location (`.../$ref/additionalProperties`) through the schema.
fn allowed_keys(schema: &Json, keyword_location: &str) -> Vec<String> {
    let mut node = schema;
    let segments: Vec<&str> = keyword_location.split('/').skip(1).collect();
    let Some((_, parents)) = segments.split_last() else {
        return Vec::new();
    };
    for seg in parents {
        let seg = unescape(seg);
        node = if seg == "$ref" {
            let Some(target) = node.get("$ref").and_then(Json::as_str) else {
                return Vec::new();
            };
            match schema.pointer(target.trim_start_matches('#')) {
                Some(n) => n,
                None => return Vec::new(),
            }
        } else {
            match node
                .get(&seg)
                .or_else(|| seg.parse::<usize>().ok().and_then(|i| node.get(i)))
            {
                Some(n) => n,
                None => return Vec::new(),
            }
        };
    }
    node.get("properties")
        .and_then(Json::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The allowed key closest to a misspelt one, if it is close enough.
fn suggest(key: &str, allowed: &[String]) -> Option<String> {
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(key, a), a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min()
        .map(|(_, a)| a.clone())
}

/// A problem of meaning, at a JSON pointer, with other places involved.
struct Problem {
    pointer: String,
    diag: Diagnostic,
    related: Vec<(String, String)>,
}

fn problem(pointer: String, message: String) -> Problem {
    Problem {
        pointer,
        diag: Diagnostic::new("", message),
        related: Vec::new(),
    }
}

fn ptr(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The checks of one VF settings table (`vf` or `vfs.N`) that need no
/// other table: what the kernel would refuse, said before anything runs.
fn vf_settings(c: &NodeConfig, v: &super::VfSettings, at: &[&str], out: &mut Vec<Problem>) {
    let key = |k: &str| {
        let mut p = at.to_vec();
        p.push(k);
        ptr(&p)
    };
    for (name, set) in [
        ("qos", v.qos.is_some()),
        ("vlan_proto", v.vlan_proto.is_some()),
    ] {
        if set && v.vlan.is_none_or(|id| id == 0) {
            out.push(problem(
                key(name),
                format!("`{name}` is a property of the VF's VLAN tag: set `vlan` (1-4094) in the same table"),
            ));
        }
    }
    if v.max_tx_rate.is_some() && v.tier.is_some() {
        out.push(problem(
            key("max_tx_rate"),
            "give the VF either `max_tx_rate` or `tier`, not both".into(),
        ));
    }
    for (name, rate) in [
        ("max_tx_rate", v.max_tx_rate),
        ("min_tx_rate", v.min_tx_rate),
    ] {
        if let Some(r) = rate.filter(|r| r.0 % 1_000_000 != 0) {
            let mut p = problem(
                key(name),
                format!("{r} is not a whole number of Mbit/s, the unit NICs take a VF's rate in"),
            );
            p.diag = p.diag.with_help(format!(
                "write {}Mbit or {}Mbit",
                r.0 / 1_000_000,
                r.0 / 1_000_000 + 1
            ));
            out.push(p);
        }
    }
    if let (Some(min), Some(max)) = (v.min_tx_rate, v.max_tx_rate) {
        if min.0 > max.0 {
            out.push(problem(
                key("min_tx_rate"),
                format!("min_tx_rate {min} is above max_tx_rate {max}"),
            ));
        }
    }
    if let Some(tier) = v.tier.as_deref().and_then(|t| c.tiers.get(t)) {
        match tier.egress {
            None => out.push(problem(
                key("tier"),
                "the tier sets no egress rate, which is what a VF's max_tx_rate takes".into(),
            )),
            Some(r) if r.0 < 1_000_000 => out.push(problem(
                key("tier"),
                format!(
                    "the tier's egress {r} is below 1Mbit, the least a VF's max_tx_rate can be"
                ),
            )),
            Some(_) => {}
        }
    }
}

/// Pass 2: problems of meaning on a structurally valid config.
fn semantic(c: &NodeConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if c.version != VERSION {
        out.push(problem(
            ptr(&["version"]),
            format!(
                "unsupported version {}; this podnet reads version = {VERSION}",
                c.version
            ),
        ));
    }

    // Every interface podnet manages or creates has exactly one role.
    let mut names: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    let mut claim = |name: &str, pointer: String, role: &'static str, out: &mut Vec<Problem>| {
        if let Some((first, first_role)) = names.get(name) {
            let mut p = problem(
                pointer,
                format!("interface `{name}` is declared as a {role} but is already a {first_role}"),
            );
            p.related.push((
                first.clone(),
                format!("first declared here as a {first_role}"),
            ));
            p.diag = p
                .diag
                .with_help("each interface name may have one role across all node files");
            out.push(p);
        } else {
            names.insert(name.to_string(), (pointer, role));
        }
    };
    for name in c.masters.keys() {
        claim(name, ptr(&["masters", name]), "master", &mut out);
    }
    for (master, m) in &c.masters {
        if let Some(shim) = &m.shim {
            claim(
                &shim.name,
                ptr(&["masters", master, "shim", "name"]),
                "shim",
                &mut out,
            );
        }
    }
    for pf in c.sriov.keys() {
        if !c.masters.contains_key(pf) {
            claim(pf, ptr(&["sriov", pf]), "SR-IOV PF", &mut out);
        }
    }
    if let Some(dev) = c.ipip.as_ref().and_then(|i| i.device.as_deref()) {
        claim(dev, ptr(&["ipip", "device"]), "IPIP device", &mut out);
    }

    for (name, m) in &c.masters {
        if !super::schema::valid_ifname(name) {
            out.push(problem(
                ptr(&["masters", name]),
                format!("invalid interface name `{name}`: 1-15 bytes, no '/', ':' or whitespace"),
            ));
        }
        if let Some(mode) = m.mode {
            if mode.kind() != m.kind {
                let allowed = match m.kind {
                    ChildKind::Ipvlan => "l2, l3, l3s",
                    ChildKind::Macvlan => "bridge, vepa, private, passthru",
                };
                let mut p = problem(
                    ptr(&["masters", name, "mode"]),
                    format!(
                        "mode `{mode}` is a {} mode, but this master's kind is {}",
                        mode.kind(),
                        m.kind
                    ),
                );
                p.diag = p.diag.with_help(format!("{} modes: {allowed}", m.kind));
                out.push(p);
            }
        }
        let Some(shim) = &m.shim else { continue };
        if m.mode == Some(ChildMode::Passthru) {
            out.push(problem(
                ptr(&["masters", name, "shim"]),
                "a macvlan passthru master takes a single child; a shim would take the pod's place"
                    .into(),
            ));
        }
        for (i, r) in shim.routes.iter().enumerate() {
            if r.trunc() != *r {
                let mut p = problem(
                    ptr(&["masters", name, "shim", "routes", &i.to_string()]),
                    format!("route {r} has host bits set"),
                );
                p.diag = p.diag.with_help(format!("did you mean {}?", r.trunc()));
                out.push(p);
            }
        }
    }

    let mut addresses: BTreeMap<std::net::IpAddr, String> = BTreeMap::new();
    for (name, m) in &c.masters {
        for (i, a) in m.shim.iter().flat_map(|s| s.addresses.iter().enumerate()) {
            let here = ptr(&["masters", name, "shim", "addresses", &i.to_string()]);
            if let Some(first) = addresses.get(&a.addr()) {
                let mut p = problem(here, format!("address {} is assigned twice", a.addr()));
                p.related
                    .push((first.clone(), "first assigned here".into()));
                out.push(p);
            } else {
                addresses.insert(a.addr(), here);
            }
        }
    }

    let tier_ref = |tier: &str, pointer: String, out: &mut Vec<Problem>| {
        if !c.tiers.contains_key(tier) {
            let defined: Vec<&str> = c.tiers.keys().map(String::as_str).collect();
            let mut p = problem(pointer, format!("undefined tier `{tier}`"));
            p.diag = p.diag.with_help(if defined.is_empty() {
                format!("define it: [tiers.{tier}] with egress/ingress rates")
            } else {
                format!("defined tiers: {}", defined.join(", "))
            });
            out.push(p);
        }
    };
    if let Some(t) = c.shaping.as_ref().and_then(|s| s.default_tier.as_deref()) {
        tier_ref(t, ptr(&["shaping", "default_tier"]), &mut out);
    }
    for (pf, s) in &c.sriov {
        if let Some(t) = s.vf.as_ref().and_then(|v| v.tier.as_deref()) {
            tier_ref(t, ptr(&["sriov", pf, "vf", "tier"]), &mut out);
        }
        if let Some(v) = &s.vf {
            vf_settings(c, v, &["sriov", pf, "vf"], &mut out);
        }
        for (idx, v) in &s.vfs {
            vf_settings(c, v, &["sriov", pf, "vfs", idx], &mut out);
        }
        for (idx, vf) in &s.vfs {
            match idx.parse::<u32>() {
                Ok(i) if i < s.num_vfs => {}
                Ok(i) => out.push(problem(
                    ptr(&["sriov", pf, "vfs", idx]),
                    format!(
                        "VF {i} does not exist: num_vfs = {} gives VFs 0..{}",
                        s.num_vfs,
                        s.num_vfs.saturating_sub(1)
                    ),
                )),
                Err(_) => out.push(problem(
                    ptr(&["sriov", pf, "vfs", idx]),
                    format!("VF key `{idx}` must be a VF index (0, 1, ...)"),
                )),
            }
            if let Some(t) = vf.tier.as_deref() {
                tier_ref(t, ptr(&["sriov", pf, "vfs", idx, "tier"]), &mut out);
            }
        }
    }
    for (name, tier) in &c.tiers {
        if tier.egress.is_none() && tier.ingress.is_none() {
            out.push(problem(
                ptr(&["tiers", name]),
                format!("tier `{name}` sets no rate; give it egress and/or ingress"),
            ));
        }
    }
    if let Some(rdma) = &c.rdma {
        for (rxe, netdev) in &rdma.soft_roce {
            if !super::schema::valid_ifname(netdev) {
                out.push(problem(
                    ptr(&["rdma", "soft_roce", rxe]),
                    format!("invalid interface name `{netdev}`"),
                ));
            }
        }
    }
    // A marking threshold at or past the horizon never marks: the packet
    // is dropped first. Checked where both are written (a tier's own, else
    // [shaping]'s); the defaults are apart by construction.
    let node = c.shaping.as_ref();
    let mut queueing = vec![(
        ptr(&["shaping", "ce_threshold"]),
        node.and_then(|s| s.ce_threshold),
        node.and_then(|s| s.horizon),
    )];
    for (name, t) in &c.tiers {
        let at = if t.ce_threshold.is_some() {
            "ce_threshold"
        } else {
            "horizon"
        };
        queueing.push((
            ptr(&["tiers", name, at]),
            t.ce_threshold.or(node.and_then(|s| s.ce_threshold)),
            t.horizon.or(node.and_then(|s| s.horizon)),
        ));
    }
    for (pointer, ce, horizon) in queueing {
        if let (Some(ce), Some(h)) = (ce, horizon) {
            if !ce.0.is_zero() && ce.0 >= h.0 {
                let mut p = problem(
                    pointer,
                    format!(
                        "ce_threshold {:?} is not below the horizon {:?}: packets would be dropped before any is marked",
                        ce.0, h.0
                    ),
                );
                p.diag = p
                    .diag
                    .with_help("mark well before the horizon (e.g. ce_threshold = \"2ms\"), or write ce_threshold = \"off\"");
                out.push(p);
            }
        }
    }
    if let Some(ipip) = &c.ipip {
        if let (Some(_), Some(_)) = (&ipip.local_address, &ipip.local_interface) {
            out.push(problem(
                ptr(&["ipip", "local_interface"]),
                "local_address and local_interface both name this node's address: keep one"
                    .to_string(),
            ));
        }
        if let Some(local) = ipip.local_address.filter(|a| !a.is_ipv4()) {
            out.push(problem(
                ptr(&["ipip", "local_address"]),
                format!(
                    "local_address {local} is not an IPv4 address: IPIP carries IPv4 over IPv4"
                ),
            ));
        }
        for (i, peer) in ipip.peers.iter().enumerate() {
            let at = |key: &str| ptr(&["ipip", "peers", &i.to_string(), key]);
            if ipip.local_address == Some(peer.node) {
                out.push(problem(
                    at("node"),
                    format!(
                        "node {} is this node (local_address): a node is not its own peer",
                        peer.node
                    ),
                ));
            }
            // IPIP carries IPv4 in IPv4 (IPv6 pods need ip6ip6 or sit).
            if !peer.node.is_ipv4() {
                out.push(problem(
                    at("node"),
                    format!(
                        "node {} is not an IPv4 address: IPIP carries IPv4 over IPv4",
                        peer.node
                    ),
                ));
            }
            if !matches!(peer.pod_cidr, IpNet::V4(_)) {
                out.push(problem(
                    at("pod_cidr"),
                    format!(
                        "pod_cidr {} is not IPv4: IPIP carries IPv4 pods",
                        peer.pod_cidr
                    ),
                ));
            }
            // A node may be listed once per pod range it has (Calico's
            // blocks); a range is behind one node only.
            for (j, other) in ipip.peers.iter().enumerate().take(i) {
                if other.pod_cidr.contains(&peer.pod_cidr)
                    || peer.pod_cidr.contains(&other.pod_cidr)
                {
                    out.push(problem(
                        at("pod_cidr"),
                        format!(
                            "pod_cidr {} overlaps {} of ipip.peers[{j}] (node {}): a pod range is behind one node",
                            peer.pod_cidr, other.pod_cidr, other.node
                        ),
                    ));
                }
            }
            if peer.pod_cidr.trunc() != peer.pod_cidr {
                out.push(problem(
                    ptr(&["ipip", "peers", &i.to_string(), "pod_cidr"]),
                    format!(
                        "pod_cidr {} has host bits set; did you mean {}?",
                        peer.pod_cidr,
                        peer.pod_cidr.trunc()
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::load::load_files;
    use std::path::PathBuf;

    fn errors(text: &str) -> Vec<String> {
        match load_files(vec![(PathBuf::from("n.toml"), text.to_string())]) {
            Ok(_) => Vec::new(),
            Err(d) => d.items.iter().map(|i| i.to_string()).collect(),
        }
    }

    fn assert_has(errs: &[String], needle: &str) {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "no {needle:?} in {errs:#?}"
        );
    }

    #[test]
    fn ipip_peers_are_ipv4_and_their_pod_ranges_do_not_overlap() {
        let file =
            |peers: &str| errors(&format!("version = 1\n[ipip]\nmode = \"always\"\n{peers}"));
        let peer = |node: &str, cidr: &str| {
            format!("[[ipip.peers]]\nnode = \"{node}\"\npod_cidr = \"{cidr}\"\n")
        };
        assert!(file(
            &[
                peer("10.0.0.2", "192.168.1.0/26"),
                peer("10.0.0.2", "192.168.1.64/26"),
                peer("10.0.1.3", "192.168.2.0/26")
            ]
            .concat()
        )
        .is_empty());
        let errs = file(
            &[
                peer("10.0.0.2", "192.168.1.0/24"),
                peer("10.0.1.3", "192.168.1.64/26"),
            ]
            .concat(),
        );
        assert_has(&errs, "n.toml:9:1: ipip.peers[1].pod_cidr");
        assert_has(
            &errs,
            "pod_cidr 192.168.1.64/26 overlaps 192.168.1.0/24 of ipip.peers[0] (node 10.0.0.2)",
        );
        let errs = errors(&format!(
            "version = 1\n[ipip]\nmode = \"always\"\nlocal_address = \"10.0.0.1\"\nlocal_interface = \"ens192\"\n{}",
            peer("10.0.0.1", "192.168.1.0/26")
        ));
        assert_has(
            &errs,
            "ipip.local_interface: local_address and local_interface both name",
        );
        assert_has(
            &errs,
            "n.toml:7:1: ipip.peers[0].node: node 10.0.0.1 is this node (local_address)",
        );
        let errs = file(&peer("fd00::2", "fd10::/64"));
        assert_has(
            &errs,
            "ipip.peers[0].node: node fd00::2 is not an IPv4 address",
        );
        assert_has(
            &errs,
            "ipip.peers[0].pod_cidr: pod_cidr fd10::/64 is not IPv4",
        );
    }

    #[test]
    fn a_minimal_file_is_valid() {
        assert!(errors("version = 1\n").is_empty());
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_line() {
        let errs = errors(
            "version = 1\n\
             [masters.eth0]\n\
             kind = \"macvlan\"\n\
             mtuu = 9000\n\
             [masters.eth1]\n\
             kind = \"ipvlan\"\n\
             mode = \"bogus\"\n\
             [tiers.gold]\n\
             egress = \"100Mbps\"\n",
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert_has(&errs, "n.toml:4:1: masters.eth0.mtuu: unknown key `mtuu`");
        assert_has(
            &errs,
            "n.toml:7:1: masters.eth1.mode: unknown value \"bogus\"",
        );
        assert_has(
            &errs,
            "n.toml:9:1: tiers.gold.egress: invalid rate `100Mbps`",
        );
    }

    #[test]
    fn wrong_types_name_what_was_found() {
        let errs = errors("version = 1\n[masters.eth0]\nkind = \"macvlan\"\nmtu = \"big\"\n");
        assert_has(
            &errs,
            "n.toml:4:1: masters.eth0.mtu: expected integer, found \"big\"",
        );
    }

    #[test]
    fn missing_keys_point_at_their_table() {
        let errs = errors("version = 1\n[masters.eth0]\nmtu = 1500\n");
        assert_has(
            &errs,
            "n.toml:2:10: masters.eth0.kind: missing required key `kind`",
        );
        let errs = errors("[masters.eth0]\nkind = \"ipvlan\"\n");
        assert_has(&errs, "version: missing required key `version`");
    }

    #[test]
    fn an_ipvlan_mode_on_a_macvlan_master_is_refused() {
        let errs = errors("version = 1\n[masters.eth0]\nkind = \"macvlan\"\nmode = \"l3s\"\n");
        assert_has(
            &errs,
            "masters.eth0.mode: mode `l3s` is a ipvlan mode, but this master's kind is macvlan",
        );
    }

    #[test]
    fn a_marking_threshold_past_the_horizon_is_refused() {
        let errs = errors(
            "version = 1\n[tiers.gold]\negress = \"1G\"\nhorizon = \"5ms\"\nce_threshold = \"5ms\"\n\
             [tiers.silver]\negress = \"1G\"\nhorizon = \"10ms\"\n[shaping]\nce_threshold = \"20ms\"\n",
        );
        assert_has(
            &errs,
            "n.toml:5:1: tiers.gold.ce_threshold: ce_threshold 5ms is not below the horizon 5ms",
        );
        assert_has(
            &errs,
            "n.toml:8:1: tiers.silver.horizon: ce_threshold 20ms is not below the horizon 10ms",
        );
        assert!(errors("version = 1\n[tiers.gold]\negress = \"1G\"\nhorizon = \"5ms\"\nce_threshold = \"off\"\n").is_empty());
    }

    #[test]
    fn undefined_tiers_are_refused() {
        let errs = errors(
            "version = 1\n[tiers.gold]\negress = \"1G\"\n[shaping]\ndefault_tier = \"silver\"\n",
        );
        assert_has(
            &errs,
            "n.toml:5:1: shaping.default_tier: undefined tier `silver`",
        );
    }

    #[test]
    fn a_master_that_is_also_a_shim_is_refused() {
        let errs = errors(
            "version = 1\n\
             [masters.eth0]\nkind = \"macvlan\"\n\
             [masters.eth1]\nkind = \"macvlan\"\nshim = { name = \"eth0\" }\n",
        );
        assert_has(&errs, "masters.eth1.shim.name: interface `eth0` is declared as a shim but is already a master");
    }

    #[test]
    fn duplicate_names_across_files_point_at_both() {
        let d = load_files(vec![
            (
                PathBuf::from("a.toml"),
                "version = 1\n[masters.eth0]\nkind = \"macvlan\"\nshim = { name = \"pn0\" }\n"
                    .into(),
            ),
            (
                PathBuf::from("b.toml"),
                "[masters.eth1]\nkind = \"macvlan\"\nshim = { name = \"pn0\" }\n".into(),
            ),
        ])
        .unwrap_err();
        assert_eq!(d.items.len(), 1, "{}", d.render());
        let item = &d.items[0];
        assert_eq!(
            item.location.as_ref().unwrap().file,
            PathBuf::from("b.toml")
        );
        assert_eq!(item.related[0].0.file, PathBuf::from("a.toml"));
        assert!(d.render().contains("first declared here"), "{}", d.render());
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let d = load_files(vec![(
            PathBuf::from("n.toml"),
            "version = 1\n[masters.eth0]\nkind = \"macvlan\"\nshim = { nmae = \"pn0\" }\n".into(),
        )])
        .unwrap_err();
        let rendered = d.render();
        assert!(rendered.contains("did you mean `name`?"), "{rendered}");
        assert!(rendered.contains("shim = { nmae = \"pn0\" }"), "{rendered}");
    }

    #[test]
    fn bad_prefixes_names_and_vf_indexes_are_refused() {
        let errs = errors(
            "version = 1\n\
             [masters.eth0]\nkind = \"macvlan\"\n\
             shim = { name = \"bad name\", addresses = [\"10.0.0.1\"], routes = [\"10.1.0.5/24\"] }\n\
             [sriov.ens2f0]\nnum_vfs = 2\n[sriov.ens2f0.vfs.5]\nvlan = 3\n",
        );
        assert_has(&errs, "masters.eth0.shim.name: invalid interface name");
        assert_has(&errs, "masters.eth0.shim.addresses[0]: invalid IP prefix");
        // Meaning is checked once structure is sound, so fix and retry.
        let errs = errors(
            "version = 1\n\
             [masters.eth0]\nkind = \"macvlan\"\n\
             shim = { name = \"pn0\", routes = [\"10.1.0.5/24\"] }\n\
             [sriov.ens2f0]\nnum_vfs = 2\n[sriov.ens2f0.vfs.5]\nvlan = 3\n",
        );
        assert_has(
            &errs,
            "masters.eth0.shim.routes[0]: route 10.1.0.5/24 has host bits set",
        );
        assert_has(&errs, "sriov.ens2f0.vfs.5: VF 5 does not exist");
    }
}
