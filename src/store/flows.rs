//! Flow runs: a row each with its plan and holds, and a row per step
//! (DESIGN §8).
//!
//! A run's rows are written before any of its steps starts; each move then
//! writes the rows it changed, in one transaction (a step's row, not the
//! whole run: a flow of a thousand steps writes as little per step as a
//! flow of three). What a crashed daemon left is exactly what the next one
//! picks up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Columns, HistoryQuery, Store, StoreError, bind_history, for_each_db, history_where, on_db,
    time_text,
};
use crate::flow::progress::{Acted, FlowStatus};
use crate::flow::{Plan, Progress, StepState};
use crate::report::Trigger;

/// Everything a flow run has come to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FlowState {
    /// The steps' states, holds and operator stops.
    pub progress: Progress,
    /// Each step's runs and times, in the plan's order.
    pub steps: Vec<StepRuns>,
    /// What operators did, in order.
    pub actions: Vec<FlowAction>,
    /// Since when it waits for an operator.
    pub held_since: Option<DateTime<Utc>>,
}

/// A step's runs: more than one when an operator retried it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepRuns {
    /// The run ids, oldest first; the last is the one that counts.
    pub runs: Vec<i64>,
    /// When it was decided (started, reached, skipped).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// One operator action on a flow run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowAction {
    /// When.
    pub at: DateTime<Utc>,
    /// What was done.
    pub action: Acted,
    /// The step it named, if any.
    pub step: Option<String>,
    /// The OS user, or the API token's name.
    pub who: String,
}

/// A flow run as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Its id, from the same sequence as runs'.
    pub id: i64,
    /// The flow's name.
    pub flow: String,
    /// What started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled runs.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its status.
    pub status: FlowStatus,
    /// The flow's definition when it started.
    pub plan: Plan,
    /// Where it stands.
    pub state: FlowState,
    /// The host.
    pub host: String,
    /// The process driving it, and that process's start time.
    #[serde(default)]
    pub driver: Option<(u32, u64)>,
}

impl FlowRecord {
    /// The flow's report: every step with its status, runs, times or why
    /// it was skipped, and the operators' actions.
    pub fn report(&self) -> serde_json::Value {
        let run = self;
        let steps: Vec<serde_json::Value> = run
            .plan
            .steps
            .iter()
            .zip(&run.state.progress.steps)
            .zip(&run.state.steps)
            .map(|((step, state), runs)| {
                let (status, why) = match state {
                    StepState::Skipped(why) => ("skipped".to_string(), Some(why.clone())),
                    StepState::Ended(known) => (known.word().to_string(), None),
                    StepState::Waiting => ("waiting".into(), None),
                    StepState::Running => ("running".into(), None),
                    StepState::Holding => ("holding".into(), None),
                };
                let duration_ms = runs
                    .started_at
                    .zip(runs.ended_at)
                    .map(|(a, b)| (b - a).num_milliseconds());
                serde_json::json!({
                    "step": step.name,
                    "status": status,
                    "why": why,
                    "runs": runs.runs,
                    "started_at": runs.started_at,
                    "ended_at": runs.ended_at,
                    "duration_ms": duration_ms,
                })
            })
            .collect();
        serde_json::json!({
            "flow": run.flow,
            "flow_run_id": run.id,
            "status": run.status,
            "trigger": run.trigger,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "steps": steps,
            "actions": run.state.actions,
        })
    }

    /// Whether the process driving it is gone (a daemon that died).
    pub fn driver_gone(&self) -> bool {
        self.driver
            .is_none_or(|(pid, started)| !crate::process::alive(pid, started))
    }
}

/// A column holding one of an enum's words.
fn word<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
) -> Result<T, sqlx::Error> {
    serde_json::from_value(serde_json::Value::String(row.text(column)?))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("flow state serialises")
}

fn time(row: &impl Columns, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row
        .maybe_text(column)?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc)))
}

fn decode<T: for<'de> Deserialize<'de>>(
    row: &impl Columns,
    column: &str,
) -> Result<T, sqlx::Error> {
    serde_json::from_str(&row.text(column)?).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The run's own state, beside its steps': the `holds` column.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Holds {
    stopped_at: Vec<usize>,
    paused: bool,
    aborted: bool,
    held_since: Option<DateTime<Utc>>,
    actions: Vec<FlowAction>,
}

/// What one move of a flow run changed: its row, and the rows of the
/// steps it touched. Written through the journal (or straight into the
/// store), as one entry: a move is recorded whole or not at all.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowSave {
    id: i64,
    status: FlowStatus,
    holds: Holds,
    finished_at: Option<DateTime<Utc>>,
    driver: Option<(u32, u64)>,
    steps: Vec<StepRow>,
    /// The host driving it: a save of a host the run was taken from (by
    /// a survivor in a cluster) changes nothing. Empty: any (an entry of
    /// an older journal).
    #[serde(default)]
    host: String,
    /// In a cluster, the driving host's epoch: the save applies only while
    /// the host holds it, alive (never in a journal: SQLite has no cluster).
    #[serde(skip)]
    epoch: Option<i64>,
}

impl FlowSave {
    /// The same, applied only while the driving host is alive under
    /// `epoch` (in a cluster).
    pub fn under(mut self, epoch: Option<i64>) -> FlowSave {
        self.epoch = epoch;
        self
    }

    /// Puts `map(id)` for the flow run's id and each step run's id (the
    /// journal's fold, for runs it recorded under another id).
    pub(super) fn map_ids(&mut self, map: impl Fn(i64) -> i64) {
        self.id = map(self.id);
        for row in &mut self.steps {
            for run in &mut row.runs {
                *run = map(*run);
            }
        }
    }
}

/// One step's row.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StepRow {
    step: usize,
    state: StepState,
    runs: Vec<i64>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl FlowSave {
    /// The rows of `run` a move changed: the run's, and those of the steps
    /// in `changed`.
    pub fn of(run: &FlowRecord, changed: &[usize]) -> FlowSave {
        FlowSave {
            id: run.id,
            status: run.status,
            holds: Holds::of(&run.state),
            finished_at: run.finished_at,
            driver: run.driver,
            host: run.host.clone(),
            epoch: None,
            steps: changed
                .iter()
                .map(|&step| StepRow {
                    step,
                    state: run.state.progress.steps[step].clone(),
                    runs: run.state.steps[step].runs.clone(),
                    started_at: run.state.steps[step].started_at,
                    ended_at: run.state.steps[step].ended_at,
                })
                .collect(),
        }
    }
}

impl Holds {
    fn of(state: &FlowState) -> Holds {
        Holds {
            stopped_at: state.progress.stopped_at.clone(),
            paused: state.progress.paused,
            aborted: state.progress.aborted,
            held_since: state.held_since,
            actions: state.actions.clone(),
        }
    }
}

/// A flow run's row, its steps not read yet.
fn record(row: &impl Columns) -> Result<FlowRecord, sqlx::Error> {
    let pid = row.maybe_int("pid")?;
    let started = row.maybe_int("driver_started")?;
    let holds: Holds = decode(row, "holds")?;
    Ok(FlowRecord {
        id: row.int("id")?,
        flow: row.text("flow")?,
        trigger: word(row, "trigger")?,
        scheduled_at: time(row, "scheduled_at")?,
        started_at: time(row, "started_at")?.unwrap_or_default(),
        finished_at: time(row, "finished_at")?,
        status: word(row, "status")?,
        plan: decode(row, "plan")?,
        state: FlowState {
            progress: Progress {
                steps: Vec::new(),
                stopped_at: holds.stopped_at,
                paused: holds.paused,
                aborted: holds.aborted,
            },
            steps: Vec::new(),
            actions: holds.actions,
            held_since: holds.held_since,
        },
        host: row.text("host")?,
        driver: pid.zip(started).map(|(p, s)| (p as u32, s as u64)),
    })
}

const COLUMNS: &str = "SELECT id, flow, trigger, scheduled_at, started_at, finished_at, status, plan, holds, host, pid, driver_started FROM flow_runs ";

impl Store {
    /// Records a flow run as it starts, with all its steps, before any of
    /// them starts.
    pub async fn insert_flow_run(&self, run: &FlowRecord) -> Result<(), StoreError> {
        on_db!(&self.db, pool, q => {
            let mut tx = pool.begin().await?;
            q::insert_flow(&mut tx, run).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records what a move of a flow run changed.
    pub async fn save_flow_run(&self, save: &FlowSave) -> Result<bool, StoreError> {
        on_db!(&self.db, pool, q => {
            let mut tx = pool.begin().await?;
            let applied = q::update_flow(&mut tx, save).await?;
            tx.commit().await?;
            Ok(applied)
        })
    }

    /// The flow run `id`.
    pub async fn flow_run(&self, id: i64) -> Result<Option<FlowRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS}WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row.as_ref().map(record).transpose()? {
                Some(run) => Ok(Some(self.with_steps(run).await?)),
                None => Ok(None),
            }
        })
    }

    /// The flow runs `filter` picks, newest first.
    pub async fn flow_history(&self, filter: &HistoryQuery) -> Result<Vec<FlowRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS}{}",
                history_where!("flow")
            )));
            let rows = bind_history!(query, filter).fetch_all(pool).await?;
            self.all_with_steps(&rows).await
        })
    }

    /// Each flow's latest end of a run that did its work (`success` or
    /// `warning`), as Unix seconds; and how many flow runs are held.
    pub async fn flow_gauges(&self) -> Result<(Vec<(String, f64)>, usize), StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT flow, MAX(finished_at) AS at FROM flow_runs \
                 WHERE status IN ('success', 'warning') AND finished_at IS NOT NULL GROUP BY flow ORDER BY flow",
            )
            .fetch_all(pool)
            .await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM flow_runs WHERE finished_at IS NULL AND status = 'held'",
            )
            .fetch_one(pool)
            .await?;
            Ok((super::named_times(&rows, "flow")?, held as usize))
        })
    }

    /// How the flow's latest run before `id` that ran to an end ended.
    pub async fn previous_flow_outcome(
        &self,
        flow: &str,
        id: i64,
    ) -> Result<Option<FlowStatus>, StoreError> {
        on_db!(&self.db, pool => {
            // Fires that did not run (missed, skipped) are no outcome.
            let row = sqlx::query(
                "SELECT status FROM flow_runs WHERE flow = $1 AND id < $2 \
                 AND status IN ('success', 'warning', 'failed', 'aborted') ORDER BY id DESC LIMIT 1",
            )
            .bind(flow)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| word(&row, "status")).transpose()?)
        })
    }

    /// The flow runs not over yet (running or held), oldest first.
    /// Takes over the open flow runs of `dead`, a host declared dead, of
    /// the flows `flows` (those this host may drive), for `host` driven
    /// by `driver`: one survivor gets each. Returns them.
    pub async fn take_flow_runs(
        &self,
        dead: &str,
        host: &str,
        driver: Option<(u32, u64)>,
        flows: &[String],
    ) -> Result<Vec<FlowRecord>, StoreError> {
        // Only a cluster has other hosts.
        let super::Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE flow_runs SET host = $2, pid = $3, driver_started = $4 \
                 WHERE finished_at IS NULL AND host = $1 AND flow = ANY($5) RETURNING id",
        )
        .bind(dead)
        .bind(host)
        .bind(driver.map(|(p, _)| i64::from(p)))
        .bind(driver.map(|(_, s)| s as i64))
        .bind(flows)
        .fetch_all(pool)
        .await?;
        let mut taken = self.open_flow_runs().await?;
        taken.retain(|run| ids.contains(&run.id));
        Ok(taken)
    }

    pub async fn open_flow_runs(&self) -> Result<Vec<FlowRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS}WHERE finished_at IS NULL ORDER BY id"
            )))
            .fetch_all(pool)
            .await?;
            self.all_with_steps(&rows).await
        })
    }

    async fn all_with_steps(&self, rows: &[impl Columns]) -> Result<Vec<FlowRecord>, StoreError> {
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            runs.push(self.with_steps(record(row)?).await?);
        }
        Ok(runs)
    }

    /// `run` with its steps' rows read in.
    async fn with_steps(&self, mut run: FlowRecord) -> Result<FlowRecord, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT state, runs, started_at, ended_at FROM flow_steps WHERE flow_run = $1 ORDER BY step",
            )
            .bind(run.id)
            .fetch_all(pool)
            .await?;
            for row in &rows {
                run.state.progress.steps.push(decode(row, "state")?);
                run.state.steps.push(StepRuns {
                    runs: decode(row, "runs")?,
                    started_at: time(row, "started_at")?,
                    ended_at: time(row, "ended_at")?,
                });
            }
            Ok(run)
        })
    }
}

for_each_db! {
/// Inserts a flow run's row and all its steps' rows.
pub(crate) async fn insert_flow(
    tx: &mut <Db as sqlx::Database>::Connection,
    run: &FlowRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flow_runs (id, flow, trigger, scheduled_at, started_at, finished_at, status, plan, holds, host, pid, driver_started) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET flow = excluded.flow, trigger = excluded.trigger, \
         scheduled_at = excluded.scheduled_at, started_at = excluded.started_at, finished_at = excluded.finished_at, \
         status = excluded.status, plan = excluded.plan, holds = excluded.holds, host = excluded.host, \
         pid = excluded.pid, driver_started = excluded.driver_started",
    )
    .bind(run.id)
    .bind(&run.flow)
    .bind(run.trigger.as_str())
    .bind(run.scheduled_at.map(time_text))
    .bind(time_text(run.started_at))
    .bind(run.finished_at.map(time_text))
    .bind(run.status.as_str())
    .bind(json(&run.plan))
    .bind(json(&Holds::of(&run.state)))
    .bind(&run.host)
    .bind(run.driver.map(|(p, _)| i64::from(p)))
    .bind(run.driver.map(|(_, s)| s as i64))
    .execute(&mut *tx)
    .await?;
    let all: Vec<usize> = (0..run.plan.steps.len()).collect();
    write_steps(tx, &FlowSave::of(run, &all)).await
}

/// Applies what a move changed, unless the run is driven by another host
/// now (or, in a cluster, its host is no longer alive under the save's
/// epoch); whether it applied.
pub(crate) async fn update_flow(
    tx: &mut <Db as sqlx::Database>::Connection,
    save: &FlowSave,
) -> Result<bool, sqlx::Error> {
    const UPDATE: &str = "UPDATE flow_runs SET status = $1, holds = $2, finished_at = $3, pid = $4, driver_started = $5 \
         WHERE id = $6 AND ($7 = '' OR host = $7)";
    const FENCED: &str = "UPDATE flow_runs SET status = $1, holds = $2, finished_at = $3, pid = $4, driver_started = $5 \
         WHERE id = $6 AND host = $7 AND EXISTS (SELECT 1 FROM hosts h WHERE h.name = $7 AND h.alive AND h.epoch = $8)";
    let sql = if save.epoch.is_some() { FENCED } else { UPDATE };
    let saved = sqlx::query(sql)
    .bind(save.status.as_str())
    .bind(json(&save.holds))
    .bind(save.finished_at.map(time_text))
    .bind(save.driver.map(|(p, _)| i64::from(p)))
    .bind(save.driver.map(|(_, s)| s as i64))
    .bind(save.id)
    .bind(&save.host)
    .bind(save.epoch)
    .execute(&mut *tx)
    .await?;
    if saved.rows_affected() == 0 {
        return Ok(false);
    }
    write_steps(tx, save).await?;
    Ok(true)
}

async fn write_steps(tx: &mut <Db as sqlx::Database>::Connection, save: &FlowSave) -> Result<(), sqlx::Error> {
    for row in &save.steps {
        sqlx::query(
            "INSERT INTO flow_steps (flow_run, step, state, runs, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (flow_run, step) DO UPDATE SET state = excluded.state, runs = excluded.runs, \
             started_at = excluded.started_at, ended_at = excluded.ended_at",
        )
        .bind(save.id)
        .bind(row.step as i64)
        .bind(json(&row.state))
        .bind(json(&row.runs))
        .bind(row.started_at.map(time_text))
        .bind(row.ended_at.map(time_text))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
}

/// In the row of step `step` of flow run `flow_run`, names run `from` as
/// `to` (the journal's fold recorded it under another id).
pub(super) async fn move_step_run(
    tx: &mut sqlx::SqliteConnection,
    flow_run: i64,
    step: &str,
    from: i64,
    to: i64,
) -> Result<(), sqlx::Error> {
    let plan: Option<String> = sqlx::query_scalar("SELECT plan FROM flow_runs WHERE id = $1")
        .bind(flow_run)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(index) = plan
        .and_then(|p| serde_json::from_str::<Plan>(&p).ok())
        .and_then(|p| p.step(step))
    else {
        return Ok(());
    };
    let runs: Option<String> =
        sqlx::query_scalar("SELECT runs FROM flow_steps WHERE flow_run = $1 AND step = $2")
            .bind(flow_run)
            .bind(index as i64)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(mut runs) = runs.and_then(|r| serde_json::from_str::<Vec<i64>>(&r).ok()) else {
        return Ok(());
    };
    for run in runs.iter_mut().filter(|r| **r == from) {
        *run = to;
    }
    sqlx::query("UPDATE flow_steps SET runs = $1 WHERE flow_run = $2 AND step = $3")
        .bind(json(&runs))
        .bind(flow_run)
        .bind(index as i64)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
