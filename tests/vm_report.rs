//! The VM lab's verdict (`tests/vm/report`), from result files as the guest
//! runner leaves them: a case that skips fails unless it is allowed to,
//! every skip and every limit a case could not test is in the summary, and
//! a VM that died is a failure whatever the cases said.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Results(PathBuf);

impl Results {
    /// A results dir for `cases` (name, exit status, log), the VM having
    /// run to the end when `finished`.
    fn new(tag: &str, cases: &[(&str, i32, &str)], finished: bool) -> Results {
        let dir =
            std::env::temp_dir().join(format!("podnet-vm-report-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let plan: String = cases
            .iter()
            .map(|(name, _, _)| format!("{name}\tcases/{name}.sh\t60\n"))
            .collect();
        std::fs::write(dir.join(".plan"), plan).unwrap();
        std::fs::write(dir.join(".started"), "kernel 6.12\n").unwrap();
        if finished {
            std::fs::write(dir.join(".finished"), "ok\n").unwrap();
        }
        std::fs::write(
            dir.join(".vm"),
            if finished { "0 300\n" } else { "124 300\n" },
        )
        .unwrap();
        for (i, (name, rc, log)) in cases.iter().enumerate() {
            if !finished && i + 1 == cases.len() {
                break; // the VM died while running the last one
            }
            std::fs::write(dir.join(format!("{name}.rc")), format!("{rc} 3\n")).unwrap();
            std::fs::write(dir.join(format!("{name}.log")), log).unwrap();
        }
        Results(dir)
    }

    /// (exit status, whole output, last line)
    fn report(&self, allow_skip: Option<&str>) -> (i32, String, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/report");
        let mut cmd = Command::new(script);
        cmd.arg(&self.0).env_remove("PODNET_VM_ALLOW_SKIP");
        if let Some(a) = allow_skip {
            cmd.env("PODNET_VM_ALLOW_SKIP", a);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let last = text.lines().last().unwrap_or_default().to_string();
        (out.status.code().unwrap(), text, last)
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CASES: &[(&str, i32, &str)] = &[
    ("00-kernel", 0, "ok\n"),
    (
        "60-sriov",
        77,
        "[12:00:00] looking for the NIC\nSKIP: no igb NIC\n",
    ),
    (
        "50-rates",
        0,
        "UNTESTED: ipvlan l3 1G: the path carried 1.21 Gbit/s unshaped, under 1.5x the limit\n",
    ),
];

#[test]
fn a_skip_fails_unless_the_case_is_allowed_to_skip() {
    let r = Results::new("skip", CASES, true);
    let (code, out, last) = r.report(None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "FAIL  60-sriov: skipped, and PODNET_VM_ALLOW_SKIP does not allow it: no igb NIC"
        ),
        "{out}"
    );
    assert_eq!(
        last,
        "2 passed, 1 failed, 0 skipped; skips: 60-sriov (not allowed: no igb NIC); 1 limit(s) not tested (listed above)"
    );

    for allow in ["60-sriov", "all", "10-x 60-sriov"] {
        let (code, out, last) = r.report(Some(allow));
        assert_eq!(code, 0, "{allow}: {out}");
        assert!(out.contains("SKIP  60-sriov: no igb NIC"), "{out}");
        assert!(
            last.starts_with("2 passed, 0 failed, 1 skipped; skips: 60-sriov (no igb NIC)"),
            "{last}"
        );
    }
    // A name is matched whole.
    let (code, _, _) = r.report(Some("60"));
    assert_eq!(code, 1);
}

#[test]
fn limits_a_case_could_not_test_are_listed() {
    let r = Results::new("untested", CASES, true);
    let (_, out, _) = r.report(Some("all"));
    assert!(
        out.contains("Not tested on this machine (the case says why):\n  50-rates: ipvlan l3 1G: the path carried 1.21 Gbit/s unshaped"),
        "{out}"
    );
}

#[test]
fn a_vm_that_died_fails_whatever_the_cases_said() {
    let r = Results::new(
        "died",
        &CASES[..1]
            .iter()
            .chain(&[("10-next", 0, "")])
            .cloned()
            .collect::<Vec<_>>(),
        false,
    );
    let (code, out, last) = r.report(Some("all"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  10-next (no result: the VM died before or while running it)"),
        "{out}"
    );
    assert!(out.contains("overall timeout of 300s hit"), "{out}");
    assert_eq!(last, "1 passed, 1 failed, 0 skipped");
}
