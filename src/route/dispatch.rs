//! Records to appenders, as log4rs's `Logger` sends them, at a fraction
//! of its cost per record.
//!
//! The meaning is log4rs's: a record goes to the deepest logger whose name
//! is its target or a `::` prefix of it (else root), passes if that
//! logger's level allows, and is handed to the logger's appenders and,
//! while loggers are additive, to those of the loggers above; an
//! appender's filters may reject it. What differs is the work per record:
//!
//! - the route of a job's section (`jobs::log::<job>`) is resolved once
//!   per configuration, not walked per record, when no logger names a job;
//! - a record that no appender wants costs no formatting;
//! - its message is formatted once, not once per appender;
//! - appenders that overnight writes through a buffer take encoded bytes,
//!   and appenders with the same encoder share one encoding of the record;
//! - every failure is counted by appender and run ([`super::guard`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::{Arc, RwLock};

use log::{LevelFilter, Record};
use log4rs::append::Append;
use log4rs::filter::{Filter, Response};

use super::buffered::Buffered;
use super::encode::Entry;
use super::guard;

/// Where a record goes once it is encoded.
pub enum Out {
    /// Written by overnight through a buffer: takes the encoded bytes.
    Buffered(Buffered),
    /// Any other appender, handed the record.
    Appender(Box<dyn Append>),
}

/// One appender of a log4rs file, with its filters.
pub struct Sink {
    /// Its name in the file, for its failures.
    pub name: String,
    /// Its `filters`, in order.
    pub filters: Vec<Box<dyn Filter>>,
    /// What writes its records.
    pub out: Out,
}

/// A logger of the file (or root, named ""): its level, appender names
/// and additivity.
pub struct LoggerRule {
    /// The target it catches, and those below it (`jobs` catches
    /// `jobs::log::backup`).
    pub name: String,
    /// The most verbose level it lets through.
    pub level: LevelFilter,
    /// The names of its appenders.
    pub appenders: Vec<String>,
    /// Whether the appenders of the loggers above get its records too.
    pub additive: bool,
}

/// Where the records of one target go.
#[derive(Debug, Clone)]
struct Route {
    level: LevelFilter,
    /// Indices into [`Routing::sinks`]: the logger's own, then those of
    /// the loggers above while additive (log4rs's order).
    sinks: Vec<usize>,
}

/// log4rs's logger tree, built by the same rules (`ConfiguredLogger`).
#[derive(Debug)]
struct Node {
    route: Route,
    children: HashMap<String, Node>,
}

impl Node {
    fn add(&mut self, path: &str, mut sinks: Vec<usize>, additive: bool, level: LevelFilter) {
        let (part, rest) = match path.find("::") {
            Some(at) => (&path[..at], &path[at + 2..]),
            None => (path, ""),
        };
        if let Some(child) = self.children.get_mut(part) {
            return child.add(rest, sinks, additive, level);
        }
        let child = if rest.is_empty() {
            if additive {
                sinks.extend(self.route.sinks.iter().copied());
            }
            Node {
                route: Route { level, sinks },
                children: HashMap::new(),
            }
        } else {
            let mut child = Node {
                route: self.route.clone(),
                children: HashMap::new(),
            };
            child.add(rest, sinks, additive, level);
            child
        };
        self.children.insert(part.to_string(), child);
    }

    /// The deepest node on `target`'s path.
    fn find(&self, target: &str) -> &Node {
        self.walk(target).0
    }

    /// The deepest node on `target`'s path, and whether every part of
    /// the path was found.
    fn walk(&self, target: &str) -> (&Node, bool) {
        let mut node = self;
        for part in target.split("::") {
            match node.children.get(part) {
                Some(child) => node = child,
                None => return (node, false),
            }
        }
        (node, true)
    }

    fn max_level(&self) -> LevelFilter {
        self.children
            .values()
            .map(Node::max_level)
            .fold(self.route.level, |a, b| a.max(b))
    }
}

/// A loaded log4rs file, ready to route records.
pub struct Routing {
    sinks: Vec<Sink>,
    /// For each [`Sink`] written through a buffer: which distinct encoder
    /// it has, so that one encoding serves every sink with the same.
    slots: Vec<Option<usize>>,
    slot_count: usize,
    root: Node,
    /// The route of `jobs::<section>::<any job>` by section, where no
    /// logger names a job under it.
    sections: Vec<Option<Route>>,
}

impl fmt::Debug for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Routing")
            .field("appenders", &names)
            .finish()
    }
}

impl Routing {
    /// The routing of these appenders, loggers and root; every appender
    /// name a logger gives must be one of `sinks` (the loader checks).
    pub fn new(sinks: Vec<Sink>, mut loggers: Vec<LoggerRule>, root: LoggerRule) -> Routing {
        let index = |names: &[String]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|name| sinks.iter().position(|s| &s.name == name))
                .collect()
        };
        let mut tree = Node {
            route: Route {
                level: root.level,
                sinks: index(&root.appenders),
            },
            children: HashMap::new(),
        };
        // As log4rs: shorter names first, so parents exist before children.
        loggers.sort_by_key(|l| l.name.len());
        for logger in &loggers {
            tree.add(
                &logger.name,
                index(&logger.appenders),
                logger.additive,
                logger.level,
            );
        }
        let mut keys: Vec<String> = Vec::new();
        let slots = sinks
            .iter()
            .map(|sink| match &sink.out {
                Out::Buffered(files) => {
                    let key = files.encoder_key();
                    Some(keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                        keys.push(key);
                        keys.len() - 1
                    }))
                }
                Out::Appender(_) => None,
            })
            .collect();
        let sections = super::Section::ALL
            .iter()
            .map(|section| {
                // Any job's target ends at this node: the walk stopped
                // above it, or nothing is configured below it.
                let (node, whole) = tree.walk(&format!("jobs::{}", section.name()));
                (!whole || node.children.is_empty()).then(|| node.route.clone())
            })
            .collect();
        Routing {
            sinks,
            slots,
            slot_count: keys.len(),
            root: tree,
            sections,
        }
    }

    /// The most verbose level any logger lets through.
    pub fn max_level(&self) -> LevelFilter {
        self.root.max_level()
    }

    fn route(&self, target: &str, section: Option<usize>) -> &Route {
        match section.and_then(|s| self.sections[s].as_ref()) {
            Some(route) => route,
            None => &self.root.find(target).route,
        }
    }

    /// Whether a record of `target` at `level` would reach an appender.
    pub fn wants(&self, target: &str, section: Option<usize>, level: log::Level) -> bool {
        let route = self.route(target, section);
        route.level >= level && !route.sinks.is_empty()
    }

    /// Sends a record to its appenders: `record` as built with `message`
    /// as its arguments, when anyone wants it. `section` is the job section
    /// of its target, if it is one.
    pub fn deliver(
        &self,
        section: Option<usize>,
        record: &Record<'_>,
        message: Message<'_>,
        origin: Origin,
    ) {
        let route = self.route(record.target(), section);
        if route.level < record.level() || route.sinks.is_empty() {
            return;
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.send(route, record, message, origin, &mut scratch),
            // An appender that logs while it appends: its own buffers.
            Err(_) => self.send(route, record, message, origin, &mut Scratch::default()),
        });
    }

    fn send(
        &self,
        route: &Route,
        record: &Record<'_>,
        message: Message<'_>,
        origin: Origin,
        scratch: &mut Scratch,
    ) {
        let Scratch {
            text,
            bytes,
            encoded,
        } = scratch;
        // The message as text, once.
        let message: &str = match message {
            Message::Text(text) => text,
            Message::Args(args) => match args.as_str() {
                Some(text) => text,
                None => {
                    text.clear();
                    let _ = text.write_fmt(args);
                    text
                }
            },
        };
        self.send_entry(
            route,
            &Entry {
                record: &Record::builder()
                    .args(format_args!("{message}"))
                    .level(record.level())
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .key_values(record.key_values())
                    .build(),
                message: Some(message),
                at: origin.at,
            },
            origin.run,
            bytes,
            encoded,
        );
    }

    /// Hands `entry` to the appenders of `route`; `bytes` and `encoded`
    /// hold each encoder's bytes, made once.
    fn send_entry(
        &self,
        route: &Route,
        entry: &Entry<'_>,
        run: Option<i64>,
        bytes: &mut Vec<u8>,
        encoded: &mut Vec<Option<Range<usize>>>,
    ) {
        let record = entry.record;
        bytes.clear();
        encoded.clear();
        encoded.resize(self.slot_count, None);
        for &index in &route.sinks {
            let sink = &self.sinks[index];
            if !sink.accepts(record) {
                continue;
            }
            let result = match (&sink.out, self.slots[index]) {
                (Out::Buffered(files), Some(slot)) => {
                    let range = match &encoded[slot] {
                        Some(range) => Ok(range.clone()),
                        None => {
                            let start = bytes.len();
                            files.encoder().encode(bytes, entry).map(|()| {
                                encoded[slot] = Some(start..bytes.len());
                                start..bytes.len()
                            })
                        }
                    };
                    range.and_then(|range| files.write(record, run, &bytes[range]))
                }
                (Out::Appender(appender), _) => appender.append(record),
                (Out::Buffered(_), None) => unreachable!("every buffered sink has a slot"),
            };
            if let Err(error) = result {
                guard::lost(&sink.name, run, 1, &format!("{error:#}"));
            }
        }
    }

    /// Flushes every appender.
    pub fn flush(&self) {
        for sink in &self.sinks {
            match &sink.out {
                Out::Buffered(files) => files.flush_all(),
                Out::Appender(appender) => appender.flush(),
            }
        }
    }
}

impl Sink {
    /// log4rs's filter chain: the first that accepts or rejects decides.
    fn accepts(&self, record: &Record<'_>) -> bool {
        for filter in &self.filters {
            match filter.filter(record) {
                Response::Accept => return true,
                Response::Reject => return false,
                Response::Neutral => {}
            }
        }
        true
    }
}

/// Where a record comes from: the run it is of, and when its line was
/// read (its timestamp; now when `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin {
    /// The run, for the failures of the appenders it meets.
    pub run: Option<i64>,
    /// When the runner read the job's line: the record's time, however
    /// long it waited to be routed.
    pub at: Option<std::time::SystemTime>,
}

/// A record's message: text already, or to be formatted once.
#[derive(Clone, Copy)]
pub enum Message<'a> {
    /// Text as it is to be written (an output line, escaped if need be).
    Text(&'a str),
    /// Arguments to format, once, if any appender wants the record.
    Args(fmt::Arguments<'a>),
}

/// What one thread reuses from record to record.
#[derive(Default)]
struct Scratch {
    /// The message, when it had to be formatted.
    text: String,
    /// The encodings of the record, one per distinct encoder.
    bytes: Vec<u8>,
    /// Where each encoder's bytes are in `bytes`, once made.
    encoded: Vec<Option<Range<usize>>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The routing in force; replaced whole by a reload.
static CURRENT: RwLock<Option<Arc<Routing>>> = RwLock::new(None);

/// The routing in force, if any was installed.
pub fn current() -> Option<Arc<Routing>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes `routing` the one in force; the one it replaces is flushed.
pub fn install(routing: Routing) {
    log::set_max_level(routing.max_level());
    let old = CURRENT
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(Arc::new(routing));
    if let Some(old) = old {
        old.flush();
    }
    // The first install makes the dispatcher the process's logger.
    let _ = log::set_logger(&Dispatcher);
}

/// The process's logger: every record through [`current`].
struct Dispatcher;

impl log::Log for Dispatcher {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        current().is_some_and(|r| r.wants(metadata.target(), None, metadata.level()))
    }

    fn log(&self, record: &Record<'_>) {
        if let Some(routing) = current() {
            let origin = Origin {
                run: guard::run_of(record),
                at: None,
            };
            routing.deliver(None, record, Message::Args(*record.args()), origin);
        }
    }

    fn flush(&self) {
        if let Some(routing) = current() {
            routing.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts how often it is formatted.
    struct Counted<'a>(&'a AtomicUsize);

    impl fmt::Display for Counted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fetch_add(1, Ordering::SeqCst);
            f.write_str("the message")
        }
    }

    /// Two appenders with the same pattern share one encoding of a record
    /// (their nanosecond stamps are the same), a third has its own; the
    /// message is formatted once for all three, and not at all for a
    /// record that no appender wants.
    #[test]
    fn a_record_is_formatted_once_and_encoded_once_per_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("log4rs.yaml");
        let stamped = "{d(%H:%M:%S%.9f)} {l} {m}{n}";
        std::fs::write(
            &config,
            format!(
                "appenders:\n  a: {{ kind: file, path: a.log, encoder: {{ pattern: '{stamped}' }} }}\n  b: {{ kind: rolling_file, path: b.log, encoder: {{ pattern: '{stamped}' }}, policy: {{ trigger: {{ kind: size, limit: 1 mb }}, roller: {{ kind: delete }} }} }}\n  c: {{ kind: file, path: c.log, encoder: {{ pattern: '{{m}}{{n}}' }} }}\nloggers:\n  jobs::log:\n    level: info\n    appenders: [a, b, c]\nroot:\n  level: off\n"
            ),
        )
        .unwrap();
        let routing = super::super::load(&config).unwrap();
        let formatted = AtomicUsize::new(0);
        use super::super::Section;
        for (section, level) in [
            (Section::Log, log::Level::Info),
            (Section::Log, log::Level::Debug),
            (Section::Errors, log::Level::Error),
        ] {
            let args = format_args!("{}", Counted(&formatted));
            let target = format!("jobs::{}::backup", section.name());
            routing.deliver(
                Some(section as usize),
                &Record::builder()
                    .target(&target)
                    .level(level)
                    .args(format_args!(""))
                    .build(),
                Message::Args(args),
                Origin {
                    run: Some(7),
                    at: None,
                },
            );
        }
        routing.flush();
        assert_eq!(formatted.load(Ordering::SeqCst), 1);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let a = read("a.log");
        assert!(a.ends_with(" INFO the message\n"), "{a}");
        assert_eq!(a.lines().count(), 1, "{a}");
        assert_eq!(read("b.log"), a, "one encoding for both");
        assert_eq!(read("c.log"), "the message\n");
    }

    /// log4rs's rules: the deepest logger decides the level; additive
    /// loggers add those above; a logger naming one job changes that job's
    /// route only, also where a section's route is resolved once.
    #[test]
    fn routes_follow_log4rs_loggers_and_additivity() {
        use super::super::Section;
        use log::Level::{Debug, Info};
        let sink = |name: &str| Sink {
            name: name.to_string(),
            filters: Vec::new(),
            out: Out::Appender(Box::new(super::super::held::Silent)),
        };
        let rule = |name: &str, level, appenders: &[&str], additive| LoggerRule {
            name: name.to_string(),
            level,
            appenders: appenders.iter().map(|a| a.to_string()).collect(),
            additive,
        };
        let routing = Routing::new(
            vec![sink("root"), sink("jobs"), sink("one"), sink("alone")],
            vec![
                rule("jobs::log::backup", LevelFilter::Debug, &["one"], true),
                rule("jobs", LevelFilter::Info, &["jobs"], true),
                rule("jobs::errors::quiet", LevelFilter::Warn, &["alone"], false),
            ],
            rule("", LevelFilter::Warn, &["root"], true),
        );
        let route = |target: &str, section: Option<Section>| {
            let route = routing.route(target, section.map(|s| s as usize));
            (route.level, route.sinks.clone())
        };
        let log = Some(Section::Log);
        assert_eq!(
            route("jobs::log::backup", log),
            (LevelFilter::Debug, vec![2, 1, 0])
        );
        assert_eq!(
            route("jobs::log::other", log),
            (LevelFilter::Info, vec![1, 0])
        );
        assert_eq!(
            route("jobs::status::backup", Some(Section::Status)),
            (LevelFilter::Info, vec![1, 0])
        );
        assert_eq!(
            route("jobs::errors::quiet", Some(Section::Errors)),
            (LevelFilter::Warn, vec![3])
        );
        assert_eq!(
            route("overnight::daemon", None),
            (LevelFilter::Warn, vec![0])
        );
        assert!(routing.wants("jobs::log::backup", None, Debug));
        assert!(!routing.wants("jobs::log::other", log.map(|s| s as usize), Debug));
        assert!(routing.wants("jobs::log::other", None, Info));
        assert_eq!(routing.max_level(), LevelFilter::Debug);
    }

    /// A line's record carries the time the line was read, not the time it
    /// was routed: a router behind by a second still stamps it right.
    #[test]
    fn a_record_is_stamped_when_its_line_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("log4rs.yaml");
        std::fs::write(
            &config,
            "appenders:\n  f: { kind: file, path: f.log, encoder: { pattern: '{d(%s%.3f)(utc)} {m}{n}' } }\n  j: { kind: file, path: j.log, encoder: { kind: json } }\nroot: { level: info, appenders: [f, j] }\n",
        )
        .unwrap();
        let routing = super::super::load(&config).unwrap();
        let read = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        routing.deliver(
            None,
            &Record::builder()
                .target("jobs::log::a")
                .level(log::Level::Info)
                .args(format_args!(""))
                .build(),
            Message::Text("late"),
            Origin {
                run: None,
                at: Some(read),
            },
        );
        routing.flush();
        let read_back = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read_back("f.log"), "1700000000.250 late\n");
        let json: serde_json::Value = serde_json::from_str(&read_back("j.log")).unwrap();
        let time = chrono::DateTime::parse_from_rfc3339(json["time"].as_str().unwrap()).unwrap();
        assert_eq!(time.timestamp_millis(), 1_700_000_000_250, "{json}");
    }
}
