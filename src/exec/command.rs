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

use std::ffi::CString;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::lines::LineSplitter;
use super::{Attempt, EventSender, StopSignal, protocol};
use crate::account::{Account, AccountError};
use crate::config::{CommandSpec, Job};
use crate::event::{EntryKind, Line, RunEvent, Stream};
use crate::process::{group_alive, spawn_tracked, untrack};
use crate::report::Exit;

/// Cron's environment: for `env_inherit: false`, the daemon's user's;
/// for a job with a `user`, that user's, whatever `env_inherit` says (the
/// daemon's environment is not another user's to read).
fn cron_environment(user: Option<&Account>) -> Vec<(String, String)> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let mut env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("SHELL".to_string(), "/bin/sh".to_string()),
    ];
    match user {
        Some(account) => env.extend([
            ("HOME".into(), account.home.to_string_lossy().into_owned()),
            ("LOGNAME".into(), account.name.clone()),
            ("USER".into(), account.name.clone()),
        ]),
        None => env.extend([
            ("HOME".into(), var("HOME", "/")),
            ("LOGNAME".into(), var("LOGNAME", &var("USER", "root"))),
        ]),
    }
    env
}

/// What a job run as another user is given, since it cannot reach the
/// state directory (the daemon's alone): the account, and the files it
/// would find there, made its own and handed open (`/dev/fd/N`).
struct Handover {
    account: Account,
    /// `$OVERNIGHT_REPORT`, empty, for the job to write.
    report: File,
    /// A copy of `$OVERNIGHT_FLOW_DETAILS`, for a step of a flow.
    details: Option<File>,
}

impl Handover {
    fn prepare(account: Account, attempt: &Attempt<'_>) -> std::io::Result<Handover> {
        let given = |path: &Path| -> std::io::Result<File> {
            let file = crate::state::create(path)?;
            file.set_len(0)?;
            std::os::unix::fs::fchown(&file, Some(account.uid), Some(account.gid))?;
            Ok(file)
        };
        let report = given(attempt.report_file)?;
        let details = match attempt.var("OVERNIGHT_FLOW_DETAILS") {
            Some(source) => {
                let mut copy = given(&attempt.report_file.with_extension("flow-details.json"))?;
                copy.write_all(&std::fs::read(source)?)?;
                copy.seek(std::io::SeekFrom::Start(0))?;
                Some(copy)
            }
            None => None,
        };
        Ok(Handover {
            account,
            report,
            details,
        })
    }

    /// The descriptors the job inherits.
    fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        std::iter::once(self.report.as_fd()).chain(self.details.as_ref().map(|f| f.as_fd()))
    }
}

/// How a handed file is named to the job.
fn fd_path(file: &File) -> String {
    format!("/dev/fd/{}", file.as_raw_fd())
}

/// The command of an attempt, run as `account` when it has one.
fn command_for(
    attempt: &Attempt<'_>,
    spec: &CommandSpec,
    account: Option<&Account>,
    handover: Option<&Handover>,
) -> std::io::Result<Command> {
    let job: &Job = attempt.job;
    let argv = spec.argv();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if account.is_some() || !job.env_inherit {
        command.env_clear().envs(cron_environment(account));
    }
    for name in job.withheld.iter() {
        command.env_remove(name);
    }
    command
        .envs(&job.env)
        .envs(attempt.env.iter().map(|(k, v)| (k, v)))
        .env("OVERNIGHT_REPORT", attempt.report_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(handover) = handover {
        command.env("OVERNIGHT_REPORT", fd_path(&handover.report));
        if let Some(details) = &handover.details {
            command.env("OVERNIGHT_FLOW_DETAILS", fd_path(details));
        }
    }
    // As cron does, a user's job starts in the user's home, or in `/` when
    // it cannot go there.
    let mut starts: Vec<PathBuf> = job.workdir.iter().cloned().collect();
    if let (None, Some(account)) = (&job.workdir, account) {
        starts.extend([account.home.clone(), "/".into()]);
    }
    let limits = job.limits;
    let becomes = handover.map(|h| h.account.clone());
    match (&becomes, starts.first()) {
        // Another user goes to its folder as itself, once it is that
        // user: root could enter folders the user cannot. Without a
        // folder, the job starts where the daemon is.
        (Some(_), _) | (None, None) => {}
        (None, Some(dir)) if job.workdir.is_some() || dir.is_dir() => {
            command.current_dir(dir);
        }
        (None, Some(_)) => {
            command.current_dir("/");
        }
    }
    // A hook between fork and exec makes std fork the whole daemon instead
    // of using posix_spawn: only when there are limits to set or a user to
    // become.
    if limits != crate::config::Limits::default() || becomes.is_some() {
        let starts: Vec<CString> = match becomes {
            Some(_) => starts
                .iter()
                .map(|dir| CString::new(dir.as_os_str().as_bytes()))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        // SAFETY: the hook runs in the child between fork and exec and makes
        // only async-signal-safe calls (setrlimit; setgroups, setgid,
        // setuid, umask; chdir) on values made before the fork. Limits come
        // first, while the process may still raise them.
        unsafe {
            command.pre_exec(move || {
                apply_limits(&limits)?;
                if let Some(account) = &becomes {
                    account.become_it()?;
                    enter_first(&starts)?;
                }
                Ok(())
            });
        }
    }
    Ok(command)
}

/// In the child: goes to the first of `dirs` it can enter; the first's
/// error when it can enter none.
///
/// # Safety
/// Only `chdir`, which is async-signal-safe.
unsafe fn enter_first(dirs: &[CString]) -> std::io::Result<()> {
    let mut first = None;
    for dir in dirs {
        // SAFETY: a C string that lives for the call.
        if unsafe { libc::chdir(dir.as_ptr()) } == 0 {
            return Ok(());
        }
        first.get_or_insert_with(std::io::Error::last_os_error);
    }
    first.map_or(Ok(()), Err)
}

/// The account a run of a job with `user: name` runs as, looked up off
/// the async workers (NSS may ask a server), and one this process can
/// become.
async fn account_for_run(name: String) -> Result<Account, AccountError> {
    let account = tokio::task::spawn_blocking(move || Account::lookup(&name))
        .await
        .expect("a lookup does not panic")?;
    account.may_become()?;
    Ok(account)
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
    // The user is looked up at each run: one removed or changed since the
    // file was read is seen.
    let account = match &job.user {
        Some(name) => match account_for_run(name.clone()).await {
            Ok(account) => Some(account),
            Err(e) => return not_started(e.to_string()).await,
        },
        None => None,
    };
    let handover = match account.clone().filter(Account::is_other) {
        Some(other) => match Handover::prepare(other, attempt) {
            Ok(handover) => Some(handover),
            Err(e) => {
                let path = attempt.report_file.display();
                return not_started(format!(
                    "cannot hand the job its files beside `{path}`: {e}"
                ))
                .await;
            }
        },
        None => None,
    };
    let mut inherit = attempt.lock_fds.to_vec();
    inherit.extend(handover.iter().flat_map(Handover::fds));
    let spawned = command_for(attempt, spec, account.as_ref(), handover.as_ref())
        .and_then(|mut command| spawn_tracked(&mut command, &inherit));
    drop(handover);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let program = spec.argv()[0].to_string_lossy().into_owned();
            let message = match (&account, job.workdir.as_deref().and_then(missing_dir)) {
                (_, Some(why)) => format!("cannot start: {why}"),
                (Some(account), None) => {
                    let dir = job
                        .workdir
                        .as_ref()
                        .map(|d| format!(" in `{}`", d.display()));
                    format!(
                        "cannot start `{program}` as user `{}`{}: {e}",
                        account.name,
                        dir.unwrap_or_default()
                    )
                }
                (None, None) => format!("cannot start `{program}`: {e}"),
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
