//! The daemon among others on one PostgreSQL store (DESIGN §10): its
//! heartbeat, declaring silent hosts dead, taking their work over, and
//! standing down when it finds itself declared dead.
//!
//! Each heartbeat, a host that has been able to reach the database for a
//! whole `host_timeout` declares dead the hosts silent for longer: their
//! `running` runs are closed as `lost`, naming the host, and their claimed
//! fires that never started are claimed again here (one survivor gets
//! each) and run under the job's `catch_up`. A host that only just
//! reached the database again declares no one: after an outage of the
//! database every host is silent, none of them dead.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use tokio::time::Instant;

use super::Shared;
use super::dispatch;
use crate::fence::Fence;
use crate::lock::ClusterRequest;
use crate::runner::StopReason;
use crate::store::{Beat, Membership};
use tokio::sync::mpsc;

/// Beats every `cluster.heartbeat` and serves the requests for locks
/// across hosts, until `stop`; then hands the membership back, for
/// [`Membership::leave`].
pub async fn keep_alive(
    shared: Arc<Shared>,
    mut membership: Membership,
    fence: Arc<Fence>,
    mut requests: mpsc::UnboundedReceiver<ClusterRequest>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Membership {
    // Reached the database without a gap since then.
    let mut healthy_since = Some(Instant::now());
    let mut next_beat = Instant::now();
    loop {
        let cluster = shared.config().cluster.clone();
        // The beat first: lock requests coming one after another must not
        // keep the host from saying it is alive. Neither waits on the
        // database longer than a third of the host timeout: a call that
        // does not end by then drops the session, which is opened again.
        let patience = cluster.host_timeout / 3;
        tokio::select! {
            biased;
            _ = async { stop.wait_for(|stop| *stop).await.map(|_| ()) } => return membership,
            () = tokio::time::sleep_until(next_beat) => {}
            Some(request) = requests.recv() => {
                let served = tokio::time::timeout(patience, membership.serve(request)).await;
                if served.is_err() {
                    membership.drop_session();
                }
                continue;
            }
        }
        let sent = Instant::now();
        next_beat = sent + cluster.heartbeat;
        let beat = tokio::time::timeout(patience, membership.beat())
            .await
            .unwrap_or_else(|_| {
                membership.drop_session();
                Err(crate::store::StoreError::Server(format!(
                    "no answer within {}",
                    humantime::format_duration(patience)
                )))
            });
        match beat {
            Ok(Beat::Alive) => {
                if healthy_since.is_none() {
                    info!(target: "overnight::daemon", "cluster: the database answers again; host `{}` goes on under epoch {}", cluster.host, membership.epoch());
                }
                healthy_since.get_or_insert_with(Instant::now);
            }
            Ok(Beat::Reconnected) => {
                info!(target: "overnight::daemon", "cluster: on a new database session; host `{}` goes on under epoch {}, its locks held", cluster.host, membership.epoch());
                healthy_since.get_or_insert_with(Instant::now);
            }
            Ok(Beat::Rejoined(epoch)) => {
                stand_down(&shared, &cluster.host, epoch);
                healthy_since = Some(Instant::now());
            }
            Err(e) => {
                if healthy_since.take().is_some() {
                    warn!(target: "overnight::daemon", "cluster: heartbeat failed: {e}; no fire is claimed here until the database answers, and jobs holding locks across hosts are ended if it does not within half of `cluster.host_timeout`");
                }
                continue;
            }
        }
        // A heartbeat answered late says little of when the server heard
        // it: it must not move the fence's deadline, nor count as a
        // stretch of health (a database that stalled for everyone must
        // not get the others declared dead by the first host to return).
        if sent.elapsed() < cluster.heartbeat {
            fence.beat();
        } else {
            healthy_since = None;
            continue;
        }
        if healthy_since.is_some_and(|since| since.elapsed() >= cluster.host_timeout) {
            take_over(&shared, &cluster.host, cluster.host_timeout).await;
        }
    }
}

/// This host was declared dead while it was silent: its runs were closed
/// as `lost` and its fires taken over, so the jobs still running here are
/// ended (their locks may be another host's now), and the new epoch is
/// the one claims are made under from now on. The flow runs of this host
/// that no other took over are driven on under it (their drivers here let
/// go of them at their first save under the old one).
fn stand_down(shared: &Arc<Shared>, host: &str, epoch: i64) {
    let running = shared.runner.running();
    warn!(
        target: "overnight::daemon",
        "cluster: host `{host}` was declared dead while it was silent (paused, or cut off from the database); its fires went to other hosts. Registered again under epoch {epoch}; ending {running} job(s) still running here"
    );
    shared.epoch.store(epoch, Ordering::SeqCst);
    shared.runner.stop_all(StopReason::Fenced);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if let Err(e) = shared.resume_open_flows(true).await {
            error!(target: "overnight::daemon", "cluster: this host's open flow runs not taken up again: {e}");
        }
    });
}

/// Declares the silent hosts dead, closes their runs, and claims their
/// unstarted fires.
async fn take_over(shared: &Arc<Shared>, me: &str, timeout: Duration) {
    let store = &shared.store;
    let dead = match store.declare_dead(me).await {
        Ok(dead) => dead,
        Err(e) => {
            warn!(target: "overnight::daemon", "cluster: silent hosts not looked for: {e}");
            return;
        }
    };
    for host in dead {
        let why = format!(
            "lost: host `{host}` stopped heartbeating for more than {} and was declared dead by `{me}`; the job's outcome is unknown",
            humantime::format_duration(timeout)
        );
        warn!(target: "overnight::daemon", "cluster: host `{host}` declared dead (silent for more than {})", humantime::format_duration(timeout));
        match store.close_host_runs(&host, &why).await {
            Ok(closed) => {
                for report in closed {
                    warn!(target: "overnight::daemon", "run #{} of `{}` on `{host}` closed as lost", report.run_id, report.job);
                    super::recover::notify(shared, Some(report));
                }
            }
            Err(e) => {
                error!(target: "overnight::daemon", "runs of dead host `{host}` not closed: {e}")
            }
        }
        if let Err(e) = shared.take_over_flows(&host).await {
            error!(target: "overnight::daemon", "flow runs of dead host `{host}` not taken over: {e}");
        }
    }
    // Off the heartbeat's task: recording them may wait on the database.
    match store.orphaned_fires().await {
        Ok(orphans) if !orphans.is_empty() => {
            tokio::spawn(run_orphans(Arc::clone(shared), orphans));
        }
        Ok(_) => {}
        Err(e) => {
            warn!(target: "overnight::daemon", "cluster: fires of dead hosts not looked for: {e}")
        }
    }
}

/// Claims and runs, as late fires, the orphaned fires of jobs this host
/// may run.
async fn run_orphans(shared: Arc<Shared>, orphans: Vec<(String, DateTime<Utc>)>) {
    let config = shared.config();
    let now = Utc::now();
    for chunk in orphans.chunk_by(|a, b| a.0 == b.0) {
        let name = &chunk[0].0;
        let fires: Vec<DateTime<Utc>> = chunk.iter().map(|(_, at)| *at).collect();
        if let Some(job) = config.job(name) {
            dispatch::dispatch(&shared, job, &fires, true, false, now).await;
        } else if let Some(flow) = config
            .flows
            .iter()
            .find(|f| dispatch::flow_key(&f.name) == *name)
        {
            dispatch::flow_fires(&shared, flow, &fires, true, now).await;
        }
    }
}
