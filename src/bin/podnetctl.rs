//! `podnetctl`: see `podnetctl --help`.

fn main() -> std::process::ExitCode {
    podnet::cli::main()
}
