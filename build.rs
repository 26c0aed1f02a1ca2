//! Links the `overnight` binary as a position-dependent executable, for now.
//!
//! A position-independent one carries ~46,000 relative relocations that the
//! loader applies at every start; a crontab line that runs `overnight exec`
//! pays that each time. Packed relative relocations (`-z
//! pack-relative-relocs`, Debian 12's binutils and glibc) shrink the table
//! to 19 KiB but not the cost: 35,000 of the relocations are the zone
//! abbreviations in chrono-tz's tables, spread over 1.2 MiB of
//! `.data.rel.ro`, and writing them copies ~300 pages per start — 2.1 ms
//! of a 3.8 ms `overnight --version` (perf stat, 2026-11-30,
//! docs/benchmarks.md). The binary becomes position-independent again when
//! the zone data stops being a table of pointers. The shared libraries,
//! the heap and the stack are placed at random all the same.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
