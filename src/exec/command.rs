//! The command executor: a job as a process group.
//!
//! The job runs in a process group of its own with stdin from /dev/null;
//! stdout and stderr are read concurrently, line by line. Between fork and
//! exec the child receives the run's lock descriptors and its resource
//! limits. A timeout or a stop request sends TERM to the whole group, then
//! KILL after the job's grace period. When the job's main process has
//! exited, its pipes get the same grace period to close (a background child
//! may still hold them); then whatever is left of the group is killed, with
//! a warning, so no run stays open and no process of the job outlives it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::lines::LineSplitter;
use super::{Attempt, EventSender, StopSignal, protocol};
use crate::config::{CommandSpec, Job};
use crate::event::{EntryKind, Line, RunEvent, Stream};
use crate::process::{group_alive, spawn_tracked, untrack};
use crate::report::Exit;
use crate::users::Account;

/// Cron's environment: for `env_inherit: false`, the daemon's user's;
/// for a job with a `user`, that user's, whatever `env_inherit` says (the
/// daemon's environment is not another user's to read).
fn cron_environment(user: Option<&Account>) -> Vec<(String, String)> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let (home, logname) = match user {
        Some(account) => (
            account.home.to_string_lossy().into_owned(),
            account.name.clone(),
        ),
        None => (var("HOME", "/"), var("LOGNAME", &var("USER", "root"))),
    };
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("SHELL".into(), "/bin/sh".into()),
        ("HOME".into(), home),
        ("LOGNAME".into(), logname),
    ]
}

/// The command of an attempt; `report` is what `$OVERNIGHT_REPORT` says.
fn command_for(attempt: &Attempt<'_>, spec: &CommandSpec, report: &OsStr) -> Command {
    let job: &Job = attempt.job;
    let argv = spec.argv();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let user = job.user.as_deref();
    if user.is_some() || !job.env_inherit {
        command.env_clear().envs(cron_environment(user));
    }
    for name in job.withheld.iter() {
        command.env_remove(name);
    }
    command
        .envs(&job.env)
        .envs(attempt.env.iter().map(|(k, v)| (k, v)))
        .env("OVERNIGHT_REPORT", report)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // As cron does, a user's job starts in the user's home (or `/`, for an
    // account whose home is not there).
    let home = user.map(|account| match account.home.is_dir() {
        true => account.home.clone(),
        false => "/".into(),
    });
    if let Some(dir) = job.workdir.clone().or(home) {
        command.current_dir(dir);
    }
    let limits = job.limits;
    let become_user = job.user.clone().filter(|account| account.is_other());
    // A hook between fork and exec makes std fork the whole daemon instead
    // of using posix_spawn: only when there are limits to set or a user to
    // become.
    if limits != crate::config::Limits::default() || become_user.is_some() {
        // SAFETY: the hook runs in the child between fork and exec and makes
        // only async-signal-safe calls (setrlimit, setgroups, setgid,
        // setuid) on values moved in. Limits are set first, while the
        // process may still raise them.
        unsafe {
            command.pre_exec(move || {
                apply_limits(&limits)?;
                match &become_user {
                    Some(account) => account.become_it(),
                    None => Ok(()),
                }
            });
        }
    }
    command
}

/// The report file, made (0600, never through a symlink) and given to
/// `account`, open for the job to inherit.
fn handed_report(path: &std::path::Path, account: &Account) -> std::io::Result<std::fs::File> {
    let file = crate::state::create(path)?;
    file.set_len(0)?;
    std::os::unix::fs::fchown(&file, Some(account.uid), Some(account.gid))?;
    Ok(file)
}

/// In the child, between fork and exec: applies `limits`.
///
/// # Safety
/// Only `setrlimit`, which is async-signal-safe.
unsafe fn apply_limits(limits: &crate::config::Limits) -> std::io::Result<()> {
    let set = |resource, value: Option<u64>| -> std::io::Result<()> {
        let Some(value) = value else { return Ok(()) };
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: `limit` outlives the call.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_NOFILE, limits.open_files)?;
    set(libc::RLIMIT_NPROC, limits.processes)?;
    set(libc::RLIMIT_AS, limits.address_space)
}

/// What is wrong with `dir` as a working directory, if anything: spawning
/// in a missing one fails with ENOENT, which reads as if the program were
/// missing.
pub fn missing_dir(dir: &std::path::Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some(format!("workdir {} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("workdir {} does not exist", dir.display()))
        }
        Err(e) => Some(format!("workdir {}: {e}", dir.display())),
    }
}

/// Runs one attempt of a command job to its end.
///
/// The attempt's variables and `OVERNIGHT_REPORT` are added to the job's
/// own environment. When the stop signal gives a reason, the attempt is
/// ended as on a timeout, with that reason.
pub async fn run(attempt: &mut Attempt<'_>, spec: &CommandSpec, events: EventSender) -> Exit {
    let job = attempt.job;
    let not_started = |message: String| async {
        let _ = events
            .send(vec![RunEvent::entry(EntryKind::Error, message.clone())])
            .await;
        Exit {
            reason: Some(message),
            ..Exit::default()
        }
    };
    let other = job.user.as_deref().filter(|account| account.is_other());
    if let Some(why) = other.and_then(Account::refusal) {
        return not_started(why).await;
    }
    // A job run as another user cannot reach the report file's folder (the
    // state directory is the daemon's alone): it gets the file already
    // open, made its own, and writes it through `/dev/fd/N`.
    let handed = match other.map(|account| handed_report(attempt.report_file, account)) {
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            let path = attempt.report_file.display();
            return not_started(format!("cannot make the report file `{path}`: {e}")).await;
        }
        None => None,
    };
    let report = match &handed {
        Some(file) => format!("/dev/fd/{}", file.as_raw_fd()).into(),
        None => attempt.report_file.as_os_str().to_owned(),
    };
    let mut inherit = attempt.lock_fds.to_vec();
    inherit.extend(handed.as_ref().map(|file| file.as_fd()));
    let spawned = spawn_tracked(&mut command_for(attempt, spec, &report), &inherit);
    drop(handed);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let message = match job.workdir.as_deref().and_then(missing_dir) {
                Some(why) => format!("cannot start: {why}"),
                None => format!("cannot start `{}`: {e}", spec.argv()[0].to_string_lossy()),
            };
            return not_started(message).await;
        }
    };
    let pid = child.id().expect("a child that was just spawned has a pid");
    if let Some(spawned) = attempt.spawned.take() {
        let _ = spawned.send(pid);
    }
    let group = pid as i32;
    let reader = pump(child.stdout.take(), child.stderr.take(), events.clone());

    let deadline = job.timeout.map(|t| Instant::now() + t);
    let mut reason = None;
    let status = tokio::select! {
        status = child.wait() => status,
        () = sleep_until_opt(deadline) => {
            reason = Some(format!("timeout after {}", humantime::format_duration(job.timeout.unwrap_or_default())));
            terminate(&mut child, group, job.kill_grace).await
        }
        why = stopped(&mut attempt.stop) => {
            reason = Some(why);
            terminate(&mut child, group, job.kill_grace).await
        }
    };
    untrack(pid);

    // The leader is gone; background children may still hold the pipes.
    let drained = async {
        let _ = reader.await;
    };
    tokio::pin!(drained);
    let pipes_closed = timeout(job.kill_grace, &mut drained).await.is_ok();
    let leftovers = !pipes_closed || group_alive(pid);
    if leftovers {
        signal_group(group, libc::SIGKILL);
        if !pipes_closed {
            drained.await;
        }
    }
    // After a timeout or a stop the group was ended on purpose; otherwise
    // processes the job left behind are worth a word.
    if leftovers && reason.is_none() {
        let message = if pipes_closed {
            "the job exited leaving processes running in its group; they were ended".to_string()
        } else {
            format!(
                "the job exited but processes it started kept its output open; they were ended after {}",
                humantime::format_duration(job.kill_grace)
            )
        };
        let _ = events
            .send(vec![RunEvent::entry(EntryKind::Warning, message)])
            .await;
    }

    let mut exit = exit_of(status);
    exit.reason = reason;
    exit
}

/// Reads both pipes to their end in one task, sending a batch of events
/// per chunk read, in the order the chunks arrive: a line the job wrote to
/// stdout before one to stderr is sent first whenever the reads could tell
/// them apart (two tasks would race each other to the channel). Neither
/// pipe is starved: when both are ready, either may go first.
fn pump(
    stdout: Option<impl AsyncRead + Unpin + Send + 'static>,
    stderr: Option<impl AsyncRead + Unpin + Send + 'static>,
    events: EventSender,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = Pipe::new(stdout, Stream::Stdout);
        let mut err = Pipe::new(stderr, Stream::Stderr);
        loop {
            let batch = tokio::select! {
                batch = out.next(), if out.open() => batch,
                batch = err.next(), if err.open() => batch,
                else => return,
            };
            if !batch.is_empty() && events.send(batch).await.is_err() {
                return;
            }
        }
    })
}

/// One of the job's output pipes, read chunk by chunk into lines.
struct Pipe<R> {
    pipe: Option<R>,
    stream: Stream,
    buf: Vec<u8>,
    splitter: LineSplitter,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(pipe: Option<R>, stream: Stream) -> Pipe<R> {
        Pipe {
            pipe,
            stream,
            // Not zeroed: a job that prints little touches one page of it.
            buf: Vec::with_capacity(64 * 1024),
            splitter: LineSplitter::default(),
        }
    }

    fn open(&self) -> bool {
        self.pipe.is_some()
    }

    /// The lines of the next chunk; at the end, the last unfinished line,
    /// and the pipe is closed. Cancel-safe: nothing is read until the read
    /// completes.
    async fn next(&mut self) -> Vec<RunEvent> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Vec::new();
        };
        self.buf.clear();
        let read = pipe.read_buf(&mut self.buf).await;
        let mut batch = Vec::new();
        let stream = self.stream;
        match read {
            Ok(n) if n > 0 => {
                let at = Utc::now();
                self.splitter.push(&self.buf[..n], |bytes, cut| {
                    push_line(&mut batch, at, stream, bytes, cut)
                });
            }
            _ => {
                self.pipe = None;
                self.splitter
                    .finish(|bytes, cut| push_line(&mut batch, Utc::now(), stream, bytes, cut));
            }
        }
        batch
    }
}

fn push_line(
    batch: &mut Vec<RunEvent>,
    at: chrono::DateTime<Utc>,
    stream: Stream,
    bytes: &[u8],
    cut: u64,
) {
    // Valid UTF-8 (nearly every line) is checked at memory speed; only
    // other lines take the slower lossy path.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    let mut said = Vec::new();
    let protocol = protocol::parse(&text, at, &mut said);
    batch.push(RunEvent::Line(Line {
        at,
        stream,
        text,
        cut,
        protocol,
    }));
    batch.append(&mut said);
}

/// TERM to the group, KILL after `grace`; returns the leader's status.
async fn terminate(child: &mut Child, group: i32, grace: Duration) -> std::io::Result<ExitStatus> {
    signal_group(group, libc::SIGTERM);
    match timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(group, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// Sends `signal` to every process of the group; a group already gone is
/// not an error.
fn signal_group(group: i32, signal: i32) {
    // SAFETY: killpg has no memory effects; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(group, signal);
    }
}

fn exit_of(status: std::io::Result<ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => Exit {
            code: s.code(),
            signal: s.signal(),
            ..Exit::default()
        },
        Err(e) => Exit {
            reason: Some(format!("cannot wait for the job: {e}")),
            ..Exit::default()
        },
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Returns the reason once the attempt is asked to stop.
pub(super) async fn stopped(stop: &mut StopSignal) -> String {
    // The read guard must not live across the await below.
    let reason = stop
        .wait_for(Option::is_some)
        .await
        .map(|r| r.as_ref().map(ToString::to_string).unwrap_or_default());
    match reason {
        Ok(reason) => reason,
        Err(_) => std::future::pending().await,
    }
}
