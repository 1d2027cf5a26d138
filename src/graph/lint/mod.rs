//! The lint rules of `slipway check`, named as BuildKit's build checks where the rule is the
//! same. Pure functions over the line AST, the typed Dockerfile and the build graph; the
//! `.dockerignore` matcher comes in as data (a predicate), the caller reads the file.
//!
//! - [`syntax`]: rules over the line AST (casing, stage names, deprecated and empty lines),
//!   which run even when the file does not lower;
//! - [`stages`]: rules over each stage's typed instructions;
//! - [`vars`]: rules about variables (`UndefinedVar`, `FROM` args and `--platform`), using
//!   the ARG scoping model and the graph's per-step lookups;
//! - [`expose`]: rules over `EXPOSE` ports, expanded in each step's scope.
//!
//! The `# check=skip=A,B;error=true` directive is read by [`CheckConfig::from_ast`].
//! Knows nothing about printing, files or exit codes.

mod expose;
mod stages;

pub use stages::looks_secret;
mod syntax;
mod vars;

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{Ast, Dockerfile, Span};

use super::BuildGraph;

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    JsonArgsRecommended,
    StageNameCasing,
    FromAsCasing,
    UndefinedVar,
    UndefinedArgInFrom,
    DuplicateStageName,
    MaintainerDeprecated,
    WorkdirRelativePath,
    ConsistentInstructionCasing,
    SecretsUsedInArgOrEnv,
    CopyIgnoredFile,
    InvalidDefaultArgInFrom,
    MultipleInstructionsDisallowed,
    LegacyKeyValueFormat,
    NoEmptyContinuation,
    ReservedStageName,
    RedundantTargetPlatform,
    FromPlatformFlagConstDisallowed,
    ExposeProtoCasing,
    ExposeInvalidFormat,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 20] = [
        Rule::JsonArgsRecommended,
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::UndefinedVar,
        Rule::UndefinedArgInFrom,
        Rule::DuplicateStageName,
        Rule::MaintainerDeprecated,
        Rule::WorkdirRelativePath,
        Rule::ConsistentInstructionCasing,
        Rule::SecretsUsedInArgOrEnv,
        Rule::CopyIgnoredFile,
        Rule::InvalidDefaultArgInFrom,
        Rule::MultipleInstructionsDisallowed,
        Rule::LegacyKeyValueFormat,
        Rule::NoEmptyContinuation,
        Rule::ReservedStageName,
        Rule::RedundantTargetPlatform,
        Rule::FromPlatformFlagConstDisallowed,
        Rule::ExposeProtoCasing,
        Rule::ExposeInvalidFormat,
    ];

    /// BuildKit's name of the rule.
    pub fn name(self) -> &'static str {
        match self {
            Rule::JsonArgsRecommended => "JSONArgsRecommended",
            Rule::StageNameCasing => "StageNameCasing",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
            Rule::CopyIgnoredFile => "CopyIgnoredFile",
            Rule::InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::ReservedStageName => "ReservedStageName",
            Rule::RedundantTargetPlatform => "RedundantTargetPlatform",
            Rule::FromPlatformFlagConstDisallowed => "FromPlatformFlagConstDisallowed",
            Rule::ExposeProtoCasing => "ExposeProtoCasing",
            Rule::ExposeInvalidFormat => "ExposeInvalidFormat",
        }
    }

    /// The rule called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name().eq_ignore_ascii_case(name))
    }
}

/// One thing a rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: Rule,
    /// What, lowercase, no trailing period.
    pub message: String,
    /// Where.
    pub span: Span,
}

impl Finding {
    fn new(rule: Rule, span: Span, message: impl Into<String>) -> Finding {
        Finding { rule, message: message.into(), span }
    }
}

/// What the `# check=` directive asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// Rules named in `skip=` (unknown names are ignored, as BuildKit does).
    pub skip: BTreeSet<Rule>,
    /// `error=true`: findings fail the check.
    pub error: bool,
}

impl CheckConfig {
    /// Reads the `check` parser directive of `ast`, if any.
    pub fn from_ast(ast: &Ast) -> CheckConfig {
        match ast.directives.iter().find(|d| d.name == "check") {
            Some(d) => CheckConfig::parse(&d.value),
            None => CheckConfig::default(),
        }
    }

    /// Parses `skip=A,B;error=true`.
    pub fn parse(value: &str) -> CheckConfig {
        let mut config = CheckConfig::default();
        for part in value.split(';') {
            let Some((key, val)) = part.split_once('=') else {
                continue;
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for name in val.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        if name.eq_ignore_ascii_case("all") {
                            config.skip_all = true;
                        } else if let Some(rule) = Rule::from_name(name) {
                            config.skip.insert(rule);
                        }
                    }
                }
                "error" => config.error = val.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        config
    }

    /// Whether `rule` runs.
    pub fn enabled(&self, rule: Rule) -> bool {
        !self.skip_all && !self.skip.contains(&rule)
    }
}

/// Everything the rules look at. Only `ast` is required: rules over the typed file or the
/// graph are skipped when those could not be built.
pub struct LintInput<'a> {
    /// The line AST.
    pub ast: &'a Ast,
    /// The typed Dockerfile, when it lowered.
    pub dockerfile: Option<&'a Dockerfile>,
    /// The build graph, when it could be built.
    pub graph: Option<&'a BuildGraph>,
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// Whether a context path (relative, `/`-separated) is excluded by `.dockerignore`;
    /// `None` when there is no `.dockerignore`.
    pub ignored: Option<&'a dyn Fn(&str) -> bool>,
}

/// Runs every rule `config` enables; findings sorted by position.
pub fn lint(input: &LintInput<'_>, config: &CheckConfig) -> Vec<Finding> {
    let mut findings = syntax::check(input.ast);
    if let Some(dockerfile) = input.dockerfile {
        findings.extend(stages::check(dockerfile, input.ignored));
        findings.extend(vars::check_from(dockerfile, input.build_args, input.graph.map_or('\\', |g| g.escape)));
    }
    if let Some(graph) = input.graph {
        findings.extend(vars::check_steps(graph));
        findings.extend(expose::check(graph));
    }
    findings.retain(|f| config.enabled(f.rule));
    findings.sort_by_key(|f| (f.span.start_line, f.span.column, f.rule));
    findings
}

/// The closest of `candidates` to `word` within a small edit distance, for "did you mean".
fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let max = if word.chars().count() >= 4 { 2 } else { 1 };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests;
