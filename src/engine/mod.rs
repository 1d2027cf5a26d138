//! `build`: a Dockerfile and a build context → an image in the store.
//!
//! The pipeline, one module per concern:
//! 1. [`plan`]: text → AST → instructions → [`crate::graph::BuildGraph`]; every `FROM` image is
//!    resolved (local store, else the [`ImageSource`]) and its `ONBUILD` triggers inserted before
//!    anything runs, so every error of the file is reported before the first step.
//! 2. [`scheduler`]: the stages the target needs, each on its own thread as soon as the stages it
//!    reads are done, at most `jobs` at once; the first failure cancels the rest.
//! 3. [`stage`]: one stage's steps in order. Metadata instructions (ENV, LABEL, USER, ...) only
//!    change the image config and history. RUN ([`run`]), COPY and ADD ([`copy`]) are *layer
//!    steps*: each computes a cache key ([`crate::cache`]) from its parent's content (the chain of
//!    DiffIDs), the instruction after expansion and exactly the inputs it reads; a hit reuses the
//!    recorded layer and runs nothing, a miss says why and runs the step on a fresh snapshot
//!    whose diff becomes the layer ([`layers`]).
//! 4. [`export`]: the target stage's config, history and layers → config and manifest blobs, the
//!    tags.
//!
//! Snapshots are named by chain id (`layer:<chain id>`, as `image::unpack` names them), so a
//! base image's layers, a cached step's layer and a layer just built are the same snapshot
//! when their content is; a layer that is only in the store is extracted when a later step needs
//! its filesystem, never before (a fully cached build mounts nothing).
//!
//! Architecture invariants: the build never prints (progress goes to the [`Reporter`], one task
//! per layer step, with every output line); nothing is tagged unless every needed stage
//! succeeded; every snapshot and mount a step made is gone when the step ends, whatever happened.

mod copy;
mod export;
mod history;
mod layers;
mod logs;
mod plan;
mod run;
mod scheduler;
mod stage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::{CacheDb, CacheError};
use crate::context::{Context, ContextError, StatCache};
use crate::dockerfile::{Diagnostics, Span};
use crate::exec::{CancelToken, ExecError, Executor, ExitStatus, Network};
use crate::graph::GraphErrors;
use crate::image::{Image, ImageError};
use crate::oci::{Descriptor, Digest, Platform, Reference};
use crate::progress::Reporter;
use crate::snapshot::{SnapshotError, Snapshotter};
use crate::store::{Store, StoreError};

pub use logs::LOG_DIR;

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
    /// Layer steps (RUN, COPY, ADD) running at once across stages (`--jobs`).
    pub jobs: usize,
    /// `SOURCE_DATE_EPOCH`: clamps config, history and new layer timestamps.
    pub source_date_epoch: Option<i64>,
    /// Names given to the image (`-t`).
    pub tags: Vec<Reference>,
    /// The Dockerfile's name in messages (`Dockerfile`, `build/app.Dockerfile`).
    pub dockerfile_name: String,
    /// What identifies this context + Dockerfile across builds (the canonical context directory
    /// and Dockerfile path), for explaining cache misses. Never part of a cache key.
    pub identity: String,
}

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
            jobs: std::thread::available_parallelism().map_or(2, usize::from),
            source_date_epoch: None,
            tags: Vec::new(),
            dockerfile_name: "Dockerfile".to_string(),
            identity: String::new(),
        }
    }
}

/// Where base images come from: the store, and (when given) a registry. A seam with two
/// implementations: [`LocalImages`] and the CLI's store-then-registry source.
pub trait ImageSource: Sync {
    /// The image `reference` names (as written after `FROM`, expanded), for `platform`.
    fn image(&self, store: &Store, reference: &str, platform: &Platform) -> Result<Image, BuildError>;
}

/// Images already in the store, nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalImages;

impl ImageSource for LocalImages {
    fn image(&self, store: &Store, reference: &str, _platform: &Platform) -> Result<Image, BuildError> {
        let err = |source| BuildError::Image { reference: reference.to_string(), source: Box::new(source) };
        let not_found = || crate::image::ImageError::NotFound { name: reference.to_string() };
        match crate::image::resolve(store, reference) {
            // `name@sha256:…` pins content: any stored image with that manifest digest is it.
            Err(crate::image::ImageError::NotFound { .. }) if reference.contains('@') => {
                let (_, digest) = reference.rsplit_once('@').expect("contains @");
                let digest: Digest = digest.parse().map_err(|_| err(not_found()))?;
                let image = crate::image::resolve(store, &digest.to_string()).map_err(err)?;
                if image.manifest_descriptor.digest != digest {
                    return Err(err(not_found()));
                }
                Ok(image)
            }
            other => other.map_err(err),
        }
    }
}

/// What a build runs with.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub snapshotter: &'a dyn Snapshotter,
    pub executor: &'a dyn Executor,
    pub context: &'a Context,
    pub cache: &'a CacheDb,
    /// The persistent stat cache of context files (hashing without reading unchanged files).
    pub stat_cache: Option<&'a StatCache>,
    pub images: &'a dyn ImageSource,
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
}

/// Why a build failed. Errors of one Dockerfile line carry its span; the CLI shows the line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the Dockerfile has errors")]
    Parse { diagnostics: Diagnostics },
    #[error("the Dockerfile has errors")]
    Graph { errors: GraphErrors },
    #[error("{message}")]
    Instruction { span: Span, message: String },
    #[error("process \"{command}\" did not complete successfully: {status}")]
    RunFailed {
        span: Span,
        command: String,
        status: ExitStatus,
        /// The last lines the process wrote (stdout and stderr, interleaved as they came).
        last_lines: Vec<String>,
    },
    #[error("{what}")]
    Step {
        span: Span,
        what: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error("build cancelled")]
    Cancelled,
    #[error("base image {reference}")]
    Image {
        reference: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("image {reference} could not be pulled: {message}")]
    Pull { reference: String, message: String },
    #[error("target stage {target:?} not found")]
    Target { target: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Layers(Box<ImageError>),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("build cache")]
    Cache(#[from] CacheError),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> BuildError {
        BuildError::Layers(Box::new(e))
    }
}

impl BuildError {
    /// The Dockerfile location this error is about, if any.
    pub fn span(&self) -> Option<Span> {
        match self {
            BuildError::Instruction { span, .. }
            | BuildError::RunFailed { span, .. }
            | BuildError::Step { span, .. } => Some(*span),
            _ => None,
        }
    }

    /// Whether the build stopped because it was cancelled (a signal, or another step failed).
    pub fn is_cancelled(&self) -> bool {
        match self {
            BuildError::Cancelled | BuildError::Exec(ExecError::Cancelled) => true,
            BuildError::Step { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }

    fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> BuildError {
        BuildError::Io { action, path: path.into(), source }
    }
}

/// Builds `dockerfile` (its text) with `builder` as `options` say.
pub fn build(builder: &Builder<'_>, dockerfile: &str, options: &BuildOptions) -> Result<BuildOutput, BuildError> {
    let started = std::time::Instant::now();
    let plan = plan::plan(builder, dockerfile, options)?;
    let logs = logs::LogDir::create(builder.store)?;
    let lease = builder.store.lease("build")?;
    let ctx = stage::BuildCtx { builder, options, plan: &plan, logs: &logs, lease: &lease };
    let results = scheduler::run(&ctx)?;
    let target = results.get(&plan.graph.target).ok_or(BuildError::Cancelled)?;
    let stats = ctx_stats(&results);
    let (image, manifest) = export::export(&ctx, target)?;
    Ok(BuildOutput {
        image,
        manifest,
        steps_run: stats.0,
        steps_cached: stats.1,
        bytes_written: stats.2,
        duration: started.elapsed(),
        log_dir: logs.path().to_path_buf(),
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
