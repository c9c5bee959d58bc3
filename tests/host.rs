//! Host tests: podnetctl against real kernel objects in a network namespace
//! each test creates (and always removes). Masters are veth ends; shims are
//! macvlan (the development kernel has no ipvlan: that is the VM lab's).
//! Needs root and iproute2: a loud skip otherwise, and a failure under
//! scripts/test (`PODNET_NO_SKIP=1`).

mod common;

use std::process::Command;

use common::{podnetctl, require, run_ok, ConfigDir, Netns, ROOT};

const NODE: &str = r#"version = 1
[masters.ens192]
kind = "macvlan"
mode = "bridge"
mtu = 9000
shim = { name = "pn-shim0", addresses = ["172.51.0.230/32", "fd00:51::1/64"], routes = ["172.51.0.0/24", "fd00:52::/64"] }
"#;

fn setup(tag: &str) -> (Netns, ConfigDir) {
    let ns = Netns::new(tag);
    ns.veth("ens192");
    (ns, ConfigDir::new(&[("10-node.toml", NODE)]))
}

fn routes_of(ns: &Netns, dev: &str) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        for r in ns
            .ip_json(&format!("{fam} route show dev {dev}"))
            .as_array()
            .unwrap()
        {
            out.push(format!(
                "{} proto {}",
                r["dst"].as_str().unwrap(),
                r["protocol"]
            ));
        }
    }
    out
}

fn addresses_of(ns: &Netns, dev: &str) -> Vec<String> {
    let link = &ns.ip_json(&format!("addr show dev {dev}"))[0];
    link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// The rule every host test keeps: one that cannot make its real check
/// fails under scripts/test, naming what is missing and the package that
/// brings it, and otherwise says "SKIPPED, NOT PASSED" past cargo's capture.
/// Shown on a real host test, run again from this binary with a PATH where
/// `ip` cannot be found.
#[test]
fn a_missing_prerequisite_fails_under_scripts_test_and_skips_loudly_otherwise() {
    let empty = std::env::temp_dir().join(format!("podnet-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let run = |strict: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "dry_run_lists_the_plan_and_changes_nothing"])
            .env("PATH", &empty)
            .env_remove("PODNET_NO_SKIP");
        if strict {
            cmd.env("PODNET_NO_SKIP", "1");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(true);
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(code, Some(101), "under scripts/test it must fail: {out}");
    let missing = if nix::unistd::geteuid().is_root() {
        "`ip` (Debian package iproute2: run scripts/install-deps)"
    } else {
        "root"
    };
    assert!(
        out.contains("dry_run_lists_the_plan_and_changes_nothing cannot make its real check")
            && out.contains(missing)
            && out.contains("a failure, not a skip"),
        "{out}"
    );
    let (code, out) = run(false);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("SKIPPED, NOT PASSED") && out.contains(missing),
        "{out}"
    );
}

#[test]
fn dry_run_lists_the_plan_and_changes_nothing() {
    if !require("dry_run_lists_the_plan_and_changes_nothing", &[ROOT, "ip"]) {
        return;
    }
    let (ns, cfg) = setup("dry");
    let before = ns.snapshot();
    let run = podnetctl(&cfg.path, &ns, &["apply", "--dry-run"]);
    assert_eq!(run.code, 0, "{run}");
    for line in [
        "master ens192",
        "~ mtu 1500 -> 9000  [link-flap]",
        "shim pn-shim0",
        "+ create macvlan pn-shim0 on ens192 mode bridge mtu 9000",
        "+ address 172.51.0.230/32",
        "+ route 172.51.0.0/24 dev pn-shim0 scope link proto podnet",
        "+ route fd00:52::/64 dev pn-shim0 scope link proto podnet",
        "Plan: 5 to add, 3 to change, 0 to destroy",
    ] {
        assert!(run.stdout.contains(line), "missing {line:?}\n{run}");
    }
    assert_eq!(ns.snapshot(), before, "dry-run changed the host");

    let json = podnetctl(&cfg.path, &ns, &["apply", "--dry-run", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json plan");
    assert_eq!(v["actions"].as_array().unwrap().len(), 8, "{json}");
    assert_eq!(v["max_disruption"], "link-flap");
}

#[test]
fn apply_creates_the_shim_and_a_second_apply_is_a_no_op() {
    if !require(
        "apply_creates_the_shim_and_a_second_apply_is_a_no_op",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("apply");
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("verified"), "{run}");

    let master = ns.link("ens192").unwrap();
    assert_eq!(master["mtu"], 9000);
    assert!(master["flags"].as_array().unwrap().contains(&"UP".into()));
    let shim = ns.link("pn-shim0").expect("shim created");
    assert_eq!(shim["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(shim["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(shim["link"], "ens192");
    assert_eq!(shim["mtu"], 9000);
    assert_eq!(shim["ifalias"], "podnet:shim master=ens192");
    assert_eq!(
        addresses_of(&ns, "pn-shim0"),
        ["172.51.0.230/32", "fd00:51::1/64"]
    );
    let routes = routes_of(&ns, "pn-shim0");
    assert!(
        routes.contains(&"172.51.0.0/24 proto \"157\"".to_string()),
        "{routes:?}"
    );
    assert!(
        routes.contains(&"fd00:52::/64 proto \"157\"".to_string()),
        "{routes:?}"
    );

    // The second apply plans nothing and the kernel sees no change at all.
    let before = ns.snapshot();
    let monitor = ns.monitor();
    let again = podnetctl(&cfg.path, &ns, &["apply"]);
    let events = monitor.events();
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("No changes"), "{again}");
    assert_eq!(events, "", "a no-op apply changed the kernel");
    assert_eq!(ns.snapshot(), before);

    let status = podnetctl(&cfg.path, &ns, &["status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status.stdout.contains("shim pn-shim0") && status.stdout.contains("converged"),
        "{status}"
    );
}

/// Re-addressing a shim is make-before-break: the new address and route
/// are in place before the old ones go, so the kernel never flushes the
/// shim's routes with its last address (and, within one subnet, the new
/// address is not taken away with the old primary). One apply converges.
#[test]
fn a_readdressed_shim_keeps_its_route_throughout() {
    if !require(
        "a_readdressed_shim_keeps_its_route_throughout",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let node = |address: &str, route: &str| {
        format!(
            "version = 1\n[masters.ens192]\nkind = \"macvlan\"\n\
             shim = {{ name = \"pn-shim0\", addresses = [\"{address}\"], routes = [\"{route}\"] }}\n"
        )
    };
    for (old, new) in [
        ("10.79.0.1/32", "10.79.0.2/32"),
        ("10.79.0.1/24", "10.79.0.2/24"),
    ] {
        let (ns, cfg) = setup("readdr");
        cfg.write(&[("10-node.toml", &node(old, "10.80.0.0/24"))]);
        let run = podnetctl(&cfg.path, &ns, &["apply"]);
        assert_eq!(run.code, 0, "{run}");

        cfg.write(&[("10-node.toml", &node(new, "10.80.0.0/24"))]);
        let monitor = ns.monitor();
        let run = podnetctl(&cfg.path, &ns, &["apply"]);
        let events = monitor.events();
        assert_eq!(run.code, 0, "{old} -> {new}: {run}");
        assert!(run.stdout.contains("verified"), "{old} -> {new}: {run}");
        assert!(
            !events
                .lines()
                .any(|l| l.starts_with("Deleted 10.80.0.0/24")),
            "{old} -> {new}: the route went away meanwhile:\n{events}"
        );
        assert_eq!(addresses_of(&ns, "pn-shim0"), [new]);
        assert!(
            routes_of(&ns, "pn-shim0").contains(&"10.80.0.0/24 proto \"157\"".to_string()),
            "{old} -> {new}: {:?}",
            routes_of(&ns, "pn-shim0")
        );
        let again = podnetctl(&cfg.path, &ns, &["apply"]);
        assert!(again.stdout.contains("No changes"), "{again}");
    }
}

#[test]
fn drift_is_reported_by_status_and_repaired_by_apply() {
    if !require(
        "drift_is_reported_by_status_and_repaired_by_apply",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("drift");
    assert_eq!(podnetctl(&cfg.path, &ns, &["apply"]).code, 0);
    ns.ip("addr del 172.51.0.230/32 dev pn-shim0");
    ns.ip("link set ens192 mtu 1500");
    let status = podnetctl(&cfg.path, &ns, &["status"]);
    assert_eq!(status.code, 1, "{status}");
    assert!(status.stdout.contains("drifted"), "{status}");
    assert!(
        status.stdout.contains("+ address 172.51.0.230/32"),
        "{status}"
    );
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(addresses_of(&ns, "pn-shim0").contains(&"172.51.0.230/32".to_string()));
    assert_eq!(ns.link("ens192").unwrap()["mtu"], 9000);
    assert_eq!(ns.link("pn-shim0").unwrap()["mtu"], 9000);
    assert_eq!(podnetctl(&cfg.path, &ns, &["status"]).code, 0);
}

#[test]
fn foreign_objects_are_left_alone() {
    if !require("foreign_objects_are_left_alone", &[ROOT, "ip"]) {
        return;
    }
    let (ns, cfg) = setup("foreign");
    // A CNI's macvlan beside ours, an address and a route that are not podnet's.
    ns.ip("link add cni-mv0 link ens192 type macvlan mode bridge");
    ns.ip("link set cni-mv0 up");
    ns.ip("addr add 10.77.0.1/24 dev cni-mv0");
    ns.ip("route add 10.78.0.0/24 dev cni-mv0 proto static");
    let foreign_before = (
        ns.link("cni-mv0"),
        routes_of(&ns, "cni-mv0"),
        addresses_of(&ns, "cni-mv0"),
    );
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    // Removing the shim from the files removes podnet's link only.
    cfg.write(&[(
        "10-node.toml",
        "version = 1\n[masters.ens192]\nkind = \"macvlan\"\nmtu = 9000\n",
    )]);
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("- delete pn-shim0 (podnet's, no longer declared)"),
        "{run}"
    );
    assert!(ns.link("pn-shim0").is_none());
    let mut foreign_after = (
        ns.link("cni-mv0"),
        routes_of(&ns, "cni-mv0"),
        addresses_of(&ns, "cni-mv0"),
    );
    // Carrier and operstate follow the parent, which podnet brought up.
    let mut foreign_before = foreign_before;
    common::settable_only(foreign_before.0.as_mut().unwrap());
    common::settable_only(foreign_after.0.as_mut().unwrap());
    assert_eq!(
        foreign_after, foreign_before,
        "a foreign object was changed"
    );
    let status = podnetctl(&cfg.path, &ns, &["status"]);
    assert!(
        status.stdout.contains("foreign: macvlan cni-mv0 on ens192"),
        "{status}"
    );
}

#[test]
fn a_foreign_link_holding_the_shim_name_is_never_taken_over() {
    if !require(
        "a_foreign_link_holding_the_shim_name_is_never_taken_over",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("taken");
    ns.ip("link add pn-shim0 link ens192 type macvlan mode private");
    let before = ns.snapshot();
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("is not podnet's"), "{run}");
    assert!(run.stderr.contains("nothing was changed"), "{run}");
    assert_eq!(ns.snapshot(), before);
}

#[test]
fn a_missing_master_is_an_error_and_nothing_is_half_applied() {
    if !require(
        "a_missing_master_is_an_error_and_nothing_is_half_applied",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("missing");
    cfg.write(&[(
        "20-more.toml",
        "[masters.ens224]\nkind = \"macvlan\"\nshim = { name = \"pn-shim1\" }\n",
    )]);
    let before = ns.snapshot();
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("master ens224 does not exist"), "{run}");
    assert_eq!(ns.snapshot(), before, "a partial apply happened");
}

#[test]
fn invalid_files_report_every_error_exit_2_and_change_nothing() {
    if !require(
        "invalid_files_report_every_error_exit_2_and_change_nothing",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("invalid");
    cfg.write(&[(
        "20-bad.toml",
        "[masters.ens192]\nmode = \"l3s\"\nmtuu = 1\n[tiers.gold]\negress = \"100Mbps\"\n",
    )]);
    let before = ns.snapshot();
    for verb in [
        &["apply"][..],
        &["apply", "--dry-run"],
        &["validate"],
        &["status"],
    ] {
        let run = podnetctl(&cfg.path, &ns, verb);
        assert_eq!(run.code, 2, "{verb:?}: {run}");
        assert!(run.stderr.contains("20-bad.toml:3:1"), "{run}");
        assert!(run.stderr.contains("unknown key `mtuu`"), "{run}");
        assert!(run.stderr.contains("20-bad.toml:5:1"), "{run}");
        assert!(run.stderr.contains("invalid rate `100Mbps`"), "{run}");
        assert!(run.stderr.contains("nothing was changed"), "{run}");
    }
    assert_eq!(ns.snapshot(), before);
}

#[test]
fn a_failing_step_rolls_back_the_steps_before_it() {
    if !require(
        "a_failing_step_rolls_back_the_steps_before_it",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("rollback");
    // A foreign route with the same key as one the shim wants: the kernel
    // refuses podnet's route (EEXIST) after the shim and MTU were done.
    ns.ip("link set ens192 up");
    ns.ip("route add 172.51.0.0/24 dev ens192 proto static");
    let before = ns.snapshot();
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("route 172.51.0.0/24"), "{run}");
    assert!(run.stderr.contains("File exists"), "{run}");
    assert!(run.stderr.contains("rolled back"), "{run}");
    assert!(
        ns.link("pn-shim0").is_none(),
        "the shim survived the rollback"
    );
    assert_eq!(ns.snapshot(), before, "rollback left the host changed");
}

#[test]
fn a_mode_change_recreates_only_podnets_shim() {
    if !require("a_mode_change_recreates_only_podnets_shim", &[ROOT, "ip"]) {
        return;
    }
    let (ns, cfg) = setup("mode");
    assert_eq!(podnetctl(&cfg.path, &ns, &["apply"]).code, 0);
    cfg.write(&[(
        "10-node.toml",
        &NODE.replace("mode = \"bridge\"", "mode = \"private\""),
    )]);
    let plan = podnetctl(
        &cfg.path,
        &ns,
        &["apply", "--dry-run", "--max-disruption", "hitless"],
    );
    assert_eq!(plan.code, 1, "{plan}");
    assert!(
        plan.stderr.contains("--max-disruption is hitless"),
        "{plan}"
    );
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("re-created as macvlan private on ens192"),
        "{run}"
    );
    assert_eq!(
        ns.link("pn-shim0").unwrap()["linkinfo"]["info_data"]["mode"],
        "private"
    );
    assert_eq!(
        addresses_of(&ns, "pn-shim0"),
        ["172.51.0.230/32", "fd00:51::1/64"]
    );
}

#[test]
fn show_prints_node_files_that_apply_as_a_no_op() {
    if !require(
        "show_prints_node_files_that_apply_as_a_no_op",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("show");
    assert_eq!(podnetctl(&cfg.path, &ns, &["apply"]).code, 0);
    let shown = podnetctl(&cfg.path, &ns, &["show"]);
    assert_eq!(shown.code, 0, "{shown}");
    let boot = ConfigDir::new(&[("10-shown.toml", &shown.stdout)]);
    let again = podnetctl(&boot.path, &ns, &["apply", "--dry-run"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again.stdout.contains("No changes"),
        "show's output does not describe the host:\n{shown}\n{again}"
    );
}

#[test]
fn podnetd_once_converges_then_finds_nothing_to_do() {
    if !require(
        "podnetd_once_converges_then_finds_nothing_to_do",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("daemon");
    let podnetd = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_podnetd"))
            .arg("-c")
            .arg(dir)
            .args(["--netns", &ns.name, "--once"])
            .output()
            .unwrap()
    };
    let out = podnetd(&cfg.path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("verified"), "{err}");
    assert_eq!(
        ns.link("pn-shim0").unwrap()["ifalias"],
        "podnet:shim master=ens192"
    );
    let out = podnetd(&cfg.path);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("applied"),
        "second pass applied something"
    );
    // An invalid edit is rejected whole and the applied state stays.
    cfg.write(&[("20-bad.toml", "[masters.ens192]\nmtu = \"big\"\n")]);
    let before = ns.snapshot();
    let out = podnetd(&cfg.path);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("20-bad.toml:2:1"));
    assert_eq!(ns.snapshot(), before);
}

#[test]
fn every_example_plans_against_its_master_and_changes_nothing() {
    if !require(
        "every_example_plans_against_its_master_and_changes_nothing",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for dir in std::fs::read_dir(&examples).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let ns = Netns::new("example");
        ns.veth("ens192");
        let before = ns.snapshot();
        let state = std::env::temp_dir().join(format!("podnet-example-{}", std::process::id()));
        let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
            .arg("-c")
            .arg(&dir)
            .args(["--netns", &ns.name, "apply", "--dry-run"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--bpf-dir")
            .arg(state.join("bpf"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // On a kernel without fq (this machine's), an example that asks
        // for EDT by name fails its dry run by saying so (one on `auto`
        // plans HTB); nothing else may fail it.
        let no_fq = !podnet::shaping::observe::features().sch_fq
            && stdout.contains(
                "! egress shaping of ens192: [shaping] backend = \"edt\" needs the fq qdisc",
            );
        // An SR-IOV PF is hardware this namespace cannot have: an example
        // declaring one plans everything else and names the missing PF as
        // its only problem.
        let problems: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  x ")).collect();
        let no_pf = !problems.is_empty()
            && problems.iter().all(|l| {
                l.starts_with("  x sriov PF ")
                    && l.ends_with("does not exist on this host (check the interface name)")
            });
        assert!(
            out.status.success() || ((no_fq || no_pf) && out.status.code() == Some(1)),
            "{}: {stdout}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("master ens192\n") && stdout.contains("  ~ set up\n"),
            "{}: {stdout}",
            dir.display()
        );
        assert!(
            stdout.contains("+ create "),
            "{}: no shim in the plan: {stdout}",
            dir.display()
        );
        assert!(
            stdout.contains("Plan: ") || no_pf,
            "{}: {stdout}",
            dir.display()
        );
        assert_eq!(
            ns.snapshot(),
            before,
            "{}: dry-run changed the host",
            dir.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} examples");
}

#[test]
fn a_step_that_interrupts_the_default_route_needs_force() {
    if !require(
        "a_step_that_interrupts_the_default_route_needs_force",
        &[ROOT, "ip"],
    ) {
        return;
    }
    let (ns, cfg) = setup("defroute");
    ns.ip("link set ens192 up");
    ns.ip("addr add 10.99.0.2/24 dev ens192");
    ns.ip("route add default via 10.99.0.1 dev ens192");
    let before = ns.snapshot();
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout.contains("carries the node's default route"),
        "{run}"
    );
    assert_eq!(ns.snapshot(), before);
    let run = podnetctl(&cfg.path, &ns, &["apply", "--force"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(ns.link("ens192").unwrap()["mtu"], 9000);
}

#[test]
fn dry_run_lists_the_shaping_steps_and_what_this_kernel_cannot_do() {
    if !require(
        "dry_run_lists_the_shaping_steps_and_what_this_kernel_cannot_do",
        &[ROOT, "ip", "tc"],
    ) {
        return;
    }
    let (ns, cfg) = setup("shapeplan");
    ns.veth("ens224");
    cfg.write(&[(
        "50-shaping.toml",
        "[masters.ens224]\nkind = \"macvlan\"\nshaping = false\n[shaping]\n",
    )]);
    let before = ns.snapshot();
    let fq = podnet::shaping::observe::features().sch_fq;
    let run = podnetctl(&cfg.path, &ns, &["apply", "--dry-run"]);
    assert_eq!(run.code, 0, "{run}");
    if fq {
        assert!(
            run.stdout
                .contains("shaping ens192\n  ~ root qdisc fq 706e:, replacing default noqueue"),
            "{run}"
        );
    } else {
        // This machine's development kernel: `auto` picks HTB.
        assert!(
            run.stdout.contains(
                "shaping ens192\n  ~ root qdisc htb 706e: (default direct: traffic no class matches leaves unshaped), replacing default noqueue"
            ),
            "{run}"
        );
    }
    assert!(!run.stdout.contains("shaping ens224"), "{run}");
    // EDT asked for by name: refused where fq is missing, naming the way
    // out, and the links are planned all the same.
    cfg.write(&[(
        "50-shaping.toml",
        "[masters.ens224]\nkind = \"macvlan\"\nshaping = false\n[shaping]\nbackend = \"edt\"\n",
    )]);
    let run = podnetctl(&cfg.path, &ns, &["apply", "--dry-run"]);
    if fq {
        assert_eq!(run.code, 0, "{run}");
    } else {
        assert_eq!(run.code, 1, "{run}");
        assert!(
            run.stdout.contains(
                "! egress shaping of ens192: [shaping] backend = \"edt\" needs the fq qdisc (CONFIG_NET_SCH_FQ, module sch_fq), which this kernel does not have; set backend = \"auto\" or \"htb\""
            ),
            "{run}"
        );
        assert!(run.stdout.contains("shim pn-shim0"), "{run}");
        assert!(!run.stdout.contains("root qdisc"), "{run}");
    }
    assert!(!run.stdout.contains("shaping ens224"), "{run}");
    assert_eq!(ns.snapshot(), before, "dry-run changed the host");

    // A tbf under podnet's handle is podnet's root: taken off a master the
    // files do not shape (whatever the kernel lacks), as podnet put it there.
    run_ok(
        "tc",
        &[
            "-n", &ns.name, "qdisc", "add", "dev", "ens224", "root", "handle", "706e:", "tbf",
            "rate", "1gbit", "burst", "64k", "latency", "10ms",
        ],
    );
    let run = podnetctl(&cfg.path, &ns, &["apply", "--dry-run"]);
    assert!(
        run.stdout.contains(
            "shaping ens224\n  ~ root qdisc: put back the kernel's default root  [queue-reset]"
        ),
        "{run}"
    );
}

/// `tc ARGS` in `ns`, as text (tc prints classes and u32 filters as text only).
fn tc_text(ns: &Netns, args: &str) -> String {
    let mut full = vec!["-n", ns.name.as_str()];
    full.extend(args.split_whitespace());
    String::from_utf8_lossy(&run_ok("tc", &full).stdout).into_owned()
}

/// The HTB backend through `podnetctl apply`: `[shaping] backend = "htb"`
/// (what `auto` picks on a kernel without fq) shapes registered endpoints
/// with a class and a u32 filter each under podnet's htb; a second apply
/// changes nothing; a class deleted (with its filter: the kernel refuses a
/// class a filter points at) and a rate changed by hand are repaired; and
/// the root is put back when shaping leaves the files.
#[test]
fn htb_apply_is_a_no_op_the_second_time_repairs_drift_and_puts_the_root_back() {
    if !require(
        "htb_apply_is_a_no_op_the_second_time_repairs_drift_and_puts_the_root_back",
        &[ROOT, "ip", "tc"],
    ) {
        return;
    }
    let ns = Netns::new("htbapply");
    ns.veth("ens192");
    let node = "version = 1\n[masters.ens192]\nkind = \"macvlan\"\nmode = \"bridge\"\n";
    let shaping = "[tiers.silver]\negress = \"10M\"\n[shaping]\ndefault_tier = \"silver\"\nbackend = \"htb\"\n";
    let cfg = ConfigDir::new(&[("10-node.toml", node), ("50-shaping.toml", shaping)]);
    let state = cfg.path.with_extension("state");
    std::fs::create_dir_all(&state).unwrap();
    let record = |id: &str, ip: &str, rate: u64| {
        format!(
            r#"{{"container_id":"{id}","ifname":"eth0","ips":["{ip}"],"master":"ens192","registered_at":0,"limits":{{"egress":{rate},"burst":null}}}}"#
        )
    };
    std::fs::write(
        state.join("endpoints.json"),
        format!(
            r#"{{"version":1,"endpoints":[{},{}]}}"#,
            record("c1", "172.51.0.10/24", 10_000_000),
            record("c2", "fd00:51::10/64", 100_000_000)
        ),
    )
    .unwrap();
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("~ root qdisc htb 706e: (default direct: traffic no class matches leaves unshaped), replacing default noqueue"),
        "{run}"
    );
    let qdiscs = tc_text(&ns, "qdisc show dev ens192");
    assert!(qdiscs.contains("qdisc htb 706e: root"), "{qdiscs}");
    assert!(qdiscs.contains("default 0"), "{qdiscs}");
    assert!(
        qdiscs.contains("limit 312500b"),
        "10M x the default horizon (250 ms at this rate): {qdiscs}"
    );
    let classes = tc_text(&ns, "class show dev ens192");
    assert!(
        classes.contains("class htb 706e:1 root leaf")
            && classes.contains("rate 10Mbit ceil 10Mbit burst 64Kb cburst 64Kb"),
        "{classes}"
    );
    assert!(classes.contains("rate 100Mbit ceil 100Mbit"), "{classes}");
    let filters = tc_text(&ns, "filter show dev ens192");
    assert!(
        filters.contains("*flowid 706e:1") && filters.contains("match ac33000a/ffffffff at 12"),
        "{filters}"
    );
    assert!(
        filters.contains("match 00000010/ffffffff at 20"),
        "{filters}"
    );

    // The second apply plans nothing and changes nothing.
    let tree = |ns: &Netns| {
        [
            tc_text(ns, "qdisc show dev ens192"),
            tc_text(ns, "class show dev ens192"),
            tc_text(ns, "filter show dev ens192"),
        ]
        .join("\n")
    };
    let before = tree(&ns);
    let again = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("No changes"), "{again}");
    assert_eq!(tree(&ns), before);

    // Drift: 172.51.0.10's filter and class deleted by hand, the other
    // class's rate changed.
    let line = filters
        .lines()
        .find(|l| l.contains("*flowid 706e:1"))
        .unwrap();
    let handle = line
        .split(" fh ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    run_ok(
        "tc",
        &[
            "-n", &ns.name, "filter", "del", "dev", "ens192", "parent", "706e:", "prio", "1",
            "handle", handle, "u32",
        ],
    );
    run_ok(
        "tc",
        &[
            "-n", &ns.name, "class", "del", "dev", "ens192", "classid", "706e:1",
        ],
    );
    run_ok(
        "tc",
        &[
            "-n", &ns.name, "class", "change", "dev", "ens192", "classid", "706e:2", "htb", "rate",
            "50mbit", "ceil", "50mbit", "quantum", "1514",
        ],
    );
    let repair = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(repair.code, 0, "{repair}");
    assert!(
        repair
            .stdout
            .contains("+ htb class 706e:1 on ens192: 10Mbit")
            && repair
                .stdout
                .contains("+ u32 filter on ens192: match ip src 172.51.0.10 -> class 706e:1")
            && repair
                .stdout
                .contains("~ htb class 706e:2 on ens192: 50Mbit"),
        "{repair}"
    );
    assert!(!repair.stdout.contains("root qdisc"), "{repair}");
    assert_eq!(
        tree(&ns)
            .lines()
            .filter(|l| l.contains("class htb"))
            .count(),
        2
    );
    let again = podnetctl(&cfg.path, &ns, &["apply"]);
    assert!(again.stdout.contains("No changes"), "{again}");

    // Shaping leaves the files: filters, classes, then the root go.
    std::fs::remove_file(cfg.path.join("50-shaping.toml")).unwrap();
    let off = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(off.code, 0, "{off}");
    assert!(
        off.stdout
            .contains("~ root qdisc: put back default noqueue (podnet's htb goes, with its classes and filters)"),
        "{off}"
    );
    let qdiscs = tc_text(&ns, "qdisc show dev ens192");
    assert!(qdiscs.contains("qdisc noqueue 0: root"), "{qdiscs}");
    assert_eq!(tc_text(&ns, "class show dev ens192"), "");
    let records: Vec<_> = std::fs::read_dir(state.join("shaping"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "the root's record stays: {records:?}");
    let _ = std::fs::remove_dir_all(&state);
}

/// A failing HTB step undoes every step before it: the classes already
/// added go, the root comes back, and podnet's record of the root is
/// forgotten.
#[test]
fn a_failing_htb_step_rolls_back_the_classes_and_the_root() {
    if !require(
        "a_failing_htb_step_rolls_back_the_classes_and_the_root",
        &[ROOT, "ip", "tc"],
    ) {
        return;
    }
    let ns = Netns::new("htbundo");
    ns.veth("ens192");
    // Up before the snapshot: the kernel gives an up link its default root.
    ns.ip("link set ens192 up");
    let cfg = ConfigDir::new(&[(
        "10-node.toml",
        "version = 1\n[masters.ens192]\nkind = \"macvlan\"\nmode = \"bridge\"\n\
         [tiers.silver]\negress = \"10M\"\n[shaping]\ndefault_tier = \"silver\"\nbackend = \"htb\"\n",
    )]);
    let state = cfg.path.with_extension("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("endpoints.json"),
        r#"{"version":1,"endpoints":[
            {"container_id":"c1","ifname":"eth0","ips":["172.51.0.10/24"],"master":"ens192","registered_at":0,"limits":{"egress":10000000,"burst":null}},
            {"container_id":"c2","ifname":"eth0","ips":["172.51.0.11/24"],"master":"ens192","registered_at":0,"limits":{"egress":10000000,"burst":null}}]}"#,
    )
    .unwrap();
    let tree = || {
        [
            tc_text(&ns, "qdisc show dev ens192"),
            tc_text(&ns, "class show dev ens192"),
            tc_text(&ns, "filter show dev ens192"),
        ]
        .join("\n")
    };
    let (before, links) = (tree(), ns.snapshot());
    // Steps: root, class, class, filter (fails), filter.
    let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
        .arg("-c")
        .arg(&cfg.path)
        .args(["--netns", &ns.name, "--state-dir"])
        .arg(&state)
        .arg("--bpf-dir")
        .arg(state.join("bpf"))
        .arg("apply")
        .env("PODNET_FAILPOINT", "fail-step:4")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rolled back 3 applied step(s)"), "{stderr}");
    assert!(!stderr.contains("rollback incomplete"), "{stderr}");
    assert_eq!(tree(), before, "the HTB tree survived the rollback");
    assert_eq!(ns.snapshot(), links, "the links changed");
    let records: Vec<_> = std::fs::read_dir(state.join("shaping"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "{records:?}");
    // The same apply without the failpoint converges.
    let run = podnetctl(&cfg.path, &ns, &["apply"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        tc_text(&ns, "class show dev ens192")
            .lines()
            .filter(|l| l.starts_with("class htb 706e:"))
            .count(),
        2
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn other_network_namespaces_are_found_by_their_mount_and_their_process() {
    if !require(
        "other_network_namespaces_are_found_by_their_mount_and_their_process",
        &[ROOT, "ip", "sleep"],
    ) {
        return;
    }
    let ns = Netns::new("rdmans");
    let mount = format!("/run/netns/{}", ns.name);
    assert!(
        podnet::rdma::other_net_namespaces().contains(&mount),
        "{mount} not among {:?}",
        podnet::rdma::other_net_namespaces()
    );
    // A process in a namespace no mount holds.
    let mut child = Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .spawn()
        .expect("unshare");
    let pid = format!("pid {} (sleep)", child.id());
    let found = (0..100).find_map(|_| {
        let all = podnet::rdma::other_net_namespaces();
        if all.contains(&pid) {
            return Some(all);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        None
    });
    child.kill().ok();
    child.wait().ok();
    assert!(found.is_some(), "{pid} not found");
    drop(ns);
    assert!(!podnet::rdma::other_net_namespaces().contains(&mount));
}
