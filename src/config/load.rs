//! Reading node files: every `*.toml` of the config directory in lexical
//! order, merged key by key with later files winning (netplan's rule).
//!
//! Tables merge recursively; any other value (string, number, array) is
//! replaced whole by a later file. Every value keeps the file and span it came
//! from, so a problem found after merging still points at the right line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{join_key, locate, Diagnostic, Diagnostics, Location, Origin, Origins, Sources};
use super::{validate, NodeConfig};

/// Where node files live unless `-c/--config-dir` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/podnet";

/// A valid configuration and where each of its keys came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: NodeConfig,
    pub sources: Sources,
    origins: Origins,
}

impl Loaded {
    /// The location of a key, given as a JSON pointer (`/masters/ens192/mtu`).
    pub fn locate(&self, pointer: &str) -> Option<Location> {
        let o = self.origins.get(pointer)?;
        Some(locate(&self.sources, o.file, o.key.clone()))
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

/// Loads, merges and validates every `*.toml` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, Diagnostics> {
    let fail = |message: String| Diagnostics {
        items: vec![Diagnostic::new("", message)],
        sources: Sources::default(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        fail(format!(
            "cannot read config directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Hidden files are editors' and ConfigMaps' (`..data`) business.
            // `is_file` follows symlinks, as a ConfigMap mount needs.
            name.ends_with(".toml") && !name.starts_with('.') && p.is_file()
        })
        .collect();
    paths.sort();
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
    load_bytes(files)
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
/// order. Bytes that are not UTF-8 are an error at their line.
pub fn load_bytes(files: Vec<(PathBuf, Vec<u8>)>) -> Result<Loaded, Diagnostics> {
    let mut sources = Sources::default();
    let mut items = Vec::new();
    let mut merged: Option<Node> = None;
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
        let node = match table_node(file, 0..root_span.end.min(1), doc.into_inner(), &sources) {
            Ok(n) => n,
            Err(d) => {
                items.extend(d);
                continue;
            }
        };
        merged = Some(match merged {
            None => node,
            Some(base) => merge(base, node),
        });
    }
    if !items.is_empty() {
        return Err(Diagnostics { items, sources });
    }
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

    #[test]
    fn dotted_paths_quote_odd_keys() {
        assert_eq!(join_key("masters", "eth0.100"), "masters.\"eth0.100\"");
        assert_eq!(join_key("", "masters"), "masters");
    }
}
