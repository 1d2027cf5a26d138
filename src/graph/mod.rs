//! Typed Dockerfile → [`BuildGraph`]: the stages of one build, the base of each, the edges
//! between them, the steps each runs, and the order they can run in. PURE: no IO, no printing.
//!
//! What it owns:
//! - stage lookup by name (case-insensitive, as BuildKit) and by index ([`StageId`]);
//! - the base of each stage ([`Base`]) after expanding its `FROM` with the global ARGs
//!   (meta args and `--build-arg` overrides, platform ARGs);
//! - the edges: `FROM <stage>`, `COPY --from=<stage|index>`, `RUN --mount=from=<stage|index>`
//!   (any other `--from` is an image reference, kept on the stage);
//! - `--target` and pruning: [`BuildGraph::needed`] and [`BuildGraph::levels`] only ever
//!   list the stages the target needs;
//! - `ONBUILD` triggers of a base image, inserted as data ([`BuildGraph::apply_onbuild`]);
//! - per-step bookkeeping for the builder and its cache: every [`Step`] keeps its
//!   instruction, span and the ARG/ENV names its expansion looked up.
//!
//! Architecture invariant: this module knows nothing about registries, image configs beyond
//! the strings it is handed, the filesystem or how steps run. A stage may only refer to an
//! earlier stage, so the graph is acyclic by construction.
//!
//! [`BuildGraph::context_reads`] lists where the needed stages read the build context, their
//! source words expanded as far as the Dockerfile says (`slipway context`).
//!
//! The lint rules of `slipway check` live beside it in [`lint`]; the one renderer of located
//! messages (errors and findings) is [`render`].

mod assemble;
mod error;
pub mod lint;
mod onbuild;
mod sources;
mod steps;

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::args::ArgScope;
use crate::dockerfile::{Instruction, Span};
use crate::oci::{Platform, Reference, ReferenceError};

pub use assemble::build;
pub use error::{GraphError, GraphErrors};
pub use sources::{ContextRead, Expansion, ReadKind, Word, is_remote_source};

/// A stage's position in the Dockerfile (0 = first `FROM`). Stable across pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageId(pub usize);

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// `FROM <earlier stage>`.
    Stage(StageId),
    /// An image.
    Image(ImageRef),
}

/// An image a stage names (`FROM`, `COPY --from`): the word as written (expanded) and the
/// reference it parses to, parsed once here. A word that is no reference is not a graph error
/// (`slipway check` lints such files, as BuildKit does); the builder refuses it at its line
/// before any IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub word: String,
    pub reference: Result<Reference, ReferenceError>,
}

impl ImageRef {
    /// Parses `word`.
    pub fn parse(word: impl Into<String>) -> ImageRef {
        let word = word.into();
        let reference = Reference::parse(&word);
        ImageRef { word, reference }
    }
}

/// Why one stage needs another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// `FROM <stage>`.
    From,
    /// `COPY --from=<stage>`.
    CopyFrom,
    /// `RUN --mount=from=<stage>`.
    MountFrom,
}

/// One dependency of a stage on an earlier stage, where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The stage depended on.
    pub to: StageId,
    /// How.
    pub kind: EdgeKind,
    /// The instruction that made the edge.
    pub span: Span,
}

/// An image a stage reads besides its base (`COPY --from=alpine`, `--mount=from=busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// The `--from` word as written and the reference it parses to.
    pub image: ImageRef,
    /// The instruction that names it.
    pub span: Span,
}

/// Where a step comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOrigin {
    /// A line of the Dockerfile.
    Dockerfile,
    /// An `ONBUILD` trigger of the base image, run before the stage's own lines.
    Onbuild {
        /// The trigger text from the base image's config.
        trigger: String,
    },
}

/// One instruction of a stage, ready for the builder and its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction, words raw (the builder expands them with the real base env).
    pub instruction: Instruction,
    /// Where it is written (for `ONBUILD` triggers: the stage's `FROM`).
    pub span: Span,
    /// Dockerfile line or base-image trigger.
    pub origin: StepOrigin,
    /// ARG/ENV names the step's expansion looked up, set or not; for `RUN`, the ARGs in
    /// scope too (they reach its environment). The cache key hashes exactly these values.
    pub used: BTreeSet<String>,
    /// The looked-up names that were unset with what the graph knows (the base image's
    /// environment is not known here): feeds `UndefinedVar`.
    pub unset: BTreeSet<String>,
}

/// One build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageNode {
    /// Its position.
    pub id: StageId,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base after expansion.
    pub base: Base,
    /// `FROM --platform=`, expanded.
    pub platform: Option<Platform>,
    /// Stages this one needs (sorted, unique, all earlier).
    pub deps: Vec<StageId>,
    /// Each dependency with its kind and span.
    pub edges: Vec<Edge>,
    /// Images read by `COPY --from` / `--mount=from` besides the base.
    pub images: Vec<ImageInput>,
    /// The steps, in order.
    pub instructions: Vec<Step>,
    /// The `FROM` line.
    pub span: Span,
}

impl StageNode {
    /// The stage's platform: its `FROM --platform`, else the build's.
    pub fn platform_or<'a>(&'a self, build: &'a Platform) -> &'a Platform {
        self.platform.as_ref().unwrap_or(build)
    }
}

impl StageNode {
    /// `name` or the index, for messages.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.id.to_string(),
        }
    }
}

/// Inputs of [`build`] besides the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target` stage name; `None` builds the last stage.
    pub target: Option<String>,
    /// Target platform (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`): this machine's for a build.
    pub build_platform: Platform,
    /// The escape character in effect (from the `# escape=` directive).
    pub escape: char,
    /// Names given by `--build-context` (lower case): a `FROM`, `COPY --from` or
    /// `--mount=from` word equal to one names that context, never a stage of the same name
    /// (BuildKit: the named context overrides the stage). The graph makes them image inputs;
    /// the builder knows what each is.
    pub named_contexts: std::collections::BTreeSet<String>,
}

impl Default for GraphOptions {
    fn default() -> GraphOptions {
        GraphOptions {
            build_args: BTreeMap::new(),
            target: None,
            platform: Platform::new("linux", "amd64", None),
            build_platform: Platform::new("linux", "amd64", None),
            escape: '\\',
            named_contexts: std::collections::BTreeSet::new(),
        }
    }
}

/// The stages of a build and their dependencies.
#[derive(Debug, Clone)]
pub struct BuildGraph {
    /// Every stage of the Dockerfile, indexed by [`StageId`]; unused ones are kept (so ids
    /// stay positions) but [`needed`](Self::needed) leaves them out.
    pub stages: Vec<StageNode>,
    /// The stage the build produces.
    pub target: StageId,
    /// The global scope after the meta ARGs (what `FROM` lines saw).
    pub global: ArgScope,
    /// The escape character the words were written with.
    pub escape: char,
    /// The `--build-context` names ([`GraphOptions::named_contexts`]).
    pub named_contexts: std::collections::BTreeSet<String>,
}

impl BuildGraph {
    /// The stage names words can refer to: a stage a named context overrides has none.
    pub(crate) fn referable_names(&self) -> Vec<Option<String>> {
        self.stages.iter().map(|s| s.name.clone().filter(|n| !self.named_contexts.contains(n))).collect()
    }

    /// The stage at `id`.
    pub fn stage(&self, id: StageId) -> Option<&StageNode> {
        self.stages.get(id.0)
    }

    /// The stage called `name` (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<&StageNode> {
        let name = name.to_lowercase();
        self.stages.iter().find(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// The stages the target needs, itself included, in Dockerfile order.
    pub fn needed(&self) -> Vec<StageId> {
        let mut needed = vec![false; self.stages.len()];
        let mut todo = vec![self.target];
        while let Some(id) = todo.pop() {
            match needed.get_mut(id.0) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            if let Some(stage) = self.stage(id) {
                todo.extend(stage.deps.iter().copied());
            }
        }
        needed.iter().enumerate().filter(|(_, n)| **n).map(|(i, _)| StageId(i)).collect()
    }

    /// The stages the target does not need: skipped by the build.
    pub fn skipped(&self) -> Vec<StageId> {
        let needed: BTreeSet<StageId> = self.needed().into_iter().collect();
        (0..self.stages.len()).map(StageId).filter(|id| !needed.contains(id)).collect()
    }

    /// The needed stages grouped into levels that can run in parallel: a stage is in the
    /// level after the highest level of its dependencies (level 0: no dependencies).
    pub fn levels(&self) -> Vec<Vec<StageId>> {
        let mut level_of: BTreeMap<StageId, usize> = BTreeMap::new();
        let mut levels: Vec<Vec<StageId>> = Vec::new();
        // Dependencies are always earlier stages, so Dockerfile order is a topological order.
        for id in self.needed() {
            let deps = self.stage(id).map(|s| s.deps.as_slice()).unwrap_or_default();
            let level = deps.iter().filter_map(|d| level_of.get(d)).map(|l| l + 1).max().unwrap_or(0);
            level_of.insert(id, level);
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(id);
        }
        levels
    }

    /// Stage names in order (unnamed stages by index), for messages.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(StageNode::display_name).collect()
    }
}

#[cfg(test)]
mod tests;
