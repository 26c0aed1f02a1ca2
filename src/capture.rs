//! The capture file: every line of a run with its time and stream.
//!
//! One file per run, `<state_dir>/runs/<job>/<run_id>.log`, one line per
//! output line: `TIME<TAB>out|err<TAB>TEXT`. It is what `overnight logs`
//! prints and follows; it is written as the run goes and flushed after each
//! batch, so a follower sees lines as soon as the job prints them. It is
//! made at the first line: a run that prints nothing leaves no file (and
//! costs no inode — many nightly jobs are silent). A capture file that
//! cannot be written never stops the run: the first error is kept and shown
//! in the report's log section by the caller. A run's file holds at most
//! its job's `capture_max` bytes: lines past it are counted, not kept, and
//! a closing line says how many went (the log targets still get them all).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::event::{RunEvent, Stream};

/// The length of a line's time: `2026-11-30T01:02:03.456789Z`.
const STAMP_LEN: usize = 27;

/// Where a run's capture file lives.
pub fn path_for(state_dir: &Path, job: &str, run_id: i64) -> PathBuf {
    state_dir
        .join("runs")
        .join(job)
        .join(format!("{run_id}.log"))
}

/// Writes one run's capture file.
#[derive(Debug)]
pub struct Capture {
    path: PathBuf,
    attempt: u32,
    /// At most this many bytes a run.
    max: u64,
    /// Bytes in the file (all attempts').
    written: u64,
    /// Lines past `max`, and their bytes.
    cut: (u64, u64),
    /// Made at the first line.
    out: Option<BufWriter<File>>,
    error: Option<io::Error>,
    stamp_at: Option<DateTime<Utc>>,
    stamp: String,
}

impl Capture {
    /// The file of a run's first attempt.
    pub fn create(path: &Path) -> Capture {
        Self::open(path, 1, crate::config::DEFAULT_CAPTURE_MAX)
    }

    /// The file for attempt `attempt`, made (with its folder) at its first
    /// line: the first attempt's replaces any old file, a later one's
    /// lines follow a line that marks where they begin. It holds at most
    /// `max` bytes.
    pub fn open(path: &Path, attempt: u32, max: u64) -> Capture {
        Capture {
            path: path.to_path_buf(),
            attempt,
            max,
            written: 0,
            cut: (0, 0),
            out: None,
            error: None,
            stamp_at: None,
            stamp: String::new(),
        }
    }

    /// The open file, made now if need be; `None` once writing failed.
    fn out(&mut self) -> Option<&mut BufWriter<File>> {
        if self.out.is_none() && self.error.is_none() {
            let attempt = self.attempt;
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), crate::state::create_dir)
                .and_then(|()| match attempt {
                    1 => crate::state::create(&self.path),
                    _ => crate::state::open_append(&self.path),
                })
                .map(|f| BufWriter::with_capacity(64 * 1024, f))
                .and_then(|mut out| {
                    if attempt > 1 {
                        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
                        writeln!(out, "{now}\trun\t--- attempt {attempt} ---")?;
                    }
                    Ok(out)
                });
            match opened {
                Ok(out) => {
                    self.written = out.get_ref().metadata().map_or(0, |m| m.len());
                    self.out = Some(out);
                }
                Err(e) => self.error = Some(e),
            }
        }
        self.out.as_mut()
    }

    /// Writes the line events of a batch, then flushes.
    pub fn batch(&mut self, events: &[RunEvent]) {
        if !events.iter().any(|e| matches!(e, RunEvent::Line(_))) || self.out().is_none() {
            return;
        }
        let Capture {
            out: Some(out),
            stamp_at,
            stamp,
            max,
            written,
            cut,
            ..
        } = self
        else {
            return;
        };
        let mut result = Ok(());
        for event in events {
            let RunEvent::Line(line) = event else {
                continue;
            };
            // Time, stream, text, newline (a cut note aside).
            let size = (STAMP_LEN + 5 + line.text.len() + 1) as u64;
            if *written + size > *max || cut.0 > 0 {
                cut.0 += 1;
                cut.1 += line.text.len() as u64 + 1;
                continue;
            }
            *written += size;
            // Lines read together share a time: format it once.
            if *stamp_at != Some(line.at) {
                *stamp_at = Some(line.at);
                *stamp = line.at.to_rfc3339_opts(SecondsFormat::Micros, true);
            }
            let stream = match line.stream {
                Stream::Stdout => "\tout\t",
                Stream::Stderr => "\terr\t",
            };
            // Plain writes: millions of lines a second pass here.
            result = out
                .write_all(stamp.as_bytes())
                .and_then(|()| out.write_all(stream.as_bytes()))
                .and_then(|()| out.write_all(line.text.as_bytes()))
                .and_then(|()| {
                    if line.cut > 0 {
                        write!(out, " [cut: {} bytes]", line.cut)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| out.write_all(b"\n"));
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            self.error = Some(e);
            self.out = None;
        }
    }

    /// The first write error, if the file could not be kept.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Closes the attempt's part of the file: if lines were cut at
    /// `capture_max`, a last line says how many; that note is returned for
    /// the report.
    pub fn finish(&mut self) -> Option<String> {
        let (lines, bytes) = self.cut;
        if lines == 0 {
            return None;
        }
        let note = format!(
            "capture_max ({} bytes) reached: {lines} later line(s), {bytes} byte(s), not kept in the capture file; the log targets got them all",
            self.max
        );
        if let Some(out) = self.out.as_mut() {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
            let written = writeln!(out, "{now}\trun\t[{note}]").and_then(|()| out.flush());
            if let Err(e) = written {
                self.error.get_or_insert(e);
            }
        }
        Some(note)
    }
}

/// The texts of the lines in the last 64 KiB of a capture file, oldest
/// first (empty when there is no file): enough for the last lines of a run
/// or its latest progress, without reading a file of gigabytes.
pub fn tail(path: &Path) -> Vec<String> {
    use std::os::unix::fs::FileExt;
    let read = || -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let start = tail_start(&file, u64::MAX, 64 * 1024)?;
        let len = file.metadata()?.len();
        let mut bytes = vec![0; (len - start) as usize];
        file.read_exact_at(&mut bytes, start)?;
        Ok(bytes)
    };
    let bytes = read().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| parse_line(l).text.into_owned())
        .collect()
}

/// Where the last `lines` lines of `file` start, looking back at most
/// `within` bytes from its end; with fewer lines than that in reach, where
/// the first whole line in reach starts. Always a line's start (or the end).
pub fn tail_start(file: &File, lines: u64, within: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if lines == 0 {
        return Ok(len);
    }
    let floor = len.saturating_sub(within);
    let (mut end, mut seen, mut earliest) = (len, 0, len);
    let mut chunk = vec![0u8; (64 * 1024).min(len - floor) as usize];
    while end > floor {
        let start = end.saturating_sub(chunk.len() as u64).max(floor);
        let piece = &mut chunk[..(end - start) as usize];
        file.read_exact_at(piece, start)?;
        for i in memchr::memrchr_iter(b'\n', piece) {
            let at = start + i as u64 + 1;
            earliest = at;
            // The newline that ends the file ends the last line.
            if at == len {
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(at);
            }
        }
        end = start;
    }
    if floor == 0 {
        return Ok(0);
    }
    // The floor starts a line when the byte before it ends one.
    let mut before = [0u8];
    file.read_exact_at(&mut before, floor - 1)?;
    Ok(if before[0] == b'\n' { floor } else { earliest })
}

/// One line of a capture file, split into its parts; as the API sends it
/// (borrowed from the file) and as a client reads it back.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapturedLine<'a> {
    /// The RFC 3339 time it was read.
    #[serde(borrow)]
    pub at: Cow<'a, str>,
    /// `out` or `err`.
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    /// The text as printed.
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// Splits a capture line; a line not in the format is all text.
pub fn parse_line(line: &str) -> CapturedLine<'_> {
    let mut parts = line.splitn(3, '\t');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(at), Some(stream), Some(text)) => CapturedLine {
            at: at.into(),
            stream: stream.into(),
            text: text.into(),
        },
        _ => CapturedLine {
            at: "".into(),
            stream: "".into(),
            text: line.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Line;

    /// The last lines are found from the end, whole; asking for more than
    /// there are starts at the top, or at the first whole line in reach.
    #[test]
    fn tail_starts_at_a_lines_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture");
        let start = |lines, within| tail_start(&File::open(&path).unwrap(), lines, within).unwrap();
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(
            [start(1, 100), start(2, 100), start(3, 100), start(9, 100)],
            [8, 4, 0, 0]
        );
        assert_eq!(start(0, 100), 14, "no line: the end");
        // In reach: "o\nthree\n" (mid-line), "three\n" (a line's start).
        assert_eq!([start(9, 8), start(9, 6)], [8, 8]);
        std::fs::write(&path, "a very long line with no end in reach\n").unwrap();
        assert_eq!(start(9, 5), 38, "nothing whole in reach: the end");
        let long: String = (0..200_000).map(|n| format!("line {n}\n")).collect();
        std::fs::write(&path, &long).unwrap();
        let from = start(2, 1 << 20) as usize;
        assert_eq!(&long[from..], "line 199998\nline 199999\n");
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), "demo", 7);
        let mut capture = Capture::create(&path);
        let line = |text: &str, stream| {
            RunEvent::Line(Line {
                at: DateTime::UNIX_EPOCH,
                stream,
                text: text.into(),
                cut: 0,
                protocol: false,
            })
        };
        capture.batch(&[
            line("hello\tworld", Stream::Stdout),
            line("oops", Stream::Stderr),
        ]);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().map(parse_line).collect();
        assert_eq!(lines[0].text, "hello\tworld");
        assert_eq!(lines[1].stream, "err");
        assert_eq!(lines[1].at, "1970-01-01T00:00:00.000000Z");
    }
}
