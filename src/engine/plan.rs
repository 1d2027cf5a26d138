//! Before anything runs: the Dockerfile → graph, every image it names resolved, `ONBUILD`
//! triggers inserted. Every error of the file (parse, graph, a missing base image) is found here,
//! so a bad Dockerfile fails before the first step and leaves nothing behind.

use std::collections::BTreeMap;

use super::{BuildError, BuildOptions, Builder};
use crate::dockerfile::{Instruction, SecurityMode, lower, parse};
use crate::graph::{Base, BuildGraph, GraphOptions, StageId};
use crate::image::Image;

/// A resolved build: the graph (triggers inserted) and the images it reads.
pub(crate) struct Plan {
    pub graph: BuildGraph,
    /// `FROM <image>` of each needed stage whose base is an image.
    pub bases: BTreeMap<StageId, Image>,
    /// Images read by `COPY --from=<image>`, by the reference as written.
    pub copy_images: BTreeMap<String, Image>,
}

/// Parses, lowers, builds the graph and resolves images.
pub(crate) fn plan(builder: &Builder<'_>, source: &str, options: &BuildOptions) -> Result<Plan, BuildError> {
    let ast = parse(source).map_err(|diagnostics| BuildError::Parse { diagnostics })?;
    let dockerfile = lower(&ast).map_err(|diagnostics| BuildError::Parse { diagnostics })?;
    let graph_options = GraphOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        platform: options.platform.to_string(),
        escape: ast.escape,
    };
    let mut graph = crate::graph::build(&dockerfile, &graph_options).map_err(|errors| BuildError::Graph { errors })?;

    let mut bases = BTreeMap::new();
    let mut copy_images = BTreeMap::new();
    let mut done = std::collections::BTreeSet::new();
    // Triggers may add edges (`COPY --from`), so stages can become needed: repeat until none does.
    while let Some(id) = graph.needed().into_iter().find(|id| !done.contains(id)) {
        done.insert(id);
        let stage = graph.stage(id).expect("needed stages exist").clone();
        let triggers = match &stage.base {
            Base::Scratch => Vec::new(),
            Base::Image(reference) => {
                let image = builder.images.image(builder.store, reference, &options.platform).map_err(|e| {
                    BuildError::Step { span: stage.span, what: format!("FROM {reference}"), source: Box::new(e) }
                })?;
                let triggers = image.config.config.as_ref().and_then(|c| c.on_build.clone()).unwrap_or_default();
                bases.insert(id, image);
                triggers
            }
            Base::Stage(parent) => graph
                .stage(*parent)
                .map(|p| {
                    p.instructions
                        .iter()
                        .filter_map(|s| match &s.instruction {
                            Instruction::Onbuild(o) => Some(o.expression.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if !triggers.is_empty() {
            graph.apply_onbuild(id, &triggers).map_err(|errors| BuildError::Graph { errors })?;
        }
        let stage = graph.stage(id).expect("needed stages exist");
        for input in &stage.images {
            if copy_images.contains_key(&input.reference) {
                continue;
            }
            let image = builder.images.image(builder.store, &input.reference, &options.platform).map_err(|e| {
                BuildError::Step { span: input.span, what: format!("--from={}", input.reference), source: Box::new(e) }
            })?;
            copy_images.insert(input.reference.clone(), image);
        }
    }
    unsupported(&graph)?;
    Ok(Plan { graph, bases, copy_images })
}

/// Features the builder does not have yet fail here, at their line, before any step runs.
fn unsupported(graph: &BuildGraph) -> Result<(), BuildError> {
    for id in graph.needed() {
        let Some(stage) = graph.stage(id) else { continue };
        for step in &stage.instructions {
            let message = match &step.instruction {
                Instruction::Run(run) if !run.mounts.is_empty() => {
                    "RUN --mount is not supported yet: remove the flag or build with BuildKit"
                }
                Instruction::Run(run) if !run.devices.is_empty() => "RUN --device is not supported",
                Instruction::Run(run) if run.security == Some(SecurityMode::Insecure) => {
                    "RUN --security=insecure is not supported: slipway never runs privileged steps"
                }
                Instruction::Copy(copy) if copy.parents => "COPY --parents is not supported yet",
                _ => continue,
            };
            return Err(BuildError::Instruction { span: step.span, message: message.to_string() });
        }
    }
    Ok(())
}
