//! log4rs's pattern syntax, read as log4rs reads it (`encode::pattern::
//! parser`): text with `{{`, `}}`, `((`, `))` and `\` escapes, and
//! `{name(arg)(arg):format}` pieces whose arguments are patterns again.
//! Anything log4rs would render as an `{ERROR: …}` is refused here, so
//! that log4rs's own encoder renders it.

use std::iter::Peekable;
use std::str::CharIndices;

use anyhow::bail;

/// A piece of a pattern, before its meaning is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Text(String),
    Argument {
        name: String,
        args: Vec<Vec<Node>>,
        format: Format,
    },
}

/// `:[fill]<align>[-][min][.max]` of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Format {
    pub fill: char,
    pub align: Align,
    /// Cut the end off when too wide (`-` cuts the start).
    pub right_truncate: bool,
    pub min: Option<usize>,
    pub max: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

impl Format {
    /// Whether it changes anything: log4rs applies a format only when a
    /// width is given.
    pub fn is_set(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }
}

/// Reads `pattern` into its pieces.
pub(super) fn nodes(pattern: &str) -> anyhow::Result<Vec<Node>> {
    let mut parser = Parser {
        pattern,
        it: pattern.char_indices().peekable(),
    };
    let mut nodes = Vec::new();
    while parser.it.peek().is_some() {
        nodes.push(parser.next_node()?);
    }
    Ok(merged(nodes))
}

/// Adjacent texts as one.
pub(super) fn merged(nodes: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    for node in nodes {
        match (out.last_mut(), node) {
            (Some(Node::Text(last)), Node::Text(text)) => last.push_str(&text),
            (_, node) => out.push(node),
        }
    }
    out
}

struct Parser<'a> {
    pattern: &'a str,
    it: Peekable<CharIndices<'a>>,
}

impl Parser<'_> {
    fn consume(&mut self, ch: char) -> bool {
        if self.it.peek().is_some_and(|&(_, c)| c == ch) {
            self.it.next();
            return true;
        }
        false
    }

    /// One piece; the caller has seen that there is one.
    fn next_node(&mut self) -> anyhow::Result<Node> {
        let Some(&(start, c)) = self.it.peek() else {
            bail!("the pattern ends early")
        };
        let text = |s: &str| Ok(Node::Text(s.to_string()));
        match c {
            '{' => {
                self.it.next();
                if self.consume('{') {
                    return text("{");
                }
                let node = self.argument()?;
                if !self.consume('}') {
                    bail!("expected '}}'");
                }
                Ok(node)
            }
            '}' | '(' | ')' => {
                self.it.next();
                if self.consume(c) {
                    return Ok(Node::Text(c.to_string()));
                }
                bail!("unmatched '{c}'")
            }
            '\\' => {
                self.it.next();
                match self.it.next() {
                    Some((_, c @ ('{' | '}' | '(' | ')' | '\\'))) => Ok(Node::Text(c.to_string())),
                    _ => bail!("unexpected '\\'"),
                }
            }
            _ => {
                while let Some(&(at, c)) = self.it.peek() {
                    if matches!(c, '{' | '}' | '(' | ')' | '\\') {
                        return text(&self.pattern[start..at]);
                    }
                    self.it.next();
                }
                text(&self.pattern[start..])
            }
        }
    }

    fn argument(&mut self) -> anyhow::Result<Node> {
        let name = self.name();
        let mut args = Vec::new();
        while self.consume('(') {
            let mut arg = Vec::new();
            // As log4rs: a `)` always closes the argument (no `))` here).
            loop {
                if self.consume(')') {
                    break;
                }
                if self.it.peek().is_none() {
                    bail!("unclosed '('");
                }
                arg.push(self.next_node()?);
            }
            // Unmerged: log4rs reads only the first piece of some.
            args.push(arg);
        }
        let format = self.format();
        Ok(Node::Argument { name, args, format })
    }

    /// A letter, then letters and digits.
    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(&(_, c)) = self.it.peek()
            && c.is_alphabetic()
        {
            while let Some(&(_, c)) = self.it.peek() {
                if !c.is_alphanumeric() {
                    break;
                }
                name.push(c);
                self.it.next();
            }
        }
        name
    }

    fn format(&mut self) -> Format {
        let mut format = Format {
            fill: ' ',
            align: Align::Left,
            right_truncate: true,
            min: None,
            max: None,
        };
        if !self.consume(':') {
            return format;
        }
        if let Some(&(_, c)) = self.it.peek() {
            let mut ahead = self.it.clone();
            ahead.next();
            if matches!(ahead.peek(), Some((_, '<' | '>'))) {
                self.it.next();
                format.fill = c;
            }
        }
        if self.consume('<') {
            format.align = Align::Left;
        } else if self.consume('>') {
            format.align = Align::Right;
        }
        if self.consume('-') {
            format.right_truncate = false;
        }
        format.min = self.integer();
        if self.consume('.') {
            format.max = self.integer();
        }
        format
    }

    fn integer(&mut self) -> Option<usize> {
        let mut value: Option<usize> = None;
        while let Some(digit) = self.it.peek().and_then(|&(_, c)| c.to_digit(10)) {
            self.it.next();
            value = Some(
                value
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(digit as usize),
            );
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_log4rs_syntax() {
        let nodes = nodes("a ((b)) \\{c\\} {{d}} {h({l:*>-5.3})}:{d(%H)(utc)}").unwrap();
        assert_eq!(nodes[0], Node::Text("a (b) {c} {d} ".into()));
        let Node::Argument { name, args, .. } = &nodes[1] else {
            panic!("{nodes:?}")
        };
        assert_eq!(name, "h");
        let Node::Argument { name, format, .. } = &args[0][0] else {
            panic!("{args:?}")
        };
        assert_eq!(name, "l");
        assert_eq!(
            (format.fill, format.align, format.min),
            ('*', Align::Right, Some(5))
        );
        for bad in ["a (b", "x)", "{l", "\\q", "{d(%H}"] {
            assert!(super::nodes(bad).is_err(), "{bad}");
        }
    }
}
