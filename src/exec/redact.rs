//! Keeping secrets out of logs, reports and errors.
//!
//! Every value an HTTP job takes from the environment through `${VAR}` is a
//! secret: tokens in headers and URLs. Whatever the executor emits — error
//! messages, lines of the answer, report sections — passes through the
//! [`Redactor`], which puts `***` in place of each of them.

use std::borrow::Cow;

use crate::event::RunEvent;

/// Values shorter than this are not treated as secrets (a `1` would blank
/// every digit one).
const MIN_SECRET: usize = 4;

/// The secret values of one attempt.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Remembers a value taken from the environment.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_SECRET && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_string());
            // Longest first, so a secret that contains another goes whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The text with every secret replaced by `***`.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        out
    }

    /// The event with every secret replaced.
    pub fn event(&self, mut event: RunEvent) -> RunEvent {
        if self.secrets.is_empty() {
            return event;
        }
        let clean = |s: &mut String| {
            if let Cow::Owned(c) = self.text(s) {
                *s = c;
            }
        };
        match &mut event {
            RunEvent::Line(line) => clean(&mut line.text),
            RunEvent::Entry(_, entry) => {
                clean(&mut entry.message);
                entry.fields.values_mut().for_each(clean);
            }
            RunEvent::Progress(p) => clean(&mut p.message),
            RunEvent::Summary(s) => clean(s),
            RunEvent::Detail(_, value) => self.json(value),
            RunEvent::Status(_) => {}
        }
        event
    }

    fn json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(c) = self.text(s) {
                    *s = c;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret() {
        let mut r = Redactor::default();
        r.add("s3cr3t-token");
        r.add("1");
        assert_eq!(r.text("Bearer s3cr3t-token, 1 of 1"), "Bearer ***, 1 of 1");
    }
}
