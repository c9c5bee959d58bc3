//! Golden plan cases: `tests/golden/<case>/` holds `node.toml` (desired),
//! `observed.json` (a host snapshot), optionally `inputs.json` (the
//! endpoint registry, whose VFs and RDMA devices are marked held as a pass
//! marks them, and the program podnet attaches) and `plan.txt` (what
//! `apply --dry-run` prints). Pure: no root, no kernel. `PODNET_BLESS=1`
//! rewrites plan.txt.

use std::path::Path;

use podnet::config::load_files;
use podnet::plan::{hazards, plan, Inputs};
use podnet::state::Observed;

#[test]
fn golden_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("PODNET_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "golden cases missing");
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let node = std::fs::read_to_string(case.join("node.toml")).unwrap();
        let desired = load_files(vec![(case.join("node.toml"), node)])
            .unwrap_or_else(|d| panic!("{name}: {}", d.render()))
            .config;
        let mut observed: Observed =
            serde_json::from_str(&std::fs::read_to_string(case.join("observed.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}: observed.json: {e}"));
        let inputs: Inputs = match std::fs::read_to_string(case.join("inputs.json")) {
            Ok(text) => {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: inputs.json: {e}"))
            }
            Err(_) => Inputs::default(),
        };
        // As a pass marks them: the VFs and RDMA devices endpoints hold.
        observed.mark_vf_users(&inputs.endpoints);
        observed.mark_rdma_users(&inputs.endpoints);
        let mut plan = plan(&desired, &observed, &inputs);
        // As podnetctl and podnetd do without --force.
        let hazards = hazards(&plan, &observed);
        plan.problems.extend(hazards);
        let got = plan.to_string();
        let path = case.join("plan.txt");
        if bless {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: want\n{want}--- got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "plans differ (PODNET_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
