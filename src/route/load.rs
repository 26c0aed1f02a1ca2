//! Strict loading of a log4rs YAML file.
//!
//! log4rs on its own drops an appender it cannot build and goes on; an
//! operator then loses a stream without a word. Here the file is parsed by
//! us, every appender, filter, encoder and policy is built, and each one
//! that fails is a [`Problem`] at its `FILE:LINE:COL`. Our own appender
//! kinds are registered beside log4rs's.
//!
//! One departure from log4rs: a relative `path` (and roller `pattern`) is
//! relative to the log4rs file's folder, not to the working directory,
//! like every other path in overnight's files — a daemon started by systemd
//! (in `/`) or a crontab line (in `$HOME`) writes where the file says.

use std::collections::BTreeMap;
use std::path::Path;

use log::LevelFilter;
use log4rs::append::{Append, AppenderConfig};
use log4rs::config::{Appender, Config, Deserializers, Logger, Root};
use log4rs::filter::Filter;

use crate::config::node::{Node, Pos, Value};
use crate::config::{ConfigError, Problem};

use super::{guard, per_job};

/// The appender kinds a file may use.
const APPENDER_KINDS: &[&str] = &["console", "file", "rolling_file", per_job::KIND];

/// log4rs's file format, mirrored so that each appender can be built alone.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogConfig {
    /// Accepted for compatibility and ignored: the daemon reloads on SIGHUP.
    #[serde(default)]
    #[allow(dead_code)]
    refresh_rate: Option<serde_value::Value>,
    #[serde(default)]
    root: Option<RawRoot>,
    #[serde(default)]
    appenders: BTreeMap<String, AppenderConfig>,
    #[serde(default)]
    loggers: BTreeMap<String, RawLogger>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(default = "info")]
    level: LevelFilter,
    #[serde(default)]
    appenders: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogger {
    level: LevelFilter,
    #[serde(default)]
    appenders: Vec<String>,
    #[serde(default = "yes")]
    additive: bool,
}

fn info() -> LevelFilter {
    LevelFilter::Info
}

fn yes() -> bool {
    true
}

/// What the file is loaded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The daemon or `overnight run`: every appender as written.
    Run,
    /// `overnight exec`: `console` appenders held back until the run has
    /// ended (see [`super::held`]).
    Exec,
}

/// The deserializers for every kind a file may name: log4rs's and ours.
pub fn deserializers(purpose: Purpose) -> Deserializers {
    let mut d = Deserializers::default();
    if purpose == Purpose::Exec {
        d.insert(super::held::KIND, super::held::HeldConsoleDeserializer);
    }
    d.insert(per_job::KIND, per_job::PerJobFileDeserializer);
    d.insert(
        super::fast_pattern::KIND,
        super::fast_pattern::FastPatternDeserializer,
    );
    d
}

/// Reads, checks and builds a log4rs file; every problem is reported.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_for(path, Purpose::Run)
}

/// [`load`], for `purpose`.
pub fn load_for(path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut problems = Vec::new();
    let at = |pos: Pos, message: String| Problem {
        file: path.to_path_buf(),
        pos,
        message,
    };
    let tree = match Node::parse(&text) {
        Ok(tree) => tree,
        Err((pos, message)) => {
            problems.push(at(pos, message));
            return Err(ConfigError::Invalid(problems));
        }
    };
    let raw: RawLogConfig = match serde_saphyr::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => {
            let pos = e.location().map(|at| Pos::from(&at)).unwrap_or_default();
            let message = e.to_string();
            let message = message.lines().next().unwrap_or_default();
            let message = message.strip_prefix("error: ").unwrap_or(message);
            let message = match message.split_once(": ") {
                Some((head, rest)) if head.starts_with("line ") => rest,
                _ => message,
            };
            problems.push(at(
                pos,
                format!("{message} (this is a log4rs file: see log4rs-configs/ for examples)"),
            ));
            return Err(ConfigError::Invalid(problems));
        }
    };

    let deserializers = deserializers(purpose);
    let base = path.parent().unwrap_or(Path::new(""));
    let mut appenders = Vec::new();
    for (name, mut appender) in raw.appenders {
        anchor_paths(&mut appender.config, base);
        let pos = key_pos(&tree, &["appenders", &name]);
        if !APPENDER_KINDS.contains(&appender.kind.as_str()) {
            problems.push(at(
                pos,
                format!(
                    "appender `{name}`: unknown kind `{}`; use one of: {}",
                    appender.kind,
                    APPENDER_KINDS.join(", ")
                ),
            ));
            continue;
        }
        let mut ok = true;
        for why in unset_variables(&appender.config)
            .into_iter()
            .chain(absurd_rolling(&appender.config))
        {
            ok = false;
            problems.push(at(pos, format!("appender `{name}`: {why}")));
        }
        if !ok {
            // Building it would make its file, in the wrong place.
            continue;
        }
        if let Err(why) = prepare_file(&appender.kind, &mut appender.config) {
            problems.push(at(pos, format!("appender `{name}`: {why}")));
            continue;
        }
        let mut builder = Appender::builder();
        for filter in appender.filters {
            match deserializers.deserialize::<dyn Filter>(&filter.kind, filter.config) {
                Ok(f) => builder = builder.filter(f),
                Err(e) => {
                    ok = false;
                    problems.push(at(
                        pos,
                        format!("appender `{name}`: filter `{}`: {e:#}", filter.kind),
                    ));
                }
            }
        }
        match deserializers.deserialize::<dyn Append>(&appender.kind, appender.config) {
            Ok(built) if ok => {
                let guarded = Box::new(guard::Guarded::new(name.clone(), built));
                appenders.push(builder.build(name, guarded));
            }
            Ok(_) => {}
            Err(e) => problems.push(at(pos, format!("appender `{name}`: {e:#}"))),
        }
    }
    let loggers: Vec<Logger> = raw
        .loggers
        .into_iter()
        .map(|(name, l)| {
            Logger::builder()
                .appenders(l.appenders)
                .additive(l.additive)
                .build(name, l.level)
        })
        .collect();
    let root = raw.root.unwrap_or(RawRoot {
        level: info(),
        appenders: Vec::new(),
    });
    let root = Root::builder().appenders(root.appenders).build(root.level);
    if !problems.is_empty() {
        // Loggers naming a broken appender would only repeat the problem.
        return Err(ConfigError::Invalid(problems));
    }
    match Config::builder()
        .appenders(appenders)
        .loggers(loggers)
        .build(root)
    {
        Ok(config) => Ok(config),
        Err(errors) => {
            for e in errors.errors() {
                let pos = match e {
                    log4rs::config::runtime::ConfigError::NonexistentAppender(name) => {
                        find_str(&tree, name).unwrap_or_default()
                    }
                    _ => Pos::default(),
                };
                problems.push(at(pos, lowercase_first(&e.to_string())));
            }
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// `$ENV{NAME}` in the `path` or the roller's `pattern` naming a variable
/// that is not set: log4rs would leave the text as it is, and make a
/// folder literally named `$ENV{NAME}`.
fn unset_variables(settings: &serde_value::Value) -> Vec<String> {
    use serde_value::Value;
    let key = |k: &str| Value::String(k.to_string());
    let Value::Map(map) = settings else {
        return Vec::new();
    };
    let mut texts = Vec::new();
    if let Some(Value::String(path)) = map.get(&key("path")) {
        texts.push(("path", path));
    }
    if let Some(Value::Map(policy)) = map.get(&key("policy"))
        && let Some(Value::Map(roller)) = policy.get(&key("roller"))
        && let Some(Value::String(pattern)) = roller.get(&key("pattern"))
    {
        texts.push(("roller pattern", pattern));
    }
    let mut unset = Vec::new();
    for (what, text) in texts {
        for name in text
            .split("$ENV{")
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(n, _)| n))
        {
            if std::env::var_os(name).is_none() {
                unset.push(format!(
                    "`$ENV{{{name}}}` in its {what} is not set in the environment; set it, or write the path out"
                ));
            }
        }
    }
    unset
}

/// Log files are the operator's, but not everyone's: made 0640 unless the
/// appender's `mode:` (octal, like `"0600"`) says otherwise.
pub const LOG_FILE_MODE: u32 = 0o640;

/// The `mode:` of an appender's settings, taken out of them (log4rs's own
/// kinds refuse keys they do not know); `LOG_FILE_MODE` without one.
pub(super) fn take_mode(settings: &mut serde_value::Value) -> Result<u32, String> {
    use serde_value::Value;
    let Value::Map(map) = settings else {
        return Ok(LOG_FILE_MODE);
    };
    let Some(mode) = map.remove(&Value::String("mode".into())) else {
        return Ok(LOG_FILE_MODE);
    };
    let text = match mode {
        Value::String(s) => s,
        Value::U64(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        _ => String::new(),
    };
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "bad `mode: {text}`; write it in octal, like \"0640\""
        )),
    }
}

/// Makes the file of a `file` or `rolling_file` appender, with its mode,
/// before log4rs opens it (a file that exists keeps its mode: the operator
/// may have set it). Other kinds keep their settings.
fn prepare_file(kind: &str, settings: &mut serde_value::Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if !matches!(kind, "file" | "rolling_file") {
        return Ok(());
    }
    let mode = take_mode(settings)?;
    let serde_value::Value::Map(map) = settings else {
        return Ok(());
    };
    let Some(serde_value::Value::String(path)) =
        map.get(&serde_value::Value::String("path".into()))
    else {
        return Ok(());
    };
    let path = Path::new(path);
    if path.as_os_str().to_string_lossy().contains("$ENV{") || path.exists() {
        return Ok(()); // log4rs expands the variables; its own defaults then
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Made now, so log4rs opens a file with the right mode; if this fails,
    // log4rs's own opening says why, at the appender.
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path);
    Ok(())
}

/// Most files a `fixed_window` roller may keep: it renames each of them at
/// every roll.
const MAX_ROLLED: u64 = 1000;

/// What in an appender's rolling policy would hang or thrash a run: a size
/// limit of zero (a roll at every line), a roller keeping absurdly many
/// files (millions of renames at every roll).
fn absurd_rolling(settings: &serde_value::Value) -> Vec<String> {
    use serde_value::Value;
    let get = |map: &Value, k: &str| match map {
        Value::Map(map) => map.get(&Value::String(k.to_string())).cloned(),
        _ => None,
    };
    let number = |v: &Value| match v {
        Value::U64(n) => Some(*n),
        Value::I64(n) => Some((*n).max(0) as u64),
        Value::U32(n) => Some(u64::from(*n)),
        Value::I32(n) => Some((*n).max(0) as u64),
        Value::U8(n) => Some(u64::from(*n)),
        Value::U16(n) => Some(u64::from(*n)),
        Value::String(s) => crate::config::http::parse_size(s),
        _ => None,
    };
    let mut absurd = Vec::new();
    let Some(policy) = get(settings, "policy") else {
        return absurd;
    };
    if let Some(limit) = get(&policy, "trigger").and_then(|t| get(&t, "limit"))
        && number(&limit) == Some(0)
    {
        absurd.push("the size trigger's `limit` must be more than 0 bytes".to_string());
    }
    if let Some(count) = get(&policy, "roller")
        .and_then(|r| get(&r, "count"))
        .as_ref()
        .and_then(number)
        && count > MAX_ROLLED
    {
        absurd.push(format!(
            "the roller's `count: {count}` is too many; keep at most {MAX_ROLLED} rolled files (each is renamed at every roll)"
        ));
    }
    absurd
}

/// Makes the `path` and `policy.roller.pattern` of an appender's settings
/// relative to `base` when they are relative.
fn anchor_paths(settings: &mut serde_value::Value, base: &Path) {
    use serde_value::Value;
    let key = |k: &str| Value::String(k.to_string());
    let Value::Map(map) = settings else { return };
    if let Some(Value::String(p)) = map.get_mut(&key("path")) {
        anchor(p, base);
    }
    if let Some(Value::Map(policy)) = map.get_mut(&key("policy"))
        && let Some(Value::Map(roller)) = policy.get_mut(&key("roller"))
        && let Some(Value::String(p)) = roller.get_mut(&key("pattern"))
    {
        anchor(p, base);
    }
}

fn anchor(path: &mut String, base: &Path) {
    // `$ENV{…}` is expanded by log4rs later; an absolute path stays as it is.
    if !path.starts_with('/') && !path.starts_with("$ENV{") && !base.as_os_str().is_empty() {
        *path = base.join(&*path).to_string_lossy().into_owned();
    }
}

/// The position of the key at `path` in nested mappings.
fn key_pos(tree: &Node, path: &[&str]) -> Pos {
    let mut node = tree;
    let mut pos = tree.pos;
    for part in path {
        let Value::Map(entries) = &node.value else {
            break;
        };
        match entries.iter().find(|(k, _)| k.as_str() == Some(part)) {
            Some((k, v)) => {
                pos = k.pos;
                node = v;
            }
            None => break,
        }
    }
    pos
}

/// The first string scalar equal to `text`, anywhere in the tree.
fn find_str(node: &Node, text: &str) -> Option<Pos> {
    match &node.value {
        Value::Str(s) if s == text => Some(node.pos),
        Value::Seq(items) => items.iter().find_map(|n| find_str(n, text)),
        Value::Map(entries) => entries.iter().find_map(|(_, v)| find_str(v, text)),
        _ => None,
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
