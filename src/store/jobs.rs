//! The job and flow definitions each host last loaded, for SQL that joins
//! runs with them, and for `check --cluster` to tell hosts that run
//! different definitions of one job apart.

use chrono::Utc;
use sqlx::Row;

use super::{BeginWrite, Db, Store, StoreError, on_db, time_text};
use crate::config::Job;
use crate::config::flow::Flow;

/// One definition as a host loaded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    /// `job` or `flow`.
    pub kind: &'static str,
    /// The job's or flow's name.
    pub name: String,
    /// The host that loaded it.
    pub host: String,
    /// A digest of the definition: equal when the definitions are.
    pub hash: String,
    /// When that host last loaded a change of it.
    pub updated_at: String,
}

/// A job's or flow's definition text and its digest, as stored.
fn stored(definition: String) -> (String, String) {
    let hash = format!("{:016x}", fnv1a(definition.as_bytes()));
    (definition, hash)
}

/// What a flow's runs follow, as text: its schedule, zone, policies,
/// placement and plan.
fn flow_definition(flow: &Flow) -> String {
    serde_json::json!({
        "schedule": flow.schedule.as_ref().map(ToString::to_string),
        "timezone": flow.timezone.to_string(),
        "catch_up": format!("{:?}", flow.catch_up),
        "concurrency": format!("{:?}", flow.concurrency),
        "placement": flow.placement,
        "plan": &*flow.plan,
    })
    .to_string()
}

impl Store {
    /// Mirrors the definitions `host` loaded: its rows match `jobs` and
    /// `flows`, the other hosts' stay (on SQLite there are none).
    pub async fn sync_definitions(
        &self,
        host: &str,
        jobs: &[std::sync::Arc<Job>],
        flows: &[std::sync::Arc<Flow>],
    ) -> Result<(), StoreError> {
        let key = self.definition_key().await?;
        let now = time_text(Utc::now());
        let job_names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let flow_names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
        // One host on SQLite: rows of another name are an earlier one's.
        let only_host = !self.is_server();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for (table, names) in [("jobs", &job_names), ("flows", &flow_names)] {
                let known: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM {table} WHERE host = $1"
                )))
                .bind(host)
                .fetch_all(&mut *tx)
                .await?;
                for gone in known.iter().filter(|n| !names.contains(&n.as_str())) {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE host = $1 AND name = $2"
                    )))
                    .bind(host)
                    .bind(gone)
                    .execute(&mut *tx)
                    .await?;
                }
                if only_host {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE host <> $1"
                    )))
                    .bind(host)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for job in jobs {
                let (definition, hash) = stored(job.definition(&key));
                sqlx::query(
                    "INSERT INTO jobs (host, name, schedule, kind, definition, definition_hash, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (host, name) DO UPDATE SET schedule = excluded.schedule, kind = excluded.kind, \
                     definition = excluded.definition, definition_hash = excluded.definition_hash, \
                     updated_at = excluded.updated_at WHERE jobs.definition_hash <> excluded.definition_hash",
                )
                .bind(host)
                .bind(&job.name)
                .bind(job.schedule.as_ref().map(ToString::to_string))
                .bind(job.kind())
                .bind(&definition)
                .bind(hash)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            for flow in flows {
                let (definition, hash) = stored(flow_definition(flow));
                sqlx::query(
                    "INSERT INTO flows (host, name, schedule, definition, definition_hash, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (host, name) DO UPDATE SET schedule = excluded.schedule, \
                     definition = excluded.definition, definition_hash = excluded.definition_hash, \
                     updated_at = excluded.updated_at WHERE flows.definition_hash <> excluded.definition_hash",
                )
                .bind(host)
                .bind(&flow.name)
                .bind(flow.schedule.as_ref().map(ToString::to_string))
                .bind(&definition)
                .bind(hash)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The digests `jobs` and `flows` would be stored under here: for
    /// `check --cluster` to compare a jobs file with what hosts run.
    pub async fn definitions_of(
        &self,
        host: &str,
        jobs: &[std::sync::Arc<Job>],
        flows: &[std::sync::Arc<Flow>],
    ) -> Result<Vec<Definition>, StoreError> {
        let key = self.definition_key().await?;
        let definition = |kind, name: &str, text| Definition {
            kind,
            name: name.to_string(),
            host: host.to_string(),
            hash: stored(text).1,
            updated_at: String::new(),
        };
        Ok(jobs
            .iter()
            .map(|j| definition("job", &j.name, j.definition(&key)))
            .chain(
                flows
                    .iter()
                    .map(|f| definition("flow", &f.name, flow_definition(f))),
            )
            .collect())
    }

    /// The definitions the live hosts of a cluster loaded, by kind, name
    /// and host; none on SQLite.
    pub async fn cluster_definitions(&self) -> Result<Vec<Definition>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (kind, table) in [("job", "jobs"), ("flow", "flows")] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT d.name, d.host, d.definition_hash, d.updated_at FROM {table} d \
                 JOIN hosts h ON h.name = d.host AND h.alive ORDER BY d.name, d.host"
            )))
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(Definition {
                    kind,
                    name: row.try_get("name")?,
                    host: row.try_get("host")?,
                    hash: row.try_get("definition_hash")?,
                    updated_at: row.try_get("updated_at")?,
                });
            }
        }
        Ok(out)
    }

    /// The key of digests of job environments. On SQLite, the state
    /// directory's own (`definition-key`). In a cluster, one in the
    /// database that every host uses, so that one definition digests the
    /// same on each (a reader of the database can test guesses of an
    /// `env` value against it, as one of the state directory could).
    async fn definition_key(&self) -> Result<[u8; 32], StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return self.local_definition_key();
        };
        let mut fresh = [0u8; 32];
        crate::state::random_bytes(&mut fresh)
            .map_err(|e| StoreError::Server(format!("no random bytes for a key: {e}")))?;
        // The first host to come makes it; the others read it.
        sqlx::query(
            "INSERT INTO cluster_keys (name, key) VALUES ('definitions', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&fresh[..])
        .execute(pool)
        .await?;
        let key: Vec<u8> =
            sqlx::query_scalar("SELECT key FROM cluster_keys WHERE name = 'definitions'")
                .fetch_one(pool)
                .await?;
        key.try_into()
            .map_err(|_| StoreError::Server("the cluster's definitions key is not 32 bytes".into()))
    }

    /// The state directory's key for digests of job environments
    /// (`definition-key`, 32 random bytes, 0600), made on first use.
    fn local_definition_key(&self) -> Result<[u8; 32], StoreError> {
        use std::io::{Read, Write};
        let path = self.state_dir.join("definition-key");
        let mut key = [0u8; 32];
        let made = crate::state::random_bytes(&mut key).and_then(|()| {
            // The first process to make it wins; the others read its key.
            let mut file = crate::state::create_new(&path)?;
            file.write_all(&key)
        });
        match made {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut file = crate::state::open_read(&path).map_err(StoreError::file(&path))?;
                file.read_exact(&mut key).map_err(StoreError::file(&path))?;
                Ok(key)
            }
            Err(e) => Err(StoreError::file(&path)(e)),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for "has this definition changed".
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
