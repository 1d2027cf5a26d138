//! [`build`]: typed [`Dockerfile`] + [`GraphOptions`] → [`BuildGraph`]. Expands each `FROM`
//! in the global scope, resolves stage references (names case-insensitive, indices, images),
//! walks each stage's steps through its ARG/ENV scope and picks the target. Every error of
//! the file is collected. No IO.

use crate::dockerfile::args::{ArgScope, TARGET_STAGE_ARG, platform_args};
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{Dockerfile, Instruction, Span};
use crate::oci::Platform;

use super::error::{GraphError, GraphErrors};
use super::steps::analyse_steps;
use super::{Base, BuildGraph, Edge, EdgeKind, GraphOptions, ImageInput, ImageRef, StageId, StageNode, Step};

/// Lowers `dockerfile` to a build graph for `options`, or returns every error found.
pub fn build(dockerfile: &Dockerfile, options: &GraphOptions) -> Result<BuildGraph, GraphErrors> {
    if dockerfile.stages.is_empty() {
        return Err(GraphErrors(vec![GraphError::NoStages]));
    }
    let mut errors = Vec::new();
    let mut platform = platform_args(&options.platform.to_string(), &options.build_platform.to_string());
    // `TARGETSTAGE`: the `--target`, else the last stage's name, else `default` (BuildKit's).
    let target_stage = options.target.clone().or_else(|| dockerfile.stages.last().and_then(|s| s.name.clone()));
    if let Some(stage) = target_stage {
        platform.insert(TARGET_STAGE_ARG.to_string(), stage);
    }
    let mut global = ArgScope::global(options.build_args.clone(), platform);
    for arg in &dockerfile.meta_args {
        for decl in &arg.args {
            if let Err(source) = global.declare_raw(&decl.name, decl.default.as_deref(), options.escape) {
                errors.push(GraphError::Expand { span: arg.span, source });
            }
        }
    }
    let names = referable_names(dockerfile, options);
    let mut stages: Vec<StageNode> = Vec::with_capacity(dockerfile.stages.len());
    let mut scopes: Vec<ArgScope> = Vec::with_capacity(dockerfile.stages.len());
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        let id = StageId(index);
        let expander = Expander::new(options.escape, &global);
        let base_word = match expander.expand_word(&stage.base) {
            Ok(e) => e.value,
            Err(source) => {
                errors.push(GraphError::Expand { span: stage.span, source });
                stage.base.clone()
            }
        };
        let platform = match &stage.platform {
            None => None,
            Some(p) => match expander.expand_word(p) {
                // An empty value (an unset variable) means the build's platform, as in BuildKit.
                Ok(e) if e.value.is_empty() => None,
                Ok(e) => match e.value.parse::<Platform>() {
                    Ok(platform) => Some(platform),
                    Err(source) => {
                        errors.push(GraphError::Platform { span: stage.span, source });
                        None
                    }
                },
                Err(source) => {
                    errors.push(GraphError::Expand { span: stage.span, source });
                    None
                }
            },
        };
        let mut edges = Vec::new();
        let base = if base_word.is_empty() {
            errors.push(GraphError::BlankBase { span: stage.span, base: stage.base.clone() });
            Base::Scratch
        } else if base_word == "scratch" {
            Base::Scratch
        } else {
            match lookup_name(&names, &base_word, index) {
                Lookup::Earlier(to) => {
                    edges.push(Edge { to, kind: EdgeKind::From, span: stage.span });
                    Base::Stage(to)
                }
                Lookup::Later => {
                    errors.push(GraphError::ForwardReference { span: stage.span, name: base_word.to_lowercase() });
                    Base::Scratch
                }
                // A stage's own name is not defined yet on its `FROM` line: `FROM node AS node`
                // pulls the image.
                Lookup::Itself | Lookup::NotAStage => Base::Image(ImageRef::parse(base_word)),
            }
        };
        let mut scope = match &base {
            Base::Stage(parent) => match scopes.get(parent.0) {
                Some(parent) => ArgScope::stage_from(&global, parent),
                None => ArgScope::stage(&global, []),
            },
            _ => ArgScope::stage(&global, []),
        };
        let (instructions, step_errors) = analyse_steps(&stage.commands, &mut scope, options.escape);
        errors.extend(step_errors);
        let mut node = StageNode {
            id,
            name: stage.name.clone(),
            base,
            platform,
            deps: Vec::new(),
            edges,
            images: Vec::new(),
            instructions,
            span: stage.span,
        };
        let all = 0..node.instructions.len();
        resolve_inputs(&mut node, &names, all, &mut errors);
        stages.push(node);
        scopes.push(scope);
    }
    let target = match &options.target {
        None => StageId(stages.len() - 1),
        Some(t) => {
            let wanted = t.to_lowercase();
            match stages.iter().find(|s| s.name.as_deref() == Some(wanted.as_str())) {
                Some(s) => s.id,
                None => {
                    let names = stages.iter().filter_map(|s| s.name.clone()).collect();
                    errors.push(GraphError::UnknownTarget { target: t.clone(), names });
                    StageId(stages.len() - 1)
                }
            }
        }
    };
    if !errors.is_empty() {
        return Err(GraphErrors(errors));
    }
    Ok(BuildGraph { stages, target, global, escape: options.escape, named_contexts: options.named_contexts.clone() })
}

/// The stage names words can refer to, by stage: a stage a named context overrides has none.
fn referable_names<'d>(dockerfile: &'d Dockerfile, options: &GraphOptions) -> Vec<Option<&'d str>> {
    dockerfile
        .stages
        .iter()
        .map(|s| s.name.as_deref().filter(|n| !options.named_contexts.contains(&n.to_lowercase())))
        .collect()
}

/// What a `--from` or `FROM` word names, seen from stage `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    Earlier(StageId),
    Itself,
    Later,
    NotAStage,
}

/// Looks `word` up among the stage names (case-insensitive).
pub(super) fn lookup_name(names: &[Option<&str>], word: &str, current: usize) -> Lookup {
    let word = word.to_lowercase();
    match names.iter().position(|n| *n == Some(word.as_str())) {
        Some(i) if i < current => Lookup::Earlier(StageId(i)),
        Some(i) if i == current => Lookup::Itself,
        Some(_) => Lookup::Later,
        None => Lookup::NotAStage,
    }
}

/// Resolves the `COPY --from` and `--mount=from` words of `node`'s steps in `steps` into
/// edges (earlier stages) or image inputs, and recomputes `deps`.
pub(super) fn resolve_inputs(
    node: &mut StageNode,
    names: &[Option<&str>],
    steps: std::ops::Range<usize>,
    errors: &mut Vec<GraphError>,
) {
    let current = node.id.0;
    let found: Vec<(String, Span, EdgeKind)> =
        node.instructions.get(steps).unwrap_or_default().iter().flat_map(step_inputs).collect();
    for (word, span, kind) in found {
        // BuildKit expands `COPY --from` with no variables at all and refuses a word that changes
        // (a variable, quotes or escapes): stages are named, not computed.
        if kind == EdgeKind::CopyFrom && word.contains(['$', '"', '\'', '\\']) {
            errors.push(GraphError::FromVariable { span });
            continue;
        }
        if let Ok(index) = word.parse::<usize>() {
            if index < current {
                node.edges.push(Edge { to: StageId(index), kind, span });
            } else {
                errors.push(GraphError::StageIndex { span, index, current });
            }
            continue;
        }
        match lookup_name(names, &word, current) {
            Lookup::Earlier(to) => node.edges.push(Edge { to, kind, span }),
            Lookup::Itself => errors.push(GraphError::SelfReference { span, name: word.to_lowercase() }),
            Lookup::Later => errors.push(GraphError::ForwardReference { span, name: word.to_lowercase() }),
            Lookup::NotAStage => node.images.push(ImageInput { image: ImageRef::parse(word), span }),
        }
    }
    let mut deps: Vec<StageId> = node.edges.iter().map(|e| e.to).collect();
    deps.sort();
    deps.dedup();
    node.deps = deps;
}

/// The `--from` words of one step with their kind.
fn step_inputs(step: &Step) -> Vec<(String, Span, EdgeKind)> {
    match &step.instruction {
        Instruction::Copy(copy) => copy.from.iter().map(|f| (f.clone(), step.span, EdgeKind::CopyFrom)).collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|m| m.parsed.as_ref().and_then(|p| p.from.clone()))
            .map(|f| (f, step.span, EdgeKind::MountFrom))
            .collect(),
        _ => Vec::new(),
    }
}
