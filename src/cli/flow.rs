//! `overnight flow …`: start a flow, see where its runs stand, and steer a
//! held one (DESIGN §8). Starting goes through the running daemon, which
//! drives flow runs; steering goes to it too, or, with no daemon running,
//! to the store, for the next daemon to go on from; status and history
//! read the store.

use super::table::{self, Column, Screen};
use super::{CliError, ConfigArg, open_store};
use crate::client::Client;
use crate::config::Config;
use crate::daemon::api::act::FlowCommand;
use crate::daemon::flows::CommandError;
use crate::exit::Outcome;
use crate::flow::Op;
use crate::lock::DaemonLock;
use crate::notify::{Moment, Notifier};
use crate::report::{human_time, span};
use crate::route::{Escaped, FlowLog};
use crate::store::HistoryQuery;
use crate::store::Notification;
use crate::store::{FlowSave, Recorder, Store};
use crate::zone::Zone;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    command: FlowCommandArg,
}

#[derive(Debug, clap::Subcommand)]
enum FlowCommandArg {
    /// Start a run of a flow now.
    Start {
        /// The flow's name in the jobs file.
        #[arg(add = super::completions::flows())]
        flow: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A flow run as a tree: each step's status, run and route (the latest
    /// run, or the runs still open, without RUN).
    Status {
        /// The flow run's id.
        run: Option<i64>,
        /// One JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Past runs of a flow, newest first.
    History {
        /// Only this flow's runs.
        #[arg(add = super::completions::flows())]
        flow: Option<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON document: an array of flow runs.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Go on from where a held flow run stopped (a `hold:` step counts as
    /// success; a failed critical step stays failed and its routes go on).
    Resume(RunArg),
    /// Run a step that ended failed or warning again.
    Retry(StepArg),
    /// Count a step as success without running it.
    Skip(StepArg),
    /// End a flow run: nothing else starts, running steps finish.
    Abort(RunArg),
    /// Pause a flow run: nothing new starts until `resume`.
    Hold(RunArg),
}

#[derive(Debug, clap::Args)]
struct RunArg {
    /// The flow run's id.
    run: i64,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, clap::Args)]
struct StepArg {
    /// The flow run's id.
    run: i64,
    /// The step's name.
    step: String,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    match args.command {
        FlowCommandArg::Start { flow, config } => start(&flow, &config).await,
        FlowCommandArg::Status { run, json, config } => status(run, json, &config).await,
        FlowCommandArg::History {
            flow,
            limit,
            json,
            config,
        } => history(flow.as_deref(), limit, json, &config).await,
        FlowCommandArg::Resume(arg) => command(arg.run, Op::Resume, &arg.config).await,
        FlowCommandArg::Abort(arg) => command(arg.run, Op::Abort, &arg.config).await,
        FlowCommandArg::Hold(arg) => command(arg.run, Op::Hold, &arg.config).await,
        FlowCommandArg::Retry(arg) => command(arg.run, Op::Retry(arg.step), &arg.config).await,
        FlowCommandArg::Skip(arg) => command(arg.run, Op::Skip(arg.step), &arg.config).await,
    }
}

/// The running daemon of the jobs file, which drives flow runs.
fn daemon(config: &Config) -> Result<Client, CliError> {
    Client::find(&config.state_dir).ok_or_else(|| {
        CliError::Usage(
            "flows are driven by the daemon, and none is running for this jobs file; start it with `overnight daemon`".into(),
        )
    })
}

async fn start(flow: &str, arg: &ConfigArg) -> Result<Outcome, CliError> {
    let config = arg.load()?;
    if config.flow(flow).is_none() {
        let names: Vec<&str> = config.flows.iter().map(|f| f.name.as_str()).collect();
        return Err(CliError::NotFound(format!(
            "no flow named `{flow}` in `{}`{}",
            config.path.display(),
            super::did_you_mean(flow, &names)
        )));
    }
    let id = daemon(&config)?.start_flow(flow).await?;
    super::say(&format!(
        "flow run #{id} of `{flow}` started; follow it with `overnight flow status {id}`\n"
    ));
    Ok(Outcome::Success)
}

/// An operator's command: given to the daemon that drives the run (this
/// host's, or in a cluster another's, through its API), or, with none
/// driving it, applied to the store.
async fn command(id: i64, op: Op, arg: &ConfigArg) -> Result<Outcome, CliError> {
    let config = arg.load()?;
    let who = os_user();
    if !crate::store::may_have_history(&config.place()) {
        return Err(no_such_run(id));
    }
    // While this process holds the daemon's lock no daemon runs (one
    // starting meanwhile waits for it).
    let daemon = match DaemonLock::for_operator(&config.state_dir) {
        Some(lock) => match driving_host(id, &config).await? {
            Some(daemon) => daemon,
            None => return on_the_store(id, &op, &who, &config, lock).await,
        },
        None => Client::find(&config.state_dir).ok_or_else(|| {
            CliError::Usage(format!(
                "the state directory `{}` is busy: a daemon is starting, or another `overnight flow` command runs; try again in a moment",
                config.state_dir.display()
            ))
        })?,
    };
    let body = FlowCommand {
        step: op.step().map(str::to_string),
        who: Some(who),
    };
    let run = daemon
        .flow_command(id, op.word(), &body)
        .await
        .map_err(|e| match e {
            crate::client::ClientError::Refused(why) => CliError::Usage(why),
            other => other.into(),
        })?;
    super::say(&(run.tree(&config.flow_zone(&run.flow)) + "\n"));
    Ok(Outcome::Success)
}

/// In a cluster, the API of the other host that drives open flow run
/// `id` (its own daemon hands a command on; with none here, this command
/// does); an error when that host cannot be reached.
async fn driving_host(id: i64, config: &Config) -> Result<Option<Client>, CliError> {
    let place = config.place();
    if !matches!(place, crate::config::Place::Server { .. }) {
        return Ok(None);
    }
    let store = Store::connect_at(&place).await?;
    let run = store.flow_run(id).await?;
    let elsewhere = run.filter(|r| r.finished_at.is_none() && r.host != config.cluster.host);
    let Some(run) = elsewhere else {
        store.close().await;
        return Ok(None);
    };
    // A host declared dead drives nothing: its run is the store's (its
    // saves are fenced when it comes back, and it takes the run up again).
    let hosts = store.hosts().await;
    store.close().await;
    let hosts = hosts?;
    if !hosts.iter().any(|h| h.name == run.host && h.alive) {
        return Ok(None);
    }
    let daemon = Client::of_cluster_host(&hosts, &run.host, &config.state_dir);
    daemon.map(Some).ok_or_else(|| {
        CliError::Usage(format!(
            "flow run #{id} of `{}` is driven by host `{}`, whose API cannot be reached from here (it is not up, or registered no address); give the command on a host of the cluster, or once it is declared dead, to the host that takes it over",
            run.flow, run.host
        ))
    })
}

fn no_such_run(id: i64) -> CliError {
    CliError::NotFound(format!(
        "there is no flow run #{id}; `overnight flow history` lists them"
    ))
}

/// With no daemon: the command applied to the run's record in the store
/// under the daemon's `lock`, and said on `flows::status` as the daemon
/// would; a run it ends is closed here, with its triggers (the lock let
/// go first: they may take a while). The next daemon goes on from there.
async fn on_the_store(
    id: i64,
    op: &Op,
    who: &str,
    config: &Config,
    lock: DaemonLock,
) -> Result<Outcome, CliError> {
    crate::route::install(crate::daemon::routing(config)?);
    // What the last daemon left in its journal comes first: an entry
    // folded in after this write would undo it.
    let store = Store::connect_at(&config.place()).await?;
    store.fold_journal().await?;
    let mut run = store.flow_run(id).await?.ok_or_else(|| no_such_run(id))?;
    if run.finished_at.is_some() {
        let ended = CommandError::Ended {
            id,
            flow: run.flow.clone(),
            status: run.status,
        };
        return Err(CliError::Usage(ended.to_string()));
    }
    let now = chrono::Utc::now();
    let changed = run
        .operate(op, who, now)
        .map_err(|why| CliError::Usage(why.0))?;
    let over = run.state.progress.is_over();
    if over {
        run.finished_at = Some(now);
    }
    let newly_held = run.settle();
    Recorder::from(store.clone())
        .save_flow(&FlowSave::of(&run, &changed))
        .await?;
    let log = FlowLog::new(&run.flow, id);
    log.status(
        log::Level::Info,
        format_args!("{} by {} (no daemon was running)", op.done(), Escaped(who)),
    );
    if over {
        log.ended(&run);
        let _ = std::fs::remove_dir_all(config.state_dir.join("flows").join(id.to_string()));
    }
    drop(lock);
    let moment = match (over, newly_held) {
        (true, _) => Some(Moment::Final),
        (false, true) => Some(Moment::Held),
        (false, false) => None,
    };
    if let Some(moment) = moment {
        let notifier = Notifier::new(store.clone().into(), Arc::new(config.state_dir.clone()));
        notifier.flow_run(config, run.clone(), moment).await;
        notifier.settled().await;
    }
    let zone = config.flow_zone(&run.flow);
    let mut shown = run.tree(&zone) + "\n";
    shown += match (over, run.state.progress.aborted) {
        (true, _) => "",
        (false, true) => {
            "no daemon is running: the next one ends the run once its running steps' runs are closed\n"
        }
        (false, false) => {
            "no daemon is running: the run goes on from here when `overnight daemon` starts\n"
        }
    };
    super::say(&shown);
    Ok(Outcome::Success)
}

async fn status(id: Option<i64>, json: bool, arg: &ConfigArg) -> Result<Outcome, CliError> {
    let (store, config) = open_store(arg).await?;
    let runs = match id {
        Some(id) => match store.flow_run(id).await? {
            Some(run) => vec![run],
            None => {
                return Err(CliError::NotFound(format!(
                    "there is no flow run #{id}; `overnight flow history` lists them"
                )));
            }
        },
        None => {
            let open = store.open_flow_runs().await?;
            if open.is_empty() {
                store.flow_history(&HistoryQuery::latest(None, 1)).await?
            } else {
                open
            }
        }
    };
    let sent = deliveries(&store, &runs).await?;
    if json {
        let reports: Vec<_> = runs.iter().zip(&sent).map(json_report).collect();
        let doc = match (id, reports.as_slice()) {
            (Some(_), [one]) => one.clone(),
            _ => serde_json::Value::Array(reports),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serialises")
        );
        return Ok(Outcome::Success);
    }
    if runs.is_empty() {
        println!("no flow runs yet; start one with `overnight flow start FLOW`");
    }
    for (run, sent) in runs.iter().zip(&sent) {
        let mut shown = run.tree(&zone(config.as_ref(), &run.flow)) + "\n";
        // In a cluster, the host its steps run on.
        if store.is_server() {
            shown += &format!("driven by host `{}`\n", run.host);
        }
        for n in sent {
            shown += &(super::report::delivery_line(n) + "\n");
        }
        super::say(&shown);
    }
    Ok(Outcome::Success)
}

async fn history(
    flow: Option<&str>,
    limit: u32,
    json: bool,
    arg: &ConfigArg,
) -> Result<Outcome, CliError> {
    let (store, config) = open_store(arg).await?;
    let runs = store
        .flow_history(&HistoryQuery::latest(flow, limit))
        .await?;
    if json {
        let sent = deliveries(&store, &runs).await?;
        let reports: Vec<_> = runs.iter().zip(&sent).map(json_report).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("serialises")
        );
        return Ok(Outcome::Success);
    }
    if runs.is_empty() {
        println!("no flow runs yet");
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let took = run
                .finished_at
                .map(|end| span(run.started_at, end))
                .unwrap_or_default();
            vec![
                run.id.to_string(),
                run.flow.clone(),
                run.status.to_string(),
                run.trigger.as_str().to_string(),
                human_time(run.started_at, &zone(config.as_ref(), &run.flow)),
                took,
                run.step_counts(),
            ]
        })
        .collect();
    print!("{}", table::render(&HISTORY, &rows, Screen::stdout()));
    Ok(Outcome::Success)
}

/// A narrow terminal cuts the step counts first, then leaves out the
/// trigger, then the duration, and last cuts the flow's name.
const HISTORY: [Column; 7] = [
    Column::right("ID"),
    Column::names("FLOW").shrinks(8, 3),
    Column::status("STATUS"),
    Column::left("TRIGGER").drops(1),
    Column::left("WHEN"),
    Column::right("DURATION").drops(2),
    Column::left("STEPS").shrinks(5, 0),
];

/// The trigger deliveries about each run.
async fn deliveries(
    store: &crate::store::Store,
    runs: &[crate::store::FlowRecord],
) -> Result<Vec<Vec<Notification>>, CliError> {
    let mut sent = Vec::with_capacity(runs.len());
    for run in runs {
        sent.push(store.notifications(run.id).await?);
    }
    Ok(sent)
}

/// A run's report with the deliveries about it, for `--json`.
fn json_report((run, sent): (&crate::store::FlowRecord, &Vec<Notification>)) -> serde_json::Value {
    let mut report = run.report();
    report["notifications"] = serde_json::to_value(sent).expect("notifications serialise");
    report
}

/// The zone a flow's times are shown in.
fn zone(config: Option<&Config>, flow: &str) -> Zone {
    config.map_or_else(Zone::local, |c| c.flow_zone(flow))
}

/// Who runs this command, for the record of operator actions.
fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("uid {}", unsafe { libc::getuid() })
        })
}
