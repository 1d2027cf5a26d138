//! Rules over each stage's typed instructions: JSONArgsRecommended,
//! MultipleInstructionsDisallowed, WorkdirRelativePath, LegacyKeyValueFormat,
//! SecretsUsedInArgOrEnv, CopyIgnoredFile. A stage built `FROM` an earlier stage inherits
//! what that stage set (a `SHELL`, an absolute `WORKDIR`).

use crate::dockerfile::{CommandLine, Dockerfile, Instruction, Source, Span};

use super::{Finding, Rule};

/// What a stage leaves to the stages built on it.
#[derive(Debug, Clone, Copy, Default)]
struct Inherited {
    shell_set: bool,
    workdir_set: bool,
}

/// Findings of the stage rules.
pub(super) fn check(dockerfile: &Dockerfile, ignored: Option<&dyn Fn(&str) -> bool>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for arg in &dockerfile.meta_args {
        for decl in &arg.args {
            secret(&mut findings, "ARG", &decl.name, arg.span);
        }
    }
    let mut inherited: Vec<Inherited> = Vec::new();
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        let base = stage.base.to_lowercase();
        let parent = dockerfile.stages[..index].iter().position(|s| s.name.as_deref() == Some(base.as_str()));
        let mut state = parent.and_then(|p| inherited.get(p).copied()).unwrap_or_default();
        for (i, instruction) in stage.commands.iter().enumerate() {
            let later = &stage.commands[i + 1..];
            match instruction {
                Instruction::Cmd(c) => {
                    json_args(&mut findings, "CMD", &c.command, c.span, state);
                    multiple(&mut findings, "CMD", c.span, later.iter().any(|l| matches!(l, Instruction::Cmd(_))));
                }
                Instruction::Entrypoint(e) => {
                    json_args(&mut findings, "ENTRYPOINT", &e.command, e.span, state);
                    let again = later.iter().any(|l| matches!(l, Instruction::Entrypoint(_)));
                    multiple(&mut findings, "ENTRYPOINT", e.span, again);
                }
                Instruction::Healthcheck(h) => {
                    let again = later.iter().any(|l| matches!(l, Instruction::Healthcheck(_)));
                    multiple(&mut findings, "HEALTHCHECK", h.span, again);
                }
                Instruction::Shell(_) => state.shell_set = true,
                Instruction::Workdir(w) => {
                    let path = w.path.trim_matches(|c| c == '"' || c == '\'');
                    // A path starting with a variable may well be absolute once expanded.
                    if path.starts_with('/') || path.starts_with('$') || is_windows_absolute(path) {
                        state.workdir_set = true;
                    } else if !state.workdir_set {
                        findings.push(Finding::new(
                            Rule::WorkdirRelativePath,
                            w.span,
                            format!(
                                "relative workdir \"{path}\" can have unexpected results if the base image changes"
                            ),
                        ));
                    }
                }
                Instruction::Env(env) => {
                    legacy(&mut findings, "ENV", env.vars.iter().any(|kv| kv.legacy), env.span);
                    for kv in &env.vars {
                        secret(&mut findings, "ENV", &kv.key, env.span);
                    }
                }
                Instruction::Label(label) => {
                    legacy(&mut findings, "LABEL", label.labels.iter().any(|kv| kv.legacy), label.span);
                }
                Instruction::Arg(arg) => {
                    for decl in &arg.args {
                        secret(&mut findings, "ARG", &decl.name, arg.span);
                    }
                }
                Instruction::Copy(copy) if copy.from.is_none() => {
                    copy_ignored(&mut findings, ignored, "Copy", &copy.sources, copy.span);
                }
                Instruction::Add(add) => copy_ignored(&mut findings, ignored, "Add", &add.sources, add.span),
                _ => {}
            }
        }
        inherited.push(state);
    }
    findings
}

fn is_windows_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

fn json_args(findings: &mut Vec<Finding>, keyword: &str, command: &CommandLine, span: Span, state: Inherited) {
    if matches!(command, CommandLine::Shell(_)) && !state.shell_set {
        findings.push(Finding::new(
            Rule::JsonArgsRecommended,
            span,
            format!("JSON arguments recommended for {keyword} to prevent unintended behavior related to OS signals"),
        ));
    }
}

fn multiple(findings: &mut Vec<Finding>, keyword: &str, span: Span, again: bool) {
    if again {
        findings.push(Finding::new(
            Rule::MultipleInstructionsDisallowed,
            span,
            format!("multiple {keyword} instructions should not be used in the same stage because only the last one will be used"),
        ));
    }
}

fn legacy(findings: &mut Vec<Finding>, keyword: &str, legacy: bool, span: Span) {
    if legacy {
        findings.push(Finding::new(
            Rule::LegacyKeyValueFormat,
            span,
            format!("\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"),
        ));
    }
}

/// Words of a variable name that suggest a secret (BuildKit's list), unless the name also
/// says `public`.
const SECRET_WORDS: [&str; 10] =
    ["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];

/// Whether `name` looks like it holds a secret: one of its `_`-separated words is a secret
/// word and none is `public`.
pub fn looks_secret(name: &str) -> bool {
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower.split('_').collect();
    words.iter().any(|w| SECRET_WORDS.contains(w)) && !words.contains(&"public")
}

fn secret(findings: &mut Vec<Finding>, keyword: &str, name: &str, span: Span) {
    if looks_secret(name) {
        findings.push(Finding::new(
            Rule::SecretsUsedInArgOrEnv,
            span,
            format!("do not use ARG or ENV instructions for sensitive data ({keyword} \"{name}\")"),
        ));
    }
}

/// Sources read from the build context (not URLs, git or heredocs), as context paths.
fn context_path(source: &Source) -> Option<String> {
    let Source::Path(p) = source else {
        return None;
    };
    let p = p.trim_matches('"');
    if p.contains("://") || p.starts_with("git@") {
        return None;
    }
    let mut path = p.trim_start_matches('/');
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.trim_start_matches('/');
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() || path == "." {
        return None;
    }
    Some(path.to_owned())
}

fn copy_ignored(
    findings: &mut Vec<Finding>,
    ignored: Option<&dyn Fn(&str) -> bool>,
    verb: &str,
    sources: &[Source],
    span: Span,
) {
    let Some(ignored) = ignored else {
        return;
    };
    for path in sources.iter().filter_map(context_path) {
        if ignored(&path) {
            findings.push(Finding::new(
                Rule::CopyIgnoredFile,
                span,
                format!("attempting to {} file \"{path}\" that is excluded by .dockerignore", verb.to_lowercase()),
            ));
        }
    }
}
