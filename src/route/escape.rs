//! Job text made safe for a shared text log: control characters escaped.
//!
//! A job's line goes raw into its capture file, but into the operator's
//! log files it goes beside other jobs' lines: a bare CR or an escape
//! sequence there could make a terminal show a forged line, another job's
//! ERROR say. So `\r` becomes `\r`, ESC becomes `\x1b`, and so on for every
//! control character but the tab.

use std::fmt;

/// Displays its text with control characters (but tabs) escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Almost every line has none: one pass over the bytes, then the
        // text as it is. 0xC2 leads the C1 controls (U+0080–U+009F).
        let plain = self
            .0
            .bytes()
            .all(|b| (b >= 0x20 || b == b'\t') && b != 0x7f && b != 0xc2);
        if plain {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            match c {
                '\t' => f.write_str("\t")?,
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "ok\r2026-11-30 ERROR jobs::errors::backup \u{1b}[31mfailed\u{7f}\u{9b}";
        assert_eq!(
            Escaped(forged).to_string(),
            "ok\\r2026-11-30 ERROR jobs::errors::backup \\x1b[31mfailed\\x7f\\x9b"
        );
        assert_eq!(Escaped("tab\tand é ü ✓").to_string(), "tab\tand é ü ✓");
    }
}
