//! `podnet-cni`: the chained CNI plugin; everything is in [`podnet::cni`].

fn main() -> std::process::ExitCode {
    podnet::cni::main()
}
