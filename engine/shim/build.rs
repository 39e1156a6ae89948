//! Links berth-shim as a position-dependent executable (`-no-pie`), for its memory.
//!
//! A shim runs once per container, so what it costs is paid per container. A PIE
//! binary is relocated at every start: the dynamic loader reads ~190 kB of relocation
//! records and writes the address of each pointer table it patches (`.data.rel.ro`,
//! ~120 kB), turning those pages into private memory of each shim. Linked at a fixed
//! address there is nothing to patch: the pages stay clean and are shared by every shim.
//! Measured with 20 shims (`cargo bench -p berth-tests --bench shim`): PSS 0.58 MB to
//! 0.45 MB, RSS 3.97 MB to 3.83 MB per shim.
//!
//! The price is ASLR for the binary's own image (the stack, heap and shared libraries
//! are still placed at random). containerd-shim-runc-v2, a Go binary, is not PIE either.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
