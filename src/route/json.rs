//! `kind: json`: log4rs's JSON encoder, the same bytes, without serde.
//!
//! log4rs serializes each record through serde_json, a call per token
//! through its writer, and has chrono format the time from its parts. This
//! one writes the same object straight into the record's bytes, and
//! formats the time down to the second once per second: only the fraction
//! is written per record.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use chrono::format::{Fixed, Item};
use chrono::{DateTime, Local};
use log::Record;
use log::kv::VisitSource;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::json::JsonEncoderConfig;
use log4rs::encode::{Encode, Write};

use super::encode::{Bytes, Entry};

/// The kind name log4rs gives it.
pub const KIND: &str = "json";

/// The encoder: one JSON object per record, as log4rs's.
#[derive(Debug, Default)]
pub struct JsonLines {
    /// The second last written, and its RFC 3339 text without a fraction;
    /// never held across an await.
    second: Mutex<(u64, String)>,
}

impl JsonLines {
    /// Appends the record to `out`; its message is `message` when the
    /// caller has it as text already, else formatted from the record.
    pub fn write(&self, out: &mut Vec<u8>, entry: &Entry<'_>) {
        let (record, message) = (entry.record, entry.message);
        out.extend_from_slice(b"{\"time\":\"");
        self.time(out, entry);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(record.level().as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        match message {
            Some(message) => string(out, message),
            None => string(out, &record.args().to_string()),
        }
        if let Some(module) = record.module_path() {
            out.extend_from_slice(b",\"module_path\":");
            string(out, module);
        }
        if let Some(file) = record.file() {
            out.extend_from_slice(b",\"file\":");
            string(out, file);
        }
        if let Some(line) = record.line() {
            let _ = write!(Bytes(out), ",\"line\":{line}");
        }
        out.extend_from_slice(b",\"target\":");
        string(out, record.target());
        out.extend_from_slice(b",\"thread\":");
        match std::thread::current().name() {
            Some(name) => string(out, name),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"thread_id\":");
        super::encode::thread_id(out);
        out.extend_from_slice(b",\"mdc\":{");
        let mut first = true;
        log_mdc::iter(|key, value| {
            pair(out, &mut first, key, value);
        });
        out.extend_from_slice(b"},\"attributes\":{");
        let mut attributes = Attributes { out, first: true };
        let _ = record.key_values().visit(&mut attributes);
        out.extend_from_slice(b"}}\n");
    }

    /// `Fixed::RFC3339` of now, local time: the fraction as chrono's
    /// `AutoSi` writes it (none, 3, 6 or 9 digits), between the cached
    /// second and offset.
    fn time(&self, out: &mut Vec<u8>, entry: &Entry<'_>) {
        let now = entry.since_epoch();
        let mut second = self.second.lock().unwrap_or_else(|e| e.into_inner());
        if second.0 != now.as_secs() || second.1.is_empty() {
            let whole = DateTime::from(UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs()));
            second.1.clear();
            let at: DateTime<Local> = whole;
            let _ = write!(
                second.1,
                "{}",
                at.format_with_items(std::iter::once(Item::Fixed(Fixed::RFC3339)))
            );
            second.0 = now.as_secs();
        }
        // The seconds end before the offset: `+hh:mm` or `-hh:mm`.
        let split = second.1.rfind(['+', '-']).unwrap_or(second.1.len());
        out.extend_from_slice(&second.1.as_bytes()[..split]);
        let (value, digits) = match now.subsec_nanos() {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if digits > 0 {
            let mut text = *b".000000000";
            let mut rest = value;
            for at in (1..=digits).rev() {
                text[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            out.extend_from_slice(&text[..=digits]);
        }
        out.extend_from_slice(&second.1.as_bytes()[split..]);
    }
}

impl Encode for JsonLines {
    fn encode(&self, w: &mut dyn Write, record: &Record) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(512);
        self.write(&mut out, &Entry::of(record));
        w.write_all(&out)?;
        Ok(())
    }
}

/// Builds [`JsonLines`] from log4rs's `json` settings (there are none).
#[derive(Debug, Clone, Copy)]
pub struct JsonDeserializer;

impl Deserialize for JsonDeserializer {
    type Trait = dyn Encode;
    type Config = JsonEncoderConfig;

    fn deserialize(
        &self,
        _: JsonEncoderConfig,
        _: &Deserializers,
    ) -> anyhow::Result<Box<dyn Encode>> {
        Ok(Box::<JsonLines>::default())
    }
}

/// `"key":"value"` in an object, after a comma unless first.
fn pair(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    string(out, key);
    out.push(b':');
    string(out, value);
}

/// A record's key-values as strings, as log4rs writes `attributes`.
struct Attributes<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'kvs> VisitSource<'kvs> for Attributes<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        match value.to_borrowed_str() {
            Some(text) => pair(self.out, &mut self.first, key.as_str(), text),
            None => pair(self.out, &mut self.first, key.as_str(), &value.to_string()),
        }
        Ok(())
    }
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the
/// control characters as `\n`-style escapes or `\u00xx`, the rest as is.
fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !super::escape::any_byte(bytes, |b| (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut plain_from = 0;
    for (at, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        if escape.is_empty() {
            let _ = write!(Bytes(out), "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        plain_from = at + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::super::encode::render;
    use super::*;
    use log4rs::encode::json::JsonEncoder;

    /// The time as a shape: its digits may differ between two calls.
    fn shape(text: &str) -> String {
        let (time, rest) = text.split_at(text.find("\",\"level").unwrap());
        let digits: String = time
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        let digits = digits
            .replace(".000000000", "")
            .replace(".000000", "")
            .replace(".000", "");
        format!("{digits}{rest}")
    }

    /// The same bytes as log4rs's JSON encoder, for records with and
    /// without every optional field, and text that needs escaping.
    #[test]
    fn writes_log4rs_bytes() {
        log_mdc::insert("job", "backup");
        super::super::encode::with_sample_records(|records| {
            let ours = JsonLines::default();
            for record in records {
                let (mine, theirs) = (render(&ours, record), render(&JsonEncoder::new(), record));
                assert_eq!(shape(&mine), shape(&theirs));
                assert_eq!(mine[..11], theirs[..11], "{mine}");
                serde_json::from_str::<serde_json::Value>(&mine).unwrap();
            }
        });
        // A named thread, as the daemon's are.
        std::thread::Builder::new()
            .name("overnight-worker".into())
            .spawn(move || {
                let record = Record::builder().args(format_args!("x")).build();
                let ours = render(&JsonLines::default(), &record);
                assert_eq!(shape(&ours), shape(&render(&JsonEncoder::new(), &record)));
                assert!(ours.contains("\"thread\":\"overnight-worker\""), "{ours}");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// The fraction of a second as chrono's `AutoSi`: the digits it needs.
    #[test]
    fn the_fraction_has_the_digits_it_needs() {
        let ours = JsonLines::default();
        let mut out = Vec::new();
        let record = Record::builder().args(format_args!("")).build();
        ours.time(&mut out, &Entry::of(&record));
        let text = String::from_utf8(out).unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
        let fraction = text[19..].split(['+', '-']).next().unwrap();
        assert!([0, 4, 7, 10].contains(&fraction.len()), "{text}");
        assert!(
            (chrono::Utc::now() - parsed.to_utc()).num_seconds().abs() < 5,
            "{text}"
        );
    }
}
