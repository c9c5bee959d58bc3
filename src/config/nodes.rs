//! Which node files apply on this node: a file's `[match]` table names the
//! nodes it is for, so one directory (one ConfigMap) serves a whole fleet.
//!
//! The node's name is `--node-name` (`PODNET_NODE_NAME`, which a
//! DaemonSet sets from `spec.nodeName`), else the host name. Patterns are
//! globs with `*` and `?` only, compared without regard to ASCII case, as
//! DNS names (and so Kubernetes node names) are.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which nodes this file applies to. A file whose `[match]` matches the
/// node's name is merged with the others; one whose `[match]` does not is
/// skipped whole on that node (only its `[match]` is checked there). A
/// file without `[match]` applies on every node. The table belongs to its
/// own file: it is not merged.
///
/// ```toml
/// [match]
/// nodes = ["gpu-*", "worker-7"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Node names, or globs over them (`*`: any characters, `?`: any one
    /// character; no other wildcard), compared without regard to case. The
    /// file applies when one of them matches the node's name
    /// (`--node-name`, else the host name).
    #[schemars(length(min = 1), with = "Vec<NodeGlobSchema>")]
    pub nodes: Vec<String>,
}

/// A node name or a glob over node names, such as `gpu-*` or `worker-?`.
#[derive(JsonSchema)]
#[schemars(extend("format" = "node-glob"))]
#[allow(dead_code)]
struct NodeGlobSchema(String);

impl Match {
    /// Whether the file applies on `node`.
    pub fn matches(&self, node: &str) -> bool {
        self.nodes.iter().any(|p| glob_match(p, node))
    }
}

/// A node file that does not apply on this node, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Why a file whose `[match]` is `m` does not apply on `node` (None: it does).
pub(crate) fn skip_reason(m: &Match, node: Option<&str>) -> Option<String> {
    let patterns = m
        .nodes
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    match node {
        Some(node) if m.matches(node) => None,
        Some(node) => Some(format!(
            "[match] nodes = [{patterns}] does not match node `{node}`"
        )),
        None => Some(format!(
            "[match] nodes = [{patterns}], but this node's name is unknown (give --node-name)"
        )),
    }
}

/// The name this node goes by when none is given: the host name, as
/// kubelet takes it for the node's name (lower-cased, as kubelet does).
pub fn host_node_name() -> Option<String> {
    sysinfo::System::host_name()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

/// `name` matches `pattern`, where `*` stands for any run of characters
/// (none included) and `?` for any one, ignoring ASCII case.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it has taken up to:
    // on a mismatch the star takes one character more. Linear enough for
    // names of at most 253 characters.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What is wrong with a node glob, if anything: the characters of node
/// names (letters, digits, `-`, `.`, `_`) and the wildcards `*` and `?`.
pub(crate) fn glob_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("an empty pattern matches no node".into());
    }
    if pattern.len() > 253 {
        return Some(format!(
            "a node name has at most 253 characters; this pattern has {}",
            pattern.len()
        ));
    }
    let bad = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*' | '?')))?;
    Some(if matches!(bad, '[' | ']' | '{' | '}' | '!' | '^' | '\\') {
        format!("invalid node glob {pattern:?}: `{bad}` is no wildcard here; only `*` and `?` are (list the names instead)")
    } else {
        format!("invalid node glob {pattern:?}: `{bad}` cannot be part of a node name")
    })
}

pub(crate) fn valid_glob(pattern: &str) -> bool {
    glob_problem(pattern).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks_match_as_in_a_shell() {
        for (p, n) in [
            ("gpu-*", "gpu-1"),
            ("gpu-*", "gpu-"),
            ("worker-7", "worker-7"),
            ("worker-?", "worker-7"),
            ("*", "anything.example.com"),
            ("*-gpu-*", "rack1-gpu-07"),
            ("a*b*c", "aXXbYYc"),
            ("a*b*c", "abc"),
            ("*.example.com", "n1.example.com"),
            ("GPU-*", "gpu-3"),
            ("gpu-*", "GPU-3"),
            ("**", ""),
        ] {
            assert!(glob_match(p, n), "{p:?} must match {n:?}");
        }
        for (p, n) in [
            ("gpu-*", "worker-1"),
            ("gpu-*", "xgpu-1"),
            ("worker-7", "worker-70"),
            ("worker-?", "worker-"),
            ("worker-?", "worker-10"),
            ("a*b*c", "aXXbYY"),
            ("*.example.com", "example.com"),
            ("", "n"),
        ] {
            assert!(!glob_match(p, n), "{p:?} must not match {n:?}");
        }
    }

    #[test]
    fn backtracking_stars_find_a_late_match() {
        assert!(glob_match("*a*a*a*b", "aaaaaaaaaaaaaaaaab"));
        assert!(!glob_match("*a*a*a*b", "aaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn only_star_and_question_mark_are_wildcards() {
        for ok in ["gpu-*", "worker-?", "n1.example.com", "a_b", "*"] {
            assert!(valid_glob(ok), "{ok}");
        }
        assert!(glob_problem("gpu-[0-3]")
            .unwrap()
            .contains("only `*` and `?` are"));
        assert!(glob_problem("gpu 1").unwrap().contains("cannot be part"));
        assert!(glob_problem("").unwrap().contains("empty"));
        assert!(glob_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn a_skip_names_the_patterns_and_the_node() {
        let m = Match {
            nodes: vec!["gpu-*".into(), "worker-7".into()],
        };
        assert_eq!(skip_reason(&m, Some("gpu-2")), None);
        assert_eq!(skip_reason(&m, Some("Worker-7")), None);
        assert_eq!(
            skip_reason(&m, Some("worker-3")).unwrap(),
            "[match] nodes = [\"gpu-*\", \"worker-7\"] does not match node `worker-3`"
        );
        assert!(skip_reason(&m, None).unwrap().contains("--node-name"));
    }
}
