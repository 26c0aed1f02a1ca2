//! Links the `overnight` binary position-independent, with its relative
//! relocations packed (`-z pack-relative-relocs`: DT_RELR, Debian 12's
//! binutils and glibc); and gives `--version` the commit and the build's
//! date.
//!
//! A crontab line that runs `overnight exec` pays the loader's work at every
//! start. Packing shrinks the relocation table from ~1 MiB to a few KiB;
//! what is left to keep small is the number of pages relocations write to,
//! which is why the zone database is bundled as bytes, not as tables of
//! pointers (src/zone.rs; docs/benchmarks.md has the measurements).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=OVERNIGHT_COMMIT={}", commit());
    println!("cargo:rustc-env=OVERNIGHT_BUILD_DATE={}", build_date());
}

/// The commit built; `unknown` outside a git checkout (a crate from
/// crates.io). Looked at again when HEAD or the branch moves. (No
/// `+dirty`: a change to the tree after the build script ran would not be
/// seen, and the mark would mislead.)
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_string();
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{branch}");
        }
    }
    commit
}

/// The build's date, UTC: `SOURCE_DATE_EPOCH` when set (reproducible
/// builds), else today.
fn build_date() -> String {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
