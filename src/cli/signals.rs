//! The signals a foreground command answers, told apart by number.

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::CliError;

/// Handlers for a few signals, caught from their creation on.
pub(super) struct Signals(Vec<(i32, Signal)>);

impl Signals {
    /// Catches `numbers` (from now on, they no longer end the process).
    pub(super) fn catch(numbers: &[i32]) -> Result<Signals, CliError> {
        let handlers = numbers
            .iter()
            .map(|&number| Ok((number, signal(SignalKind::from_raw(number))?)))
            .collect::<std::io::Result<_>>()
            .map_err(|e| CliError::Usage(format!("cannot catch signals: {e}")))?;
        Ok(Signals(handlers))
    }

    /// The next one to come: its number.
    pub(super) async fn next(&mut self) -> i32 {
        std::future::poll_fn(|cx| {
            for (number, handler) in &mut self.0 {
                if handler.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*number);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
