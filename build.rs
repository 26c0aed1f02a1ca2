//! Links the `overnight` binary as a position-dependent executable.
//!
//! A position-independent one carries ~45,000 relative relocations that the
//! loader applies at every start, copying ~100 pages of the binary; a
//! crontab line that runs `overnight exec` pays that each time (0.7 ms of a
//! 1.9 ms start, docs/benchmarks.md). The shared libraries and the heap
//! and stack are still placed at random; only the binary's own address is
//! fixed.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
