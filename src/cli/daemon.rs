//! `overnight daemon [-c FILE]`: the scheduler in the foreground.

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

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
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Usage(format!("cannot handle SIGTERM: {e}")))?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    crate::daemon::run(config, listener, shutdown).await?;
    Ok(Outcome::Success)
}
