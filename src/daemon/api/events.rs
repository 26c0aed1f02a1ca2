//! `GET /api/events`: what happens now, as Server-Sent Events (DESIGN §9).
//!
//! Each event comes with its number as its SSE id and its kind as its SSE
//! event name (`run_started`, `progress`, `run_ended`, `flow`), the JSON
//! of [`LiveEvent`](crate::live::LiveEvent) as its data (in a cluster, with the `host` it
//! happened on: every host's events come to every host's watchers). A
//! watcher that falls behind is not waited for: it gets a `missed` event
//! with how many it missed (`null` when another host's events went
//! unheard), and goes on from the latest. The stream ends when the daemon
//! stops.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

use super::ApiError;

use crate::daemon::Shared;
use crate::live::Numbered;

/// The daemon's stopping, for streams that would otherwise never end.
#[derive(Clone, Debug)]
pub(super) struct Stopping(pub(super) watch::Receiver<bool>);

/// The places for streams (events, followed output): fewer than the
/// connections, so that streams held open by the hundred never keep the
/// CLI or a page's other requests out.
#[derive(Clone, Debug)]
pub(super) struct StreamPlaces(pub(super) Arc<Semaphore>);

impl StreamPlaces {
    pub(super) fn new() -> StreamPlaces {
        StreamPlaces(Arc::new(Semaphore::new(super::listener::MAX_STREAMS)))
    }

    /// A place for one more stream, or why there is none.
    pub(super) fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.0).try_acquire_owned().map_err(|_| {
            ApiError::Busy(format!(
                "{} live streams are open, the most this daemon serves; close some (other pages, `logs -f`, `status --watch`) and try again",
                super::listener::MAX_STREAMS
            ))
        })
    }
}

pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(Stopping(stop)): Extension<Stopping>,
    Extension(places): Extension<StreamPlaces>,
) -> Result<impl IntoResponse, ApiError> {
    let place = places.take()?;
    let watcher = shared.runner.live().watch();
    let stream = futures_util::stream::unfold(
        (watcher, stop, place),
        |(mut watcher, mut stop, place)| async move {
            let next = tokio::select! {
                next = watcher.recv() => next,
                _ = stop.wait_for(|s| *s) => return None,
            };
            let event = match next {
                Ok(numbered) => sse_event(&numbered),
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                    .event("missed")
                    .data(format!("{{\"missed\":{missed}}}")),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(event), (watcher, stop, place)))
        },
    );
    // Not held back by a proxy (nginx buffers answers unless told).
    Ok((
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    ))
}

fn sse_event(numbered: &Numbered) -> Event {
    Event::default()
        .id(numbered.id.to_string())
        .event(numbered.name)
        .data(&*numbered.data)
}
