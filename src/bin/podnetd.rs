//! `podnetd`: see `podnetd --help` and `podnet::daemon`.

fn main() -> std::process::ExitCode {
    podnet::daemon::main()
}
