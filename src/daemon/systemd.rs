//! systemd's readiness protocol (`sd_notify`), for `Type=notify` units:
//! `READY=1` once the API answers and missed fires are caught up,
//! `STOPPING=1` when shutdown begins, and `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` from the scheduler's own runtime. Without
//! `NOTIFY_SOCKET`, nothing is sent. (A reload, by SIGHUP from
//! `ExecReload`, needs no message with `Type=notify`.)
//!
//! The variables systemd sets for the daemon are its own: jobs do not
//! inherit them ([`crate::config::SYSTEMD_VARIABLES`]), or a job's own
//! `systemd-notify` could speak for the daemon.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (`READY=1`, …) to systemd, when it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy();
    // `@name` is an abstract socket.
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path.as_ref()),
    };
    let sent = address
        .and_then(|address| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address));
    if let Err(e) = sent {
        log::warn!(target: "overnight::daemon", "systemd was not told `{state}` on `{path}`: {e}");
    }
}

/// How often systemd wants a `WATCHDOG=1`: half its `WATCHDOG_USEC`, when
/// that is meant for this process.
pub fn watchdog_every() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    if pid.is_some_and(|pid| pid != std::process::id().to_string()) {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
