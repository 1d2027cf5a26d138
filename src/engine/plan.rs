//! Before anything runs: the Dockerfile → graph, refusals checked, every image it names
//! resolved, `ONBUILD` triggers inserted. Every error of the file (parse, graph, a refused
//! feature, a missing base image) is found here, so a bad Dockerfile fails before the first step
//! and leaves nothing behind; a refused feature fails before any image is read or pulled.

use std::collections::{BTreeMap, BTreeSet};

use super::{BuildError, BuildOptions, Builder, refuse};
use crate::dockerfile::{Instruction, lower, parse};
use crate::graph::{Base, BuildGraph, GraphOptions, StageId, StageNode};
use crate::image::Image;

/// A resolved build: the graph (triggers inserted) and the images it reads.
pub(crate) struct Plan {
    pub graph: BuildGraph,
    /// `FROM <image>` of each needed stage whose base is an image.
    pub bases: BTreeMap<StageId, Image>,
    /// Images read by `COPY --from=<image>`, by the `--from` word as written.
    pub copy_images: BTreeMap<String, Image>,
}

/// Parses, lowers, builds the graph, checks refusals and resolves images.
pub(crate) fn plan(builder: &Builder<'_>, source: &str, options: &BuildOptions) -> Result<Plan, BuildError> {
    let ast = parse(source).map_err(|diagnostics| BuildError::Syntax { diagnostics })?;
    let dockerfile = lower(&ast).map_err(|diagnostics| BuildError::Syntax { diagnostics })?;
    let graph_options = GraphOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        platform: options.platform.clone(),
        build_platform: crate::oci::Platform::host(),
        escape: ast.escape,
    };
    let graph = crate::graph::build(&dockerfile, &graph_options).map_err(|errors| BuildError::Stages { errors })?;
    refuse::check(&graph, options)?;
    let mut plan = Plan { graph, bases: BTreeMap::new(), copy_images: BTreeMap::new() };
    let mut done = BTreeSet::new();
    // Triggers may add edges (`COPY --from`), so stages can become needed: repeat until none does.
    while let Some(id) = plan.graph.needed().into_iter().find(|id| !done.contains(id)) {
        done.insert(id);
        let triggers = resolve_base(builder, options, &mut plan, id)?;
        if !triggers.is_empty() {
            plan.graph.apply_onbuild(id, &triggers).map_err(|errors| BuildError::Stages { errors })?;
            // The triggers are steps of this stage now: they get the same refusals.
            refuse::check(&plan.graph, options)?;
        }
        let stage = plan.graph.stage(id).expect("needed stages exist").clone();
        resolve_copy_images(builder, options, &mut plan, &stage)?;
    }
    Ok(plan)
}

/// Resolves stage `id`'s base image (if it has one); returns the `ONBUILD` triggers it runs first.
fn resolve_base(
    builder: &Builder<'_>,
    options: &BuildOptions,
    plan: &mut Plan,
    id: StageId,
) -> Result<Vec<String>, BuildError> {
    let stage = plan.graph.stage(id).expect("needed stages exist");
    match &stage.base {
        Base::Scratch => Ok(Vec::new()),
        Base::Image(image) => {
            let reference = refuse::reference(image, stage.span)?;
            let image =
                builder.images.image(builder.store, reference, stage.platform_or(&options.platform)).map_err(|e| {
                    BuildError::Step {
                        span: stage.span,
                        what: format!("FROM {}", reference.familiar()),
                        source: Box::new(e),
                    }
                })?;
            let triggers = image.config.config.as_ref().and_then(|c| c.on_build.clone()).unwrap_or_default();
            plan.bases.insert(id, image);
            Ok(triggers)
        }
        Base::Stage(parent) => Ok(plan.graph.stage(*parent).map(onbuild_of).unwrap_or_default()),
    }
}

/// The `ONBUILD` expressions of a stage (they run in the stages built `FROM` it).
fn onbuild_of(stage: &StageNode) -> Vec<String> {
    stage
        .instructions
        .iter()
        .filter_map(|s| match &s.instruction {
            Instruction::Onbuild(o) => Some(o.expression.clone()),
            _ => None,
        })
        .collect()
}

/// Resolves the images `stage` reads with `COPY --from=<image>`.
fn resolve_copy_images(
    builder: &Builder<'_>,
    options: &BuildOptions,
    plan: &mut Plan,
    stage: &StageNode,
) -> Result<(), BuildError> {
    for input in &stage.images {
        let word = &input.image.word;
        if plan.copy_images.contains_key(word) {
            continue;
        }
        let reference = refuse::reference(&input.image, input.span)?;
        let image = builder
            .images
            .image(builder.store, reference, stage.platform_or(&options.platform))
            .map_err(|e| BuildError::Step { span: input.span, what: format!("--from={word}"), source: Box::new(e) })?;
        plan.copy_images.insert(word.clone(), image);
    }
    Ok(())
}
