//! Processes as the kernel sees them: identity that survives pid reuse,
//! waiting for a process that is not our child, limits set before exec,
//! and reaping the orphans a PID 1 inherits.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// A process's start time (clock ticks since boot), which with its pid
/// names it uniquely: a reused pid has a later start time.
pub fn start_time(pid: u32) -> Option<u64> {
    with_stat(pid, |fields| fields.get(19)?.parse().ok()).flatten()
}

/// Reads `/proc/PID/stat` once and hands `read` the fields after the
/// command name (state first), which may hold spaces and parentheses.
fn with_stat<T>(pid: u32, read: impl FnOnce(&[&str]) -> T) -> Option<T> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(read(&fields))
}

/// A signal's name as `kill -l` spells it (`SIGKILL`), or `signal N`.
pub fn signal_name(number: i32) -> std::borrow::Cow<'static, str> {
    let name = match number {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {number}").into(),
    };
    name.into()
}

/// Whether a process with this pid exists (zombies included).
pub fn exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether the process `pid` that started at `started` still lives (and is
/// not a zombie).
pub fn alive(pid: u32, started: u64) -> bool {
    with_stat(pid, |fields| {
        fields.first() != Some(&"Z") && fields.get(19).and_then(|s| s.parse().ok()) == Some(started)
    })
    .unwrap_or(false)
}

/// The living (not zombie) processes of the group `pgid`.
pub fn living_in_group(pgid: u32) -> Vec<u32> {
    let group = pgid.to_string();
    processes_where(|stat| stat.state != "Z" && stat.pgrp == group)
}

/// Whether any process of the group `pgid` is left.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks; a negative pid addresses the group.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Returns when the process `pid` (not necessarily our child) has exited.
/// Uses a pidfd, so nothing polls; returns at once if it is already gone.
pub async fn exited(pid: u32) {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` was just returned to us by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd stays open and the same for the AsyncFd's life.
    let Ok(fd) = (unsafe { AsyncFd::register(fd) }) else {
        return;
    };
    // A pidfd becomes readable when the process exits.
    let _ = fd.readable().await;
}

/// Hands memory freed after loading (the parser's tree, for one) back to
/// the system, so a daemon's resident size is what it keeps, not what it
/// once used.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes the daemon the reaper of its jobs' orphans: a job's background
/// processes are re-parented to the daemon (not to PID 1, which in a
/// container may be the daemon itself, or may never reap) and reaped here,
/// event-driven on SIGCHLD. Children whose status a spawner waits for are
/// tracked and left alone.
pub fn adopt_and_reap_orphans() {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    tokio::spawn(async {
        let Ok(mut sigchld) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        else {
            return;
        };
        while sigchld.recv().await.is_some() {
            // Under the registry's lock, so no child can be spawned and
            // not yet tracked while we look.
            let tracked = TRACKED.lock().expect("tracked children");
            for pid in zombie_children() {
                if !tracked.contains(&pid) {
                    // SAFETY: reaps one exited child of ours; no memory is passed.
                    unsafe {
                        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG)
                    };
                }
            }
        }
    });
}

/// Children whose exit status their spawner waits for (the reaper leaves
/// them alone). Never held across an await.
static TRACKED: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Spawns `command`, handing it the descriptors `inherit`, and tracks the
/// child until [`untrack`]: spawning under the registry's lock means the
/// reaper can never see it untracked.
pub fn spawn_tracked(
    command: &mut tokio::process::Command,
    inherit: &[BorrowedFd<'_>],
) -> std::io::Result<tokio::process::Child> {
    let mut tracked = TRACKED.lock().expect("tracked children");
    // Every child is spawned under this lock, so the descriptors made
    // inheritable here reach this child and no other; std can then use
    // posix_spawn instead of forking the whole daemon.
    set_cloexec(inherit, false);
    let child = command.spawn();
    set_cloexec(inherit, true);
    let child = child?;
    if let Some(pid) = child.id() {
        tracked.insert(pid);
    }
    Ok(child)
}

fn set_cloexec(fds: &[BorrowedFd<'_>], on: bool) {
    for fd in fds {
        // SAFETY: fcntl on descriptors borrowed for the call; no memory is
        // passed.
        unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_SETFD,
                if on { libc::FD_CLOEXEC } else { 0 },
            )
        };
    }
}

/// Sends `signal` to the process group of every job running now (each
/// job leads a group of its own); returns how many.
pub fn signal_jobs(signal: i32) -> usize {
    let tracked = TRACKED.lock().expect("tracked children");
    // SAFETY: getpgrp has no arguments and no failure.
    let own_group = unsafe { libc::getpgrp() } as u32;
    tracked
        .iter()
        // SAFETY: killpg sends a signal to a group that a child of ours
        // leads; no memory is involved. A pid that leads no group fails.
        .filter(|&&pid| pid != own_group && unsafe { libc::killpg(pid as i32, signal) } == 0)
        .count()
}

/// Stops tracking a child once its status has been collected.
pub fn untrack(pid: u32) {
    TRACKED.lock().expect("tracked children").remove(&pid);
}

/// Our children that have exited and wait to be reaped, and are ours to
/// reap.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    // SAFETY: getpgrp has no arguments and no failure.
    let own_group = unsafe { libc::getpgrp() }.to_string();
    // A zombie child of ours, outside our own process group: jobs and what
    // they leave run in groups of their own, while a child some library
    // spawned (sendmail, say) stays in ours and is its spawner's to wait for.
    let zombie = |stat: &Stat<'_>| stat.state == "Z" && stat.ppid == me && stat.pgrp != own_group;
    match own_children() {
        // Every SIGCHLD looks: our few children, not every process of the
        // machine (a scan of /proc took a millisecond per job's end, under
        // the lock the next spawn waits for).
        Some(children) => children
            .into_iter()
            .filter(|&pid| {
                with_stat(pid, |fields| match fields {
                    [state, ppid, pgrp, ..] => zombie(&Stat { state, ppid, pgrp }),
                    _ => false,
                })
                .unwrap_or(false)
            })
            .collect(),
        None => processes_where(zombie),
    }
}

/// This process's children, from each of its threads' `children` file;
/// `None` where the kernel keeps no such file.
fn own_children() -> Option<Vec<u32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        children.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Some(children)
}

/// The state, parent and process group of a process, from `/proc/PID/stat`.
struct Stat<'a> {
    state: &'a str,
    ppid: &'a str,
    pgrp: &'a str,
}

/// The pids of the processes whose stat passes `test`.
fn processes_where(test: impl Fn(&Stat<'_>) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            with_stat(*pid, |fields| match fields {
                [state, ppid, pgrp, ..] => test(&Stat { state, ppid, pgrp }),
                _ => false,
            })
            .unwrap_or(false)
        })
        .collect()
}

/// This machine's name, for the `host` column.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identity_and_exit_of_a_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time(pid).unwrap();
        assert!(alive(pid, started));
        assert!(
            !alive(pid, started + 1),
            "another start time is another process"
        );
        exited(pid).await;
        child.wait().unwrap();
        assert!(!alive(pid, started));
    }
}
