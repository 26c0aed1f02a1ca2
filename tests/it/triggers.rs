//! Triggers against real servers on loopback: an SMTP conversation, a
//! webhook receiver, programs, and the rules that decide when to speak.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;

use crate::helper::smtp::SmtpSink;
use crate::helper::{Sandbox, text};

/// A request the webhook receiver got: its headers and body.
type Delivered = (HeaderMap, Vec<u8>);

fn report(sb: &Sandbox, id: i64) -> serde_json::Value {
    serde_json::from_slice(&sb.run(&["report", &id.to_string(), "--json"]).stdout).unwrap()
}

/// Runs `overnight run JOB` off the async workers (the test's servers run
/// on them).
async fn run(sb: &Sandbox, job: &str, env: &[(&str, &str)]) -> std::process::Output {
    let path = sb.path().to_path_buf();
    let job = job.to_string();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Sandbox::at(path)
            .command(&["run", &job])
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_mailed_with_its_errors_last_lines_and_the_report_attached() {
    let sink = SmtpSink::start().await;
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "smtp: {{host: 127.0.0.1, port: {}, tls: none, from: overnight@test.example}}\ntriggers:\n  - name: mail-failures\n    on: [failed]\n    email: {{to: [ops@example.com], cc: [dba@example.com]}}\njobs:\n  nightly:\n    command: echo loading orders; echo '::error code=E42::disk full on /var'; exit 1\n  fine:\n    command: echo all good\n",
            sink.addr.port()
        ),
    );
    assert_eq!(run(&sb, "fine", &[]).await.status.code(), Some(0));
    let out = run(&sb, "nightly", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "one message, for the failure only");
    let message = &messages[0];
    assert_eq!(message.to, ["<ops@example.com>", "<dba@example.com>"]);
    let subject = message.header("Subject").unwrap();
    assert!(
        subject.contains("nightly") && subject.contains("failed"),
        "{subject}"
    );
    let body = &message.data;
    assert!(
        body.contains("[E42] disk full on /var"),
        "error details: {body}"
    );
    assert!(body.contains("| loading orders"), "last log lines: {body}");
    assert!(body.contains("filename=\"report.json\""), "{body}");
    let attached = attachment(body);
    let attached: serde_json::Value =
        serde_json::from_str(&attached).expect("the attachment is the JSON report");
    assert_eq!(attached["status"], "failed");
    assert_eq!(attached["errors"][0]["code"], "E42");
    let notes = report(&sb, 2)["notifications"].clone();
    assert_eq!(notes[0]["status"], "sent", "{notes:#}");
}

/// The report.json part of a multipart message, decoded.
fn attachment(data: &str) -> String {
    decoded(data.split("filename=\"report.json\"").nth(1).unwrap())
}

/// The plain-text part of a multipart message, decoded.
pub fn plain_text(data: &str) -> String {
    decoded(data.split("Content-Type: text/plain").nth(1).unwrap())
}

/// A part's content, from just after its content type, decoded.
fn decoded(part: &str) -> String {
    let encoding = part
        .lines()
        .take(5)
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-transfer-encoding")
        })
        .unwrap_or("");
    let content = part.split_once("\r\n\r\n").unwrap().1;
    let content = content.split("\r\n--").next().unwrap();
    if encoding.to_ascii_lowercase().contains("base64") {
        base64(&content.replace("\r\n", ""))
    } else if encoding.to_ascii_lowercase().contains("quoted-printable") {
        quoted_printable(content)
    } else {
        content.to_string()
    }
}

fn base64(text: &str) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_down_leaves_the_run_recorded_and_the_failed_delivery_visible() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "smtp: {{host: 127.0.0.1, port: {}, tls: none, from: overnight@test.example}}\ntriggers:\n  - name: mail-failures\n    on: [failed]\n    email: {{to: [ops@example.com]}}\njobs:\n  nightly:\n    command: exit 3\n",
            closed.port()
        ),
    );
    let out = run(&sb, "nightly", &[]).await;
    assert_eq!(out.status.code(), Some(1), "the run's own outcome");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("trigger `mail-failures` could not email about run #1"),
        "{stderr}"
    );
    let report = report(&sb, 1);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["exit"]["code"], 3);
    let note = &report["notifications"][0];
    assert_eq!(note["status"], "failed");
    assert!(
        note["detail"]
            .as_str()
            .unwrap()
            .contains("not delivered after 3 tries"),
        "{note:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_receives_the_report_signed_with_hmac_sha256() {
    let received: Arc<Mutex<Vec<Delivered>>> = Arc::default();
    let store = Arc::clone(&received);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = Arc::clone(&store);
            async move {
                store.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "triggers:\n  - name: hook\n    on: [warning]\n    webhook:\n      url: http://{addr}/hook\n      secret: ${{HOOK_SECRET}}\njobs:\n  careful:\n    command: echo '::warning::almost full'\n"
        ),
    );
    let out = run(&sb, "careful", &[("HOOK_SECRET", "s3cret-key")]).await;
    assert_eq!(out.status.code(), Some(3));
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    let signature = headers
        .get("x-overnight-signature")
        .unwrap()
        .to_str()
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret-key");
    let expected: String = ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        signature,
        format!("sha256={expected}"),
        "the signature verifies"
    );
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["condition"], "warning");
    assert_eq!(json["report"]["warnings"][0]["message"], "almost full");
    let config = std::fs::read_to_string(sb.path().join("overnight.yaml")).unwrap();
    assert!(
        !config.contains("s3cret-key"),
        "the secret is not in the file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_gets_the_report_on_stdin_and_nothing_from_the_output_is_run() {
    let sb = Sandbox::new();
    let precious = sb.write("precious", "keep me");
    let pwned = sb.path().join("pwned");
    let received = sb.path().join("received.json");
    sb.write(
        "overnight.yaml",
        &format!(
            "triggers:\n  - name: page\n    on: [failed]\n    run: [sh, -c, 'cat > \"$1\"; echo \"$OVERNIGHT_JOB $OVERNIGHT_RUN_ID $OVERNIGHT_STATUS $OVERNIGHT_CONDITION\" >> \"$1.env\"', page, {received}]\njobs:\n  hostile:\n    command: |\n      echo '$(touch {pwned})'\n      echo '::error::`touch {pwned}`; rm -rf {precious}'\n      exit 1\n",
            received = received.display(),
            pwned = pwned.display(),
            precious = precious.display()
        ),
    );
    let out = run(&sb, "hostile", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&received).unwrap()).unwrap();
    assert_eq!(json["status"], "failed");
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("; rm -rf")
    );
    let env = std::fs::read_to_string(sb.path().join("received.json.env")).unwrap();
    assert_eq!(env, "hostile 1 failed failed\n");
    assert!(!pwned.exists(), "nothing from the job's output was run");
    assert!(precious.exists());
}

/// A rule that appends each condition it answers, and the attempt, to a file.
fn counting_rule(sb: &Sandbox, on: &str, extra: &str) -> String {
    format!(
        "triggers:\n  - name: count\n    on: {on}\n{extra}    run: [sh, -c, 'echo \"$OVERNIGHT_CONDITION $OVERNIGHT_ATTEMPT\" >> \"$1\"', count, {}]\n",
        sb.path().join("said").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_changes_speaks_at_the_first_failure_and_the_recovery_only() {
    let sb = Sandbox::new();
    let rules = counting_rule(&sb, "[failed, recovered]", "    notify: changes\n");
    sb.write(
        "overnight.yaml",
        &format!("{rules}jobs:\n  flappy:\n    command: test -e ok\n"),
    );
    for _ in 0..10 {
        assert_eq!(run(&sb, "flappy", &[]).await.status.code(), Some(1));
    }
    sb.write("ok", "");
    assert_eq!(run(&sb, "flappy", &[]).await.status.code(), Some(0));
    let said = sb.read("said");
    assert_eq!(
        said.lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["failed", "recovered"],
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_retries_final_speaks_once_after_the_last_attempt() {
    let sb = Sandbox::new();
    let rules = counting_rule(&sb, "[failed]", "    after_retries: final\n");
    sb.write(
        "overnight.yaml",
        &format!(
            "{rules}jobs:\n  doomed:\n    command: exit 1\n    retries: {{count: 2, delay: 10ms}}\n"
        ),
    );
    assert_eq!(run(&sb, "doomed", &[]).await.status.code(), Some(1));
    assert_eq!(sb.read("said"), "failed 3\n");
}

#[test]
fn trigger_test_sends_a_sample_through_a_rule() {
    let sb = Sandbox::new();
    let said = sb.path().join("said");
    sb.write(
        "overnight.yaml",
        &format!(
            "triggers:\n  - name: page\n    on: [failed]\n    run: [sh, -c, 'cat > \"$1\"', page, {}]\n    log: true\njobs:\n  a:\n    command: 'true'\n",
            said.display()
        ),
    );
    let out = sb.run(&["trigger", "test", "page"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("page via run: sent"), "{stdout}");
    assert!(stdout.contains("page via log: sent"), "{stdout}");
    let sample: serde_json::Value = serde_json::from_str(&sb.read("said")).unwrap();
    assert_eq!(sample["errors"][0]["code"], "E_CONN");
    assert_eq!(sb.run(&["trigger", "test", "nope"]).status.code(), Some(1));
}

#[test]
fn check_refuses_rules_naming_missing_jobs_or_mail_without_a_way_to_send_it() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "sendmail: /nonexistent/sendmail-is-given-but-smtp-is-not\ntriggers:\n  - on: [failed]\n    jobs: [ghost]\n    log: true\n  - on: [sideways]\n    log: true\njobs:\n  a:\n    command: 'true'\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("trigger `trigger-1` names job `ghost`, which is not in the file"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown condition `sideways`"), "{stderr}");
    let sb = Sandbox::new();
    // An explicit sendmail that is not there: no way to send mail, whatever
    // this machine has at the usual place.
    sb.write(
        "overnight.yaml",
        "sendmail: /nonexistent/sendmail\ntriggers:\n  - on: [failed]\n    email: {to: [a@b.example]}\njobs:\n  a:\n    command: 'true'\n",
    );
    let out = sb.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("sends email, but there is no `smtp:` block"),
        "{}",
        text(&out).1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn late_speaks_while_the_run_still_goes_and_max_per_hour_caps_a_rule() {
    let sb = Sandbox::new();
    let gate = sb.path().join("gate");
    let rules = counting_rule(&sb, "[late, failed]", "    max_per_hour: 2\n");
    sb.write(
        "overnight.yaml",
        &format!(
            "{rules}jobs:\n  slow:\n    command: while [ ! -e {} ]; do sleep 0.02; done\n    max_duration: 200ms\n  broken:\n    command: exit 1\n",
            gate.display()
        ),
    );
    let path = sb.path().to_path_buf();
    let slow = tokio::task::spawn_blocking(move || Sandbox::at(path).run(&["run", "slow"]));
    let said = sb.path().join("said");
    crate::helper::wait_for(
        std::time::Duration::from_secs(10),
        "the late message",
        || {
            let text = std::fs::read_to_string(&said).unwrap_or_default();
            async move { text.contains("late").then_some(()) }
        },
    )
    .await;
    assert!(!slow.is_finished(), "late is said while the run still goes");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(slow.await.unwrap().status.code(), Some(0));

    for _ in 0..3 {
        assert_eq!(run(&sb, "broken", &[]).await.status.code(), Some(1));
    }
    // `late` used one of the two an hour: one failure is sent, two are not.
    assert_eq!(sb.read("said"), "late 1\nfailed 1\n");
    let suppressed = report(&sb, 4)["notifications"][0].clone();
    assert_eq!(suppressed["status"], "suppressed");
    assert!(
        suppressed["detail"]
            .as_str()
            .unwrap()
            .contains("max_per_hour: 2"),
        "{suppressed:#}"
    );
}

/// A permanent SMTP refusal (550 no such user) is not asked again: one
/// try, and the notification says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_smtp_refusal_is_not_retried() {
    let sink = SmtpSink::start().await;
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "smtp: {{host: 127.0.0.1, port: {}, tls: none, from: overnight@test.example}}\ntriggers:\n  - on: [failed]\n    email: {{to: [nobody@example.com]}}\njobs:\n  nightly:\n    command: exit 1\n",
            sink.addr.port()
        ),
    );
    assert_eq!(run(&sb, "nightly", &[]).await.status.code(), Some(1));
    assert_eq!(sink.asked.lock().unwrap().len(), 1, "asked once");
    let out = Sandbox::at(sb.path().to_path_buf()).run(&["report", "1", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let note = &doc["notifications"][0];
    assert_eq!(note["status"], "failed", "{doc}");
    let detail = note["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused, not retried") && detail.contains("550"),
        "{detail}"
    );
}
