//! Flow runs: one row each, its plan and its state (DESIGN §8).
//!
//! A run's row is written before any of its steps starts, and again after
//! every move, as one statement: what a crashed daemon left is exactly
//! what the next one picks up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, time_text};
use crate::flow::progress::FlowStatus;
use crate::flow::{Plan, Progress, StepState};

/// Everything a flow run has come to, kept as JSON in its row.
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
    /// `resume`, `retry`, `skip`, `abort`, `hold`, or `hold_timeout`.
    pub action: String,
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
    pub trigger: String,
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
    #[serde(skip)]
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

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("flow state serialises")
}

fn time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc)))
}

fn decode<T: for<'de> Deserialize<'de>>(row: &SqliteRow, column: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn record(row: &SqliteRow) -> Result<FlowRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let pid: Option<i64> = row.try_get("pid")?;
    let started: Option<i64> = row.try_get("driver_started")?;
    Ok(FlowRecord {
        id: row.try_get("id")?,
        flow: row.try_get("flow")?,
        trigger: row.try_get("trigger")?,
        scheduled_at: time(row, "scheduled_at")?,
        started_at: time(row, "started_at")?.unwrap_or_default(),
        finished_at: time(row, "finished_at")?,
        status: serde_json::from_value(serde_json::Value::String(status))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        plan: decode(row, "plan")?,
        state: decode(row, "state")?,
        host: row.try_get("host")?,
        driver: pid.zip(started).map(|(p, s)| (p as u32, s as u64)),
    })
}

const COLUMNS: &str = "SELECT id, flow, trigger, scheduled_at, started_at, finished_at, status, plan, state, host, pid, driver_started FROM flow_runs ";

impl Store {
    /// Records a flow run as it starts, before any of its steps.
    pub async fn insert_flow_run(&self, run: &FlowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO flow_runs (id, flow, trigger, scheduled_at, started_at, status, plan, state, host, pid, driver_started) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.id)
        .bind(&run.flow)
        .bind(&run.trigger)
        .bind(run.scheduled_at.map(time_text))
        .bind(time_text(run.started_at))
        .bind(run.status.as_str())
        .bind(json(&run.plan))
        .bind(json(&run.state))
        .bind(&run.host)
        .bind(run.driver.map(|(p, _)| i64::from(p)))
        .bind(run.driver.map(|(_, s)| s as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records where a flow run stands now (and its end, once over).
    pub async fn update_flow_run(&self, run: &FlowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE flow_runs SET status = ?, state = ?, finished_at = ?, pid = ?, driver_started = ? WHERE id = ?",
        )
        .bind(run.status.as_str())
        .bind(json(&run.state))
        .bind(run.finished_at.map(time_text))
        .bind(run.driver.map(|(p, _)| i64::from(p)))
        .bind(run.driver.map(|(_, s)| s as i64))
        .bind(run.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The flow run `id`.
    pub async fn flow_run(&self, id: i64) -> Result<Option<FlowRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS}WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    /// The latest runs of `flow` (of every flow with `None`), newest first.
    pub async fn flow_history(
        &self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS}WHERE (?1 IS NULL OR flow = ?1) ORDER BY id DESC LIMIT ?2"
        )))
        .bind(flow)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// The flow runs not over yet (running or held), oldest first.
    pub async fn open_flow_runs(&self) -> Result<Vec<FlowRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS}WHERE finished_at IS NULL ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }
}
