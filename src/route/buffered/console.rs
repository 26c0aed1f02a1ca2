//! log4rs's `console`, written through a buffer when nobody watches it.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::bail;
use log4rs::config::Deserializers;
use serde_value::Value;

use super::template::{Parts, Template, key};
use super::{BUFFER, Buffered, JobFile, Open};

/// What a `console` appender becomes.
pub enum Console {
    /// Off a terminal: written through a buffer.
    Buffered(Buffered),
    /// `tty_only` off a terminal: nothing.
    Silent,
    /// On a terminal (someone is watching: log4rs's own flushes every
    /// record and colours `{h(…)}`), or a stream that cannot be
    /// duplicated (closed): log4rs's own.
    Stock,
}

impl Buffered {
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
        Buffered::with(name, template, Open::One(file)).map(Console::Buffered)
    }
}
