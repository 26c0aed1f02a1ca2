//! Live events across a cluster's hosts (DESIGN §10): what happens on
//! this host goes to the others' watchers, and what happens on theirs
//! comes to this host's (`/api/events`: the web page, `status --watch`).
//!
//! Events go out in batches, one round trip each, so that a burst of
//! progress costs the database a few statements; an event that waits too
//! long behind others is not told, as a watcher that falls behind is not
//! waited for. What is lost is a live view's, never the history's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::live::Live;
use crate::store::Store;

/// The most events told in one statement.
const BATCH: usize = 256;

/// How long a lost way to the database waits before it is tried again.
const AGAIN: Duration = Duration::from_secs(1);

/// Relays `live`'s events as `host` to and from the other hosts of
/// `store`'s cluster, until `stop`.
pub(super) fn start(
    store: &Store,
    live: &Live,
    host: &str,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let Some(told) = live.relay_as(host) else {
        return Vec::new();
    };
    vec![
        tokio::spawn(tell(store.clone(), told, stop.clone())),
        tokio::spawn(hear(store.clone(), live.clone(), stop.clone())),
    ]
}

/// Tells this host's events to the others.
async fn tell(store: Store, mut told: mpsc::Receiver<Arc<str>>, mut stop: watch::Receiver<bool>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // What waits is told before the stop is heeded.
        tokio::select! {
            biased;
            n = told.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = store.tell_hosts(&batch).await {
            log::debug!(target: "overnight::daemon", "cluster: {} live event(s) not told to the other hosts: {e}", batch.len());
        }
        batch.clear();
    }
}

/// Hears the other hosts' events and says them to this host's watchers.
async fn hear(store: Store, live: Live, mut stop: watch::Receiver<bool>) {
    // Whether events may have gone unheard since the watchers were told.
    let mut deaf = false;
    loop {
        let listening = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            listening = store.hear_hosts() => listening,
        };
        let mut hearing = match listening {
            Ok(Some(hearing)) => hearing,
            // SQLite: no other host.
            Ok(None) => return,
            Err(e) => {
                log::debug!(target: "overnight::daemon", "cluster: not listening to the other hosts just now: {e}");
                deaf = true;
                if pause(&mut stop).await {
                    return;
                }
                continue;
            }
        };
        if std::mem::take(&mut deaf) {
            live.missed_some();
        }
        loop {
            let heard = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                heard = hearing.next() => heard,
            };
            match heard {
                Ok(Some(json)) => live.heard(&json),
                Ok(None) => live.missed_some(),
                Err(e) => {
                    log::debug!(target: "overnight::daemon", "cluster: the other hosts' live events not heard just now: {e}");
                    deaf = true;
                    break;
                }
            }
        }
        if pause(&mut stop).await {
            return;
        }
    }
}

/// Waits [`AGAIN`]; true if `stop` came meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        () = tokio::time::sleep(AGAIN) => false,
    }
}
