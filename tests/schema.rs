//! The committed schemas are the ones the types generate: the merged one
//! podnet validates with, and the per-file one editors check a drop-in with.

#[path = "common/committed.rs"]
mod committed;

#[test]
fn committed_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/podnet.schema.json");
    let fresh = podnet::config::schema::schema_text();
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/podnet.schema.json is stale: run `PODNET_BLESS=1 cargo test --test schema` and commit it"
    );
}

#[test]
fn committed_file_schema_is_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let fresh = podnet::config::schema::file_schema_text();
    committed::check(
        &dir,
        &[("podnet.file.schema.json".into(), fresh.into_bytes())],
        "schema",
    );
}
