//! `overnight man [DIR]`: the manual pages, written as a man directory
//! holds them: `man1/overnight.1` and a page for every subcommand
//! (`overnight-run.1`, `overnight-flow-start.1`), from the same definitions
//! the command line parses with, and `man5/overnight.yaml.5`, made from
//! `docs/jobs-file.md` itself, so the page and the document cannot differ.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, CliError};
use crate::exit::Outcome;

/// The jobs file's reference, as the repository documents it.
const JOBS_FILE_DOC: &str = include_str!("../../docs/jobs-file.md");

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The man directory to write into (its `man1/` and `man5/`):
    /// `/usr/local/share/man` for everyone, `~/.local/share/man` for you.
    /// The pages are readable by all (0644): they are the program's
    /// documentation and hold nothing of yours.
    #[arg(default_value = "man")]
    dir: PathBuf,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let written = write_pages(&args.dir)
        .map_err(|(path, e)| CliError::Usage(format!("cannot write `{}`: {e}", path.display())))?;
    for path in &written {
        println!("{}", path.display());
    }
    println!(
        "{} pages; read one with `man -l {}`, or all with `MANPATH={}: man overnight`",
        written.len(),
        written[0].display(),
        args.dir.display()
    );
    Ok(Outcome::Success)
}

/// The date on every page: the build's, so the pages of one build are the
/// same whenever they are written.
const DATE: &str = env!("OVERNIGHT_BUILD_DATE");

fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut pages = Vec::new();
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    command_pages(&cli, true, &mut pages);
    pages.push((
        PathBuf::from("man5/overnight.yaml.5"),
        roff(
            JOBS_FILE_DOC,
            "overnight.yaml",
            "5",
            "the jobs file of overnight",
        ),
    ));
    let mut written = Vec::new();
    for (name, text) in pages {
        let path = dir.join(name);
        let folder = path.parent().expect("a page is in a section folder");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(folder)
            .map_err(|e| (folder.to_path_buf(), e))?;
        // Never through a symlink; 0644 whatever the umask or the mode of a
        // page written before.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .map_err(|e| (path.clone(), e))?;
        written.push(path);
    }
    Ok(written)
}

/// A page for `command` and one for each of its subcommands, the whole
/// tree down; the top page says where things are and points to the others.
fn command_pages(command: &clap::Command, top: bool, pages: &mut Vec<(PathBuf, String)>) {
    let man = clap_mangen::Man::new(command.clone())
        .date(DATE)
        .source(format!("overnight {}", env!("CARGO_PKG_VERSION")))
        .manual("overnight");
    let mut text = Vec::new();
    man.render(&mut text).expect("a page renders into memory");
    let mut text = String::from_utf8(text).expect("clap_mangen writes UTF-8");
    let name = man.get_filename();
    if top {
        text.push_str(TOP_PAGE_END);
        text.push_str(&see_also(command));
    }
    pages.push((Path::new("man1").join(name), text));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, false, pages);
    }
}

/// The top page's ENVIRONMENT and FILES.
const TOP_PAGE_END: &str = r#".SH ENVIRONMENT
.TP
.B OVERNIGHT_CONFIG
The jobs file when no
.B \-c
is given; else
.I ./overnight.yaml
.TP
.B OVERNIGHT_STATE_DIR
The state directory of runs without a jobs file
.RB ( "overnight exec" );
else
.I $XDG_STATE_HOME/overnight
or
.I ~/.local/state/overnight
.TP
.B NO_COLOR
Tables without colour, even on a terminal
.SH FILES
.TP
.I .overnight/
Beside the jobs file, unless its
.B state_dir
says otherwise: the run history
.RI ( overnight.db ),
its journal, the runs' captured output and the daemon's card; private to
its user (0700, files 0600)
"#;

/// The top page's SEE ALSO: each subcommand's page and the jobs file's.
fn see_also(command: &clap::Command) -> String {
    let mut refs: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!(".BR overnight\\-{} (1),", s.get_name()))
        .collect();
    refs.push(".BR overnight.yaml (5)".to_string());
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join("\n"))
}

/// Markdown as `docs/` writes it, as a man page: `#` the title, `##` and
/// `###` sections, paragraphs, `-` and `1.` lists, tables (a tagged
/// paragraph a row: the first cell the tag, the last the text, the others
/// `Header: cell` before it), fenced code, and `code`, **bold**, *italic*
/// and [links](…) within a line.
pub(super) fn roff(markdown: &str, name: &str, section: &str, what: &str) -> String {
    let mut out = format!(
        ".TH \"{}\" \"{section}\" \"{DATE}\" \"overnight {}\" \"overnight\"\n.SH NAME\n{} \\- {what}\n.SH DESCRIPTION\n",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION"),
        escape(name),
    );
    let mut text: Vec<&str> = Vec::new();
    let mut code = false;
    let mut header: Vec<String> = Vec::new();
    let flush = |out: &mut String, text: &mut Vec<&str>| {
        if !text.is_empty() {
            out.push_str(&line_start(&inline(&text.join(" "))));
            out.push('\n');
            text.clear();
        }
    };
    for line in markdown.lines() {
        if line.starts_with("```") {
            flush(&mut out, &mut text);
            out.push_str(if code {
                ".fi\n.RE\n"
            } else {
                ".PP\n.RS 4\n.nf\n"
            });
            code = !code;
            continue;
        }
        if code {
            out.push_str(&line_start(&escape(line)));
            out.push('\n');
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            flush(&mut out, &mut text);
            header.clear();
        } else if line.starts_with("# ") {
            // The title is the page's NAME.
        } else if let Some(title) = line.strip_prefix("## ") {
            flush(&mut out, &mut text);
            out.push_str(&format!(".SH \"{}\"\n", escape(&title.to_uppercase())));
        } else if let Some(title) = line.strip_prefix("### ") {
            flush(&mut out, &mut text);
            out.push_str(&format!(".SS \"{}\"\n", escape(title)));
        } else if trimmed.starts_with('|') {
            flush(&mut out, &mut text);
            let row = cells(trimmed);
            if row
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
            {
                continue;
            }
            if header.is_empty() {
                header = row;
                continue;
            }
            out.push_str(&table_row(&header, &row));
        } else if let Some(item) = line.strip_prefix("- ") {
            flush(&mut out, &mut text);
            out.push_str(".IP \\(bu 2\n");
            text.push(item);
        } else if let Some((number, item)) = numbered(line) {
            flush(&mut out, &mut text);
            out.push_str(&format!(".IP {number}. 4\n"));
            text.push(item);
        } else {
            if text.is_empty() && !line.starts_with(' ') {
                out.push_str(".PP\n");
            }
            text.push(trimmed);
        }
    }
    flush(&mut out, &mut text);
    out
}

/// `1. text` as (1, text).
fn numbered(line: &str) -> Option<(u32, &str)> {
    let (number, item) = line.split_once(". ")?;
    Some((number.parse().ok()?, item))
}

/// A table row's cells; `\|` is a bar within a cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().expect("one cell").push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("one cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

fn table_row(header: &[String], row: &[String]) -> String {
    let (tag, rest) = row.split_first().expect("a row has cells");
    let Some((text, middle)) = rest.split_last() else {
        return format!(".TP\n{}\n", line_start(&inline(tag)));
    };
    let mut out = format!(".TP\n{}\n", line_start(&inline(tag)));
    for (i, cell) in middle.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
        let head = header.get(i + 1).map_or("", String::as_str);
        out.push_str(&line_start(&format!(
            "{}: {}",
            escape(&capitalised(head)),
            inline(cell)
        )));
        out.push_str("\n.br\n");
    }
    out.push_str(&line_start(&inline(text)));
    out.push('\n');
    out
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// One line of Markdown text as roff: `code` and **bold** bold, *italic*
/// italic, a link its text.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let spans = [("`", "`", "\\fB"), ("**", "**", "\\fB"), ("*", "*", "\\fI")];
        let span = spans.iter().find_map(|(open, close, font)| {
            let inner = rest.strip_prefix(open)?;
            let end = inner.find(close).filter(|&end| end > 0)?;
            Some((&inner[..end], open.len() + end + close.len(), font))
        });
        if let Some((inner, taken, font)) = span {
            out.push_str(font);
            out.push_str(&escape(inner));
            out.push_str("\\fR");
            rest = &rest[taken..];
            continue;
        }
        if let Some((label, taken)) = link(rest) {
            out.push_str(&inline(label));
            rest = &rest[taken..];
            continue;
        }
        out.push_str(&escape(&rest[..c.len_utf8()]));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `[label](target)` at the start of `text`: the label and the length.
fn link(text: &str) -> Option<(&str, usize)> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find("](")?;
    let target_end = inner[close + 2..].find(')')?;
    Some((&inner[..close], 1 + close + 2 + target_end + 1))
}

/// Text with roff's escape character and the characters a page's
/// formatter would take for something else written as themselves.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '…' => out.push_str("..."),
            '—' => out.push_str("\\(em"),
            c => out.push(c),
        }
    }
    out
}

/// A line that would start with a control character (`.` or `'`) starts
/// with a zero-width one first.
fn line_start(line: &str) -> String {
    if line.starts_with(['.', '\'']) {
        format!("\\&{line}")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_roff() {
        let page = roff(
            "# T\n\nText with `co-de`, **bold** and a [link](x.md).\n.starts with a dot\n\n| key | default | meaning |\n|---|---|---|\n| `a` | `1` | one \\| two |\n\n- item\n  more\n\n```\n.x \\ y\n```\n",
            "t",
            "5",
            "a test",
        );
        assert!(
            page.contains(
                "Text with \\fBco\\-de\\fR, \\fBbold\\fR and a link. .starts with a dot\n"
            ),
            "{page}"
        );
        assert!(
            page.contains(".TP\n\\fBa\\fR\nDefault: \\fB1\\fR\n.br\none | two\n"),
            "{page}"
        );
        assert!(page.contains(".IP \\(bu 2\nitem more\n"), "{page}");
        assert!(page.contains(".nf\n\\&.x \\e y\n.fi\n"), "{page}");
    }
}
