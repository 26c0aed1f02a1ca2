//! `email:` — the report as a message, over SMTP or the local sendmail.
//!
//! The body shows the report's sections in order: status and summary,
//! error details, warning details, the last lines of the log, progress;
//! the full report is attached as JSON. About a flow run: where it holds,
//! why, and the commands that go on, then the run as a tree. Credentials come from environment
//! variables named in the `smtp:` block, never from the file.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Subject;
use crate::config::trigger::{Condition, EmailAction, Mail, SmtpTls};
use crate::report::Report;

/// Tries per message when the server cannot be reached.
const TRIES: u32 = 3;

/// Sends the message; the error says why it could not be delivered.
pub async fn send(
    mail: &Mail,
    email: &EmailAction,
    subject: &Subject,
    condition: Condition,
) -> Result<String, String> {
    let message = message(mail, email, subject, condition)?;
    let mut last = String::new();
    for attempt in 1..=TRIES {
        match deliver(mail, message.clone()).await {
            Ok(detail) => return Ok(detail),
            // A 5xx answer (no such user, refused relay) will not change:
            // asking again only repeats it to the server.
            Err(Undelivered::Refused(why)) => {
                return Err(format!(
                    "email to {} refused, not retried: {why}",
                    email.to.join(", ")
                ));
            }
            Err(Undelivered::Failed(why)) => last = why,
        }
        if attempt < TRIES {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(format!(
        "email to {} not delivered after {TRIES} tries: {last}",
        email.to.join(", ")
    ))
}

/// Why a message did not leave.
enum Undelivered {
    /// The server answered with a permanent (5xx) error.
    Refused(String),
    /// Anything that may go better on the next try.
    Failed(String),
}

impl From<String> for Undelivered {
    fn from(why: String) -> Undelivered {
        Undelivered::Failed(why)
    }
}

async fn deliver(mail: &Mail, message: Message) -> Result<String, Undelivered> {
    if let Some(smtp) = &mail.smtp {
        crate::exec::http::install_tls_provider();
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| e.to_string())?,
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| e.to_string())?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.username_env, &smtp.password_env) {
            let user = std::env::var(user)
                .map_err(|_| format!("`${user}` (smtp.username_env) is not set"))?;
            let password = std::env::var(password)
                .map_err(|_| format!("`${password}` (smtp.password_env) is not set"))?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        let answer = builder.build().send(message).await.map_err(|e| {
            let why = format!("SMTP {}:{}: {e}", smtp.host, smtp.port);
            if e.is_permanent() {
                Undelivered::Refused(why)
            } else {
                Undelivered::Failed(why)
            }
        })?;
        Ok(format!(
            "accepted by {}:{}: {}",
            smtp.host,
            smtp.port,
            answer.code()
        ))
    } else if let Some(sendmail) = &mail.sendmail {
        AsyncSendmailTransport::<Tokio1Executor>::new_with_command(sendmail)
            .send(message)
            .await
            .map_err(|e| format!("{}: {e}", sendmail.display()))?;
        Ok(format!("handed to {}", sendmail.display()))
    } else {
        Err(Undelivered::Failed(
            "no `smtp:` block and no sendmail to send it with".into(),
        ))
    }
}

fn message(
    mail: &Mail,
    email: &EmailAction,
    about: &Subject,
    condition: Condition,
) -> Result<Message, String> {
    let from = mail
        .smtp
        .as_ref()
        .map(|s| s.from.clone())
        .unwrap_or_else(|| format!("overnight@{}", about.host()));
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| format!("bad address `{a}`: {e}"))
    };
    let subject = email.subject.clone().unwrap_or_else(|| {
        format!(
            "[overnight] {}{} {} on {}: {}",
            about.what(),
            about.name(),
            condition.as_str(),
            about.host(),
            about.summary()
        )
    });
    let mut builder = Message::builder().from(mailbox(&from)?).subject(subject);
    for to in &email.to {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &email.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    let json = serde_json::to_string_pretty(&about.json()).expect("a report always serialises");
    let text = match about {
        Subject::Run(report) => body(report, condition),
        Subject::Flow(news) => news.body(condition),
    };
    let attachment = Attachment::new("report.json".to_string()).body(
        json,
        ContentType::parse("application/json").expect("a valid type"),
    );
    builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(attachment),
        )
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// The text of the message: the report's sections in order.
pub fn body(report: &Report, condition: Condition) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Job {} run #{} on {}: {} ({}).",
        report.job,
        report.run_id,
        report.host,
        report.status.as_str().to_uppercase(),
        condition.as_str()
    );
    let _ = writeln!(out, "{}", report.summary);
    let _ = writeln!(
        out,
        "Started {}, finished {}, took {:.1}s; {}.",
        report.started_at.to_rfc3339(),
        report.finished_at.to_rfc3339(),
        report.duration_ms as f64 / 1000.0,
        report.exit
    );
    for (title, entries, count) in [
        ("Errors", &report.errors, report.error_count),
        ("Warnings", &report.warnings, report.warning_count),
    ] {
        if entries.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({count})");
        for e in entries {
            match &e.code {
                Some(code) => {
                    let _ = writeln!(out, "  - [{code}] {}", e.message);
                }
                None => {
                    let _ = writeln!(out, "  - {}", e.message);
                }
            }
        }
    }
    let lines = super::last_lines(report, 20);
    if !lines.is_empty() {
        let _ = writeln!(
            out,
            "\nLast lines of the log ({} lines in all)",
            report.log.stdout_lines + report.log.stderr_lines
        );
        for line in lines {
            let _ = writeln!(out, "  | {line}");
        }
    }
    if let Some(p) = &report.progress {
        let percent = p.percent.map(|p| format!("{p}% ")).unwrap_or_default();
        let _ = writeln!(out, "\nProgress\n  {percent}{}", p.message);
    }
    let _ = writeln!(out, "\nThe full report is attached as report.json.");
    out
}
