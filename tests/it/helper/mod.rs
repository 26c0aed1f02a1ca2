//! What the integration tests share: the real binary in a sandbox folder, an
//! in-process daemon, and waiting for a condition with a deadline.

#![allow(dead_code)]

pub mod postgres;
pub mod smtp;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use std::sync::Arc;

use overnight::config::Config;
use overnight::schedule::clock::{Clock, SystemClock};
use overnight::store::{HistoryQuery, RunRecord, Store};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The repository's root, for the shipped files.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder to run the binary in, with its own state directory.
pub struct Sandbox {
    root: PathBuf,
    /// Removes the folder on drop; `None` for a handle made by [`Sandbox::at`].
    _owner: Option<TempDir>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temp dir");
        Sandbox {
            root: dir.path().to_path_buf(),
            _owner: Some(dir),
        }
    }

    /// A handle on an existing sandbox folder (kept by its owner).
    pub fn at(path: PathBuf) -> Sandbox {
        Sandbox {
            root: path,
            _owner: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The state directory used when there is no jobs file.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// `overnight ARGS…` in the sandbox, isolated from the caller's setup.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_overnight"));
        cmd.args(args)
            .current_dir(self.path())
            .env("OVERNIGHT_STATE_DIR", self.state_dir())
            .env_remove("OVERNIGHT_CONFIG")
            .env_remove("OVERNIGHT_STORE")
            .env_remove("XDG_STATE_HOME");
        cmd
    }

    /// `overnight daemon` as a real process, its stderr kept in
    /// `daemon.err` (see [`Sandbox::daemon_said`]); spawn it after any
    /// changes to the command.
    pub fn daemon(&self) -> Command {
        let mut cmd = self.command(&["daemon"]);
        let err = std::fs::File::create(self.path().join("daemon.err")).unwrap();
        cmd.stdout(std::process::Stdio::null()).stderr(err);
        cmd
    }

    /// `overnight daemon` started as a real process, its stderr added to
    /// `daemon.err` (a restarted daemon's lines follow the first one's).
    pub fn spawn_daemon(&self) -> std::process::Child {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("daemon.err"))
            .unwrap();
        self.command(&["daemon"])
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap()
    }

    /// Waits until the daemon's stderr holds `what`.
    pub async fn daemon_said(&self, what: &str) {
        let err = self.path().join("daemon.err");
        wait_for(Duration::from_secs(30), what, || {
            let found = std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains(what);
            async move { found.then_some(()) }
        })
        .await
    }

    /// Runs `overnight ARGS…` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    /// Writes a file in the sandbox and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Reads a file of the sandbox, or "" when it is not there.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }
}

/// Text of a process's stdout and stderr.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `check` returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the runs in `state_dir` of the daemon running in `sb`
/// give `Some`; on a timeout, says what the daemon said.
pub async fn wait_for_daemon_runs<T>(
    sb: &Sandbox,
    state_dir: &Path,
    what: &str,
    check: impl Fn(Vec<RunRecord>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check(runs(state_dir).await) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the daemon said:\n{}",
            std::fs::read_to_string(sb.path().join("daemon.err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every run in a state directory, oldest first.
pub async fn runs(state_dir: &Path) -> Vec<RunRecord> {
    if !overnight::store::has_history(state_dir) {
        return Vec::new();
    }
    let store = Store::open(state_dir).await.expect("the store opens");
    let mut runs = store
        .history(&HistoryQuery::latest(None, 100_000))
        .await
        .expect("history");
    store.close().await;
    runs.reverse();
    runs
}

/// The daemon, in this process, on a port of its own, stopped on drop.
pub struct TestDaemon {
    pub sandbox: Sandbox,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), overnight::daemon::DaemonError>>>,
}

impl TestDaemon {
    /// Starts a daemon on a jobs file with these contents.
    pub async fn start(jobs_file: &str) -> TestDaemon {
        Self::start_in(Sandbox::new(), jobs_file, Arc::new(SystemClock)).await
    }

    /// Starts a daemon in `sandbox` (a restart keeps its state), on `clock`.
    pub async fn start_in(sandbox: Sandbox, jobs_file: &str, clock: Arc<dyn Clock>) -> TestDaemon {
        Self::start_on(sandbox, jobs_file, clock, "127.0.0.1:0").await
    }

    /// Starts a daemon in `sandbox`, on `clock`, its API bound to `bind`.
    pub async fn start_on(
        sandbox: Sandbox,
        jobs_file: &str,
        clock: Arc<dyn Clock>,
        bind: &str,
    ) -> TestDaemon {
        let config_path = sandbox.write("overnight.yaml", jobs_file);
        let config = Config::load(&config_path).expect("a valid jobs file");
        let state_dir = config.state_dir.clone();
        let listener = TcpListener::bind(bind).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(overnight::daemon::run_with_clock(
            clock,
            config,
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let daemon = TestDaemon {
            sandbox,
            config_path,
            state_dir,
            stop: Some(stop),
            task: Some(task),
        };
        let card = daemon.state_dir.join("daemon.json");
        wait_for(Duration::from_secs(10), "the daemon's card", || {
            let ready = card.exists();
            async move { ready.then_some(()) }
        })
        .await;
        daemon
    }

    /// Its card: where it listens and its token.
    pub fn card(&self) -> overnight::daemon::info::DaemonInfo {
        overnight::daemon::info::DaemonInfo::read(&self.state_dir).expect("the daemon's card")
    }

    /// Stops it, waits for it to end, and hands back its sandbox.
    pub async fn stop(mut self) -> Sandbox {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the daemon task")
                .expect("the daemon stops cleanly");
        }
        std::mem::replace(&mut self.sandbox, Sandbox::new())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits until the runs of `state_dir` (oldest first) give `Some`.
pub async fn wait_for_runs<T>(
    state_dir: &Path,
    what: &str,
    check: impl Fn(Vec<RunRecord>) -> Option<T>,
) -> T {
    // Generous: a loaded machine (the whole suite on two cores) is slow,
    // and a deadline only costs time when something is wrong.
    wait_for(Duration::from_secs(30), what, || {
        let state_dir = state_dir.to_path_buf();
        let found = async move { runs(&state_dir).await };
        let check = &check;
        async move { check(found.await) }
    })
    .await
}

/// A clock that runs `speed` times faster than real time from `origin`, so
/// a per-second schedule fires many times a second while jobs — real
/// processes — take real time.
#[derive(Debug)]
pub struct FastClock {
    origin: chrono::DateTime<chrono::Utc>,
    start: std::time::Instant,
    speed: u32,
}

impl FastClock {
    pub fn new(origin: chrono::DateTime<chrono::Utc>, speed: u32) -> FastClock {
        FastClock {
            origin,
            start: std::time::Instant::now(),
            speed,
        }
    }
}

impl Clock for FastClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let elapsed = self.start.elapsed() * self.speed;
        self.origin + chrono::Duration::from_std(elapsed).unwrap()
    }

    fn sleep_until(
        &self,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> overnight::schedule::clock::Sleep<'_> {
        let wait = (deadline - self.now()).to_std().unwrap_or_default() / self.speed;
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Has the command's process start with umask 000, the loosest there is.
pub fn umask_000(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    }
}

/// Ends a daemon started as a process the way systemd does, and waits.
pub fn kill9(pid: i32) {
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

pub fn terminate(mut daemon: std::process::Child) -> std::process::ExitStatus {
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait().unwrap()
}

/// The id of the group `name`, as `getent group` gives it.
pub fn group_id(name: &str) -> String {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// Whether the tests run as root (the user switch of `user:` needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
