//! Splitting a job's output into lines, in bounded memory.
//!
//! A line longer than [`MAX_LINE`] keeps its first `MAX_LINE` bytes and
//! counts the rest as cut; nothing else is held, so a job that prints
//! gigabytes without a newline costs the runner one line's worth of memory.

/// The longest line kept whole, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Turns chunks of bytes into lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    cut: u64,
}

impl LineSplitter {
    /// Feeds a chunk; `emit(line, cut_bytes)` is called for each complete
    /// line, without its newline (and without a `\r` before it).
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8], u64)) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let piece = &chunk[..nl];
            if self.partial.is_empty() && self.cut == 0 && piece.len() <= MAX_LINE {
                emit(trim_cr(piece), 0);
            } else {
                self.take(piece);
                emit(trim_cr(&self.partial), self.cut);
                self.partial.clear();
                self.cut = 0;
            }
            chunk = &chunk[nl + 1..];
        }
        self.take(chunk);
    }

    /// Emits what is left when the stream ends without a final newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], u64)) {
        if !self.partial.is_empty() || self.cut > 0 {
            emit(&self.partial, self.cut);
            self.partial.clear();
            self.cut = 0;
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.partial.len();
        let kept = bytes.len().min(room);
        self.partial.extend_from_slice(&bytes[..kept]);
        self.cut += (bytes.len() - kept) as u64;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, u64)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, cut| {
                out.push((String::from_utf8_lossy(l).into_owned(), cut))
            });
        }
        s.finish(|l, cut| out.push((String::from_utf8_lossy(l).into_owned(), cut)));
        out
    }

    #[test]
    fn joins_lines_across_chunks() {
        assert_eq!(
            split(&[b"he", b"llo\nwor", b"ld\r\nlast"]),
            vec![("hello".into(), 0), ("world".into(), 0), ("last".into(), 0)]
        );
    }

    #[test]
    fn cuts_long_lines_and_counts_the_rest() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = split(&[&long[..100], &long[100..], b"\nnext\n"]);
        assert_eq!(out[0].0.len(), MAX_LINE);
        assert_eq!(out[0].1, 10);
        assert_eq!(out[1], ("next".into(), 0));
    }
}
