//! podnet.toml(5), the node files' page. Its key reference is the JSON
//! schema walked table by table (the descriptions are the config types' doc
//! comments); its unit examples are parsed by podnet's own parsers, its
//! error example is podnet's own output, its examples are the files of
//! `examples/`. The prose around them is written here.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::roff::{self, b, i};

/// The page: (file name, text).
pub fn page() -> (String, Vec<u8>) {
    let schema = podnet::config::schema::schema_json();
    let tables = tables(&schema);
    let mut p = String::new();
    p.push_str(&roff::th("podnet.toml", "5", "podnet Manual"));
    p.push_str(&roff::sh("NAME"));
    p.push_str("podnet.toml \\- node files of podnet, the declarative network configurator of Kubernetes nodes\n");
    p.push_str(&roff::sh("SYNOPSIS"));
    p.push_str("\\fI/etc/podnet/*.toml\\fR\n");
    p.push_str(DESCRIPTION);
    p.push_str(MERGING);
    p.push_str(&units());
    p.push_str(&roff::sh("KEYS"));
    p.push_str(KEYS_INTRO);
    for t in &tables {
        render_table(&mut p, t);
    }
    p.push_str(&errors());
    p.push_str(&examples());
    p.push_str(FILES);
    p.push_str(&not_applied());
    p.push_str(SEE_ALSO);
    ("podnet.toml.5".into(), p.into_bytes())
}

const DESCRIPTION: &str = r#".SH DESCRIPTION
An operator describes a Kubernetes node's underlay network in TOML files: the
masters that pods' ipvlan and macvlan interfaces hang off, the host's shims
on them, SR\-IOV virtual functions, RDMA devices, IPIP, and the bandwidth
tiers and shaping policy of the pods.
\fBpodnetctl\fR(8) checks, plans and applies them;
\fBpodnetd\fR(8) keeps the node converged to them and applies an edit at once.
.PP
The files describe desired state. A key that is left out is not managed:
podnet leaves that setting of the host as it is, unless the key's default
below says otherwise. podnet only changes or removes what the
files declare or what it created and marked as its own; everything else on
the host is left alone.
.PP
Unknown keys, values of the wrong type, bad units, undefined tiers and
interface names used twice are errors. Every error is reported at once, with
the file, line and column of the key and the key's path (see
\fBDIAGNOSTICS\fR); \fBpodnetctl validate\fR checks the files without touching
the host. Invalid files are never applied: \fBpodnetd\fR keeps the
last valid ones in force.
.PP
The key reference is also a JSON schema,
\fI/usr/share/podnet/podnet.schema.json\fR. Editors that read Taplo's
schema comment (Even Better TOML and others) complete and check the keys
of a file that starts with
.sp
.RS 4
.EX
#:schema /usr/share/podnet/podnet.schema.json
.EE
.RE
"#;

const MERGING: &str = r#".SH "FILES AND MERGING"
Every file of the configuration directory (\fI/etc/podnet\fR, or the
directory given with \fB\-c\fR/\fB\-\-config\-dir\fR or
\fBPODNET_CONFIG_DIR\fR) whose name ends in \fI.toml\fR is read, in lexical
(byte) order of the names; subdirectories are not read. Names that start with
a dot are skipped (editors' backups, a ConfigMap mount's \fI..data\fR), and
symbolic links are followed, so a Kubernetes ConfigMap mounted on the
directory works. A directory without such a file is an error.
.PP
Each file must be valid TOML (in UTF\-8) on its own. The files are then merged
into one description, key by key, a later file winning (netplan's rule):
.IP \(bu 2
Tables merge recursively: a later file's
\fB[masters.ens192]\fR adds or overrides keys of an earlier file's
\fB[masters.ens192]\fR, and leaves its other keys in place. An inline table
(\fBshim = { ... }\fR) is a table like any other.
.IP \(bu 2
Any other value (a string, a number, a boolean, an array, an array of tables
such as \fB[[ipip.peers]]\fR) is replaced whole by a later file's: arrays are
not appended.
.IP \(bu 2
A later file cannot remove a key; remove it from the file that sets it.
.PP
Only the merged description is validated: \fBversion\fR may come from any
file, and a file may hold a single key of a table declared in another. An
error points at the file and line where the key was last set, and for a name
declared twice, at both places.
.PP
\fBpodnetctl apply \-\-dry\-run\fR shows the plan of the merged files.
"#;

const KEYS_INTRO: &str = r#"One subsection per table. A name in angle brackets stands for a key the
operator chooses (an interface name, a tier name, a VF index). Each key has
its type, its default (what podnet does when the key is left out), and what
it means. Units are explained under \fBUNITS\fR.
"#;

const FILES: &str = r#".SH FILES
.TP
\fI/etc/podnet/*.toml\fR
The node files.
.TP
\fI/usr/share/podnet/podnet.schema.json\fR
The JSON schema of the node files, for editors.
.TP
\fI/usr/share/doc/podnet/examples/\fR
The examples above, one directory each.
"#;

const SEE_ALSO: &str = r#".SH "SEE ALSO"
\fBpodnetctl\fR(8), \fBpodnetctl\-validate\fR(8), \fBpodnetctl\-apply\fR(8),
\fBpodnetctl\-show\fR(8), \fBpodnetd\fR(8), \fBpodnet\-cni\fR(8)
"#;

/// A table of the node files: a subsection of KEYS.
#[derive(Debug)]
pub struct Table {
    /// How the table is written (`[masters.<name>]`, `[[ipip.peers]]`);
    /// several for a table type used in several places. Empty: the top level.
    pub headings: Vec<String>,
    /// The schema definition it is an instance of (None: the root).
    definition: Option<String>,
    description: String,
    pub keys: Vec<Key>,
}

#[derive(Debug)]
pub struct Key {
    pub name: String,
    /// roff.
    ty: String,
    /// roff: `required` or `default: ...`.
    default: String,
    description: String,
}

/// Every table of the schema, depth first from the root, keys required
/// first, then alphabetical (the schema's order).
pub fn tables(schema: &Json) -> Vec<Table> {
    let mut out = Vec::new();
    walk(schema, schema, None, None, &mut out);
    out
}

/// The definition a property refers to, directly or through `allOf`.
fn reference<'a>(schema: &'a Json, prop: &'a Json) -> Option<(&'a str, &'a Json)> {
    let r = prop.get("$ref").or_else(|| {
        prop.get("allOf")
            .and_then(Json::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].get("$ref"))
    })?;
    let name = r.as_str()?.strip_prefix("#/definitions/")?;
    let def = schema
        .pointer(&format!("/definitions/{name}"))
        .unwrap_or_else(|| panic!("schema: dangling $ref {name}"));
    Some((name, def))
}

fn is_table(def: &Json) -> bool {
    def.get("properties").is_some()
}

/// `base` joined with `key` as TOML writes a key path.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// The placeholder for the keys of a map of tables.
fn placeholder(description: &str) -> &'static str {
    if description.contains("index") {
        "<index>"
    } else {
        "<name>"
    }
}

fn walk(
    schema: &Json,
    obj: &Json,
    at: Option<(String, bool)>,
    definition: Option<&str>,
    out: &mut Vec<Table>,
) {
    let heading = at.as_ref().map(|(path, array)| {
        if *array {
            format!("[[{path}]]")
        } else {
            format!("[{path}]")
        }
    });
    if let Some(d) = definition {
        if let Some(t) = out.iter_mut().find(|t| t.definition.as_deref() == Some(d)) {
            t.headings.extend(heading);
            return;
        }
    }
    let path = at.as_ref().map_or(String::new(), |(p, _)| p.clone());
    let props = obj["properties"]
        .as_object()
        .expect("a table has properties");
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort_by_key(|n| (!required.contains(&n.as_str()), n.as_str()));
    let index = out.len();
    out.push(Table {
        headings: heading.into_iter().collect(),
        definition: definition.map(str::to_string),
        description: text(obj),
        keys: Vec::new(),
    });
    let mut children = Vec::new();
    let mut keys = Vec::new();
    for name in names {
        let prop = &props[name];
        let description = text(prop);
        let is_required = required.contains(&name.as_str());
        let (ty, child, empty) = match classify(schema, prop) {
            Shape::Table(def_name, def) => {
                let child_path = join(&path, name);
                let ty = format!("table: see {}", b(&format!("[{child_path}]")));
                children.push((def, (child_path, false), def_name));
                (ty, true, "absent")
            }
            Shape::Map(def_name, def) => {
                let child_path = format!("{}.{}", join(&path, name), placeholder(&description));
                let ty = format!("tables by name: see {}", b(&format!("[{child_path}]")));
                children.push((def, (child_path, false), def_name));
                (ty, true, "empty")
            }
            Shape::Array(def_name, def) => {
                let child_path = join(&path, name);
                let ty = format!("array of tables: see {}", b(&format!("[[{child_path}]]")));
                children.push((def, (child_path, true), def_name));
                (ty, true, "empty")
            }
            Shape::Leaf(ty, container) => (ty, container, if container { "empty" } else { "" }),
        };
        let (description, default) = split_default(&description);
        let default = match (is_required, default) {
            (true, _) => "required".to_string(),
            (false, Some(d)) => format!("default: {}", roff::inline(&d)),
            (false, None) if child => format!("default: {empty}"),
            (false, None) => "default: not managed".to_string(),
        };
        keys.push(Key {
            name: name.clone(),
            ty,
            default,
            description,
        });
    }
    out[index].keys = keys;
    for (def, at, def_name) in children {
        walk(schema, def, Some(at), Some(def_name), out);
    }
}

enum Shape<'a> {
    /// A sub-table: the definition.
    Table(&'a str, &'a Json),
    /// Tables by name (`additionalProperties` of a table definition).
    Map(&'a str, &'a Json),
    /// An array of tables.
    Array(&'a str, &'a Json),
    /// A value: its type in roff, and whether it is an array or map
    /// (empty when left out).
    Leaf(String, bool),
}

fn classify<'a>(schema: &'a Json, prop: &'a Json) -> Shape<'a> {
    if let Some((name, def)) = reference(schema, prop) {
        if is_table(def) {
            return Shape::Table(name, def);
        }
    }
    if let Some((name, def)) = prop
        .get("additionalProperties")
        .and_then(|a| reference(schema, a))
    {
        if is_table(def) {
            return Shape::Map(name, def);
        }
    }
    if let Some((name, def)) = prop.get("items").and_then(|a| reference(schema, a)) {
        if is_table(def) {
            return Shape::Array(name, def);
        }
    }
    let ty = value_type(schema, prop);
    let container = matches!(
        prop.get("type").and_then(Json::as_str),
        Some("array" | "object")
    );
    Shape::Leaf(ty, container)
}

/// Words for the named value types of the schema (definitions) and the
/// `format`s of inline ones. A new one must be named here: the page would
/// otherwise show a bare "string".
const TYPE_WORDS: [(&str, &str); 9] = [
    ("Rate", "rate"),
    ("Bits", "bits"),
    ("Horizon", "horizon"),
    ("Delay", "delay"),
    ("PrefixSchema", "IP prefix"),
    ("IpSchema", "IP address"),
    ("ifname", "interface name"),
    ("mac", "MAC address"),
    ("NodeGlobSchema", "node name or glob"),
];

/// Formats schemars adds for integer widths: the range says it better.
const IGNORED_FORMATS: [&str; 4] = ["uint16", "uint32", "uint64", "uint8"];

fn word(name: &str) -> &'static str {
    TYPE_WORDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, w)| *w)
        .unwrap_or_else(|| {
            panic!("podnet.toml(5): no word for the schema type or format `{name}`: add it to TYPE_WORDS in tests/manpage/node_files.rs")
        })
}

/// The type of a value as the page shows it (roff).
fn value_type(schema: &Json, prop: &Json) -> String {
    if let Some((name, def)) = reference(schema, prop) {
        if let Some(values) = def.get("enum").and_then(Json::as_array) {
            let values: Vec<String> = values
                .iter()
                .map(|v| b(&format!("\"{}\"", v.as_str().unwrap_or_default())))
                .collect();
            return format!("one of {}", values.join(", "));
        }
        let w = word(name);
        return match name {
            "Rate" | "Bits" | "Horizon" | "Delay" => format!("{} (see {})", i(w), b("UNITS")),
            _ => format!("string ({w})"),
        };
    }
    let base = match prop.get("type") {
        Some(Json::String(t)) if t == "array" => {
            let items = prop.get("items").unwrap_or(&Json::Null);
            return format!("array of {}", value_type(schema, items));
        }
        Some(Json::String(t)) if t == "object" => {
            let values = prop.get("additionalProperties").unwrap_or(&Json::Null);
            return format!("table of {} values", value_type(schema, values));
        }
        Some(Json::String(t)) => t.clone(),
        other => panic!("podnet.toml(5): a value of type {other:?}: teach value_type"),
    };
    let mut qualifiers = Vec::new();
    if let Some(f) = prop.get("format").and_then(Json::as_str) {
        if !IGNORED_FORMATS.contains(&f) {
            qualifiers.push(word(f).to_string());
        }
    }
    let num = |k: &str| prop.get(k).and_then(Json::as_u64);
    match (num("minimum"), num("maximum")) {
        (Some(lo), Some(hi)) => qualifiers.push(format!("{lo} to {hi}")),
        (Some(lo), None) if lo > 0 => qualifiers.push(format!("at least {lo}")),
        _ => {}
    }
    match (num("minLength"), num("maxLength")) {
        (Some(lo), Some(hi)) => qualifiers.push(format!("{lo} to {hi} bytes")),
        (None, Some(hi)) => qualifiers.push(format!("at most {hi} bytes")),
        _ => {}
    }
    if qualifiers.is_empty() {
        base
    } else {
        format!("{base} ({})", qualifiers.join(", "))
    }
}

fn text(v: &Json) -> String {
    v.get("description")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A description's `Unset: ...` sentence (the doc comments' way of saying
/// the default) taken out: (the rest, the default).
fn split_default(description: &str) -> (String, Option<String>) {
    let Some(at) = description.find("Unset:") else {
        return (description.to_string(), None);
    };
    let after = &description[at + "Unset:".len()..];
    let end = after
        .char_indices()
        .find(|&(n, c)| c == '.' && after[n + 1..].starts_with(char::is_whitespace))
        .map_or(after.len(), |(n, _)| n + 1);
    let default = after[..end].trim().trim_end_matches('.').to_string();
    let rest = format!("{}{}", &description[..at], &after[end..]);
    (rest.trim().to_string(), Some(default))
}

fn render_table(p: &mut String, t: &Table) {
    let title = if t.headings.is_empty() {
        "Top level".to_string()
    } else {
        t.headings.join(", ")
    };
    p.push_str(&roff::ss(&title));
    p.push_str(&roff::paragraphs(&t.description));
    for k in &t.keys {
        writeln!(p, ".TP\n{}", b(&k.name)).unwrap();
        writeln!(p, "{}; {}.", k.ty, k.default).unwrap();
        if !k.description.is_empty() {
            p.push_str(".br\n");
            p.push_str(&roff::paragraphs(&k.description).replace(".PP\n", ".IP\n"));
        }
    }
}

/// UNITS: the rules of src/config/units.rs, with examples podnet's own
/// parsers read (an example that stops parsing fails the page's test).
fn units() -> String {
    use podnet::config::{Delay, Horizon, Rate};
    let mut p = String::from(
        r#".SH UNITS
.SS Rates
A rate is in bits per second, written either as a Kubernetes quantity, the
way kubelet passes a pod's \fBkubernetes.io/egress\-bandwidth\fR and
\fBingress\-bandwidth\fR annotations, or tc\-style:
.IP \(bu 2
A quantity is a number (with an optional fraction, \fB_\fR between digits,
or a decimal exponent \fBe\fR\fIN\fR) and an optional suffix: \fBk\fR,
\fBM\fR, \fBG\fR, \fBT\fR, \fBP\fR, \fBE\fR (powers of 1000) or \fBKi\fR,
\fBMi\fR, \fBGi\fR, \fBTi\fR, \fBPi\fR, \fBEi\fR (powers of 1024). The
suffixes are case\-sensitive.
.IP \(bu 2
tc\-style is the same number and suffix followed by \fBbit\fR; there the
suffix's case does not matter.
.IP \(bu 2
A plain TOML integer is a number of bits per second.
.PP
A rate is rounded to whole bits per second and must be at least 1. The
usual mistakes are refused with a hint: \fBbps\fR is bytes per second to
tc, and \fBm\fR is milli in a Kubernetes quantity.
.PP
"#,
    );
    let rate = |s: &str| match Rate::parse(s) {
        Ok(r) => format!("{} bit/s", r.bits_per_second()),
        Err(e) => format!("refused: {}", e.reason),
    };
    values(
        &mut p,
        &[
            ("100M", rate("100M")),
            ("1.5G", rate("1.5G")),
            ("1Gi", rate("1Gi")),
            ("1e9", rate("1e9")),
            ("100Mbit", rate("100Mbit")),
            ("64kbit", rate("64kbit")),
            ("100Mbps", rate("100Mbps")),
            ("100m", rate("100m")),
        ],
    );
    p.push_str(
        r#".SS Bits
A burst is a number of bits, written like a rate (\fB"1Mbit"\fR,
\fB"512k"\fR, or an integer).
.SS Durations
A \fIhorizon\fR is a whole number with the unit \fBms\fR, \fBs\fR or \fBm\fR
(minutes); a \fIdelay\fR a whole number with the unit \fBus\fR, \fBms\fR or
\fBs\fR, or \fB"off"\fR.
.PP
"#,
    );
    let horizon = |s: &str| match Horizon::parse(s) {
        Ok(h) => format!("horizon of {} ms", h.0.as_millis()),
        Err(e) => format!("refused: {e}"),
    };
    let delay = |s: &str| match Delay::parse(s) {
        Ok(d) if d.0.is_zero() => "delay: never".to_string(),
        Ok(d) => format!("delay of {} us", d.0.as_micros()),
        Err(e) => format!("refused: {e}"),
    };
    values(
        &mut p,
        &[
            ("2s", horizon("2s")),
            ("500ms", horizon("500ms")),
            ("1m", horizon("1m")),
            ("0s", horizon("0s")),
            ("90s", horizon("90s")),
            ("500us", delay("500us")),
            ("1ms", delay("1ms")),
            ("off", delay("off")),
            ("5us", delay("5us")),
            ("2s", delay("2s")),
        ],
    );
    p
}

/// Values and what podnet reads in them, as a list.
fn values(p: &mut String, rows: &[(&str, String)]) {
    p.push_str(".RS 4\n");
    for (input, meaning) in rows {
        writeln!(
            p,
            ".TP 12\n{}\n{}",
            b(&format!("\"{input}\"")),
            roff::inline(meaning)
        )
        .unwrap();
    }
    p.push_str(".RE\n");
}

/// DIAGNOSTICS: what podnet prints for a file with mistakes, produced by
/// podnet's loader.
fn errors() -> String {
    let bad =
        "version = 1\n\n[tiers.gold]\negress = \"1Gbps\"\n\n[shaping]\ndefualt_tier = \"gold\"\n";
    let d = podnet::config::load_files(vec![("/etc/podnet/10-node.toml".into(), bad.into())])
        .expect_err("the example of DIAGNOSTICS must be invalid");
    let mut p = String::from(
        r#".SH DIAGNOSTICS
Errors are reported like a compiler's, every one at once. For this file,
"#,
    );
    p.push_str(&roff::example(bad));
    p.push_str(".PP\n\\fBpodnetctl validate\\fR prints:\n");
    p.push_str(&roff::example(&d.render()));
    p.push_str(
        ".PP\n\\fBpodnetctl\\fR exits with status 2 on invalid node files, and changes nothing.\n",
    );
    p
}

/// EXAMPLES: every directory of examples/, its first comment paragraph as
/// the introduction and its files without their comment lines.
fn examples() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut p = String::from(
        r#".SH EXAMPLES
The examples of \fI/usr/share/doc/podnet/examples/\fR, without their comments
(the installed files explain every choice). Each is a configuration
directory: \fBpodnetctl \-c\fR \fIdirectory\fR \fBapply \-\-dry\-run\fR
shows its plan.
"#,
    );
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        p.push_str(&roff::ss(&format!("examples/{name}")));
        let first = std::fs::read_to_string(&files[0]).unwrap();
        p.push_str(&roff::paragraphs(&introduction(&first)));
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let file = f.file_name().unwrap().to_string_lossy();
            writeln!(p, ".PP\n{}:", roff::i(&file)).unwrap();
            p.push_str(&roff::example(&uncommented(&text)));
        }
    }
    p
}

/// The first paragraph of a node file's leading comment, past the
/// `#:schema` line and the note about it (in parentheses).
fn introduction(text: &str) -> String {
    let comment: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("#:"))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    comment
        .split(|l| l.is_empty())
        .find(|para| !para.is_empty() && !para[0].starts_with('('))
        .map(|para| para.join("\n"))
        .unwrap_or_default()
}

/// A node file without its comment lines and with single blank lines.
fn uncommented(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if l.trim().is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
            continue;
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// BUGS: the keys and tables this podnet validates but does not apply
/// yet, as the plan reports them.
fn not_applied() -> String {
    use podnet::config::{Ipip, IpipMode, NodeConfig, Rdma, RdmaNetnsMode, SriovPf};
    let mut config = NodeConfig {
        version: 1,
        rdma: Some(Rdma {
            netns_mode: Some(RdmaNetnsMode::Exclusive),
            devices: vec!["<hca>".into()],
            ..Default::default()
        }),
        ipip: Some(Ipip {
            mode: IpipMode::Never,
            device: None,
            mtu: None,
            local_address: None,
            local_interface: None,
            peers: Vec::new(),
        }),
        ..NodeConfig::default()
    };
    config.sriov.insert(
        "<name>".into(),
        SriovPf {
            num_vfs: 0,
            vf: None,
            vfs: Default::default(),
            vfio_noiommu: None,
        },
    );
    let plan = podnet::plan::plan(
        &config,
        &podnet::state::Observed::default(),
        &podnet::plan::Inputs::default(),
    );
    let keys: Vec<String> = plan
        .unsupported
        .iter()
        .map(|u| match u.key.split_once('.') {
            Some((table, key)) => format!("{} in {}", b(key), b(&format!("[{table}]"))),
            None => b(&format!("[{}]", u.key)),
        })
        .collect();
    if keys.is_empty() {
        return String::new();
    }
    let list = match keys.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => unreachable!("keys is not empty"),
    };
    format!(
        ".SH BUGS\nThis version validates {list} but does not apply {} yet: the plan lists {} as not supported.\n",
        if keys.len() == 1 { "it" } else { "them" },
        if keys.len() == 1 { "it" } else { "them" },
    )
}

/// Every key path of the schema, as `(table heading, key)`, found by
/// walking properties and definitions apart from the page's own walk.
pub fn schema_keys(schema: &Json) -> Vec<(String, String)> {
    fn resolve<'a>(schema: &'a Json, v: &'a Json) -> &'a Json {
        let r = v
            .get("$ref")
            .or_else(|| v.pointer("/allOf/0/$ref"))
            .and_then(Json::as_str);
        match r {
            Some(r) => schema.pointer(&r[1..]).expect("$ref resolves"),
            None => v,
        }
    }
    fn go(
        schema: &Json,
        table: &Map<String, Json>,
        heading: &str,
        path: &str,
        out: &mut Vec<(String, String)>,
    ) {
        for (k, v) in table["properties"].as_object().unwrap() {
            out.push((heading.to_string(), k.clone()));
            let full = join(path, k);
            let v = resolve(schema, v);
            let (heading, path, sub) = if v.get("properties").is_some() {
                (format!("[{full}]"), full.clone(), v)
            } else if let Some(t) = v
                .get("additionalProperties")
                .map(|a| resolve(schema, a))
                .filter(|t| t.get("properties").is_some())
            {
                let p = format!("{full}.<>");
                (format!("[{p}]"), p, t)
            } else if let Some(t) = v
                .get("items")
                .map(|a| resolve(schema, a))
                .filter(|t| t.get("properties").is_some())
            {
                (format!("[[{full}]]"), full.clone(), t)
            } else {
                continue;
            };
            go(schema, sub.as_object().unwrap(), &heading, &path, out);
        }
    }
    let mut out = Vec::new();
    go(schema, schema.as_object().unwrap(), "", "", &mut out);
    out
}
