//! Strict loading of a log4rs YAML file.
//!
//! log4rs on its own drops an appender it cannot build and goes on; an
//! operator then loses a stream without a word. Here the file is read by
//! us, from its tree: every key, level and appender name is checked, every
//! appender's filters, encoder and policy are built, and each mistake is a
//! [`Problem`] at its `FILE:LINE:COL` — all of them at once, whichever
//! part of the file they are in. Our own appender kinds are registered
//! beside log4rs's.
//!
//! One departure from log4rs: a relative `path` (and roller `pattern`) is
//! relative to the log4rs file's folder, not to the working directory,
//! like every other path in overnight's files — a daemon started by systemd
//! (in `/`) or a crontab line (in `$HOME`) writes where the file says.

use std::collections::BTreeMap;
use std::path::Path;

use log::LevelFilter;
use log4rs::append::Append;
use log4rs::config::Deserializers;
use log4rs::filter::Filter;

use super::buffered::{self, Buffered, Console};
use super::dispatch::{LoggerRule, Out, Routing, Sink};
use super::held::{self, HeldConsoleDeserializer, HeldOutput};
use super::settings::{self, LOG_FILE_MODE};
use super::{json, per_job};
use crate::config::ConfigError;
use crate::config::check::{Check, closest};
use crate::config::node::{Node, Pos, Value};

/// The appender kinds a file may use.
const APPENDER_KINDS: &[&str] = &["console", "file", "rolling_file", per_job::KIND];

/// The keys of the file, of a logger, and of `root`.
const TOP_KEYS: &[&str] = &["appenders", "loggers", "root", "refresh_rate"];
const LOGGER_KEYS: &[&str] = &["level", "appenders", "additive"];
const ROOT_KEYS: &[&str] = &["level", "appenders"];

/// What the file is loaded for.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// The daemon or `overnight run`: every appender as written.
    Run,
    /// `overnight exec`: `console` appenders held back, into this, until
    /// the run has ended (see [`super::held`]).
    Exec(HeldOutput),
    /// `overnight check`: everything checked, nothing made — no log file,
    /// no folder.
    Check,
}

/// The deserializers for every kind a file may name: log4rs's and ours.
pub fn deserializers(purpose: &Purpose) -> Deserializers {
    let mut d = Deserializers::default();
    if let Purpose::Exec(held) = purpose {
        d.insert(super::held::KIND, HeldConsoleDeserializer(held.clone()));
    }
    d.insert(per_job::KIND, per_job::PerJobFileDeserializer);
    // log4rs's own `pattern`, on the fast path where the bytes are the same.
    d.insert(
        super::fast_pattern::STOCK_KIND,
        super::fast_pattern::PatternDeserializer::Stock,
    );
    d.insert(
        super::fast_pattern::KIND,
        super::fast_pattern::PatternDeserializer::Fast,
    );
    d.insert(json::KIND, json::JsonDeserializer);
    d
}

/// Reads, checks and builds a log4rs file; every problem is reported.
pub fn load(path: &Path) -> Result<Routing, ConfigError> {
    load_for(path, Purpose::Run)
}

/// [`load`], for `purpose`.
pub fn load_for(path: &Path, purpose: Purpose) -> Result<Routing, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut check = Check::new(path);
    let tree = match Node::parse(&text) {
        Ok(tree) => tree,
        Err((pos, message)) => {
            check.problem(pos, message);
            return Err(ConfigError::invalid(check.problems));
        }
    };
    let reader = Reader {
        deserializers: deserializers(&purpose),
        base: path.parent().unwrap_or(Path::new("")),
        purpose,
        shared_streams: shared_console_streams(&tree),
    };
    let mut appenders = Vec::new();
    // Every appender the file names, built or not: a logger naming a
    // broken one would only repeat its problem.
    let mut declared = Vec::new();
    let mut loggers = Vec::new();
    let mut root = None;
    let what = "the log4rs file (see log4rs-configs/ for examples)";
    for (key, node) in check.mapping(&tree, what, TOP_KEYS) {
        match key {
            "appenders" => {
                for (name, node, at) in named(&mut check, node, "`appenders`") {
                    declared.push(name);
                    appenders.extend(reader.appender(&mut check, name, node, at));
                }
            }
            "loggers" => {
                for (name, node, _) in named(&mut check, node, "`loggers`") {
                    let what = format!("logger `{name}`");
                    let (level, names, additive) = logger(&mut check, node, &what, LOGGER_KEYS);
                    loggers.push((name, level, names, additive));
                }
            }
            "root" => root = Some(logger(&mut check, node, "`root`", ROOT_KEYS)),
            // Accepted for compatibility and ignored: the daemon reloads on
            // SIGHUP.
            _ => {}
        }
    }
    let (root_level, root_names, _) = root.unwrap_or((LevelFilter::Info, Vec::new(), true));
    for (name, at) in loggers
        .iter()
        .flat_map(|(_, _, names, _)| names)
        .chain(&root_names)
    {
        if !declared.contains(&name.as_str()) {
            let hint = closest(name, &declared)
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            check.problem(*at, format!("no appender named `{name}` in the file{hint}"));
        }
    }
    if !check.problems.is_empty() {
        return Err(ConfigError::invalid(check.problems));
    }
    let names = |list: Vec<(String, Pos)>| list.into_iter().map(|(name, _)| name).collect();
    let loggers = loggers
        .into_iter()
        .map(|(name, level, list, additive)| LoggerRule {
            name: name.to_string(),
            level,
            appenders: names(list),
            additive,
        })
        .collect();
    let root = LoggerRule {
        name: String::new(),
        level: root_level,
        appenders: names(root_names),
        additive: true,
    };
    check.finish(Routing::new(appenders, loggers, root))
}

/// The entries of a mapping of names (`appenders`, `loggers`), with the
/// position of each name.
fn named<'n>(check: &mut Check<'_>, node: &'n Node, what: &str) -> Vec<(&'n str, &'n Node, Pos)> {
    let Value::Map(entries) = &node.value else {
        check.problem(
            node.pos,
            format!("{what} must be a mapping of names, not {}", node.kind()),
        );
        return Vec::new();
    };
    let known: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    check
        .mapping(node, what, &known)
        .into_iter()
        .map(|(name, value)| {
            let at = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map_or(node.pos, |(k, _)| k.pos);
            (name, value, at)
        })
        .collect()
}

/// A logger's (or root's) level, appender names and additivity.
fn logger(
    check: &mut Check<'_>,
    node: &Node,
    what: &str,
    keys: &[&str],
) -> (LevelFilter, Vec<(String, Pos)>, bool) {
    let before = check.problems.len();
    let mut level = None;
    let mut appenders = Vec::new();
    let mut additive = true;
    for (key, value) in check.mapping(node, what, keys) {
        match key {
            "level" => level = check.string(value, &format!("the level of {what}")).and_then(|text| {
                let parsed = text.parse::<LevelFilter>().ok();
                if parsed.is_none() {
                    check.problem(value.pos, format!("bad level `{text}` for {what}; use off, error, warn, info, debug or trace"));
                }
                parsed
            }),
            "appenders" => match &value.value {
                Value::Seq(items) => {
                    for item in items {
                        if let Some(name) = check.string(item, &format!("an appender of {what}")) {
                            appenders.push((name, item.pos));
                        }
                    }
                }
                _ => check.problem(value.pos, format!("the appenders of {what} must be a list of names, like `[console]`")),
            },
            "additive" => additive = check.boolean(value, "`additive`").unwrap_or(true),
            _ => unreachable!("mapping() returns known keys only"),
        }
    }
    // Root may leave its level out (INFO); a logger may not, as in log4rs.
    if level.is_none() && keys == LOGGER_KEYS && check.problems.len() == before {
        check.problem(
            node.pos,
            format!("{what} has no `level`; give it one, like `level: info`"),
        );
    }
    (level.unwrap_or(LevelFilter::Info), appenders, additive)
}

/// What building the appenders needs.
struct Reader<'a> {
    deserializers: Deserializers,
    /// The log4rs file's folder, which relative paths start from.
    base: &'a Path,
    purpose: Purpose,
    /// The streams (`stdout`, `stderr`) more than one console appender
    /// writes: those keep log4rs's own, unbuffered, so that their records
    /// stay in order.
    shared_streams: Vec<&'static str>,
}

/// The streams that two or more `console` appenders of the file write.
fn shared_console_streams(tree: &Node) -> Vec<&'static str> {
    let field = |node: &Node, key: &str| match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_str().map(str::to_string)),
        _ => None,
    };
    let appenders = match &tree.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("appenders")),
        _ => None,
    };
    let Some((
        _,
        Node {
            value: Value::Map(appenders),
            ..
        },
    )) = appenders
    else {
        return Vec::new();
    };
    let streams: Vec<&'static str> = appenders
        .iter()
        .filter(|(_, node)| field(node, "kind").as_deref() == Some("console"))
        .map(|(_, node)| match field(node, "target").as_deref() {
            Some("stderr") => "stderr",
            _ => "stdout",
        })
        .collect();
    ["stdout", "stderr"]
        .into_iter()
        .filter(|s| streams.iter().filter(|t| *t == s).count() > 1)
        .collect()
}

impl Reader<'_> {
    /// One appender, built (or, for `check`, checked without making its
    /// file); `None` when anything about it is wrong.
    fn appender(&self, check: &mut Check<'_>, name: &str, node: &Node, at: Pos) -> Option<Sink> {
        let what = format!("appender `{name}`");
        let mut kind = None;
        let mut filters = Vec::new();
        let mut rest = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            check.problem(
                node.pos,
                format!(
                    "{what} must be a mapping with a `kind`, not {}",
                    node.kind()
                ),
            );
            return None;
        };
        let known: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
        let before = check.problems.len();
        for (key, value) in check.mapping(node, &what, &known) {
            match key {
                "kind" => kind = check.string(value, &format!("the kind of {what}")),
                "filters" => filters = self.filters(check, &what, value),
                _ => {
                    rest.insert(
                        serde_value::Value::String(key.to_string()),
                        settings::to_value(value),
                    );
                }
            }
        }
        let Some(kind) = kind else {
            if check.problems.len() == before {
                check.problem(
                    at,
                    format!(
                        "{what} has no `kind`; use one of: {}",
                        APPENDER_KINDS.join(", ")
                    ),
                );
            }
            return None;
        };
        if !APPENDER_KINDS.contains(&kind.as_str()) {
            check.problem(
                at,
                format!(
                    "{what}: unknown kind `{kind}`; use one of: {}",
                    APPENDER_KINDS.join(", ")
                ),
            );
            return None;
        }
        let mut config = serde_value::Value::Map(rest);
        settings::anchor_paths(&mut config, self.base);
        let mode = match kind.as_str() {
            "file" | "rolling_file" => settings::take_mode(&mut config).unwrap_or_else(|why| {
                check.problem(at, format!("{what}: {why}"));
                LOG_FILE_MODE
            }),
            _ => LOG_FILE_MODE,
        };
        let buffered = match kind.as_str() {
            "file" | "rolling_file" | "console" => settings::take_buffered(&mut config)
                .unwrap_or_else(|why| {
                    check.problem(at, format!("{what}: {why}"));
                    true
                }),
            _ => false,
        };
        let unset = settings::unset_variables(&config);
        let mut problems = unset.clone();
        problems.extend(settings::absurd_rolling(&config));
        problems.extend(settings::encoder_problems(&config, &self.deserializers));
        // A file log4rs opens as it builds the appender is only looked at
        // here by `check`; otherwise log4rs's own opening tries it, and a
        // failure is named below (one open per start, not two).
        let opened_by_log4rs = matches!(kind.as_str(), "file" | "rolling_file");
        if unset.is_empty() && (matches!(self.purpose, Purpose::Check) || !opened_by_log4rs) {
            problems.extend(settings::file_problem(&kind, &config));
        }
        for why in problems {
            check.problem(at, format!("{what}: {why}"));
        }
        if check.problems.len() > before {
            // Building it could make its file, in the wrong place.
            return None;
        }
        let out = match (&self.purpose, kind.as_str()) {
            // log4rs makes a file appender's folders and file as it builds
            // it: its settings and policy are checked without it.
            (Purpose::Check, "file" | "rolling_file") => {
                if let Err(why) = settings::check_file_appender(&kind, config, &self.deserializers)
                {
                    check.problem(at, format!("{what}: {why}"));
                    return None;
                }
                Out::Appender(Box::new(held::Silent))
            }
            _ => {
                if opened_by_log4rs {
                    settings::prepare_file(&config, mode);
                }
                // log4rs's file kinds through a buffer, where the settings
                // are ones it follows exactly; else log4rs's own.
                let built = if kind == per_job::KIND {
                    Buffered::per_job(name, &config, &self.deserializers).map(Out::Buffered)
                } else if buffered
                    && kind == "console"
                    && matches!(self.purpose, Purpose::Run)
                    && !self.shared_streams.contains(&console_stream(&config))
                {
                    match Buffered::console(name, &config, &self.deserializers) {
                        Ok(Console::Buffered(console)) => Ok(Out::Buffered(console)),
                        Ok(Console::Silent) => Ok(Out::Appender(Box::new(held::Silent))),
                        Ok(Console::Stock) => self
                            .deserializers
                            .deserialize::<dyn Append>(&kind, config.clone())
                            .map(Out::Appender),
                        Err(e) => Err(e),
                    }
                } else if buffered && buffered::buffers(&kind, &config) {
                    let expanded = settings::with_path_expanded(&config);
                    Buffered::file(name, &expanded, mode, &self.deserializers).map(Out::Buffered)
                } else {
                    self.deserializers
                        .deserialize::<dyn Append>(&kind, config.clone())
                        .map(Out::Appender)
                };
                match built {
                    Ok(built) => built,
                    Err(e) => {
                        // log4rs's words lack the path: ours name it.
                        let why = settings::file_problem(&kind, &config)
                            .unwrap_or_else(|| format!("{e:#}"));
                        check.problem(at, format!("{what}: {why}"));
                        return None;
                    }
                }
            }
        };
        Some(Sink {
            name: name.to_string(),
            filters,
            out,
        })
    }

    /// An appender's `filters`, each built.
    fn filters(&self, check: &mut Check<'_>, what: &str, node: &Node) -> Vec<Box<dyn Filter>> {
        let Value::Seq(items) = &node.value else {
            check.problem(node.pos, format!("the filters of {what} must be a list, like `[{{kind: threshold, level: warn}}]`"));
            return Vec::new();
        };
        let mut built = Vec::new();
        for item in items {
            let mut settings = settings::to_value(item);
            let kind = match &mut settings {
                serde_value::Value::Map(map) => {
                    map.remove(&serde_value::Value::String("kind".into()))
                }
                _ => None,
            };
            let Some(serde_value::Value::String(kind)) = kind else {
                check.problem(
                    item.pos,
                    format!("a filter of {what} needs a `kind`, like `threshold`"),
                );
                continue;
            };
            match self
                .deserializers
                .deserialize::<dyn Filter>(&kind, settings)
            {
                Ok(filter) => built.push(filter),
                Err(e) => check.problem(item.pos, format!("{what}: filter `{kind}`: {e:#}")),
            }
        }
        built
    }
}

/// The stream a `console` appender's settings name: log4rs's default is
/// stdout.
fn console_stream(settings: &serde_value::Value) -> &'static str {
    match settings {
        serde_value::Value::Map(map) => match map.get(&serde_value::Value::String("target".into()))
        {
            Some(serde_value::Value::String(target)) if target == "stderr" => "stderr",
            _ => "stdout",
        },
        _ => "stdout",
    }
}
