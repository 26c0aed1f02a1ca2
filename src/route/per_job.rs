//! `kind: per_job_file`: one log file per job, without naming any job,
//! written through a buffer.
//!
//! ```yaml
//! per_job:
//!   kind: per_job_file
//!   path: logs/jobs/{job}.log          # {job} is the job's name
//!   encoder: { kind: fast_pattern, pattern: "{d} {l} {m}{n}" }
//!   policy:                             # optional: roll by size
//!     trigger: { kind: size, limit: 10 mb }
//!     roller: { kind: fixed_window, pattern: "logs/jobs/{job}.{}.log.gz", count: 5 }
//! ```
//!
//! On a job's first record, `{job}` is replaced everywhere in the settings
//! and the job's file is opened. log4rs's own file appenders flush after
//! every record; this one writes through a buffer, which is flushed when a
//! run ends (the router flushes the logger) and, while anything is pending,
//! every half second by a flusher thread that sleeps when there is nothing
//! to write — so a line reaches its file within half a second, and millions
//! of lines a second cost one write per buffer. Rolling is by size, through
//! log4rs's rollers (`fixed_window`, `delete`; `.gz` compresses). The job is
//! the last part of the record's `jobs::<section>::<job>` target; the
//! daemon's own records go to the file named `overnight`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use log::Record;
use log4rs::append::Append;
use log4rs::append::rolling_file::policy::compound::roll::Roll;
use log4rs::config::{Deserialize, Deserializers};
use serde_value::Value;

use super::encode::{Encoder, Entry};

/// The kind name registered with log4rs.
pub const KIND: &str = "per_job_file";

/// The buffer of each job's file.
const BUFFER: usize = 256 * 1024;

/// How long written records may wait in a buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Builds [`PerJobFile`] appenders from their YAML settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct PerJobFileDeserializer;

impl Deserialize for PerJobFileDeserializer {
    type Trait = dyn Append;
    type Config = BTreeMap<Value, Value>;

    fn deserialize(
        &self,
        config: Self::Config,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Box<dyn Append>> {
        check_settings(&config)?;
        let template = Template {
            settings: config,
            deserializers: deserializers.clone(),
            single: None,
        };
        Ok(Box::new(PerJobFile::of(KIND, template)?))
    }
}

impl PerJobFile {
    /// A `per_job_file` appender called `name` in the log4rs file.
    pub fn named(
        name: &str,
        settings: &Value,
        deserializers: &Deserializers,
    ) -> anyhow::Result<PerJobFile> {
        let Value::Map(config) = settings else {
            bail!("an appender's settings are a mapping")
        };
        check_settings(config)?;
        PerJobFile::of(
            name,
            Template {
                settings: config.clone(),
                deserializers: deserializers.clone(),
                single: None,
            },
        )
    }

    fn of(name: &str, template: Template) -> anyhow::Result<PerJobFile> {
        // Build every part once now, so a mistake is found at load and not
        // at the first record; this opens no file.
        let single = template.single.is_some();
        let parts = template.parts("check")?;
        // log4rs's file kinds open their file as they are built: a path
        // that cannot be written is found at load, as with them.
        let (encoder, encoder_key) = template.encoder()?;
        let open = match single {
            true => Open::One(JobFile::open(parts)?),
            false => Open::ByJob {
                files: Vec::new(),
                index: HashMap::new(),
                last: 0,
            },
        };
        let files = Arc::new(Files {
            open: Mutex::new(open),
            template,
            encoder,
            encoder_key,
            name: name.to_string(),
        });
        flusher().register(Arc::downgrade(&files));
        Ok(PerJobFile { files })
    }

    /// log4rs's `file` or `rolling_file` with these `settings` (paths
    /// anchored, variables expanded), on the same buffered path: one file,
    /// made with `mode`. `None` when the settings ask for what only
    /// log4rs's own does (a trigger other than `size`); see [`buffers`].
    pub fn single(
        name: &str,
        settings: &Value,
        mode: u32,
        deserializers: &Deserializers,
    ) -> anyhow::Result<PerJobFile> {
        let Value::Map(settings) = settings else {
            bail!("an appender's settings are a mapping")
        };
        PerJobFile::of(
            name,
            Template {
                settings: settings.clone(),
                deserializers: deserializers.clone(),
                single: Some(mode),
            },
        )
    }
}

/// What a `console` appender becomes.
pub enum Console {
    /// Off a terminal: written through a buffer.
    Buffered(PerJobFile),
    /// `tty_only` off a terminal: nothing.
    Silent,
    /// On a terminal (someone is watching: log4rs's own flushes every
    /// record and colours `{h(…)}`), or a stream that cannot be
    /// duplicated (closed): log4rs's own.
    Stock,
}

impl PerJobFile {
    /// log4rs's `console` on the same buffered path, off a terminal:
    /// stdout (or stderr with `target: stderr`), written through a buffer
    /// flushed as the files' are.
    pub fn console(
        name: &str,
        settings: &Value,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Console> {
        let Value::Map(settings) = settings else {
            bail!("an appender's settings are a mapping")
        };
        for name in settings.keys() {
            match name {
                Value::String(k) if ["target", "encoder", "tty_only"].contains(&k.as_str()) => {}
                other => bail!(
                    "unknown field {other:?} in `console`; expected target, encoder or tty_only"
                ),
            }
        }
        let to_stdout = match settings.get(&key("target")) {
            None => true,
            Some(Value::String(target)) if target == "stdout" => true,
            Some(Value::String(target)) if target == "stderr" => false,
            Some(other) => bail!("`target` must be stdout or stderr, not {other:?}"),
        };
        let tty_only = match settings.get(&key("tty_only")) {
            None => false,
            Some(Value::Bool(tty_only)) => *tty_only,
            Some(other) => bail!("`tty_only` must be true or false, not {other:?}"),
        };
        fn stream(out: impl AsFd + IsTerminal) -> (std::io::Result<OwnedFd>, bool) {
            (out.as_fd().try_clone_to_owned(), out.is_terminal())
        }
        let ((fd, terminal), path) = match to_stdout {
            true => (stream(std::io::stdout()), "<stdout>"),
            false => (stream(std::io::stderr()), "<stderr>"),
        };
        let fd = match (terminal, tty_only, fd) {
            (true, ..) | (_, _, Err(_)) => return Ok(Console::Stock),
            (false, true, _) => return Ok(Console::Silent),
            (false, false, Ok(fd)) => fd,
        };
        let template = Template {
            settings: settings.clone(),
            deserializers: deserializers.clone(),
            single: Some(0),
        };
        let (encoder, encoder_key) = template.encoder()?;
        let file = JobFile {
            parts: Parts {
                path: PathBuf::from(path),
                mode: 0,
                append: true,
                limit: None,
                roller: None,
            },
            out: BufWriter::with_capacity(BUFFER, File::from(fd)),
            size: 0,
            pending: Vec::new(),
        };
        let files = Arc::new(Files {
            open: Mutex::new(Open::One(file)),
            template,
            encoder,
            encoder_key,
            name: name.to_string(),
        });
        flusher().register(Arc::downgrade(&files));
        Ok(Console::Buffered(PerJobFile { files }))
    }
}

/// Whether a `file` or `rolling_file` appender with these settings is
/// written by [`PerJobFile::single`]: every setting one it follows with
/// log4rs's meaning, and a policy (if any) that rolls by size.
pub fn buffers(kind: &str, settings: &Value) -> bool {
    let Value::Map(map) = settings else {
        return false;
    };
    let allowed: &[&str] = match kind {
        "file" => &["path", "append", "encoder"],
        "rolling_file" => &["path", "append", "encoder", "policy"],
        _ => return false,
    };
    let known = map
        .keys()
        .all(|k| matches!(k, Value::String(k) if allowed.contains(&k.as_str())));
    let by_size = match map.get(&key("policy")) {
        None => kind == "file",
        Some(policy) => {
            let trigger = match kind_and_settings(policy, "compound") {
                Ok((kind, Value::Map(policy))) if kind == "compound" => {
                    policy.get(&key("trigger")).cloned()
                }
                _ => None,
            };
            trigger.is_some_and(
                |t| matches!(kind_and_settings(&t, "size"), Ok((kind, _)) if kind == "size"),
            )
        }
    };
    known && by_size
}

/// Refuses the settings of a `per_job_file` that log4rs's file kinds would
/// not take, or that lack `{job}`.
fn check_settings(config: &BTreeMap<Value, Value>) -> anyhow::Result<()> {
    let path = match config.get(&key("path")) {
        Some(Value::String(path)) => path.clone(),
        _ => {
            bail!("`per_job_file` needs a `path` with `{{job}}` in it, like `logs/{{job}}.log`")
        }
    };
    if !path.contains("{job}") {
        bail!("the `path` of a `per_job_file` must contain `{{job}}`, found `{path}`");
    }
    for name in config.keys() {
        match name {
            Value::String(k)
                if ["path", "append", "encoder", "policy", "mode"].contains(&k.as_str()) => {}
            other => bail!(
                "unknown field {other:?} in `per_job_file`; expected path, append, encoder, policy or mode"
            ),
        }
    }
    Ok(())
}

/// The settings with `{job}` still in them.
struct Template {
    settings: BTreeMap<Value, Value>,
    deserializers: Deserializers,
    /// For log4rs's `file` and `rolling_file`: one file, not one per job
    /// (`{job}` is no placeholder there), made with this mode.
    single: Option<u32>,
}

/// What a job's file is made of.
struct Parts {
    path: PathBuf,
    /// The mode a new file is made with.
    mode: u32,
    append: bool,
    limit: Option<u64>,
    roller: Option<Box<dyn Roll>>,
}

impl Template {
    fn parts(&self, job: &str) -> anyhow::Result<Parts> {
        let settings = match self.single {
            Some(_) => Value::Map(self.settings.clone()),
            None => fill(&Value::Map(self.settings.clone()), job),
        };
        let Value::Map(settings) = settings else {
            unreachable!("a map stays a map")
        };
        let string = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let path = PathBuf::from(string(settings.get(&key("path"))).unwrap_or_default());
        let mode = match self.single {
            Some(mode) => mode,
            None => super::settings::take_mode(&mut Value::Map(settings.clone()))
                .map_err(|e| anyhow!(e))?,
        };
        let append = !matches!(settings.get(&key("append")), Some(Value::Bool(false)));
        let (limit, roller) = match settings.get(&key("policy")) {
            None => (None, None),
            Some(policy) => {
                let (kind, policy) = kind_and_settings(policy, "compound")?;
                let Value::Map(policy) = policy else {
                    unreachable!("a map stays a map")
                };
                if kind != "compound" {
                    bail!(
                        "`per_job_file` rolls with a `compound` policy (a size trigger and a roller), not `{kind}`"
                    );
                }
                let limit = match policy.get(&key("trigger")) {
                    Some(trigger) => {
                        let (kind, trigger) = kind_and_settings(trigger, "size")?;
                        let Value::Map(trigger) = trigger else {
                            unreachable!("a map stays a map")
                        };
                        if kind != "size" {
                            bail!(
                                "`per_job_file` rolls by size; its trigger must be `kind: size`, not `{kind}`"
                            );
                        }
                        let limit = match trigger.get(&key("limit")) {
                            Some(Value::String(s)) => super::settings::log4rs_size(s),
                            Some(Value::U64(n)) => Some(*n),
                            Some(Value::I64(n)) if *n > 0 => Some(*n as u64),
                            _ => None,
                        };
                        Some(limit.ok_or_else(|| {
                            anyhow!("the size trigger needs a `limit` like `10 mb`")
                        })?)
                    }
                    None => bail!(
                        "the policy of `per_job_file` needs a `trigger: {{kind: size, limit: …}}`"
                    ),
                };
                let roller = match policy.get(&key("roller")) {
                    Some(roller) => {
                        let (kind, roller) = kind_and_settings(roller, "fixed_window")?;
                        self.deserializers
                            .deserialize::<dyn Roll>(&kind, roller)
                            .context("in the roller of `per_job_file`")?
                    }
                    None => bail!("the policy of `per_job_file` needs a `roller`"),
                };
                (limit, Some(roller))
            }
        };
        Ok(Parts {
            path,
            mode,
            append,
            limit,
            roller,
        })
    }

    /// The appender's encoder, one for all its files (log4rs's pattern
    /// syntax has no `{job}`), and what tells it from another's: its kind
    /// and settings.
    fn encoder(&self) -> anyhow::Result<(Encoder, String)> {
        let (kind, config) = match self.settings.get(&key("encoder")) {
            Some(encoder) => kind_and_settings(encoder, "pattern")?,
            None => ("pattern".to_string(), Value::Map(BTreeMap::new())),
        };
        let what = format!("{kind} {config:?}");
        let encoder =
            Encoder::build(&kind, config, &self.deserializers).context("in the encoder")?;
        Ok((encoder, what))
    }
}

/// One open job file.
struct JobFile {
    parts: Parts,
    out: BufWriter<File>,
    size: u64,
    /// Records written to the buffer since it was last flushed whole, by
    /// run: what a failed flush loses.
    pending: Vec<(Option<i64>, u64)>,
}

impl JobFile {
    fn open(parts: Parts) -> anyhow::Result<JobFile> {
        if let Some(dir) = parts.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(parts.append)
            .truncate(!parts.append)
            .mode(parts.mode)
            .open(&parts.path)
            .with_context(|| format!("cannot open `{}`", parts.path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JobFile {
            out: BufWriter::with_capacity(BUFFER, file),
            parts,
            size,
            pending: Vec::new(),
        })
    }

    /// Writes what waits in the buffer; when that fails, what waited is
    /// dropped and counted as lost, by run, in the runs' reports.
    fn flush(&mut self, appender: &str) -> std::io::Result<()> {
        let flushed = self.out.flush();
        if let Err(e) = &flushed {
            let why = format!("`{}`: {e}", self.parts.path.display());
            for (run, records) in self.pending.drain(..) {
                super::guard::lost(appender, run, records, &why);
            }
            // What could not be written is not written later, out of
            // order: taken apart, not dropped (a BufWriter's drop writes).
            if let Ok(file) = self.out.get_ref().try_clone() {
                let failed =
                    std::mem::replace(&mut self.out, BufWriter::with_capacity(BUFFER, file));
                drop(failed.into_parts());
            }
        }
        self.pending.clear();
        flushed
    }

    /// Writes one encoded record of run `run`.
    fn write(&mut self, run: Option<i64>, bytes: &[u8]) -> anyhow::Result<()> {
        // Nearly always the run of the record before.
        match self.pending.iter_mut().rev().find(|(r, _)| *r == run) {
            Some((_, records)) => *records += 1,
            None => self.pending.push((run, 1)),
        }
        self.out.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Closes the file, hands it to the roller, and starts a new one.
    /// A roll that fails is said (not as lost records: every one is in
    /// the file) and the file goes on growing, as log4rs's does.
    fn roll(&mut self, appender: &str, run: Option<i64>) -> anyhow::Result<()> {
        if self.flush(appender).is_err() {
            // What waited is counted as lost; the next record tries again.
            return Ok(());
        }
        let path = self.parts.path.clone();
        // The roller wants the file closed: put a placeholder in its place.
        let placeholder = BufWriter::new(OpenOptions::new().write(true).open("/dev/null")?);
        drop(std::mem::replace(&mut self.out, placeholder));
        let rolled = match &self.parts.roller {
            Some(roller) => roller.roll(&path),
            None => Ok(()),
        };
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(rolled.is_err())
            .truncate(rolled.is_ok())
            .mode(self.parts.mode)
            .open(&path)?;
        self.size = match &rolled {
            Ok(()) => 0,
            Err(_) => file.metadata().map_or(self.size, |m| m.len()),
        };
        self.out = BufWriter::with_capacity(BUFFER, file);
        if let Err(e) = rolled {
            let why = format!("cannot roll `{}`: {e:#}; writing on to it", path.display());
            super::guard::lost(appender, run, 0, &why);
        }
        Ok(())
    }
}

/// The open file of a stock `file` or `rolling_file`, or the files of a
/// `per_job_file`, each made on its job's first record.
enum Open {
    One(JobFile),
    ByJob {
        files: Vec<(String, JobFile)>,
        /// Where each job's file is in `files`.
        index: HashMap<String, usize>,
        /// The file of the record before, nearly always this one's too:
        /// a comparison instead of a hash.
        last: usize,
    },
}

impl Open {
    fn files(&mut self) -> impl Iterator<Item = &mut JobFile> {
        let (one, by_job) = match self {
            Open::One(file) => (Some(file), None),
            Open::ByJob { files, .. } => (None, Some(files.iter_mut().map(|(_, file)| file))),
        };
        one.into_iter().chain(by_job.into_iter().flatten())
    }
}

/// The open files of one appender written through a buffer.
struct Files {
    /// Never held across an await: log4rs appenders are synchronous.
    open: Mutex<Open>,
    template: Template,
    encoder: Encoder,
    /// The encoder's kind and settings: appenders with the same share
    /// each record's encoding.
    encoder_key: String,
    /// The appender's name in the log4rs file, for its failures.
    name: String,
}

impl Files {
    fn flush(&self) {
        // A panic while writing leaves the files as they were: written.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for file in open.files() {
            let _ = file.flush(&self.name);
        }
    }

    /// Writes `bytes` to `file`, rolling it once it is full.
    fn write_to(&self, file: &mut JobFile, run: Option<i64>, bytes: &[u8]) -> anyhow::Result<()> {
        file.write(run, bytes)?;
        // As log4rs's size trigger: past the limit, not at it.
        if file.parts.limit.is_some_and(|limit| file.size > limit) {
            file.roll(&self.name, run)?;
        }
        Ok(())
    }

    /// Writes the encoded `bytes` of `record` (of run `run`) to its file.
    fn write(&self, record: &Record, run: Option<i64>, bytes: &[u8]) -> anyhow::Result<()> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| anyhow!("{}: poisoned", self.name))?;
        match &mut *open {
            // Not a map keyed by "": comparing an empty key is a masked
            // load at address 0x1, which costs a microcode assist on
            // AVX-512 machines: a tenth of the time per line.
            Open::One(file) => self.write_to(file, run, bytes)?,
            Open::ByJob { files, index, last } => {
                let job = job_of(record);
                if files.get(*last).is_none_or(|(name, _)| name != job) {
                    *last = match index.get(job) {
                        Some(&at) => at,
                        None => {
                            let file = JobFile::open(self.template.parts(job)?)
                                .with_context(|| format!("the log file of job `{job}`"))?;
                            files.push((job.to_string(), file));
                            index.insert(job.to_string(), files.len() - 1);
                            files.len() - 1
                        }
                    };
                }
                self.write_to(&mut files[*last].1, run, bytes)?;
            }
        }
        drop(open);
        flusher().pending();
        Ok(())
    }
}

impl Drop for Files {
    /// What a replaced configuration still holds (a record routed just as
    /// a reload swapped it) is written, or counted as lost: not left to
    /// the buffer's own drop, which drops its errors.
    fn drop(&mut self) {
        self.flush();
    }
}

/// One buffered file per job, made on first use.
pub struct PerJobFile {
    files: Arc<Files>,
}

impl fmt::Debug for PerJobFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerJobFile").finish_non_exhaustive()
    }
}

impl PerJobFile {
    /// Its encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.files.encoder
    }

    /// What tells its encoder from another's (kind and settings).
    pub fn encoder_key(&self) -> String {
        self.files.encoder_key.clone()
    }

    /// Writes the encoded `bytes` of `record`, of run `run`.
    pub fn write(&self, record: &Record, run: Option<i64>, bytes: &[u8]) -> anyhow::Result<()> {
        self.files.write(record, run, bytes)
    }

    /// Writes what waits in its buffers.
    pub fn flush_all(&self) {
        self.files.flush();
    }
}

impl Append for PerJobFile {
    fn append(&self, record: &Record) -> anyhow::Result<()> {
        let message = record.args().to_string();
        let mut bytes = Vec::with_capacity(256);
        let entry = Entry {
            record,
            message: &message,
        };
        self.files.encoder.encode(&mut bytes, &entry)?;
        self.files
            .write(record, super::guard::run_of(record), &bytes)
    }

    fn flush(&self) {
        self.files.flush();
    }
}

/// Flushes every `per_job_file` half a second after something was written;
/// sleeps while nothing is pending.
struct Flusher {
    appenders: Mutex<Vec<Weak<Files>>>,
    dirty: Mutex<bool>,
    /// Mirrors `dirty` for the fast path of `pending`.
    awake: std::sync::atomic::AtomicBool,
    wake: Condvar,
}

fn flusher() -> &'static Flusher {
    static FLUSHER: OnceLock<&'static Flusher> = OnceLock::new();
    FLUSHER.get_or_init(|| {
        let flusher: &'static Flusher = Box::leak(Box::new(Flusher {
            appenders: Mutex::new(Vec::new()),
            dirty: Mutex::new(false),
            awake: std::sync::atomic::AtomicBool::new(false),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("overnight-log-flusher".into())
            .spawn(move || flusher.run())
            .expect("the flusher thread starts");
        flusher
    })
}

impl Flusher {
    fn register(&self, files: Weak<Files>) {
        let mut appenders = self.appenders.lock().expect("appenders");
        appenders.retain(|a| a.strong_count() > 0);
        appenders.push(files);
    }

    fn pending(&self) {
        // Millions of records a second pass here: once the flusher is
        // awake, telling it again costs one atomic load.
        if self.awake.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut dirty = self.dirty.lock().expect("dirty flag");
        if !*dirty {
            *dirty = true;
            self.awake.store(true, std::sync::atomic::Ordering::Release);
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        loop {
            let mut dirty = self.dirty.lock().expect("dirty flag");
            while !*dirty {
                dirty = self.wake.wait(dirty).expect("dirty flag");
            }
            drop(dirty);
            std::thread::sleep(FLUSH_EVERY);
            // Cleared before flushing: a record written during the flush
            // wakes the next round.
            *self.dirty.lock().expect("dirty flag") = false;
            self.awake
                .store(false, std::sync::atomic::Ordering::Release);
            let appenders: Vec<Arc<Files>> = self
                .appenders
                .lock()
                .expect("appenders")
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            appenders.iter().for_each(|files| files.flush());
        }
    }
}

/// The job a record belongs to: the last part of a `jobs::…` target.
fn job_of<'a>(record: &Record<'a>) -> &'a str {
    // A job's name has no `:` (config::valid_name): its last `:` ends the
    // section. A byte search, once per line.
    match record.target().strip_prefix("jobs::") {
        Some(rest) => rest.rfind(':').map_or(rest, |colon| &rest[colon + 1..]),
        None => "overnight",
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// Splits `{kind: x, …}` into the kind (or `default`) and the rest.
fn kind_and_settings(value: &Value, default: &str) -> anyhow::Result<(String, Value)> {
    let Value::Map(map) = value else {
        bail!("expected a mapping, found {value:?}")
    };
    let mut map = map.clone();
    let kind = match map.remove(&key("kind")) {
        Some(Value::String(kind)) => kind,
        Some(other) => bail!("`kind` must be a string, found {other:?}"),
        None => default.to_string(),
    };
    Ok((kind, Value::Map(map)))
}

/// The template with `{job}` replaced in every string.
fn fill(value: &Value, job: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{job}", job)),
        Value::Map(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), fill(v, job))).collect()),
        Value::Seq(items) => Value::Seq(items.iter().map(|v| fill(v, job)).collect()),
        other => other.clone(),
    }
}
