//! The history in PostgreSQL (DESIGN §10): the connection and the schema.
//!
//! The schema holds the tables and columns of SQLite's, under the same
//! names, so that one query text reads either (parameters are `$1`, `$2`…,
//! which SQLite reads too). Migrations are applied in order, one process
//! at a time (a transaction-scoped advisory lock), and counted in
//! `overnight_schema`.

use sqlx::Connection;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The schema, one step per entry; never edit a released step, add one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_schema.sql"),
    include_str!("migrations/postgres/0002_cluster.sql"),
];

/// The advisory lock key that serialises migrations: "overnigh" in ASCII.
const MIGRATION_LOCK: i64 = 0x6f76_6572_6e69_6768;

/// `url` with each `${NAME}` read from the environment, percent-encoded
/// (a password may hold `@`, `/` or `%`); the first name that is not set,
/// if one is not.
pub fn resolved(url: &str) -> Result<String, String> {
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|value| percent_encoded(&value))
    };
    crate::config::expand_vars(url, &lookup, |_| {})
}

/// `text` with every byte but letters, digits and `-._~` as `%XX`.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `url` without its password, for messages.
pub fn without_password(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match base[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
            None => base.to_string(),
        },
        _ => base.to_string(),
    };
    match query {
        None => base,
        Some(query) => {
            let pairs: Vec<&str> = query
                .split('&')
                .map(|pair| match pair.starts_with("password=") {
                    true => "password=***",
                    false => pair,
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
    }
}

/// A pool on the database at `url`, its schema brought up to date.
/// A server that does not answer is given up on after a few seconds, not
/// sqlx's thirty: a crontab line's job waits on it.
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Applies the migrations not applied yet; two processes starting on a
/// new database apply them once. The usual case, a schema up to date, is
/// one read and no lock.
async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let made: bool = sqlx::query_scalar("SELECT to_regclass('overnight_schema') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if made {
        let done: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM overnight_schema")
            .fetch_one(pool)
            .await?;
        if done.is_some_and(|done| done as usize >= MIGRATIONS.len()) {
            return Ok(());
        }
    }
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS overnight_schema (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let done: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM overnight_schema")
        .fetch_one(&mut *tx)
        .await?;
    let done = done.unwrap_or(0);
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO overnight_schema (version) VALUES ($1)")
            .bind(step as i64 + 1)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            without_password("postgres://app:s3cr3t@db:5432/overnight?sslmode=require&password=x"),
            "postgres://app:***@db:5432/overnight?sslmode=require&password=***"
        );
        assert_eq!(
            without_password("postgres://db/overnight"),
            "postgres://db/overnight"
        );
    }

    #[test]
    fn a_password_from_the_environment_is_encoded_into_the_url() {
        assert_eq!(percent_encoded("p@ss/w%rd é"), "p%40ss%2Fw%25rd%20%C3%A9");
        assert_eq!(percent_encoded("plain-Pass_1.~"), "plain-Pass_1.~");
    }
}
