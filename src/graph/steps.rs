//! A stage's instructions → [`Step`]s: walks them through the stage's ARG/ENV scope, as
//! BuildKit's dispatcher does, expanding exactly what BuildKit expands (see
//! `dockerfile::args::expansion_rule`) to record which variables each step looked up.
//! The values are not kept: the builder expands again against the real base environment,
//! which this module cannot know. Knows nothing about how steps run.

use std::collections::BTreeSet;

use crate::dockerfile::args::{ArgScope, Origin};
use crate::dockerfile::expand::{ExpandErrorKind, Expander};
use crate::dockerfile::{Instruction, Source, Span};

use super::error::GraphError;
use super::{Step, StepOrigin};

/// Names looked up while expanding one step.
#[derive(Default)]
struct Lookups {
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
    errors: Vec<GraphError>,
}

impl Lookups {
    /// Expands `word` in `scope`, recording the names it looked up.
    fn word(&mut self, scope: &ArgScope, escape: char, span: Span, word: &str) -> Option<String> {
        match Expander::new(escape, scope).expand_word(word) {
            Ok(e) => {
                self.used.extend(e.used);
                self.unset.extend(e.unset);
                Some(e.value)
            }
            // `${V:?msg}` may be satisfied by the base image's environment, unknown here.
            Err(e) if matches!(e.kind, ExpandErrorKind::Required { .. }) => None,
            Err(source) => {
                self.errors.push(GraphError::Expand { span, source });
                None
            }
        }
    }

    fn words(&mut self, scope: &ArgScope, escape: char, span: Span, words: &[&str]) {
        for w in words {
            self.word(scope, escape, span, w);
        }
    }
}

/// Walks `commands` through `scope` (which ends as the stage's final scope).
pub(super) fn analyse_steps(
    commands: &[Instruction],
    scope: &mut ArgScope,
    escape: char,
) -> (Vec<Step>, Vec<GraphError>) {
    let mut steps = Vec::with_capacity(commands.len());
    let mut errors = Vec::new();
    for instruction in commands {
        let (step, errs) = analyse_step(instruction.clone(), StepOrigin::Dockerfile, instruction.span(), scope, escape);
        steps.push(step);
        errors.extend(errs);
    }
    (steps, errors)
}

/// One step: its lookups, its effect on `scope` (`ARG`, `ENV`), and the expansion errors
/// found (the step is complete either way).
pub(super) fn analyse_step(
    instruction: Instruction,
    origin: StepOrigin,
    span: Span,
    scope: &mut ArgScope,
    escape: char,
) -> (Step, Vec<GraphError>) {
    let mut l = Lookups::default();
    match &instruction {
        Instruction::Arg(arg) => {
            for decl in &arg.args {
                l.word(scope, escape, span, &decl.name);
                match &decl.default {
                    Some(default) => {
                        let value = l.word(scope, escape, span, default);
                        scope.declare(&decl.name, value);
                    }
                    None => {
                        scope.declare(&decl.name, None);
                    }
                }
            }
        }
        Instruction::Env(env) => {
            // All pairs of one ENV line expand against the scope before the line.
            let mut set = Vec::new();
            for kv in &env.vars {
                let key = l.word(scope, escape, span, &kv.key).unwrap_or_else(|| kv.key.clone());
                let value = l.word(scope, escape, span, &kv.value).unwrap_or_default();
                set.push((key, value));
            }
            for (k, v) in set {
                scope.set_env(&k, &v);
            }
        }
        Instruction::Label(label) => {
            for kv in &label.labels {
                l.words(scope, escape, span, &[&kv.key, &kv.value]);
            }
        }
        Instruction::Copy(copy) => {
            copy_words(&mut l, scope, escape, span, &copy.sources, &copy.dest);
            for w in [&copy.chown, &copy.chmod].into_iter().flatten() {
                l.word(scope, escape, span, w);
            }
        }
        Instruction::Add(add) => {
            copy_words(&mut l, scope, escape, span, &add.sources, &add.dest);
            for w in [&add.chown, &add.chmod, &add.checksum].into_iter().flatten() {
                l.word(scope, escape, span, w);
            }
        }
        Instruction::Expose(expose) => {
            for port in &expose.ports {
                l.word(scope, escape, span, port);
            }
        }
        Instruction::Volume(v) => {
            for p in &v.paths {
                l.word(scope, escape, span, p);
            }
        }
        Instruction::User(u) => {
            l.word(scope, escape, span, &u.user);
        }
        Instruction::Workdir(w) => {
            l.word(scope, escape, span, &w.path);
        }
        Instruction::Stopsignal(s) => {
            l.word(scope, escape, span, &s.signal);
        }
        Instruction::Run(run) => {
            // The whole `--mount` value expands (BuildKit expands each of its fields).
            for m in &run.mounts {
                l.word(scope, escape, span, &m.raw);
            }
            // Every ARG in scope reaches the command's environment.
            l.used.extend(scope.vars().iter().filter(|v| v.origin == Origin::Arg).map(|v| v.name.clone()));
        }
        Instruction::From(_)
        | Instruction::Cmd(_)
        | Instruction::Entrypoint(_)
        | Instruction::Shell(_)
        | Instruction::Healthcheck(_)
        | Instruction::Maintainer(_)
        | Instruction::Onbuild(_) => {}
    }
    (Step { instruction, span, origin, used: l.used, unset: l.unset }, l.errors)
}

/// Sources and destination of `COPY`/`ADD`: paths expand, heredoc bodies expand with quotes
/// kept when their delimiter was unquoted.
fn copy_words(l: &mut Lookups, scope: &ArgScope, escape: char, span: Span, sources: &[Source], dest: &str) {
    for source in sources {
        match source {
            Source::Path(p) => {
                l.word(scope, escape, span, p);
            }
            Source::Inline { content, expand: true, .. } => {
                match Expander::new(escape, scope).raw_quotes(true).expand_word(content) {
                    Ok(e) => {
                        l.used.extend(e.used);
                        l.unset.extend(e.unset);
                    }
                    Err(source) if !matches!(source.kind, ExpandErrorKind::Required { .. }) => {
                        l.errors.push(GraphError::Expand { span, source });
                    }
                    Err(_) => {}
                }
            }
            Source::Inline { .. } => {}
        }
    }
    l.word(scope, escape, span, dest);
}
