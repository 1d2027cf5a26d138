//! The build context: the directory tree `COPY` and `ADD` read from.
//!
//! - Walking it in place: the context is read where it lies, never copied or tarred first.
//! - `.dockerignore` ([`ignore`]): which paths the builder must not see, with moby's pattern
//!   language; the walker asks it which directories it may prune.
//! - The stat cache: file metadata gathered once per build, from which content hashes for
//!   cache keys are derived.
//!
//! Architecture invariant: `ignore` is pure (text in, answers out); reading files and walking
//! directories happen in the walker, the only part of this module that does IO.

pub mod ignore;
