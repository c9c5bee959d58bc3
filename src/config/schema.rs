//! The JSON schemas of the node files, generated from the config types.
//!
//! The merged schema is podnet's own structural validation of the merged
//! files. The per-file schema derived from it ([`file_schema_json`]) is the
//! one editors check a single file with (Taplo / Even Better TOML read the
//! `#:schema` line of a node file): the same keys and types, nothing required
//! that another file may supply, and a `pattern` beside each custom format,
//! so the two can never disagree on what a key takes.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value as Json};

use super::units::Rate;
use super::NodeConfig;

/// A custom `format`: its name and its check.
pub(crate) type Format = (&'static str, fn(&str) -> bool);

/// Custom `format`s used by the schema, checked by podnet (editors ignore them).
pub(crate) const FORMATS: [Format; 8] = [
    ("rate", |s| Rate::parse(s).is_ok()),
    ("ifname", valid_ifname),
    ("ip-prefix", |s| s.parse::<ipnet::IpNet>().is_ok()),
    ("ip", |s| s.parse::<std::net::IpAddr>().is_ok()),
    ("mac", valid_mac),
    ("horizon", |s| super::units::Horizon::parse(s).is_ok()),
    ("delay", |s| super::units::Delay::parse(s).is_ok()),
    ("node-glob", super::nodes::valid_glob),
];

/// The schema as committed in `schemas/podnet.schema.json`.
pub fn schema_json() -> Json {
    // Draft 7: what Taplo and most editors implement, and its meta-schema
    // makes building the validator at startup about twice as fast as 2020-12's.
    let mut generator = SchemaSettings::draft07().into_generator();
    // `[match]` is a file's own, never part of the merged node (the loader
    // takes it out of each file first), but a file may have it.
    let node_match = generator.subschema_for::<super::Match>();
    let mut schema = generator.into_root_schema_for::<NodeConfig>();
    if let Some(Json::Object(properties)) = schema.get_mut("properties") {
        properties.insert("match".into(), node_match.to_value());
    }
    drop_null(schema.as_object_mut().expect("root schema is an object"));
    schema.insert(
        "$id".into(),
        "https://podnet.dev/schemas/podnet.schema.json".into(),
    );
    schema.insert("title".into(), "podnet node file".into());
    schema.to_value()
}

/// TOML has no null: an optional key is simply absent. Dropping the `null`
/// alternatives schemars adds for `Option` also keeps errors inside an
/// optional table precise (an `anyOf` would only say "matches no option").
fn drop_null(obj: &mut serde_json::Map<String, Json>) {
    if let Some(Json::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            obj.insert("type".into(), only);
        }
    }
    if let Some(Json::Array(options)) = obj.get_mut("anyOf") {
        options.retain(|o| o.get("type").and_then(Json::as_str) != Some("null"));
        if options.len() == 1 {
            if let Some(Json::Object(only)) = options.pop() {
                obj.remove("anyOf");
                for (k, v) in only {
                    obj.entry(k).or_insert(v);
                }
            }
        }
    }
    for v in obj.values_mut() {
        match v {
            Json::Object(o) => drop_null(o),
            Json::Array(items) => items
                .iter_mut()
                .filter_map(Json::as_object_mut)
                .for_each(drop_null),
            _ => {}
        }
    }
}

/// The schema rendered as the committed file's text.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema_json()).expect("schema serializes");
    s.push('\n');
    s
}

/// Root keys that belong to their own file and are never merged, so a file
/// that has one writes it whole.
const FILE_OWN: [&str; 1] = ["match"];

/// The schema of one node file, as committed in
/// `schemas/podnet.file.schema.json`: what an editor checks a file against
/// (its `#:schema` line). A file may be a drop-in that only overrides some
/// keys of an earlier one (netplan's rule), so this is the merged schema
/// with no key `required` that another file may supply. Only what one file
/// always writes whole keeps its required keys: the items of an array of
/// tables (`[[ipip.peers]]`: a later file replaces the array, it never
/// merges into it) and the file's own `[match]`. Editors skip formats they
/// do not know, so each custom format gets a `pattern` beside it
/// ([`pattern_of`]).
pub fn file_schema_json() -> Json {
    let mut schema = schema_json();
    let root = schema.as_object_mut().expect("root schema is an object");
    let mut defs = match root.remove("definitions") {
        Some(Json::Object(defs)) => defs,
        _ => Map::new(),
    };

    // Which definitions are reached where a later file may merge into them
    // (partial) and which only where a file writes them whole.
    let (mut partial, mut whole) = (BTreeSet::new(), BTreeSet::new());
    let mut queue = Vec::new();
    visit_file(root, &mut |obj, w| queue.extend(ref_of(obj, w)));
    while let Some((name, w)) = queue.pop() {
        let seen = if w { &mut whole } else { &mut partial };
        if seen.insert(name.clone()) {
            if let Some(def) = defs.get_mut(&name) {
                visit(def, w, &mut |obj, w| queue.extend(ref_of(obj, w)));
            }
        }
    }

    let mut relax = |obj: &mut Map<String, Json>, whole: bool| {
        if !whole {
            obj.remove("required");
        }
        let pattern = obj
            .get("format")
            .and_then(Json::as_str)
            .and_then(pattern_of);
        if let Some(pattern) = pattern {
            obj.insert("pattern".into(), pattern.into());
        }
    };
    visit_file(root, &mut relax);
    for (name, def) in defs.iter_mut() {
        let w = whole.contains(name) && !partial.contains(name);
        visit(def, w, &mut relax);
    }
    root.insert("definitions".into(), Json::Object(defs));
    root.insert(
        "$id".into(),
        "https://podnet.dev/schemas/podnet.file.schema.json".into(),
    );
    root.insert("title".into(), "podnet node file (one drop-in)".into());
    root.insert(
        "description".into(),
        "One podnet node file (/etc/podnet/*.toml). The files of the directory \
         are merged in lexical order, a later file overriding keys of an earlier \
         one, so a file may hold only some keys of a table: nothing is required \
         here that another file may supply. podnet checks the merged files \
         against podnet.schema.json."
            .into(),
    );
    schema
}

/// The file schema rendered as the committed file's text.
pub fn file_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&file_schema_json()).expect("schema serializes");
    s.push('\n');
    s
}

/// The definition a schema object refers to, with the context it is used in.
fn ref_of(obj: &Map<String, Json>, whole: bool) -> Option<(String, bool)> {
    let name = obj.get("$ref")?.as_str()?.strip_prefix("#/definitions/")?;
    Some((name.to_string(), whole))
}

/// Calls `f` on the root schema of a file (`definitions` left out) and each
/// subschema in it, telling whether the value there is written whole: the
/// root keys of [`FILE_OWN`] are.
fn visit_file(root: &mut Map<String, Json>, f: &mut dyn FnMut(&mut Map<String, Json>, bool)) {
    f(root, false);
    for (key, value) in root.iter_mut() {
        match (key.as_str(), value) {
            ("properties", Json::Object(props)) => {
                for (name, p) in props.iter_mut() {
                    visit(p, FILE_OWN.contains(&name.as_str()), f);
                }
            }
            ("definitions", _) => {}
            (key, value) => visit_keyword(key, value, false, f),
        }
    }
}

/// Calls `f` on `schema` and each subschema in it, with `whole` true where
/// a value is written whole in one file: under an array's `items` (a later
/// file replaces an array, it never merges into it).
fn visit(schema: &mut Json, whole: bool, f: &mut dyn FnMut(&mut Map<String, Json>, bool)) {
    let Json::Object(obj) = schema else { return };
    f(obj, whole);
    for (key, value) in obj.iter_mut() {
        visit_keyword(key, value, whole, f);
    }
}

fn visit_keyword(
    key: &str,
    value: &mut Json,
    whole: bool,
    f: &mut dyn FnMut(&mut Map<String, Json>, bool),
) {
    match key {
        "properties" | "patternProperties" => {
            if let Json::Object(props) = value {
                props.values_mut().for_each(|p| visit(p, whole, f));
            }
        }
        "additionalProperties" | "propertyNames" | "not" | "if" | "then" | "else" => {
            visit(value, whole, f)
        }
        "allOf" | "anyOf" | "oneOf" => {
            if let Json::Array(options) = value {
                options.iter_mut().for_each(|o| visit(o, whole, f));
            }
        }
        "items" | "additionalItems" | "contains" => match value {
            Json::Array(items) => items.iter_mut().for_each(|i| visit(i, true, f)),
            item => visit(item, true, f),
        },
        _ => {}
    }
}

/// The `pattern` the file schema puts beside a custom format, for editors:
/// it accepts what the format's check accepts (a test compares them), with
/// two documented slacks. A rate's pattern does not check magnitude: "0.4"
/// (rounds to 0 bit/s) and "20E" or "1e20" (2^64 bit/s or more) match it,
/// and podnet refuses them. An interface name's counts characters where the
/// kernel counts bytes, so a name with non-ASCII letters may match it and
/// still be over 15 bytes.
pub fn pattern_of(format: &str) -> Option<String> {
    // Trimmed like Rate/Horizon/Delay::parse do.
    let trimmed = |p: &str| format!("^\\s*{p}\\s*$");
    Some(match format {
        "rate" => {
            // Digits with `_` anywhere, one `.` between digits, not all zeros.
            let digits = "[0-9_]*[0-9][0-9_]*";
            let nonzero = "[0-9_]*[1-9][0-9_]*";
            trimmed(&format!(
                "({nonzero}(\\.{digits})?|{digits}\\.{nonzero})\
                 ([eE][0-9]+|[kMGTPE]|[KMGTPE]i|([kKmMgGtTpPeE][iI]?)?bit)?"
            ))
        }
        "horizon" => {
            trimmed("0*(([1-9][0-9]{0,3}|[1-5][0-9]{4}|60000)ms|([1-9]|[1-5][0-9]|60)s|1m)")
        }
        "delay" => trimmed("(off|0*(([1-9][0-9]{1,5}|1000000)us|([1-9][0-9]{0,2}|1000)ms|1s))"),
        "ifname" => {
            // Not `/`, `:`, NUL or ASCII whitespace (Rust's: no vertical tab),
            // and neither "." nor "..".
            let c = "[^/: \\t\\n\\x0C\\r\\x00]";
            let not_dot = "[^/: \\t\\n\\x0C\\r\\x00.]";
            format!("^({not_dot}|{not_dot}{c}|\\.{not_dot}|{c}{{3,15}})$")
        }
        "mac" => "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$".into(),
        // std's parser: no leading zeros in an octet, "::" is at least one group.
        "ip" => format!("^({}|{})$", ipv4(IPV4_OCTET), ipv6(&ipv4(IPV4_OCTET), 7)),
        // ipnet's parser: octets may have leading zeros ("010"), "::" may
        // stand for no group at all, prefix lengths may too ("/08").
        "ip-prefix" => {
            let v4 = ipv4(IPNET_OCTET);
            format!(
                "^({v4}/([0-9]|[0-2][0-9]|3[0-2])|{}/([0-9]{{1,2}}|0[0-9]{{2}}|1[01][0-9]|12[0-8]))$",
                ipv6(&v4, 8)
            )
        }
        "node-glob" => "^[A-Za-z0-9._*?-]{1,253}$".into(),
        _ => return None,
    })
}

/// An IPv4 octet as std reads it: 0-255 without leading zeros.
const IPV4_OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
/// An IPv4 octet as ipnet reads it: 0-255 in at most 3 digits.
const IPNET_OCTET: &str = "(25[0-5]|2[0-4][0-9]|[01]?[0-9]{1,2})";

fn ipv4(octet: &str) -> String {
    format!("{octet}(\\.{octet}){{3}}")
}

/// IPv6 text: 8 groups (the last two possibly an IPv4 address), or a head
/// of up to 7 groups, `::`, and a tail of at most `beside_gap` groups less
/// the head's (`::` standing for one group at least: 7, for none: 8).
fn ipv6(v4: &str, beside_gap: usize) -> String {
    let h = "[0-9a-fA-F]{1,4}";
    let mut forms = vec![format!("({h}:){{7}}{h}"), format!("({h}:){{6}}{v4}")];
    for head in 0..=7 {
        let room = beside_gap - head;
        let head = match head {
            0 => "::".to_string(),
            1 => format!("{h}::"),
            n => format!("({h}:){{{n}}}:"),
        };
        let tail = match room {
            0 => String::new(),
            1 => format!("({h})?"),
            2 => format!("({h}(:{h})?|{v4})?"),
            n => format!("({h}(:{h}){{0,{}}}|({h}:){{0,{}}}{v4})?", n - 1, n - 2),
        };
        forms.push(head + &tail);
    }
    format!("({})", forms.join("|"))
}

/// The committed schema (a test keeps it equal to the generated one), so a
/// run does not pay for generating it.
pub(crate) fn schema() -> &'static Json {
    static S: OnceLock<Json> = OnceLock::new();
    S.get_or_init(|| {
        serde_json::from_str(include_str!("../../schemas/podnet.schema.json"))
            .unwrap_or_else(|_| schema_json())
    })
}

pub(crate) fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let mut opts = jsonschema::options().should_validate_formats(true);
        for (name, check) in FORMATS {
            opts = opts.with_format(name, check);
        }
        opts.build(schema()).expect("the generated schema is valid")
    })
}

/// Linux interface names: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["eth0", "ens2f0", "pn-shim0", "a", "x23456789012345"] {
            assert!(valid_ifname(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "x234567890123456"] {
            assert!(!valid_ifname(bad), "{bad}");
        }
    }

    #[test]
    fn macs_are_six_hex_pairs() {
        assert!(valid_mac("02:00:00:00:00:1f"));
        assert!(!valid_mac("02:00:00:00:00"));
        assert!(!valid_mac("02-00-00-00-00-10"));
        assert!(!valid_mac("02:00:00:00:00:1g"));
    }

    /// Sample strings per custom format, taken by podnet's check or refused.
    const SAMPLES: [(&str, &[&str]); 8] = [
        (
            "rate",
            &[
                "100M",
                "1G",
                "500k",
                "1Gi",
                "10Mi",
                "1.5G",
                "1e9",
                "1E9",
                "2E",
                "1Ei",
                "12345",
                "100Mbit",
                "1Gbit",
                "64kbit",
                "100mbit",
                "1GIbit",
                "1gibit",
                "800bit",
                "1ebit",
                "1_000M",
                "0.5",
                "0.5k",
                "00100M",
                " 100M ",
                "1e0",
                "1.0",
                "100Mbps",
                "100MBps",
                "100m",
                "100X",
                "1.2.3G",
                ".5G",
                "5.G",
                "5.",
                "0",
                "0M",
                "0.0k",
                "-1M",
                "+1M",
                "100 M",
                "100M bit",
                "100Mbit/s",
                "",
                "M",
                "bit",
                "_",
                "1e",
                "1e5bit",
                "1e-3",
                "1kb",
                "1KBIT",
                "1Kbit",
                "1K",
                "1mi",
                "1ki",
                "1Ki",
                "1kibit",
                "1iB",
                "1 e9",
            ],
        ),
        (
            "horizon",
            &[
                "2s", "500ms", "1m", "1ms", "60000ms", "60s", "002s", " 2s ", "59999ms", "0s",
                "0ms", "60001ms", "61s", "2m", "0m", "2", "2h", "1.5s", "s", "500us", "-1s", "+2s",
                "2 s", "", "9999ms", "10000ms",
            ],
        ),
        (
            "delay",
            &[
                "off",
                " off ",
                "500us",
                "10us",
                "9us",
                "1000000us",
                "1000001us",
                "999999us",
                "2ms",
                "1000ms",
                "1001ms",
                "1s",
                "2s",
                "0s",
                "1m",
                "0m",
                "1",
                "5us",
                "1.5ms",
                "us",
                "",
                "offf",
                "OFF",
                "0010us",
                "000ms",
            ],
        ),
        (
            "ifname",
            &[
                "eth0",
                "ens2f0",
                "pn-shim0",
                "a",
                ".a",
                "a.",
                "...",
                ".x.",
                "x23456789012345",
                "",
                ".",
                "..",
                "a/b",
                "a:1",
                "a b",
                "a\tb",
                "a\u{b}b",
                "a\u{c}b",
                "a\0",
                "x234567890123456",
                "tunl0",
                "é",
                "Ω123",
            ],
        ),
        (
            "mac",
            &[
                "02:00:00:00:00:1f",
                "AA:bb:CC:dd:EE:ff",
                "02:00:00:00:00",
                "02-00-00-00-00-10",
                "02:00:00:00:00:1g",
                "02:00:00:00:00:1",
                "02:00:00:00:00:100",
                "",
                "02:00:00:00:00:10:",
                ":02:00:00:00:00:10",
            ],
        ),
        (
            "ip",
            &[
                "10.0.19.91",
                "0.0.0.0",
                "255.255.255.255",
                "256.0.0.1",
                "010.0.0.1",
                "1.2.3",
                "1.2.3.4.5",
                "1.2.3.4/32",
                "::",
                "::1",
                "fd00::",
                "fe80::1:2",
                "1:2:3:4:5:6:7:8",
                "1:2:3:4:5:6:7::",
                "::2:3:4:5:6:7:8",
                "1:2:3:4::5:6:7:8",
                "1:2:3:4:5:6:7:8::",
                "::1:2:3:4:5:6:7:8",
                "::ffff:1.2.3.4",
                "1:2:3:4:5:6:1.2.3.4",
                "1::1.2.3.4",
                "1:2:3:4:5::1.2.3.4",
                "1:2:3:4:5:6::1.2.3.4",
                "1.2.3.4::",
                "1:2:1.2.3.4",
                "12345::",
                "ABCD:ef01::",
                ":::",
                "1:::2",
                "1::2::3",
                ":1::",
                "fe80::1%eth0",
                " 1.2.3.4",
                "1.2.3.04",
                "::ffff:01.2.3.4",
            ],
        ),
        (
            "ip-prefix",
            &[
                "10.0.0.1/24",
                "172.51.0.0/24",
                "0.0.0.0/0",
                "1.2.3.4/32",
                "1.2.3.4/33",
                "1.2.3.4/08",
                "1.2.3.4/008",
                "010.0.0.1/8",
                "1.2.3.4",
                "1.2.3.4/",
                "fd00::/64",
                "::/0",
                "::1/128",
                "::1/129",
                "::1/0128",
                "::1/064",
                "1:2:3:4::5:6:7:8/64",
                "::1:2:3:4:5:6:7:8/64",
                "1:2:3:4:5:6:7::8/64",
                "1:2:3:4:5:6:7:8::/64",
                "::ffff:1.2.3.4/96",
                "::ffff:001.2.3.4/96",
                "1:2:3:4:5:6:1.2.3.4/64",
                "1:2:3:4:5:6::1.2.3.4/64",
                "fd00::/64/1",
                "fd00:/64",
                "256.0.0.0/8",
                "1.2.3.4/-1",
            ],
        ),
        (
            "node-glob",
            &[
                "gpu-*",
                "worker-7",
                "worker-?",
                "*",
                "a.b_c",
                "",
                "gpu-[0-3]",
                "gpu 1",
                "ÿ",
            ],
        ),
    ];

    /// Strings podnet refuses that the pattern of their format lets through,
    /// as [`pattern_of`] documents.
    fn slack(format: &str, s: &str) -> bool {
        match format {
            "rate" => Rate::parse(s).is_err_and(|e| {
                ["too large", "at least 1 bit/s"]
                    .iter()
                    .any(|r| e.reason.contains(r))
            }),
            "ifname" => !s.is_ascii(),
            _ => false,
        }
    }

    fn pattern_validator(format: &str) -> jsonschema::Validator {
        let pattern = pattern_of(format).unwrap_or_else(|| panic!("{format} has no pattern"));
        jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": pattern}))
            .unwrap_or_else(|e| panic!("{format}'s pattern does not compile: {e}"))
    }

    fn check_of(format: &str) -> fn(&str) -> bool {
        FORMATS.iter().find(|(n, _)| *n == format).unwrap().1
    }

    /// The disagreements between a format's pattern and its check on
    /// `samples`, documented slack aside.
    fn disagreements(format: &str, samples: impl IntoIterator<Item = String>) -> Vec<String> {
        let (pattern, check) = (pattern_validator(format), check_of(format));
        samples
            .into_iter()
            .filter(|s| {
                let (by_pattern, by_check) = (pattern.is_valid(&Json::from(s.as_str())), check(s));
                by_pattern != by_check && !(by_pattern && slack(format, s))
            })
            .take(20)
            .map(|s| {
                let verdict = if check(&s) { "takes" } else { "refuses" };
                format!("{s:?} (podnet {verdict} it)")
            })
            .collect()
    }

    #[test]
    fn every_custom_format_has_a_pattern_and_samples() {
        for (name, _) in FORMATS {
            assert!(pattern_of(name).is_some(), "format {name} has no pattern");
            let samples = SAMPLES.iter().find(|(n, _)| *n == name);
            let (_, samples) = samples.unwrap_or_else(|| panic!("format {name} has no samples"));
            let check = check_of(name);
            // Both verdicts are sampled, so agreement says something.
            assert!(
                samples.iter().any(|s| check(s)),
                "{name}: no sample podnet takes"
            );
            assert!(
                samples.iter().any(|s| !check(s)),
                "{name}: no sample podnet refuses"
            );
        }
    }

    #[test]
    fn each_pattern_agrees_with_its_format_check_on_the_samples() {
        for (format, samples) in SAMPLES {
            let wrong = disagreements(format, samples.iter().map(|s| s.to_string()));
            assert!(
                wrong.is_empty(),
                "{format}: the pattern and the check differ on {wrong:?}"
            );
        }
    }

    #[test]
    fn the_documented_slack_is_all_there_is() {
        let pattern = pattern_validator("rate");
        for s in [
            "0.4",
            "0.4bit",
            "20E",
            "1e20",
            "99999999999E",
            "1e99999999999",
        ] {
            assert!(
                pattern.is_valid(&Json::from(s)) && !check_of("rate")(s),
                "{s}"
            );
            assert!(slack("rate", s), "{s}");
        }
        let long = "é".repeat(15);
        assert!(pattern_validator("ifname").is_valid(&Json::from(long.as_str())));
        assert!(!valid_ifname(&long));
    }

    /// How many near misses per format (`NEAR_MISSES` to look harder).
    fn near_misses() -> usize {
        std::env::var("NEAR_MISSES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4000)
    }

    /// Near misses: each sample podnet takes, edited at one to three places
    /// with characters of its format, pseudo-randomly but the same each run.
    #[test]
    fn each_pattern_agrees_with_its_check_on_near_misses() {
        let alphabets = [
            ("rate", "0123456789._eEkKmMgGtTpPiIbst -"),
            ("horizon", "0123456789musx. "),
            ("delay", "0123456789musfo. "),
            ("ifname", "ab0.-/: \t\u{b}\u{c}"),
            ("mac", "0123456789abcdefgABCDEF:-"),
            ("ip", "0123456789abcdefABCDEF:."),
            ("ip-prefix", "0123456789abcdefABCDEF:./"),
            ("node-glob", "aZ09-._*?[ "),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for (format, alphabet) in alphabets {
            let alphabet: Vec<char> = alphabet.chars().collect();
            let (_, samples) = SAMPLES.iter().find(|(n, _)| *n == format).unwrap();
            let taken: Vec<&str> = samples
                .iter()
                .copied()
                .filter(|s| check_of(format)(s))
                .collect();
            let mut edited = Vec::new();
            for _ in 0..near_misses() {
                let mut s: Vec<char> = taken[next(taken.len())].chars().collect();
                for _ in 0..1 + next(3) {
                    let at = next(s.len() + 1);
                    let c = alphabet[next(alphabet.len())];
                    match next(3) {
                        0 => s.insert(at, c),
                        1 if at < s.len() => s[at] = c,
                        _ if at < s.len() => {
                            s.remove(at);
                        }
                        _ => s.push(c),
                    }
                }
                edited.push(s.into_iter().collect::<String>());
            }
            // Enough of both verdicts that agreeing says something.
            let taken = edited.iter().filter(|s| check_of(format)(s)).count();
            assert!(
                taken * 20 > edited.len(),
                "{format}: {taken} near misses taken"
            );
            assert!(
                taken * 20 < edited.len() * 19,
                "{format}: {taken} near misses taken"
            );
            let wrong = disagreements(format, edited);
            assert!(
                wrong.is_empty(),
                "{format}: the pattern and the check differ on {wrong:?}"
            );
        }
    }

    #[test]
    fn a_file_schema_requires_only_what_one_file_writes_whole() {
        let schema = file_schema_json();
        let mut required = Vec::new();
        let mut collect = |obj: &mut Map<String, Json>, _: bool| {
            if let Some(r) = obj.get("required") {
                required.push(r.clone());
            }
        };
        let mut root = schema.clone();
        let root = root.as_object_mut().unwrap();
        let mut defs = root.remove("definitions").unwrap();
        visit_file(root, &mut collect);
        for def in defs.as_object_mut().unwrap().values_mut() {
            visit(def, false, &mut collect);
        }
        // A [[ipip.peers]] entry is replaced whole, never merged, so it needs
        // both keys; [match] is its file's own.
        let mut wanted = vec![serde_json::json!(["node", "pod_cidr"])];
        if schema["properties"].get("match").is_some() {
            wanted.push(serde_json::json!(["nodes"]));
        }
        required.sort_by_key(|r| r.to_string());
        wanted.sort_by_key(|r| r.to_string());
        assert_eq!(required, wanted);
        assert_eq!(
            schema["definitions"]["Rate"]["pattern"],
            Json::from(pattern_of("rate").unwrap())
        );
        // The merged schema still requires what the merge must supply.
        let merged = schema_json();
        assert_eq!(merged["required"], serde_json::json!(["version"]));
        assert_eq!(
            merged["definitions"]["Master"]["required"],
            serde_json::json!(["kind"])
        );
        assert!(merged["definitions"]["Rate"].get("pattern").is_none());
    }
}
