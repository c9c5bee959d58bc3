//! Reading node files: every `*.toml` of the config directory in lexical
//! order, merged key by key with later files winning (netplan's rule).
//!
//! Tables merge recursively; any other value (string, number, array) is
//! replaced whole by a later file. Every value keeps the file and span it came
//! from, so a problem found after merging still points at the right line.
//!
//! A file's `[match]` table is taken out of it before merging: checked
//! alone, it decides whether the file is merged on this node at all.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{join_key, locate, Diagnostic, Diagnostics, Location, Origin, Origins, Sources};
use super::nodes::{skip_reason, Match, Skipped};
use super::{validate, NodeConfig};

/// Where node files live unless `-c/--config-dir` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/podnet";

/// A valid configuration and where each of its keys came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: NodeConfig,
    /// The files merged into `config`, in order (the skipped ones not).
    pub sources: Sources,
    /// The files whose `[match]` leaves this node out, in order.
    pub skipped: Vec<Skipped>,
    /// The node name the files' `[match]` tables were held against.
    pub node: Option<String>,
    origins: Origins,
}

impl Loaded {
    /// The location of a key, given as a JSON pointer (`/masters/ens192/mtu`).
    pub fn locate(&self, pointer: &str) -> Option<Location> {
        let o = self.origins.get(pointer)?;
        Some(locate(&self.sources, o.file, o.key.clone()))
    }

    /// Problems the host shows in valid files (a VF count over the device's
    /// total), each at its key (a JSON pointer), as diagnostics naming the
    /// file, line and key like a validation error's.
    pub fn diagnose<'p>(
        &self,
        problems: impl IntoIterator<Item = (&'p str, &'p str)>,
    ) -> Diagnostics {
        let items = problems
            .into_iter()
            .map(|(pointer, message)| {
                let key = pointer
                    .split('/')
                    .skip(1)
                    .map(|k| k.replace("~1", "/").replace("~0", "~"))
                    .fold(String::new(), |dotted, k| join_key(&dotted, &k));
                let mut d = Diagnostic::new(key, message);
                d.location = self.locate(pointer);
                d
            })
            .collect();
        Diagnostics {
            items,
            sources: self.sources.clone(),
        }
    }
}

/// A parsed value that remembers its origin.
struct Node {
    file: usize,
    key: Range<usize>,
    value: NodeValue,
}

enum NodeValue {
    Table(BTreeMap<String, Node>),
    Array(Vec<Node>),
    Scalar(Json),
}

/// The node files in `dir`, in the order they merge: every `*.toml` but
/// hidden ones (editors' and ConfigMaps' `..data` business), symlinks
/// followed (as a ConfigMap mount needs).
pub fn node_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && !name.starts_with('.') && p.is_file()
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Loads, merges and validates every `*.toml` file in `dir` that applies
/// to no node in particular: a file with a `[match]` table is skipped.
pub fn load_dir(dir: &Path) -> Result<Loaded, Diagnostics> {
    load_dir_for(dir, None)
}

/// Loads, merges and validates every `*.toml` file in `dir` that applies
/// on the node named `node` (a file without `[match]` applies on every
/// node; with no name, only those do).
pub fn load_dir_for(dir: &Path, node: Option<&str>) -> Result<Loaded, Diagnostics> {
    let fail = |message: String| Diagnostics {
        items: vec![Diagnostic::new("", message)],
        sources: Sources::default(),
    };
    let paths = node_files(dir).map_err(|e| {
        fail(format!(
            "cannot read config directory {}: {e}",
            dir.display()
        ))
    })?;
    if paths.is_empty() {
        return Err(fail(format!("no *.toml node files in {}", dir.display())));
    }
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::read(&p) {
            Ok(bytes) => files.push((p, bytes)),
            Err(e) => return Err(fail(format!("cannot read {}: {e}", p.display()))),
        }
    }
    load_bytes_for(files, node)
}

/// Loads, merges and validates node files given as (path, text), in order.
pub fn load_files(files: Vec<(PathBuf, String)>) -> Result<Loaded, Diagnostics> {
    load_bytes(
        files
            .into_iter()
            .map(|(p, t)| (p, t.into_bytes()))
            .collect(),
    )
}

/// Loads, merges and validates node files given as (path, raw bytes), in
/// order. Bytes that are not UTF-8 are an error at their line. A file with
/// a `[match]` table is skipped, as no node is named.
pub fn load_bytes(files: Vec<(PathBuf, Vec<u8>)>) -> Result<Loaded, Diagnostics> {
    load_bytes_for(files, None)
}

/// [`load_bytes`] on the node named `node`: a file whose `[match]` does
/// not match it is skipped whole (its `[match]` is still checked).
pub fn load_bytes_for(
    files: Vec<(PathBuf, Vec<u8>)>,
    node: Option<&str>,
) -> Result<Loaded, Diagnostics> {
    let mut sources = Sources::default();
    let mut items = Vec::new();
    // Each applying file's tree and its index in `sources`.
    let mut applied: Vec<(usize, Node)> = Vec::new();
    let mut skipped = Vec::new();
    for (path, bytes) in files {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let file = sources.add(path, lossy);
                // Offsets up to the first bad byte are the same in the lossy text.
                items.push(Diagnostic::new("", "not valid UTF-8 text").at(
                    &sources,
                    file,
                    at..at + 1,
                ));
                continue;
            }
        };
        let file = sources.add(path, text);
        let (doc, errors) = DeTable::parse_recoverable(sources.text(file));
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                items.push(
                    Diagnostic::new("", format!("TOML syntax: {}", e.message().trim()))
                        .at(&sources, file, span),
                );
            }
            continue;
        }
        let root_span = doc.span();
        let mut tree = match table_node(file, 0..root_span.end.min(1), doc.into_inner(), &sources) {
            Ok(n) => n,
            Err(d) => {
                items.extend(d);
                continue;
            }
        };
        match take_match(&mut tree, &sources) {
            Err(d) => items.extend(d),
            Ok(m) => match m.and_then(|m| skip_reason(&m, node)) {
                Some(reason) => skipped.push(Skipped {
                    path: sources.path(file).to_path_buf(),
                    reason,
                }),
                None => applied.push((file, tree)),
            },
        }
    }
    if !items.is_empty() {
        return Err(Diagnostics { items, sources });
    }
    if applied.is_empty() {
        let message = match (node, skipped.is_empty()) {
            (_, true) => "no node files given".to_string(),
            (Some(node), false) => format!("no node file applies to node `{node}`"),
            (None, false) => "no node file applies to a node without a name".to_string(),
        };
        let why: Vec<String> = skipped.iter().map(Skipped::to_string).collect();
        let message = if why.is_empty() {
            message
        } else {
            format!("{message}: {}", why.join("; "))
        };
        return Err(Diagnostics {
            items: vec![Diagnostic::new("", message)],
            sources,
        });
    }
    // The load's sources are the merged files only: a skipped file is
    // never quoted, and editing one is no new configuration.
    let mut kept = Sources::default();
    let mut merged: Option<Node> = None;
    for (file, mut tree) in applied {
        let index = kept.add(
            sources.path(file).to_path_buf(),
            sources.text(file).to_string(),
        );
        set_file(&mut tree, index);
        merged = Some(match merged {
            None => tree,
            Some(base) => merge(base, tree),
        });
    }
    let sources = kept;
    let Some(root) = merged else {
        return Err(Diagnostics {
            items: vec![Diagnostic::new("", "no node files given")],
            sources,
        });
    };
    let mut origins = Origins::new();
    let json = to_json(&root, String::new(), String::new(), &mut origins);
    match validate::validate(json, &origins, &sources) {
        Ok(config) => Ok(Loaded {
            config,
            sources,
            skipped,
            node: node.map(str::to_string),
            origins,
        }),
        Err(items) => Err(Diagnostics { items, sources }),
    }
}

fn table_node(
    file: usize,
    key: Range<usize>,
    table: DeTable<'_>,
    sources: &Sources,
) -> Result<Node, Vec<Diagnostic>> {
    let mut map = BTreeMap::new();
    let mut errors = Vec::new();
    for (k, v) in table {
        let key_span = k.span();
        match value_node(file, key_span, v, sources) {
            Ok(n) => {
                map.insert(k.into_inner().into_owned(), n);
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(Node {
            file,
            key,
            value: NodeValue::Table(map),
        })
    } else {
        Err(errors)
    }
}

fn value_node(
    file: usize,
    key: Range<usize>,
    v: Spanned<DeValue<'_>>,
    sources: &Sources,
) -> Result<Node, Vec<Diagnostic>> {
    let span = v.span();
    let scalar = |json: Json| {
        Ok(Node {
            file,
            key: key.clone(),
            value: NodeValue::Scalar(json),
        })
    };
    match v.into_inner() {
        DeValue::String(s) => scalar(Json::String(s.into_owned())),
        DeValue::Boolean(b) => scalar(Json::Bool(b)),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => scalar(Json::from(n)),
            Err(_) => Err(vec![
                Diagnostic::new("", "integer out of range").at(sources, file, span)
            ]),
        },
        DeValue::Float(f) => {
            let text = f.as_str();
            match text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => scalar(Json::Number(n)),
                // nan and inf have no JSON form; no podnet key takes them.
                None => scalar(Json::String(text.to_string())),
            }
        }
        DeValue::Datetime(d) => scalar(Json::String(d.to_string())),
        DeValue::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for item in items {
                let item_span = item.span();
                match value_node(file, item_span, item, sources) {
                    Ok(n) => nodes.push(n),
                    Err(e) => errors.extend(e),
                }
            }
            if errors.is_empty() {
                Ok(Node {
                    file,
                    key,
                    value: NodeValue::Array(nodes),
                })
            } else {
                Err(errors)
            }
        }
        DeValue::Table(t) => table_node(file, key, t, sources),
    }
}

/// Takes a file's `[match]` table out of its tree and checks it.
fn take_match(tree: &mut Node, sources: &Sources) -> Result<Option<Match>, Vec<Diagnostic>> {
    let NodeValue::Table(map) = &mut tree.value else {
        return Ok(None);
    };
    let Some(m) = map.remove("match") else {
        return Ok(None);
    };
    let mut origins = Origins::new();
    let json = to_json(&m, "/match".into(), "match".into(), &mut origins);
    validate::node_match(json, &origins, sources).map(Some)
}

/// Points every value of one file's tree at that file's index.
fn set_file(node: &mut Node, file: usize) {
    node.file = file;
    match &mut node.value {
        NodeValue::Table(map) => map.values_mut().for_each(|n| set_file(n, file)),
        NodeValue::Array(items) => items.iter_mut().for_each(|n| set_file(n, file)),
        NodeValue::Scalar(_) => {}
    }
}

/// Later wins; tables merge key by key.
fn merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (NodeValue::Table(mut a), NodeValue::Table(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Node {
                file: base.file,
                key: base.key,
                value: NodeValue::Table(a),
            }
        }
        (_, value) => Node {
            file: over.file,
            key: over.key,
            value,
        },
    }
}

fn to_json(node: &Node, pointer: String, dotted: String, origins: &mut Origins) -> Json {
    let json = match &node.value {
        NodeValue::Scalar(j) => j.clone(),
        NodeValue::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    to_json(
                        n,
                        format!("{pointer}/{i}"),
                        format!("{dotted}[{i}]"),
                        origins,
                    )
                })
                .collect(),
        ),
        NodeValue::Table(map) => Json::Object(
            map.iter()
                .map(|(k, n)| {
                    let p = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                    let d = join_key(&dotted, k);
                    (k.clone(), to_json(n, p, d, origins))
                })
                .collect(),
        ),
    };
    origins.insert(
        pointer,
        Origin {
            file: node.file,
            key: node.key.clone(),
            dotted,
        },
    );
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    #[test]
    fn later_files_override_keys_and_tables_merge() {
        let loaded = load_files(files(&[
            (
                "10-base.toml",
                "version = 1\n[masters.eth0]\nkind = \"macvlan\"\nmtu = 1500\n",
            ),
            (
                "20-mtu.toml",
                "[masters.eth0]\nmtu = 9000\n[masters.eth1]\nkind = \"ipvlan\"\n",
            ),
        ]))
        .map_err(|d| d.render())
        .unwrap();
        let m = &loaded.config.masters;
        assert_eq!(m["eth0"].mtu, Some(9000));
        assert_eq!(m["eth0"].kind, super::super::ChildKind::Macvlan);
        assert_eq!(m["eth1"].kind, super::super::ChildKind::Ipvlan);
        let l = loaded.locate("/masters/eth0/mtu").unwrap();
        assert_eq!(
            (l.file.to_str().unwrap(), l.line, l.column),
            ("20-mtu.toml", 2, 1)
        );
        let l = loaded.locate("/masters/eth0/kind").unwrap();
        assert_eq!((l.file.to_str().unwrap(), l.line), ("10-base.toml", 3));
    }

    #[test]
    fn no_files_is_an_error_not_a_panic() {
        let Err(d) = load_files(Vec::new()) else {
            panic!("no files must not load");
        };
        assert_eq!(d.items.len(), 1);
        assert!(d.render().contains("no node files given"), "{}", d.render());
    }

    #[test]
    fn arrays_are_replaced_not_appended() {
        let loaded = load_files(files(&[
            (
                "a.toml",
                "version = 1\n[masters.eth0]\nkind = \"macvlan\"\nshim = { name = \"s0\", addresses = [\"10.0.0.1/24\", \"10.0.0.2/24\"] }\n",
            ),
            ("b.toml", "[masters.eth0.shim]\naddresses = [\"10.0.0.3/24\"]\n"),
        ]))
        .map_err(|d| d.render())
        .unwrap();
        let shim = loaded.config.masters["eth0"].shim.as_ref().unwrap();
        assert_eq!(shim.name, "s0");
        assert_eq!(shim.addresses, vec!["10.0.0.3/24".parse().unwrap()]);
    }

    #[test]
    fn syntax_errors_of_every_file_are_reported() {
        let d = load_files(files(&[
            ("a.toml", "version = 1\n[masters.eth0\n"),
            ("b.toml", "x = = 3\n"),
        ]))
        .unwrap_err();
        let files: Vec<_> = d
            .items
            .iter()
            .map(|i| {
                i.location
                    .as_ref()
                    .unwrap()
                    .file
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(files.contains(&"a.toml".to_string()), "{files:?}");
        assert!(files.contains(&"b.toml".to_string()), "{files:?}");
        assert!(d
            .items
            .iter()
            .all(|i| i.location.as_ref().unwrap().line >= 1));
    }

    fn on(node: &str, list: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
        let files = files(list)
            .into_iter()
            .map(|(p, t)| (p, t.into_bytes()))
            .collect();
        load_bytes_for(files, Some(node))
    }

    const COMMON: (&str, &str) = (
        "00-common.toml",
        "version = 1\n[masters.eth0]\nkind = \"macvlan\"\n",
    );

    #[test]
    fn a_file_for_other_nodes_is_skipped_whole() {
        // The unknown key would be an error where the file applies.
        let gpu = (
            "10-gpu.toml",
            "[match]\nnodes = [\"gpu-*\", \"worker-7\"]\n[masters.eth1]\nkind = \"ipvlan\"\nbogus = 1\n",
        );
        let tail = ("20-tail.toml", "[masters.eth0]\nmtu = 9000\n");
        let loaded = on("worker-3", &[COMMON, gpu, tail])
            .map_err(|d| d.render())
            .unwrap();
        assert_eq!(
            loaded.config.masters.keys().collect::<Vec<_>>(),
            vec!["eth0"]
        );
        assert_eq!(loaded.config.masters["eth0"].mtu, Some(9000));
        assert_eq!(
            loaded.skipped,
            vec![Skipped {
                path: "10-gpu.toml".into(),
                reason: "[match] nodes = [\"gpu-*\", \"worker-7\"] does not match node `worker-3`"
                    .into(),
            }]
        );
        assert_eq!(loaded.node.as_deref(), Some("worker-3"));
        // Only merged files are the load's sources, and locations still
        // name the right one past the skipped file.
        assert_eq!(loaded.sources.len(), 2);
        let l = loaded.locate("/masters/eth0/mtu").unwrap();
        assert_eq!((l.file.to_str().unwrap(), l.line), ("20-tail.toml", 2));

        // Where it applies, the rest of the file is checked as usual.
        let d = on("worker-7", &[COMMON, gpu, tail]).unwrap_err();
        assert_eq!(d.items.len(), 1, "{}", d.render());
        assert_eq!(
            d.items[0].to_string(),
            "10-gpu.toml:5:1: masters.eth1.bogus: unknown key `bogus`"
        );
    }

    #[test]
    fn a_matching_file_merges_and_its_match_table_does_not() {
        let gpu = (
            "10-gpu.toml",
            "[match]\nnodes = [\"GPU-*\"]\n[masters.eth1]\nkind = \"ipvlan\"\n",
        );
        let loaded = on("gpu-2", &[COMMON, gpu]).map_err(|d| d.render()).unwrap();
        assert!(loaded.skipped.is_empty());
        assert_eq!(
            loaded.config.masters.keys().collect::<Vec<_>>(),
            vec!["eth0", "eth1"]
        );
        let l = loaded.locate("/masters/eth1/kind").unwrap();
        assert_eq!((l.file.to_str().unwrap(), l.line), ("10-gpu.toml", 4));
        assert!(loaded.locate("/match").is_none());
        // No node name: a file that names nodes applies to none.
        let none = load_files(files(&[COMMON, gpu])).unwrap();
        assert_eq!(none.config.masters.len(), 1);
        assert!(
            none.skipped[0].reason.contains("--node-name"),
            "{:?}",
            none.skipped
        );
    }

    #[test]
    fn bad_match_tables_are_errors_with_file_line_and_key() {
        let d = on(
            "gpu-1",
            &[
                COMMON,
                (
                    "10-a.toml",
                    "[match]\nnodes = [\"gpu-1\", \"gpu-[0-3]\"]\nnode = \"x\"\n",
                ),
                ("20-b.toml", "[match]\nnodes = []\n"),
                ("30-c.toml", "match = \"gpu-1\"\n"),
                ("40-d.toml", "[match]\nnodes = \"gpu-1\"\n"),
            ],
        )
        .unwrap_err();
        let errs: Vec<String> = d.items.iter().map(|i| i.to_string()).collect();
        for want in [
            "10-a.toml:2:19: match.nodes[1]: invalid node glob \"gpu-[0-3]\": `[` is no wildcard here",
            "10-a.toml:3:1: match.node: unknown key `node`",
            "20-b.toml:2:1: match.nodes: expected at least 1 item(s), found 0",
            "30-c.toml:1:1: match: expected object, found \"gpu-1\"",
            "40-d.toml:2:1: match.nodes: expected array, found \"gpu-1\"",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "no {want:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(
            d.render().contains("did you mean `nodes`?"),
            "{}",
            d.render()
        );
    }

    #[test]
    fn a_node_no_file_applies_to_is_an_error() {
        let d = on(
            "worker-3",
            &[("10-gpu.toml", "version = 1\n[match]\nnodes = [\"gpu-*\"]\n")],
        )
        .unwrap_err();
        assert_eq!(
            d.items[0].to_string(),
            "no node file applies to node `worker-3`: 10-gpu.toml: [match] nodes = [\"gpu-*\"] does not match node `worker-3`"
        );
    }

    #[test]
    fn dotted_paths_quote_odd_keys() {
        assert_eq!(join_key("masters", "eth0.100"), "masters.\"eth0.100\"");
        assert_eq!(join_key("", "masters"), "masters");
    }
}
