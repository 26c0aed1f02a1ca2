//! Configuration errors: every problem of a file, each at `FILE:LINE:COL`.

use std::fmt;
use std::path::PathBuf;

use super::node::Pos;

/// One mistake in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file the mistake is in.
    pub file: PathBuf,
    /// Where in the file; line 0 when the position is unknown.
    pub pos: Pos,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.pos, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// No jobs file was named and none was found.
    #[error(
        "no jobs file: pass `-c FILE`, set `OVERNIGHT_CONFIG`, or create `./overnight.yaml` (see `examples/quickstart/overnight.yaml`)"
    )]
    NotFound,
    /// The file was read but holds mistakes; all of them are listed.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems of one or more files, each once, in file, line and
    /// column order: how `check` prints them.
    pub fn invalid(mut problems: Vec<Problem>) -> ConfigError {
        problems.sort_by(|a, b| {
            (&a.file, a.pos.line, a.pos.col, &a.message)
                .cmp(&(&b.file, b.pos.line, b.pos.col, &b.message))
        });
        problems.dedup();
        ConfigError::Invalid(problems)
    }

    /// The problems it lists; none for a file that could not be read.
    pub fn problems(self) -> Vec<Problem> {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => Vec::new(),
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
