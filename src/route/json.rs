//! `kind: json`: log4rs's JSON encoder, the same bytes, without serde.
//!
//! log4rs serializes each record through serde_json, a call per token
//! through its writer, and has chrono format the time from its parts. This
//! one writes the same object straight into the record's bytes, and
//! formats the time down to the second once per second: only the fraction
//! is written per record.

use std::cell::RefCell;
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
        TAIL.with(|tail| match tail.try_borrow_mut() {
            Ok(mut tail) => tail.write(out, record),
            Err(_) => Tail::default().write(out, record),
        });
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

thread_local! {
    /// The end of this thread's last record.
    static TAIL: RefCell<Tail> = RefCell::new(Tail::default());
}

/// The end of a record's object — `"thread"`, `"thread_id"`, `"mdc"` and
/// `"attributes"` — as last written on this thread, and what it was made
/// of. A run's records share it but for an output line's `stream`: when
/// the MDC and the key-values are the same as last time, the bytes are
/// too, and fourteen strings need not be escaped again.
#[derive(Default)]
struct Tail {
    mdc: Vec<(String, String)>,
    attributes: Vec<(String, String)>,
    json: Vec<u8>,
}

impl Tail {
    fn write(&mut self, out: &mut Vec<u8>, record: &Record) {
        if !self.is_of(record) {
            self.make(record);
        }
        out.extend_from_slice(&self.json);
    }

    /// Whether this thread's MDC and the record's key-values are the
    /// ones the bytes were made of.
    fn is_of(&self, record: &Record) -> bool {
        if self.json.is_empty() {
            return false;
        }
        let mut seen = 0;
        let mut same = true;
        log_mdc::iter(|key, value| {
            same &= self
                .mdc
                .get(seen)
                .is_some_and(|(k, v)| k == key && v == value);
            seen += 1;
        });
        if !same || seen != self.mdc.len() {
            return false;
        }
        let mut compare = Compare {
            with: &self.attributes,
            seen: 0,
            same: true,
        };
        let _ = record.key_values().visit(&mut compare);
        compare.same && compare.seen == self.attributes.len()
    }

    fn make(&mut self, record: &Record) {
        self.mdc.clear();
        log_mdc::iter(|key, value| self.mdc.push((key.to_string(), value.to_string())));
        let mut collect = Collect(Vec::new());
        let _ = record.key_values().visit(&mut collect);
        self.attributes = collect.0;
        let out = &mut self.json;
        out.clear();
        out.extend_from_slice(b",\"thread\":");
        match std::thread::current().name() {
            Some(name) => string(out, name),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"thread_id\":");
        super::encode::thread_id(out);
        for (name, pairs) in [("mdc", &self.mdc), ("attributes", &self.attributes)] {
            let _ = write!(Bytes(out), ",\"{name}\":{{");
            let mut first = true;
            for (key, value) in pairs {
                pair(out, &mut first, key, value);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }
}

/// A record's key-values as strings, as log4rs writes `attributes`.
struct Collect(Vec<(String, String)>);

impl<'kvs> VisitSource<'kvs> for Collect {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push((key.as_str().to_string(), value.to_string()));
        Ok(())
    }
}

/// Compares a record's key-values with those of the last, in order.
struct Compare<'a> {
    with: &'a [(String, String)],
    seen: usize,
    same: bool,
}

impl<'kvs> VisitSource<'kvs> for Compare<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let same = self.with.get(self.seen).is_some_and(|(k, v)| {
            k == key.as_str()
                && match value.to_borrowed_str() {
                    Some(text) => v == text,
                    None => *v == value.to_string(),
                }
        });
        self.same &= same;
        self.seen += 1;
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

    /// The end of a record is remade whenever the MDC or a key-value
    /// changes, and only then kept.
    #[test]
    fn a_changed_key_value_or_mdc_is_written_anew() {
        let ours = JsonLines::default();
        let record = |run: &str, stream: &str| {
            let kvs = [("job", "a"), ("run_id", run), ("stream", stream)];
            let record = Record::builder()
                .args(format_args!("x"))
                .key_values(&kvs)
                .build();
            let mine = render(&ours, &record);
            assert_eq!(shape(&mine), shape(&render(&JsonEncoder::new(), &record)));
            mine
        };
        log_mdc::insert("run_id", "1");
        assert!(record("1", "stdout").contains(r#""run_id":"1","stream":"stdout"}"#));
        assert!(record("1", "stderr").contains(r#""stream":"stderr"}"#));
        assert!(record("2", "stderr").contains(r#""run_id":"2","stream""#));
        log_mdc::insert("run_id", "2");
        let mdc = record("2", "stderr");
        assert!(
            mdc.contains(r#""mdc":{"#) && mdc.contains(r#""run_id":"2""#),
            "{mdc}"
        );
        assert!(!mdc.contains(r#""run_id":"1""#), "{mdc}");
        log_mdc::remove("run_id");
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
