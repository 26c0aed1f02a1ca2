//! `webhook:` — a POST of the report as JSON, signed.
//!
//! The body is `{"condition", "rule", "job", "report"}` (about a flow run,
//! `"flow"` in place of `"job"`, and the flow's report). With a secret,
//! `X-Overnight-Signature: sha256=<hex>` is the HMAC-SHA256 of the body, so
//! the receiver can check it came from this runner. A delivery is tried up
//! to three times on a network error or a 5xx answer.

use std::time::Duration;

use super::Subject;
use crate::config::trigger::{Condition, WebhookAction};

/// The signature header.
pub const SIGNATURE: &str = "X-Overnight-Signature";

const TRIES: u32 = 3;

/// Posts the report; an error says why it was not accepted.
pub async fn post(
    hook: &WebhookAction,
    subject: &Subject,
    condition: Condition,
    rule: &str,
) -> Result<String, String> {
    let env = |name: &str| std::env::var(name).ok();
    let mut redactor = crate::exec::http::Redactor::default();
    let expand = |text: &str, redactor: &mut crate::exec::http::Redactor| {
        crate::exec::http::expand_vars(text, &env, redactor)
            .map_err(|v| format!("`${{{v}}}` is not set in the environment"))
    };
    let url = expand(&hook.url, &mut redactor)?;
    let secret = hook
        .secret
        .as_deref()
        .map(|s| expand(s, &mut redactor))
        .transpose()?;
    let mut body = serde_json::json!({
        "condition": condition,
        "rule": rule,
        "report": subject.json(),
    });
    body[subject.kind()] = subject.name().into();
    let body = serde_json::to_vec(&body).expect("a report always serialises");
    let client = crate::exec::http::client_builder()
        .timeout(hook.timeout)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let mut request = client
        .post(&url)
        .header("Content-Type", "application/json")
        .header("X-Overnight-Event", condition.as_str());
    for (name, value) in &hook.headers {
        request = request.header(name, expand(value, &mut redactor)?);
    }
    if let Some(secret) = secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, &body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        request = request.header(SIGNATURE, format!("sha256={hex}"));
    }
    let request = request.body(body);
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let Some(request) = request.try_clone() else {
            break;
        };
        match request.send().await {
            Ok(answer) if answer.status().is_success() => {
                return Ok(format!("{} answered {}", hook.url, answer.status()));
            }
            Ok(answer) if answer.status().is_client_error() => {
                return Err(format!("{} answered {}", hook.url, answer.status()));
            }
            Ok(answer) => last = format!("{} answered {}", hook.url, answer.status()),
            Err(e) => {
                last = redactor
                    .text(&format!("{}: {}", hook.url, e.without_url()))
                    .into_owned()
            }
        }
        if attempt < TRIES {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(format!("not delivered after {TRIES} tries: {last}"))
}
