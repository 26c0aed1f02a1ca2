//! The history on PostgreSQL (DESIGN §10), against a real server.

use std::collections::BTreeSet;

use sqlx::{Connection, Row};

use crate::helper::postgres::TestDb;

/// SQLite's tables that PostgreSQL has no need of: the journal is SQLite's
/// fast path.
const SQLITE_ONLY: [&str; 3] = ["journal_folded", "journal_moved", "sqlite_sequence"];

/// PostgreSQL's tables that SQLite has no need of: a cluster's hosts and
/// their claims, on one shared server only.
const POSTGRES_ONLY: [&str; 5] = [
    "overnight_schema",
    "hosts",
    "fires",
    "run_locks",
    "cluster_keys",
];

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
         WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get("t"), row.get("c")))
    .filter(|(table, _): &(String, String)| !POSTGRES_ONLY.contains(&table.as_str()))
    .collect();
    assert_eq!(postgres_columns, sqlite_columns);
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM overnight_schema ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [1, 2], "each migration once");

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

/// A jobs file with `store:` keeps its history in PostgreSQL: `run`
/// records there, `history`, `report` and `logs` read there, the job does
/// not see the variable that holds the password, and nothing is written
/// to a SQLite file. A password written out, and a variable not set, are
/// refused, saying what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_file_with_store_keeps_its_history_in_postgres() {
    let db = TestDb::new().await;
    let (url, password) = db.store_and_password();
    let sb = crate::helper::Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "store: {url}\njobs:\n  nightly:\n    command: echo \"password=${{STORE_PASSWORD:-withheld}}\"; echo '::warning::slow'\n"
        ),
    );
    let run = |args: &[&str]| {
        sb.command(args)
            .env("STORE_PASSWORD", &password)
            .output()
            .unwrap()
    };
    let out = run(&["run", "nightly"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let history = run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["job"], "nightly", "{runs}");
    assert_eq!(runs[0]["status"], "warning", "{runs}");
    let logs = run(&["logs", "nightly"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).lines().next(),
        Some("password=withheld")
    );
    let report = run(&["report", "1", "--section", "warnings"]);
    assert_eq!(String::from_utf8_lossy(&report.stdout), "slow\n");
    assert!(
        !sb.path().join(".overnight/overnight.db").exists(),
        "nothing in SQLite"
    );
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE job = 'nightly'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(recorded, 1);

    let unset = sb.run(&["history"]);
    assert!(
        String::from_utf8_lossy(&unset.stderr)
            .contains("`store` names ${STORE_PASSWORD}, which is not set"),
        "{unset:?}"
    );
    sb.write(
        "overnight.yaml",
        &format!("store: {}\njobs: {{}}\n", db.url),
    );
    let check = sb.run(&["check"]);
    assert_eq!(check.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("the password in `store` is written out"),
        "{check:?}"
    );
    sb.write(
        "overnight.yaml",
        "store: postgres://app@db/overnight?password=s3cr3t\njobs: {}\n",
    );
    let check = sb.run(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(2),
        "a password in the query: {check:?}"
    );
}

/// `overnight exec` with no jobs file records where `$OVERNIGHT_STORE`
/// says, and the wrapped command sees neither that variable nor the one
/// holding the password, nor `$PGPASSWORD`.
#[tokio::test(flavor = "multi_thread")]
async fn exec_records_in_the_store_the_environment_names_and_withholds_it() {
    let db = TestDb::new().await;
    let (url, password) = db.store_and_password();
    let sb = crate::helper::Sandbox::new();
    let with_store = |args: &[&str]| {
        sb.command(args)
            .env("OVERNIGHT_STORE", &url)
            .env("STORE_PASSWORD", &password)
            .env("PGPASSWORD", "not-for-jobs")
            .output()
            .unwrap()
    };
    let out = with_store(&[
        "exec",
        "--name",
        "wrapped",
        "--",
        "sh",
        "-c",
        "echo \"store=${OVERNIGHT_STORE:-withheld} password=${STORE_PASSWORD:-withheld} pg=${PGPASSWORD:-withheld}\"",
    ]);
    assert!(out.status.success(), "{out:?}");
    let logs = with_store(&["logs", "wrapped"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout),
        "store=withheld password=withheld pg=withheld\n",
        "{logs:?}"
    );
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE job = 'wrapped'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
}

/// A daemon on a PostgreSQL store: its scheduled runs are recorded there
/// as they start and end (no journal), and `status` reads them.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_records_its_fires_in_postgres() {
    let db = TestDb::new().await;
    let sb = crate::helper::Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "store: {}\nlisten: 127.0.0.1:0\njobs:\n  tick:\n    schedule: '* * * * * *'\n    command: echo tock\n",
            db.store_and_password().0
        ),
    );
    let password = db.store_and_password().1;
    let daemon = sb
        .daemon()
        .env("STORE_PASSWORD", &password)
        .spawn()
        .unwrap();
    let url = db.url.clone();
    crate::helper::wait_for(
        std::time::Duration::from_secs(30),
        "two runs in PostgreSQL",
        || {
            let url = url.clone();
            async move {
                let mut pg = sqlx::PgConnection::connect(&url).await.ok()?;
                let done: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM runs WHERE job = 'tick' AND status = 'success'",
                )
                .fetch_one(&mut pg)
                .await
                .ok()?;
                (done >= 2).then_some(())
            }
        },
    )
    .await;
    // A second daemon under the same host name (both the machine's) would
    // be taken for the first: refused, saying why.
    let other = crate::helper::Sandbox::new();
    other.write("overnight.yaml", &sb.read("overnight.yaml"));
    let second = other
        .command(&["daemon"])
        .env("STORE_PASSWORD", &password)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another daemon runs as host"),
        "{second:?}"
    );
    let status = sb
        .command(&["status", "--json"])
        .env("STORE_PASSWORD", &password)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["jobs"][0]["last"]["status"], "success", "{doc}");
    assert!(crate::helper::terminate(daemon).success());
    assert!(
        !sb.path().join(".overnight/journal").exists()
            || std::fs::read_dir(sb.path().join(".overnight/journal"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// A week after they were done, the claims of fires are pruned with the
/// rest of the history's housekeeping; newer ones, and open ones, stay.
#[tokio::test]
async fn claims_of_fires_done_long_ago_are_pruned() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = overnight::store::Store::connect_postgres(&db.url, dir.path())
        .await
        .unwrap();
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let old = "2026-01-01T02:00:00.000000Z";
    let recent = overnight::store::time_text(chrono::Utc::now());
    for (at, done) in [
        (old, true),
        (recent.as_str(), true),
        ("2026-01-02T02:00:00.000000Z", false),
    ] {
        sqlx::query(
            "INSERT INTO fires (job, scheduled_at, host, epoch, claimed_at, done) VALUES ('nightly', $1, 'a', 1, $1, $2)",
        )
        .bind(at)
        .bind(done)
        .execute(&mut pg)
        .await
        .unwrap();
    }
    store.prune(&Default::default()).await.unwrap();
    let left: Vec<String> =
        sqlx::query_scalar("SELECT scheduled_at FROM fires ORDER BY scheduled_at")
            .fetch_all(&mut pg)
            .await
            .unwrap();
    assert_eq!(left, ["2026-01-02T02:00:00.000000Z".to_string(), recent]);
}

/// A claimed start the database cannot confirm (it refuses every
/// connection) runs nothing and records nothing: after half the host
/// timeout it is given back as not started yet (the daemon claims such a
/// fire again once the database answers).
#[tokio::test(flavor = "multi_thread")]
async fn a_fire_whose_start_is_not_confirmed_runs_nothing() {
    use overnight::runner::{NotStarted, Outcome, Runner};
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = overnight::store::Store::connect_postgres(&db.url, dir.path())
        .await
        .unwrap();
    let cluster = overnight::config::cluster::Cluster {
        host: "a".into(),
        host_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let runner = Runner::new(
        overnight::store::Recorder::from(store.clone()),
        dir.path().to_path_buf(),
        None,
    )
    .on_host(&cluster);
    let ran = dir.path().join("ran");
    let job = overnight::config::Job::adhoc(
        "tick".into(),
        vec!["touch".into(), ran.clone().into_os_string()],
    );
    // The database refuses its connections from now on.
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" CONNECTION LIMIT 0"
    )))
    .execute(&mut pg)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut pg)
    .await
    .unwrap();
    // A flow step's start: its run id given out already (a fire's comes
    // from the database, and fails at once, as
    // `StoreError::is_unreachable`), its epoch the host's.
    let place = std::sync::Arc::new(overnight::flow::Place {
        flow: "f".into(),
        flow_run_id: 1,
        step: "one".into(),
        details: dir.path().join("details.json"),
    });
    let started = std::time::Instant::now();
    let outcome = runner.run_step(&job, 1, place, Some(1)).await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::NotRun {
                why: NotStarted::Unconfirmed(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(!ran.exists(), "the job ran");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" CONNECTION LIMIT -1"
    )))
    .execute(&mut pg)
    .await
    .unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(runs, 0);
}
