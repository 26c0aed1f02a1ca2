//! Memory stays bounded whatever a job prints: the peak RSS of the
//! `overnight exec` process (and its job, reaped by it) is measured by the
//! kernel and read with wait4.

use std::process::Stdio;

use crate::helper::Sandbox;

/// The limit the issue sets.
const LIMIT_KB: i64 = 64 * 1024;

/// Runs `overnight exec -- sh -c SCRIPT`; returns (exit code, peak RSS in KiB).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its rusage"
)]
fn peak_rss(sb: &Sandbox, script: &str) -> (i32, i64) {
    let child = sb
        .command(&["exec", "--name", "flood", "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

#[test]
fn five_hundred_megabytes_without_a_newline_in_bounded_memory() {
    let sb = Sandbox::new();
    let (code, rss) = peak_rss(&sb, "head -c 500000000 /dev/zero");
    eprintln!("peak RSS for 500 MB without a newline: {rss} KiB");
    assert_eq!(code, 0);
    assert!(rss < LIMIT_KB, "peak RSS {rss} KiB");
    let capture = sb.read("state/runs/flood/1.log");
    assert!(
        capture.ends_with(&format!(" [cut: {} bytes]\n", 500_000_000 - 64 * 1024)),
        "the cut is recorded"
    );
}

#[test]
fn five_million_short_lines_in_bounded_memory() {
    let sb = Sandbox::new();
    let (code, rss) = peak_rss(&sb, "seq 5000000");
    eprintln!("peak RSS for 5 million lines: {rss} KiB");
    assert_eq!(code, 0);
    assert!(rss < LIMIT_KB, "peak RSS {rss} KiB");
    // Every line is read; the capture file keeps the first 64 MiB of them
    // (capture_max's default) and counts the rest in its last line.
    let capture = sb.read("state/runs/flood/1.log");
    assert!(capture.len() <= (64 << 20) + 512, "{} bytes", capture.len());
    let kept = capture.lines().count() - 1;
    let note = capture.lines().last().unwrap();
    assert!(
        note.contains(&format!(
            "capture_max (67108864 bytes) reached: {} later line(s)",
            5_000_000 - kept
        )),
        "{note}"
    );
    let last_kept = capture.lines().nth(kept - 1).unwrap();
    assert!(
        last_kept.ends_with(&format!("\tout\t{kept}")),
        "{last_kept}"
    );
}
