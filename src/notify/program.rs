//! `run:` — a program, given the report on its stdin.
//!
//! The program is an argument vector, never a shell string: nothing a job
//! prints can become a command. It gets `OVERNIGHT_JOB`, `OVERNIGHT_RUN_ID`,
//! `OVERNIGHT_ATTEMPT` (about a flow run: `OVERNIGHT_FLOW`,
//! `OVERNIGHT_FLOW_RUN_ID`), `OVERNIGHT_STATUS`, `OVERNIGHT_CONDITION`,
//! `OVERNIGHT_RULE` and `OVERNIGHT_REPORT` (a file holding the same JSON).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::Subject;
use crate::config::trigger::Condition;
use crate::process::{spawn_tracked, untrack};

/// How long a trigger program may take.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the program, without the variables the jobs file keeps secrets in
/// (`withheld`); an error says how it failed.
pub async fn run(
    argv: &[String],
    withheld: &[String],
    report_file: &Path,
    subject: &Subject,
    condition: Condition,
    rule: &str,
) -> Result<String, String> {
    let json = serde_json::to_string(&subject.json()).expect("a report always serialises");
    if let Some(dir) = report_file.parent() {
        let _ = crate::state::create_dir(dir);
    }
    let _ = crate::state::create(report_file).and_then(|mut f| f.write_all(json.as_bytes()));
    let mut command = Command::new(&argv[0]);
    for name in withheld {
        command.env_remove(name);
    }
    match subject {
        Subject::Run(report) => command
            .env("OVERNIGHT_JOB", &report.job)
            .env("OVERNIGHT_RUN_ID", report.run_id.to_string())
            .env("OVERNIGHT_ATTEMPT", report.attempt.to_string()),
        Subject::Flow(news) => command
            .env("OVERNIGHT_FLOW", &news.run.flow)
            .env("OVERNIGHT_FLOW_RUN_ID", news.run.id.to_string()),
    };
    command
        .args(&argv[1..])
        .env("OVERNIGHT_STATUS", subject.status())
        .env("OVERNIGHT_CONDITION", condition.as_str())
        .env("OVERNIGHT_RULE", rule)
        .env("OVERNIGHT_REPORT", report_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child =
        spawn_tracked(&mut command, &[]).map_err(|e| format!("cannot start `{}`: {e}", argv[0]))?;
    let pid = child.id().unwrap_or_default();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let exchange = async {
        // A program that does not read its stdin is not a failure.
        let _ = stdin.write_all(json.as_bytes()).await;
        drop(stdin);
        let mut err = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut err).await;
        (child.wait().await, err)
    };
    let outcome = tokio::time::timeout(LIMIT, exchange).await;
    untrack(pid);
    match outcome {
        Err(_) => Err(format!(
            "`{}` did not finish within {}s",
            argv[0],
            LIMIT.as_secs()
        )),
        Ok((Err(e), _)) => Err(format!("`{}`: {e}", argv[0])),
        Ok((Ok(status), _)) if status.success() => Ok(format!("`{}` exited 0", argv[0])),
        Ok((Ok(status), err)) => {
            let err = String::from_utf8_lossy(&err);
            let first = err.lines().next().unwrap_or("");
            Err(format!(
                "`{}` failed ({status}){}",
                argv[0],
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            ))
        }
    }
}
