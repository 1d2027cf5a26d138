//! The line layer's output: one [`Node`] per instruction, as BuildKit's parser shapes it
//! (keyword, generic flags, per-instruction argument words with quotes kept, exec/shell
//! form, heredoc bodies, ONBUILD trigger), plus directives and warnings. Raw text only:
//! nothing here is validated against the instruction set or expanded.

use super::error::Span;

/// A parsed Dockerfile, before instruction-level validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// Parser directives from the top of the file, in order.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
}

/// A `# name=value` parser directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// Trimmed value.
    pub value: String,
    /// Line it was found on.
    pub span: Span,
}

/// One instruction as the line parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Lower-cased keyword (`run`); unknown keywords are kept too.
    pub cmd: String,
    /// The keyword as written (`Run`), for lint rules and error messages.
    pub keyword: String,
    /// Leading `--flag[=value]` words, quotes and escapes processed, `--` dropped.
    pub flags: Vec<String>,
    /// Argument words, split per instruction (see the module docs of `parser`); quotes kept.
    pub args: Vec<String>,
    /// Whether the arguments were a JSON string array (exec form).
    pub json: bool,
    /// Heredoc bodies, in the order their `<<WORD` appear. For `ONBUILD`, on the outer node.
    pub heredocs: Vec<Heredoc>,
    /// The trigger of an `ONBUILD` (its span is the `ONBUILD` line's).
    pub sub: Option<Box<Node>>,
    /// The logical line: continuations joined, comment lines dropped.
    pub original: String,
    /// Comment lines directly above the instruction (text after `#`, trimmed).
    pub comments: Vec<String>,
    /// Lines covered (heredoc bodies included); column of the keyword.
    pub span: Span,
}

/// A heredoc body attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed.
    pub name: String,
    /// File descriptor prefix (`3<<EOF` gives 3), 0 when absent.
    pub fd: u32,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are to be stripped when the body is used.
    pub chomp: bool,
    /// The body, raw (tabs not yet stripped), each line ending in `\n`.
    pub content: String,
}

impl Ast {
    /// The directive `name` (lower-case), if the file has it.
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }

    /// BuildKit's `Node.Dump()` of the whole file: one `(keyword ["--flag"] "arg" ...)`
    /// line per instruction. Used to compare with BuildKit's golden `result` files.
    pub fn dump(&self) -> String {
        self.nodes.iter().map(|n| format!("({})\n", n.dump())).collect()
    }
}

impl Node {
    /// This node in BuildKit's dump format, without the outer parentheses.
    pub fn dump(&self) -> String {
        let mut out = self.cmd.clone();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(&format!(" [{}]", flags.join(" ")));
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        if let Some(sub) = &self.sub {
            out.push_str(&format!(" ({})", sub.dump()));
        }
        out
    }
}

/// Quotes like Go's `strconv.Quote`: `\"`, `\\`, C escapes, `\xNN` for other controls.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c == '\u{feff}' || ('\u{80}'..='\u{9f}').contains(&c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Heredoc {
    /// The body as used: for `<<-`, leading tabs removed from every line.
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
    }
}

/// A non-fatal finding of the line parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What was found.
    pub kind: WarningKind,
    /// Where.
    pub span: Span,
}

/// Kinds of parser warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// A blank line inside a continued instruction (BuildKit plans to make it an error).
    EmptyContinuationLine {
        /// The logical line it was found in.
        original: String,
    },
}

impl Warning {
    /// Human-readable text, lowercase.
    pub fn message(&self) -> String {
        match &self.kind {
            WarningKind::EmptyContinuationLine { original } => {
                format!("empty continuation line found in: {original}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::dockerfile::parse;

    #[test]
    fn dump_matches_buildkit_format() {
        let ast = parse("FROM a\nCOPY --chown=\"a b\" x y\nONBUILD RUN echo \"hi\"\tthere\nCMD []\nFOO bar\n").unwrap();
        assert_eq!(
            ast.dump(),
            "(from \"a\")\n(copy [\"--chown=a b\"] \"x\" \"y\")\n(onbuild (run \"echo \\\"hi\\\"\\tthere\"))\n(cmd)\n(foo \"\")\n"
        );
    }
}
