//! The tables `status`, `history` and `flow history` print. On a terminal
//! they fit its width and show statuses in colour (unless `NO_COLOR` is
//! set or the terminal is `dumb`); piped, every cell is whole and plain,
//! for `grep` and `awk`.
//!
//! To fit, columns give room in the order the table sets: free text (a
//! summary) is cut with `…`, columns one can do without (the trigger, the
//! duration) are left out, and names are cut last, where the names shown
//! still differ.

use std::io::IsTerminal;

/// How a column gives room when the table is too wide.
#[derive(Clone, Copy)]
enum Give {
    /// Cut its text, to no fewer than this many characters.
    Shrink(usize),
    /// Leave it out.
    Drop,
}

/// How a column lines up, and how it gives room.
#[derive(Clone, Copy)]
pub(super) struct Column {
    head: &'static str,
    right: bool,
    /// When it gives room (the lowest first), and how; `None`: never.
    give: Option<(u8, Give)>,
    /// Names: cut where the names shown stay different.
    names: bool,
    status: bool,
}

impl Column {
    /// A column that keeps its width, left-aligned.
    pub(super) const fn left(head: &'static str) -> Column {
        Column {
            head,
            right: false,
            give: None,
            names: false,
            status: false,
        }
    }

    /// A column that keeps its width, right-aligned.
    pub(super) const fn right(head: &'static str) -> Column {
        Column {
            right: true,
            ..Column::left(head)
        }
    }

    /// A column of statuses, coloured on a terminal.
    pub(super) const fn status(head: &'static str) -> Column {
        Column {
            status: true,
            ..Column::left(head)
        }
    }

    /// A column of names (jobs, flows): when cut, cut at the end, in the
    /// middle or at the start, whichever keeps the names apart.
    pub(super) const fn names(head: &'static str) -> Column {
        Column {
            names: true,
            ..Column::left(head)
        }
    }

    /// A column cut to no fewer than `min` characters, at turn `turn`.
    pub(super) const fn shrinks(self, min: usize, turn: u8) -> Column {
        Column {
            give: Some((turn, Give::Shrink(min))),
            ..self
        }
    }

    /// A column left out, at turn `turn`.
    pub(super) const fn drops(self, turn: u8) -> Column {
        Column {
            give: Some((turn, Give::Drop)),
            ..self
        }
    }
}

/// Where the table goes, and so how it looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Screen {
    /// The terminal's width; `None` when stdout is not a terminal.
    pub width: Option<usize>,
    pub colour: bool,
}

impl Screen {
    /// Stdout as it is: a terminal's width (`COLUMNS` when set, else what
    /// the terminal says), colour unless `NO_COLOR` or `TERM=dumb`.
    pub(super) fn stdout() -> Screen {
        if !std::io::stdout().is_terminal() {
            return Screen {
                width: None,
                colour: false,
            };
        }
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&c: &usize| c > 0)
            .or_else(terminal_width);
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        Screen { width, colour }
    }
}

/// The width of the terminal on stdout, as the kernel knows it.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct it is given,
    // which lives for the call.
    let done = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (done == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The colour a status is shown in: an SGR code.
fn colour_of(status: &str) -> Option<&'static str> {
    Some(match status {
        "success" => "32",
        "warning" | "held" | "orphaned" => "33",
        "failed" | "lost" | "aborted" => "31",
        "running" => "36",
        "missed" | "skipped" => "2",
        _ => return None,
    })
}

/// Characters as a terminal counts them, near enough: one a char.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// A cell as it may be shown: control characters (an escape sequence in a
/// job's summary, a tab) become `?`, so a cell can neither steer the
/// terminal nor break the columns.
fn printable(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().any(char::is_control) {
        true => cell
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        false => cell.into(),
    }
}

/// The rows as aligned columns, two spaces apart, fitted to `screen`.
pub(super) fn render(columns: &[Column], rows: &[Vec<String>], screen: Screen) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| printable(cell).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| width(&r[i]))
                .chain([width(c.head)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let shown = match screen.width {
        Some(room) => fit(columns, &mut widths, room),
        None => vec![true; columns.len()],
    };
    let cuts: Vec<Cut> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c.names {
            true => Cut::keeping_apart(rows.iter().map(|r| r[i].as_str()), widths[i]),
            false => Cut::End,
        })
        .collect();
    let last_shown = shown.iter().rposition(|&s| s).unwrap_or(0);
    let mut out = String::new();
    let heads: Vec<String> = columns.iter().map(|c| c.head.to_string()).collect();
    for row in std::iter::once(&heads).chain(rows) {
        let head = std::ptr::eq(row, &heads);
        let mut line = String::new();
        let visible = columns
            .iter()
            .zip(row)
            .enumerate()
            .filter(|(i, _)| shown[*i]);
        for (n, (i, (column, cell))) in visible.enumerate() {
            if n > 0 {
                line.push_str("  ");
            }
            let text = cuts[i].apply(cell, widths[i]);
            let pad = " ".repeat(widths[i] - width(&text));
            let colour = (screen.colour && column.status && !head)
                .then(|| colour_of(cell))
                .flatten();
            let text = match colour {
                Some(code) => format!("\x1b[{code}m{text}\x1b[0m"),
                None => text,
            };
            match (column.right, i == last_shown) {
                (true, _) => line.push_str(&(pad + &text)),
                (false, true) => line.push_str(&text),
                (false, false) => line.push_str(&(text + &pad)),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Takes room from the columns in their turns until the table is `room`
/// wide or none can give more, then hands back to the cut columns (the
/// last cut first) what leaving a later column out freed. Which columns
/// stay shown.
fn fit(columns: &[Column], widths: &mut [usize], room: usize) -> Vec<bool> {
    let natural = widths.to_vec();
    let mut shown = vec![true; columns.len()];
    let total = |widths: &[usize], shown: &[bool]| {
        let kept = shown.iter().filter(|s| **s).count();
        let sum: usize = widths
            .iter()
            .zip(shown)
            .filter(|(_, s)| **s)
            .map(|(w, _)| w)
            .sum();
        sum + 2 * kept.saturating_sub(1)
    };
    let mut turns: Vec<(u8, usize, Give)> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.give.map(|(turn, give)| (turn, i, give)))
        .collect();
    turns.sort_by_key(|&(turn, i, _)| (turn, i));
    let mut cut = Vec::new();
    for (_, i, give) in turns {
        let over = total(widths, &shown).saturating_sub(room);
        if over == 0 {
            break;
        }
        match give {
            Give::Shrink(min) => {
                widths[i] -= over.min(widths[i].saturating_sub(min.max(width(columns[i].head))));
                cut.push(i);
            }
            Give::Drop => shown[i] = false,
        }
    }
    for i in cut.into_iter().rev() {
        let spare = room.saturating_sub(total(widths, &shown));
        widths[i] += spare.min(natural[i] - widths[i]);
    }
    shown
}

/// Where a text too long for its column loses characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    End,
    Middle,
    Start,
}

impl Cut {
    /// The first of end, middle and start that leaves the different
    /// `names` different in `room` characters (the end when none does).
    fn keeping_apart<'a>(names: impl Iterator<Item = &'a str> + Clone, room: usize) -> Cut {
        let different = |cut: Option<Cut>| {
            let mut seen: Vec<String> = names
                .clone()
                .map(|n| cut.map_or_else(|| n.to_string(), |cut| cut.apply(n, room)))
                .collect();
            seen.sort();
            seen.dedup();
            seen.len()
        };
        let whole = different(None);
        [Cut::End, Cut::Middle, Cut::Start]
            .into_iter()
            .find(|&cut| different(Some(cut)) == whole)
            .unwrap_or(Cut::End)
    }

    /// `text` in at most `room` characters, `…` where it was cut.
    fn apply(self, text: &str, room: usize) -> String {
        let length = width(text);
        if length <= room {
            return text.to_string();
        }
        if room == 0 {
            return String::new();
        }
        let (head, tail) = match self {
            Cut::End => (room - 1, 0),
            Cut::Middle => ((room - 1).div_ceil(2), (room - 1) / 2),
            Cut::Start => (0, room - 1),
        };
        let mut kept: String = text.chars().take(head).collect();
        kept.push('…');
        kept.extend(text.chars().skip(length - tail));
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::right("ID"),
        Column::names("JOB").shrinks(4, 1),
        Column::status("STATUS"),
    ];

    fn rows(names: [&str; 2]) -> Vec<Vec<String>> {
        vec![
            vec!["7".into(), names[0].into(), "failed".into()],
            vec!["12".into(), names[1].into(), "success".into()],
        ]
    }

    fn on(width: usize) -> Screen {
        Screen {
            width: Some(width),
            colour: false,
        }
    }

    #[test]
    fn piped_cells_are_whole_and_plain() {
        let piped = Screen {
            width: None,
            colour: false,
        };
        let text = render(&COLUMNS, &rows(["nightly-import", "backup"]), piped);
        assert_eq!(
            text,
            "ID  JOB             STATUS\n 7  nightly-import  failed\n12  backup          success\n"
        );
    }

    #[test]
    fn names_are_cut_where_they_stay_apart() {
        let text = render(
            &COLUMNS,
            &rows(["import-nightly", "export-nightly"]),
            on(20),
        );
        assert!(text.lines().all(|l| width(l) <= 20), "{text}");
        assert!(text.contains(" 7  import…  failed\n"), "{text}");
        let text = render(
            &COLUMNS,
            &rows(["nightly-import", "nightly-export"]),
            on(20),
        );
        assert!(text.contains(" 7  …import  failed\n"), "{text}");
        let text = render(&COLUMNS, &rows(["db-nightly-a", "db-nightly-b"]), on(20));
        assert!(text.contains(" 7  db-…y-a  failed\n"), "{text}");
    }

    #[test]
    fn a_column_that_may_go_goes_in_its_turn_and_gives_room_back() {
        let columns = [
            Column::right("ID").drops(1),
            Column::left("SUMMARY").shrinks(4, 0),
            Column::status("STATUS"),
        ];
        let rows = rows(["a long summary", "short"]);
        // Cut to 7, the summary is not enough: the id goes, and the
        // summary gets back the one character that freed beyond the need.
        let text = render(&columns, &rows, on(17));
        assert_eq!(
            text,
            "SUMMARY   STATUS\na long …  failed\nshort     success\n"
        );
        let text = render(&columns, &rows, on(23));
        assert_eq!(
            text.lines().nth(1),
            Some(" 7  a long su…  failed"),
            "no need to go: {text}"
        );
    }

    #[test]
    fn control_characters_neither_steer_the_terminal_nor_break_columns() {
        let piped = Screen {
            width: None,
            colour: false,
        };
        let text = render(&COLUMNS, &rows(["evil\x1b[2Jjob", "tab\there"]), piped);
        assert!(!text.contains('\x1b') && !text.contains('\t'), "{text:?}");
        assert!(text.contains(" 7  evil?[2Jjob  failed\n"), "{text}");
    }

    #[test]
    fn statuses_are_coloured_on_a_terminal() {
        let colour = Screen {
            width: Some(80),
            colour: true,
        };
        let text = render(&COLUMNS, &rows(["nightly-import", "backup"]), colour);
        assert!(text.contains("\x1b[31mfailed\x1b[0m"), "{text}");
        assert!(text.contains("\x1b[32msuccess\x1b[0m"), "{text}");
        assert!(text.starts_with("ID  JOB"), "the head is plain: {text}");
    }
}
