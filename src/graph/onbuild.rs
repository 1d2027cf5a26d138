//! `ONBUILD` as data: the triggers a base image's config carries (its `OnBuild` strings)
//! are parsed and inserted at the start of the stage built on it, before the stage's own
//! lines, as BuildKit does. Fetching the config is the builder's job; this module only
//! receives the strings.

use crate::dockerfile::args::ArgScope;
use crate::dockerfile::{lower_node, parse};

use super::assemble::resolve_inputs;
use super::error::{GraphError, GraphErrors};
use super::steps::analyse_step;
use super::{BuildGraph, StageId, StepOrigin};

impl BuildGraph {
    /// Inserts the base image's `ONBUILD` `triggers` at the start of stage `id`, in order.
    /// Their `COPY --from` / `--mount=from` words become edges like the stage's own. Each
    /// trigger must be one instruction other than `ONBUILD`, `FROM` or `MAINTAINER`.
    /// Nothing changes when an error is returned.
    pub fn apply_onbuild(&mut self, id: StageId, triggers: &[String]) -> Result<(), GraphErrors> {
        let Some(stage) = self.stages.get(id.0) else {
            return Ok(());
        };
        let span = stage.span;
        let mut errors = Vec::new();
        let mut scope = ArgScope::stage(&self.global, []);
        let mut steps = Vec::new();
        for trigger in triggers {
            let ast = match parse(trigger) {
                Ok(ast) => ast,
                Err(diagnostics) => {
                    errors.extend(diagnostics.0.into_iter().map(|source| GraphError::Trigger {
                        span,
                        trigger: trigger.clone(),
                        source,
                    }));
                    continue;
                }
            };
            for node in &ast.nodes {
                if matches!(node.cmd.as_str(), "onbuild" | "from" | "maintainer") {
                    errors.push(GraphError::TriggerNotAllowed { span, keyword: node.cmd.to_uppercase() });
                    continue;
                }
                let mut parse_errors = Vec::new();
                let Some(instruction) = lower_node(node, &mut parse_errors) else {
                    errors.extend(parse_errors.into_iter().map(|source| GraphError::Trigger {
                        span,
                        trigger: trigger.clone(),
                        source,
                    }));
                    continue;
                };
                let origin = StepOrigin::Onbuild { trigger: trigger.clone() };
                let (step, errs) = analyse_step(instruction, origin, span, &mut scope, self.escape);
                steps.push(step);
                errors.extend(errs);
            }
        }
        if !errors.is_empty() {
            return Err(GraphErrors(errors));
        }
        let names = self.referable_names();
        let names: Vec<Option<&str>> = names.iter().map(Option::as_deref).collect();
        let mut node = self.stages[id.0].clone();
        let inserted = steps.len();
        node.instructions.splice(0..0, steps);
        resolve_inputs(&mut node, &names, 0..inserted, &mut errors);
        if !errors.is_empty() {
            return Err(GraphErrors(errors));
        }
        self.stages[id.0] = node;
        Ok(())
    }
}
