//! Console appenders held back, as chronic holds output back, while
//! `overnight exec` runs a crontab line.
//!
//! cron mails whatever a line prints; a wrapper that prints on every
//! success buries the one mail that matters. Under `exec`, a `console`
//! appender of the log4rs file encodes its records into memory; when the
//! run has ended they are printed if it failed or warned (or with
//! `--verbose`), and dropped otherwise. Files and every other appender get
//! their records as always.

use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use log::Record;
use log4rs::append::Append;
use log4rs::config::{Deserialize, Deserializers};
use log4rs::encode::pattern::PatternEncoder;
use log4rs::encode::writer::simple::SimpleWriter;
use log4rs::encode::{Encode, EncoderConfig};

/// The kind it stands in for.
pub const KIND: &str = "console";

/// Most bytes held per stream; later records are counted, not kept.
const MAX_HELD: usize = 4 << 20;

/// What the console appenders said, per stream.
#[derive(Debug, Default)]
struct Held {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Records past `MAX_HELD`.
    dropped: u64,
}

/// What the console appenders of one `exec` said, held until its run
/// ends: made by `exec`, handed to the loader in [`Purpose::Exec`], and
/// released by `exec`.
///
/// [`Purpose::Exec`]: super::Purpose::Exec
#[derive(Clone, Debug, Default)]
pub struct HeldOutput(Arc<Mutex<Held>>);

/// A console appender whose records wait in memory.
#[derive(Debug)]
struct HeldConsole {
    to_stdout: bool,
    encoder: Box<dyn Encode>,
    held: HeldOutput,
}

impl Append for HeldConsole {
    fn append(&self, record: &Record) -> anyhow::Result<()> {
        let mut text = SimpleWriter(Vec::new());
        self.encoder.encode(&mut text, record)?;
        let mut held = self.held.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = &mut *held;
        let out = if self.to_stdout {
            &mut held.stdout
        } else {
            &mut held.stderr
        };
        if out.len() + text.0.len() > MAX_HELD {
            held.dropped += 1;
        } else {
            out.extend_from_slice(&text.0);
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// An appender that writes nothing: a `tty_only` console off a terminal,
/// a file appender `check` does not make.
#[derive(Debug)]
pub(super) struct Silent;

impl Append for Silent {
    fn append(&self, _: &Record) -> anyhow::Result<()> {
        Ok(())
    }

    fn flush(&self) {}
}

/// log4rs's console settings.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    encoder: Option<EncoderConfig>,
    #[serde(default)]
    tty_only: Option<bool>,
}

#[derive(serde::Deserialize)]
enum Target {
    #[serde(rename = "stdout")]
    Stdout,
    #[serde(rename = "stderr")]
    Stderr,
}

/// Builds held consoles from a file's `kind: console` appenders, all
/// holding into one [`HeldOutput`].
pub struct HeldConsoleDeserializer(pub HeldOutput);

impl Deserialize for HeldConsoleDeserializer {
    type Trait = dyn Append;
    type Config = ConsoleConfig;

    fn deserialize(
        &self,
        config: ConsoleConfig,
        deserializers: &Deserializers,
    ) -> anyhow::Result<Box<dyn Append>> {
        let encoder: Box<dyn Encode> = match config.encoder {
            Some(encoder) => deserializers.deserialize(&encoder.kind, encoder.config)?,
            None => Box::<PatternEncoder>::default(),
        };
        // As log4rs's own console: stdout unless told otherwise.
        let to_stdout = !matches!(config.target, Some(Target::Stderr));
        let terminal = if to_stdout {
            std::io::stdout().is_terminal()
        } else {
            std::io::stderr().is_terminal()
        };
        if config.tty_only == Some(true) && !terminal {
            return Ok(Box::new(Silent));
        }
        Ok(Box::new(HeldConsole {
            to_stdout,
            encoder,
            held: self.0.clone(),
        }))
    }
}

impl HeldOutput {
    /// Ends the holding: prints what the console appenders said when
    /// `print`, drops it otherwise.
    pub fn release(&self, print: bool) {
        let held = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        if !print {
            return;
        }
        // A closed pipe loses only the text it would have carried.
        let _ = std::io::stderr().write_all(&held.stderr);
        if held.dropped > 0 {
            eprintln!(
                "({} more console record(s) past {} MiB not shown; the log files and the capture file have them)",
                held.dropped,
                MAX_HELD >> 20
            );
        }
        let _ = std::io::stdout().write_all(&held.stdout);
        let _ = std::io::stdout().flush();
    }
}
