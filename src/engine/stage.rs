//! One stage: its base, then its steps in order ([`super::step`]); the state a stage's steps
//! share and what a finished stage leaves for later stages and the export.

use std::collections::BTreeMap;

use super::history::HistoryEntry;
use super::logs::LogDir;
use super::plan::Plan;
use super::records::Recorder;
use super::scheduler::Gate;
use super::step::{StepCtx, run_step};
use super::{BuildError, BuildOptions, Builder};
use crate::dockerfile::Span;
use crate::dockerfile::args::ArgScope;
use crate::dockerfile::expand::Expander;
use crate::exec::DEFAULT_PATH;
use crate::graph::{Base, StageId, StageNode, Step};
use crate::image::chain_ids;
use crate::oci::{ContainerConfig, Descriptor, DiffId, Digest, History, ImageConfig, Platform, RootFs};
use crate::store::Lease;

/// The default `SHELL`.
pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What every stage of one build shares.
pub(crate) struct BuildCtx<'a> {
    pub builder: &'a Builder<'a>,
    pub options: &'a BuildOptions,
    pub plan: &'a Plan,
    pub logs: &'a LogDir,
    /// The build's record: each layer step's entry.
    pub record: &'a Recorder,
    pub lease: &'a Lease,
    /// Each layer step's key and record as it ends, for `--cache-to`.
    pub steps: &'a super::cache_io::StepCollector,
    /// Bounds the layer steps running at once (`--jobs`), across the platforms of a
    /// multi-platform build too.
    pub gate: &'a Gate,
}

impl BuildCtx<'_> {
    /// The timestamp written into config and history (`SOURCE_DATE_EPOCH` or now).
    pub(crate) fn created(&self) -> i64 {
        crate::image::timestamp(self.options.source_date_epoch)
    }

    /// A recorded time as this build writes it: clamped to `SOURCE_DATE_EPOCH` when set.
    pub(crate) fn clamp(&self, time: i64) -> i64 {
        match self.options.source_date_epoch {
            Some(epoch) => time.min(epoch),
            None => time,
        }
    }
}

/// Counts of one stage's layer steps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StageStats {
    pub run: usize,
    pub cached: usize,
    pub bytes: u64,
}

/// A finished stage: what a later stage (`FROM`, `COPY --from`) or the export reads.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub scope: ArgScope,
    pub shell: Vec<String>,
    pub stats: StageStats,
    /// The time of its newest layer (or of its base): see [`State::last_created`].
    pub last_created: i64,
}

/// A stage being built.
pub(crate) struct State {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub scope: ArgScope,
    pub shell: Vec<String>,
    /// Whether CMD was set by this stage (a new ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// Whether a layer step ran (or hit) yet: the first one's parent is the base.
    pub had_layer_step: bool,
    pub stats: StageStats,
    /// When the newest layer was made (a cached step keeps its original time), else the base's
    /// time: the time of every history entry written after it and of the image. A fully cached
    /// rebuild so writes the same config, hence the same image id, as BuildKit does.
    pub last_created: i64,
    /// The stage's name (or `stage-N`), for task names, log files and `--no-cache-filter`.
    pub name: String,
    /// Shown in task names: the name, or nothing when the Dockerfile has one stage (BuildKit's).
    pub label: Option<String>,
    /// The stage's platform: its `FROM --platform`, else the build's.
    pub platform: Platform,
}

impl State {
    pub(crate) fn diff_ids(&self) -> &[DiffId] {
        &self.config.rootfs.diff_ids
    }

    /// The chain id of the layers so far.
    pub(crate) fn chain_id(&self) -> Option<Digest> {
        chain_ids(self.diff_ids()).last().copied()
    }

    pub(crate) fn container(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(ContainerConfig::default)
    }

    pub(crate) fn container_ref(&self) -> ContainerConfig {
        self.config.config.clone().unwrap_or_default()
    }

    /// The working directory (absolute; `/` when unset).
    pub(crate) fn workdir(&self) -> String {
        self.config.config.as_ref().and_then(|c| c.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or("/".into())
    }

    /// Adds a history entry.
    pub(crate) fn history(&mut self, created: i64, entry: HistoryEntry) {
        self.config.history.push(History {
            created: Some(crate::oci::time::rfc3339(created)),
            created_by: Some(entry.created_by),
            comment: entry.comment,
            empty_layer: entry.empty_layer,
            author: None,
        });
    }

    /// Sets `KEY=value` in the config's `Env`, replacing an entry with the same key in place.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let env = self.container().env.get_or_insert_with(Vec::new);
        match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
}

/// Runs stage `id`; `done` holds every stage it depends on.
pub(crate) fn run_stage(
    ctx: &BuildCtx<'_>,
    id: StageId,
    done: &BTreeMap<StageId, StageResult>,
    gate: &Gate,
) -> Result<StageResult, BuildError> {
    let node = ctx.plan.graph.stage(id).expect("scheduled stages exist");
    let mut state = base_state(ctx, node, done)?;
    for (index, step) in node.instructions.iter().enumerate() {
        if ctx.builder.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let sc = StepCtx { build: ctx, node, step, index, done, gate };
        run_step(&sc, &mut state).map_err(|e| locate(e, step))?;
    }
    Ok(StageResult {
        config: state.config,
        layers: state.layers,
        scope: state.scope,
        shell: state.shell,
        stats: state.stats,
        last_created: state.last_created,
    })
}

/// Gives an error without a location the step's.
fn locate(error: BuildError, step: &Step) -> BuildError {
    if error.span().is_some() || error.is_cancelled() {
        return error;
    }
    let keyword = step.instruction.keyword();
    BuildError::Step { span: step.span, what: format!("{keyword} failed"), source: Box::new(error) }
}

fn base_state(
    ctx: &BuildCtx<'_>,
    node: &StageNode,
    done: &BTreeMap<StageId, StageResult>,
) -> Result<State, BuildError> {
    let graph = &ctx.plan.graph;
    let platform = node.platform_or(&ctx.options.platform);
    let name = node.name.clone().unwrap_or_else(|| format!("stage-{}", node.id.0));
    // A platform of several: its steps say which (BuildKit's `linux/amd64->arm64` for a stage
    // that runs on another platform than the one it builds for).
    let shown = match platform.matches(&ctx.options.platform) {
        true => platform.to_string(),
        false => format!("{platform}->{}", ctx.options.platform.to_string().trim_start_matches("linux/")),
    };
    let label = match (ctx.options.index_member, graph.stages.len() > 1) {
        (true, true) => Some(format!("{shown} {name}")),
        (true, false) => Some(shown),
        (false, true) => Some(name.clone()),
        (false, false) => None,
    };
    let (config, layers, scope, shell, last_created) = match &node.base {
        Base::Scratch => {
            let config = ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                config: Some(ContainerConfig::default()),
                rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
                ..Default::default()
            };
            let scope = ArgScope::stage(&graph.global, []);
            (config, Vec::new(), scope, default_shell(), ctx.created())
        }
        Base::Image(_) => {
            let image = ctx.plan.bases.get(&node.id).expect("planned bases are resolved");
            let mut config = image.config.clone();
            if let Some(c) = config.config.as_mut() {
                // Triggers run in this stage (the plan inserted them); the new image starts without.
                c.on_build = None;
            }
            let env = config.config.as_ref().and_then(|c| c.env.clone()).unwrap_or_default();
            let scope = ArgScope::stage(
                &graph.global,
                env.iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())),
            );
            let shell = config.config.as_ref().and_then(|c| c.shell.clone()).unwrap_or_else(default_shell);
            let created = config.created.as_deref().and_then(crate::oci::time::parse_rfc3339).unwrap_or(0);
            (config, image.manifest.layers.clone(), scope, shell, ctx.clamp(created))
        }
        Base::Stage(parent) => {
            let parent_result = done.get(parent).ok_or(BuildError::Cancelled)?;
            let mut config = parent_result.config.clone();
            if let Some(c) = config.config.as_mut() {
                c.on_build = None;
            }
            let scope = ArgScope::stage_from(&graph.global, &parent_result.scope);
            (config, parent_result.layers.clone(), scope, parent_result.shell.clone(), parent_result.last_created)
        }
    };
    let mut state = State {
        config,
        layers,
        scope,
        shell,
        cmd_set: false,
        had_layer_step: false,
        stats: StageStats::default(),
        last_created,
        name,
        label,
        platform: platform.clone(),
    };
    state.config.created = None;
    state.config.architecture = platform.architecture.clone();
    state.config.os = platform.os.clone();
    state.config.variant = platform.variant.clone();
    // BuildKit gives every image a PATH.
    let has_path = state.container_ref().env.unwrap_or_default().iter().any(|e| e.starts_with("PATH="));
    if !has_path {
        state.set_env("PATH", DEFAULT_PATH);
        if state.scope.lookup("PATH").is_none() {
            state.scope.set_env("PATH", DEFAULT_PATH);
        }
    }
    Ok(state)
}

fn default_shell() -> Vec<String> {
    DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
}

/// Expands one word against the stage's variables.
pub(crate) fn expand(ctx: &BuildCtx<'_>, state: &State, span: Span, word: &str) -> Result<String, BuildError> {
    Expander::new(ctx.plan.graph.escape, &state.scope)
        .expand_word(word)
        .map(|e| e.value)
        .map_err(|source| BuildError::expand(span, word, source))
}

/// `base` joined with `path` (absolute `path` wins), cleaned like Go's `path.Clean`; a trailing
/// `/` of `path` is kept (COPY's destination rule needs it).
pub(crate) fn join_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    let names_dir = path.ends_with('/') || path == "." || path == ".." || path.ends_with("/.") || path.ends_with("/..");
    if names_dir && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_like_docker() {
        assert_eq!(join_path("/", "app"), "/app");
        assert_eq!(join_path("/app", "src"), "/app/src");
        assert_eq!(join_path("/app", "/etc"), "/etc");
        assert_eq!(join_path("/app", "../x/./y/"), "/x/y/");
        assert_eq!(join_path("/", "."), "/");
        assert_eq!(join_path("/a", "./"), "/a/");
        assert_eq!(join_path("/a", "."), "/a/", "`COPY x .` copies into the workdir");
        assert_eq!(join_path("/a/b", ".."), "/a/");
    }
}
