//! `GET /api/events`: what happens now, as Server-Sent Events (DESIGN §9).
//!
//! Each event comes with its number as its SSE id and its kind as its SSE
//! event name (`run_started`, `progress`, `run_ended`, `flow`), the JSON
//! of [`LiveEvent`] as its data. A watcher that falls behind is not waited
//! for: it gets a `missed` event with how many it missed, and goes on from
//! the latest. The stream ends when the daemon stops.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::{broadcast, watch};

use crate::daemon::Shared;
use crate::live::Numbered;

/// The daemon's stopping, for streams that would otherwise never end.
#[derive(Clone, Debug)]
pub(super) struct Stopping(pub(super) watch::Receiver<bool>);

pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(Stopping(stop)): Extension<Stopping>,
) -> impl IntoResponse {
    let watcher = shared.runner.live().watch();
    let stream =
        futures_util::stream::unfold((watcher, stop), |(mut watcher, mut stop)| async move {
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
            Some((Ok::<_, Infallible>(event), (watcher, stop)))
        });
    // Not held back by a proxy (nginx buffers answers unless told).
    (
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}

fn sse_event(numbered: &Numbered) -> Event {
    let json = serde_json::to_string(&*numbered.event).expect("live events serialise");
    Event::default()
        .id(numbered.id.to_string())
        .event(numbered.event.name())
        .data(json)
}
