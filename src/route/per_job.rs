//! `kind: per_job_file`: one log file per job, without naming any job.
//!
//! ```yaml
//! per_job:
//!   kind: per_job_file
//!   path: logs/jobs/{job}.log          # {job} is the job's name
//!   encoder: { pattern: "{d} {l} {m}{n}" }
//!   policy:                             # optional: as for rolling_file
//!     trigger: { kind: size, limit: 10 mb }
//!     roller: { kind: fixed_window, pattern: "logs/jobs/{job}.{}.log.gz", count: 5 }
//! ```
//!
//! The appender is a template: on a job's first record, `{job}` is replaced
//! everywhere in its settings and a log4rs `file` appender (or
//! `rolling_file`, when a policy is given) is built from them. The job is
//! the last part of the record's `jobs::<section>::<job>` target; the
//! daemon's own records go to the file named `overnight`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use anyhow::{Context, anyhow, bail};
use log::Record;
use log4rs::append::Append;
use log4rs::append::rolling_file::policy::Policy;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::Encode;
use serde_value::Value;

/// The kind name registered with log4rs.
pub const KIND: &str = "per_job_file";

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
                    if ["path", "append", "encoder", "policy"].contains(&k.as_str()) => {}
                other => bail!(
                    "unknown field {other:?} in `per_job_file`; expected path, append, encoder or policy"
                ),
            }
        }
        // Check the parts now, so a mistake is found at load and not at the
        // first record; building them creates no file.
        if let Some(encoder) = config.get(&key("encoder")) {
            let (kind, settings) = kind_and_settings(encoder, "pattern")?;
            deserializers
                .deserialize::<dyn Encode>(&kind, settings)
                .context("in the encoder of `per_job_file`")?;
        }
        let kind = match config.get(&key("policy")) {
            Some(policy) => {
                let (kind, settings) = kind_and_settings(policy, "compound")?;
                deserializers
                    .deserialize::<dyn Policy>(&kind, settings)
                    .context("in the policy of `per_job_file`")?;
                "rolling_file"
            }
            None => "file",
        };
        Ok(Box::new(PerJobFile {
            template: config,
            kind,
            deserializers: deserializers.clone(),
            files: Mutex::new(HashMap::new()),
        }))
    }
}

/// One `file` or `rolling_file` appender per job, made on first use.
pub struct PerJobFile {
    template: BTreeMap<Value, Value>,
    kind: &'static str,
    deserializers: Deserializers,
    /// Not held across an await: log4rs appenders are synchronous.
    files: Mutex<HashMap<String, Box<dyn Append>>>,
}

impl fmt::Debug for PerJobFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerJobFile")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl PerJobFile {
    fn build(&self, job: &str) -> anyhow::Result<Box<dyn Append>> {
        let settings = fill(&Value::Map(self.template.clone()), job);
        self.deserializers
            .deserialize::<dyn Append>(self.kind, settings)
            .with_context(|| format!("cannot open the log file of job `{job}`"))
    }
}

impl Append for PerJobFile {
    fn append(&self, record: &Record) -> anyhow::Result<()> {
        let job = job_of(record);
        let mut files = self
            .files
            .lock()
            .map_err(|_| anyhow!("per_job_file: poisoned"))?;
        if !files.contains_key(job) {
            let appender = self.build(job)?;
            files.insert(job.to_string(), appender);
        }
        files[job].append(record)
    }

    fn flush(&self) {
        if let Ok(files) = self.files.lock() {
            files.values().for_each(|f| f.flush());
        }
    }
}

/// The job a record belongs to: the last part of a `jobs::…` target.
fn job_of<'a>(record: &Record<'a>) -> &'a str {
    match record.target().strip_prefix("jobs::") {
        Some(rest) => rest.rsplit("::").next().unwrap_or("overnight"),
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
