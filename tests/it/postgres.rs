//! The history on PostgreSQL (DESIGN §10), against a real server.

use std::collections::BTreeSet;

use sqlx::{Connection, Row};

use crate::helper::postgres::TestDb;

/// SQLite's tables that PostgreSQL has no need of: the journal is SQLite's
/// fast path.
const SQLITE_ONLY: [&str; 3] = ["journal_folded", "journal_moved", "sqlite_sequence"];

/// Every table and column of the SQLite history is in the PostgreSQL
/// schema under the same name (so one query text reads both), and a
/// second opening, or two at once, applies no migration twice.
#[tokio::test]
async fn the_postgres_schema_has_every_table_and_column_of_sqlites() {
    let dir = tempfile::tempdir().unwrap();
    let store = overnight::store::Store::open(dir.path()).await.unwrap();
    store.close().await;
    let mut sqlite = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("overnight.db").display()
    ))
    .await
    .unwrap();
    let sqlite_columns: BTreeSet<(String, String)> = sqlx::query(
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table'",
    )
    .fetch_all(&mut sqlite)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get("t"), row.get("c")))
    .filter(|(table, _): &(String, String)| !SQLITE_ONLY.contains(&table.as_str()))
    .collect();
    assert!(sqlite_columns.len() > 50, "{sqlite_columns:?}");

    let db = TestDb::new().await;
    let (first, second) = tokio::join!(
        overnight::store::postgres::connect(&db.url),
        overnight::store::postgres::connect(&db.url)
    );
    let pool = first.unwrap();
    second.unwrap();
    overnight::store::postgres::connect(&db.url)
        .await
        .unwrap()
        .close()
        .await;
    let postgres_columns: BTreeSet<(String, String)> = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> 'overnight_schema'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get("t"), row.get("c")))
    .collect();
    assert_eq!(postgres_columns, sqlite_columns);
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM overnight_schema ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [1], "each migration once");

    // The fire a scheduled run is for is marked handled with it, as in
    // SQLite, and never moved back.
    for (id, at) in [(1_i64, "2026-12-01T02:00:00Z"), (2, "2026-11-30T02:00:00Z")] {
        sqlx::query(
            "INSERT INTO runs (id, job, trigger, scheduled_at, started_at, status, host) \
             VALUES ($1, 'backup', 'schedule', $2, $2, 'running', 'a')",
        )
        .bind(id)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    let handled: String =
        sqlx::query_scalar("SELECT last_handled FROM schedule_state WHERE job = 'backup'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(handled, "2026-12-01T02:00:00Z");
    pool.close().await;
}
