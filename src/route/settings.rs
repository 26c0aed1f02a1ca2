//! What overnight checks in an appender's settings before log4rs builds
//! it: variables that are not set, rolling policies that would thrash, an
//! encoder that does not parse, a file that cannot be opened; and the
//! settings themselves, from the file's tree to what log4rs reads.
//!
//! None of these checks makes a file or a folder: `check` has no side
//! effects. ([`prepare_file`], for the daemon and the commands that run
//! jobs, makes an appender's file with its mode before log4rs opens it.)

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use log4rs::config::Deserializers;
use log4rs::encode::Encode;
use log4rs::encode::writer::simple::SimpleWriter;
use serde_value::Value;

use crate::config::node::{Node, Value as Yaml};

/// A node of the file's tree as the settings log4rs deserializes.
pub(super) fn to_value(node: &Node) -> Value {
    match &node.value {
        Yaml::Null => Value::Option(None),
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Int(n) => u64::try_from(*n).map_or(Value::I64(*n), Value::U64),
        Yaml::Float(f) => Value::F64(*f),
        Yaml::Str(s) => Value::String(s.clone()),
        Yaml::Seq(items) => Value::Seq(items.iter().map(to_value).collect()),
        Yaml::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (to_value(k), to_value(v)))
                .collect(),
        ),
    }
}

/// The setting `name` of a mapping.
fn get<'v>(settings: &'v Value, name: &str) -> Option<&'v Value> {
    match settings {
        Value::Map(map) => map.get(&Value::String(name.to_string())),
        _ => None,
    }
}

/// What is wrong with the appender's `encoder`: a kind or setting log4rs
/// refuses, or a pattern it would print as `{ERROR: …}` in every record
/// (`{K(job}`, an unknown formatter like `$ENV{USER}`).
pub(super) fn encoder_problems(settings: &Value, deserializers: &Deserializers) -> Vec<String> {
    let Some(encoder) = get(settings, "encoder") else {
        return Vec::new();
    };
    let Value::Map(map) = encoder else {
        return vec!["`encoder` must be a mapping, like `{pattern: \"{m}{n}\"}`".to_string()];
    };
    let mut map = map.clone();
    let kind = match map.remove(&Value::String("kind".into())) {
        Some(Value::String(kind)) => kind,
        None => "pattern".to_string(),
        Some(_) => return vec!["the encoder's `kind` must be a string".to_string()],
    };
    if kind == "pattern"
        && let Some(Value::String(pattern)) = map.get(&Value::String("pattern".into()))
    {
        // Before a record is encoded: these would panic or exhaust memory.
        let unsafe_parts = pattern_hazards(pattern);
        if !unsafe_parts.is_empty() {
            return unsafe_parts;
        }
    }
    match deserializers.deserialize::<dyn Encode>(&kind, Value::Map(map)) {
        Ok(encoder) => pattern_errors(&*encoder)
            .into_iter()
            .map(|e| format!("encoder pattern: {e}"))
            .collect(),
        Err(e) => vec![format!("encoder `{kind}`: {e:#}")],
    }
}

/// What in a log4rs pattern would make every record panic (a date format
/// chrono cannot follow) or write absurdly much (a padding of a billion).
fn pattern_hazards(pattern: &str) -> Vec<String> {
    let mut hazards = Vec::new();
    for (at, _) in pattern.match_indices('{') {
        let rest = &pattern[at + 1..];
        for name in ["d(", "date("] {
            if let Some(args) = rest.strip_prefix(name) {
                // The format runs to its parenthesis: a brace may stand in it.
                let format = &args[..args.find(')').unwrap_or(args.len())];
                hazards.extend(super::fast_pattern::bad_date_format(format));
            }
        }
        let spec = &rest[..rest.find('}').unwrap_or(rest.len())];
        let widths = spec.rsplit_once(':').map_or("", |(_, pad)| pad);
        for width in widths.split(|c: char| !c.is_ascii_digit()) {
            if width.len() > 4
                || width
                    .parse()
                    .is_ok_and(|w: usize| w > super::fast_pattern::MAX_PAD)
            {
                hazards.push(format!(
                    "padding `:{widths}` is wider than {} characters",
                    super::fast_pattern::MAX_PAD
                ));
                break;
            }
        }
    }
    hazards
}

/// The errors an encoder writes into its records, found by encoding one.
fn pattern_errors(encoder: &dyn Encode) -> Vec<String> {
    let kvs: [(&str, &str); 3] = [("job", "job"), ("run_id", "1"), ("attempt", "1")];
    let record = log::Record::builder()
        .target("jobs::log::job")
        .level(log::Level::Info)
        .args(format_args!("message"))
        .key_values(&kvs)
        .build();
    let mut out = SimpleWriter(Vec::new());
    // A formatter that fails without an I/O error makes the writer panic:
    // a pattern found wanting here, never at a record.
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        encoder.encode(&mut out, &record)
    }));
    match encoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return vec![format!("{e:#}")],
        Err(_) => {
            return vec![
                "the pattern cannot be written (a `{d(...)}` format chrono cannot follow?)"
                    .to_string(),
            ];
        }
    }
    let text = String::from_utf8_lossy(&out.0);
    // The message ends at the first brace that is not quoted in it, as in
    // `{ERROR: expected '}'}`.
    text.split("{ERROR: ")
        .skip(1)
        .map(|rest| {
            let end = rest
                .match_indices('}')
                .map(|(i, _)| i)
                .find(|&i| !(rest[..i].ends_with('\'') && rest[i + 1..].starts_with('\'')))
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

/// Whether the appender's file can be written, without making it or
/// anything on its way: for `file` and `rolling_file` the file (or the
/// folder it would be made in), for `per_job_file` the folder its files go
/// in.
pub(super) fn file_problem(kind: &str, settings: &Value) -> Option<String> {
    let Some(Value::String(path)) = get(settings, "path") else {
        return None;
    };
    let path = expand_variables(path);
    match kind {
        "file" | "rolling_file" => writable(Path::new(&path)).err(),
        super::per_job::KIND => {
            let sample = path.replace("{job}", "job");
            let dir = Path::new(&sample).parent()?;
            creatable(dir).err()
        }
        _ => None,
    }
}

/// A `file` or `rolling_file` appender's settings as log4rs reads them
/// (no key it does not know, every one it needs) and, for `rolling_file`,
/// its policy built — trigger and roller — without the appender itself,
/// which would make the file.
pub(super) fn check_file_appender(
    kind: &str,
    settings: Value,
    deserializers: &Deserializers,
) -> Result<(), String> {
    use log4rs::append::file::FileAppenderConfig;
    use log4rs::append::rolling_file::RollingFileAppenderConfig;
    use log4rs::append::rolling_file::policy::Policy;
    if kind == "file" {
        return settings
            .deserialize_into::<FileAppenderConfig>()
            .map(drop)
            .map_err(|e| e.to_string());
    }
    settings
        .clone()
        .deserialize_into::<RollingFileAppenderConfig>()
        .map_err(|e| e.to_string())?;
    let Some(Value::Map(mut policy)) = get(&settings, "policy").cloned() else {
        return Ok(());
    };
    let kind = match policy.remove(&Value::String("kind".into())) {
        Some(Value::String(kind)) => kind,
        _ => "compound".to_string(),
    };
    deserializers
        .deserialize::<dyn Policy>(&kind, Value::Map(policy))
        .map(drop)
        .map_err(|e| format!("policy: {e:#}"))
}

/// `$ENV{NAME}` replaced as log4rs replaces it (an unset one is reported
/// by [`unset_variables`]).
fn expand_variables(text: &str) -> String {
    let mut out = text.to_string();
    for name in env_names(text) {
        let value = std::env::var(name).unwrap_or_default();
        out = out.replace(&format!("$ENV{{{name}}}"), &value);
    }
    out
}

/// The variables a text names as `$ENV{NAME}`, in order.
fn env_names(text: &str) -> impl Iterator<Item = &str> {
    text.split("$ENV{")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// A log file that exists opens for appending (which changes nothing in
/// it); one that does not can be made where it goes.
fn writable(path: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return std::fs::OpenOptions::new()
            .append(true)
            // A FIFO would block the opening until a reader came.
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open {}: {e}", path.display()));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    match blocked(dir) {
        Some(why) => Err(format!("cannot create {}: {why}", path.display())),
        None => Ok(()),
    }
}

/// Whether files can be made in `dir`.
fn creatable(dir: &Path) -> Result<(), String> {
    match blocked(dir) {
        Some(why) => Err(format!("cannot make files in {}: {why}", dir.display())),
        None => Ok(()),
    }
}

/// Why files cannot be made in `dir`, if they cannot: it, or the nearest
/// folder above it that exists, must be a folder this process may write.
fn blocked(dir: &Path) -> Option<String> {
    let mut at = dir;
    loop {
        let here = if at.as_os_str().is_empty() {
            Path::new(".")
        } else {
            at
        };
        match std::fs::metadata(here) {
            Ok(meta) if meta.is_dir() => return may_write(here).err().map(|e| e.to_string()),
            Ok(_) => return Some(format!("{} is not a directory", here.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => at = at.parent()?,
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// access(2) for writing and entering `dir`, as this process.
fn may_write(dir: &Path) -> std::io::Result<()> {
    let name = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let r = unsafe { libc::access(name.as_ptr(), libc::W_OK | libc::X_OK) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `$ENV{NAME}` in the `path` or the roller's `pattern` naming a variable
/// that is not set: log4rs would leave the text as it is, and make a
/// folder literally named `$ENV{NAME}`.
pub(super) fn unset_variables(settings: &serde_value::Value) -> Vec<String> {
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
        for name in env_names(text) {
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
pub fn take_mode(settings: &mut serde_value::Value) -> Result<u32, String> {
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

/// Takes `buffered` out of a `file` or `rolling_file` appender's settings
/// (log4rs's kinds do not know it): `false` writes each record through at
/// once, as log4rs's own appenders do.
pub(super) fn take_buffered(settings: &mut serde_value::Value) -> Result<bool, String> {
    use serde_value::Value;
    let Value::Map(map) = settings else {
        return Ok(true);
    };
    match map.remove(&Value::String("buffered".into())) {
        None => Ok(true),
        Some(Value::Bool(buffered)) => Ok(buffered),
        Some(other) => Err(format!("`buffered` must be true or false, not {other:?}")),
    }
}

/// The settings with `$ENV{NAME}` expanded in `path`, as log4rs does.
pub(super) fn with_path_expanded(settings: &Value) -> Value {
    let mut settings = settings.clone();
    if let Value::Map(map) = &mut settings
        && let Some(Value::String(path)) = map.get_mut(&Value::String("path".into()))
    {
        *path = expand_variables(path);
    }
    settings
}

/// Makes the file of a `file` or `rolling_file` appender, with `mode`,
/// before log4rs opens it (a file that exists keeps its mode: the operator
/// may have set it).
pub(super) fn prepare_file(settings: &Value, mode: u32) {
    let Some(Value::String(path)) = get(settings, "path") else {
        return;
    };
    let path = expand_variables(path);
    let path = Path::new(&path);
    if path.exists() {
        return;
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
}

/// A size in a log4rs file, read as log4rs reads its size trigger's
/// `limit`, so that every appender of one file means the same by it: `kb`
/// and `kib` are both 1024 bytes, `mb` and `mib` 1024², up to `tb`.
pub(super) fn log4rs_size(text: &str) -> Option<u64> {
    let (number, unit) = crate::config::http::number_and_unit(text)?;
    let power = match unit.as_str() {
        "" | "b" => 0,
        "kb" | "kib" => 1,
        "mb" | "mib" => 2,
        "gb" | "gib" => 3,
        "tb" | "tib" => 4,
        _ => return None,
    };
    number.checked_mul(1024u64.pow(power))
}

/// Most files a `fixed_window` roller may keep: it renames each of them at
/// every roll.
const MAX_ROLLED: u64 = 1000;

/// What in an appender's rolling policy would hang or thrash a run: a size
/// limit of zero (a roll at every line), a roller keeping absurdly many
/// files (millions of renames at every roll).
pub(super) fn absurd_rolling(settings: &serde_value::Value) -> Vec<String> {
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
        Value::String(s) => log4rs_size(s),
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
pub(super) fn anchor_paths(settings: &mut serde_value::Value, base: &Path) {
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

#[cfg(test)]
mod tests {
    use super::log4rs_size;

    /// As log4rs's own size trigger: `rolling_file` and `per_job_file` in
    /// one file roll at the same size.
    #[test]
    fn sizes_follow_log4rs() {
        assert_eq!(log4rs_size("10 mb"), Some(10 * 1024 * 1024));
        assert_eq!(log4rs_size("10 MiB"), Some(10 * 1024 * 1024));
        assert_eq!(log4rs_size("1kb"), Some(1024));
        assert_eq!(log4rs_size("512"), Some(512));
        assert_eq!(log4rs_size("lots"), None);
    }
}
