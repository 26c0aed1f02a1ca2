//! `overnight daemon [-c FILE]`: the scheduler in the foreground.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::signals::Signals;
use super::{CliError, ConfigArg};
use crate::config::{Config, DEFAULT_LISTEN};
use crate::daemon::DaemonError;
use crate::exit::Outcome;
use crate::lock::DaemonLock;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load()?;
    let listener = listen(&config).await?;
    let mut signals = Signals::catch(&[libc::SIGINT, libc::SIGTERM])?;
    // The first signal stops the daemon, which gives running jobs their
    // grace period; a second ends them now (TERM), a third kills them.
    let shutdown = async move {
        signals.next().await;
        tokio::spawn(async move {
            for (nth, sent) in [(2, libc::SIGTERM), (3, libc::SIGKILL)] {
                let number = signals.next().await;
                let count = crate::process::signal_jobs(sent);
                let what = if sent == libc::SIGTERM {
                    "sending them TERM now; a third signal kills them (KILL)"
                } else {
                    "sending them KILL"
                };
                log::warn!(
                    target: "overnight::daemon",
                    "{} again (signal {nth}): {count} running job(s): {what}",
                    crate::process::signal_name(number)
                );
            }
        });
    };
    crate::daemon::run(config, listener, shutdown).await?;
    Ok(Outcome::Success)
}

/// The API's socket: the file's `listen:`, else the default address, else
/// (another daemon, of another jobs file, has it) any free port on
/// loopback — clients find it on the daemon's card. An address that is
/// taken by a daemon of the same state directory names that daemon.
async fn listen(config: &Config) -> Result<TcpListener, CliError> {
    let addr = config
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses"));
    let taken = match TcpListener::bind(addr).await {
        Ok(listener) => return Ok(listener),
        Err(e) => e,
    };
    // The same state directory's daemon is the likely one: name it.
    if crate::state::prepare(&config.state_dir).is_ok()
        && let Err(held) = DaemonLock::take(&config.state_dir)
    {
        return Err(CliError::Daemon(DaemonError::AlreadyRunning(held)));
    }
    if config.listen.is_none() {
        let fallback = SocketAddr::new(addr.ip(), 0);
        if let Ok(listener) = TcpListener::bind(fallback).await {
            if let Ok(took) = listener.local_addr() {
                eprintln!(
                    "note: {addr} is taken ({taken}); the API listens on {took} (set `listen:` for a fixed address)"
                );
            }
            return Ok(listener);
        }
    }
    Err(CliError::Usage(format!(
        "cannot listen on {addr}: {taken}; another program (or a daemon of another jobs file) has it: set another address with `listen:` in the jobs file"
    )))
}
