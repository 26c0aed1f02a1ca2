//! What a buffered appender's files are made of: its settings, with
//! `{job}` still in them for a `per_job_file`, and what they become for
//! one job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use log4rs::append::rolling_file::policy::compound::roll::Roll;
use log4rs::config::Deserializers;
use serde_value::Value;

use super::super::encode::Encoder;

/// The settings with `{job}` still in them.
pub(in crate::route) struct Template {
    pub(in crate::route) settings: BTreeMap<Value, Value>,
    pub(in crate::route) deserializers: Deserializers,
    /// For log4rs's `file` and `rolling_file`: one file, not one per job
    /// (`{job}` is no placeholder there), made with this mode.
    pub(in crate::route) single: Option<u32>,
}

/// What a job's file is made of.
pub(super) struct Parts {
    pub(super) path: PathBuf,
    /// The mode a new file is made with.
    pub(super) mode: u32,
    pub(super) append: bool,
    pub(super) limit: Option<u64>,
    pub(super) roller: Option<Box<dyn Roll>>,
}

impl Template {
    pub(super) fn parts(&self, job: &str) -> anyhow::Result<Parts> {
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
            None => crate::route::settings::take_mode(&mut Value::Map(settings.clone()))
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
                            Some(Value::String(s)) => crate::route::settings::log4rs_size(s),
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
    pub(super) fn encoder(&self) -> anyhow::Result<(Encoder, String)> {
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

pub(in crate::route) fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// Splits `{kind: x, …}` into the kind (or `default`) and the rest.
pub(super) fn kind_and_settings(value: &Value, default: &str) -> anyhow::Result<(String, Value)> {
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
