//! `kind: per_job_file`: one log file per job, without naming any job.
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
//! and the job's file is opened; it is written through a buffer
//! ([`super::buffered`]). The job is the last part of the record's
//! `jobs::<section>::<job>` target; the daemon's own records go to the
//! file named `overnight`.

use std::collections::BTreeMap;

use anyhow::bail;
use log4rs::append::Append;
use log4rs::config::{Deserialize, Deserializers};
use serde_value::Value;

use super::buffered::{Buffered, Template, key};

/// The kind name registered with log4rs.
pub const KIND: &str = "per_job_file";

/// Builds `per_job_file` appenders from their YAML settings.
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
        Ok(Box::new(Buffered::of(KIND, template)?))
    }
}

impl Buffered {
    /// A `per_job_file` appender called `name` in the log4rs file.
    pub fn per_job(
        name: &str,
        settings: &Value,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Buffered> {
        let Value::Map(config) = settings else {
            bail!("an appender's settings are a mapping")
        };
        check_settings(config)?;
        Buffered::of(
            name,
            Template {
                settings: config.clone(),
                deserializers: deserializers.clone(),
                single: None,
            },
        )
    }
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
