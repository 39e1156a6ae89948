//! `berth-containerd`: the container supervisor (≙ containerd). See the library's docs
//! for the layout, and `cli` for the flags.

fn main() {
    std::process::exit(berth_containerd::cli::main());
}
