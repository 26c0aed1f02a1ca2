//! Appenders that overnight writes through a buffer: log4rs's `file`, and
//! `rolling_file` rolling by size, with log4rs's settings and bytes; a
//! `console` off a terminal; and overnight's own `per_job_file`.
//!
//! log4rs's own file appenders flush after every record, a system call a
//! line. These write through a buffer, which is flushed when a run ends
//! (the router flushes every appender), when the process ends, and, while
//! anything is pending, every half second by a flusher thread that sleeps
//! when there is nothing to write: a line reaches its file within half a
//! second, and millions of lines a second cost one write per buffer. A
//! flush that fails drops what waited and counts it, by run, in the runs'
//! reports. Rolling is by size, through log4rs's rollers (`fixed_window`,
//! `delete`; `.gz` compresses).

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use log::Record;
use log4rs::append::Append;
use log4rs::config::Deserializers;
use serde_value::Value;

use super::encode::{Encoder, Entry};

mod console;
mod template;

pub use self::console::Console;
pub(in crate::route) use self::template::Template;
pub(in crate::route) use self::template::key;
use self::template::{Parts, kind_and_settings};

/// The buffer of each file.
const BUFFER: usize = 256 * 1024;

/// How long written records may wait in a buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// An appender written through a buffer: one file, or one per job.
pub struct Buffered {
    files: Arc<Files>,
}

impl fmt::Debug for Buffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffered").finish_non_exhaustive()
    }
}

impl Buffered {
    /// The appender called `name` with these settings: one file (log4rs's
    /// kinds) or one per job.
    pub(in crate::route) fn of(name: &str, template: Template) -> anyhow::Result<Buffered> {
        // Build every part once now, so a mistake is found at load and not
        // at the first record; this opens no file.
        let single = template.single.is_some();
        let parts = template.parts("check")?;
        // log4rs's file kinds open their file as they are built: a path
        // that cannot be written is found at load, as with them.
        let open = match single {
            true => Open::One(JobFile::open(parts)?),
            false => Open::ByJob {
                files: Vec::new(),
                index: HashMap::new(),
                last: 0,
            },
        };
        Buffered::with(name, template, open)
    }

    /// The appender called `name` writing to `open`, flushed by the
    /// flusher from now on.
    fn with(name: &str, template: Template, open: Open) -> anyhow::Result<Buffered> {
        let (encoder, encoder_key) = template.encoder()?;
        let files = Arc::new(Files {
            open: Mutex::new(open),
            template,
            encoder,
            encoder_key,
            name: name.to_string(),
        });
        flusher().register(Arc::downgrade(&files));
        Ok(Buffered { files })
    }

    /// log4rs's `file` or `rolling_file` with these `settings` (paths
    /// anchored, variables expanded), on the same buffered path: one file,
    /// made with `mode`. `None` when the settings ask for what only
    /// log4rs's own does (a trigger other than `size`); see [`buffers`].
    pub fn file(
        name: &str,
        settings: &Value,
        mode: u32,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Buffered> {
        let Value::Map(settings) = settings else {
            bail!("an appender's settings are a mapping")
        };
        Buffered::of(
            name,
            Template {
                settings: settings.clone(),
                deserializers: deserializers.clone(),
                single: Some(mode),
            },
        )
    }
}

/// Whether a `file` or `rolling_file` appender with these settings is
/// written by [`Buffered::file`]: every setting one it follows with
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
            super::guard::roll_failed(appender, run, &why);
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
                let same = files
                    .get(*last)
                    .is_some_and(|(name, _)| is_job_of(name, record));
                if !same {
                    let job = job_of(record);
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

impl Buffered {
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

impl Append for Buffered {
    fn append(&self, record: &Record) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(256);
        self.files.encoder.encode(&mut bytes, &Entry::of(record))?;
        self.files
            .write(record, super::guard::run_of(record), &bytes)
    }

    fn flush(&self) {
        self.files.flush();
    }
}

/// Flushes every buffered appender half a second after something was written;
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

/// Whether `record` is of job `job` (as [`job_of`] says), without
/// searching its target: it ends with `::job`.
fn is_job_of(job: &str, record: &Record) -> bool {
    let target = record.target();
    match job {
        "overnight" => !target.starts_with("jobs::"),
        job => {
            target.starts_with("jobs::")
                && target
                    .strip_suffix(job)
                    .is_some_and(|head| head.ends_with("::") && head.len() > "jobs::".len())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut to the file of the record before says "same job"
    /// only where the job's name, found the long way, is that job.
    #[test]
    fn the_same_job_is_the_job_of_the_record() {
        let targets = [
            "jobs::log::flood",
            "jobs::log::xflood",
            "jobs::flood",
            "jobs::status::flood",
            "overnight::daemon",
            "jobs::log::overnight",
        ];
        for target in targets {
            let record = Record::builder().target(target).build();
            for job in ["flood", "overnight", "xflood", "log"] {
                if is_job_of(job, &record) {
                    assert_eq!(job_of(&record), job, "{target}");
                }
            }
            assert!(
                is_job_of(job_of(&record), &record)
                    || target == "jobs::flood"
                    || target == "jobs::log::overnight",
                "{target}"
            );
        }
    }
}
