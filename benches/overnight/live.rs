//! A hundred followers of a job printing a million lines (issue 14): the
//! job's wall time with them against without, in the same run, and the
//! daemon's memory at its peak against at rest.
//!
//! The job waits on a gate file, then prints `seq 1000000`; its time runs
//! from the gate's opening to the end of `POST /api/jobs/flood/run` (the
//! run recorded). With followers, the gate opens once all of them are
//! connected to `GET /api/runs/{id}/output?follow=1`. The followers stand
//! for browsers on other machines: they run at the lowest priority here,
//! so that what is measured is what serving them costs the daemon, not
//! what reading costs them. Each must get every line and the `end` event.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;

use super::*;
use scale::status_field;

const FOLLOWERS: usize = 100;
const LINES: u64 = 1_000_000;

pub(super) async fn live(b: &mut Bench) {
    let dir = b.path("live");
    let gate = dir.join("gate");
    std::fs::write(
        dir.join("overnight.yaml"),
        format!(
            "listen: 127.0.0.1:0\njobs:\n  flood:\n    command: 'while [ ! -e {} ]; do sleep 0.005; done; exec seq {LINES}'\n",
            gate.display()
        ),
    )
    .unwrap();
    let mut daemon = overnight(&dir, &["daemon"]).spawn().unwrap();
    let state = dir.join(".overnight");
    let client = loop {
        if let Some(client) = overnight::client::Client::find(&state) {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let addr = overnight::daemon::info::DaemonInfo::read(&state)
        .expect("the daemon's card")
        .addr;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = status_field(daemon.id(), "VmRSS:");

    // The job lasts a quarter of a second: rounds, alone and followed in
    // turn, and the medians.
    let rounds = if b.quick { 3 } else { 5 };
    let (mut alone_ms, mut followed_ms, mut read_ms, mut peak_kib) = (vec![], vec![], vec![], 0);
    for _ in 0..rounds {
        alone_ms.push(alone(&client, &gate).await.as_secs_f64() * 1000.0);
        let followed = followed(&client, &gate, addr, daemon.id()).await;
        let got_all = followed.lines.iter().all(|&n| n == LINES) && followed.ended == FOLLOWERS;
        assert!(
            got_all,
            "every follower gets every line and the end: {} ended, lines {:?}",
            followed.ended,
            followed
                .lines
                .iter()
                .filter(|&&n| n != LINES)
                .collect::<Vec<_>>()
        );
        followed_ms.push(followed.job.as_secs_f64() * 1000.0);
        read_ms.push(followed.all_read.as_secs_f64() * 1000.0);
        peak_kib = peak_kib.max(followed.peak_kib);
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    b.row(
        "live: 1M-line job, 100 followers / none",
        median(&mut followed_ms),
        median(&mut alone_ms),
        "ms",
        "<= 1.3",
        |r| r <= 1.3,
        format!(
            "medians of {rounds} rounds: alone {alone_ms:.0?}, followed {followed_ms:.0?}; the followers had every line {:.1} s after the gate",
            median(&mut read_ms) / 1000.0
        ),
    );

    b.row(
        "live: daemon's peak RSS above idle",
        peak_kib.saturating_sub(idle_kib) as f64 / 1024.0,
        64.0,
        "MiB",
        "<= 64 MiB",
        |r| r <= 1.0,
        format!("idle {:.1} MiB", idle_kib as f64 / 1024.0),
    );
}

/// The job's time with no one following.
async fn alone(client: &overnight::client::Client, gate: &Path) -> Duration {
    let _ = std::fs::remove_file(gate);
    let run = start(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    std::fs::write(gate, "").unwrap();
    run.await.unwrap();
    start.elapsed()
}

/// A run of `flood` through the daemon, ended and recorded.
fn start(client: &overnight::client::Client) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        match client.run("flood").await {
            Ok(overnight::runner::Outcome::Ran(report)) => {
                assert_eq!(report.status, overnight::report::Status::Success)
            }
            other => panic!("the flood ran: {other:?}"),
        }
    })
}

struct Followed {
    job: Duration,
    all_read: Duration,
    lines: Vec<u64>,
    ended: usize,
    peak_kib: u64,
}

/// The job's time with [`FOLLOWERS`] following it from its start.
async fn followed(
    client: &overnight::client::Client,
    gate: &Path,
    addr: SocketAddr,
    pid: u32,
) -> Followed {
    let _ = std::fs::remove_file(gate);
    let mut events = client.stream("/api/events", None).await.unwrap();
    let run = start(client);
    let id: i64 = loop {
        let event = events.next().await.unwrap().expect("the events go on");
        if event.event == "run_started" {
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            break data["run_id"].as_i64().unwrap();
        }
    };
    drop(events);
    let (connected, all_connected) = mpsc::channel();
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| {
            let connected = connected.clone();
            std::thread::spawn(move || follow(addr, id, &connected))
        })
        .collect();
    for _ in 0..FOLLOWERS {
        all_connected.recv().expect("every follower connects");
    }
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(status_field(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let start = Instant::now();
    std::fs::write(gate, "").unwrap();
    run.await.unwrap();
    let job = start.elapsed();
    let read: Vec<(u64, bool)> = tokio::task::spawn_blocking(move || {
        followers.into_iter().map(|f| f.join().unwrap()).collect()
    })
    .await
    .unwrap();
    let all_read = start.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    Followed {
        job,
        all_read,
        lines: read.iter().map(|(n, _)| *n).collect(),
        ended: read.iter().filter(|(_, end)| *end).count(),
        peak_kib: sampler.join().unwrap(),
    }
}

/// One follower, at the lowest priority: says when the daemon has
/// answered, then counts the lines until the stream ends; whether it saw
/// the `end` event.
fn follow(addr: SocketAddr, id: i64, connected: &mpsc::Sender<()>) -> (u64, bool) {
    // SAFETY: changes this thread's nice value, nothing else.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    let mut stream = TcpStream::connect(addr).unwrap();
    // HTTP/1.0: the body ends with the connection, in no chunks.
    write!(
        stream,
        "GET /api/runs/{id}/output?follow=1 HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).unwrap();
    assert!(
        line.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&line)
    );
    while line != b"\r\n" {
        line.clear();
        reader.read_until(b'\n', &mut line).unwrap();
    }
    connected.send(()).unwrap();
    let text = memchr::memmem::Finder::new(b"\"text\":");
    let (mut lines, mut ended) = (0, false);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return (lines, ended);
        }
        if line.starts_with(b"data:") {
            lines += text.find_iter(&line).count() as u64;
        } else if line.starts_with(b"event: end") {
            ended = true;
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
