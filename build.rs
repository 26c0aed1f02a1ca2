//! Links the `overnight` binary position-independent, with its relative
//! relocations packed (`-z pack-relative-relocs`: DT_RELR, Debian 12's
//! binutils and glibc).
//!
//! A crontab line that runs `overnight exec` pays the loader's work at every
//! start. Packing shrinks the relocation table from ~1 MiB to a few KiB;
//! what is left to keep small is the number of pages relocations write to,
//! which is why the zone database is bundled as bytes, not as tables of
//! pointers (src/zone.rs; docs/benchmarks.md has the measurements).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
