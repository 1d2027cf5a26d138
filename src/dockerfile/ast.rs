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
