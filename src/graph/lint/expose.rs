//! Rules over `EXPOSE` ports: ExposeProtoCasing and ExposeInvalidFormat. A port is checked
//! as the builder reads it: expanded in its step's scope and split into words. A word that
//! looks up a variable the graph cannot know (one the base image's environment may set) is
//! left alone.

use crate::dockerfile::Instruction;
use crate::dockerfile::Span;
use crate::dockerfile::args::ArgScope;
use crate::dockerfile::expand::Expander;

use super::super::steps::analyse_step;
use super::super::{Base, BuildGraph};
use super::{Finding, Rule};

/// Findings of the `EXPOSE` rules over every stage of the graph.
pub(super) fn check(graph: &BuildGraph) -> Vec<Finding> {
    let mut findings = Vec::new();
    // The graph keeps which names a step looked up, not their values: walk each stage's
    // ARG and ENV lines again, from the scope the stage starts with.
    let mut scopes: Vec<ArgScope> = Vec::with_capacity(graph.stages.len());
    for stage in &graph.stages {
        let parent = match stage.base {
            Base::Stage(parent) => scopes.get(parent.0),
            _ => None,
        };
        let mut scope = match parent {
            Some(parent) => ArgScope::stage_from(&graph.global, parent),
            None => ArgScope::stage(&graph.global, []),
        };
        for step in &stage.instructions {
            match &step.instruction {
                Instruction::Expose(expose) => {
                    for word in &expose.ports {
                        ports(&mut findings, &scope, graph.escape, word, step.span);
                    }
                }
                Instruction::Arg(_) | Instruction::Env(_) => {
                    analyse_step(step.instruction.clone(), step.origin.clone(), step.span, &mut scope, graph.escape);
                }
                _ => {}
            }
        }
        scopes.push(scope);
    }
    findings
}

/// The ports one `EXPOSE` argument expands to.
fn ports(findings: &mut Vec<Finding>, scope: &ArgScope, escape: char, word: &str, span: Span) {
    // An expansion error is the graph's to report.
    let Ok(expanded) = Expander::new(escape, scope).expand_words(word) else {
        return;
    };
    if !expanded.unset.is_empty() {
        return;
    }
    for port in &expanded.words {
        port_spec(findings, port, span);
    }
}

/// One `[[ip:]host-port:]port[/proto]` (Docker's port-mapping syntax, which `EXPOSE` parses
/// but should not be given). A spec without a port or with an unknown protocol is left to
/// the builder, which refuses it.
fn port_spec(findings: &mut Vec<Finding>, spec: &str, span: Span) {
    // From the right: the container port, the host port, and the address (itself possibly
    // holding colons, `[::1]`).
    let mut parts = spec.rsplitn(3, ':');
    let container = parts.next().unwrap_or_default();
    let mapped = parts.any(|part| !part.is_empty());
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let known = ["", "tcp", "udp", "sctp"].contains(&proto.to_ascii_lowercase().as_str());
    if port.is_empty() || !known {
        return;
    }
    if proto != proto.to_ascii_lowercase() {
        findings.push(Finding::new(
            Rule::ExposeProtoCasing,
            span,
            format!("defined protocol '{spec}' in EXPOSE instruction should be lowercase"),
        ));
    }
    if mapped {
        findings.push(Finding::new(
            Rule::ExposeInvalidFormat,
            span,
            format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{spec}'"),
        ));
    }
}
