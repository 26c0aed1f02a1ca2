//! The fence: a small process beside a cluster's daemon that ends the
//! jobs holding cluster locks when the daemon can no longer vouch for
//! them (docs/cluster.md, "Fencing").
//!
//! A cluster lock holds while its daemon's host is alive in the database;
//! once the host has been silent for `cluster.host_timeout` (a frozen,
//! cut-off or dead daemon) the others declare it dead and may take the
//! lock. The job under the lock must be gone by then, and a frozen daemon
//! cannot end it: the fence, a process of its own, does. The daemon tells it, one line at a
//! time on its stdin, each process group that holds cluster locks
//! (`+PGID`, `-PGID` when done) and each heartbeat that reached the
//! database (`beat`). No beat for half the host timeout, or its stdin
//! closed (the daemon died), and the fence kills every group it guards.
//! Half the timeout leaves the other half for the kill to land before the
//! others may declare the host dead and take its locks.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The hidden subcommand the fence runs as.
pub const SUBCOMMAND: &str = "fence";

/// The daemon's end of its fence.
#[derive(Debug)]
pub struct Fence {
    /// The fence's stdin; `None` once it is gone. Never held across an
    /// await: each message is one short write to a pipe.
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl Fence {
    /// Starts the fence (this program, as `overnight fence`), killing the
    /// guarded groups after `patience` without a beat. It is its own
    /// process group, so that a Ctrl-C meant for the daemon does not end
    /// it before the jobs it guards.
    pub fn start(patience: Duration) -> std::io::Result<Fence> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(SUBCOMMAND)
            .arg(patience.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Fence {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    /// The daemon reached the database: the fence waits another
    /// `patience`.
    pub fn beat(&self) {
        self.say("beat");
    }

    /// Guards process group `pgid`.
    pub fn guard(&self, pgid: u32) {
        self.say(&format!("+{pgid}"));
    }

    /// Guards process group `pgid` no more (its job ended).
    pub fn release(&self, pgid: u32) {
        self.say(&format!("-{pgid}"));
    }

    fn say(&self, line: &str) {
        let mut stdin = self.stdin.lock().expect("fence pipe");
        if let Some(pipe) = stdin.as_mut()
            && pipe.write_all(format!("{line}\n").as_bytes()).is_err()
        {
            log::error!(target: "overnight::daemon", "cluster: the fence process is gone; jobs holding cluster locks are not ended if this daemon freezes");
            *stdin = None;
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        // Its stdin closed, it ends the groups still guarded (none after a
        // clean shutdown) and exits.
        self.stdin.lock().expect("fence pipe").take();
        let _ = self.child.lock().expect("fence child").wait();
    }
}

/// `overnight fence MILLIS`: guards process groups as [`Fence`] tells it,
/// until its stdin closes.
pub fn watch(patience: Duration) {
    let stdin = std::io::stdin();
    let fd = stdin.as_raw_fd();
    let mut guarded: HashSet<i32> = HashSet::new();
    let mut pending = Vec::new();
    let mut deadline = Instant::now() + patience;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd we own, for the length we pass.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready > 0 {
            let mut chunk = [0u8; 4096];
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                kill_all(&mut guarded, "the daemon is gone");
                return;
            }
            pending.extend_from_slice(&chunk[..n as usize]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match std::str::from_utf8(&line[..end]).unwrap_or("") {
                    "beat" => deadline = Instant::now() + patience,
                    said => match said.split_at_checked(1) {
                        // Never 0 or 1: kill(0) and kill(-1) reach far more.
                        Some(("+", pgid)) => {
                            guarded.extend(pgid.parse::<i32>().ok().filter(|&p| p > 1))
                        }
                        Some(("-", pgid)) => {
                            pgid.parse::<i32>().map(|p| guarded.remove(&p)).ok();
                        }
                        _ => {}
                    },
                }
            }
        } else if Instant::now() >= deadline {
            kill_all(
                &mut guarded,
                "the daemon has not reached the database for half of `cluster.host_timeout`",
            );
            deadline = Instant::now() + patience;
        }
    }
}

/// Kills every guarded group, saying why on stderr (the daemon's log).
fn kill_all(guarded: &mut HashSet<i32>, why: &str) {
    for pgid in guarded.drain() {
        // SAFETY: sends a signal; no memory is involved.
        if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
            eprintln!(
                "overnight fence: killed process group {pgid}, which holds cluster locks: {why}"
            );
        }
    }
}
