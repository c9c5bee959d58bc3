//! The JSON schema of the node files, generated from the config types.
//!
//! The same schema serves editors (Taplo / Even Better TOML read the
//! `#:schema` line of a node file) and podnet's own structural validation, so
//! the two can never disagree.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value as Json;

use super::units::Rate;
use super::NodeConfig;

/// A custom `format`: its name and its check.
pub(crate) type Format = (&'static str, fn(&str) -> bool);

/// Custom `format`s used by the schema, checked by podnet (editors ignore them).
pub(crate) const FORMATS: [Format; 7] = [
    ("rate", |s| Rate::parse(s).is_ok()),
    ("ifname", valid_ifname),
    ("ip-prefix", |s| s.parse::<ipnet::IpNet>().is_ok()),
    ("ip", |s| s.parse::<std::net::IpAddr>().is_ok()),
    ("mac", valid_mac),
    ("horizon", |s| super::units::Horizon::parse(s).is_ok()),
    ("delay", |s| super::units::Delay::parse(s).is_ok()),
];

/// The schema as committed in `schemas/podnet.schema.json`.
pub fn schema_json() -> Json {
    // Draft 7: what Taplo and most editors implement, and its meta-schema
    // makes building the validator at startup about twice as fast as 2020-12's.
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<NodeConfig>();
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
}
