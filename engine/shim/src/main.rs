//! `berth-shim` (also installed as `containerd-shim-berth-v2`): one per container,
//! between containerd and the runtime (≙ containerd-shim-runc-v2). See the library's
//! docs for the layout, and `cli` for the three ways it is run.

fn main() {
    std::process::exit(berth_shim::cli::main());
}
