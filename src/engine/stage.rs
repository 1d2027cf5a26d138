//! One stage: its base, then its steps in order. Metadata instructions change the config and
//! history here; layer steps go to [`super::run`] and [`super::copy`] through
//! [`super::layers`].

use std::collections::BTreeMap;

use super::history::{self, HistoryEntry};
use super::logs::LogDir;
use super::plan::Plan;
use super::{BuildError, BuildOptions, Builder};
use crate::dockerfile::args::ArgScope;
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{CommandLine, Healthcheck, Instruction, Span};
use crate::exec::DEFAULT_PATH;
use crate::graph::{Base, StageId, StageNode, Step};
use crate::image::chain_ids;
use crate::oci::{ContainerConfig, Descriptor, DiffId, Digest, History, ImageConfig, RootFs};
use crate::store::Lease;

/// The default `SHELL`.
pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What every stage of one build shares.
pub(crate) struct BuildCtx<'a> {
    pub builder: &'a Builder<'a>,
    pub options: &'a BuildOptions,
    pub plan: &'a Plan,
    pub logs: &'a LogDir,
    pub lease: &'a Lease,
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
}

impl State {
    /// A layer step's task name as BuildKit writes it: `[build 3/5] RUN make` (the stage's `FROM`
    /// is step 1).
    pub(crate) fn title(&self, index: usize, total: usize, what: &str) -> String {
        let prefix = self.label.as_ref().map(|l| format!("{l} ")).unwrap_or_default();
        format!("[{prefix}{}/{}] {what}", index + 2, total + 1)
    }

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
    fn set_env(&mut self, key: &str, value: &str) {
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
    gate: &super::scheduler::Gate,
) -> Result<StageResult, BuildError> {
    let node = ctx.plan.graph.stage(id).expect("scheduled stages exist");
    let mut state = base_state(ctx, node, done)?;
    for (index, step) in node.instructions.iter().enumerate() {
        if ctx.builder.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        run_step(ctx, node, &mut state, index, step, done, gate).map_err(|e| locate(e, step))?;
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
    let platform = &ctx.options.platform;
    let name = node.name.clone().unwrap_or_else(|| format!("stage-{}", node.id.0));
    let label = (graph.stages.len() > 1).then(|| name.clone());
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
        .map_err(|e| BuildError::Instruction { span, message: e.to_string() })
}

fn run_step(
    ctx: &BuildCtx<'_>,
    node: &StageNode,
    state: &mut State,
    index: usize,
    step: &Step,
    done: &BTreeMap<StageId, StageResult>,
    gate: &super::scheduler::Gate,
) -> Result<(), BuildError> {
    let span = step.span;
    let created = state.last_created;
    let total = node.instructions.len();
    match &step.instruction {
        Instruction::Run(run) => {
            let _slot = gate.acquire(ctx.builder.cancel)?;
            super::run::run(ctx, state, index, total, step, run)
        }
        Instruction::Copy(copy) => {
            let _slot = gate.acquire(ctx.builder.cancel)?;
            super::copy::copy(ctx, state, index, total, step, &super::copy::CopySpec::from_copy(copy), done)
        }
        Instruction::Add(add) => {
            let _slot = gate.acquire(ctx.builder.cancel)?;
            super::copy::copy(ctx, state, index, total, step, &super::copy::CopySpec::from_add(add), done)
        }
        Instruction::Env(env) => {
            let mut set = Vec::new();
            for kv in &env.vars {
                let key = expand(ctx, state, span, &kv.key)?;
                let value = expand(ctx, state, span, &kv.value)?;
                set.push((key, value));
            }
            for (k, v) in &set {
                state.set_env(k, v);
                state.scope.set_env(k, v);
            }
            state.history(created, history::env(&set));
            Ok(())
        }
        Instruction::Arg(arg) => {
            let mut shown = Vec::new();
            for decl in &arg.args {
                let name = expand(ctx, state, span, &decl.name)?;
                state
                    .scope
                    .declare_raw(&name, decl.default.as_deref(), ctx.plan.graph.escape)
                    .map_err(|e| BuildError::Instruction { span, message: e.to_string() })?;
                shown.push(match &decl.default {
                    Some(d) => format!("{name}={d}"),
                    None => name,
                });
            }
            state.history(created, history::metadata(format!("ARG {}", shown.join(" "))));
            Ok(())
        }
        Instruction::Label(label) => {
            let mut set = Vec::new();
            for kv in &label.labels {
                set.push((expand(ctx, state, span, &kv.key)?, expand(ctx, state, span, &kv.value)?));
            }
            let labels = state.container().labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &set {
                labels.insert(k.clone(), v.clone());
            }
            state.history(created, history::label(&set));
            Ok(())
        }
        Instruction::Expose(expose) => {
            let mut ports = Vec::new();
            for raw in &expose.ports {
                let port = expand(ctx, state, span, raw)?;
                ports.extend(expose_ports(&port).map_err(|message| BuildError::Instruction { span, message })?);
            }
            let exposed = state.container().exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in &ports {
                exposed.insert(p.clone(), serde_json::Map::new());
            }
            state.history(created, history::expose(&ports));
            Ok(())
        }
        Instruction::User(user) => {
            let value = expand(ctx, state, span, &user.user)?;
            state.container().user = Some(value.clone());
            state.history(created, history::metadata(format!("USER {value}")));
            Ok(())
        }
        Instruction::Workdir(w) => {
            let value = expand(ctx, state, span, &w.path)?;
            let joined = join_path(&state.workdir(), &value);
            let dir = match joined.trim_end_matches('/') {
                "" => "/".to_string(),
                d => d.to_string(),
            };
            state.container().working_dir = Some(dir.clone());
            state.history(created, history::metadata(format!("WORKDIR {dir}")));
            Ok(())
        }
        Instruction::Cmd(cmd) => {
            let argv = command_argv(&state.shell, &cmd.command);
            state.container().cmd = Some(argv.clone());
            state.cmd_set = true;
            state.history(created, history::metadata(format!("CMD {}", history::go_list(&argv))));
            Ok(())
        }
        Instruction::Entrypoint(ep) => {
            let argv = command_argv(&state.shell, &ep.command);
            let cmd_set = state.cmd_set;
            let c = state.container();
            c.entrypoint = Some(argv.clone());
            if !cmd_set {
                c.cmd = None;
            }
            state.history(created, history::metadata(format!("ENTRYPOINT {}", history::go_list(&argv))));
            Ok(())
        }
        Instruction::Volume(v) => {
            let mut paths = Vec::new();
            for raw in &v.paths {
                let p = expand(ctx, state, span, raw)?;
                if p.trim().is_empty() {
                    return Err(BuildError::Instruction {
                        span,
                        message: "VOLUME specified can not be an empty string".into(),
                    });
                }
                paths.push(p);
            }
            let volumes = state.container().volumes.get_or_insert_with(BTreeMap::new);
            for p in &paths {
                volumes.insert(p.clone(), serde_json::Map::new());
            }
            state.history(created, history::metadata(format!("VOLUME [{}]", paths.join(" "))));
            Ok(())
        }
        Instruction::Shell(sh) => {
            state.shell = sh.shell.clone();
            state.container().shell = Some(sh.shell.clone());
            state.history(created, history::metadata(format!("SHELL [{}]", sh.shell.join(" "))));
            Ok(())
        }
        Instruction::Stopsignal(s) => {
            let signal = expand(ctx, state, span, &s.signal)?;
            validate_signal(&signal).map_err(|message| BuildError::Instruction { span, message })?;
            state.container().stop_signal = Some(signal.clone());
            state.history(created, history::metadata(format!("STOPSIGNAL {signal}")));
            Ok(())
        }
        Instruction::Healthcheck(h) => {
            let check = match &h.check {
                Healthcheck::None => {
                    crate::oci::Healthcheck { test: Some(vec!["NONE".to_string()]), ..Default::default() }
                }
                Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries } => {
                    let nanos = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
                    crate::oci::Healthcheck {
                        test: Some(test.clone()),
                        interval: nanos(interval),
                        timeout: nanos(timeout),
                        start_period: nanos(start_period),
                        start_interval: nanos(start_interval),
                        retries: retries.map(i64::from),
                    }
                }
            };
            state.container().healthcheck = Some(check.clone());
            state.history(created, history::healthcheck(&check));
            Ok(())
        }
        Instruction::Maintainer(m) => {
            state.config.author = Some(m.name.clone());
            state.history(created, history::metadata(format!("MAINTAINER {}", m.name)));
            Ok(())
        }
        Instruction::Onbuild(o) => {
            state.container().on_build.get_or_insert_with(Vec::new).push(o.expression.clone());
            state.history(created, history::metadata(format!("ONBUILD {}", o.expression)));
            Ok(())
        }
        Instruction::From(_) => Ok(()),
    }
}

/// Exec form as written; shell form as `SHELL + [text]`.
pub(crate) fn command_argv(shell: &[String], command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) => shell.iter().cloned().chain(std::iter::once(text.clone())).collect(),
    }
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

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, ...
fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
    let (range, proto) = match spec.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let port = |s: &str| s.parse::<u16>().map_err(|_| format!("invalid containerPort: {s}"));
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if last < first {
        return Err(format!("invalid range specified for containerPort: {range}"));
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// A signal name (`SIGTERM`, `TERM`) or number Docker accepts.
fn validate_signal(signal: &str) -> Result<(), String> {
    if signal.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
        "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
        "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    let rt = name.strip_prefix("RTMIN").or_else(|| name.strip_prefix("RTMAX"));
    if NAMES.contains(&name)
        || rt.is_some_and(|r| r.is_empty() || r.trim_start_matches(['+', '-']).parse::<u8>().is_ok())
    {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
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

    #[test]
    fn ports_expand() {
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_ports("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(expose_ports("x").is_err());
        assert!(expose_ports("80/foo").is_err());
        assert!(expose_ports("9-8").is_err());
    }

    #[test]
    fn signals() {
        assert!(validate_signal("SIGTERM").is_ok());
        assert!(validate_signal("KILL").is_ok());
        assert!(validate_signal("9").is_ok());
        assert!(validate_signal("SIGRTMIN+3").is_ok());
        assert!(validate_signal("SIGNOPE").is_err());
        assert!(validate_signal("0").is_err());
    }
}
