//! `overnight daemon [-c FILE]`: the scheduler in the foreground.

use tokio::net::TcpListener;

use super::signals::Signals;
use super::{CliError, ConfigArg};
use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load()?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot listen on {}: {e}; is another daemon running? set another address with `listen:` in the jobs file",
            config.listen
        ))
    })?;
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
