//! The HTTP executor: the job is a request; the application does the work
//! and answers (DESIGN §5).
//!
//! The response's code gives the base status (100–399 success, 400 and up
//! failed, or the job's `status_map`); `X-Batch-Complete-Status` declares
//! the status; a JSON or XML body is a report; an NDJSON or event-stream
//! body is read as it arrives, line by line through the same protocol as a
//! command's output; any other body is log lines. When the application
//! cannot answer, the runner writes the report itself: failed, with one
//! error entry that says what happened. `${VAR}` in the URL and headers is
//! taken from the environment, and those values never leave the executor
//! unredacted: messages name the URL as written in the jobs file.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::lines::LineSplitter;
pub(crate) use super::redact::Redactor;
use super::{Attempt, EventSender, protocol};
use crate::config::{HttpBody, HttpSpec};
use crate::event::{EntryKind, Line, RunEvent, Stream};
use crate::report::body::{parse_json, parse_xml};
use crate::report::{Exit, Status};

/// The header an application declares the run's status in.
pub const STATUS_HEADER: &str = "x-batch-complete-status";

/// How many lines of a failed answer's body an error quotes.
const QUOTED_LINES: usize = 5;

/// Sends the job's request and reads the answer into events.
pub async fn run(attempt: &Attempt<'_>, spec: &HttpSpec, events: EventSender) -> Exit {
    let mut redactor = Redactor::default();
    let prepared = prepare(attempt, spec, &mut redactor);
    let out = Out {
        events,
        redactor: &redactor,
    };
    let request = match prepared {
        Ok(request) => request,
        Err(message) => return out.fail(message).await,
    };
    let limit = spec.timeout.or(attempt.job.timeout);
    let mut stop = attempt.stop.clone();
    let exchange = exchange(spec, request, &out);
    tokio::select! {
        exit = exchange => exit,
        () = sleep_opt(limit) => {
            let limit = humantime::format_duration(limit.unwrap_or_default());
            out.fail(format!("no complete answer from {} {} within {limit}", spec.method, spec.url)).await
        }
        why = super::command::stopped(&mut stop) => out.fail(why).await,
    }
}

/// Where the executor's events go, secrets removed.
struct Out<'a> {
    events: EventSender,
    redactor: &'a Redactor,
}

impl Out<'_> {
    async fn send(&self, batch: Vec<RunEvent>) {
        let batch = batch.into_iter().map(|e| self.redactor.event(e)).collect();
        let _ = self.events.send(batch).await;
    }

    /// One error entry saying what happened, and a failed exit.
    async fn fail(&self, message: String) -> Exit {
        let message = self.redactor.text(&message).into_owned();
        self.send(vec![RunEvent::entry(EntryKind::Error, message.clone())])
            .await;
        Exit {
            reason: Some(message),
            ..Exit::default()
        }
    }
}

/// The request, `${VAR}`s expanded (each expansion remembered as secret).
fn prepare(
    attempt: &Attempt<'_>,
    spec: &HttpSpec,
    redactor: &mut Redactor,
) -> Result<reqwest::RequestBuilder, String> {
    let lookup = |name: &str| {
        attempt
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| attempt.job.env.get(name).cloned())
            .or_else(|| std::env::var(name).ok())
    };
    let mut expand = |text: &str, what: &str| {
        expand_vars(text, &lookup, redactor)
            .map_err(|v| format!("{what}: `${{{v}}}` is not set in the environment"))
    };
    let url = expand(&spec.url, "http.url")?;
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let value = expand(value, &format!("header `{name}`"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
        headers.insert(name, value);
    }
    let redirects = if spec.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    let client = client_builder()
        .redirect(redirects)
        .tls_danger_accept_invalid_certs(!spec.tls_verify)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let method = reqwest::Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| format!("bad method `{}`", spec.method))?;
    let mut request = client.request(method, &url).headers(headers.clone());
    request = match &spec.body {
        None => request,
        Some(HttpBody::Json(json)) => request.json(json),
        Some(HttpBody::Text(text)) if headers.contains_key(CONTENT_TYPE) => {
            request.body(text.clone())
        }
        Some(HttpBody::Text(text)) => request
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(text.clone()),
    };
    Ok(request)
}

/// `${NAME}` replaced from `lookup`, each value taken by `redactor`; the
/// unset name on failure.
pub(crate) fn expand_vars(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    redactor: &mut Redactor,
) -> Result<String, String> {
    crate::config::expand_vars(text, lookup, |value| redactor.add(value))
}

/// Every HTTP client of the program starts here: rustls needs a crypto
/// provider installed first (ours is ring, see Cargo.toml), and proxies
/// from the environment are not used.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder().no_proxy()
}

/// rustls needs a crypto provider installed once per process: ring.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How an answer's body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Xml,
    /// NDJSON: each line through the protocol.
    Lines,
    /// Server-sent events: each `data:` line through the protocol.
    Events,
    /// Anything else: log lines.
    Text,
}

fn body_kind(headers: &HeaderMap) -> BodyKind {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => BodyKind::Lines,
        "text/event-stream" => BodyKind::Events,
        t if t == "application/json" || t.ends_with("+json") => BodyKind::Json,
        t if t == "application/xml" || t == "text/xml" || t.ends_with("+xml") => BodyKind::Xml,
        _ => BodyKind::Text,
    }
}

async fn exchange(spec: &HttpSpec, request: reqwest::RequestBuilder, out: &Out<'_>) -> Exit {
    let started = std::time::Instant::now();
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return out.fail(describe(&e, spec)).await,
    };
    let code = response.status();
    let base = spec
        .status_map
        .get(&code.as_u16())
        .copied()
        .unwrap_or(if code.as_u16() < 400 {
            Status::Success
        } else {
            Status::Failed
        });
    let mut first = vec![RunEvent::entry(
        EntryKind::Notice,
        format!(
            "HTTP {} from {} {} after {:.3}s",
            code,
            spec.method,
            spec.url,
            started.elapsed().as_secs_f64()
        ),
    )];
    if let Some(value) = response.headers().get(STATUS_HEADER) {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match text.parse::<Status>() {
            Ok(status @ (Status::Success | Status::Warning | Status::Failed)) => {
                first.push(RunEvent::Status(status))
            }
            _ => first.push(RunEvent::entry(
                EntryKind::Warning,
                format!("ignored X-Batch-Complete-Status `{text}`; use success, warning or failed"),
            )),
        }
    }
    out.send(first).await;

    let exit = Exit {
        http_status: Some(code.as_u16()),
        base: Some(base),
        ..Exit::default()
    };
    let kind = body_kind(response.headers());
    let read = match kind {
        BodyKind::Json | BodyKind::Xml => read_report(&mut response, kind, spec, out).await,
        BodyKind::Lines | BodyKind::Events | BodyKind::Text => {
            read_lines(&mut response, kind, spec, out).await
        }
    };
    match read {
        Read::Report => exit,
        Read::Lines { quoted } if base == Status::Failed => {
            let mut message = format!(
                "HTTP {code} from {} {} without a report",
                spec.method, spec.url
            );
            if !quoted.is_empty() {
                message.push_str("; the body begins: ");
                message.push_str(&quoted.join(" | "));
            }
            out.send(vec![RunEvent::entry(
                EntryKind::Error,
                out.redactor.text(&message).into_owned(),
            )])
            .await;
            exit
        }
        Read::Lines { .. } => exit,
        Read::Failed(message) => Exit {
            http_status: exit.http_status,
            ..out.fail(message).await
        },
    }
}

/// What reading a body came to.
enum Read {
    /// A report was read.
    Report,
    /// Lines were read; the first few, for an error message.
    Lines { quoted: Vec<String> },
    /// The body could not be read as promised.
    Failed(String),
}

async fn read_report(
    response: &mut reqwest::Response,
    kind: BodyKind,
    spec: &HttpSpec,
    out: &Out<'_>,
) -> Read {
    let mut body = Vec::new();
    loop {
        match next_chunk(response, spec).await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > spec.max_body {
                    return Read::Failed(format!(
                        "the report from {} {} is over the {} byte cap (`http.max_body`)",
                        spec.method, spec.url, spec.max_body
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(message) => return Read::Failed(message),
        }
    }
    let text = String::from_utf8_lossy(&body);
    let now = Utc::now();
    let parsed = if kind == BodyKind::Json {
        parse_json(&text, now)
    } else {
        parse_xml(&text, now)
    };
    match parsed {
        Ok(events) => {
            out.send(events).await;
            Read::Report
        }
        Err(e) => Read::Failed(format!("{e} (answer from {} {})", spec.method, spec.url)),
    }
}

/// The next piece of the body; an error says the answer broke off.
async fn next_chunk(
    response: &mut reqwest::Response,
    spec: &HttpSpec,
) -> Result<Option<axum::body::Bytes>, String> {
    response.chunk().await.map_err(|e| {
        format!(
            "the answer from {} {} broke off: {}",
            spec.method,
            spec.url,
            chain(&e)
        )
    })
}

async fn read_lines(
    response: &mut reqwest::Response,
    kind: BodyKind,
    spec: &HttpSpec,
    out: &Out<'_>,
) -> Read {
    let mut splitter = LineSplitter::default();
    let mut quoted = Vec::new();
    let mut total: u64 = 0;
    loop {
        let chunk = match next_chunk(response, spec).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(message) => return Read::Failed(message),
        };
        let room = spec.max_body.saturating_sub(total);
        let take = &chunk[..chunk.len().min(room as usize)];
        total += take.len() as u64;
        let at = Utc::now();
        let mut batch = Vec::new();
        splitter.push(take, |bytes, cut| {
            line_events(&mut batch, &mut quoted, kind, at, bytes, cut)
        });
        out.send(batch).await;
        if take.len() < chunk.len() {
            out.send(vec![RunEvent::entry(
                EntryKind::Warning,
                format!(
                    "the answer's body was cut at the {} byte cap (`http.max_body`)",
                    spec.max_body
                ),
            )])
            .await;
            return Read::Lines { quoted };
        }
    }
    let mut batch = Vec::new();
    splitter
        .finish(|bytes, cut| line_events(&mut batch, &mut quoted, kind, Utc::now(), bytes, cut));
    out.send(batch).await;
    Read::Lines { quoted }
}

fn line_events(
    batch: &mut Vec<RunEvent>,
    quoted: &mut Vec<String>,
    kind: BodyKind,
    at: chrono::DateTime<Utc>,
    bytes: &[u8],
    cut: u64,
) {
    let raw = String::from_utf8_lossy(bytes);
    let text = match kind {
        // Server-sent events: `data:` carries the line; the rest frames it.
        BodyKind::Events => match raw.strip_prefix("data:") {
            Some(data) => data.strip_prefix(' ').unwrap_or(data).to_string(),
            None => return,
        },
        _ => raw.into_owned(),
    };
    if quoted.len() < QUOTED_LINES && !text.trim().is_empty() {
        quoted.push(text.chars().take(200).collect());
    }
    let mut said = Vec::new();
    let protocol = protocol::parse(&text, at, &mut said);
    batch.push(RunEvent::Line(Line {
        at,
        stream: Stream::Stdout,
        text,
        cut,
        protocol,
    }));
    batch.append(&mut said);
}

/// What a failed request means, in words; the URL as written in the file.
fn describe(e: &reqwest::Error, spec: &HttpSpec) -> String {
    let target = format!("{} {}", spec.method, spec.url);
    let detail = chain(e);
    let lower = detail.to_ascii_lowercase();
    if e.is_timeout() {
        format!("no answer from {target} in time: {detail}")
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        format!("cannot resolve the host of {target}: {detail}")
    } else if lower.contains("connection refused") {
        format!("cannot connect to {target}: connection refused (is the application running?)")
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("corrupt message")
    {
        format!("TLS with {target} failed: {detail}")
    } else if e.is_redirect() {
        format!("too many redirects from {target}")
    } else {
        format!("the request {target} failed: {detail}")
    }
}

/// An error and its causes, without the URL reqwest puts in its own text.
fn chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        // reqwest's own text names the URL with secrets expanded.
        let text = e.to_string();
        parts.push(match e.url() {
            Some(url) => text.replace(url.as_str(), "<url>"),
            None => text,
        });
    }
    parts.join(": ")
}

async fn sleep_opt(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_remembers_them_as_secrets() {
        let mut r = Redactor::default();
        let lookup = |n: &str| (n == "TOKEN").then(|| "abc123xyz".to_string());
        assert_eq!(
            expand_vars("Bearer ${TOKEN}", &lookup, &mut r).unwrap(),
            "Bearer abc123xyz"
        );
        assert_eq!(r.text("got abc123xyz"), "got ***");
        assert_eq!(
            expand_vars("${NOPE}/x", &lookup, &mut r),
            Err("NOPE".to_string())
        );
    }
}
