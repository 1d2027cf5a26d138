//! `engine`: a Dockerfile and a build context → an image in the store.
//!
//! The pipeline, one module per concern:
//! 1. [`plan`]: text → AST → instructions → [`crate::graph::BuildGraph`]; [`refuse`] checks, in
//!    one pure pass before any IO, what the builder cannot do; then every `FROM` image is
//!    resolved ([`images`]: the store, else a registry) and its `ONBUILD` triggers inserted
//!    before anything runs, so every error of the file is reported before the first step.
//!    [`static_graph`] is the same graph without reading any image, for inspection.
//! 2. [`scheduler`]: the stages the target needs, each on its own thread as soon as the stages it
//!    reads are done, at most `jobs` layer steps at once; the first failure cancels the rest.
//! 3. [`stage`]: one stage's steps in order, each with its [`step::StepCtx`]. Metadata
//!    instructions ([`metadata`]: ENV, LABEL, USER, ...) only change the image config and
//!    history. RUN ([`run`]), COPY and ADD ([`copy`]) and WORKDIR ([`workdir`]) are *layer steps*: each says what its cache
//!    key is made of ([`crate::cache`]: its parent's content, the instruction after expansion
//!    and exactly the inputs it reads) and what it does; [`layers::layer_step`] owns the rest of
//!    its life — a hit reuses the recorded layer and runs nothing, a miss says why and runs the
//!    step on a fresh snapshot whose diff becomes the layer.
//! 4. [`export`]: the target stage's config, history and layers (their timestamps rewritten when
//!    asked) → config and manifest blobs, the tags.
//!
//! Snapshots are named by chain id (`layer:<chain id>`, as `image::unpack` names them), so a
//! base image's layers, a cached step's layer and a layer just built are the same snapshot
//! when their content is; a layer that is only in the store is extracted when a later step needs
//! its filesystem, never before (a fully cached build mounts nothing).
//!
//! Every build a privileged caller starts leaves a record in the store beside its step logs
//! ([`records`]: when, on what, how it ended; per layer step the cache decision, duration, layer
//! bytes and exit status), which `slipway builds` reads.
//!
//! Architecture invariants: the build never prints (progress goes to the [`Reporter`], one task
//! per layer step, with every output line); nothing is tagged unless every needed stage
//! succeeded; every snapshot and mount a step made is gone when the step ends, whatever happened.

mod add_remote;
mod annotations;
mod cache_io;
mod caches;
mod copy;
mod error;
mod export;
mod history;
mod images;
mod layers;
mod logs;
mod metadata;
mod mounts;
mod owners;
mod plan;
mod platforms;
pub mod records;
mod refuse;
mod run;
mod scheduler;
mod ssh;
mod stage;
mod step;
mod workdir;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::context::Context;
use crate::exec::{CancelToken, Executor, Network, Secret};
use crate::image::Image;
use crate::oci::{Descriptor, Digest, Platform, Reference};
use crate::progress::Reporter;
use crate::snapshot::Snapshotter;
use crate::store::Store;

pub use annotations::{Annotation, AnnotationTarget, of as annotation_map};
pub use cache_io::{
    CacheExport, CacheFrom, CacheImports, CacheSteps, CacheTo, DEFAULT_MOUNTS_MAX_SIZE, ExportCtx, ExportedCacheReport,
    ImportCtx, export_cache,
};
pub use caches::BuildCaches;
pub use error::{BuildError, InvalidValue, Refusal};
pub use images::{Connect, ImageSource, LocalImages, RegistryImages};
pub use logs::LOG_DIR;
pub use plan::static_graph;
pub use platforms::{IndexOutput, build_platforms};
pub use ssh::{SshAgent, SshError};

/// What to build, besides the Dockerfile and the context.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// `--no-cache`: no layer step is looked up (results are still recorded).
    pub no_cache: bool,
    /// `--no-cache-filter`: stages whose steps are not looked up.
    pub no_cache_filter: Vec<String>,
    /// `--label`: labels added to the image config.
    pub labels: BTreeMap<String, String>,
    /// The one platform of the build.
    pub platform: Platform,
    /// The network of a RUN without `--network` (`--network` of the CLI).
    pub network: Network,
    /// `--allow network.host`: RUN may use the host's network.
    pub allow_network_host: bool,
    /// `--allow security.insecure`: `RUN --security=insecure` may run privileged.
    pub allow_security_insecure: bool,
    /// Layer steps (RUN, COPY, ADD) running at once across stages (`--jobs`).
    pub jobs: usize,
    /// `SOURCE_DATE_EPOCH`: clamps config, history and new layer timestamps.
    pub source_date_epoch: Option<i64>,
    /// Every COPY/ADD is done in a snapshot and diffed, never written straight into its layer
    /// (the reference path the direct one is checked against; `SLIPWAY_COPY_IN_SNAPSHOT=1`).
    pub copy_in_snapshot: bool,
    /// `rewrite-timestamp=true` (BuildKit's exporter option): every layer of the image, its
    /// base's too, gets its files' mtimes later than `source_date_epoch` clamped to it, and the
    /// history's times as well, so the manifest does not depend on when RUN steps or the base
    /// wrote files. Needs `source_date_epoch`.
    pub rewrite_timestamp: bool,
    /// Names given to the image (`-t`).
    pub tags: Vec<Reference>,
    /// The Dockerfile's name in messages (`Dockerfile`, `build/app.Dockerfile`).
    pub dockerfile_name: String,
    /// What identifies this context + Dockerfile across builds (the canonical context directory
    /// and Dockerfile path), for explaining cache misses. Never part of a cache key.
    pub identity: String,
    /// `--secret`: each id's value, for `RUN --mount=type=secret` (never in a key, record or
    /// message).
    pub secrets: BTreeMap<String, Secret>,
    /// `--ssh`: each id's agent socket on the host ([`SshAgent::socket`]), for
    /// `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// How the build's record names the context (default: its directory; `-` says it came as a
    /// tar stream, whose directory is a scratch copy).
    pub context_name: Option<String>,
    /// The newest builds whose records and logs the store keeps ([`records::RecordSettings`]);
    /// this build removes older ones when it starts.
    pub keep_builds: usize,
    /// `--add-host`: extra `/etc/hosts` entries of RUN steps.
    pub extra_hosts: Vec<(String, HostIp)>,
    /// `--shm-size`: the size of RUN steps' `/dev/shm` (Docker's 64 MiB when none).
    pub shm_size: Option<u64>,
    /// `--ulimit`: resource limits of RUN steps.
    pub ulimits: Vec<crate::exec::Ulimit>,
    /// `--build-context NAME=VALUE`, by name in lower case: what a `FROM`, `COPY --from` or
    /// `--mount=from` word equal to the name reads instead of a stage or image of that name.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--annotation`: each exporter takes those of what it writes (`annotations::of`).
    pub annotations: Vec<Annotation>,
    /// `ADD <url>` and git sources: connecting, response headers and each read of a body must
    /// come within it.
    pub remote_timeout: std::time::Duration,
    /// `ADD <url>`: the most bytes a download may have (catalogue A5); a larger body fails the
    /// step naming the URL and the limit.
    pub remote_max_bytes: u64,
    /// `--cache-to type=inline`: the records of the image's own steps go into its config.
    pub cache_inline: bool,
    /// One platform of a multi-platform build ([`build_platforms`]): progress names the
    /// platform, and the manifest is neither tagged nor rooted (the index is).
    pub index_member: bool,
    /// Whether the image's layers that an imported cache holds are downloaded when the image is
    /// written (the default). Without, such layers stay in the registry and the image is not
    /// kept in the store ([`BuildOutput::kept`]): a push-only build mounts them instead.
    pub fetch_final_layers: bool,
}

/// What a `--build-context` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`: an image (from the store, else its registry).
    Image(Reference),
    /// A local directory: its files, as the build context's are read (no ignore file).
    Dir(PathBuf),
    /// `oci-layout://DIR[:TAG][@sha256:…]`: an image of an OCI layout, brought into the store.
    OciLayout { dir: PathBuf, selector: crate::image::LayoutSelector },
    /// A git repository (ADD's syntax: `https://host/r.git#ref:subdir`, …): checked out once
    /// when the build is planned, then read as a directory.
    Git(crate::remote::GitSource),
}

/// The address of an `--add-host` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIp {
    Ip(std::net::IpAddr),
    /// `host-gateway`: the host as the step's network reaches it (10.0.2.2 through slirp4netns;
    /// 127.0.0.1 on the host's own network).
    Gateway,
}

/// The address slirp4netns gives the host.
pub const SLIRP_HOST_GATEWAY: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 2));

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            labels: BTreeMap::new(),
            platform: Platform::host(),
            network: Network::Default,
            allow_network_host: false,
            allow_security_insecure: false,
            jobs: std::thread::available_parallelism().map_or(2, usize::from),
            source_date_epoch: None,
            copy_in_snapshot: false,
            rewrite_timestamp: false,
            tags: Vec::new(),
            dockerfile_name: "Dockerfile".to_string(),
            identity: String::new(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            context_name: None,
            keep_builds: records::DEFAULT_KEEP,
            extra_hosts: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
            named_contexts: BTreeMap::new(),
            annotations: Vec::new(),
            remote_timeout: crate::remote::http::DEFAULT_TIMEOUT,
            remote_max_bytes: crate::remote::http::DEFAULT_MAX_BYTES,
            cache_inline: false,
            fetch_final_layers: true,
            index_member: false,
        }
    }
}

/// What a build runs with.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub snapshotter: &'a dyn Snapshotter,
    pub executor: &'a dyn Executor,
    pub context: &'a Context,
    /// The step records and the context stat cache ([`BuildCaches::open`]).
    pub caches: &'a BuildCaches,
    pub images: &'a dyn ImageSource,
    /// `--cache-from`: records consulted after the store's own ([`CacheImports::none`]).
    pub imports: &'a CacheImports,
    pub reporter: &'a Reporter,
    /// Cancelled by the caller (SIGINT, SIGTERM) or by the first failing step.
    pub cancel: &'a CancelToken,
}

/// What a successful build made.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image, as `slipway inspect` would load it.
    pub image: Image,
    /// The manifest's descriptor (what the tags point at).
    pub manifest: Descriptor,
    /// Layer steps run.
    pub steps_run: usize,
    /// Layer steps taken from the cache.
    pub steps_cached: usize,
    /// Bytes of new layers written into the store.
    pub bytes_written: u64,
    /// Wall time of the whole build.
    pub duration: Duration,
    /// Where the full log of every step was written.
    pub log_dir: PathBuf,
    /// The build's id: its record and logs for `slipway builds` ([`records::find`]).
    pub id: String,
    /// Every layer step's key and record, for `--cache-to` ([`export_cache`]).
    pub cache_steps: CacheSteps,
    /// Whether the image is in the store under its tags (else, without
    /// [`BuildOptions::fetch_final_layers`], some of its layers are only in a registry: nothing
    /// names it and `prune` may take its config and manifest once the caller has pushed it).
    pub kept: bool,
}

/// Builds `dockerfile` (its text) with `builder` as `options` say. Whatever happens after the
/// caller was found privileged, the build leaves its record in the store ([`records`]).
pub fn build(builder: &Builder<'_>, dockerfile: &str, options: &BuildOptions) -> Result<BuildOutput, BuildError> {
    let started = std::time::Instant::now();
    refuse::unprivileged()?;
    if options.rewrite_timestamp && options.source_date_epoch.is_none() {
        return Err(BuildError::RewriteWithoutEpoch);
    }
    if options.rewrite_timestamp && options.cache_inline {
        return Err(BuildError::InlineWithRewrite);
    }
    let logs = logs::LogDir::create(builder.store, options.keep_builds)?;
    let context = options.context_name.clone().unwrap_or_else(|| builder.context.root().display().to_string());
    let record = records::Recorder::start(logs.path(), logs.id(), &context, options)?;
    let result = build_recorded(builder, dockerfile, options, &logs, &record, started);
    record.finish(result.as_ref());
    result
}

fn build_recorded(
    builder: &Builder<'_>,
    dockerfile: &str,
    options: &BuildOptions,
    logs: &logs::LogDir,
    record: &records::Recorder,
    started: std::time::Instant,
) -> Result<BuildOutput, BuildError> {
    // Before the plan: an `oci-layout://` named context's blobs come in under it.
    let lease = builder.store.lease("build")?;
    let plan = plan::plan(builder, dockerfile, options, &lease)?;
    if builder.snapshotter.backend() == crate::snapshot::Backend::Overlay {
        plan::check_depth(&plan, crate::snapshot::OVERLAY_MAX_LAYERS)?;
    }
    let gate = scheduler::Gate::new(options.jobs);
    run_planned(builder, &Member { options, logs, record }, &plan, &lease, &gate, started)
}

/// One build: its options, log directory and record (a multi-platform build has one per
/// platform).
struct Member<'a> {
    options: &'a BuildOptions,
    logs: &'a logs::LogDir,
    record: &'a records::Recorder,
}

/// Runs a planned build's stages and writes its image.
fn run_planned(
    builder: &Builder<'_>,
    member: &Member<'_>,
    plan: &plan::Plan,
    lease: &crate::store::Lease,
    gate: &scheduler::Gate,
    started: std::time::Instant,
) -> Result<BuildOutput, BuildError> {
    let Member { options, logs, record } = *member;
    let steps = cache_io::StepCollector::default();
    let ctx = stage::BuildCtx { builder, options, plan, logs, record, lease, steps: &steps, gate };
    let results = scheduler::run(&ctx)?;
    let target = results.get(&plan.graph.target).ok_or(BuildError::Cancelled)?;
    let stats = ctx_stats(&results);
    let (image, manifest, kept) = export::export(&ctx, target)?;
    Ok(BuildOutput {
        image,
        manifest,
        steps_run: stats.0,
        steps_cached: stats.1,
        bytes_written: stats.2,
        duration: started.elapsed(),
        log_dir: logs.path().to_path_buf(),
        id: logs.id().to_string(),
        cache_steps: steps.take(),
        kept,
    })
}

fn ctx_stats(results: &BTreeMap<crate::graph::StageId, stage::StageResult>) -> (usize, usize, u64) {
    results.values().fold((0, 0, 0), |acc, r| (acc.0 + r.stats.run, acc.1 + r.stats.cached, acc.2 + r.stats.bytes))
}

/// The network `default` means (BuildKit's): a private namespace with outbound access.
pub fn default_network() -> Network {
    Network::Default
}

/// A digest shortened for messages: `sha256:1f2e3d4c5b6a`.
pub(crate) fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}
