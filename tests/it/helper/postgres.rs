//! A PostgreSQL database of its own for a test, on the server `.ci/run`
//! installs and starts (or the one `$OVERNIGHT_TEST_POSTGRES` names: a
//! URL whose user may create databases), dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// The server and role `.ci/run` prepares.
pub const SERVER: &str = "postgres://overnight_test:overnight_test@127.0.0.1:5432/postgres";

/// A database made for one test.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    /// Makes a new, empty database; fails the test, saying how to get a
    /// server, when there is none: the PostgreSQL tests are never skipped.
    pub async fn new() -> TestDb {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let server = std::env::var("OVERNIGHT_TEST_POSTGRES").unwrap_or_else(|_| SERVER.into());
        let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!(
                "this test needs PostgreSQL, and there is none at {server}: {e}\n\
                 `.ci/run` installs and starts one (Debian's postgresql) and makes the role; \
                 or set OVERNIGHT_TEST_POSTGRES to a server where your user may create databases"
            )
        });
        let name = format!(
            "overnight_test_{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        TestDb {
            url: format!("{base}/{name}"),
            name,
            server,
        }
    }
}

impl TestDb {
    /// The URL as a jobs file writes it, its password replaced by
    /// `${STORE_PASSWORD}` (a written-out password is refused), and the
    /// password, for that variable.
    pub fn store_and_password(&self) -> (String, String) {
        let (credentials, rest) = self.url.split_once('@').unwrap();
        let (user_part, password) = credentials.rsplit_once(':').unwrap();
        (
            format!("{user_part}:${{STORE_PASSWORD}}@{rest}"),
            password.to_string(),
        )
    }

    /// A connection to it, for the test's own queries.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Off the test's runtime, which may be the one ending.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&server).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}
