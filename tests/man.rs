//! Man pages are generated from the command-line definitions (clap), so
//! `--help` and `man` never disagree. `PODNET_BLESS=1` rewrites them.

use clap::CommandFactory;

#[path = "common/committed.rs"]
mod committed;

fn render(cmd: clap::Command, name: &str) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    // The version alone: `--version`'s commit would make every commit's
    // pages stale.
    let cmd = cmd.long_version(None::<&str>);
    clap_mangen::Man::new(cmd)
        .section("8")
        .render(&mut out)
        .unwrap();
    (format!("{name}.8"), out)
}

#[test]
fn committed_man_pages_are_current() {
    let mut pages = Vec::new();
    let ctl = podnet::cli::Cli::command();
    for sub in ctl.get_subcommands() {
        let name = format!("podnetctl-{}", sub.get_name());
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        pages.push(render(sub.clone().name(leaked), &name));
    }
    pages.push(render(ctl, "podnetctl"));
    pages.push(render(podnet::daemon::Args::command(), "podnetd"));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    committed::check(&dir, &pages, "man");
}
