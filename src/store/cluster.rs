//! The cluster's bookkeeping in PostgreSQL (DESIGN §10): the hosts, their
//! epochs and heartbeats, and the scheduled fires they claim.
//!
//! These statements carry the guarantees (docs/cluster.md):
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
use crate::lock::{ClusterRequest, LockSpec, Mode, Taken};
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

impl HostRecord {
    /// Where another host reaches its API (`http://batch1:7411`), while it
    /// is alive. (A row of an older version holds an address: `http://`
    /// is put before it, and any address, `0.0.0.0`, reaches nothing.)
    pub fn api_url(&self) -> Option<String> {
        let api = self
            .api
            .as_deref()
            .filter(|a| !a.is_empty() && self.alive)?;
        if api.contains("://") {
            return Some(api.trim_end_matches('/').to_string());
        }
        let addr: std::net::SocketAddr = api.parse().ok()?;
        (!addr.ip().is_unspecified()).then(|| format!("http://{addr}"))
    }
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
    /// Whether the session holds the host's name (taken again after the
    /// session was opened again).
    name_held: bool,
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
        self.open().await?;
        let conn = self.conn.as_mut().expect("opened");
        if !self.name_held {
            self.name_held = hold_name(conn, &self.card.name).await?;
        }
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
                // The survivor that declared it dead freed its locks; the
                // fence ended the jobs under them before that could be.
                forget_locks(conn, &self.card.name).await?;
                self.held.clear();
                self.unheld.clear();
                Ok(Beat::Rejoined(self.epoch))
            }
            Err(e) => {
                // Opened again at the next beat.
                self.conn = None;
                Err(e.into())
            }
        }
    }

    /// Opens the membership's session again (its name taken again, its
    /// lock rows made to match the locks held) when it was cut.
    async fn open(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            // The name is taken again at a beat: the old session may not
            // have ended on the server yet, and the host must go on
            // beating meanwhile.
            let mut conn = open_session(&self.pool, &self.card).await?;
            self.name_held = false;
            // A take whose answer was lost with the old session may have
            // inserted a row no run holds; a release may not have
            // deleted one.
            let held: Vec<&str> = self.held.keys().map(|s| s.name.as_str()).collect();
            sqlx::query("DELETE FROM run_locks WHERE host = $1 AND NOT (name = ANY($2))")
                .bind(&self.card.name)
                .bind(&held)
                .execute(&mut conn)
                .await?;
            self.unheld.clear();
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// Drops the session after a call that did not finish: its state is
    /// unknown. The next call opens a new one.
    pub fn drop_session(&mut self) {
        self.conn = None;
    }

    /// Serves a request for locks across hosts.
    pub async fn serve(&mut self, request: ClusterRequest) {
        match request {
            ClusterRequest::Take(specs, answer) => {
                let taken = self.take(&specs).await.map_err(|e| e.to_string());
                // Taken for a fire no longer waiting: held by nobody.
                if let Err(Ok(Taken::All)) = answer.send(taken) {
                    self.release(&specs).await;
                }
            }
            ClusterRequest::Release(specs) => self.release(&specs).await,
        }
    }

    /// Takes `specs`, all or none: those this host holds already are
    /// counted once more; the others are inserted as its rows when no
    /// live host's row excludes them.
    async fn take(&mut self, specs: &[LockSpec]) -> Result<Taken, StoreError> {
        let mut new: Vec<&LockSpec> = specs
            .iter()
            .filter(|s| !self.held.contains_key(s))
            .collect();
        new.sort();
        if !new.is_empty() {
            self.open().await?;
            let conn = self.conn.as_mut().expect("opened");
            match take_rows(conn, &new, &self.card.name, self.epoch).await {
                Ok(Taken::All) => {}
                Ok(other) => return Ok(other),
                Err(e) => {
                    self.conn = None;
                    return Err(e.into());
                }
            }
        }
        for spec in specs {
            *self.held.entry(spec.clone()).or_default() += 1;
        }
        Ok(Taken::All)
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
    let mut conn = open_session(pool, card).await?;
    if !hold_name(&mut conn, &card.name).await? {
        return Err(StoreError::Server(format!(
            "another daemon runs as host `{}` on this database; give each daemon its own `host:` (or `$OVERNIGHT_HOST`)",
            card.name
        )));
    }
    Ok(conn)
}

/// A session of its own for the membership of `card`.
async fn open_session(pool: &PgPool, card: &HostCard) -> Result<PgConnection, StoreError> {
    let mut conn = pool.acquire().await?.detach();
    // A frozen daemon's session (SIGSTOP, a paused VM) is ended by the
    // server once it is idle this long, in a transaction or not, freeing
    // the name and whatever the transaction held.
    let millis = card.timeout.as_millis().max(1);
    let timeouts = format!(
        "SET idle_session_timeout = {millis}; SET idle_in_transaction_session_timeout = {millis}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(timeouts))
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Takes the lock that holds host name `name` on the session: whether it
/// was free.
async fn hold_name(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($2, $1))")
        .bind(i64::from(HOST_LOCKS))
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Inserts `host`'s rows for `specs` under `epoch`, unless a live host's
/// row excludes one, or `epoch` is no longer the host's: whether they
/// were inserted. The takers of a name take turns on an advisory lock
/// held to the commit, so that each sees the rows of those before it; a
/// taker that finds it held is told "busy" and tries again later, never
/// waits on the server (a taker frozen in its transaction would stall
/// the others' heartbeats).
async fn take_rows(
    conn: &mut PgConnection,
    specs: &[&LockSpec],
    host: &str,
    epoch: i64,
) -> Result<Taken, sqlx::Error> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let modes: Vec<&str> = specs.iter().map(|s| mode_text(s.mode)).collect();
    let mut tx = conn.begin().await?;
    let turn: bool = sqlx::query_scalar(
        "SELECT coalesce(bool_and(pg_try_advisory_xact_lock($1, k)), true) \
         FROM (SELECT DISTINCT hashtext(n) AS k FROM unnest($2::text[]) AS n ORDER BY k) AS keys",
    )
    .bind(RUN_LOCKS)
    .bind(&names)
    .fetch_one(&mut *tx)
    .await?;
    if !turn {
        return Ok(Taken::HeldElsewhere); // the rollback releases what was taken
    }
    // The share lock on the host row orders the take against the update
    // that declares the host dead (see `claim_fires`).
    let inserted = sqlx::query(
        "INSERT INTO run_locks (name, host, epoch, mode) \
         SELECT w.name, h.name, h.epoch, w.mode FROM hosts h \
         CROSS JOIN unnest($1::text[], $2::text[]) AS w(name, mode) \
         WHERE h.name = $3 AND h.epoch = $4 AND h.alive \
         AND NOT EXISTS (SELECT 1 FROM run_locks l \
             JOIN hosts h ON h.name = l.host AND h.epoch = l.epoch AND h.alive \
             JOIN unnest($1::text[], $2::text[]) AS x(name, mode) ON x.name = l.name \
             WHERE l.host <> $3 AND (x.mode = 'exclusive' OR l.mode = 'exclusive')) \
         FOR SHARE OF h \
         ON CONFLICT (name, host) DO UPDATE SET epoch = excluded.epoch, mode = excluded.mode",
    )
    .bind(&names)
    .bind(&modes)
    .bind(host)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() as usize == specs.len() {
        tx.commit().await?;
        return Ok(Taken::All);
    }
    // None taken: another host holds one, or this one is fenced.
    let current: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT alive AND epoch = $2 FROM hosts WHERE name = $1), false)",
    )
    .bind(host)
    .bind(epoch)
    .fetch_one(&mut *tx)
    .await?;
    Ok(match current {
        true => Taken::HeldElsewhere,
        false => Taken::Fenced,
    })
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
        "INSERT INTO hosts (name, epoch, alive, tags, api, pid, started_at, heartbeat_at, timeout_ms) \
         VALUES ($1, 1, true, $2, $3, $4, $5, now(), $6) \
         ON CONFLICT (name) DO UPDATE SET epoch = hosts.epoch + 1, alive = true, tags = excluded.tags, \
         api = excluded.api, pid = excluded.pid, started_at = excluded.started_at, \
         heartbeat_at = now(), timeout_ms = excluded.timeout_ms, dead_since = NULL, declared_by = NULL \
         RETURNING epoch",
    )
    .bind(&card.name)
    .bind(card.tags.join(" "))
    .bind(&card.api)
    .bind(i64::from(std::process::id()))
    .bind(time_text(Utc::now()))
    .bind(card.timeout.as_millis() as i64)
    .fetch_one(conn)
    .await?)
}

/// Deletes host `name`'s lock rows.
async fn forget_locks(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM run_locks WHERE host = $1")
        .bind(name)
        .execute(conn)
        .await
        .map(drop)
}

/// The times of `at` whose text is in `texts`, in `at`'s order.
fn among(at: &[DateTime<Utc>], texts: &[String]) -> Vec<DateTime<Utc>> {
    at.iter()
        .copied()
        .filter(|t| texts.contains(&time_text(*t)))
        .collect()
}

/// The PostgreSQL pool; `None` on SQLite.
fn server(db: &Db) -> Option<&PgPool> {
    match db {
        Db::Postgres(pool) => Some(pool),
        Db::Sqlite { .. } => None,
    }
}

/// The pool to ask about fires `at`, and their times as the `fires` table
/// holds them; or the answer without asking: every fire on SQLite (each
/// is this host's), none for no fires.
fn asked<'d>(
    db: &'d Db,
    at: &[DateTime<Utc>],
) -> Result<(&'d PgPool, Vec<String>), Vec<DateTime<Utc>>> {
    match server(db) {
        None => Err(at.to_vec()),
        Some(_) if at.is_empty() => Err(Vec::new()),
        Some(pool) => Ok((pool, at.iter().copied().map(time_text).collect())),
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
        forget_locks(&mut conn, &card.name).await?;
        Ok(Some(Membership {
            pool: pool.clone(),
            conn: Some(conn),
            card,
            epoch,
            held: HashMap::new(),
            unheld: Vec::new(),
            name_held: true,
        }))
    }

    /// Claims the fires `at` of `job` for `host` under `epoch`; returns
    /// those it got. A fire another live host claimed, or whose run is
    /// recorded, is not got; one claimed by a host since declared dead
    /// (or an earlier epoch of this one) and never started is, and so is
    /// one this host claimed under this epoch already (a claim whose
    /// answer was lost is asked again). [`StoreError::Fenced`] when
    /// `epoch` is no longer the host's. On SQLite, every fire is this
    /// host's.
    pub async fn claim_fires(
        &self,
        job: &str,
        at: &[DateTime<Utc>],
        host: &str,
        epoch: i64,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let (pool, times) = match asked(&self.db, at) {
            Ok(asked) => asked,
            Err(answer) => return Ok(answer),
        };
        // The share lock on the host row orders the claim against the
        // update that declares the host dead: a claim made just before is
        // seen by the survivor that takes the host's claims over, one
        // made after finds the host dead (the row is read again once the
        // update commits; FOR KEY SHARE would not wait for it).
        let row = sqlx::query(
            "WITH me AS (SELECT name, epoch FROM hosts WHERE name = $3 AND epoch = $4 AND alive FOR SHARE), \
             got AS (INSERT INTO fires (job, scheduled_at, host, epoch, claimed_at) \
                 SELECT $1, at, me.name, me.epoch, $5 FROM me CROSS JOIN unnest($2::text[]) AS at \
                 ON CONFLICT (job, scheduled_at) DO UPDATE \
                 SET host = excluded.host, epoch = excluded.epoch, claimed_at = excluded.claimed_at \
                 WHERE NOT fires.done \
                 AND ((fires.host = excluded.host AND fires.epoch = excluded.epoch) \
                      OR NOT EXISTS (SELECT 1 FROM hosts o \
                          WHERE o.name = fires.host AND o.epoch = fires.epoch AND o.alive)) \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = fires.job AND r.scheduled_at = fires.scheduled_at) \
                 RETURNING scheduled_at) \
             SELECT EXISTS (SELECT 1 FROM me) AS current, \
                 coalesce((SELECT array_agg(scheduled_at) FROM got), '{}') AS got",
        )
        .bind(job)
        .bind(&times)
        .bind(host)
        .bind(epoch)
        .bind(time_text(Utc::now()))
        .fetch_one(pool)
        .await?;
        if !row.try_get::<bool, _>("current")? {
            return Err(StoreError::Fenced(host.to_string()));
        }
        let got: Vec<String> = row.try_get("got")?;
        Ok(among(at, &got))
    }

    /// Marks done the claims of `host` under `epoch` for fires of `job`
    /// that no run row will mark (the missed ones a `missed` record
    /// stands for, a flow's), while `epoch` is the host's; returns those
    /// marked: only they may be recorded or started. On SQLite, all.
    pub async fn settle_fires(
        &self,
        job: &str,
        at: &[DateTime<Utc>],
        host: &str,
        epoch: i64,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let (pool, times) = match asked(&self.db, at) {
            Ok(asked) => asked,
            Err(answer) => return Ok(answer),
        };
        // Fenced as a run's start is (`insert_fenced_run`).
        let settled: Vec<String> = sqlx::query_scalar(
            "WITH me AS (SELECT 1 FROM hosts WHERE name = $3 AND epoch = $4 AND alive FOR SHARE) \
             UPDATE fires SET done = true WHERE job = $1 AND scheduled_at = ANY($2) AND NOT done \
             AND host = $3 AND epoch = $4 AND EXISTS (SELECT 1 FROM me) RETURNING scheduled_at",
        )
        .bind(job)
        .bind(&times)
        .bind(host)
        .bind(epoch)
        .fetch_all(pool)
        .await?;
        Ok(among(at, &settled))
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
    /// its own timeout (as it registered it); returns their names. Each
    /// is declared by one survivor only.
    pub async fn declare_dead(&self, by: &str) -> Result<Vec<String>, StoreError> {
        let Some(pool) = server(&self.db) else {
            return Ok(Vec::new());
        };
        // Its locks go with it (they held nothing once it was declared).
        Ok(sqlx::query_scalar(
            "WITH dead AS (UPDATE hosts SET alive = false, dead_since = $2, declared_by = $1 \
                 WHERE name IN (SELECT name FROM hosts WHERE alive AND name <> $1 \
                     AND heartbeat_at < now() - timeout_ms * interval '1 millisecond' \
                     ORDER BY name FOR UPDATE SKIP LOCKED) \
                 RETURNING name), \
             freed AS (DELETE FROM run_locks WHERE host IN (SELECT name FROM dead)) \
             SELECT name FROM dead",
        )
        .bind(by)
        .bind(time_text(Utc::now()))
        .fetch_all(pool)
        .await?)
    }

    /// Closes as `lost` every run host `host`, declared dead, left
    /// `running`; returns their reports.
    pub async fn close_host_runs(&self, host: &str, why: &str) -> Result<Vec<Report>, StoreError> {
        let mut closed = Vec::new();
        let running: Vec<i64> = match server(&self.db) {
            Some(pool) => {
                // Its daemon's runs, started before it was declared: not
                // those of an `overnight exec` on its machine, nor those a
                // daemon that registered again since has started.
                sqlx::query_scalar(
                    "SELECT r.id FROM runs r JOIN hosts h ON h.name = r.host \
                     WHERE r.status = 'running' AND r.host = $1 AND r.pid = h.pid \
                     AND r.started_at <= coalesce(h.dead_since, r.started_at)",
                )
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
