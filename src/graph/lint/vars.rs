//! Rules about variables: UndefinedArgInFrom, InvalidDefaultArgInFrom,
//! RedundantTargetPlatform and FromPlatformFlagConstDisallowed (the `FROM` lines in the
//! global scope) and UndefinedVar (every expanded word of every stage, from the graph's
//! per-step lookups).
//!
//! The base image's environment is not known without pulling it, so in a stage rooted at
//! an image `PATH` (which every image sets) counts as defined; any other name the image may
//! define is reported.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::args::{ArgScope, platform_args};
use crate::dockerfile::expand::{Expanded, Expander};
use crate::dockerfile::{Dockerfile, Instruction, Stage};
use crate::oci::{Platform, Reference};

use super::super::{Base, BuildGraph, StageNode};
use super::{Finding, Rule, closest};

/// Names a `FROM` line can use: the meta ARGs and the platform ARGs.
fn from_names(dockerfile: &Dockerfile) -> BTreeSet<String> {
    let platform = platform_args("linux/amd64", "linux/amd64");
    let mut names: BTreeSet<String> = platform.into_keys().collect();
    names.extend(dockerfile.meta_args.iter().flat_map(|a| a.args.iter().map(|d| d.name.clone())));
    names
}

/// The global scope after the meta ARGs with `build_args` applied.
fn global_scope(dockerfile: &Dockerfile, build_args: &BTreeMap<String, String>, escape: char) -> ArgScope {
    let mut scope = ArgScope::global(build_args.clone(), platform_args("linux/amd64", "linux/amd64"));
    for arg in &dockerfile.meta_args {
        for decl in &arg.args {
            // An expansion error here is reported by the graph, not by a lint.
            let _ = scope.declare_raw(&decl.name, decl.default.as_deref(), escape);
        }
    }
    scope
}

/// UndefinedArgInFrom, InvalidDefaultArgInFrom, RedundantTargetPlatform and
/// FromPlatformFlagConstDisallowed.
pub(super) fn check_from(dockerfile: &Dockerfile, build_args: &BTreeMap<String, String>, escape: char) -> Vec<Finding> {
    let mut findings = Vec::new();
    let declared = from_names(dockerfile);
    let with_args = global_scope(dockerfile, build_args, escape);
    let defaults = global_scope(dockerfile, &BTreeMap::new(), escape);
    let stage_names: Vec<&str> = dockerfile.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    for stage in &dockerfile.stages {
        let words = std::iter::once(&stage.base).chain(stage.platform.as_ref());
        for word in words {
            let Ok(expanded) = Expander::new(escape, &with_args).expand_word(word) else {
                continue;
            };
            for name in expanded.used.iter().filter(|n| !declared.contains(*n)) {
                let hint = closest(name, declared.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean {c}?)"))
                    .unwrap_or_default();
                findings.push(Finding::new(
                    Rule::UndefinedArgInFrom,
                    stage.span,
                    format!("FROM argument '{name}' is not declared{hint}"),
                ));
            }
        }
        if let Some(word) = &stage.platform {
            if let Ok(expanded) = Expander::new(escape, &with_args).expand_word(word) {
                platform_flag(&mut findings, stage, word, &expanded, &with_args);
            }
        }
        let Ok(by_default) = Expander::new(escape, &defaults).expand_word(&stage.base) else {
            continue;
        };
        let undeclared = by_default.used.iter().any(|n| !declared.contains(n));
        if by_default.used.is_empty() || undeclared {
            continue;
        }
        let value = by_default.value;
        let is_stage = stage_names.contains(&value.to_lowercase().as_str());
        if value != "scratch" && !is_stage && Reference::parse_loose(&value).is_err() {
            findings.push(Finding::new(
                Rule::InvalidDefaultArgInFrom,
                stage.span,
                format!("default value for ARG {} results in empty or invalid base image name", stage.base),
            ));
        }
    }
    findings
}

/// RedundantTargetPlatform and FromPlatformFlagConstDisallowed: `FROM --platform=WORD`,
/// `expanded` in the global scope.
fn platform_flag(findings: &mut Vec<Finding>, stage: &Stage, word: &str, expanded: &Expanded, scope: &ArgScope) {
    // `$TARGETPLATFORM` (or `${TARGETPLATFORM}`) alone: the platform a stage gets anyway.
    // Any other name or text around it may change the value, and then it is not redundant.
    let only_target = expanded.unset.is_empty() && expanded.used.len() == 1 && expanded.used.contains("TARGETPLATFORM");
    if only_target && scope.lookup("TARGETPLATFORM") == Some(expanded.value.as_str()) {
        findings.push(Finding::new(
            Rule::RedundantTargetPlatform,
            stage.span,
            format!("setting platform to predefined {word} in FROM is redundant as this is the default behavior"),
        ));
    }
    // A constant pins the stage to one platform, unless the stage's name says it is meant
    // for that os or architecture (`FROM --platform=linux/arm64 alpine AS build-arm64`).
    // A value that is no platform is the graph's error, not a lint.
    if !expanded.used.is_empty() {
        return;
    }
    let Ok(platform) = expanded.value.parse::<Platform>() else {
        return;
    };
    let name = stage.name.as_deref().unwrap_or_default();
    if !name.contains(&platform.os) && !name.contains(&platform.architecture) {
        findings.push(Finding::new(
            Rule::FromPlatformFlagConstDisallowed,
            stage.span,
            format!("FROM --platform flag should not use constant value \"{}\"", expanded.value),
        ));
    }
}

/// Whether the stage's filesystem and environment start from an image (directly or through
/// earlier stages), whose environment is unknown here.
fn rooted_at_image(graph: &BuildGraph, stage: &StageNode) -> bool {
    let mut current = stage;
    loop {
        match &current.base {
            Base::Image(_) => return true,
            Base::Scratch => return false,
            Base::Stage(parent) => match graph.stage(*parent) {
                Some(p) => current = p,
                None => return false,
            },
        }
    }
}

/// ARG names a stage declares before step `upto`, with its ancestors' (`FROM <stage>`).
fn declared_args(graph: &BuildGraph, stage: &StageNode, upto: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut current = Some((stage, upto));
    while let Some((s, end)) = current {
        for step in s.instructions.iter().take(end) {
            if let Instruction::Arg(arg) = &step.instruction {
                names.extend(arg.args.iter().map(|d| d.name.clone()));
            }
        }
        current = match &s.base {
            Base::Stage(p) => graph.stage(*p).map(|p| (p, p.instructions.len())),
            _ => None,
        };
    }
    names
}

/// Names a stage defines by ENV or ARG anywhere (candidates for "did you mean").
fn defined_names(graph: &BuildGraph, stage: &StageNode) -> BTreeSet<String> {
    let mut names = declared_args(graph, stage, stage.instructions.len());
    for step in &stage.instructions {
        if let Instruction::Env(env) = &step.instruction {
            names.extend(env.vars.iter().map(|kv| kv.key.clone()));
        }
    }
    names
}

/// UndefinedVar over every stage of the graph.
pub(super) fn check_steps(graph: &BuildGraph) -> Vec<Finding> {
    let mut findings = Vec::new();
    for stage in &graph.stages {
        let image_env = rooted_at_image(graph, stage);
        let candidates = defined_names(graph, stage);
        for (i, step) in stage.instructions.iter().enumerate() {
            if step.unset.is_empty() {
                continue;
            }
            let declared = declared_args(graph, stage, i);
            for name in &step.unset {
                if declared.contains(name) || (image_env && name == "PATH") {
                    continue;
                }
                let hint = closest(name, candidates.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean ${c}?)"))
                    .unwrap_or_default();
                findings.push(Finding::new(
                    Rule::UndefinedVar,
                    step.span,
                    format!("usage of undefined variable '${name}'{hint}"),
                ));
            }
        }
    }
    findings
}
