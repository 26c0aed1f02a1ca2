//! Run ids, handed out from a small file rather than by SQLite.
//!
//! `<state_dir>/last-run-id` holds the last id given, as decimal text of
//! a fixed width.
//! Taking the next one is a `flock`, a read and a write: no database is
//! opened, so `overnight exec` can name its run (capture file, log lines,
//! `$OVERNIGHT_RUN_ID`) before anything else, and the daemon and any
//! number of wrapped commands share one sequence. Every store opening
//! raises the file to the largest id the history holds, so a lost or stale
//! file can never hand out an id twice once the store has been seen.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// The file's name in the state directory.
pub(super) const FILE: &str = "last-run-id";

/// The digits an id is written with, zero-padded: any i64 fits.
const WIDTH: usize = 19;

/// The sequence of run ids of one state directory.
#[derive(Debug)]
pub struct RunIds {
    /// Threads of this process take turns here; processes, by `flock`.
    file: Mutex<File>,
}

impl RunIds {
    /// Opens (creating if need be) the sequence in `state_dir`.
    pub fn open(state_dir: &Path) -> io::Result<RunIds> {
        let file = crate::state::open_rw(&state_dir.join(FILE))?;
        Ok(RunIds {
            file: Mutex::new(file),
        })
    }

    /// Whether the sequence has been started (by a store opening); until
    /// then an id handed out could clash with the history's.
    pub fn started(&self) -> io::Result<bool> {
        self.locked(false, |last| Ok((last.is_some(), None)))
    }

    /// The next id.
    pub fn next(&self) -> io::Result<i64> {
        self.locked(false, |last| {
            let next = last.unwrap_or(0) + 1;
            Ok((next, Some(next)))
        })
    }

    /// Makes sure no id up to `floor` is handed out again (and mends a
    /// damaged file: `floor` is the largest id the history holds).
    pub fn raise_to(&self, floor: i64) -> io::Result<()> {
        self.locked(true, |last| {
            let raised = last.is_none_or(|last| last < floor);
            Ok(((), raised.then_some(floor.max(last.unwrap_or(0)))))
        })
    }

    /// Runs `f` on the last id (`None` for an empty file, or a damaged one
    /// when `mend`) under the lock, writing the id it returns, if any.
    fn locked<T>(
        &self,
        mend: bool,
        f: impl FnOnce(Option<i64>) -> io::Result<(T, Option<i64>)>,
    ) -> io::Result<T> {
        let file = self.file.lock().expect("run ids");
        let _flock = Flock::exclusive(&file)?;
        let mut buf = [0u8; 24];
        let n = file.read_at(&mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("").trim();
        let last = match text.parse::<i64>() {
            Ok(last) => Some(last),
            Err(_) if text.is_empty() || mend => None,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "`{FILE}` holds `{text}`, not a run id: remove it and open the history (`overnight history`) to rebuild it"
                    ),
                ));
            }
        };
        let (out, write) = f(last)?;
        if let Some(id) = write {
            // Always as wide, so that a write never needs another block: a
            // full disk does not stop the ids.
            let text = format!("{id:0WIDTH$}\n");
            file.write_all_at(text.as_bytes(), 0)?;
            if text.len() < n {
                file.set_len(text.len() as u64)?;
            }
        }
        Ok(out)
    }
}

/// An exclusive `flock`, released when dropped.
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Flock<'a>> {
        file.lock()?;
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_on_across_openings_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let ids = RunIds::open(dir.path()).unwrap();
        assert!(!ids.started().unwrap());
        ids.raise_to(0).unwrap();
        assert!(ids.started().unwrap());
        assert_eq!(ids.next().unwrap(), 1);
        assert_eq!(ids.next().unwrap(), 2);
        let again = RunIds::open(dir.path()).unwrap();
        assert_eq!(again.next().unwrap(), 3);
        again.raise_to(2).unwrap();
        assert_eq!(ids.next().unwrap(), 4);
        again.raise_to(99).unwrap();
        assert_eq!(ids.next().unwrap(), 100);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "0000000000000000100\n"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "banana").unwrap();
        let e = RunIds::open(dir.path()).unwrap().next().unwrap_err();
        assert!(e.to_string().contains("remove it"), "{e}");
        // The store's opening mends it.
        let ids = RunIds::open(dir.path()).unwrap();
        ids.raise_to(7).unwrap();
        assert_eq!(ids.next().unwrap(), 8);
    }
}
