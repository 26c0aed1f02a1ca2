//! Several daemons on one PostgreSQL store (DESIGN §10): real daemon
//! processes, each with its own jobs file, state directory and API, on a
//! real server.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use sqlx::{PgConnection, Row};

use crate::helper::postgres::TestDb;
use crate::helper::{Sandbox, kill9, terminate};

/// The value of `${OPS_TOKEN}` in the hosts' environment, for jobs files
/// with `api.tokens`.
const OPS_TOKEN: &str = "a-token-the-hosts-share";

/// One host of a test cluster: its sandbox and its daemon's process.
struct Host {
    sb: Sandbox,
    daemon: Option<Child>,
}

impl Host {
    /// Starts host `name` on `db` with `jobs` (the jobs file's `jobs:`
    /// and anything after it), heartbeating twice a second, declared dead
    /// after three seconds.
    fn start(db: &TestDb, name: &str, jobs: &str) -> Host {
        Host::start_with(db, name, "{heartbeat: 500ms, host_timeout: 3s}", jobs)
    }

    /// Starts host `name` with `cluster` as its `cluster:` settings.
    fn start_with(db: &TestDb, name: &str, cluster: &str, jobs: &str) -> Host {
        let (store, password) = db.store_and_password();
        let sb = Sandbox::new();
        sb.write(
            "overnight.yaml",
            &format!(
                "store: {store}\nhost: {name}\nlisten: 127.0.0.1:0\ncluster: {cluster}\nshutdown_grace: 1s\n{jobs}"
            ),
        );
        let daemon = sb
            .daemon()
            .env("STORE_PASSWORD", password)
            .env("OPS_TOKEN", OPS_TOKEN)
            .spawn()
            .unwrap();
        Host {
            sb,
            daemon: Some(daemon),
        }
    }

    fn pid(&self) -> i32 {
        self.daemon.as_ref().expect("running").id() as i32
    }

    /// `overnight ARGS…` in its sandbox, with the store's password.
    fn cli(&self, db: &TestDb, args: &[&str]) -> std::process::Output {
        self.sb
            .command(args)
            .env("STORE_PASSWORD", db.store_and_password().1)
            .output()
            .unwrap()
    }

    /// `overnight ARGS…` in its sandbox, which must succeed.
    fn ok(&self, db: &TestDb, args: &[&str]) -> std::process::Output {
        let out = self.cli(db, args);
        assert!(out.status.success(), "{}", crate::helper::text(&out).1);
        out
    }

    /// Its state directory: `.overnight` beside its jobs file.
    fn state_dir(&self) -> std::path::PathBuf {
        self.sb.path().join(".overnight")
    }

    /// A request of `method` for `path` of its daemon's API, with the
    /// daemon card's token unless `anonymous`.
    fn api(&self, method: reqwest::Method, path: &str, anonymous: bool) -> reqwest::RequestBuilder {
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state_dir().join("daemon.json")).unwrap())
                .unwrap();
        let request = overnight::exec::http::client_builder()
            .build()
            .unwrap()
            .request(
                method,
                format!("http://{}{path}", card["addr"].as_str().unwrap()),
            );
        if anonymous {
            request
        } else {
            request.bearer_auth(card["token"].as_str().unwrap())
        }
    }

    /// What `path` of its daemon's API answers, as JSON.
    async fn read(&self, path: &str) -> serde_json::Value {
        let answer = self.api(reqwest::Method::GET, path, false).send().await;
        answer.unwrap().json().await.unwrap()
    }

    /// Starts `job` through its daemon's API; the run's id.
    async fn start_job(&self, job: &str) -> i64 {
        let path = format!("/api/jobs/{job}/start");
        let answer = self
            .api(reqwest::Method::POST, &path, false)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let started: serde_json::Value = answer.json().await.unwrap();
        started["run_id"].as_i64().unwrap()
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

/// A job file's `solo` job: exclusive (the default `concurrency: skip`),
/// due every second, taking `seconds`; each run notes in `dir/overlaps`
/// when it starts while the run before it still lives (not a zombie: a
/// frozen daemon cannot reap its killed job), wherever that one runs (the
/// hosts share this machine).
fn solo_job(dir: &std::path::Path, seconds: u32) -> String {
    let script = dir.join("solo.sh");
    let lines = [
        format!("d={}", dir.display()),
        r#"h=$(cat "$d/holder" 2>/dev/null)"#.to_string(),
        r#"state=$(awk '{print $3}' "/proc/$h/stat" 2>/dev/null)"#.to_string(),
        r#"if [ -n "$h" ] && [ -n "$state" ] && [ "$state" != Z ]; then echo "$$ started while $h ran" >> "$d/overlaps"; fi"#.to_string(),
        r#"echo $$ > "$d/holder""#.to_string(),
        format!("sleep {seconds}"),
    ];
    std::fs::write(&script, lines.join("\n") + "\n").unwrap();
    format!(
        "  solo:\n    schedule: '* * * * * *'\n    command: sh {}\n",
        script.display()
    )
}

/// What `solo_job` noted; empty when no run overlapped another.
fn overlaps(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("overlaps")).unwrap_or_default()
}

/// No fire of any job recorded twice.
async fn fires_recorded_twice(pg: &mut PgConnection) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT job, scheduled_at, count(*) FROM runs WHERE scheduled_at IS NOT NULL \
         GROUP BY job, scheduled_at HAVING count(*) > 1",
    )
    .fetch_all(pg)
    .await
    .unwrap()
}

/// Polls `query` on `pg` until it gives `Some`, for up to 30 s.
async fn until<T>(
    pg: &mut PgConnection,
    what: &str,
    mut query: impl AsyncFnMut(&mut PgConnection) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = query(pg).await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// Hosts a and b on `db`, both with `jobs`, registered alive; and a
/// connection to the database.
async fn two_hosts(db: &TestDb, jobs: &str) -> (Host, Host, PgConnection) {
    let a = Host::start(db, "a", jobs);
    let b = Host::start(db, "b", jobs);
    let mut pg = db.connect().await;
    alive(&mut pg, 2, &[&a, &b]).await;
    (a, b, pg)
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
/// seconds: each fire runs once, on one host, and the hosts share them;
/// an exclusive job of 3 s never runs on two hosts at once.
#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_run_each_fire_once() {
    let db = TestDb::new().await;
    let shared = tempfile::tempdir().unwrap();
    let jobs = format!(
        "jobs:\n  tick:\n    schedule: '* * * * * *'\n    concurrency: allow\n    command: 'true'\n{}",
        solo_job(shared.path(), 3)
    );
    let jobs = jobs.as_str();
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
        "SELECT scheduled_at, host, status, summary FROM runs WHERE job = 'tick' \
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
        let summary: Option<String> = row.get("summary");
        assert_eq!(
            row.get::<String, _>("status"),
            "success",
            "{at} on {host}: {summary:?}; the daemons said:\n{}",
            hosts
                .iter()
                .map(Host::said)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
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
    assert_eq!(fires_recorded_twice(&mut pg).await, []);
    assert_eq!(overlaps(shared.path()), "");
    // The solo runs that ran: one after the other, by the history too,
    // and on more than one host.
    let solo: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT started_at, finished_at, host FROM runs WHERE job = 'solo' AND status = 'success' ORDER BY started_at",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap();
    assert!(solo.len() >= 10, "{solo:?}");
    for pair in solo.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
    let solo_hosts: std::collections::BTreeSet<&String> = solo.iter().map(|r| &r.2).collect();
    assert!(solo_hosts.len() >= 2, "{solo:?}");
}

/// kill -9 of the host running an exclusive job: its fence ends the job
/// at once; within the host timeout (and a heartbeat) the other host
/// declares it dead, closes its run as `lost` naming it, its lock is free
/// and the job's next fire runs on the other host.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_hosts_run_is_lost_and_its_job_goes_on_elsewhere() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  long:\n    schedule: '* * * * * *'\n    command: sleep 30\n  tick:\n    schedule: '* * * * * *'\n    concurrency: allow\n    command: 'true'\n";
    let mut a = Host::start(&db, "a", jobs);
    let mut pg = db.connect().await;
    alive(&mut pg, 1, &[&a]).await;
    let (run, job_pid): (i64, i64) = until(&mut pg, "`long` running on a", async |pg| {
        sqlx::query_as("SELECT id, job_pid FROM runs WHERE job = 'long' AND status = 'running' AND job_pid IS NOT NULL")
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    let mut b = Host::start(&db, "b", jobs);
    alive(&mut pg, 2, &[&a, &b]).await;
    kill9(a.pid());
    let killed = std::time::Instant::now();
    let summary: String = until(&mut pg, "the run closed", async |pg| {
        sqlx::query_scalar("SELECT summary FROM runs WHERE id = $1 AND status = 'lost'")
            .bind(run)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    // The host timeout (3 s), a heartbeat, and some slack for a loaded
    // machine.
    let bound = Duration::from_secs(8);
    assert!(
        killed.elapsed() < bound,
        "closed after {:?}",
        killed.elapsed()
    );
    assert!(
        summary.contains("host `a` stopped heartbeating")
            && summary.contains("declared dead by `b`"),
        "{summary}"
    );
    let next: i64 = until(&mut pg, "`long` running on b", async |pg| {
        sqlx::query_scalar(
            "SELECT id FROM runs WHERE job = 'long' AND host = 'b' AND status = 'running'",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    assert!(
        next > run && killed.elapsed() < bound,
        "b ran it after {:?}",
        killed.elapsed()
    );
    let a_holds: i64 = sqlx::query_scalar("SELECT count(*) FROM run_locks WHERE host = 'a'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(a_holds, 0, "a's locks went with it");
    // Its fence ended the job a started when a died.
    assert!(
        !std::path::Path::new(&format!("/proc/{job_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{job_pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the job of the killed host still runs"
    );
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
    a.daemon.take().map(|mut d| d.wait());
    b.stop();
}

/// The host running an exclusive job is frozen (SIGSTOP) past the host
/// timeout, then thawed: its fence ends the job before the other host frees
/// the lock, the other host declares it dead and goes on with the job,
/// and the thawed host finds its epoch stale and registers again. No
/// fire is recorded twice, no run of the job overlaps another.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_host_is_fenced_and_no_fire_runs_twice() {
    let db = TestDb::new().await;
    let shared = tempfile::tempdir().unwrap();
    // Each host tells of each end of `solo` it learns of.
    let ended = shared.path().join("ended");
    let jobs = format!(
        "triggers:\n  - name: ended\n    jobs: [solo]\n    on: [success, failed, lost]\n    \
         run: ['sh', '-c', 'echo $OVERNIGHT_RUN_ID $OVERNIGHT_STATUS >> {}']\n\
         jobs:\n{}  tick:\n    schedule: '* * * * * *'\n    concurrency: allow\n    command: 'true'\n",
        ended.display(),
        solo_job(shared.path(), 20)
    );
    let mut hosts = [Host::start(&db, "a", &jobs), Host::start(&db, "b", &jobs)];
    let mut pg = db.connect().await;
    alive(&mut pg, 2, &[&hosts[0], &hosts[1]]).await;
    let (run, holder): (i64, String) =
        until(&mut pg, "`solo` running", async |pg| {
sqlx::query_as("SELECT id, host FROM runs WHERE job = 'solo' AND status = 'running' AND job_pid IS NOT NULL")
                    .fetch_optional(pg)
                    .await
                    .ok()?
            })
    .await;
    let (frozen, other) = match holder.as_str() {
        "a" => (0, 1),
        _ => (1, 0),
    };
    let pid = hosts[frozen].pid();
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let summary: String = until(&mut pg, "the frozen host's run closed", async |pg| {
        sqlx::query_scalar("SELECT summary FROM runs WHERE id = $1 AND status <> 'running'")
            .bind(run)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    assert!(
        summary.contains(&format!("host `{holder}` stopped heartbeating")),
        "{summary}"
    );
    // The other host takes the job over once the server freed the lock.
    let other_name = ["a", "b"][other];
    until(&mut pg, "`solo` on the other host", async |pg| {
let n: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE job = 'solo' AND host = $1 AND status = 'running' AND id > $2")
                .bind(other_name)
                .bind(run)
                .fetch_one(pg)
                .await
                .ok()?;
            (n > 0).then_some(())
        })
    .await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (epoch, alive_again): (i64, bool) =
        until(&mut pg, "the thawed host registered again", async |pg| {
            let row: (i64, bool) = sqlx::query_as("SELECT epoch, alive FROM hosts WHERE name = $1")
                .bind(&holder)
                .fetch_one(pg)
                .await
                .ok()?;
            (row.0 > 1 && row.1).then_some(row)
        })
        .await;
    assert!(epoch >= 2 && alive_again);
    // A few more seconds of both hosts at work.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for host in &mut hosts {
        host.stop();
    }
    assert!(
        hosts[frozen]
            .said()
            .contains("was declared dead while it was silent"),
        "{}",
        hosts[frozen].said()
    );
    assert_eq!(fires_recorded_twice(&mut pg).await, []);
    assert_eq!(
        overlaps(shared.path()),
        "",
        "a run started while another ran"
    );
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'running'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(running, 0);
    // The thawed host's end of the run it was fenced from stays out of
    // the history, and its triggers are not told a second end.
    let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(status, "lost");
    let told = std::fs::read_to_string(&ended).unwrap();
    let ends: Vec<&str> = told
        .lines()
        .filter(|l| l.split(' ').next() == Some(&*run.to_string()))
        .collect();
    assert_eq!(ends, [format!("{run} lost")], "{told}");
    assert!(
        hosts[frozen].said().contains("but was closed before"),
        "{}",
        hosts[frozen].said()
    );
}

/// Every database session of the cluster is cut under it (as a restart
/// of PostgreSQL would, without stopping the server the other tests
/// share): the daemons reconnect, nobody is declared dead, the running
/// exclusive job keeps its lock (taken again) or is ended and says why,
/// and every fire of the job due each second has its one row.
#[tokio::test(flavor = "multi_thread")]
async fn cut_sessions_lose_no_fire_and_no_lock() {
    let db = TestDb::new().await;
    let shared = tempfile::tempdir().unwrap();
    let jobs = format!(
        "jobs:\n{}  tick:\n    schedule: '* * * * * *'\n    concurrency: allow\n    command: 'true'\n",
        solo_job(shared.path(), 6)
    );
    // A loaded machine must not get a host declared dead here: the
    // timeout is longer than the others'.
    let cluster = "{heartbeat: 1s, host_timeout: 10s}";
    let mut hosts = [
        Host::start_with(&db, "a", cluster, &jobs),
        Host::start_with(&db, "b", cluster, &jobs),
    ];
    let mut pg = db.connect().await;
    alive(&mut pg, 2, &[&hosts[0], &hosts[1]]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = server_now(&mut pg).await;
    until(&mut pg, "`solo` running", async |pg| {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE job = 'solo' AND status = 'running'",
        )
        .fetch_one(pg)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await;
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert!(cut >= 2, "each daemon's sessions cut ({cut})");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let to = server_now(&mut pg).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hosts_rows: Vec<(String, i64, bool)> =
        sqlx::query_as("SELECT name, epoch, alive FROM hosts ORDER BY name")
            .fetch_all(&mut pg)
            .await
            .unwrap();
    assert_eq!(
        hosts_rows,
        [("a".into(), 1, true), ("b".into(), 1, true)],
        "nobody declared dead"
    );
    for host in &mut hosts {
        host.stop();
    }
    assert!(
        hosts
            .iter()
            .any(|h| h.said().contains("on a new database session")),
        "{}\n---\n{}",
        hosts[0].said(),
        hosts[1].said()
    );
    assert_eq!(fires_recorded_twice(&mut pg).await, []);
    assert_eq!(
        overlaps(shared.path()),
        "",
        "a run started while another ran"
    );
    let seconds: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT scheduled_at) FROM runs WHERE job = 'tick' \
         AND scheduled_at >= $1 AND scheduled_at < $2",
    )
    .bind(&from)
    .bind(&to)
    .fetch_one(&mut pg)
    .await
    .unwrap();
    let span = (chrono::NaiveDateTime::parse_from_str(&to, "%Y-%m-%dT%H:%M:%S").unwrap()
        - chrono::NaiveDateTime::parse_from_str(&from, "%Y-%m-%dT%H:%M:%S").unwrap())
    .num_seconds();
    assert_eq!(seconds, span, "a row for every fire from {from} to {to}");
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'running'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(open, 0);
}

/// `check --cluster` warns when live hosts run different definitions of
/// one job, naming which host runs which (and this file among them).
#[tokio::test(flavor = "multi_thread")]
async fn check_cluster_names_the_hosts_running_another_definition() {
    let db = TestDb::new().await;
    let same = "  tick:\n    schedule: '0 0 1 1 *'\n    command: 'true'\n";
    let a = Host::start(
        &db,
        "a",
        &format!("jobs:\n  x:\n    command: echo one\n{same}"),
    );
    let b = Host::start(
        &db,
        "b",
        &format!("jobs:\n  x:\n    command: echo two\n{same}"),
    );
    let mut pg = db.connect().await;
    alive(&mut pg, 2, &[&a, &b]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (stdout, stderr) = loop {
        let out = a.cli(&db, &["check", "--cluster"]);
        let (stdout, stderr) = crate::helper::text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        // Both hosts' definitions recorded (each records its own once
        // its API answers).
        let both = stderr.contains("a, this file | b") || stderr.contains("b | a, this file");
        if stdout.contains("2 job(s) and flow(s) compared, 1 with different definitions") && both {
            break (stdout, stderr);
        }
        assert!(std::time::Instant::now() < deadline, "{stdout}{stderr}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(stdout.contains("cluster: 2 live host(s) of 2"), "{stdout}");
    assert!(
        stderr.contains("warning: job `x`: different definitions: ")
            && (stderr.contains("a, this file | b") || stderr.contains("b | a, this file")),
        "{stderr}"
    );
    assert!(!stderr.contains("`tick`"), "{stderr}");
    // `status` shows the hosts.
    let status = a.cli(&db, &["status"]);
    let (stdout, stderr) = crate::helper::text(&status);
    assert!(status.status.success(), "{stderr}");
    assert!(
        stdout.contains("\nhosts:\n  a  alive  epoch 1  heard ")
            && stdout.contains("\n  b  alive  epoch 1  heard "),
        "{stdout}"
    );
    let json = a.cli(&db, &["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let hosts: Vec<(&str, bool)> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), h["alive"].as_bool().unwrap()))
        .collect();
    assert_eq!(hosts, [("a", true), ("b", true)]);
    // Without a cluster, the option says what it needs.
    let lone = Sandbox::new();
    lone.write("overnight.yaml", "jobs:\n  x:\n    command: 'true'\n");
    let out = lone.run(&["check", "--cluster"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::helper::text(&out)
            .1
            .contains("`--cluster` compares the hosts")
    );
}

/// `logs` of a run another host ran reads its output through that
/// host's API, and so does the API of the host asked (for its web page):
/// the capture file is on that host alone.
#[tokio::test(flavor = "multi_thread")]
async fn logs_of_another_hosts_run_come_through_its_api() {
    let db = TestDb::new().await;
    let jobs =
        "jobs:\n  say:\n    schedule: '* * * * * *'\n    hosts: [b]\n    command: echo said on b\n";
    let (a, mut b, mut pg) = two_hosts(&db, jobs).await;
    let id: i64 = until(&mut pg, "a run of `say` on b", async |pg| {
        sqlx::query_scalar(
            "SELECT id FROM runs WHERE job = 'say' AND status = 'success' ORDER BY id LIMIT 1",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    let out = a.cli(&db, &["logs", &id.to_string()]);
    let (stdout, stderr) = crate::helper::text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("said on b"), "{stdout}{stderr}");
    assert!(b.state_dir().join("runs").join("say").exists());
    assert!(!a.state_dir().join("runs").join("say").exists());
    // So does the output a's web page shows, through a's API.
    let client = overnight::client::Client::find(&a.state_dir()).expect("a's API");
    let mut stream = client
        .stream(&format!("/api/runs/{id}/output?follow=1"), None)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("an event within 30 s")
        .unwrap()
    {
        events.push((event.event, event.data));
    }
    assert!(
        events
            .iter()
            .any(|(name, data)| name == "lines" && data.contains("said on b")),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("end"),
        "{events:?}"
    );
    // Not for a reader who shows no token (a's loopback lets it read a's
    // own runs), nor passed on again.
    let path = format!("/api/runs/{id}/output");
    let anonymous = a
        .api(reqwest::Method::GET, &path, true)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let again = a
        .api(reqwest::Method::GET, &path, false)
        .header("x-overnight-handed-on", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    // With b gone, a says where the output is rather than look for it here.
    b.stop();
    let Err(refused) = client.stream(&format!("/api/runs/{id}/output"), None).await else {
        panic!("a served b's output with b gone");
    };
    let refused = refused.to_string();
    assert!(
        refused.contains("ran on host `b`, which is not up"),
        "{refused}"
    );
}

/// kill -9 of the host driving a flow, a step of it running there: the
/// other host declares it dead, closes the step's run as `lost`, takes
/// the flow run over and drives it to its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_of_a_killed_host_finishes_on_another() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  slow:\n    command: sleep 30\n  fin:\n    command: echo done\nflows:\n  nightly:\n    steps:\n      first: {job: slow}\n      second: {job: fin, after: first}\n";
    let mut a = Host::start(&db, "a", jobs);
    let mut pg = db.connect().await;
    alive(&mut pg, 1, &[&a]).await;
    a.ok(&db, &["flow", "start", "nightly"]);
    let (step, job_pid): (i64, i64) = until(&mut pg, "step `first` running on a", async |pg| {
        sqlx::query_as("SELECT id, job_pid FROM runs WHERE job = 'slow' AND status = 'running' AND job_pid IS NOT NULL")
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    let mut b = Host::start(&db, "b", jobs);
    alive(&mut pg, 2, &[&a, &b]).await;
    kill9(a.pid());
    let (host, status): (String, String) = until(&mut pg, "the flow run ended", async |pg| {
        sqlx::query_as(
            "SELECT host, status FROM flow_runs WHERE flow = 'nightly' AND finished_at IS NOT NULL",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    assert_eq!(host, "b", "{}", b.said());
    let lost: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(step)
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(lost, "lost");
    assert_ne!(status, "running");
    assert!(
        !std::path::Path::new(&format!("/proc/{job_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{job_pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the killed host's step still runs"
    );
    assert!(
        b.said().contains("taken over from host `a`"),
        "{}",
        b.said()
    );
    a.daemon.take().map(|mut d| d.wait());
    b.stop();
}

/// `overnight run JOB` on a host the job's `hosts:` excludes is handed
/// on to a live host that may run it (with the hosts' shared token), and
/// runs once, there; so are a start and a stop through its API. Without
/// a shared token, it says what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn run_on_a_host_the_job_excludes_runs_it_on_one_it_allows() {
    let db = TestDb::new().await;
    let jobs = "api: {tokens: {ops: '${OPS_TOKEN}'}}\njobs:\n  pinned:\n    hosts: [b]\n    command: echo ran on b\n  long:\n    hosts: [b]\n    command: sleep 60\n";
    let (a, _b, mut pg) = two_hosts(&db, jobs).await;
    // Through a's daemon, which hands it to b.
    a.sb.daemon_said("started: pid").await;
    let out = a.cli(&db, &["run", "pinned"]);
    let (stdout, stderr) = crate::helper::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", a.said());
    let hosts: Vec<String> = sqlx::query_scalar("SELECT host FROM runs WHERE job = 'pinned'")
        .fetch_all(&mut pg)
        .await
        .unwrap();
    assert_eq!(hosts, ["b"], "run once, on b");
    assert!(a.said().contains("handed on to host `b`"), "{}", a.said());
    // Started without waiting, and stopped, through a's API (the web
    // page's buttons): on b, where it runs.
    let id = a.start_job("long").await;
    until(&mut pg, "`long` running on b", async |pg| {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM runs WHERE id = $1 AND host = 'b' AND status = 'running' AND job_pid IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    let path = format!("/api/runs/{id}/stop");
    let stopped = a
        .api(reqwest::Method::POST, &path, false)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 202, "{:?}", stopped.text().await);
    let report: String = until(&mut pg, "`long` stopped", async |pg| {
        sqlx::query_scalar("SELECT report FROM runs WHERE id = $1 AND status <> 'running'")
            .bind(id)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    // Recorded on b as whom a acted for, through the token a showed.
    assert!(report.contains("stopped by local on host "), "{report}");
    assert!(report.contains("(through `ops`)"), "{report}");

    // The same without a shared token: refused, saying what to add.
    let db = TestDb::new().await;
    let jobs = "jobs:\n  pinned:\n    hosts: [b]\n    command: echo ran on b\n";
    let (a, _b, mut pg) = two_hosts(&db, jobs).await;
    a.sb.daemon_said("started: pid").await;
    let out = a.cli(&db, &["run", "pinned"]);
    let (_, stderr) = crate::helper::text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("give the hosts a shared token in `api.tokens`"),
        "{stderr}"
    );
    let ran: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE job = 'pinned'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(ran, 0);
}

/// A watcher of one host's live stream sees the runs of another host
/// start, move on and end, each naming the host it ran on, and its own
/// host's runs once each.
#[tokio::test(flavor = "multi_thread")]
async fn one_hosts_live_stream_tells_every_hosts_runs() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  there:\n    hosts: [b]\n    command: 'echo ::progress::50% halfway'\n  here:\n    hosts: [a]\n    command: 'true'\n";
    let (mut a, mut b, mut pg) = two_hosts(&db, jobs).await;
    until(&mut pg, "both hosts listening", async |pg| {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(pg)
        .await
        .ok()?;
        (n == 2).then_some(())
    })
    .await;
    let client = overnight::client::Client::find(&a.state_dir()).expect("a's API");
    let mut stream = client.stream("/api/events", None).await.unwrap();
    for (host, job) in [(&b, "there"), (&a, "here")] {
        let ran = host.cli(&db, &["run", job]);
        assert!(ran.status.success(), "{}", crate::helper::text(&ran).1);
    }
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("the stream goes on");
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        let (job, host) = (data["job"].as_str(), data["host"].as_str());
        seen.push(format!(
            "{} {} on {}",
            event.event,
            job.unwrap_or("-"),
            host.unwrap_or("-")
        ));
        let ended = |job: &str| {
            seen.iter()
                .any(|s| s.starts_with(&format!("run_ended {job} ")))
        };
        if ended("there") && ended("here") {
            break;
        }
    }
    // Each host's events in their order; the two hosts' may interleave.
    let of = |job: &str| -> Vec<&String> {
        seen.iter()
            .filter(|s| s.contains(&format!(" {job} on ")))
            .collect()
    };
    assert_eq!(
        of("there"),
        [
            "run_started there on b",
            "progress there on b",
            "run_ended there on b"
        ],
        "{seen:?}"
    );
    assert_eq!(
        of("here"),
        ["run_started here on a", "run_ended here on a"],
        "{seen:?}"
    );
    drop(stream);
    a.stop();
    b.stop();
}

/// `flow start` of a flow pinned to another host, and an operator's
/// command on a flow run another host drives, given to any host (or on a
/// host with no daemon), reach the host that may drive it: the flow
/// holds and goes on there.
#[tokio::test(flavor = "multi_thread")]
async fn flow_commands_given_to_any_host_reach_the_driving_one() {
    let db = TestDb::new().await;
    let jobs = "api: {tokens: {ops: '${OPS_TOKEN}'}}\njobs:\n  fin:\n    command: echo done\nflows:\n  gated:\n    hosts: [b]\n    steps:\n      approve: {hold: go on}\n      finish: {job: fin, after: approve}\n      close: {hold: close it, after: finish}\n      last: {job: fin, after: close}\n";
    let (mut a, mut b, mut pg) = two_hosts(&db, jobs).await;
    a.ok(&db, &["flow", "start", "gated"]);
    let (id, host): (i64, String) = until(&mut pg, "the flow run held", async |pg| {
        sqlx::query_as("SELECT id, host FROM flow_runs WHERE flow = 'gated' AND status = 'held'")
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    assert_eq!(host, "b");
    let resumed = a.cli(&db, &["flow", "resume", &id.to_string()]);
    let (stdout, stderr) = crate::helper::text(&resumed);
    assert!(resumed.status.success(), "{stderr}\n{}", a.said());
    assert!(stdout.contains("approve"), "{stdout}");
    // With no daemon on a, its command goes to b's API itself.
    until(&mut pg, "the flow run held again", async |pg| {
        sqlx::query_scalar::<_, i64>("SELECT id FROM flow_runs WHERE id = $1 AND status = 'held'")
            .bind(id)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    a.stop();
    let closed =
        a.sb.command(&["flow", "resume", &id.to_string()])
            .env("STORE_PASSWORD", db.store_and_password().1)
            .env("OVERNIGHT_API_TOKEN", OPS_TOKEN)
            .output()
            .unwrap();
    assert!(
        closed.status.success(),
        "{}",
        crate::helper::text(&closed).1
    );
    let status: String = until(&mut pg, "the flow run ended", async |pg| {
        sqlx::query_scalar("SELECT status FROM flow_runs WHERE id = $1 AND finished_at IS NOT NULL")
            .bind(id)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    assert_eq!(status, "success");
    // Both `fin` steps ran, on b.
    let hosts: Vec<String> =
        sqlx::query_scalar("SELECT host FROM runs WHERE job = 'fin' ORDER BY id")
            .fetch_all(&mut pg)
            .await
            .unwrap();
    assert_eq!(hosts, ["b", "b"]);
    // `flow status` and `history` on a say where it ran.
    let status = a.cli(&db, &["flow", "status", &id.to_string()]);
    let (stdout, stderr) = crate::helper::text(&status);
    assert!(stdout.contains("driven by host `b`"), "{stdout}{stderr}");
    b.stop();
}

/// A host frozen past the timeout while it drives a flow no other host
/// may drive: its running step is fenced and closed as `lost`; thawed,
/// it registers again and drives the flow on under its new epoch (the
/// next step runs, recorded, on it).
#[tokio::test(flavor = "multi_thread")]
async fn a_thawed_host_drives_on_the_flows_no_one_took_over() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  slow:\n    command: sleep 30\n  fin:\n    command: echo done\nflows:\n  pinned:\n    hosts: [a]\n    steps:\n      first: {job: slow}\n      second: {job: fin, after: 'done(first)'}\n";
    let (mut a, mut b, mut pg) = two_hosts(&db, jobs).await;
    a.ok(&db, &["flow", "start", "pinned"]);
    let step: i64 = until(&mut pg, "step `first` running on a", async |pg| {
        sqlx::query_scalar(
            "SELECT id FROM runs WHERE job = 'slow' AND status = 'running' AND job_pid IS NOT NULL",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(a.pid(), libc::SIGSTOP) };
    until(&mut pg, "the frozen host's step closed", async |pg| {
        sqlx::query_scalar::<_, String>("SELECT status FROM runs WHERE id = $1 AND status = 'lost'")
            .bind(step)
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    // SAFETY: as above.
    unsafe { libc::kill(a.pid(), libc::SIGCONT) };
    let (host, status): (String, String) = until(&mut pg, "step `second` ended", async |pg| {
        sqlx::query_as("SELECT host, status FROM runs WHERE job = 'fin' AND status <> 'running'")
            .fetch_optional(pg)
            .await
            .ok()?
    })
    .await;
    assert_eq!(
        (host.as_str(), status.as_str()),
        ("a", "success"),
        "{}",
        a.said()
    );
    let flow: String = until(&mut pg, "the flow run ended", async |pg| {
        sqlx::query_scalar(
            "SELECT host FROM flow_runs WHERE flow = 'pinned' AND finished_at IS NOT NULL",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    assert_eq!(flow, "a");
    a.stop();
    b.stop();
    // One driver took the run on: the next step ran once.
    let fins: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE job = 'fin'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(fins, 1, "{}", a.said());
}

/// `overnight run JOB` on a host whose daemon is not running, in a
/// cluster, runs the job through a live host's daemon (under the
/// cluster's locks), not here without them.
#[tokio::test(flavor = "multi_thread")]
async fn run_without_a_daemon_here_runs_on_a_live_host() {
    let db = TestDb::new().await;
    let jobs = "api: {tokens: {ops: '${OPS_TOKEN}'}}\njobs:\n  once:\n    command: echo ran\n";
    let (mut a, mut b, mut pg) = two_hosts(&db, jobs).await;
    a.stop();
    let out =
        a.sb.command(&["run", "once"])
            .env("STORE_PASSWORD", db.store_and_password().1)
            .env("OVERNIGHT_API_TOKEN", OPS_TOKEN)
            .output()
            .unwrap();
    let (_, stderr) = crate::helper::text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("`once` runs on host `b`"), "{stderr}");
    let hosts: Vec<String> = sqlx::query_scalar("SELECT host FROM runs WHERE job = 'once'")
        .fetch_all(&mut pg)
        .await
        .unwrap();
    assert_eq!(hosts, ["b"]);
    b.stop();
}

/// A run of a `concurrency: replace` job started on one host ends the
/// run of it going on another (through that host's API), then runs once
/// that one's lock is free.
#[tokio::test(flavor = "multi_thread")]
async fn replace_ends_the_run_on_another_host() {
    let db = TestDb::new().await;
    let jobs = "api: {tokens: {ops: '${OPS_TOKEN}'}}\njobs:\n  long:\n    concurrency: replace\n    command: sleep 60\n";
    let (mut a, mut b, mut pg) = two_hosts(&db, jobs).await;
    let first = b.start_job("long").await;
    let running = async |pg: &mut PgConnection, id: i64| {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE id = $1 AND status = 'running' AND job_pid IS NOT NULL",
        )
        .bind(id)
        .fetch_one(pg)
        .await
        .ok()?;
        (n == 1).then_some(())
    };
    until(&mut pg, "the first run going on b", async |pg| {
        running(pg, first).await
    })
    .await;
    // a's page shows it going, on b.
    let jobs = a.read("/api/jobs").await;
    assert_eq!(jobs[0]["running"][0]["elsewhere"], "b", "{jobs}");
    let second = a.start_job("long").await;
    until(&mut pg, "the second run going on a", async |pg| {
        running(pg, second).await
    })
    .await;
    let (host, report): (String, String) =
        sqlx::query_as("SELECT host, report FROM runs WHERE id = $1")
            .bind(first)
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(host, "b");
    assert!(
        report.contains("stopped by a newer run of `long`"),
        "{report}"
    );
    a.stop();
    b.stop();
    let host: String = sqlx::query_scalar("SELECT host FROM runs WHERE id = $1")
        .bind(second)
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(host, "a");
    // `history` shows where each ran, the runs being of two hosts.
    let history = a.cli(&db, &["history"]);
    let (stdout, stderr) = crate::helper::text(&history);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0][..4],
        ["ID", "JOB", "STATUS", "HOST"],
        "{stdout}{stderr}"
    );
    let hosts: Vec<&str> = lines[1..].iter().map(|l| l[3]).collect();
    assert_eq!(hosts, ["a", "b"], "{stdout}");
}

/// A flow step whose run was given out but never recorded when the host
/// driving it died (here: its row taken away before the others noticed)
/// is started again by the host that takes the flow over, not taken for
/// failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_never_recorded_is_started_again_by_the_host_taking_over() {
    let db = TestDb::new().await;
    let jobs = "jobs:\n  first:\n    command: sleep 2\n  second:\n    command: echo two\nflows:\n  f:\n    steps:\n      one: {job: first}\n      two: {job: second, after: one}\n";
    let mut a = Host::start(&db, "a", jobs);
    let mut pg = db.connect().await;
    alive(&mut pg, 1, &[&a]).await;
    a.ok(&db, &["flow", "start", "f"]);
    let step: i64 = until(&mut pg, "step `one` running on a", async |pg| {
        sqlx::query_scalar(
            "SELECT id FROM runs WHERE job = 'first' AND status = 'running' AND job_pid IS NOT NULL",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    let mut b = Host::start(&db, "b", jobs);
    alive(&mut pg, 2, &[&a, &b]).await;
    kill9(a.pid());
    sqlx::query("DELETE FROM runs WHERE id = $1")
        .bind(step)
        .execute(&mut pg)
        .await
        .unwrap();
    let status: String = until(&mut pg, "the flow run ended", async |pg| {
        sqlx::query_scalar(
            "SELECT status FROM flow_runs WHERE flow = 'f' AND finished_at IS NOT NULL",
        )
        .fetch_optional(pg)
        .await
        .ok()?
    })
    .await;
    assert_eq!(status, "success", "{}", b.said());
    let ran: Vec<(String, String, String)> =
        sqlx::query_as("SELECT job, host, status FROM runs ORDER BY id")
            .fetch_all(&mut pg)
            .await
            .unwrap();
    let ran: Vec<(&str, &str, &str)> = ran
        .iter()
        .map(|(j, h, s)| (j.as_str(), h.as_str(), s.as_str()))
        .collect();
    assert_eq!(ran, [("first", "b", "success"), ("second", "b", "success")]);
    assert!(b.said().contains("never started"), "{}", b.said());
    a.daemon.take().map(|mut d| d.wait());
    b.stop();
}
