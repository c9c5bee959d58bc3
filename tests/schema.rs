//! The committed schema is the one the types generate.

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
