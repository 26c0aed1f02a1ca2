//! The fuzz tests' HTTP answers, each served once on loopback.

use overnight::config::http::DEFAULT_MAX_BODY;
use overnight::config::{HttpSpec, Job};
use overnight::exec::{Attempt, EVENT_BACKLOG, EventSender, http};
use overnight::report::Status;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::*;

/// What the application answers, byte for byte.
#[derive(Clone, Debug)]
pub(super) struct Answer {
    code: u16,
    content_type: Option<String>,
    /// `X-Batch-Complete-Status`.
    declared: Option<String>,
    framing: Framing,
    body: Vec<u8>,
    /// The job's `status_map` makes this answer's code a warning.
    mapped: bool,
    /// The job's `http.max_body`.
    max_body: u64,
}

/// How the body's end is told.
#[derive(Clone, Debug)]
pub(super) enum Framing {
    /// `Content-Length`.
    Length,
    /// `Content-Length` promising this many bytes more than are sent.
    Short(usize),
    /// `Transfer-Encoding: chunked`, cut at these places.
    Chunked(Vec<Index>),
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

pub(super) const CODES: &[u16] = &[200, 202, 204, 302, 400, 404, 409, 500, 502];

pub(super) const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/problem+json",
    "APPLICATION/JSON; charset=utf-8",
    "application/xml",
    "text/xml",
    "application/atom+xml",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "text/event-stream",
    "text/plain",
    "text/html",
];

pub(super) const DECLARED: &[&str] = &[
    "success", "warning", "failed", "Warning", "FAIL", "ok", "running", "lost", "", " ",
];

pub(super) fn answers() -> impl Strategy<Value = Answer> {
    let code = prop_oneof![select(CODES), 100u16..1000];
    let content_type = proptest::option::of(prop_oneof![
        select(CONTENT_TYPES).prop_map(str::to_string),
        "[ -~]{0,40}",
    ]);
    let declared = proptest::option::of(prop_oneof![
        select(DECLARED).prop_map(str::to_string),
        "[ -~]{0,20}",
    ]);
    let framing = prop_oneof![
        Just(Framing::Length),
        (1..100usize).prop_map(Framing::Short),
        vec(any::<Index>(), 0..8).prop_map(Framing::Chunked),
        Just(Framing::UntilClose),
    ];
    let body = prop_oneof![
        inputs(json_bodies()).prop_map(String::into_bytes),
        inputs(xml_bodies()).prop_map(String::into_bytes),
        outputs(),
    ];
    let max_body = prop_oneof![Just(DEFAULT_MAX_BODY), 0..64u64, 64..4096u64];
    (
        code,
        content_type,
        declared,
        framing,
        body,
        any::<bool>(),
        max_body,
    )
        .prop_map(
            |(code, content_type, declared, framing, body, mapped, max_body)| Answer {
                code,
                content_type,
                declared,
                framing,
                body,
                mapped,
                max_body,
            },
        )
}

impl Answer {
    /// The answer as it goes over the wire.
    fn wire(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} Fuzzed\r\nConnection: close\r\n", self.code);
        if let Some(content_type) = &self.content_type {
            let _ = write!(head, "Content-Type: {content_type}\r\n");
        }
        if let Some(status) = &self.declared {
            let _ = write!(head, "X-Batch-Complete-Status: {status}\r\n");
        }
        let length = self.body.len();
        match &self.framing {
            Framing::Length => {
                let _ = write!(head, "Content-Length: {length}\r\n");
            }
            Framing::Short(missing) => {
                let _ = write!(head, "Content-Length: {}\r\n", length + missing);
            }
            Framing::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::UntilClose => {}
        }
        head.push_str("\r\n");
        let mut wire = head.into_bytes();
        if let Framing::Chunked(cuts) = &self.framing {
            for chunk in chunks(&self.body, cuts) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            wire.extend_from_slice(&self.body);
        }
        wire
    }
}

/// Runs an HTTP job against a server on loopback that gives `answer` to
/// its one request.
pub(super) async fn exchange(answer: &Answer) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!(
        "http://{}/batch",
        listener.local_addr().expect("its address")
    );
    let application = tokio::spawn(answer_once(listener, answer.wire()));
    let status_map = if answer.mapped {
        BTreeMap::from([(answer.code, Status::Warning)])
    } else {
        BTreeMap::new()
    };
    let spec = HttpSpec {
        url,
        method: "GET".into(),
        headers: BTreeMap::new(),
        body: None,
        // Ends a case that would otherwise hang; the case passes, slowly.
        timeout: Some(Duration::from_secs(10)),
        follow_redirects: false,
        tls_verify: false,
        status_map,
        max_body: answer.max_body,
    };
    let job = Job::adhoc("fuzz".into(), Vec::new());
    let (_stop, stop) = watch::channel(None);
    let attempt = Attempt {
        job: &job,
        env: &[],
        report_file: Path::new("/nonexistent/report.json"),
        lock_fds: &[],
        stop,
        spawned: None,
    };
    let (events, mut batches): (EventSender, _) = mpsc::channel(EVENT_BACKLOG);
    let sinks = tokio::spawn(async move { while batches.recv().await.is_some() {} });
    http::run(&attempt, &spec, events).await;
    sinks.abort();
    application.abort();
}

/// Reads one request's head on `listener`, writes `wire`, and closes.
pub(super) async fn answer_once(listener: TcpListener, wire: Vec<u8>) -> std::io::Result<()> {
    let (mut socket, _) = listener.accept().await?;
    let mut request: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    socket.write_all(&wire).await?;
    socket.shutdown().await
}
