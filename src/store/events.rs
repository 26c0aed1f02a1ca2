//! Live events between a cluster's hosts (DESIGN §10): each host tells
//! what happens on it with `NOTIFY` on one channel of the database and
//! hears the others with `LISTEN`. Notifications are transient: a host
//! whose listening session is being made again misses some, and says so
//! to its watchers; the history stays the record.

use std::sync::Arc;

use sqlx::postgres::PgListener;

use super::{Db, Store, StoreError};

/// The channel the hosts' events go on.
const CHANNEL: &str = "overnight_events";

/// A host's ear on the others' events.
#[derive(Debug)]
pub struct Hearing(PgListener);

impl Store {
    /// Tells `events` (JSON, each under 8000 bytes) to every host
    /// listening, in order, in one round trip. Nothing on SQLite.
    pub async fn tell_hosts(&self, events: &[Arc<str>]) -> Result<(), StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(());
        };
        let texts: Vec<&str> = events.iter().map(|e| &**e).collect();
        sqlx::query(
            "SELECT pg_notify($1, e) FROM unnest($2::text[]) WITH ORDINALITY AS t(e, n) ORDER BY n",
        )
        .bind(CHANNEL)
        .bind(texts)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Listens to the events every host tells (its own among them);
    /// `None` on SQLite.
    pub async fn hear_hosts(&self) -> Result<Option<Hearing>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Hearing(listener)))
    }
}

impl Hearing {
    /// The next event told, as JSON; `Ok(None)` when the session was lost
    /// and made again (events told meanwhile went unheard).
    pub async fn next(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .try_recv()
            .await?
            .map(|told| told.payload().to_string()))
    }
}
