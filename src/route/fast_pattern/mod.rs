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
//! `{t}`, `{m}`, `{n}`, `{M}`, `{f}`, `{L}`, `{T}`, `{I}`, `{P}`,
//! `{K(key)}` and `{X(key)}` with or without a default, groups `{(…)}`,
//! every width, fill, alignment and truncation (`{l:*<7}`, `{t:<20.20}`),
//! log4rs's escapes, and — where the bytes are plain, in a file —
//! `{h(…)}` as its contents. `kind: fast_pattern` refuses anything else at
//! load; its `{d}` is `%Y-%m-%dT%H:%M:%S%.3f%:z` where log4rs's is `%+`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use unicode_segmentation::UnicodeSegmentation;

use anyhow::bail;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, Utc};
use log::Record;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::pattern::PatternEncoder;
use log4rs::encode::{Encode, Write};

use self::parse::{Align, Format, Node};
use super::encode::{Bytes, Entry};

mod parse;

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
    ThreadId,
    Pid,
    KeyValue {
        key: String,
        default: String,
    },
    Mdc {
        key: String,
        default: String,
    },
    /// `{(…)}`, and `{h(…)}` where nothing is styled: pieces under one
    /// format.
    Group(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    piece: Piece,
    /// Widths, when given: log4rs ignores fill and alignment without.
    format: Option<Format>,
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
        FastPattern::parse(pattern, Dialect::Fast, Output::Styled)
    }

    /// [`FastPattern::new`], for an appender that writes plain bytes (a
    /// file): `{h(…)}` is its contents there, as in log4rs.
    pub fn for_bytes(pattern: &str) -> anyhow::Result<FastPattern> {
        FastPattern::parse(pattern, Dialect::Fast, Output::Bytes)
    }

    fn parse(pattern: &str, dialect: Dialect, output: Output) -> anyhow::Result<FastPattern> {
        let mut reader = Reader {
            dialect,
            output,
            dates: Vec::new(),
        };
        let parts = reader.parts(&parse::nodes(pattern)?)?;
        Ok(FastPattern {
            parts,
            dates: reader.dates,
        })
    }
}

/// Where an encoder's bytes go: to a writer that may style them (a
/// terminal), or as plain bytes (a file), where `{h(…)}` changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Styled,
    Bytes,
}

/// Gives the pieces of a pattern their meaning.
struct Reader {
    dialect: Dialect,
    output: Output,
    dates: Vec<DateFormat>,
}

impl Reader {
    fn parts(&mut self, nodes: &[Node]) -> anyhow::Result<Vec<Part>> {
        nodes.iter().map(|node| self.part(node)).collect()
    }

    fn part(&mut self, node: &Node) -> anyhow::Result<Part> {
        let (name, args, format) = match node {
            Node::Text(text) => {
                return Ok(Part {
                    piece: Piece::Text(text.clone()),
                    format: None,
                });
            }
            Node::Argument { name, args, format } => (name.as_str(), args, format),
        };
        let spec = format!("{{{name}}}");
        let unsupported = || {
            anyhow::anyhow!(
                "`fast_pattern` does not support `{spec}` as written; use `kind: pattern` for the full pattern language"
            )
        };
        for width in [format.min, format.max].into_iter().flatten() {
            if width > MAX_PAD {
                bail!("a width of {width} in `{spec}` is wider than {MAX_PAD} characters");
            }
        }
        // log4rs writes a piece twice when its minimum passes its maximum.
        if let (Some(min), Some(max)) = (format.min, format.max)
            && min > max
        {
            return Err(unsupported());
        }
        // The arguments as text where a formatter takes text: a date
        // format joins its pieces (`%H\:%M`), a key or a default is its
        // first piece in log4rs (more are refused here).
        let joined: Option<Vec<String>> = args
            .iter()
            .map(|arg| {
                arg.iter()
                    .map(|node| match node {
                        Node::Text(text) => Some(text.as_str()),
                        Node::Argument { .. } => None,
                    })
                    .collect::<Option<String>>()
            })
            .collect();
        let single: Option<Vec<String>> = args
            .iter()
            .map(|arg| match arg.as_slice() {
                [Node::Text(text)] => Some(text.clone()),
                _ => None,
            })
            .collect();
        let piece = match (name, args.len(), joined.as_deref(), single.as_deref()) {
            ("d" | "date", 0, ..) => match self.dialect {
                Dialect::Fast => self.date("%Y-%m-%dT%H:%M:%S%.3f%:z", false)?,
                Dialect::Stock => self.date("%+", false)?,
            },
            ("d" | "date", 1, Some([format]), _) => self.date(format, false)?,
            ("d" | "date", 2, Some([format, _]), Some([_, zone]))
                if zone == "utc" || zone == "local" =>
            {
                self.date(format, zone == "utc")?
            }
            ("l" | "level", 0, ..) => Piece::Level,
            ("t" | "target", 0, ..) => Piece::Target,
            ("m" | "message", 0, ..) => Piece::Message,
            ("n", 0, ..) => Piece::Newline,
            ("M" | "module", 0, ..) => Piece::Module,
            ("f" | "file", 0, ..) => Piece::File,
            ("L" | "line", 0, ..) => Piece::Line,
            ("T" | "thread", 0, ..) => Piece::Thread,
            ("I" | "thread_id", 0, ..) => Piece::ThreadId,
            ("P" | "pid", 0, ..) => Piece::Pid,
            ("K", 1 | 2, _, Some([key, rest @ ..])) => Piece::KeyValue {
                key: key.clone(),
                default: kv_default(rest).ok_or_else(unsupported)?,
            },
            ("X" | "mdc", 1 | 2, _, Some([key, rest @ ..])) => Piece::Mdc {
                key: key.clone(),
                default: kv_default(rest).ok_or_else(unsupported)?,
            },
            ("", 1, ..) => Piece::Group(self.parts(&parse::merged(args[0].clone()))?),
            ("h" | "highlight", 1, ..) if self.output == Output::Bytes => {
                Piece::Group(self.parts(&parse::merged(args[0].clone()))?)
            }
            _ => return Err(unsupported()),
        };
        Ok(Part {
            piece,
            format: format.is_set().then_some(*format),
        })
    }

    fn date(&mut self, format: &str, utc: bool) -> anyhow::Result<Piece> {
        if let Some(why) = bad_date_format(format) {
            bail!(why);
        }
        let items = StrftimeItems::new(format)
            .parse_to_owned()
            .map_err(|e| anyhow::anyhow!("date format `{format}`: {e}"))?;
        let tick = tick_of(&items);
        self.dates.push(DateFormat {
            items,
            utc,
            tick,
            last: Mutex::new((u64::MAX, String::new())),
        });
        Ok(Piece::Date(self.dates.len() - 1))
    }
}

/// The default of `{K(key)(default)}`: none, or the one given.
fn kv_default(rest: &[String]) -> Option<String> {
    match rest {
        [] => Some(String::new()),
        [default] => Some(default.clone()),
        _ => None,
    }
}

/// How often the text of `items` changes, found by formatting instants a
/// nanosecond, a microsecond and a millisecond apart: whatever the
/// specifiers (`%f`, `%.6f`, `%-f`, `%+`…), digits finer than a
/// millisecond change at every record.
fn tick_of(items: &[Item<'static>]) -> Tick {
    let text = |nanos: u32| {
        let at = DateTime::<Utc>::from(UNIX_EPOCH + std::time::Duration::new(1_700_000_000, nanos));
        at.format_with_items(items.iter()).to_string()
    };
    if text(1) != text(2) || text(1_000) != text(2_000) {
        Tick::Always
    } else if text(1_000_000) != text(2_000_000) {
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

impl FastPattern {
    /// Appends the entry to `out`.
    pub fn write(&self, out: &mut Vec<u8>, entry: &Entry<'_>) {
        self.write_parts(&self.parts, out, entry);
    }

    fn write_parts(&self, parts: &[Part], out: &mut Vec<u8>, entry: &Entry<'_>) {
        let (record, message) = (entry.record, entry.message);
        for part in parts {
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
                Piece::ThreadId => super::encode::thread_id(out),
                Piece::Pid => {
                    let _ = write!(Bytes(out), "{}", std::process::id());
                }
                Piece::Message => match message {
                    Some(message) => out.extend_from_slice(message.as_bytes()),
                    None => {
                        let _ = Bytes(out).write_fmt(*record.args());
                    }
                },
                Piece::Date(index) => self.dates[*index].write(out, entry),
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
                Piece::Group(parts) => self.write_parts(parts, out, entry),
            }
            if let Some(format) = &part.format {
                fit(out, start, format);
            }
        }
    }
}

/// Fits what a piece wrote, from `start` on, to its format, as log4rs
/// does: widths in grapheme clusters, too wide cut at the end (or the
/// start), too narrow filled on the side away from its alignment.
fn fit(out: &mut Vec<u8>, start: usize, format: &Format) {
    // Every piece writes whole UTF-8 (log4rs would replace what is not).
    let Ok(text) = std::str::from_utf8(&out[start..]) else {
        return;
    };
    // ASCII without a CR (`\r\n` is one cluster) is one byte a cluster.
    let simple = text.is_ascii() && !text.contains('\r');
    let width = match simple {
        true => text.len(),
        false => text.graphemes(true).count(),
    };
    let offset = |count: usize| match simple {
        true => count.min(text.len()),
        false => text
            .grapheme_indices(true)
            .nth(count)
            .map_or(text.len(), |(at, _)| at),
    };
    if let Some(max) = format.max
        && width > max
    {
        match format.right_truncate {
            true => out.truncate(start + offset(max)),
            false => {
                let cut = offset(width - max);
                out.drain(start..start + cut);
            }
        }
        return;
    }
    if let Some(min) = format.min
        && width < min
    {
        let mut fill = [0; 4];
        let fill = format.fill.encode_utf8(&mut fill).as_bytes();
        let count = min - width;
        match format.align {
            Align::Left => (0..count).for_each(|_| out.extend_from_slice(fill)),
            Align::Right => {
                let padding = fill.iter().copied().cycle().take(fill.len() * count);
                out.splice(start..start, padding);
            }
        }
    }
}

impl Encode for FastPattern {
    fn encode(&self, w: &mut dyn Write, record: &Record) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out, &Entry::of(record));
        w.write_all(&out)?;
        Ok(())
    }
}

impl DateFormat {
    /// Appends now's text to `out`: the last text when the tick is the same.
    fn write(&self, out: &mut Vec<u8>, entry: &Entry<'_>) {
        let now = entry.since_epoch();
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
        StockPattern::of(pattern, Output::Styled)
    }

    /// [`StockPattern::new`], for an appender that writes plain bytes (a
    /// file): `{h(…)}` is its contents there, as in log4rs.
    pub fn for_bytes(pattern: &str) -> StockPattern {
        StockPattern::of(pattern, Output::Bytes)
    }

    fn of(pattern: &str, output: Output) -> StockPattern {
        match FastPattern::parse(pattern, Dialect::Stock, output) {
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

    /// A timestamp is cached as long as its text cannot change, whatever
    /// the specifiers say it (chrono's flags on `%f` included).
    #[test]
    fn a_date_is_formatted_as_often_as_its_text_changes() {
        let tick = |format: &str| tick_of(&StrftimeItems::new(format).parse_to_owned().unwrap());
        for always in [
            "%f",
            "%-f",
            "%_f",
            "%.f",
            "%.6f",
            "%9f",
            "%+",
            "%H:%M:%S%.9f",
        ] {
            assert_eq!(tick(always), Tick::Always, "{always}");
        }
        for milli in ["%.3f", "%3f", "%Y-%m-%dT%H:%M:%S%.3f%:z"] {
            assert_eq!(tick(milli), Tick::Milli, "{milli}");
        }
        for second in ["%s", "%H:%M:%S", "%Y-%m-%d", "%a %b %e %T %Y"] {
            assert_eq!(tick(second), Tick::Second, "{second}");
        }
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
            // Grouping, highlighting under a width, truncation of text
            // wider than its characters, and log4rs's other escapes.
            "{({l} {m}):15.15}",
            "[{h({l}):<7}]",
            "{m:>10.15}",
            "[{m:-5.5}]",
            "[{K(job):^<9}]",
            "[{X(who):>3.2}]",
            "a ((b)) \\{c\\} \\\\ {l}",
            "a (b {l}",
            "{l} \\q",
            "{i}",
            "{thread_id}",
        ];
        log_mdc::insert("who", "ops");
        super::super::encode::with_sample_records(|records| {
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
            // A file's encoder (plain bytes, where `{h(…)}` is its contents)
            // and a console's: both write log4rs's bytes.
            let encoders = corpus.iter().flat_map(|pattern| {
                [
                    (pattern, StockPattern::for_bytes(pattern)),
                    (pattern, StockPattern::new(pattern)),
                ]
            });
            for (pattern, ours) in encoders {
                let stock = PatternEncoder::new(pattern);
                fast += usize::from(ours.is_fast());
                for record in records {
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
            assert!(corpus.len() >= 70, "{}", corpus.len());
            // Every shipped pattern, and most others, on the fast path.
            for shipped in &corpus[..5] {
                assert!(StockPattern::for_bytes(shipped).is_fast(), "{shipped}");
            }
            assert!(
                fast >= 110,
                "{fast} of {} on the fast path",
                2 * corpus.len()
            );
            // What is left to log4rs: highlighting where it may style, the
            // system thread id, debug-only pieces, a sign log4rs does not
            // read, mistakes (log4rs writes its `{ERROR: …}`).
            for stock in [
                "{h({l})}",
                "{D({l})}{R({m})}",
                "{i}",
                "[{l:+5}]",
                "a } b",
                "{nope}",
                "a (b {l}",
            ] {
                assert!(!StockPattern::new(stock).is_fast(), "{stock}");
            }
            for fast in ["{I}", "[{l:*<7}]", "[{m:.4}]", "{t:<20.20}", "a ((b))"] {
                assert!(StockPattern::new(fast).is_fast(), "{fast}");
            }
        });
    }
}
