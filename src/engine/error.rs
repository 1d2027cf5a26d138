//! Why a build fails. Errors of one Dockerfile line carry its span (the CLI shows the line);
//! every cause stays a typed `#[source]`, so the `caused by:` chain is whole.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::context::{ChmodError, ContextError};
use crate::dockerfile::expand::ExpandError;
use crate::dockerfile::{Diagnostics, MountError, Span};
use crate::exec::{EmulationError, ExecError, ExitStatus};
use crate::graph::GraphErrors;
use crate::image::ImageError;
use crate::oci::{Reference, ReferenceError};
use crate::registry::RegistryError;
use crate::remote::RemoteError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The text does not parse or lower into instructions (every error of the file).
    #[error("the Dockerfile does not parse")]
    Syntax { diagnostics: Diagnostics },
    /// The instructions do not form a build graph (stage references, ARGs, `--target`).
    #[error("the Dockerfile's stages do not resolve")]
    Stages { errors: GraphErrors },
    /// A feature the builder does not have (or never allows), refused before any IO.
    #[error("{refusal}")]
    Refused { span: Span, refusal: Refusal },
    /// Run by an unprivileged user: refused before anything is read or written.
    #[error(
        "slipway build as an unprivileged user (uid {uid}) outside a user namespace: its layers would record wrong owners; build through the slipway command (it enters a user namespace) or as root"
    )]
    Unprivileged { uid: u32 },
    /// A layer step would mount more layers than overlay can stack (refused before any step).
    #[error(
        "this step would run on {layers} layers, more than the {max} an overlay mount can stack: merge steps, or build with --snapshotter copy"
    )]
    TooManyLayers { span: Span, layers: usize, max: usize },
    /// A `--chown`, `WORKDIR` owner or base layer needs ids the rootless build's user namespace
    /// does not map: refused before anything is written with another owner.
    #[error("{what} needs uid {uid} and gid {gid}, which this rootless build cannot represent: {}", unmapped_fix(*mapped))]
    UnmappedIds { span: Span, what: String, uid: u32, gid: u32, mapped: u32 },
    /// `rewrite-timestamp` without the epoch to rewrite to (checked before anything is read).
    #[error("rewrite-timestamp needs SOURCE_DATE_EPOCH (--source-date-epoch or the environment variable)")]
    RewriteWithoutEpoch,
    /// A failure of one platform of a multi-platform build.
    #[error("building for {platform}")]
    OnPlatform {
        platform: Box<crate::oci::Platform>,
        #[source]
        source: Box<BuildError>,
    },
    /// Something a multi-platform build does not do yet (refused before anything is read).
    #[error("{what} is not supported with several platforms yet")]
    MultiPlatformUnsupported { what: &'static str },
    /// A word of an instruction does not expand.
    #[error("cannot expand {word:?}")]
    Expand {
        span: Span,
        word: String,
        #[source]
        source: ExpandError,
    },
    /// A `FROM` or `--from` word that names no stage is no image reference either.
    #[error("{word:?} names no stage and is not a valid image reference")]
    Reference {
        span: Span,
        word: String,
        #[source]
        source: ReferenceError,
    },
    /// A `RUN --mount` value that is not valid once its variables are expanded.
    #[error("invalid --mount={value}")]
    Mount {
        span: Span,
        value: String,
        #[source]
        source: MountError,
    },
    /// A value of an instruction is not valid after expansion.
    #[error("{invalid}")]
    Invalid { span: Span, invalid: InvalidValue },
    /// `COPY --from=NAME` names neither a stage nor an image the plan resolved.
    #[error("--from={name}: no such stage or image")]
    UnknownFrom { span: Span, name: String },
    /// A RUN exited unsuccessfully.
    #[error("process \"{command}\" did not complete successfully: {status}{note}")]
    RunFailed {
        span: Span,
        command: String,
        status: ExitStatus,
        /// Empty, or what the failure may come from (a rootless build that maps only root).
        note: &'static str,
        /// The last lines the process wrote (stdout and stderr, interleaved as they came).
        last_lines: Vec<String>,
    },
    /// A failure inside one step, located at its line.
    #[error("{what}")]
    Step {
        span: Span,
        what: String,
        #[source]
        source: Box<BuildError>,
    },
    /// `ADD` of a URL or git source: the download, the checkout or `--checksum` failed.
    #[error("ADD of a remote source failed")]
    Remote {
        span: Span,
        #[source]
        source: Box<RemoteError>,
    },
    #[error("build cancelled")]
    Cancelled,
    /// A cache mount's `source=` (without `from=`) that cannot be a directory inside the cache.
    #[error("cache mount {id}: source {path} cannot be made a directory inside the cache")]
    CacheSource {
        id: String,
        path: String,
        #[source]
        source: Box<ContextError>,
    },
    /// An ssh agent or the forwarding of one.
    #[error(transparent)]
    Ssh(#[from] super::ssh::SshError),
    /// A `FROM` or `--from` image is not in the store (or cannot be read there).
    #[error("base image {}", .reference.familiar())]
    BaseImage {
        reference: Reference,
        #[source]
        source: Box<ImageError>,
    },
    /// A `--build-context NAME=<git repository>` could not be checked out.
    #[error("named context {name}")]
    GitContext {
        name: String,
        #[source]
        source: Box<crate::remote::RemoteError>,
    },
    /// A `--build-context NAME=oci-layout://…` image could not be read.
    #[error("named context {name}")]
    NamedContext {
        name: String,
        #[source]
        source: Box<ImageError>,
    },
    /// A `FROM` or `--from` image could not be pulled.
    #[error("image {} could not be pulled", .reference.familiar())]
    Pull {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },
    /// A `--cache-from` registry cache could not be read (or a layer of it fetched).
    #[error("cache from {from}")]
    CacheFrom {
        from: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// A `--cache-from type=local` layout could not be read.
    #[error("cache from {from}")]
    CacheFromLayout {
        from: String,
        #[source]
        source: Box<ImageError>,
    },
    /// The records of an imported cache do not decode.
    #[error("cache from {from}: its records do not decode")]
    CacheRecords {
        from: String,
        #[source]
        source: serde_json::Error,
    },
    /// A `--cache-to` registry export failed.
    #[error("exporting the cache to {to}")]
    CacheTo {
        to: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// A `--cache-to` export failed while writing its image.
    #[error("exporting the cache to {to}")]
    CacheToImage {
        to: String,
        #[source]
        source: Box<ImageError>,
    },
    /// A cache mount's contents could not be written into, or restored from, a cache layer.
    #[error("the contents of cache mount {id:?}")]
    CacheMountLayer {
        id: String,
        #[source]
        source: crate::layer::LayerError,
    },
    /// `type=inline` is written by the build into the image, not exported afterwards.
    #[error("an inline cache is written into the image by the build itself")]
    CacheToInline,
    /// `--cache-to type=local,tag=` that is no valid tag.
    #[error("invalid cache tag {tag:?}")]
    InvalidCacheTag {
        tag: String,
        #[source]
        source: ReferenceError,
    },
    /// `--cache-to type=inline` with `rewrite-timestamp`: the records would name layers the
    /// steps did not make.
    #[error("--cache-to type=inline cannot be combined with rewrite-timestamp")]
    InlineWithRewrite,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Reading an image or unpacking its layers into snapshots.
    #[error(transparent)]
    Image(Box<ImageError>),
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
        BuildError::Image(Box::new(e))
    }
}

impl BuildError {
    /// The Dockerfile location this error is about, if any.
    pub fn span(&self) -> Option<Span> {
        match self {
            BuildError::Refused { span, .. }
            | BuildError::Expand { span, .. }
            | BuildError::Reference { span, .. }
            | BuildError::Invalid { span, .. }
            | BuildError::Mount { span, .. }
            | BuildError::UnknownFrom { span, .. }
            | BuildError::RunFailed { span, .. }
            | BuildError::UnmappedIds { span, .. }
            | BuildError::TooManyLayers { span, .. }
            | BuildError::Remote { span, .. }
            | BuildError::Step { span, .. } => Some(*span),
            BuildError::OnPlatform { source, .. } => source.span(),
            _ => None,
        }
    }

    /// Whether the build stopped because it was cancelled (a signal, or another step failed).
    pub fn is_cancelled(&self) -> bool {
        match self {
            BuildError::Cancelled | BuildError::Exec(ExecError::Cancelled) => true,
            BuildError::Step { source, .. } | BuildError::OnPlatform { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> BuildError {
        BuildError::Io { action, path: path.into(), source }
    }

    pub(crate) fn expand(span: Span, word: impl Into<String>, source: ExpandError) -> BuildError {
        BuildError::Expand { span, word: word.into(), source }
    }
}

/// What the builder refuses to do, found in one pure pass over the graph before any IO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error(
        "ssh agent {id} is required but was not given: pass --ssh {id} (your SSH_AUTH_SOCK) or --ssh {id}=SOCKET|KEYFILE"
    )]
    SshMissing { id: String },
    #[error(
        "secret {id} is required but was not given: pass it with --secret id={id},src=FILE or --secret id={id},env=VARIABLE"
    )]
    SecretMissing { id: String },
    #[error("RUN --device is not supported (a BuildKit labs feature): remove the flag")]
    RunDevice,
    #[error("RUN --security=insecure is not allowed: pass --allow security.insecure to the build")]
    SecurityInsecure,
    #[error("the host network is not allowed: pass --allow network.host to the build")]
    HostNetwork,
    /// RUN for a platform this machine neither runs natively nor emulates (`exec::emulation`).
    #[error("RUN for a foreign platform: {error}")]
    ForeignPlatform { error: Box<EmulationError> },
    #[error("ADD --checksum needs exactly one source, a URL or a git repository")]
    AddChecksum,
    #[error("ADD --keep-git-dir applies only to git sources")]
    AddKeepGitDir,
    #[error("ADD of a URL or git repository ({url}) together with other sources is not supported yet")]
    AddRemoteMixed { url: String },
    #[error("ADD --unpack=true of a URL is not supported yet (remote files are never unpacked)")]
    AddRemoteUnpack,
    #[error("source can't be a URL for COPY ({url}): ADD fetches URLs")]
    CopyUrl { url: String },
}

/// A value of an instruction that is not valid (after expansion).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    #[error(transparent)]
    Chmod(ChmodError),
    #[error(
        "when using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    SourcesNeedDirectory { keyword: &'static str },
    #[error("invalid proto: {0}")]
    PortProtocol(String),
    #[error("invalid containerPort: {0}")]
    Port(String),
    #[error("invalid range specified for containerPort: {0}")]
    PortRange(String),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("invalid mount target {0:?}")]
    MountTarget(String),
    #[error("invalid signal: {0}")]
    Signal(String),
    #[error(
        "{keyword} --link --chown={chown}: a --link copy does not see the image's /etc/passwd or /etc/group, so it takes numeric ids (or root) only"
    )]
    LinkChownName { keyword: &'static str, chown: String },
}

/// How to give a rootless build the ids it lacks, when it maps ids `0..mapped`.
pub(crate) fn unmapped_fix(mapped: u32) -> String {
    match mapped {
        0 | 1 => format!("{NO_RANGE}; add one: {ADD_RANGE}"),
        n => format!("its subordinate range maps ids up to {} only; widen it in /etc/subuid and /etc/subgid", n - 1),
    }
}

const NO_RANGE: &str = "without a subordinate id range only root is mapped";
const ADD_RANGE: &str =
    "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER (and apt-get install uidmap for newuidmap)";

/// The note of a failed RUN in a rootless build that maps only root (`chown` there fails with
/// "Invalid argument").
pub(crate) const RUN_SINGLE_ID_NOTE: &str = " (this rootless build maps only root: a chown to another id fails with \"Invalid argument\"; a subordinate id range fixes it: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)";
