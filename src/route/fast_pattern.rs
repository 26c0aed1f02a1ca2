//! `kind: fast_pattern`: log4rs's pattern language, the parts a log line
//! needs, at millions of records a second.
//!
//! log4rs's `pattern` encoder interprets its pattern and formats the date on
//! every record (chrono parses the date format each time). This encoder
//! parses its pattern once, and formats the timestamp once per millisecond
//! (per second when the format shows no fraction), reusing the text for
//! every record of that tick.
//!
//! Supported: `{d}`, `{d(FORMAT)}`, `{d(FORMAT)(utc)}`, `{l}`, `{t}`,
//! `{m}`, `{n}`, `{K(key)}`, `{X(key)}`, padding like `{l:<5}` or `{t:>20}`,
//! and `{{`/`}}`. A pattern using anything else is refused at load, with a
//! pointer to `kind: pattern`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use chrono::{DateTime, Local, Utc};
use log::Record;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::{Encode, Write};

/// The kind name registered with log4rs.
pub const KIND: &str = "fast_pattern";

const DEFAULT: &str = "{d} {l} {t} - {m}{n}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Date {
        format: String,
        utc: bool,
        millis: bool,
    },
    Level,
    Target,
    Message,
    Newline,
    KeyValue(String),
    Mdc(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct Part {
    piece: Piece,
    pad: Option<(Align, usize)>,
}

/// The encoder.
#[derive(Debug)]
pub struct FastPattern {
    parts: Vec<Part>,
    /// The last tick formatted and its text; never held across an await.
    stamp: Mutex<(u64, String)>,
}

impl FastPattern {
    /// Parses `pattern`; refuses what it does not support.
    pub fn new(pattern: &str) -> anyhow::Result<FastPattern> {
        Ok(FastPattern {
            parts: parse(pattern)?,
            stamp: Mutex::new((u64::MAX, String::new())),
        })
    }
}

fn parse(pattern: &str) -> anyhow::Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut spec = String::new();
                let mut depth = 0;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        '}' if depth == 0 => break,
                        _ => {}
                    }
                    spec.push(c);
                }
                if !text.is_empty() {
                    parts.push(Part {
                        piece: Piece::Text(std::mem::take(&mut text)),
                        pad: None,
                    });
                }
                parts.push(part(&spec)?);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part {
            piece: Piece::Text(text),
            pad: None,
        });
    }
    Ok(parts)
}

fn part(spec: &str) -> anyhow::Result<Part> {
    // Padding follows the name, or the closing parenthesis of the arguments.
    let head_end = spec.rfind(')').map_or(0, |i| i + 1);
    let (body, pad) = match spec[head_end..].find(':') {
        Some(i) => {
            let (body, pad) = spec.split_at(head_end + i);
            let pad = &pad[1..];
            let (align, width) = match pad.chars().next() {
                Some('<') => (Align::Left, &pad[1..]),
                Some('>') => (Align::Right, &pad[1..]),
                _ => (Align::Left, pad),
            };
            match width.parse() {
                Ok(width) if width > MAX_PAD => {
                    bail!("padding `:{pad}` is wider than {MAX_PAD} characters")
                }
                Ok(width) => (body, Some((align, width))),
                Err(_) => {
                    bail!("`fast_pattern`: padding `:{pad}` is not supported; use `kind: pattern`")
                }
            }
        }
        None => (spec, None),
    };
    let (name, args) = match body.find('(') {
        Some(i) => (&body[..i], args_of(&body[i..])),
        None => (body, Vec::new()),
    };
    let piece = match (name, args.as_slice()) {
        ("d" | "date", []) => date("%Y-%m-%dT%H:%M:%S%.3f%:z", false)?,
        ("d" | "date", [format]) => date(format, false)?,
        ("d" | "date", [format, zone]) if zone == "utc" || zone == "local" => {
            date(format, zone == "utc")?
        }
        ("l" | "level", []) => Piece::Level,
        ("t" | "target", []) => Piece::Target,
        ("m" | "message", []) => Piece::Message,
        ("n", []) => Piece::Newline,
        ("K" | "key_value", [key]) => Piece::KeyValue(key.clone()),
        ("X" | "mdc", [key]) => Piece::Mdc(key.clone()),
        _ => bail!(
            "`fast_pattern` does not support `{{{spec}}}`; use `kind: pattern` for the full pattern language"
        ),
    };
    Ok(Part { piece, pad })
}

fn date(format: &str, utc: bool) -> anyhow::Result<Piece> {
    if let Some(why) = bad_date_format(format) {
        bail!(why);
    }
    Ok(Piece::Date {
        millis: format.contains("%f")
            || format.contains("%.3f")
            || format.contains("%3f")
            || format.contains("%.f"),
        format: format.to_string(),
        utc,
    })
}

/// The widest padding a pattern may ask for: a wider one is a mistake
/// (`{m:<1000000000000}` would write a terabyte of spaces per record).
pub const MAX_PAD: usize = 1000;

/// What is wrong with a strftime `format`, if anything: chrono panics when
/// it meets an unknown specifier while formatting, at every record.
pub fn bad_date_format(format: &str) -> Option<String> {
    use chrono::format::{Item, StrftimeItems};
    StrftimeItems::new(format)
        .any(|item| matches!(item, Item::Error))
        .then(|| format!("bad date format `{format}`; use strftime specifiers, like `%Y-%m-%dT%H:%M:%S%.3f%:z`"))
}

/// `(a)(b)` → `["a", "b"]`.
fn args_of(mut text: &str) -> Vec<String> {
    let mut args = Vec::new();
    while let Some(rest) = text.strip_prefix('(') {
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        args.push(rest[..end].to_string());
        text = rest.get(end + 1..).unwrap_or("");
    }
    args
}

impl Encode for FastPattern {
    fn encode(&self, w: &mut dyn Write, record: &Record) -> anyhow::Result<()> {
        let mut scratch = String::new();
        for part in &self.parts {
            let text: &str = match &part.piece {
                Piece::Text(text) => text,
                Piece::Newline => "\n",
                Piece::Level => record.level().as_str(),
                Piece::Target => record.target(),
                Piece::Message => {
                    if part.pad.is_none() {
                        w.write_fmt(*record.args())?;
                        continue;
                    }
                    scratch.clear();
                    let _ = write!(scratch, "{}", record.args());
                    &scratch
                }
                Piece::Date {
                    format,
                    utc,
                    millis,
                } => {
                    self.write_date(w, format, *utc, *millis)?;
                    continue;
                }
                Piece::KeyValue(key) => {
                    scratch.clear();
                    if let Some(v) = record.key_values().get(log::kv::Key::from_str(key)) {
                        let _ = write!(scratch, "{v}");
                    }
                    &scratch
                }
                Piece::Mdc(key) => {
                    scratch.clear();
                    if let Some(v) = log_mdc::get(key, |v| v.map(str::to_string)) {
                        scratch.push_str(&v);
                    }
                    &scratch
                }
            };
            match part.pad {
                None => w.write_all(text.as_bytes())?,
                Some((align, width)) => {
                    let fill = width.saturating_sub(text.chars().count());
                    if align == Align::Right {
                        write!(w, "{:fill$}", "")?;
                    }
                    w.write_all(text.as_bytes())?;
                    if align == Align::Left {
                        write!(w, "{:fill$}", "")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl FastPattern {
    /// The timestamp, formatted once per tick.
    fn write_date(
        &self,
        w: &mut dyn Write,
        format: &str,
        utc: bool,
        millis: bool,
    ) -> anyhow::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let tick = if millis {
            now.as_millis() as u64
        } else {
            now.as_secs()
        };
        let mut stamp = self
            .stamp
            .lock()
            .map_err(|_| anyhow::anyhow!("fast_pattern: poisoned"))?;
        if stamp.0 != tick {
            let at = DateTime::<Utc>::from(UNIX_EPOCH + now);
            stamp.1.clear();
            let _ = if utc {
                write!(stamp.1, "{}", at.format(format))
            } else {
                write!(stamp.1, "{}", at.with_timezone(&Local).format(format))
            };
            stamp.0 = tick;
        }
        w.write_all(stamp.1.as_bytes())?;
        Ok(())
    }
}

/// Builds [`FastPattern`] encoders from `{pattern: …}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastPatternDeserializer;

/// The settings of a `fast_pattern` encoder.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastPatternConfig {
    pattern: Option<String>,
}

impl Deserialize for FastPatternDeserializer {
    type Trait = dyn Encode;
    type Config = FastPatternConfig;

    fn deserialize(
        &self,
        config: FastPatternConfig,
        _: &Deserializers,
    ) -> anyhow::Result<Box<dyn Encode>> {
        Ok(Box::new(FastPattern::new(
            config.pattern.as_deref().unwrap_or(DEFAULT),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pattern: &str, record: &Record) -> String {
        let encoder = FastPattern::new(pattern).unwrap();
        let mut out = Vec::new();
        encoder
            .encode(
                &mut log4rs::encode::writer::simple::SimpleWriter(&mut out),
                record,
            )
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_supported_pieces() {
        let kvs: [(&str, &str); 1] = [("job", "backup")];
        let record = Record::builder()
            .target("jobs::log::backup")
            .level(log::Level::Warn)
            .args(format_args!("disk 91% full"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            encode("[{l:<5}] {K(job)} {t}: {m}{n}", &record),
            "[WARN ] backup jobs::log::backup: disk 91% full\n"
        );
        assert_eq!(encode("{{{l:>6}}}", &record), "{  WARN}");
        let stamped = encode("{d(%Y-%m-%dT%H:%M:%S%.3fZ)(utc)} {m}", &record);
        assert_eq!(
            stamped.len(),
            "2026-01-01T00:00:00.000Z disk 91% full".len(),
            "{stamped}"
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let e = FastPattern::new("{h({l})} {m}").unwrap_err().to_string();
        assert!(e.contains("use `kind: pattern`"), "{e}");
    }
}
