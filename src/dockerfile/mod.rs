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
//!
//! Conformance: `tests/it/dockerfile_corpus.rs` checks both layers against BuildKit's own
//! answers for every case of `shared/corpus`. Deliberate differences from BuildKit:
//! - every error of a file is reported, not only the first;
//! - directive errors carry their real line (BuildKit reports them one line early);
//! - an `ONBUILD` trigger node carries the `ONBUILD` line's span (BuildKit leaves 0);
//! - `RUN --mount` values without variables are fully validated here (BuildKit waits for
//!   the build), and duplicate stage names are rejected here (BuildKit: at conversion);
//! - flag words are handled as characters, so non-ASCII flag values stay intact (BuildKit
//!   walks bytes).

pub mod args;
mod ast;
mod error;
pub mod expand;
mod flags;
mod heredoc;
mod instruction;
mod lexer;
mod lower;
mod mount;
mod parser;
mod words;

pub use ast::{Ast, Directive, Heredoc, Node, Warning, WarningKind, go_quote};
pub use error::{Diagnostics, Located, ParseError, Span, Suggestion, render_located};
pub use heredoc::parse_heredoc;
pub use instruction::*;
pub use lower::{lower, lower_node};
pub use mount::{Device, Mount, MountError, MountType, RunMount, Sharing, csv_fields, parse_device};
pub use parser::parse;

/// Both layers: text → validated, typed instructions.
///
/// ```
/// use slipway::dockerfile::{parse_dockerfile, Instruction};
///
/// let df = parse_dockerfile("ARG V=1\nFROM alpine:$V AS base\nRUN echo hi\n").unwrap();
/// assert_eq!(df.meta_args.len(), 1);
/// assert_eq!((df.stages[0].name.as_deref(), df.stages[0].base.as_str()), (Some("base"), "alpine:$V"));
/// assert!(matches!(df.stages[0].commands[0], Instruction::Run(_)));
///
/// let src = "FROM alpine\nWORKDIT /app\nCOPY --chwon=1 a b\n";
/// let report = parse_dockerfile(src).unwrap_err().render("Dockerfile", src);
/// assert!(report.starts_with("Dockerfile:2:1: unknown instruction: WORKDIT (did you mean `WORKDIR`?)\n"));
/// assert!(report.contains("Dockerfile:3:6: unknown flag: --chwon (did you mean `chown`?)\n"));
/// ```
pub fn parse_dockerfile(src: &str) -> Result<Dockerfile, Diagnostics> {
    lower(&parse(src)?)
}
