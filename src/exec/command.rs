//! The command executor: a job as a process group.
//!
//! The job runs in a process group of its own with stdin from /dev/null;
//! stdout and stderr are read concurrently, line by line. A timeout or a
//! stop request sends TERM to the whole group, then KILL after the job's
//! grace period. When the job's main process has exited, its pipes get the
//! same grace period to close (a background child may still hold them);
//! then whatever is left of the group is killed, so no run stays open and
//! no process of the job outlives it.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::lines::LineSplitter;
use super::protocol;
use super::{Attempt, EventSender, StopSignal, error_entry};
use crate::config::CommandSpec;
use crate::event::{Line, RunEvent, Stream};
use crate::report::Exit;

/// Runs one attempt of a command job to its end.
///
/// The attempt's variables and `OVERNIGHT_REPORT` are added to the job's
/// own environment. When the stop signal turns true the attempt is ended as
/// on a timeout, with reason `shutdown`.
pub async fn run(attempt: &Attempt<'_>, spec: &CommandSpec, events: EventSender) -> Exit {
    let job = attempt.job;
    let mut stop = attempt.stop.clone();
    let argv = spec.argv();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .envs(&job.env)
        .envs(attempt.env.iter().map(|(k, v)| (k, v)))
        .env("OVERNIGHT_REPORT", attempt.report_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &job.workdir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("cannot start `{}`: {e}", argv[0]);
            let _ = events.send(vec![error_entry(message.clone())]).await;
            return Exit {
                reason: Some(message),
                ..Exit::default()
            };
        }
    };
    let group = child.id().expect("a child that was just spawned has a pid") as i32;
    let readers = [
        pump(child.stdout.take(), Stream::Stdout, events.clone()),
        pump(child.stderr.take(), Stream::Stderr, events),
    ];

    let deadline = job.timeout.map(|t| Instant::now() + t);
    let mut reason = None;
    let status = tokio::select! {
        status = child.wait() => status,
        () = sleep_until_opt(deadline) => {
            reason = Some(format!("timeout after {}", humantime::format_duration(job.timeout.unwrap_or_default())));
            terminate(&mut child, group, job.kill_grace).await
        }
        () = stopped(&mut stop) => {
            reason = Some("shutdown: ended by the daemon stopping".to_string());
            terminate(&mut child, group, job.kill_grace).await
        }
    };

    // The leader is gone; background children may still hold the pipes.
    let [out, err] = readers;
    let drained = async {
        let _ = out.await;
        let _ = err.await;
    };
    tokio::pin!(drained);
    if timeout(job.kill_grace, &mut drained).await.is_err() {
        signal_group(group, libc::SIGKILL);
        drained.await;
    }
    signal_group(group, libc::SIGKILL);

    let mut exit = exit_of(status);
    exit.reason = reason;
    exit
}

/// Reads one pipe to its end, sending a batch of events per chunk read.
fn pump(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    stream: Stream,
    events: EventSender,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 64 * 1024];
        let mut splitter = LineSplitter::default();
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = Utc::now();
            let mut batch = Vec::new();
            splitter.push(&buf[..n], |bytes, cut| {
                push_line(&mut batch, at, stream, bytes, cut)
            });
            if !batch.is_empty() && events.send(batch).await.is_err() {
                return;
            }
        }
        let mut batch = Vec::new();
        splitter.finish(|bytes, cut| push_line(&mut batch, Utc::now(), stream, bytes, cut));
        if !batch.is_empty() {
            let _ = events.send(batch).await;
        }
    })
}

fn push_line(
    batch: &mut Vec<RunEvent>,
    at: chrono::DateTime<Utc>,
    stream: Stream,
    bytes: &[u8],
    cut: u64,
) {
    let text = String::from_utf8_lossy(bytes).into_owned();
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

async fn stopped(stop: &mut StopSignal) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
