//! The writing side of the journal: one file per process, entries written
//! whole or taken back, and kept in memory while the disk refuses them.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{JournalFile, ROTATE_AT};
use crate::store::StoreError;

#[derive(Debug)]
pub(super) struct Writer {
    pub(super) name: JournalFile,
    pub(super) file: Option<File>,
    /// The file's length: whole lines only.
    written: u64,
    /// Entries not written yet (the disk was full), oldest first.
    pub(super) pending: Vec<u8>,
    /// A failed write left part of a line that could not be cut off.
    torn: bool,
}

/// Cuts a part-written line back off `file`, whose whole lines end at
/// `written`. If the file cannot be cut, the part stays: `written` follows
/// the file's real length, and `torn` has the next write start a fresh line.
fn cut_back(file: &File, written: &mut u64, torn: &mut bool) {
    if file.set_len(*written).is_err() {
        *written = file.metadata().map_or(*written, |m| m.len());
        *torn = true;
    }
}

/// At most this much waits in memory for a full disk to take it: hours of
/// a busy daemon's runs. Past it an entry is refused, and says so.
pub(super) const PENDING_MAX: usize = 64 << 20;

impl Writer {
    /// This process's writer for the journal in `dir`.
    pub(super) fn of<'w>(
        writers: &'w mut Option<HashMap<PathBuf, Writer>>,
        dir: &Path,
    ) -> &'w mut Writer {
        // Per append: no path built unless
        // the file is opened or a write fails.
        let by_dir = writers.get_or_insert_with(HashMap::new);
        if !by_dir.contains_key(dir) {
            let writer = Writer {
                name: JournalFile::of_this_process(),
                file: None,
                written: 0,
                pending: Vec::new(),
                torn: false,
            };
            by_dir.insert(dir.to_path_buf(), writer);
        }
        by_dir.get_mut(dir).expect("just made if missing")
    }

    /// Writes the waiting entries in one write of whole lines. A write cut
    /// short (a full disk) is cut back off the file, so no torn line stays
    /// for the next entry to be glued onto; if even that fails, the next
    /// write starts on a fresh line, and a folder skips the torn one.
    pub(super) fn write_pending(&mut self, dir: &Path) -> Result<(), StoreError> {
        let name = self.name;
        let fail = |source| StoreError::Waiting {
            path: name.path(dir),
            source,
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = crate::state::open_append(&name.path(dir)).map_err(fail)?;
                self.written = file.metadata().map_err(fail)?.len();
                self.file.insert(file)
            }
        };
        if std::mem::take(&mut self.torn) {
            self.pending.insert(0, b'\n');
        }
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break Ok(());
            }
            match file.write(&self.pending[done..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // The whole lines that went in are written; part of one is taken
        // back out (a folder reads whole lines only, so none has read it).
        let whole = memchr::memrchr(b'\n', &self.pending[..done]).map_or(0, |end| end + 1);
        self.written += whole as u64;
        self.pending.drain(..whole);
        if let Err(e) = result {
            if done > whole {
                cut_back(file, &mut self.written, &mut self.torn);
            }
            return Err(fail(e));
        }
        if self.written >= ROTATE_AT {
            // Done with once `closed` is in; if the disk refuses even that,
            // the next write tries again.
            let closed = b"{\"entry\":\"closed\"}\n";
            if file.write_all(closed).is_ok() {
                self.file = None;
                self.written = 0;
                self.name.seq += 1;
            } else {
                cut_back(file, &mut self.written, &mut self.torn);
            }
        }
        Ok(())
    }
}
