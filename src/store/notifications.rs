//! Trigger deliveries, kept with the runs they were about.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError, for_each_db, on_db, time_text};
use crate::report::Status;

/// One delivery of a trigger, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notification {
    /// The run it was about.
    pub run_id: i64,
    /// Its job.
    pub job: String,
    /// The rule.
    pub rule: String,
    /// `run`, `email`, `webhook` or `log`.
    pub action: String,
    /// The condition it answered.
    pub condition: String,
    /// How the delivery went.
    pub status: DeliveryStatus,
    /// What happened (the error of a failed delivery).
    pub detail: Option<String>,
    /// When.
    pub at: String,
}

/// How a trigger's delivery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Delivered: the program ran, the server took the message or the call.
    Sent,
    /// Tried and not delivered; the detail says why.
    Failed,
    /// Not tried: the rule's `max_per_hour` was reached.
    Suppressed,
}

impl DeliveryStatus {
    /// The name used in the store and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
        }
    }

    fn parse(text: &str) -> Result<DeliveryStatus, sqlx::Error> {
        match text {
            "sent" => Ok(DeliveryStatus::Sent),
            "failed" => Ok(DeliveryStatus::Failed),
            "suppressed" => Ok(DeliveryStatus::Suppressed),
            other => Err(sqlx::Error::Decode(
                format!("unknown delivery status `{other}`").into(),
            )),
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

for_each_db! {
/// Inserts one delivery of a trigger.
pub(crate) async fn insert_notification<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    n: &Notification,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (run_id, job, rule, action, condition, status, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(n.run_id)
    .bind(&n.job)
    .bind(&n.rule)
    .bind(&n.action)
    .bind(&n.condition)
    .bind(n.status.as_str())
    .bind(n.detail.as_deref().map(crate::store::text_of))
    .bind(&n.at)
    .execute(db)
    .await?;
    Ok(())
}
}

impl Store {
    /// Records one delivery of a trigger (or why it was not made).
    pub async fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        Ok(on_db!(&self.db, pool, q => q::insert_notification(pool, n).await)?)
    }

    /// The deliveries about a run, in order.
    pub async fn notifications(&self, run_id: i64) -> Result<Vec<Notification>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT run_id, job, rule, action, condition, status, detail, at FROM notifications WHERE run_id = $1 ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Notification {
                        run_id: r.try_get("run_id")?,
                        job: r.try_get("job")?,
                        rule: r.try_get("rule")?,
                        action: r.try_get("action")?,
                        condition: r.try_get("condition")?,
                        status: DeliveryStatus::parse(r.try_get("status")?)?,
                        detail: r.try_get("detail")?,
                        at: r.try_get("at")?,
                    })
                })
                .collect()
        })
    }

    /// How many messages a rule sent since `since`.
    pub async fn sent_since(&self, rule: &str, since: DateTime<Utc>) -> Result<i64, StoreError> {
        on_db!(&self.db, pool => {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(DISTINCT run_id || ':' || condition) FROM notifications WHERE rule = $1 AND status = 'sent' AND at > $2",
            )
            .bind(rule)
            .bind(time_text(since))
            .fetch_one(pool)
            .await?)
        })
    }

    /// The outcome of the job's latest run before `run_id` that ran to an
    /// end (not skipped or missed).
    pub async fn previous_outcome(
        &self,
        job: &str,
        run_id: i64,
    ) -> Result<Option<Status>, StoreError> {
        on_db!(&self.db, pool => {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM runs WHERE job = $1 AND id < $2 \
                 AND status IN ('success', 'warning', 'failed', 'lost', 'orphaned') ORDER BY id DESC LIMIT 1",
            )
            .bind(job)
            .bind(run_id)
            .fetch_optional(pool)
            .await?;
            Ok(status.and_then(|s| s.parse().ok()))
        })
    }
}
