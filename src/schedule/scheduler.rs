//! The scheduler: a timer queue driven by a clock.
//!
//! [`Scheduler::due`] sleeps until the first deadline, reads the clock
//! again, and returns what is due. A job whose later fires are also past —
//! after a suspend or a forward clock step — comes back once with all of
//! them, marked late, for its catch-up policy to decide; the queue then
//! resumes from the present, so no fire is run twice and none vanishes.
//! `due` is cancel-safe: it changes nothing until its sleep is over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Schedule;
use super::catchup::{LATE_AFTER, MAX_LISTED};
use super::clock::Clock;
use super::queue::{Deadline, JobId, TimerQueue};

/// What the scheduler needs of a job.
#[derive(Clone, Debug)]
pub struct Timing {
    /// When it fires.
    pub schedule: Schedule,
    /// Its stable delay after each fire.
    pub delay: Duration,
}

/// The fires of one job that are due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The job.
    pub job: JobId,
    /// Its due fire times, oldest first.
    pub fires: Vec<DateTime<Utc>>,
    /// Not on time: more than one fire, or one well past its deadline.
    pub late: bool,
    /// More fires were due than are listed.
    pub more: bool,
}

/// Sleeps until fires are due and says which.
#[derive(Debug)]
pub struct Scheduler {
    clock: Arc<dyn Clock>,
    queue: TimerQueue,
    timings: Vec<Option<Timing>>,
}

impl Scheduler {
    /// A scheduler for these jobs (`None` for a job with no clock
    /// schedule), armed from the clock's present.
    pub fn new(clock: Arc<dyn Clock>, timings: Vec<Option<Timing>>) -> Scheduler {
        let mut scheduler = Scheduler {
            clock,
            queue: TimerQueue::default(),
            timings: Vec::new(),
        };
        scheduler.rearm(timings);
        scheduler
    }

    /// Replaces the jobs (on reload) and arms each from the present.
    pub fn rearm(&mut self, timings: Vec<Option<Timing>>) {
        self.queue.clear();
        self.timings = timings;
        let now = self.clock.now();
        for job in 0..self.timings.len() {
            self.arm_after(job, now);
        }
    }

    /// How many jobs have a pending deadline.
    pub fn armed(&self) -> usize {
        self.queue.len()
    }

    /// The clock the scheduler reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn arm_after(&mut self, job: JobId, after: DateTime<Utc>) {
        let Some(timing) = &self.timings[job] else {
            return;
        };
        if let Some(nominal) = timing.schedule.next_after(after) {
            let delay = chrono::Duration::from_std(timing.delay).unwrap_or_default();
            self.queue.push(Deadline {
                at: nominal + delay,
                job,
                nominal,
            });
        }
    }

    /// Waits until at least one fire is due and returns every due fire.
    pub async fn due(&mut self) -> Vec<Due> {
        loop {
            match self.queue.next() {
                Some(first) => self.clock.sleep_until(first).await,
                None => std::future::pending().await,
            }
            let now = self.clock.now();
            let popped = self.queue.pop_due(now);
            if popped.is_empty() {
                continue;
            }
            return popped.into_iter().map(|d| self.gather(d, now)).collect();
        }
    }

    /// The popped fire and any later fires of the same job already past.
    fn gather(&mut self, first: Deadline, now: DateTime<Utc>) -> Due {
        let timing = self.timings[first.job]
            .as_ref()
            .expect("only scheduled jobs are queued");
        let delay = chrono::Duration::from_std(timing.delay).unwrap_or_default();
        let mut fires = vec![first.nominal];
        let mut more = false;
        let mut last = first.nominal;
        while let Some(next) = timing
            .schedule
            .next_after(last)
            .filter(|t| *t + delay <= now)
        {
            if fires.len() == MAX_LISTED {
                more = true;
                break;
            }
            fires.push(next);
            last = next;
        }
        let late = fires.len() > 1 || (now - first.at).to_std().unwrap_or_default() > LATE_AFTER;
        self.arm_after(first.job, if more { now } else { last });
        Due {
            job: first.job,
            fires,
            late,
            more,
        }
    }
}

/// A job's stable delay within `window`: the same every time for the same
/// name, spread evenly across names, so runs stay evenly spaced.
pub fn jitter(name: &str, window: Duration) -> Duration {
    let millis = window.as_millis() as u64;
    if millis == 0 {
        return Duration::ZERO;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Duration::from_millis(hash % millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::clock::ShiftedClock;
    use crate::zone::Zone;

    fn timing(expr: &str) -> Option<Timing> {
        Some(Timing {
            schedule: Schedule::parse(expr, Zone::utc()).unwrap(),
            delay: Duration::ZERO,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fires_in_order_on_paused_time() {
        let origin: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = Arc::new(ShiftedClock::starting_at(origin));
        let mut s = Scheduler::new(
            clock,
            vec![timing("*/20 * * * * *"), None, timing("*/30 * * * * *")],
        );
        let mut seen = Vec::new();
        while seen.len() < 5 {
            for due in s.due().await {
                assert!(!due.late);
                seen.push((due.job, due.fires[0].format("%S").to_string()));
            }
        }
        let want = [(0, "20"), (2, "30"), (0, "40"), (0, "00"), (2, "00")];
        assert_eq!(seen, want.map(|(j, s)| (j, s.to_string())));
    }

    /// A clock that can be stepped like an NTP step or a resumed VM.
    #[derive(Debug)]
    struct SteppedClock {
        inner: ShiftedClock,
        step: std::sync::Mutex<chrono::Duration>,
        stepped: tokio::sync::Notify,
    }

    impl SteppedClock {
        fn step(&self, by: chrono::Duration) {
            *self.step.lock().unwrap() += by;
            self.stepped.notify_waiters();
        }
    }

    impl Clock for SteppedClock {
        fn now(&self) -> DateTime<Utc> {
            self.inner.now() + *self.step.lock().unwrap()
        }

        fn sleep_until(&self, deadline: DateTime<Utc>) -> crate::schedule::clock::Sleep<'_> {
            // Like the timerfd: wakes at the deadline or when stepped.
            let real = deadline - *self.step.lock().unwrap();
            Box::pin(async move {
                tokio::select! {
                    () = self.inner.sleep_until(real) => {}
                    () = self.stepped.notified() => {}
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn clock_steps_neither_repeat_nor_lose_a_fire() {
        let origin: DateTime<Utc> = "2026-01-01T00:00:30Z".parse().unwrap();
        let clock = Arc::new(SteppedClock {
            inner: ShiftedClock::starting_at(origin),
            step: std::sync::Mutex::new(chrono::Duration::zero()),
            stepped: tokio::sync::Notify::new(),
        });
        let mut s = Scheduler::new(clock.clone(), vec![timing("* * * * *")]);
        let first = s.due().await;
        assert_eq!(
            first[0].fires,
            ["2026-01-01T00:01:00Z".parse::<DateTime<Utc>>().unwrap()]
        );

        // Forward an hour: the 60 fires passed over come back once, late.
        let forward = async {
            tokio::task::yield_now().await;
            clock.step(chrono::Duration::hours(1));
        };
        let (due, ()) = tokio::join!(s.due(), forward);
        assert_eq!(due.len(), 1);
        assert!(due[0].late);
        assert_eq!(due[0].fires.len(), 60);
        assert_eq!(
            due[0].fires.last().unwrap().to_rfc3339(),
            "2026-01-01T01:01:00+00:00"
        );

        // Back an hour: nothing fires again until the clock passes 01:02.
        clock.step(chrono::Duration::hours(-1));
        let due = s.due().await;
        assert!(!due[0].late);
        assert_eq!(due[0].fires[0].to_rfc3339(), "2026-01-01T01:02:00+00:00");
        assert!(clock.now() >= due[0].fires[0]);
    }

    #[test]
    fn jitter_is_stable_and_within_the_window() {
        let w = Duration::from_secs(300);
        assert_eq!(jitter("backup", w), jitter("backup", w));
        assert!(jitter("backup", w) < w);
        assert_ne!(jitter("backup", w), jitter("report", w));
        assert_eq!(jitter("x", Duration::ZERO), Duration::ZERO);
    }
}
