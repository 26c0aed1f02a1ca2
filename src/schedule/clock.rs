//! Wall-clock time for the scheduler, real or injected.
//!
//! Fire times are wall-clock instants, so the scheduler sleeps on the wall
//! clock, not on a monotonic one: [`SystemClock`] arms a Linux timerfd on
//! `CLOCK_REALTIME` at the absolute deadline, with
//! `TFD_TIMER_CANCEL_ON_SET` so that a step of the clock (NTP, a resumed
//! VM) wakes it at once. The scheduler then reads the clock again: a
//! forward jump finds its fires due, a backward jump sleeps on. Nothing
//! polls. [`ShiftedClock`] reads a chosen instant and runs on tokio's
//! time, so tests can start anywhere in the calendar and pause time.

use std::fmt;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::io::unix::AsyncFd;

/// A boxed future, as the clock's sleep returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the scheduler reads the time and sleeps.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock instant.
    fn now(&self) -> DateTime<Utc>;

    /// Returns at `deadline`, or earlier when the clock is stepped; the
    /// caller reads [`Clock::now`] again either way.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            match realtime_timer(deadline) {
                Ok(timer) => wait_for_timer(timer).await,
                // Without a timerfd, sleep on tokio's clock, waking at least
                // every minute to notice a step.
                Err(_) => {
                    let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait.min(std::time::Duration::from_secs(60))).await;
                }
            }
        })
    }
}

/// A timerfd on CLOCK_REALTIME firing at `deadline`, cancelled by a step.
fn realtime_timer(deadline: DateTime<Utc>) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain system call; the result is checked before use.
    let fd = unsafe {
        libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let at = libc::timespec {
        tv_sec: deadline.timestamp().max(1),
        tv_nsec: i64::from(deadline.timestamp_subsec_nanos()),
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: at,
    };
    let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
    // SAFETY: `spec` outlives the call; no old value is asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an OwnedFd's descriptor stays open and the same until the
    // AsyncFd, which owns it, is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))
}

/// Waits until the timer expires or is cancelled by a clock step.
async fn wait_for_timer(timer: AsyncFd<OwnedFd>) {
    loop {
        let Ok(mut ready) = timer.readable().await else {
            return;
        };
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a local u64, as timerfd requires.
        let n = unsafe { libc::read(timer.as_raw_fd(), (&raw mut expirations).cast(), 8) };
        if n == 8 {
            return;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => ready.clear_ready(),
            // ECANCELED: the clock was stepped. Anything else: give up
            // sleeping; the caller reads the clock and decides.
            _ => return,
        }
    }
}

/// A clock that read `origin` when it was made and runs on tokio's time
/// from there (paused in tests, real otherwise).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    origin: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl ShiftedClock {
    /// A clock that reads `origin` now.
    pub fn starting_at(origin: DateTime<Utc>) -> ShiftedClock {
        ShiftedClock {
            origin,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.origin + elapsed
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        let offset = (deadline - self.origin).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep_until(self.start + offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn system_clock_wakes_at_a_wall_clock_deadline() {
        let deadline = Utc::now() + chrono::Duration::milliseconds(50);
        SystemClock.sleep_until(deadline).await;
        assert!(Utc::now() >= deadline);
        // A deadline in the past returns at once.
        SystemClock
            .sleep_until(Utc::now() - chrono::Duration::hours(1))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn shifted_clock_runs_on_paused_time() {
        let origin = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ShiftedClock::starting_at(origin);
        clock.sleep_until(origin + chrono::Duration::days(3)).await;
        assert_eq!(clock.now(), origin + chrono::Duration::days(3));
    }
}
