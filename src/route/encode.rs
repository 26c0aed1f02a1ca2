//! The encoders of the appenders overnight writes itself, reached without
//! a call through log4rs's writer per piece: a record is appended to a
//! byte buffer, its message given as text when the router has it.

use std::time::SystemTime;

use log::Record;
use log4rs::config::Deserializers;
use log4rs::encode::Encode;
use log4rs::encode::writer::simple::SimpleWriter;
use serde_value::Value;

use super::fast_pattern::{FastPattern, PatternConfig, StockPattern};
use super::json::JsonLines;

/// A record as the encoders take it: its message already text.
pub struct Entry<'a> {
    /// The record, for everything but its message.
    pub record: &'a Record<'a>,
    /// The record's arguments, formatted (and escaped) once; `None`:
    /// to be formatted from the record.
    pub message: Option<&'a str>,
    /// When it happened; now when `None`.
    pub at: Option<SystemTime>,
}

impl<'a> Entry<'a> {
    /// A record on its own: its message formatted from it, at now.
    pub fn of(record: &'a Record<'a>) -> Entry<'a> {
        Entry {
            record,
            message: None,
            at: None,
        }
    }

    /// When it happened, since the epoch.
    pub fn since_epoch(&self) -> std::time::Duration {
        self.at
            .unwrap_or_else(SystemTime::now)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The encoder of an appender overnight writes: plain bytes, no styles.
#[derive(Debug)]
pub enum Encoder {
    /// `pattern` (where every piece is one written here) or `fast_pattern`.
    Pattern(FastPattern),
    /// `json`.
    Json(JsonLines),
    /// Any other: log4rs's own, or one it was given.
    Other(Box<dyn Encode>),
}

impl Encoder {
    /// The encoder of `kind` with `settings` (the encoder block without
    /// its `kind`).
    pub fn build(
        kind: &str,
        settings: Value,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Encoder> {
        let pattern = |settings: Value| -> anyhow::Result<String> {
            let config: PatternConfig = settings.deserialize_into()?;
            Ok(config.pattern().to_string())
        };
        Ok(match kind {
            super::fast_pattern::STOCK_KIND => match StockPattern::for_bytes(&pattern(settings)?) {
                StockPattern::Fast(fast) => Encoder::Pattern(fast),
                StockPattern::Stock(stock) => Encoder::Other(Box::new(stock)),
            },
            super::fast_pattern::KIND => {
                Encoder::Pattern(FastPattern::for_bytes(&pattern(settings)?)?)
            }
            super::json::KIND => {
                // Refuses settings as log4rs's would (it takes none).
                let _: log4rs::encode::json::JsonEncoderConfig = settings.deserialize_into()?;
                Encoder::Json(JsonLines::default())
            }
            _ => Encoder::Other(deserializers.deserialize(kind, settings)?),
        })
    }

    /// Appends `entry`, encoded, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, entry: &Entry<'_>) -> anyhow::Result<()> {
        match self {
            Encoder::Pattern(pattern) => pattern.write(out, entry),
            Encoder::Json(json) => json.write(out, entry),
            Encoder::Other(other) => other.encode(&mut SimpleWriter(out), entry.record)?,
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's id as log4rs writes it (`{I}`, `thread_id`), made once.
    static THREAD_ID: String = thread_id::get().to_string();
}

/// Appends this thread's id, as log4rs writes it.
pub fn thread_id(out: &mut Vec<u8>) {
    THREAD_ID.with(|id| out.extend_from_slice(id.as_bytes()));
}

/// `fmt::Write` into bytes.
pub struct Bytes<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// What `encoder` writes for `record`, as text.
#[cfg(test)]
pub fn render(encoder: &dyn Encode, record: &Record) -> String {
    let mut out = SimpleWriter(Vec::new());
    encoder.encode(&mut out, record).unwrap();
    String::from_utf8(out.0).unwrap()
}

/// Records with every optional field and without, their message with
/// text to escape, combining characters and a quote in a key-value.
#[cfg(test)]
pub fn with_sample_records(test: impl FnOnce(&[Record])) {
    let kvs: [(&str, &str); 3] = [("job", "backup"), ("run_id", "42"), ("stream", "std\"out")];
    test(&[
        Record::builder()
            .target("jobs::log::backup")
            .level(log::Level::Warn)
            .args(format_args!(
                "disk \"91%\" full\\ ünïcödé e\u{301}e\u{301}e\u{301}\t\u{1}\u{7f}\r\n"
            ))
            .key_values(&kvs)
            .module_path(Some("overnight::runner"))
            .file(Some("src/runner/mod.rs"))
            .line(Some(7))
            .build(),
        Record::builder()
            .target("overnight")
            .level(log::Level::Error)
            .args(format_args!(""))
            .build(),
    ]);
}
