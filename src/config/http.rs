//! The `http` block of a job: a request to the application that does the
//! work (DESIGN §5), and how its answer is read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::check::Check;
use super::node::{Node, Value};
use crate::status::Status;

/// The body cap when a job names none: 10 MB.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1000 * 1000;

const KEYS: &[&str] = &[
    "url",
    "method",
    "headers",
    "body",
    "timeout",
    "follow_redirects",
    "tls_verify",
    "status_map",
    "max_body",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A job's request and how to read its answer.
#[derive(Clone, Debug, Serialize)]
pub struct HttpSpec {
    /// The URL; `${VAR}` is taken from the environment when the job runs.
    pub url: String,
    /// The method, upper case.
    pub method: String,
    /// Request headers; `${VAR}` as in the URL.
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
    /// How long the whole exchange may take (the job's `timeout` otherwise).
    #[serde(
        serialize_with = "super::duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Follow redirects (up to 10).
    pub follow_redirects: bool,
    /// Check the server's certificate.
    pub tls_verify: bool,
    /// Response codes whose base status is not their class's.
    pub status_map: BTreeMap<u16, Status>,
    /// The largest body read, in bytes.
    pub max_body: u64,
}

/// A request body.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HttpBody {
    /// Sent as written (`text/plain` unless a header says otherwise).
    Text(String),
    /// A YAML mapping or list, sent as JSON.
    Json(serde_json::Value),
}

impl Check<'_> {
    /// Reads and checks a job's `http` block.
    pub(super) fn http(&mut self, node: &Node, job: &str) -> Option<HttpSpec> {
        let before = self.problems.len();
        let mut spec = HttpSpec {
            url: String::new(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            body: None,
            timeout: None,
            follow_redirects: true,
            tls_verify: true,
            status_map: BTreeMap::new(),
            max_body: DEFAULT_MAX_BODY,
        };
        let mut url = None;
        for (key, value) in self.mapping(node, &format!("the `http` block of job `{job}`"), KEYS) {
            match key {
                "url" => url = self.string(value, "`http.url`").map(|u| (u, value.pos)),
                "method" => {
                    if let Some(m) = self.string(value, "`http.method`") {
                        let upper = m.to_ascii_uppercase();
                        if METHODS.contains(&upper.as_str()) {
                            spec.method = upper;
                        } else {
                            self.problem(
                                value.pos,
                                format!("unknown method `{m}`; use one of {}", METHODS.join(", ")),
                            );
                        }
                    }
                }
                "headers" => spec.headers = self.string_map(value, "`http.headers`"),
                "body" => {
                    spec.body = match &value.value {
                        Value::Str(s) => Some(HttpBody::Text(s.clone())),
                        Value::Map(_) | Value::Seq(_) => Some(HttpBody::Json(value.to_json())),
                        _ => {
                            self.problem(
                                value.pos,
                                "`http.body` must be text, a mapping or a list (sent as JSON)",
                            );
                            None
                        }
                    }
                }
                "timeout" => spec.timeout = self.duration(value, "`http.timeout`"),
                "follow_redirects" => {
                    spec.follow_redirects = self
                        .boolean(value, "`http.follow_redirects`")
                        .unwrap_or(true)
                }
                "tls_verify" => {
                    spec.tls_verify = self.boolean(value, "`http.tls_verify`").unwrap_or(true)
                }
                "status_map" => spec.status_map = self.status_map(value),
                "max_body" => {
                    spec.max_body = self
                        .size(value, "`http.max_body`")
                        .unwrap_or(DEFAULT_MAX_BODY)
                }
                _ => unreachable!("mapping() returns known keys only"),
            }
        }
        match url {
            Some((u, pos)) => {
                if u.starts_with("http://") || u.starts_with("https://") || u.starts_with("${") {
                    spec.url = u;
                } else {
                    self.problem(
                        pos,
                        format!("`http.url` must start with http:// or https://, found `{u}`"),
                    );
                }
            }
            None => self.problem(
                node.pos,
                format!("the `http` block of job `{job}` has no `url`"),
            ),
        }
        (self.problems.len() == before).then_some(spec)
    }

    fn status_map(&mut self, node: &Node) -> BTreeMap<u16, Status> {
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.pos,
                "`http.status_map` must map response codes to statuses, like `{202: warning}`",
            );
            return BTreeMap::new();
        };
        let mut map = BTreeMap::new();
        for (key, value) in entries {
            let code = match key.value {
                Value::Int(c @ 100..=599) => c as u16,
                _ => {
                    self.problem(
                        key.pos,
                        "a response code in `http.status_map` must be a number from 100 to 599",
                    );
                    continue;
                }
            };
            match value.as_str().map(str::parse::<Status>) {
                Some(Ok(status @ (Status::Success | Status::Warning | Status::Failed))) => {
                    map.insert(code, status);
                }
                _ => self.problem(
                    value.pos,
                    "a status in `http.status_map` must be success, warning or failed",
                ),
            }
        }
        map
    }

    /// A size: a number of bytes, or `512k`, `10MB`, `1 GiB`.
    pub(super) fn size(&mut self, node: &Node, what: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Int(n) if *n > 0 => Some(*n as u64),
            Value::Str(text) => parse_size(text),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                node.pos,
                format!("bad size for {what}; write it like `10MB`, `512k` or a number of bytes"),
            );
        }
        parsed
    }
}

/// A size: `512k`, `10MB`, `1 GiB` or a number of bytes. `k`/`kb`, `m`/`mb`,
/// `g`/`gb` are powers of 1000; `kib`, `mib`, `gib` powers of 1024. Used for
/// the jobs file and for `per_job_file`'s size trigger alike.
pub fn parse_size(text: &str) -> Option<u64> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor).filter(|n| *n > 0)
}

/// `"10 MB"` → `(10, "mb")`: the leading number and the unit after it,
/// lowercased; `None` without a number.
pub(crate) fn number_and_unit(text: &str) -> Option<(u64, String)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("512 KiB"), Some(524_288));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("lots"), None);
    }
}
