//! Which database a history is in, and how one query text serves both:
//! SQLite's (in the state directory, behind the journal) and PostgreSQL's
//! (a server several hosts share, DESIGN §10).

use std::sync::Arc;

use sqlx::sqlite::SqlitePool;

use super::RunIds;

/// The database a history is in.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// `<state_dir>/overnight.db`, with the journal in front of it, and
    /// the run-id sequence in a file beside it (shared with the journal's
    /// writers).
    Sqlite { pool: SqlitePool, ids: Arc<RunIds> },
    /// A server several hosts share (DESIGN §10); run ids come from a
    /// sequence in it.
    Postgres(sqlx::PgPool),
}

/// Evaluates `$body` with `$pool` bound to the pool of `$db`, whichever
/// database it is: one query text, compiled for both.
/// With `$pool, $q`, `$q` names the calling file's `on_sqlite` or
/// `on_postgres` (see [`for_each_db!`]) to match.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::db::Db::Sqlite { pool: $pool, .. } => $body,
            $crate::store::db::Db::Postgres($pool) => $body,
        }
    };
    ($db:expr, $pool:ident, $q:ident => $body:expr) => {
        match $db {
            $crate::store::db::Db::Sqlite { pool: $pool, .. } => {
                use self::on_sqlite as $q;
                $body
            }
            $crate::store::db::Db::Postgres($pool) => {
                use self::on_postgres as $q;
                $body
            }
        }
    };
}
pub(crate) use on_db;

/// Defines the items once for each database, in the modules `on_sqlite`
/// and `on_postgres`, where `Db` names the database: functions that take
/// any executor of it (its pool, a transaction on it).
macro_rules! for_each_db {
    ($($item:item)*) => {
        pub(crate) mod on_sqlite {
            #[allow(unused_imports)]
            use super::*;
            pub(crate) type Db = sqlx::Sqlite;
            $($item)*
        }
        pub(crate) mod on_postgres {
            #[allow(unused_imports)]
            use super::*;
            pub(crate) type Db = sqlx::Postgres;
            $($item)*
        }
    };
}
pub(crate) use for_each_db;

/// A transaction that will write. SQLite's takes the write lock at its
/// start: a transaction that reads first and then writes, while another
/// process writes, fails at once whatever the busy timeout (SQLite will
/// not wait where waiting could deadlock). PostgreSQL's needs nothing more.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send
    + '_;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send
    + '_ {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send
    + '_ {
        self.begin()
    }
}

/// A job's own text (a summary, a reason) as either database keeps it:
/// PostgreSQL refuses a NUL character in text, where a run's end must
/// never fail to be written; it becomes U+FFFD, on both.
pub(crate) fn text_of(text: &str) -> std::borrow::Cow<'_, str> {
    match text.contains('\0') {
        true => text.replace('\0', "\u{fffd}").into(),
        false => text.into(),
    }
}

/// A row of either database, read by column name.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
        }
    };
}
columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);
