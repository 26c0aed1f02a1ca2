//! The command line (DESIGN §1): one file per subcommand, one `match`.

mod check;
mod completions;
mod daemon;
mod exec;
mod flow;
mod history;
mod import_crontab;
mod init;
mod logs;
mod man;
mod next;
mod prune;
mod report;
mod run;
mod signals;
mod status;
mod table;
mod times;
mod trigger;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ClientError;
use crate::config::{self, Config, ConfigError};
use crate::daemon::DaemonError;
use crate::exit::Outcome;
use crate::notify::{Moment, Notifier};
use crate::route;
use crate::store::{Recorder, Store, StoreError};
use std::sync::Arc;

/// `overnight --version`: the version, the commit and the build's date
/// (build.rs), as an operator reporting a problem needs them.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("OVERNIGHT_COMMIT"),
    ", built ",
    env!("OVERNIGHT_BUILD_DATE"),
    ")"
);

/// A batch job runner that replaces crontab for overnight work.
#[derive(Debug, Parser)]
#[command(name = "overnight", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented jobs file and a log4rs file to start from.
    Init(init::Args),
    /// Validate the jobs file and its log4rs file; show each job's next fire times.
    Check(check::Args),
    /// Print the next fire times of a cron expression.
    Next(next::Args),
    /// Run the scheduler in the foreground and serve the API.
    Daemon(daemon::Args),
    /// Run one job now (through the daemon when one is running).
    Run(run::Args),
    /// Wrap a command, as from a crontab line: capture, route, report, record.
    Exec(exec::Args),
    /// Every job: last run, status, next fire; runs going now.
    Status(status::Args),
    /// Past runs, newest first.
    History(history::Args),
    /// A run's captured output; `-f` follows a running job.
    Logs(logs::Args),
    /// A run's completion report.
    Report(report::Args),
    /// Turn a crontab into an `overnight.yaml` on stdout.
    ImportCrontab(import_crontab::Args),
    /// Remove what `retention:` keeps no longer (the daemon does it daily).
    Prune(prune::Args),
    /// Work with trigger rules: `overnight trigger test RULE`.
    Trigger(trigger::Args),
    /// Flows: start one, see its runs, resume, retry, skip, abort or hold.
    Flow(flow::Args),
    /// Print a shell's completion script: job, flow and rule names complete.
    Completions(completions::Args),
    /// Write the manual pages into a man directory.
    Man(man::Args),
    /// A cluster daemon's fence process (started by the daemon itself).
    #[command(hide = true)]
    Fence {
        /// Milliseconds without a heartbeat before the guarded groups die.
        patience_ms: u64,
    },
}

/// Why a command failed; printed by [`main`] and mapped to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A configuration file is invalid (printed as `FILE:LINE:COL` lines).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run history failed.
    #[error("error: {0}")]
    Store(#[from] StoreError),
    /// The daemon could not start.
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    /// The daemon could not be reached.
    #[error("error: {0}")]
    Client(#[from] ClientError),
    /// The command line asks for something that cannot be done.
    #[error("error: {0}")]
    Usage(String),
    /// Something asked for is not there.
    #[error("error: {0}")]
    NotFound(String),
}

impl CliError {
    fn outcome(&self) -> Outcome {
        match self {
            CliError::Config(_)
            | CliError::Usage(_)
            | CliError::Daemon(
                DaemonError::Config(_) | DaemonError::AlreadyRunning(_) | DaemonError::Refused(_),
            ) => Outcome::Usage,
            _ => Outcome::Failed,
        }
    }
}

/// `-c FILE`, shared by the commands that read the jobs file.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The jobs file [default: $OVERNIGHT_CONFIG, else ./overnight.yaml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// The jobs file, which must exist.
    fn load(&self) -> Result<Config, CliError> {
        let path = config::find(self.config.as_deref()).ok_or(ConfigError::NotFound)?;
        Ok(Config::load(&path)?)
    }

    /// The jobs file if there is one (an error in it is still an error).
    fn load_optional(&self) -> Result<Option<Config>, CliError> {
        config::find(self.config.as_deref())
            .map(|path| Config::load(&path))
            .transpose()
            .map_err(CliError::from)
    }

    /// The state directory: the jobs file's, else the default one.
    fn state_dir(&self) -> Result<PathBuf, CliError> {
        Ok(self
            .load_optional()?
            .map_or_else(config::default_state_dir, |c| c.state_dir))
    }
}

/// Opens the history of the jobs file's state directory, which must
/// already exist, to be read; with the jobs file, when there is one.
async fn open_store(arg: &ConfigArg) -> Result<(Store, Option<Config>), CliError> {
    let config = arg.load_optional()?;
    let place = config::Place::of(config.as_ref());
    if !crate::store::may_have_history(&place) {
        return Err(CliError::NotFound(format!(
            "no run history in `{}` yet; runs are recorded by `overnight run`, `overnight exec` and the daemon",
            place.state_dir().display()
        )));
    }
    let store = Store::open_at(&place).await?;
    let store = opened(store, place.state_dir(), config.as_ref()).await?;
    Ok((store, config))
}

/// "; did you mean `backup`?" when a known name is near `name`, else a
/// pointer to where the names are listed.
fn did_you_mean(name: &str, known: &[&str]) -> String {
    match config::check::closest(name, known) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => "; `overnight check` lists the jobs".to_string(),
    }
}

/// `start_flow:` from a command that runs jobs itself: through the daemon
/// running on the state folder, where flows run.
#[derive(Debug)]
struct ThroughDaemon(PathBuf);

impl crate::notify::StartsFlows for ThroughDaemon {
    fn start_flow(
        &self,
        flow: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
        let client = crate::client::Client::find(&self.0);
        let state_dir = self.0.clone();
        Box::pin(async move {
            let Some(client) = client else {
                return Err(crate::notify::no_daemon(&flow, &state_dir));
            };
            match client.start_flow(&flow).await {
                Ok(id) => Ok(format!(
                    "started flow run #{id} of `{flow}` through the daemon (pid {})",
                    client.pid()
                )),
                Err(e) => Err(format!("flow `{flow}` not started: {e}")),
            }
        })
    }
}

/// Has `notifier` start flows through the daemon on `state_dir`.
fn through_daemon(notifier: &Notifier, state_dir: &Path) {
    notifier.starts_flows_with(Arc::new(ThroughDaemon(state_dir.to_path_buf())));
}

/// A store opened to be read: runs whose runner and job are both gone (an
/// `overnight exec` killed with -9) are closed as `lost` first, so that no
/// dead holder shows, and the jobs file's triggers hear of them.
async fn opened(
    store: Store,
    state_dir: &Path,
    config: Option<&Config>,
) -> Result<Store, CliError> {
    let closed = store.close_lost(&crate::process::hostname(), false).await?;
    if let Some(config) = config.filter(|_| !closed.is_empty()) {
        let notifier = Notifier::new(
            Recorder::from(store.clone()),
            Arc::new(state_dir.to_path_buf()),
        );
        through_daemon(&notifier, state_dir);
        for report in &closed {
            let job = match config.job(&report.job) {
                Some(job) => job.clone(),
                None => Arc::new(config.adhoc_job(report.job.clone(), Vec::new())),
            };
            notifier.moment(&job, report, Moment::Final);
        }
        notifier.settled().await;
    }
    Ok(store)
}

/// Parses the command line, runs the command, and maps its result to an
/// exit code.
pub fn main() -> ExitCode {
    completions::answer_if_asked();
    let cli = match parse_exec().map_or_else(Cli::try_parse, Ok) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `overnight exec backup.sh --full`: the command belongs after `--`.
            if e.kind() == clap::error::ErrorKind::UnknownArgument
                && std::env::args_os().nth(1).is_some_and(|a| a == "exec")
            {
                eprintln!(
                    "\ntip: the wrapped command goes after `--`: overnight exec [--name NAME] -- COMMAND ARGS…"
                );
            }
            return if e.use_stderr() {
                Outcome::Usage
            } else {
                Outcome::Success
            }
            .into();
        }
    };
    if cli.command.only_prints() {
        quiet_on_closed_pipe();
    }
    // The daemon works on every core; a one-shot command (often a crontab
    // line) starts faster on one thread.
    let mut builder = if matches!(cli.command, Command::Daemon(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .expect("the async runtime starts");
    // The log buffers are written however this ends, a panic included,
    // and after the runtime, whose tasks may log as they are dropped.
    let flush = FlushOnDrop;
    let result = runtime.block_on(dispatch(cli.command));
    drop(runtime);
    drop(flush);
    match result {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("{e}");
            e.outcome().into()
        }
    }
}

/// Writes the log buffers when dropped.
struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        route::flush();
    }
}

/// `overnight exec …` parsed alone: crontab lines run it again and again,
/// and building every other subcommand's arguments is a tenth of its cost.
/// `None` when the line is not a valid `exec` line: the whole parser then
/// says what is wrong (or prints the help asked for).
fn parse_exec() -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let mut line = std::env::args_os().skip(1).peekable();
    if line.peek()? != "exec" {
        return None;
    }
    let command = exec::Args::augment_args(clap::Command::new("exec"));
    let matches = command.try_get_matches_from(line).ok()?;
    let args = exec::Args::from_arg_matches(&matches).ok()?;
    Some(Cli {
        command: Command::Exec(args),
    })
}

impl Command {
    /// Whether the command only prints what it reads (no run to finish or
    /// record when its reader goes away).
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Check(_)
                | Command::Next(_)
                | Command::Status(_)
                | Command::History(_)
                | Command::Logs(_)
                | Command::Report(_)
                | Command::ImportCrontab(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }
}

/// A printing command whose output pipe closes (`overnight history | head
/// -1`) ends there and then, as `cat` would, instead of panicking in
/// `println!`. Commands that run jobs keep Rust's default (the write fails
/// and they go on): their run must still be recorded.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal, before any
    // thread is started; no memory is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Prints a run's outcome on stdout; a closed pipe loses the text, not the
/// exit code (the run is recorded already).
fn say(text: &str) {
    use std::io::Write;
    // What the console appenders hold is older: it goes first.
    route::flush();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn dispatch(command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Init(args) => init::run(args),
        Command::Check(args) => check::run(args).await,
        Command::Next(args) => next::run(args),
        Command::Daemon(args) => daemon::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Exec(args) => exec::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::History(args) => history::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::ImportCrontab(args) => import_crontab::run(args),
        Command::Prune(args) => prune::run(args).await,
        Command::Trigger(args) => trigger::run(args).await,
        Command::Flow(args) => flow::run(args).await,
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Fence { patience_ms } => {
            crate::fence::watch(std::time::Duration::from_millis(patience_ms));
            Ok(Outcome::Success)
        }
    }
}
