//! log4rs's pattern language at millions of records a second: `kind:
//! fast_pattern`, and `kind: pattern` itself — log4rs's own name, taken
//! over so that a user's file gets the fast path unchanged — whenever every
//! piece of the pattern is one written here with log4rs's exact bytes
//! (anything else goes to log4rs's own encoder, byte for byte as before).
//!
//! log4rs's encoder interprets its pattern and has chrono parse the date
//! format on every record. This one parses both once, and formats a
//! timestamp once per second or millisecond when the format shows nothing
//! finer, reusing the text for every record of that tick.
//!
//! Written here: `{d}`, `{d(FORMAT)}`, `{d(FORMAT)(utc|local)}`, `{l}`,
//! `{t}`, `{m}`, `{n}`, `{M}`, `{f}`, `{L}`, `{T}`, `{P}`, `{K(key)}` and
//! `{X(key)}` with or without a default, padding like `{l:<5}` or
//! `{t:>20}`, and `{{`/`}}`. `kind: fast_pattern` refuses anything else at
//! load; its `{d}` is `%Y-%m-%dT%H:%M:%S%.3f%:z` where log4rs's is `%+`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, Utc};
use log::Record;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::pattern::PatternEncoder;
use log4rs::encode::{Encode, Write};

use super::encode::Bytes;

/// The kind name registered with log4rs.
pub const KIND: &str = "fast_pattern";

/// log4rs's own encoder kind, served by [`StockPattern`].
pub const STOCK_KIND: &str = "pattern";

/// The pattern of either kind when none is given (log4rs's).
const DEFAULT: &str = "{d} {l} {t} - {m}{n}";

/// Whose meaning a pattern has where the two differ: `{d}` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// `kind: fast_pattern`: `{d}` to the millisecond.
    Fast,
    /// `kind: pattern`: log4rs's `{d}`, `%+`.
    Stock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// The date format at this index of the encoder's.
    Date(usize),
    Level,
    Target,
    Message,
    Newline,
    Module,
    File,
    Line,
    Thread,
    Pid,
    KeyValue {
        key: String,
        default: String,
    },
    Mdc {
        key: String,
        default: String,
    },
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

/// How often a date format's text changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    Second,
    Milli,
    /// Finer than a millisecond: formatted for every record.
    Always,
}

/// A date format, parsed once, and the text of the last tick it wrote.
#[derive(Debug)]
struct DateFormat {
    items: Vec<Item<'static>>,
    utc: bool,
    tick: Tick,
    /// The last tick formatted and its text; never held across an await.
    last: Mutex<(u64, String)>,
}

/// The encoder.
#[derive(Debug)]
pub struct FastPattern {
    parts: Vec<Part>,
    dates: Vec<DateFormat>,
}

impl FastPattern {
    /// Parses `pattern` as `kind: fast_pattern` does; refuses what it does
    /// not support.
    pub fn new(pattern: &str) -> anyhow::Result<FastPattern> {
        FastPattern::parse(pattern, Dialect::Fast)
    }

    fn parse(pattern: &str, dialect: Dialect) -> anyhow::Result<FastPattern> {
        let mut dates = Vec::new();
        let parts = parse(pattern, dialect, &mut dates)?;
        Ok(FastPattern { parts, dates })
    }
}

fn parse(
    pattern: &str,
    dialect: Dialect,
    dates: &mut Vec<DateFormat>,
) -> anyhow::Result<Vec<Part>> {
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
            '}' => bail!("a lone `}}` (write `}}}}` for a brace)"),
            '{' => {
                let mut spec = String::new();
                let mut depth = 0;
                let mut closed = false;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        '}' if depth == 0 => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                    spec.push(c);
                }
                if !closed {
                    bail!("`{{{spec}` is not closed");
                }
                if !text.is_empty() {
                    parts.push(Part {
                        piece: Piece::Text(std::mem::take(&mut text)),
                        pad: None,
                    });
                }
                parts.push(part(&spec, dialect, dates)?);
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

fn part(spec: &str, dialect: Dialect, dates: &mut Vec<DateFormat>) -> anyhow::Result<Part> {
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
                // log4rs reads a width of digits only (`+5` is no width there).
                Ok(width) if width_digits(width_str(pad)) => (body, Some((align, width))),
                _ => {
                    bail!("`fast_pattern`: padding `:{pad}` is not supported; use `kind: pattern`")
                }
            }
        }
        None => (spec, None),
    };
    let (name, args) = match body.find('(') {
        Some(i) => (&body[..i], args_of(&body[i..])?),
        None => (body, Vec::new()),
    };
    let plain_args = args.iter().all(|a| !a.contains(['{', '}', '(', ')']));
    let piece = match (name, args.as_slice()) {
        _ if !plain_args => bail!(
            "`fast_pattern` does not support `{{{spec}}}` (arguments with braces or brackets); use `kind: pattern` for the full pattern language"
        ),
        ("d" | "date", []) => match dialect {
            Dialect::Fast => date("%Y-%m-%dT%H:%M:%S%.3f%:z", false, dates)?,
            Dialect::Stock => date("%+", false, dates)?,
        },
        ("d" | "date", [format]) => date(format, false, dates)?,
        ("d" | "date", [format, zone]) if zone == "utc" || zone == "local" => {
            date(format, zone == "utc", dates)?
        }
        ("l" | "level", []) => Piece::Level,
        ("t" | "target", []) => Piece::Target,
        ("m" | "message", []) => Piece::Message,
        ("n", []) => Piece::Newline,
        ("M" | "module", []) => Piece::Module,
        ("f" | "file", []) => Piece::File,
        ("L" | "line", []) => Piece::Line,
        ("T" | "thread", []) => Piece::Thread,
        ("P" | "pid", []) => Piece::Pid,
        // log4rs reads a name of letters and digits only: `key_value` is
        // an error there.
        ("K", [key]) if !key.is_empty() => Piece::KeyValue {
            key: key.clone(),
            default: String::new(),
        },
        ("K", [key, default]) if !key.is_empty() && !default.is_empty() => Piece::KeyValue {
            key: key.clone(),
            default: default.clone(),
        },
        ("X" | "mdc", [key]) if !key.is_empty() => Piece::Mdc {
            key: key.clone(),
            default: String::new(),
        },
        ("X" | "mdc", [key, default]) if !key.is_empty() && !default.is_empty() => Piece::Mdc {
            key: key.clone(),
            default: default.clone(),
        },
        _ => bail!(
            "`fast_pattern` does not support `{{{spec}}}`; use `kind: pattern` for the full pattern language"
        ),
    };
    Ok(Part { piece, pad })
}

/// The width of a padding `:<5`, `:>5` or `:5`.
fn width_str(pad: &str) -> &str {
    pad.strip_prefix(['<', '>']).unwrap_or(pad)
}

fn width_digits(width: &str) -> bool {
    !width.is_empty() && width.bytes().all(|b| b.is_ascii_digit())
}

fn date(format: &str, utc: bool, dates: &mut Vec<DateFormat>) -> anyhow::Result<Piece> {
    if let Some(why) = bad_date_format(format) {
        bail!(why);
    }
    let items = StrftimeItems::new(format)
        .parse_to_owned()
        .map_err(|e| anyhow::anyhow!("date format `{format}`: {e}"))?;
    dates.push(DateFormat {
        items,
        utc,
        tick: tick_of(format),
        last: Mutex::new((u64::MAX, String::new())),
    });
    Ok(Piece::Date(dates.len() - 1))
}

/// How often text in `format` changes: anything finer than milliseconds
/// (`%f`, `%.f`, `%.6f`, `%+`…) changes at every record.
fn tick_of(format: &str) -> Tick {
    let finer = ["%f", "%.f", "%.6f", "%.9f", "%6f", "%9f", "%+"];
    if finer.iter().any(|f| format.contains(f)) {
        Tick::Always
    } else if format.contains("%.3f") || format.contains("%3f") {
        Tick::Milli
    } else {
        Tick::Second
    }
}

/// The widest padding a pattern may ask for: a wider one is a mistake
/// (`{m:<1000000000000}` would write a terabyte of spaces per record).
pub const MAX_PAD: usize = 1000;

/// What is wrong with a strftime `format`, if anything: chrono panics when
/// it meets an unknown specifier while formatting, at every record.
pub fn bad_date_format(format: &str) -> Option<String> {
    StrftimeItems::new(format)
        .any(|item| matches!(item, Item::Error))
        .then(|| format!("bad date format `{format}`; use strftime specifiers, like `%Y-%m-%dT%H:%M:%S%.3f%:z`"))
}

/// `(a)(b)` → `["a", "b"]`; anything after the last `)` is refused.
fn args_of(mut text: &str) -> anyhow::Result<Vec<String>> {
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
    if !text.is_empty() {
        bail!("`{text}` after the arguments");
    }
    Ok(args)
}

impl FastPattern {
    /// Appends the record to `out`; its message is `message` when the
    /// caller has it as text already, else formatted from the record.
    pub fn write(&self, out: &mut Vec<u8>, record: &Record, message: Option<&str>) {
        for part in &self.parts {
            let start = out.len();
            match &part.piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Newline => out.push(b'\n'),
                Piece::Level => out.extend_from_slice(record.level().as_str().as_bytes()),
                Piece::Target => out.extend_from_slice(record.target().as_bytes()),
                Piece::Module => {
                    out.extend_from_slice(record.module_path().unwrap_or("???").as_bytes())
                }
                Piece::File => out.extend_from_slice(record.file().unwrap_or("???").as_bytes()),
                Piece::Line => match record.line() {
                    Some(line) => {
                        let _ = write!(Bytes(out), "{line}");
                    }
                    None => out.extend_from_slice(b"???"),
                },
                Piece::Thread => {
                    let current = std::thread::current();
                    out.extend_from_slice(current.name().unwrap_or("unnamed").as_bytes());
                }
                Piece::Pid => {
                    let _ = write!(Bytes(out), "{}", std::process::id());
                }
                Piece::Message => match message {
                    Some(message) => out.extend_from_slice(message.as_bytes()),
                    None => {
                        let _ = Bytes(out).write_fmt(*record.args());
                    }
                },
                Piece::Date(index) => self.dates[*index].write(out),
                Piece::KeyValue { key, default } => {
                    match record.key_values().get(log::kv::Key::from_str(key)) {
                        Some(v) => match v.to_borrowed_str() {
                            Some(text) => out.extend_from_slice(text.as_bytes()),
                            None => {
                                let _ = write!(Bytes(out), "{v}");
                            }
                        },
                        None => out.extend_from_slice(default.as_bytes()),
                    }
                }
                Piece::Mdc { key, default } => {
                    log_mdc::get(key, |v| {
                        out.extend_from_slice(v.unwrap_or(default).as_bytes())
                    });
                }
            }
            if let Some((align, width)) = part.pad {
                // Every piece is whole UTF-8: counted in characters.
                let written = String::from_utf8_lossy(&out[start..]).chars().count();
                let fill = width.saturating_sub(written);
                match align {
                    Align::Left => out.resize(out.len() + fill, b' '),
                    Align::Right => {
                        out.splice(start..start, std::iter::repeat_n(b' ', fill));
                    }
                }
            }
        }
    }
}

impl Encode for FastPattern {
    fn encode(&self, w: &mut dyn Write, record: &Record) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out, record, None);
        w.write_all(&out)?;
        Ok(())
    }
}

impl DateFormat {
    /// Appends now's text to `out`: the last text when the tick is the same.
    fn write(&self, out: &mut Vec<u8>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let tick = match self.tick {
            Tick::Second => now.as_secs(),
            Tick::Milli => now.as_millis() as u64,
            Tick::Always => {
                let mut text = String::new();
                self.format(now, &mut text);
                return out.extend_from_slice(text.as_bytes());
            }
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 != tick {
            last.1.clear();
            self.format(now, &mut last.1);
            last.0 = tick;
        }
        out.extend_from_slice(last.1.as_bytes());
    }

    fn format(&self, since_epoch: std::time::Duration, out: &mut String) {
        let at = DateTime::<Utc>::from(UNIX_EPOCH + since_epoch);
        let _ = if self.utc {
            write!(out, "{}", at.format_with_items(self.items.iter()))
        } else {
            write!(
                out,
                "{}",
                at.with_timezone(&Local)
                    .format_with_items(self.items.iter())
            )
        };
    }
}

/// `kind: pattern`: log4rs's encoder, on the fast path when the pattern
/// allows.
#[derive(Debug)]
pub enum StockPattern {
    /// Every piece is one [`FastPattern`] writes with log4rs's bytes.
    Fast(FastPattern),
    /// log4rs's own.
    Stock(PatternEncoder),
}

impl StockPattern {
    /// The encoder for `pattern`, as log4rs means it.
    pub fn new(pattern: &str) -> StockPattern {
        match FastPattern::parse(pattern, Dialect::Stock) {
            Ok(fast) => StockPattern::Fast(fast),
            Err(_) => StockPattern::Stock(PatternEncoder::new(pattern)),
        }
    }

    /// Whether it takes the fast path.
    pub fn is_fast(&self) -> bool {
        matches!(self, StockPattern::Fast(_))
    }
}

impl Encode for StockPattern {
    fn encode(&self, w: &mut dyn Write, record: &Record) -> anyhow::Result<()> {
        match self {
            StockPattern::Fast(fast) => fast.encode(w, record),
            StockPattern::Stock(stock) => stock.encode(w, record),
        }
    }
}

/// Builds the encoders of both kinds from `{pattern: …}`, as log4rs's
/// `pattern` kind takes it.
#[derive(Debug, Clone, Copy)]
pub enum PatternDeserializer {
    /// `kind: fast_pattern`.
    Fast,
    /// `kind: pattern`.
    Stock,
}

/// The settings of either kind.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pattern: Option<String>,
}

impl PatternConfig {
    /// The pattern given, or log4rs's default.
    pub fn pattern(&self) -> &str {
        self.pattern.as_deref().unwrap_or(DEFAULT)
    }
}

impl Deserialize for PatternDeserializer {
    type Trait = dyn Encode;
    type Config = PatternConfig;

    fn deserialize(
        &self,
        config: PatternConfig,
        _: &Deserializers,
    ) -> anyhow::Result<Box<dyn Encode>> {
        let pattern = config.pattern();
        Ok(match self {
            PatternDeserializer::Fast => Box::new(FastPattern::new(pattern)?),
            PatternDeserializer::Stock => Box::new(StockPattern::new(pattern)),
        })
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

    /// Every pattern of this corpus gives log4rs's own bytes for the same
    /// records: the shipped files' patterns, a user's, and every formatter
    /// and padding of the stock syntax (those written here, and those left
    /// to log4rs, which must still come out the same).
    #[test]
    fn the_stock_kind_writes_log4rs_bytes() {
        use super::super::encode::render;
        let corpus = [
            // log4rs-configs/ and examples/.
            "{d(%Y-%m-%dT%H:%M:%S%.3f%:z)} {l:<5} {t} {m}{n}",
            "{d(%Y-%m-%dT%H:%M:%S%.3f%:z)} {l:<5} {K(job)}#{K(run_id)} {m}{n}",
            "{d(%H:%M:%S%.3f)} {h({l:<5})} {K(job)}#{K(run_id)} {t}: {m}{n}",
            "{m}{n}",
            // A user's file.
            "{d(%+)(utc)} {h({l})} {M}:{L} - {m}{n}",
            "{d(%Y-%m-%d %H:%M:%S)(local)} [{T}] {l:>5} {t:<20.20} {m}{n}",
            // Each formatter alone.
            "{d}",
            "{date}",
            "{d(%s)}",
            "{d(%Y)}{d(%m)}{d(%H:%M)}",
            "{d(%a %b %e %T %Y)(utc)}",
            "{d(%.f)}",
            "{d(%f)(utc)}",
            "{d(%3f)}",
            "{l}",
            "{level}",
            "{t}",
            "{target}",
            "{m}",
            "{message}",
            "{M}",
            "{module}",
            "{f}",
            "{file}",
            "{L}",
            "{line}",
            "{T}",
            "{thread}",
            "{P}",
            "{pid}",
            "{K(job)}",
            "{K(missing)}",
            "{K(missing)(none)}",
            "{key_value(run_id)}",
            "{X(who)}",
            "{X(missing)(nobody)}",
            "{mdc(who)}",
            "{n}",
            "{I}",
            "{h({l})}",
            "{D({l})}{R({m})}",
            // Width, alignment, fill, truncation.
            "[{l:5}]",
            "[{l:<5}]",
            "[{l:>5}]",
            "[{l:*<7}]",
            "[{l:->7}]",
            "[{m:.4}]",
            "[{m:-.4}]",
            "[{t:>10.10}]",
            "[{K(job):>12}]",
            "[{d(%H):>6}]",
            "[{L:04}]",
            "[{l:+5}]",
            // Escapes and mistakes.
            "{{literal}} {{{l}}}",
            "a } b",
            "{nope}",
            "{l(x)}",
            "{d(%%)}",
            "{K()}",
            "",
        ];
        let kvs: [(&str, &str); 2] = [("job", "backup"), ("run_id", "42")];
        log_mdc::insert("who", "ops");
        let records = [
            Record::builder()
                .target("jobs::log::backup")
                .level(log::Level::Warn)
                .args(format_args!("disk 91% full, ünïcödé"))
                .key_values(&kvs)
                .module_path(Some("overnight::runner"))
                .file(Some("src/runner/mod.rs"))
                .line(Some(7))
                .build(),
            Record::builder()
                .target("jobs::errors::a")
                .level(log::Level::Error)
                .args(format_args!(""))
                .build(),
        ];
        // Digits collapsed: for times finer than two calls can share.
        let shape = |text: &str| {
            let mut out = String::new();
            for c in text.chars() {
                if !(c.is_ascii_digit() && out.ends_with('0')) {
                    out.push(if c.is_ascii_digit() { '0' } else { c });
                }
            }
            out
        };
        let mut fast = 0;
        for pattern in corpus {
            let ours = StockPattern::new(pattern);
            let stock = PatternEncoder::new(pattern);
            fast += usize::from(ours.is_fast());
            for record in &records {
                let same = (0..50).find_map(|_| {
                    let before = render(&stock, record);
                    let mine = render(&ours, record);
                    let after = render(&stock, record);
                    (before == after).then_some((mine, before))
                });
                match same {
                    Some((mine, theirs)) => assert_eq!(mine, theirs, "pattern {pattern:?}"),
                    None => {
                        let (mine, theirs) = (render(&ours, record), render(&stock, record));
                        assert_eq!(shape(&mine), shape(&theirs), "pattern {pattern:?}");
                    }
                }
            }
        }
        assert!(corpus.len() >= 60, "{}", corpus.len());
        // The shipped patterns, and most others, take the fast path.
        for shipped in &corpus[..4] {
            if !shipped.contains("{h(") {
                assert!(StockPattern::new(shipped).is_fast(), "{shipped}");
            }
        }
        assert!(fast >= 40, "{fast} of {} on the fast path", corpus.len());
        // What is left to log4rs: highlighting, thread ids, fill and
        // truncation, a sign log4rs does not read, mistakes.
        for stock in [
            "{I}",
            "{h({l})}",
            "[{l:*<7}]",
            "[{m:.4}]",
            "[{l:+5}]",
            "a } b",
            "{nope}",
        ] {
            assert!(!StockPattern::new(stock).is_fast(), "{stock}");
        }
    }
}
