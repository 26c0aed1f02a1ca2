//! What happens now, for whoever watches: runs starting, moving on and
//! ending, flow runs' steps and holds (DESIGN §3, the `live` sink; §9).
//!
//! One bounded broadcast per process. Publishing never waits and costs
//! next to nothing with no one watching; a watcher that falls behind is
//! not waited for either: it is told how many events it missed. Lines of
//! output are not here — a follower reads them from the run's capture
//! file — so a job printing millions of lines puts nothing on this
//! channel but its progress.
//!
//! In a cluster each event also names the host it happened on, and goes
//! to the other hosts (the daemon's relay tells them through the
//! database); what they tell comes back here through [`Live::heard`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::event::Progress;
use crate::flow::progress::FlowStatus;
use crate::report::fold::RunHeader;
use crate::report::{Report, Status};

/// How many events a watcher may fall behind before it misses some.
const BEHIND: usize = 4096;

/// The longest progress message told (the report keeps it whole): what
/// waits for a slow watcher stays a few megabytes.
const MESSAGE_MAX: usize = 512;

/// `text` cut to [`MESSAGE_MAX`] bytes, at a character's edge.
fn short(text: &str) -> &str {
    let mut end = text.len().min(MESSAGE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One thing that happened, as watchers see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A run started (each attempt).
    RunStarted {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// Its attempt, from 1.
        attempt: u32,
        /// What started it.
        trigger: &'static str,
        /// When.
        at: DateTime<Utc>,
    },
    /// A run said how far it has come.
    Progress {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// Percent done, when it said.
        #[serde(skip_serializing_if = "Option::is_none")]
        percent: Option<f64>,
        /// What it is doing.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A run's attempt ended.
    RunEnded {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// Its attempt.
        attempt: u32,
        /// How it ended.
        status: Status,
        /// Its summary.
        summary: String,
        /// How long it took.
        duration_ms: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A flow run moved: started, a step started, ended, skipped or held,
    /// an operator acted, it ended.
    Flow {
        /// The flow run.
        flow_run_id: i64,
        /// Its flow.
        flow: String,
        /// Its status after the move.
        status: FlowStatus,
        /// The step it concerns, if one.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// What happened, as `flows::status` says it.
        what: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl LiveEvent {
    /// Its kind, as its `event` field and its SSE event name say it.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::RunStarted { .. } => "run_started",
            LiveEvent::Progress { .. } => "progress",
            LiveEvent::RunEnded { .. } => "run_ended",
            LiveEvent::Flow { .. } => "flow",
        }
    }
}

impl LiveEvent {
    /// The kind named `name`, as [`LiveEvent::name`] says it.
    fn named(name: &str) -> Option<&'static str> {
        ["run_started", "progress", "run_ended", "flow"]
            .into_iter()
            .find(|known| *known == name)
    }
}

/// An event as it is told: in a cluster, with the host it happened on.
#[derive(Serialize)]
struct Told<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(flatten)]
    event: &'a LiveEvent,
}

/// Where an event another host told happened, and its kind.
#[derive(serde::Deserialize)]
struct Origin {
    host: String,
    event: String,
}

/// An event with its number: watchers resume after the last they saw.
#[derive(Clone, Debug)]
pub struct Numbered {
    /// Its number in this process, from 1.
    pub id: u64,
    /// Its kind (`run_started`, …, or `missed`).
    pub name: &'static str,
    /// It as JSON, as watchers get it.
    pub data: Arc<str>,
}

/// The way to the other hosts of a cluster.
#[derive(Debug)]
struct Relay {
    /// This host's name, in each event.
    host: String,
    /// The events on their way out; full, an event is not told.
    out: mpsc::Sender<Arc<str>>,
}

/// How many events may wait for the relay before some are not told.
const RELAY_WAITING: usize = 4096;

/// The most an event told to other hosts may hold (PostgreSQL's
/// notifications hold under 8000 bytes).
pub const RELAY_MAX: usize = 7900;

/// The process's live events, and its running runs' output growing.
#[derive(Clone, Debug)]
pub struct Live {
    sender: broadcast::Sender<Numbered>,
    /// The next event's number; held while it is sent, so that numbers
    /// go out in order (never across an await).
    next: Arc<Mutex<u64>>,
    /// Each running attempt's count of batches written to its capture
    /// file: a follower waits on it instead of looking again and again
    /// (the lock is never held across an await).
    outputs: Arc<Mutex<HashMap<i64, Tapped>>>,
    /// In a cluster, the way to the other hosts.
    relay: Arc<OnceLock<Relay>>,
}

/// A running attempt as followers see it.
#[derive(Debug)]
struct Tapped {
    /// Its count of batches written.
    grew: watch::Sender<u64>,
    /// What it last said of its progress.
    progress: Option<ProgressNow>,
}

/// How far a running run says it has come.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ProgressNow {
    /// Percent done, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// What it is doing.
    pub message: String,
    /// When it said so.
    pub at: DateTime<Utc>,
}

impl ProgressNow {
    fn of(progress: &Progress) -> ProgressNow {
        ProgressNow {
            percent: progress.percent,
            message: short(&progress.message).to_string(),
            at: progress.at,
        }
    }
}

impl Default for Live {
    fn default() -> Live {
        Live {
            sender: broadcast::Sender::new(BEHIND),
            next: Arc::new(Mutex::new(1)),
            outputs: Arc::default(),
            relay: Arc::default(),
        }
    }
}

/// A running attempt's tap on its output: tells followers the capture
/// file grew; gone with the attempt.
#[derive(Debug)]
pub struct OutputTap {
    run_id: i64,
    grew: watch::Sender<u64>,
    outputs: Arc<Mutex<HashMap<i64, Tapped>>>,
}

impl OutputTap {
    /// The capture file grew (a batch of lines is written and flushed).
    pub fn grew(&self) {
        if self.grew.receiver_count() > 0 {
            self.grew.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for OutputTap {
    fn drop(&mut self) {
        let mut outputs = self.outputs.lock().expect("outputs");
        if outputs
            .get(&self.run_id)
            .is_some_and(|t| t.grew.same_channel(&self.grew))
        {
            outputs.remove(&self.run_id);
        }
    }
}

impl Live {
    /// Whether anyone watches, here or (in a cluster) on another host:
    /// an event worth some work to make need not be made otherwise.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0 || self.relay.get().is_some()
    }

    /// Says `event` to whoever watches now, and in a cluster to the other
    /// hosts.
    pub fn publish(&self, event: LiveEvent) {
        if !self.watched() {
            return;
        }
        let relay = self.relay.get();
        let told = Told {
            host: relay.map(|r| r.host.as_str()),
            event: &event,
        };
        let data: Arc<str> = serde_json::to_string(&told)
            .expect("live events serialise")
            .into();
        if let Some(relay) = relay {
            if data.len() > RELAY_MAX {
                log::debug!(target: "overnight::daemon", "cluster: a {} event of {} bytes not told to the other hosts", event.name(), data.len());
            } else if relay.out.try_send(Arc::clone(&data)).is_err() {
                log::debug!(target: "overnight::daemon", "cluster: a {} event not told to the other hosts (too many waiting)", event.name());
            }
        }
        self.tell(event.name(), data);
    }

    /// Says an event of kind `name`, as JSON, to this process's watchers.
    fn tell(&self, name: &'static str, data: Arc<str>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let mut next = self.next.lock().expect("live numbers");
        let _ = self.sender.send(Numbered {
            id: *next,
            name,
            data,
        });
        *next += 1;
    }

    /// From now on, events name `host` and go to the other hosts: the
    /// receiver gets them, for the daemon's relay to tell. `None` if it
    /// was done before.
    pub fn relay_as(&self, host: &str) -> Option<mpsc::Receiver<Arc<str>>> {
        let (out, told) = mpsc::channel(RELAY_WAITING);
        let relay = Relay {
            host: host.to_string(),
            out,
        };
        self.relay.set(relay).ok().map(|()| told)
    }

    /// An event another host told (JSON, as [`Live::publish`] made it):
    /// said to this process's watchers. This host's own, and what is not
    /// an event, are let go.
    pub fn heard(&self, json: &str) {
        let Ok(origin) = serde_json::from_str::<Origin>(json) else {
            return;
        };
        let ours = self.relay.get().is_some_and(|r| r.host == origin.host);
        if let (false, Some(name)) = (ours, LiveEvent::named(&origin.event)) {
            self.tell(name, json.into());
        }
    }

    /// Events of other hosts may have gone unheard (this host's way to
    /// them was cut a while): watchers are told to look again.
    pub fn missed_some(&self) {
        self.tell("missed", Arc::from(r#"{"missed":null,"hosts":true}"#));
    }

    /// Everything published from now on.
    pub fn watch(&self) -> broadcast::Receiver<Numbered> {
        self.sender.subscribe()
    }

    /// The tap a running attempt of run `run_id` tells its output's
    /// growth through.
    pub fn output_tap(&self, run_id: i64) -> OutputTap {
        let grew = watch::Sender::new(0);
        self.outputs.lock().expect("outputs").insert(
            run_id,
            Tapped {
                grew: grew.clone(),
                progress: None,
            },
        );
        OutputTap {
            run_id,
            grew,
            outputs: Arc::clone(&self.outputs),
        }
    }

    /// Run `run_id`'s output growing, while an attempt of it runs in this
    /// process; the receiver ends with the attempt.
    pub fn output(&self, run_id: i64) -> Option<watch::Receiver<u64>> {
        let outputs = self.outputs.lock().expect("outputs");
        outputs.get(&run_id).map(|t| t.grew.subscribe())
    }

    /// What run `run_id` last said of its progress, while an attempt of
    /// it runs in this process.
    pub fn progress_now(&self, run_id: i64) -> Option<ProgressNow> {
        let outputs = self.outputs.lock().expect("outputs");
        outputs.get(&run_id).and_then(|t| t.progress.clone())
    }

    /// A run's attempt started.
    pub fn run_started(&self, header: &RunHeader) {
        if !self.watched() {
            return;
        }
        self.publish(LiveEvent::RunStarted {
            run_id: header.run_id,
            job: header.job.clone(),
            attempt: header.attempt,
            trigger: header.trigger.as_str(),
            at: header.started_at,
        });
    }

    /// A run said how far it has come.
    pub fn progress(&self, header: &RunHeader, progress: &Progress) {
        let now = ProgressNow::of(progress);
        if let Some(tapped) = self
            .outputs
            .lock()
            .expect("outputs")
            .get_mut(&header.run_id)
        {
            tapped.progress = Some(now.clone());
        }
        if !self.watched() {
            return;
        }
        self.publish(LiveEvent::Progress {
            run_id: header.run_id,
            job: header.job.clone(),
            percent: now.percent,
            message: now.message,
            at: now.at,
        });
    }

    /// A run's attempt ended.
    pub fn run_ended(&self, report: &Report) {
        if !self.watched() {
            return;
        }
        self.publish(LiveEvent::RunEnded {
            run_id: report.run_id,
            job: report.job.clone(),
            attempt: report.attempt,
            status: report.status,
            summary: short(&report.summary).to_string(),
            duration_ms: report.duration_ms as i64,
            at: report.finished_at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: i64) -> LiveEvent {
        LiveEvent::Flow {
            flow_run_id: n,
            flow: "f".into(),
            status: FlowStatus::Running,
            step: None,
            what: "moved".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn every_kind_of_event_is_heard_from_another_host() {
        let at = Utc::now();
        let events = [
            LiveEvent::RunStarted {
                run_id: 1,
                job: "j".into(),
                attempt: 1,
                trigger: "manual",
                at,
            },
            LiveEvent::Progress {
                run_id: 1,
                job: "j".into(),
                percent: None,
                message: "m".into(),
                at,
            },
            LiveEvent::RunEnded {
                run_id: 1,
                job: "j".into(),
                attempt: 1,
                status: Status::Success,
                summary: String::new(),
                duration_ms: 0,
                at,
            },
            flow(1),
        ];
        for event in events {
            assert_eq!(LiveEvent::named(event.name()), Some(event.name()));
        }
    }

    #[test]
    fn progress_messages_are_cut_at_a_characters_edge() {
        let long = format!("a{}", "\u{e9}".repeat(300));
        assert_eq!(short(&long).len(), 511);
        assert_eq!(short("halfway"), "halfway");
    }

    #[tokio::test]
    async fn watchers_get_events_in_order_and_a_slow_one_is_told_what_it_missed() {
        let live = Live::default();
        live.publish(flow(0)); // no one watches: nothing kept
        let mut watcher = live.watch();
        for n in 1..=3 {
            live.publish(flow(n));
        }
        let ids: Vec<u64> = (0..3).map(|_| watcher.try_recv().unwrap().id).collect();
        assert_eq!(ids, [1, 2, 3]);
        for n in 0..(BEHIND as i64 + 10) {
            live.publish(flow(n));
        }
        match watcher.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(missed)) => assert_eq!(missed, 10),
            other => panic!("{other:?}"),
        }
    }
}
