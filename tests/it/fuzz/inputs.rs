//! The fuzz tests' inputs: the repository's own files as seeds, their
//! mutations, and arbitrary text.

use crate::helper::repo;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::path::{Path, PathBuf};

/// Characters that mean something to YAML, JSON, XML, cron, crontab, the
/// protocol or a log pattern, and a few that are more than one byte.
pub(super) const SYNTAX: &str = "{}[]():,\"'\n\r\t -#*/&<>%@=!|?\\$;.09LWé€\u{1F319}";

pub(super) fn syntax() -> Vec<char> {
    SYNTAX.chars().collect()
}

/// An input for a parser: mostly a mutated seed, sometimes anything.
pub(super) fn inputs(seeds: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![4 => mutated(seeds), 1 => arbitrary_text()]
}

/// Text with no relation to any format.
pub(super) fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..300).prop_map(|chars| chars.into_iter().collect::<String>()),
        vec(select(syntax()), 0..300).prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
}

/// One of `seeds` with one to seven edits applied in turn.
pub(super) fn mutated(seeds: Vec<String>) -> impl Strategy<Value = String> {
    assert!(!seeds.is_empty(), "a property without seeds");
    (select(seeds), vec(edit(), 1..8))
        .prop_map(|(seed, edits)| edits.iter().fold(seed, |text, edit| edit.apply(&text)))
}

/// One change to a text; positions are picked once the text is known.
#[derive(Clone, Debug)]
pub(super) enum Edit {
    /// Removes up to this many bytes (whole characters) from a place.
    Delete(Index, usize),
    /// Puts characters in at a place.
    Insert(Index, String),
    /// Repeats a line after itself.
    DuplicateLine(Index),
    /// Swaps two lines.
    SwapLines(Index, Index),
    /// Cuts the text at a place.
    Truncate(Index),
}

pub(super) fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 1..40usize).prop_map(|(at, len)| Edit::Delete(at, len)),
        4 => (any::<Index>(), vec(select(syntax()), 1..4))
            .prop_map(|(at, chars)| Edit::Insert(at, chars.into_iter().collect())),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

impl Edit {
    fn apply(&self, text: &str) -> String {
        let place = |index: &Index| boundary(text, index.index(text.len() + 1));
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        match self {
            Edit::Delete(start, len) => {
                let start = place(start);
                let end = boundary(text, start + len);
                [&text[..start], &text[end..]].concat()
            }
            Edit::Insert(start, chars) => {
                let start = place(start);
                [&text[..start], chars.as_str(), &text[start..]].concat()
            }
            Edit::DuplicateLine(line) if !lines.is_empty() => {
                let i = line.index(lines.len());
                let repeated = lines[i];
                lines.insert(i, repeated);
                lines.concat()
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                lines.concat()
            }
            Edit::DuplicateLine(_) | Edit::SwapLines(..) => text.to_string(),
            Edit::Truncate(end) => text[..place(end)].to_string(),
        }
    }
}

/// The last character boundary at or before `at`.
pub(super) fn boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// `bytes` cut at the given places, as a pipe or a socket hands them over;
/// no piece is empty.
pub(super) fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut places: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    places.extend([0, bytes.len()]);
    places.sort_unstable();
    places.dedup();
    places.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Cron fields built from the pieces the syntax has, valid or not.
pub(super) fn cron_grammar() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("*".to_string()),
        Just("?".to_string()),
        "[0-9]{1,3}",
        "(jan|FEB|dec|sun|Mon|fri|sat|l|lw|w)",
        "[0-9*]{1,2}-[0-9a-zA-Z]{1,3}",
        "[0-9*]{1,2}/[0-9]{1,3}",
        "[0-9]{1,2}-[0-9]{1,2}/[0-9]{1,2}",
        "[0-9a-z]{1,3}#[0-9]{1,2}",
        "[0-9]{1,2}[lLwW]",
    ];
    let field = vec(part, 1..4).prop_map(|parts| parts.join(","));
    prop_oneof![
        4 => vec(field, 4..8).prop_map(|fields| fields.join(" ")),
        1 => "@[a-zA-Z]{0,10}",
    ]
}

/// A job's output: mutated protocol lines, or any bytes at all.
pub(super) fn outputs() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => inputs(protocol_seeds()).prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..2000),
    ]
}

// Seeds: the repository's own files.

/// A file of the repository, as text.
pub(super) fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("seed `{path}`: {e}"))
}

/// Every file under `dir` (in the repository, at any depth) whose name ends
/// in `suffix`, in path order.
pub(super) fn files_under(dir: &str, suffix: &str) -> Vec<String> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                walk(&path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&repo().join(dir), suffix, &mut paths);
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// The blocks of a Markdown file fenced as ```` ```lang ````.
pub(super) fn fenced(path: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in read(path).lines() {
        match open.take() {
            Some(block) if line.starts_with("```") => blocks.push(block),
            Some(mut block) => {
                block.push_str(line);
                block.push('\n');
                open = Some(block);
            }
            None if line.trim_end() == fence => open = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// The `backticked` snippets of a Markdown file that begin with `prefix`.
pub(super) fn backticked(path: &str, prefix: &str) -> Vec<String> {
    read(path)
        .split('`')
        .filter(|s| s.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

pub(super) fn jobs_files() -> Vec<String> {
    let mut seeds = files_under("examples", "overnight.yaml");
    for doc in [
        "README.md",
        "docs/jobs-file.md",
        "docs/handlers.md",
        "docs/triggers.md",
    ] {
        seeds.extend(fenced(doc, "yaml"));
    }
    seeds
}

pub(super) fn log4rs_files() -> Vec<String> {
    let mut seeds = files_under("log4rs-configs", ".yaml");
    seeds.extend(files_under("examples", "log4rs.yaml"));
    seeds
}

/// The patterns of the shipped log4rs files' encoders and rollers.
pub(super) fn patterns() -> Vec<String> {
    log4rs_files()
        .iter()
        .flat_map(|file| file.split("pattern: \"").skip(1))
        .filter_map(|rest| rest.split_once('"').map(|(pattern, _)| pattern.to_string()))
        .collect()
}

/// The day-of-month and day-of-week extensions of docs/jobs-file.md, which
/// no shipped file uses.
pub(super) const CRON_EXTENSIONS: &[&str] = &[
    "0 0 LW * FRI#2",
    "0 0 15w * fril",
    "0 0 L * 5L",
    "0 30 2 * * *",
    "0 0 * JAN-mar/2 Sun,7",
];

/// The schedules of the shipped jobs files and of the test crontab.
pub(super) fn schedules() -> Vec<String> {
    let mut seeds: Vec<String> = CRON_EXTENSIONS.iter().map(|s| s.to_string()).collect();
    for file in jobs_files() {
        for line in file.lines() {
            if let Some(value) = line.trim().strip_prefix("schedule:") {
                let value = value.split(" #").next().unwrap_or_default();
                seeds.push(value.trim().trim_matches('"').to_string());
            }
        }
    }
    for line in crate::import::CRONTAB.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&first) if first.starts_with('@') => seeds.push(first.to_string()),
            Some(&first) if first.starts_with(|c: char| c.is_ascii_digit() || c == '*') => {
                seeds.push(words[..words.len().min(5)].join(" "));
            }
            _ => {}
        }
    }
    seeds
}

pub(super) fn crontabs() -> Vec<String> {
    let mut seeds = vec![crate::import::CRONTAB.to_string()];
    seeds.extend(fenced("README.md", "cron"));
    seeds
}

/// The protocol and Cronicle lines of the README and the report format,
/// each alone and all of them as one output.
pub(super) fn protocol_seeds() -> Vec<String> {
    let mut lines = backticked("README.md", "::");
    lines.extend(backticked("docs/report-format.md", "::"));
    lines.extend(backticked("docs/report-format.md", "{\""));
    let mut seeds = lines.clone();
    seeds.push(lines.join("\n"));
    seeds
}

pub(super) fn json_bodies() -> Vec<String> {
    let mut seeds = fenced("docs/report-format.md", "json");
    seeds.push(read("docs/report.schema.json"));
    seeds
}

pub(super) fn xml_bodies() -> Vec<String> {
    let mut seeds = fenced("docs/report-format.md", "xml");
    seeds.push(read("docs/report.dtd"));
    seeds
}
