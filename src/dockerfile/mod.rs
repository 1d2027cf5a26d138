//! Dockerfile text → typed instructions, following BuildKit's frontend. PURE: no IO beyond
//! the text it is given, no printing, no global state.
//!
//! Two layers, each collecting every error of a file:
//! - the line layer ([`parse`]): directives, escape character, continuations, comments,
//!   generic flags, exec/shell form, per-instruction argument words, heredocs, `ONBUILD`
//!   nesting → [`Ast`] of [`Node`]s with spans;
//! - the instruction layer ([`lower`]): flag tables, argument counts, stage names,
//!   `ONBUILD` rules, mounts → [`Dockerfile`] of [`Stage`]s of typed [`Instruction`]s.
//!
//! Words stay raw: variable expansion is a later step of the builder. This module knows
//! nothing about images, stages' contents or the filesystem.

pub mod args;
mod ast;
mod error;
pub mod expand;
mod flags;
mod heredoc;
mod instruction;
mod lexer;
mod lower;
pub mod mount;
mod parser;
mod words;

pub use ast::{Ast, Directive, Heredoc, Node, Warning, WarningKind};
pub use error::{Diagnostics, ParseError, Span, Suggestion};
pub use heredoc::parse_heredoc;
pub use instruction::*;
pub use lower::{lower, lower_node};
pub use mount::{Deferred, Mount, MountError, MountType, Sharing};
pub use parser::parse;

/// Both layers: text → validated, typed instructions.
pub fn parse_dockerfile(src: &str) -> Result<Dockerfile, Diagnostics> {
    lower(&parse(src)?)
}
