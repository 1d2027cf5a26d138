//! Rules over the line AST: ConsistentInstructionCasing, FromAsCasing, StageNameCasing,
//! DuplicateStageName, ReservedStageName, MaintainerDeprecated, NoEmptyContinuation. They
//! need only the words as written, so they run even when the file does not lower.

use std::collections::HashSet;

use crate::dockerfile::{Ast, WarningKind};

use super::{Finding, Rule};

/// Stage names BuildKit reserves: `scratch` is the empty base, `context` its name for the
/// build context among a build's inputs.
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

fn is_upper(word: &str) -> bool {
    word == word.to_uppercase()
}

fn is_lower(word: &str) -> bool {
    word == word.to_lowercase()
}

/// Findings of the AST rules, in no particular order.
pub(super) fn check(ast: &Ast) -> Vec<Finding> {
    let mut findings = Vec::new();
    casing(ast, &mut findings);
    let mut names = HashSet::new();
    for node in &ast.nodes {
        match node.cmd.as_str() {
            "from" => {
                if let [_, r#as, name] = node.args.as_slice() {
                    if r#as.eq_ignore_ascii_case("as") {
                        if is_upper(&node.keyword) != is_upper(r#as) && (is_upper(r#as) || is_lower(r#as)) {
                            findings.push(Finding::new(
                                Rule::FromAsCasing,
                                node.span,
                                format!("'{}' and '{}' keywords' casing do not match", r#as, node.keyword),
                            ));
                        }
                        if !is_lower(name) {
                            findings.push(Finding::new(
                                Rule::StageNameCasing,
                                node.span,
                                format!("stage name '{name}' should be lowercase"),
                            ));
                        }
                        let name = name.to_lowercase();
                        if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                            findings.push(Finding::new(
                                Rule::ReservedStageName,
                                node.span,
                                format!("stage name should not use the same name as reserved stage \"{name}\""),
                            ));
                        }
                        if !names.insert(name.clone()) {
                            findings.push(Finding::new(
                                Rule::DuplicateStageName,
                                node.span,
                                format!("duplicate stage name '{name}', stage names should be unique"),
                            ));
                        }
                    }
                }
            }
            "maintainer" => findings.push(Finding::new(
                Rule::MaintainerDeprecated,
                node.span,
                "the MAINTAINER instruction is deprecated, use a label instead to define an image author",
            )),
            _ => {}
        }
    }
    for warning in &ast.warnings {
        match &warning.kind {
            WarningKind::EmptyContinuationLine { .. } => {
                findings.push(Finding::new(Rule::NoEmptyContinuation, warning.span, "empty continuation line"))
            }
        }
    }
    findings
}

/// ConsistentInstructionCasing: keywords are all upper or all lower case, and match the
/// casing most keywords of the file use (upper case on a tie).
fn casing(ast: &Ast, findings: &mut Vec<Finding>) {
    let upper = ast.nodes.iter().filter(|n| is_upper(&n.keyword)).count();
    let lower = ast.nodes.iter().filter(|n| is_lower(&n.keyword) && !is_upper(&n.keyword)).count();
    let majority_lower = lower > upper;
    for node in &ast.nodes {
        let keyword = &node.keyword;
        let message = if !is_upper(keyword) && !is_lower(keyword) {
            format!("command '{keyword}' should be consistently cased")
        } else if majority_lower && !is_lower(keyword) {
            format!("command '{keyword}' should match the case of the command majority (lowercase)")
        } else if !majority_lower && !is_upper(keyword) {
            format!("command '{keyword}' should match the case of the command majority (uppercase)")
        } else {
            continue;
        };
        findings.push(Finding::new(Rule::ConsistentInstructionCasing, node.span, message));
    }
}
