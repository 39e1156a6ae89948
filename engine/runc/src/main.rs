//! `berth-runc`: the OCI runtime at the bottom of berth (≙ runc). See the library's
//! `cli` module for the verbs and `berth-libcontainer` for the mechanics.

fn main() {
    std::process::exit(berth_runc::cli::main());
}
