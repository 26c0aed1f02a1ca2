//! The cluster's bookkeeping in PostgreSQL (DESIGN §10): the hosts, their
//! epochs and heartbeats, and the scheduled fires they claim.
//!
//! Three statements carry the guarantees (docs/cluster.md):
//! - a fire is claimed by inserting `(job, scheduled_at)` into `fires`: the
//!   primary key lets one host's insert through; a claim whose host was
//!   declared dead, and whose run never started, may be claimed again;
//! - a claimed fire's run starts by inserting its row only while the host
//!   row still holds the claim's epoch and is alive, under a share lock
//!   on that row, so that declaring the host dead waits for a start under
//!   way, and a start after it finds the epoch stale ([`Store::start_run`]);
//! - a host is declared dead by the one survivor whose update of its row
//!   says so, from the server's clock alone;
//! - a lock across hosts is a row of `run_locks` naming its host and
//!   epoch, inserted only when no live host's row excludes it (takers of
//!   one name queue on a transaction-scoped advisory lock): it holds
//!   until released or until its host is declared dead, whatever happens
//!   to the database sessions meanwhile.
//!
//! On SQLite there is one host, and every call here agrees with it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

use super::db::Db;
use super::{NewRun, Store, StoreError, time_text};
use crate::lock::{ClusterRequest, LockSpec, Mode};
use crate::report::Report;

/// The first key of the advisory locks that hold host names: "ovhs".
const HOST_LOCKS: i32 = 0x6f76_6873;

/// The first key of the advisory locks that queue the takers of one
/// lock name across hosts: "ovlk". The second is the name's `hashtext`:
/// two names with one hash only queue together.
const RUN_LOCKS: i32 = 0x6f76_6c6b;

/// What a daemon says of itself when it joins.
#[derive(Clone, Debug)]
pub struct HostCard {
    /// Its name (`host:`).
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Where its API answers.
    pub api: String,
    /// How long it may be silent before the others declare it dead.
    pub timeout: Duration,
}

/// A host of the cluster, as its row says.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostRecord {
    /// Its name.
    pub name: String,
    /// Its current epoch.
    pub epoch: i64,
    /// Whether it is not declared dead.
    pub alive: bool,
    /// Its tags.
    pub tags: Vec<String>,
    /// Where its API answers.
    pub api: Option<String>,
    /// Its daemon's pid, on its machine.
    pub pid: Option<i64>,
    /// When its daemon registered.
    pub started_at: String,
    /// Seconds since its last heartbeat, by the server's clock.
    pub silent_for: f64,
    /// When it was declared dead, or left at its shutdown.
    pub dead_since: Option<String>,
    /// The host that declared it dead.
    pub declared_by: Option<String>,
}

/// A daemon's place in the cluster: the session that holds its host name
/// (a session-level advisory lock, freed by the server when the session
/// ends) and says it is alive.
#[derive(Debug)]
pub struct Membership {
    pool: PgPool,
    conn: Option<PgConnection>,
    card: HostCard,
    epoch: i64,
    /// The locks this host holds across hosts, each with how many of its
    /// runs hold it: `run_locks` has one row for each.
    held: HashMap<LockSpec, usize>,
    /// Names released here whose rows the database has not deleted yet.
    unheld: Vec<String>,
}

/// What a heartbeat found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beat {
    /// Alive, under the same epoch.
    Alive,
    /// Alive, on a new session: the old one was cut (the server
    /// restarted). The locks held are still held: they are rows.
    Reconnected,
    /// Declared dead by the others (a pause, a partition): the epoch was
    /// stale and nothing may start under it; the host registered again
    /// under this new one.
    Rejoined(i64),
}

impl Membership {
    /// This host's current epoch.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Says the host is alive. A host that finds itself declared dead
    /// registers again under a new epoch. A session that was cut (the
    /// server restarted) is opened again and the name taken again.
    pub async fn beat(&mut self) -> Result<Beat, StoreError> {
        let reconnected = self.conn.is_none();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(take_name(&self.pool, &self.card).await?),
        };
        let beat = sqlx::query(
            "UPDATE hosts SET heartbeat_at = now() WHERE name = $1 AND epoch = $2 AND alive",
        )
        .bind(&self.card.name)
        .bind(self.epoch)
        .execute(&mut *conn)
        .await;
        match beat {
            Ok(done) if done.rows_affected() == 1 => Ok(match reconnected {
                true => Beat::Reconnected,
                false => Beat::Alive,
            }),
            Ok(_) => {
                self.epoch = register(conn, &self.card).await?;
                // The runs still holding locks here are being ended; until
                // they are, their locks are this epoch's.
                sqlx::query("UPDATE run_locks SET epoch = $2 WHERE host = $1")
                    .bind(&self.card.name)
                    .bind(self.epoch)
                    .execute(&mut *conn)
                    .await?;
                Ok(Beat::Rejoined(self.epoch))
            }
            Err(e) => {
                // Opened again at the next beat.
                self.conn = None;
                Err(e.into())
            }
        }
    }

    /// Serves a request for locks across hosts.
    pub async fn serve(&mut self, request: ClusterRequest) {
        match request {
            ClusterRequest::Take(specs, answer) => {
                let taken = self.take(&specs).await.map_err(|e| e.to_string());
                let _ = answer.send(taken);
            }
            ClusterRequest::Release(specs) => self.release(&specs).await,
        }
    }

    /// Takes `specs`, all or none: those this host holds already are
    /// counted once more; the others are inserted as its rows when no
    /// live host's row excludes them.
    async fn take(&mut self, specs: &[LockSpec]) -> Result<bool, StoreError> {
        let Some(conn) = &mut self.conn else {
            return Err(StoreError::Server(
                "the database does not answer (the heartbeat is failing)".into(),
            ));
        };
        let mut new: Vec<&LockSpec> = specs
            .iter()
            .filter(|s| !self.held.contains_key(s))
            .collect();
        new.sort();
        if !new.is_empty() {
            match take_rows(conn, &new, &self.card.name, self.epoch).await {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    self.conn = None;
                    return Err(e.into());
                }
            }
        }
        for spec in specs {
            *self.held.entry(spec.clone()).or_default() += 1;
        }
        Ok(true)
    }

    /// Releases `specs`, taken before: the rows of those no other run of
    /// this host holds are deleted. A release the database does not hear
    /// (it is away) is made again with the next.
    async fn release(&mut self, specs: &[LockSpec]) {
        for spec in specs {
            if let Some(count) = self.held.get_mut(spec) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(spec);
                    self.unheld.push(spec.name.clone());
                }
            }
        }
        // A name taken again meanwhile keeps its row.
        self.unheld
            .retain(|name| !self.held.keys().any(|held| &held.name == name));
        let Some(conn) = &mut self.conn else { return };
        if self.unheld.is_empty() {
            return;
        }
        let released = sqlx::query("DELETE FROM run_locks WHERE host = $1 AND name = ANY($2)")
            .bind(&self.card.name)
            .bind(&self.unheld)
            .execute(&mut *conn)
            .await;
        match released {
            Ok(_) => self.unheld.clear(),
            Err(_) => self.conn = None,
        }
    }

    /// Leaves the cluster at shutdown: the row says the host is gone, so
    /// the others take over at once, not after the timeout.
    pub async fn leave(mut self) {
        if let Some(conn) = &mut self.conn {
            let _ = sqlx::query("UPDATE hosts SET alive = false, dead_since = $3, declared_by = name WHERE name = $1 AND epoch = $2")
                .bind(&self.card.name)
                .bind(self.epoch)
                .bind(time_text(Utc::now()))
                .execute(&mut *conn)
                .await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// A session of its own holding host `card.name`, or why not.
async fn take_name(pool: &PgPool, card: &HostCard) -> Result<PgConnection, StoreError> {
    let mut conn = pool.acquire().await?.detach();
    // A frozen daemon's session (SIGSTOP, a paused VM) is ended by the
    // server once it is idle this long, freeing the name.
    let timeout = format!(
        "SET idle_session_timeout = {}",
        card.timeout.as_millis().max(1)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(timeout))
        .execute(&mut conn)
        .await?;
    let took: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(HOST_LOCKS)
        .bind(&card.name)
        .fetch_one(&mut conn)
        .await?;
    if !took {
        return Err(StoreError::Server(format!(
            "another daemon runs as host `{}` on this database; give each daemon its own `host:` (or `$OVERNIGHT_HOST`)",
            card.name
        )));
    }
    Ok(conn)
}

/// Inserts `host`'s rows for `specs` (sorted by name) under `epoch`,
/// unless a live host's row excludes one: whether they were inserted.
/// The takers of a name queue on an advisory lock held to the commit, so
/// that each sees the rows of those before it.
async fn take_rows(
    conn: &mut PgConnection,
    specs: &[&LockSpec],
    host: &str,
    epoch: i64,
) -> Result<bool, sqlx::Error> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let modes: Vec<&str> = specs.iter().map(|s| mode_text(s.mode)).collect();
    let mut tx = conn.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, hashtext(n)) FROM (SELECT n FROM unnest($2::text[]) AS n ORDER BY n) AS names",
    )
    .bind(RUN_LOCKS)
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO run_locks (name, host, epoch, mode) \
         SELECT w.name, $3, $4, w.mode FROM unnest($1::text[], $2::text[]) AS w(name, mode) \
         WHERE NOT EXISTS (SELECT 1 FROM run_locks l \
             JOIN hosts h ON h.name = l.host AND h.epoch = l.epoch AND h.alive \
             JOIN unnest($1::text[], $2::text[]) AS x(name, mode) ON x.name = l.name \
             WHERE l.host <> $3 AND (x.mode = 'exclusive' OR l.mode = 'exclusive')) \
         ON CONFLICT (name, host) DO UPDATE SET epoch = excluded.epoch, mode = excluded.mode",
    )
    .bind(&names)
    .bind(&modes)
    .bind(host)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted.rows_affected() as usize == specs.len())
}

fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

/// Registers `card` under a new epoch, alive; returns the epoch.
async fn register(conn: &mut PgConnection, card: &HostCard) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO hosts (name, epoch, alive, tags, api, pid, started_at, heartbeat_at) \
         VALUES ($1, 1, true, $2, $3, $4, $5, now()) \
         ON CONFLICT (name) DO UPDATE SET epoch = hosts.epoch + 1, alive = true, tags = excluded.tags, \
         api = excluded.api, pid = excluded.pid, started_at = excluded.started_at, \
         heartbeat_at = now(), dead_since = NULL, declared_by = NULL \
         RETURNING epoch",
    )
    .bind(&card.name)
    .bind(card.tags.join(" "))
    .bind(&card.api)
    .bind(i64::from(std::process::id()))
    .bind(time_text(Utc::now()))
    .fetch_one(conn)
    .await?)
}

/// The PostgreSQL pool; `None` on SQLite.
fn server(db: &Db) -> Option<&PgPool> {
    match db {
        Db::Postgres(pool) => Some(pool),
        Db::Sqlite { .. } => None,
    }
}

impl Store {
    /// Joins the cluster as `card`: its name held, registered under a new
    /// epoch. `None` on SQLite: one host, no cluster.
    pub async fn join(&self, card: HostCard) -> Result<Option<Membership>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(None);
        };
        let mut conn = take_name(pool, &card).await?;
        let epoch = register(&mut conn, &card).await?;
        // An earlier daemon of this host held them; its fence ended the
        // jobs under them when it died.
        sqlx::query("DELETE FROM run_locks WHERE host = $1")
            .bind(&card.name)
            .execute(&mut conn)
            .await?;
        Ok(Some(Membership {
            pool: pool.clone(),
            conn: Some(conn),
            card,
            epoch,
            held: HashMap::new(),
            unheld: Vec::new(),
        }))
    }

    /// Claims the fires `at` of `job` for `host` under `epoch`; returns
    /// those it got. A fire another live host claimed, or whose run is
    /// recorded, is not got; one claimed by a host since declared dead
    /// (or an earlier epoch of this one) and never started is. On SQLite,
    /// every fire is this host's.
    pub async fn claim_fires(
        &self,
        job: &str,
        at: &[DateTime<Utc>],
        host: &str,
        epoch: i64,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(at.to_vec());
        };
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let times: Vec<String> = at.iter().copied().map(time_text).collect();
        // The share lock on the host row orders the claim against the
        // update that declares the host dead: a claim made just before is
        // seen by the survivor that takes the host's claims over.
        let got: Vec<String> = sqlx::query_scalar(
            "INSERT INTO fires (job, scheduled_at, host, epoch, claimed_at) \
             SELECT $1, at, h.name, h.epoch, $5 FROM hosts h CROSS JOIN unnest($2::text[]) AS at \
             WHERE h.name = $3 AND h.epoch = $4 AND h.alive FOR SHARE OF h \
             ON CONFLICT (job, scheduled_at) DO UPDATE \
             SET host = excluded.host, epoch = excluded.epoch, claimed_at = excluded.claimed_at \
             WHERE NOT fires.done AND NOT EXISTS (SELECT 1 FROM hosts o \
                 WHERE o.name = fires.host AND o.epoch = fires.epoch AND o.alive) \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = fires.job AND r.scheduled_at = fires.scheduled_at) \
             RETURNING scheduled_at",
        )
        .bind(job)
        .bind(&times)
        .bind(host)
        .bind(epoch)
        .bind(time_text(Utc::now()))
        .fetch_all(pool)
        .await?;
        Ok(at
            .iter()
            .copied()
            .filter(|t| got.contains(&time_text(*t)))
            .collect())
    }

    /// Marks claimed fires of `job` done that no run row will mark: the
    /// missed ones a `missed` record stands for, a flow's.
    pub async fn settle_fires(&self, job: &str, at: &[DateTime<Utc>]) -> Result<(), StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(());
        };
        let times: Vec<String> = at.iter().copied().map(time_text).collect();
        sqlx::query(
            "UPDATE fires SET done = true WHERE job = $1 AND scheduled_at = ANY($2) AND NOT done",
        )
        .bind(job)
        .bind(&times)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// The claimed fires never started whose host was declared dead (or
    /// registered again since): by job, oldest first.
    pub async fn orphaned_fires(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT f.job, f.scheduled_at FROM fires f WHERE NOT f.done \
             AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.name = f.host AND h.epoch = f.epoch AND h.alive) \
             ORDER BY f.job, f.scheduled_at",
        )
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let at: String = row.try_get("scheduled_at")?;
            if let Ok(at) = DateTime::parse_from_rfc3339(&at) {
                out.push((row.try_get("job")?, at.with_timezone(&Utc)));
            }
        }
        Ok(out)
    }

    /// Declares dead, as `by`, every other host silent for longer than
    /// its timeout (`timeout`, the cluster's); returns their names. Each
    /// is declared by one survivor only.
    pub async fn declare_dead(
        &self,
        by: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(Vec::new());
        };
        // Its locks go with it (they held nothing once it was declared).
        Ok(sqlx::query_scalar(
            "WITH dead AS (UPDATE hosts SET alive = false, dead_since = $2, declared_by = $1 \
                 WHERE alive AND name <> $1 AND heartbeat_at < now() - make_interval(secs => $3) \
                 RETURNING name), \
             freed AS (DELETE FROM run_locks WHERE host IN (SELECT name FROM dead)) \
             SELECT name FROM dead",
        )
        .bind(by)
        .bind(time_text(Utc::now()))
        .bind(timeout.as_secs_f64())
        .fetch_all(pool)
        .await?)
    }

    /// Closes as `lost` every run host `host`, declared dead, left
    /// `running`; returns their reports.
    pub async fn close_host_runs(&self, host: &str, why: &str) -> Result<Vec<Report>, StoreError> {
        let mut closed = Vec::new();
        let running: Vec<i64> = match server(&self.db) {
            Some(pool) => {
                sqlx::query_scalar("SELECT id FROM runs WHERE status = 'running' AND host = $1")
                    .bind(host)
                    .fetch_all(pool)
                    .await?
            }
            None => return Ok(closed),
        };
        for id in running {
            closed.extend(
                self.close_abandoned(id, crate::report::Status::Lost, why)
                    .await?,
            );
        }
        Ok(closed)
    }

    /// The cluster's hosts, by name; none on SQLite.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT name, epoch, alive, tags, api, pid, started_at, \
             extract(epoch FROM now() - heartbeat_at)::float8 AS silent_for, dead_since, declared_by \
             FROM hosts ORDER BY name",
        )
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let tags: String = row.try_get("tags")?;
            out.push(HostRecord {
                name: row.try_get("name")?,
                epoch: row.try_get("epoch")?,
                alive: row.try_get("alive")?,
                tags: tags.split_whitespace().map(str::to_string).collect(),
                api: row.try_get("api")?,
                pid: row.try_get("pid")?,
                started_at: row.try_get("started_at")?,
                silent_for: row.try_get("silent_for")?,
                dead_since: row.try_get("dead_since")?,
                declared_by: row.try_get("declared_by")?,
            });
        }
        Ok(out)
    }
}

/// Inserts a claimed fire's run only while `epoch` is its host's, alive;
/// whether it was written.
pub(super) async fn insert_fenced_run(
    pool: &PgPool,
    run: &NewRun,
    epoch: i64,
) -> Result<bool, sqlx::Error> {
    let done = super::runs::bind_new_run!(
        sqlx::query(
            "INSERT INTO runs (id, job, trigger, scheduled_at, started_at, status, host, pid, runner_started, locks, capture_path) \
             SELECT $1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10 FROM hosts \
             WHERE name = $6 AND epoch = $11 AND alive FOR SHARE \
             ON CONFLICT (id) DO NOTHING",
        ),
        run
    )
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
