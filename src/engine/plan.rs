//! Before anything runs: the Dockerfile → graph, refusals checked, every image it names
//! resolved, `ONBUILD` triggers inserted. Every error of the file (parse, graph, a refused
//! feature, a missing base image) is found here, so a bad Dockerfile fails before the first step
//! and leaves nothing behind; a refused feature fails before any image is read or pulled.

use std::collections::{BTreeMap, BTreeSet};

use super::{BuildError, BuildOptions, Builder, NamedContext, refuse};
use crate::dockerfile::{Instruction, lower, parse};
use crate::graph::{Base, BuildGraph, GraphOptions, StageId, StageNode};
use crate::image::Image;
use crate::oci::Platform;
use crate::store::Lease;

/// A resolved build: the graph (triggers inserted) and the images it reads.
pub(crate) struct Plan {
    pub graph: BuildGraph,
    /// `FROM <image>` of each needed stage whose base is an image.
    pub bases: BTreeMap<StageId, Image>,
    /// Images read by `COPY --from=<image>`, by the `--from` word as written.
    pub copy_images: BTreeMap<String, Image>,
    /// Checkouts of git named contexts, by name, and the scratch directories that hold them.
    pub git_contexts: BTreeMap<String, std::path::PathBuf>,
    _checkouts: Vec<crate::store::ScratchDir>,
}

impl Plan {
    /// The directory a named context `word` reads as files: a local directory, or a git
    /// context's checkout.
    pub(crate) fn context_dir<'p>(&'p self, options: &'p BuildOptions, word: &str) -> Option<&'p std::path::Path> {
        let name = word.to_lowercase();
        match options.named_contexts.get(&name)? {
            NamedContext::Dir(path) => Some(path),
            NamedContext::Git(_) => self.git_contexts.get(&name).map(std::path::PathBuf::as_path),
            _ => None,
        }
    }
}

/// Parses, lowers, builds the graph, checks refusals and resolves images.
pub(crate) fn plan(
    builder: &Builder<'_>,
    source: &str,
    options: &BuildOptions,
    lease: &Lease,
) -> Result<Plan, BuildError> {
    let graph = graph_of(source, options)?;
    // Which platforms' RUN steps this machine runs (binfmt_misc), read once for the build.
    let emulation = crate::exec::Emulation::probe();
    refuse::check(&graph, options, &emulation)?;
    let mut plan = Plan {
        graph,
        bases: BTreeMap::new(),
        copy_images: BTreeMap::new(),
        git_contexts: BTreeMap::new(),
        _checkouts: Vec::new(),
    };
    check_out_git_contexts(builder, options, &mut plan)?;
    let mut done = BTreeSet::new();
    // Triggers may add edges (`COPY --from`), so stages can become needed: repeat until none does.
    while let Some(id) = plan.graph.needed().into_iter().find(|id| !done.contains(id)) {
        done.insert(id);
        let triggers = resolve_base(builder, options, &mut plan, id, lease)?;
        if !triggers.is_empty() {
            plan.graph.apply_onbuild(id, &triggers).map_err(|errors| BuildError::Stages { errors })?;
            // The triggers are steps of this stage now: they get the same refusals.
            refuse::check(&plan.graph, options, &emulation)?;
        }
        let stage = plan.graph.stage(id).expect("needed stages exist").clone();
        resolve_copy_images(builder, options, &mut plan, &stage, lease)?;
    }
    Ok(plan)
}

/// Refuses, before any step runs, a layer step that would mount more than `max` layers under it
/// (overlay's limit): base layers, then every RUN, COPY and ADD of the stage chain.
pub(crate) fn check_depth(plan: &Plan, max: usize) -> Result<(), BuildError> {
    let mut depth: BTreeMap<StageId, usize> = BTreeMap::new();
    let mut needed = plan.graph.needed();
    needed.sort();
    for id in needed {
        let stage = plan.graph.stage(id).expect("needed stages exist");
        let mut layers = match &stage.base {
            Base::Scratch => 0,
            Base::Stage(parent) => depth.get(parent).copied().unwrap_or(0),
            Base::Image(_) => plan.bases.get(&id).map_or(0, |image| image.manifest.layers.len()),
        };
        for step in &stage.instructions {
            let link = match &step.instruction {
                Instruction::Run(_) => false,
                Instruction::Copy(copy) => copy.link,
                Instruction::Add(add) => add.link,
                _ => continue,
            };
            // A `--link` step is made on nothing; every other one mounts the layers below it.
            if !link && layers > max {
                return Err(BuildError::TooManyLayers { span: step.span, layers, max });
            }
            layers += 1;
        }
        depth.insert(id, layers);
    }
    Ok(())
}

/// The Dockerfile text → the build graph, with the build's arguments, target and platforms.
fn graph_of(source: &str, options: &BuildOptions) -> Result<BuildGraph, BuildError> {
    let ast = parse(source).map_err(|diagnostics| BuildError::Syntax { diagnostics })?;
    let dockerfile = lower(&ast).map_err(|diagnostics| BuildError::Syntax { diagnostics })?;
    let graph_options = GraphOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        platform: options.platform.clone(),
        build_platform: crate::oci::Platform::host(),
        escape: ast.escape,
        named_contexts: options.named_contexts.keys().cloned().collect(),
    };
    crate::graph::build(&dockerfile, &graph_options).map_err(|errors| BuildError::Stages { errors })
}

/// The graph [`plan`] makes of `source` for `options`, as far as it is known without reading an
/// image: the `ONBUILD` triggers of a stage used as a base are inserted, a base image's are not
/// (its config is not read), and nothing is refused. What `slipway context` inspects.
pub fn static_graph(source: &str, options: &BuildOptions) -> Result<BuildGraph, BuildError> {
    let mut graph = graph_of(source, options)?;
    let mut done = BTreeSet::new();
    // Triggers may add edges (`COPY --from`), so stages can become needed: repeat until none does.
    while let Some(id) = graph.needed().into_iter().find(|id| !done.contains(id)) {
        done.insert(id);
        let Some(Base::Stage(parent)) = graph.stage(id).map(|s| s.base.clone()) else {
            continue;
        };
        let triggers = graph.stage(parent).map(onbuild_of).unwrap_or_default();
        if !triggers.is_empty() {
            graph.apply_onbuild(id, &triggers).map_err(|errors| BuildError::Stages { errors })?;
        }
    }
    Ok(graph)
}

/// Resolves stage `id`'s base image (if it has one); returns the `ONBUILD` triggers it runs first.
fn resolve_base(
    builder: &Builder<'_>,
    options: &BuildOptions,
    plan: &mut Plan,
    id: StageId,
    lease: &Lease,
) -> Result<Vec<String>, BuildError> {
    let stage = plan.graph.stage(id).expect("needed stages exist");
    match &stage.base {
        Base::Scratch => Ok(Vec::new()),
        Base::Image(image)
            if matches!(options.named_contexts.get(&image.word.to_lowercase()), Some(NamedContext::Dir(_))) =>
        {
            // `FROM <local directory>`: its files on nothing, as a first step of the stage.
            let copy = format!("COPY --from={} . /", image.word);
            plan.graph.stages[id.0].base = Base::Scratch;
            Ok(vec![copy])
        }
        Base::Image(image) => {
            let platform = stage.platform_or(&options.platform);
            let what = || format!("FROM {}", image.word);
            let image = match named_image(builder, options, &image.word, platform, lease) {
                Some(found) => found,
                None => {
                    let reference = refuse::reference(image, stage.span)?;
                    builder.images.image(builder.store, reference, platform, lease)
                }
            }
            .map_err(|e| BuildError::Step { span: stage.span, what: what(), source: Box::new(e) })?;
            let triggers = image.config.config.as_ref().and_then(|c| c.on_build.clone()).unwrap_or_default();
            plan.bases.insert(id, image);
            Ok(triggers)
        }
        Base::Stage(parent) => Ok(plan.graph.stage(*parent).map(onbuild_of).unwrap_or_default()),
    }
}

/// The image a `--build-context` gives `word`, if it names an image one: `docker-image://`
/// through the image source, `oci-layout://` brought into the store under `lease`.
fn named_image(
    builder: &Builder<'_>,
    options: &BuildOptions,
    word: &str,
    platform: &Platform,
    lease: &Lease,
) -> Option<Result<Image, BuildError>> {
    match options.named_contexts.get(&word.to_lowercase())? {
        NamedContext::Image(reference) => Some(builder.images.image(builder.store, reference, platform, lease)),
        NamedContext::OciLayout { dir, selector } => Some(
            crate::image::load_layout_image(builder.store, dir, selector, platform, lease, builder.reporter)
                .map_err(|source| BuildError::NamedContext { name: word.to_string(), source: Box::new(source) }),
        ),
        NamedContext::Dir(_) | NamedContext::Git(_) => None,
    }
}

/// Checks out every git named context into a scratch directory of the store that lives as long
/// as the plan (its subdirectory, when the source names one, confined to the checkout).
fn check_out_git_contexts(builder: &Builder<'_>, options: &BuildOptions, plan: &mut Plan) -> Result<(), BuildError> {
    for (name, context) in &options.named_contexts {
        let NamedContext::Git(source) = context else { continue };
        let err = |source: crate::remote::RemoteError| BuildError::GitContext {
            name: name.clone(),
            source: Box::new(source),
        };
        let scratch = builder.store.scratch_dir("git-context")?;
        let proxy_env = crate::dockerfile::args::proxy_env(&options.build_args);
        let git = crate::remote::GitFetcher::new(scratch.path(), proxy_env, options.ssh.get("default").cloned())
            .map_err(err)?;
        let task = builder.reporter.start(|| format!("git context {name}: {}", crate::remote::redact(&source.remote)));
        let checked_out = (|| {
            let resolved = git.resolve(source)?;
            git.checkout(source, &resolved, &scratch.path().join("repo"))
        })();
        let checkout = task.finish(checked_out).map_err(err)?;
        let mut dir = checkout.dir.clone();
        if let Some(sub) = source.subdir.as_deref().filter(|s| !s.is_empty()) {
            let root = std::fs::canonicalize(&checkout.dir).map_err(|e| BuildError::io("open", &checkout.dir, e))?;
            let joined =
                std::fs::canonicalize(root.join(sub)).map_err(|e| BuildError::io("open", root.join(sub), e))?;
            if !joined.starts_with(&root) || !joined.is_dir() {
                let reason = format!("subdir {sub:?} is no directory inside the checkout");
                return Err(err(crate::remote::RemoteError::GitRef {
                    url: crate::remote::redact(&source.remote),
                    reason,
                }));
            }
            dir = joined;
        }
        plan.git_contexts.insert(name.clone(), dir);
        plan._checkouts.push(scratch);
    }
    Ok(())
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
    lease: &Lease,
) -> Result<(), BuildError> {
    for input in &stage.images {
        let word = &input.image.word;
        if plan.copy_images.contains_key(word) {
            continue;
        }
        let platform = stage.platform_or(&options.platform);
        let image = match named_image(builder, options, word, platform, lease) {
            Some(found) => found,
            // A local directory is read when the step runs.
            None if matches!(
                options.named_contexts.get(&word.to_lowercase()),
                Some(NamedContext::Dir(_) | NamedContext::Git(_))
            ) =>
            {
                continue;
            }
            None => builder.images.image(builder.store, refuse::reference(&input.image, input.span)?, platform, lease),
        }
        .map_err(|e| BuildError::Step {
            span: input.span,
            what: format!("--from={word}"),
            source: Box::new(e),
        })?;
        plan.copy_images.insert(word.clone(), image);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(graph: &BuildGraph, id: usize) -> Vec<String> {
        graph.stages[id].instructions.iter().map(|s| s.instruction.original().to_owned()).collect()
    }

    #[test]
    fn the_static_graph_inserts_a_parent_stages_triggers_and_reads_no_image() {
        let src = "FROM alpine AS base\nONBUILD COPY src /src\nFROM base AS app\nRUN make\nFROM scratch AS other\n";
        let options = BuildOptions { target: Some("app".to_owned()), ..BuildOptions::default() };
        let graph = static_graph(src, &options).expect("graph");
        assert_eq!(graph.needed(), [StageId(0), StageId(1)]);
        assert_eq!(steps(&graph, 1), ["COPY src /src", "RUN make"]);
        assert_eq!(steps(&graph, 0), ["ONBUILD COPY src /src"], "a base image's triggers are unknown");
        let err = static_graph("FROM scratch\nCOPY\n", &BuildOptions::default()).expect_err("an error");
        assert!(matches!(err, BuildError::Syntax { .. }), "{err}");
        let err = static_graph("FROM scratch\n", &options).expect_err("an unknown target");
        assert!(matches!(err, BuildError::Stages { .. }), "{err}");
    }
}
