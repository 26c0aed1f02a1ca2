//! The condition language of a step's `after:` (DESIGN §8).
//!
//! `success(s)`, `warning(s)`, `failed(s)`, `ok(s)` (success or warning),
//! `done(s)` (ran and ended), `skipped(s)` (will not run), joined by `not`,
//! `and`, `or` (in that order of binding) and parentheses; a bare name is
//! `ok(name)`. Evaluation is three-valued: while a step named in a
//! condition has not ended, what depends on it may be unknown, and a step
//! starts only on a true condition and is skipped only on a false one.

use std::fmt;

/// What a test asks of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// It ended `success`.
    Success,
    /// It ended `warning`.
    Warning,
    /// It ended `failed`.
    Failed,
    /// It ended `success` or `warning`.
    Ok,
    /// It ran and ended, whatever its status.
    Done,
    /// It will not run.
    Skipped,
}

/// The tests by the word that names them.
const TESTS: &[(&str, Test)] = &[
    ("success", Test::Success),
    ("warning", Test::Warning),
    ("failed", Test::Failed),
    ("ok", Test::Ok),
    ("done", Test::Done),
    ("skipped", Test::Skipped),
];

/// The words a step may not be named.
pub const RESERVED: &[&str] = &["and", "or", "not"];

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// A test of one step, by name.
    Is(Test, String),
    /// True when the inner one is false.
    Not(Box<Cond>),
    /// True when every one is.
    All(Vec<Cond>),
    /// True when any one is.
    Any(Vec<Cond>),
}

/// What is known of a step when a condition is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Known {
    /// It has not ended (waiting, running, held): it may still end any way.
    Open,
    /// It ended `success` (a resumed `hold:` step, a step skipped by an
    /// operator, too).
    Success,
    /// It ended `warning`.
    Warning,
    /// It ended `failed`.
    Failed,
    /// It will not run.
    Skipped,
}

impl Known {
    /// Every way a step can end.
    pub const ENDS: [Known; 4] = [
        Known::Success,
        Known::Warning,
        Known::Failed,
        Known::Skipped,
    ];

    /// The word for it in files and records.
    pub fn word(self) -> &'static str {
        match self {
            Known::Open => "open",
            Known::Success => "success",
            Known::Warning => "warning",
            Known::Failed => "failed",
            Known::Skipped => "skipped",
        }
    }

    /// The state named `word`.
    pub fn from_word(word: &str) -> Option<Known> {
        [Known::Open]
            .into_iter()
            .chain(Known::ENDS)
            .find(|k| k.word() == word)
    }

    /// How a step ended whose run ended with `status`: a run that did not
    /// do its work (lost, orphaned, refused by its gate) failed.
    pub fn of_status(status: crate::status::Status) -> Known {
        use crate::status::Status;
        match status {
            Status::Running => Known::Open,
            Status::Success => Known::Success,
            Status::Warning => Known::Warning,
            Status::Failed | Status::Lost | Status::Orphaned | Status::Skipped | Status::Missed => {
                Known::Failed
            }
        }
    }
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Known::Open => "has not ended",
            Known::Success => "ended success",
            Known::Warning => "ended warning",
            Known::Failed => "ended failed",
            Known::Skipped => "was skipped",
        })
    }
}

impl Test {
    /// The test's answer for a step in state `known`; `None` while it
    /// cannot be told.
    pub fn of(self, known: Known) -> Option<bool> {
        if known == Known::Open {
            return None;
        }
        Some(match self {
            Test::Success => known == Known::Success,
            Test::Warning => known == Known::Warning,
            Test::Failed => known == Known::Failed,
            Test::Ok => matches!(known, Known::Success | Known::Warning),
            Test::Done => known != Known::Skipped,
            Test::Skipped => known == Known::Skipped,
        })
    }

    fn word(self) -> &'static str {
        TESTS
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(w, _)| w)
    }
}

/// A condition that does not parse: what is wrong, and at which character
/// (0-based) of the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", at + 1)]
pub struct ParseError {
    /// The character the problem starts at, from 0.
    pub at: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Cond {
    /// Parses one condition: `failed(load) or failed(verify)`, `verify`.
    pub fn parse(text: &str) -> Result<Cond, ParseError> {
        let mut parser = Parser {
            tokens: tokens(text)?,
            next: 0,
            end: text.chars().count(),
        };
        let cond = parser.any()?;
        match parser.peek() {
            None => Ok(cond),
            Some((at, token)) => Err(ParseError {
                at,
                message: format!("unexpected `{token}`; join conditions with `and` or `or`"),
            }),
        }
    }

    /// All of `conds` (an `after:` list); one alone is itself.
    pub fn all(mut conds: Vec<Cond>) -> Cond {
        if conds.len() == 1 {
            conds.remove(0)
        } else {
            Cond::All(conds)
        }
    }

    /// Its value when each step named is in the state `known` gives;
    /// `None` while that cannot be told (Kleene's three values).
    pub fn eval(&self, known: &impl Fn(&str) -> Known) -> Option<bool> {
        match self {
            Cond::Is(test, step) => test.of(known(step)),
            Cond::Not(inner) => inner.eval(known).map(|v| !v),
            Cond::All(conds) => {
                let mut value = Some(true);
                for c in conds {
                    match c.eval(known) {
                        Some(false) => return Some(false),
                        None => value = None,
                        Some(true) => {}
                    }
                }
                value
            }
            Cond::Any(conds) => {
                let mut value = Some(false);
                for c in conds {
                    match c.eval(known) {
                        Some(true) => return Some(true),
                        None => value = None,
                        Some(false) => {}
                    }
                }
                value
            }
        }
    }

    /// Why it has the value it has, in words: `failed(load) is false: load
    /// ended success`. For a value that cannot be told yet it says which
    /// steps it waits for.
    pub fn explain(&self, known: &impl Fn(&str) -> Known) -> String {
        let value = self.eval(known);
        match (self, value) {
            (Cond::Is(_, step), _) => {
                format!("{self} is {}: {step} {}", word(value), known(step))
            }
            (Cond::Not(inner), _) => inner.explain(known),
            // The children that decide it: the first false one of an
            // `and`, the first true one of an `or`, else all of them.
            (Cond::All(conds), Some(false)) | (Cond::Any(conds), Some(true)) => conds
                .iter()
                .find(|c| c.eval(known) == value)
                .map(|c| c.explain(known))
                .unwrap_or_default(),
            (Cond::All(conds) | Cond::Any(conds), _) => conds
                .iter()
                .map(|c| c.explain(known))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The tests it can be made true by (none under a `not`): a route
    /// whose condition is `not failed(load)` does not handle `load`'s
    /// failure.
    pub fn positive_tests(&self) -> Vec<(Test, &str)> {
        match self {
            Cond::Is(test, step) => vec![(*test, step.as_str())],
            Cond::Not(_) => Vec::new(),
            Cond::All(conds) | Cond::Any(conds) => {
                conds.iter().flat_map(Cond::positive_tests).collect()
            }
        }
    }

    /// Every test in it, with the step it names.
    pub fn tests(&self) -> Vec<(Test, &str)> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'c>(&'c self, out: &mut Vec<(Test, &'c str)>) {
        match self {
            Cond::Is(test, step) => out.push((*test, step)),
            Cond::Not(inner) => inner.collect(out),
            Cond::All(conds) | Cond::Any(conds) => conds.iter().for_each(|c| c.collect(out)),
        }
    }

    /// The steps it names, each once, in order of first mention.
    pub fn steps(&self) -> Vec<&str> {
        let mut steps: Vec<&str> = Vec::new();
        for (_, step) in self.tests() {
            if !steps.contains(&step) {
                steps.push(step);
            }
        }
        steps
    }

    /// Whether it can be true for some way its steps end, each of them
    /// ending in one of the ways `possible` gives (`None` when there are
    /// too many combinations to try: 4^10).
    pub fn satisfiable(&self, possible: &impl Fn(&str) -> Vec<Known>) -> Option<bool> {
        let steps = self.steps();
        let choices: Vec<Vec<Known>> = steps.iter().map(|s| possible(s)).collect();
        let total = choices
            .iter()
            .try_fold(1usize, |n, c| n.checked_mul(c.len()))?;
        if total > 1 << 20 {
            return None;
        }
        let mut pick = vec![0usize; steps.len()];
        for _ in 0..total {
            let known = |name: &str| {
                steps
                    .iter()
                    .position(|s| *s == name)
                    .map_or(Known::Open, |i| choices[i][pick[i]])
            };
            if self.eval(&known) == Some(true) {
                return Some(true);
            }
            // The next combination, as an odometer.
            for (i, digit) in pick.iter_mut().enumerate() {
                *digit += 1;
                if *digit < choices[i].len() {
                    break;
                }
                *digit = 0;
            }
        }
        Some(false)
    }

    /// Whether it can become false for some way its steps end.
    pub fn refutable(&self, possible: &impl Fn(&str) -> Vec<Known>) -> Option<bool> {
        Cond::Not(Box::new(self.clone())).satisfiable(possible)
    }
}

fn word(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "not known yet",
    }
}

impl fmt::Display for Cond {
    /// The canonical text: `ok(a) and (failed(b) or not skipped(c))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Is(test, step) => write!(f, "{}({step})", test.word()),
            Cond::Not(inner) => match **inner {
                Cond::Is(..) | Cond::Not(_) => write!(f, "not {inner}"),
                _ => write!(f, "not ({inner})"),
            },
            Cond::All(conds) => join(f, conds, " and ", |c| matches!(c, Cond::Any(_))),
            Cond::Any(conds) => join(f, conds, " or ", |_| false),
        }
    }
}

fn join(
    f: &mut fmt::Formatter<'_>,
    conds: &[Cond],
    with: &str,
    bracket: impl Fn(&Cond) -> bool,
) -> fmt::Result {
    for (i, c) in conds.iter().enumerate() {
        if i > 0 {
            f.write_str(with)?;
        }
        if bracket(c) {
            write!(f, "({c})")?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// A word of a condition, or a bracket.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Name(String),
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Name(name) => f.write_str(name),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The tokens of `text`, each with the character it starts at.
fn tokens(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push((i, if c == '(' { Token::Open } else { Token::Close }));
            i += 1;
        } else if is_name_char(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            out.push((start, Token::Name(chars[start..i].iter().collect())));
        } else {
            return Err(ParseError {
                at: i,
                message: format!(
                    "unexpected `{c}`; a condition is step names, tests such as `failed(load)`, `and`, `or`, `not` and parentheses"
                ),
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    /// The text's length in characters, where "the end" is.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, Token)> {
        self.tokens.get(self.next).cloned()
    }

    fn take(&mut self) -> Option<(usize, Token)> {
        let token = self.peek();
        self.next += usize::from(token.is_some());
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some((_, Token::Name(w))) if w == word);
        self.next += usize::from(found);
        found
    }

    fn any(&mut self) -> Result<Cond, ParseError> {
        let mut conds = vec![self.all()?];
        while self.keyword("or") {
            conds.push(self.all()?);
        }
        Ok(if conds.len() == 1 {
            conds.remove(0)
        } else {
            Cond::Any(conds)
        })
    }

    fn all(&mut self) -> Result<Cond, ParseError> {
        let mut conds = vec![self.unary()?];
        while self.keyword("and") {
            conds.push(self.unary()?);
        }
        Ok(Cond::all(conds))
    }

    fn unary(&mut self) -> Result<Cond, ParseError> {
        if self.keyword("not") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        match self.take() {
            Some((_, Token::Open)) => {
                let inner = self.any()?;
                self.close("the `(`")?;
                Ok(inner)
            }
            Some((at, Token::Name(word))) if RESERVED.contains(&word.as_str()) => Err(ParseError {
                at,
                message: format!("`{word}` needs a condition before it"),
            }),
            Some((at, Token::Name(word))) => {
                let test = TESTS.iter().find(|(w, _)| *w == word).map(|(_, t)| *t);
                match (test, self.peek()) {
                    (Some(test), Some((_, Token::Open))) => {
                        self.next += 1;
                        let step = match self.take() {
                            Some((_, Token::Name(step))) if !RESERVED.contains(&step.as_str()) => {
                                step
                            }
                            other => {
                                return Err(ParseError {
                                    at: other.map_or(self.end, |(at, _)| at),
                                    message: format!("`{word}(` needs a step name"),
                                });
                            }
                        };
                        self.close(&format!("`{word}(`"))?;
                        Ok(Cond::Is(test, step))
                    }
                    (None, Some((_, Token::Open))) => Err(ParseError {
                        at,
                        message: format!(
                            "unknown test `{word}`; the tests are success, warning, failed, ok, done and skipped"
                        ),
                    }),
                    _ => Ok(Cond::Is(Test::Ok, word)),
                }
            }
            Some((at, Token::Close)) => Err(ParseError {
                at,
                message: "unexpected `)`".into(),
            }),
            None => Err(ParseError {
                at: self.end,
                message: "the condition ends too early; it needs a step name or a test".into(),
            }),
        }
    }

    fn close(&mut self, opened_by: &str) -> Result<(), ParseError> {
        match self.take() {
            Some((_, Token::Close)) => Ok(()),
            other => Err(ParseError {
                at: other.map_or(self.end, |(at, _)| at),
                message: format!("missing `)` to close {opened_by}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Cond {
        Cond::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn not_binds_before_and_before_or_and_text_comes_back_canonical() {
        let c = parse("not skipped(a) and b or failed(c)");
        assert_eq!(c.to_string(), "not skipped(a) and ok(b) or failed(c)");
        let c = parse("a and (b or c)");
        assert_eq!(c.to_string(), "ok(a) and (ok(b) or ok(c))");
        assert_eq!(parse(&c.to_string()), c);
        assert_eq!(parse("not (a or b)").to_string(), "not (ok(a) or ok(b))");
        assert_eq!(c.steps(), ["a", "b", "c"]);
    }

    #[test]
    fn mistakes_say_where_and_what_to_write() {
        let cases = [
            ("failed(load", 11, "missing `)`"),
            ("a and", 5, "ends too early"),
            ("a b", 2, "unexpected `b`"),
            ("fail(a)", 0, "unknown test `fail`"),
            ("a & b", 2, "unexpected `&`"),
            ("and a", 0, "`and` needs a condition"),
            ("ok()", 3, "needs a step name"),
            (")", 0, "unexpected `)`"),
        ];
        for (text, at, says) in cases {
            let e = Cond::parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn three_valued_evaluation_waits_for_what_decides() {
        let c = parse("failed(load) or failed(verify)");
        let state = |load, verify| {
            move |s: &str| match s {
                "load" => load,
                "verify" => verify,
                _ => Known::Open,
            }
        };
        assert_eq!(c.eval(&state(Known::Open, Known::Open)), None);
        assert_eq!(c.eval(&state(Known::Open, Known::Failed)), Some(true));
        assert_eq!(c.eval(&state(Known::Success, Known::Open)), None);
        assert_eq!(c.eval(&state(Known::Success, Known::Success)), Some(false));
        assert_eq!(
            c.explain(&state(Known::Success, Known::Success)),
            "failed(load) is false: load ended success; failed(verify) is false: verify ended success"
        );
        let and = parse("success(load) and done(reconcile)");
        assert_eq!(
            and.explain(&state(Known::Failed, Known::Open)),
            "success(load) is false: load ended failed"
        );
        assert_eq!(parse("done(a)").eval(&|_| Known::Skipped), Some(false));
        assert_eq!(parse("skipped(a)").eval(&|_| Known::Skipped), Some(true));
        assert_eq!(parse("not ok(a)").eval(&|_| Known::Failed), Some(true));
    }

    #[test]
    fn impossible_conditions_are_found() {
        let any = |_: &str| Known::ENDS.to_vec();
        assert_eq!(
            parse("success(a) and failed(a)").satisfiable(&any),
            Some(false)
        );
        assert_eq!(
            parse("ok(a) and not done(a)").satisfiable(&any),
            Some(false)
        );
        assert_eq!(
            parse("success(a) or failed(a)").satisfiable(&any),
            Some(true)
        );
        assert_eq!(parse("done(a) or skipped(a)").refutable(&any), Some(false));
        // A step that always starts is never skipped.
        let started = |_: &str| vec![Known::Success, Known::Warning, Known::Failed];
        assert_eq!(parse("skipped(a)").satisfiable(&started), Some(false));
    }
}
