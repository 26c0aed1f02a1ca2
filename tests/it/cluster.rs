//! Several daemons on one PostgreSQL store (DESIGN §10): real daemon
//! processes, each with its own jobs file, state directory and API, on a
//! real server.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use crate::helper::postgres::TestDb;
use crate::helper::{Sandbox, kill9, terminate, wait_for};

/// One host of a test cluster: its sandbox and its daemon's process.
struct Host {
    sb: Sandbox,
    daemon: Option<Child>,
}

impl Host {
    /// Starts host `name` on `db` with `jobs` (the jobs file's `jobs:`
    /// and anything after it), heartbeating every second, declared dead
    /// after three.
    fn start(db: &TestDb, name: &str, jobs: &str) -> Host {
        let (store, password) = db.store_and_password();
        let sb = Sandbox::new();
        sb.write(
            "overnight.yaml",
            &format!(
                "store: {store}\nhost: {name}\nlisten: 127.0.0.1:0\ncluster: {{heartbeat: 1s, host_timeout: 3s}}\nshutdown_grace: 1s\n{jobs}"
            ),
        );
        let daemon = sb.daemon().env("STORE_PASSWORD", password).spawn().unwrap();
        Host {
            sb,
            daemon: Some(daemon),
        }
    }

    fn pid(&self) -> i32 {
        self.daemon.as_ref().expect("running").id() as i32
    }

    /// What its daemon said on stderr.
    fn said(&self) -> String {
        std::fs::read_to_string(self.sb.path().join("daemon.err")).unwrap_or_default()
    }

    /// Stops its daemon as systemd would.
    fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            assert!(terminate(daemon).success(), "{}", self.said());
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// Waits until `count` hosts are registered alive.
async fn alive(pg: &mut PgConnection, count: i64, hosts: &[&Host]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // No table yet until the first daemon made the schema.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM hosts WHERE alive")
            .fetch_one(&mut *pg)
            .await
            .unwrap_or(0);
        if n == count {
            return;
        }
        let said: Vec<String> = hosts.iter().map(|h| h.said()).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "{n} host(s) alive, not {count}; they said:\n{}",
            said.join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's time as the runs' text (RFC 3339 UTC), whole seconds.
async fn server_now(pg: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT to_char(date_trunc('second', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS')",
    )
    .fetch_one(pg)
    .await
    .unwrap()
}

/// Three daemons with the same jobs, a job due every second, for 60
/// seconds: each fire runs once, on one host, and every host gets some.
#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_run_each_fire_once() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  tick:\n    schedule: '* * * * * *'\n    command: 'true'\n";
    let mut hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| Host::start(&db, name, jobs))
        .collect();
    let mut pg = db.connect().await;
    alive(&mut pg, 3, &hosts.iter().collect::<Vec<_>>()).await;
    // From the next whole second on, all three were up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = server_now(&mut pg).await;
    let to = (chrono::NaiveDateTime::parse_from_str(&from, "%Y-%m-%dT%H:%M:%S").unwrap()
        + chrono::Duration::seconds(60))
    .format("%Y-%m-%dT%H:%M:%S")
    .to_string();
    tokio::time::sleep(Duration::from_secs(61)).await;
    // The fires of the last seconds are let end before anyone stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for host in &mut hosts {
        host.stop();
    }
    let rows = sqlx::query(
        "SELECT scheduled_at, host, status FROM runs WHERE job = 'tick' \
         AND scheduled_at >= $1 AND scheduled_at < $2 ORDER BY scheduled_at",
    )
    .bind(&from)
    .bind(&to)
    .fetch_all(&mut pg)
    .await
    .unwrap();
    let mut per_fire: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        let at: String = row.get("scheduled_at");
        let host: String = row.get("host");
        assert_eq!(row.get::<String, _>("status"), "success", "{at} on {host}");
        per_fire.entry(at).or_default().push(host.clone());
        *per_host.entry(host).or_default() += 1;
    }
    let twice: Vec<_> = per_fire.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(twice.is_empty(), "fires run more than once: {twice:?}");
    assert_eq!(
        per_fire.len(),
        60,
        "one run per second from {from} to {to}: {:?}",
        per_fire.keys().collect::<Vec<_>>()
    );
    assert!(per_host.len() >= 2, "spread over hosts: {per_host:?}");
    let claims: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fires WHERE job = 'tick' AND scheduled_at >= $1 AND scheduled_at < $2 AND done",
    )
    .bind(&from)
    .bind(&to)
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert_eq!(claims, 60, "each fire claimed once, and done");
}

/// kill -9 of the host running a job: another host declares it dead
/// within the host timeout and closes its run as `lost`, naming it, and
/// the fires it had claimed go on elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_host_is_declared_dead_and_its_run_closed_as_lost() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  long:\n    schedule: '* * * * * *'\n    hosts: [a]\n    command: sleep 30\n  tick:\n    schedule: '* * * * * *'\n    command: 'true'\n";
    let mut a = Host::start(&db, "a", jobs);
    let mut b = Host::start(&db, "b", jobs);
    let mut pg = db.connect().await;
    alive(&mut pg, 2, &[&a, &b]).await;
    let url = db.url.clone();
    let (run, job_pid): (i64, i64) = wait_for(Duration::from_secs(30), "`long` running on a", || {
        let url = url.clone();
        async move {
            let mut pg = sqlx::PgConnection::connect(&url).await.ok()?;
            sqlx::query_as("SELECT id, job_pid FROM runs WHERE job = 'long' AND status = 'running' AND job_pid IS NOT NULL")
                .fetch_optional(&mut pg)
                .await
                .ok()?
        }
    })
    .await;
    kill9(a.pid());
    let killed = std::time::Instant::now();
    let summary: String = wait_for(Duration::from_secs(30), "the run closed", || {
        let url = url.clone();
        async move {
            let mut pg = sqlx::PgConnection::connect(&url).await.ok()?;
            sqlx::query_scalar("SELECT summary FROM runs WHERE id = $1 AND status = 'lost'")
                .bind(run)
                .fetch_optional(&mut pg)
                .await
                .ok()?
        }
    })
    .await;
    // The host timeout (3 s), a heartbeat (1 s), and some slack for a
    // loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "closed after {:?}",
        killed.elapsed()
    );
    assert!(
        summary.contains("host `a` stopped heartbeating")
            && summary.contains("declared dead by `b`"),
        "{summary}"
    );
    let dead: bool = sqlx::query_scalar("SELECT NOT alive FROM hosts WHERE name = 'a'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert!(dead);
    // `tick` goes on, on b alone.
    let since = server_now(&mut pg).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<String> =
        sqlx::query_scalar("SELECT host FROM runs WHERE job = 'tick' AND scheduled_at > $1")
            .bind(&since)
            .fetch_all(&mut pg)
            .await
            .unwrap();
    assert!(
        after.len() >= 2 && after.iter().all(|h| h == "b"),
        "{after:?}"
    );
    // The job a started outlived it; it is no test's to keep.
    kill9(job_pid as i32);
    a.daemon.take().map(|mut d| d.wait());
    b.stop();
}
