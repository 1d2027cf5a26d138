//! The one error type of the `context` module.

use std::io;
use std::path::PathBuf;

use super::ignore::IgnoreError;
use crate::layer::LayerError;

/// Everything that can go wrong reading a build context, selecting, hashing or copying sources.
///
/// `path` fields that are `String`s are relative to the source root or the destination rootfs
/// (`/`-separated, non-UTF-8 bytes escaped); `PathBuf`s are host paths.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory (or another host path the caller gave) cannot be opened.
    #[error("failed to open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The `.dockerignore` (or `<Dockerfile>.dockerignore`) file is invalid.
    #[error("invalid ignore file {path}")]
    Ignore {
        path: PathBuf,
        #[source]
        source: IgnoreError,
    },
    /// A `COPY --exclude` pattern is invalid.
    #[error("invalid --exclude pattern")]
    Exclude {
        #[source]
        source: IgnoreError,
    },
    /// A source pattern selects nothing (a missing path, a path excluded by `.dockerignore`, or
    /// a symlink resolving to something missing inside the root).
    #[error("{pattern}: not found in build context")]
    NotFound { pattern: String },
    /// A source pattern uses `..` to climb above the source root.
    #[error("{pattern}: path outside the build context")]
    Outside { pattern: String },
    /// Too many symlinks while resolving a path (a loop or a chain longer than 40).
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    /// A source path names something that is not a directory where one is needed.
    #[error("{path}: not a directory")]
    SourceNotDir { path: String },
    /// Reading a source file, directory or link failed (B5: unreadable files).
    #[error("failed to read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A file read with a size limit is larger.
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    /// A file that must be a regular file is not.
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    /// A name that cannot be stored in a layer (catalogue B6).
    #[error("{path}: name with reserved prefix .wh. cannot be stored in an OCI layer")]
    ReservedName { path: String },
    /// A device node in the sources (catalogue B3: refused, never opened).
    #[error("{path}: device files cannot be copied")]
    Device { path: String },
    /// A file was replaced or resized while it was hashed or copied.
    #[error("{path} changed while it was being read")]
    Changed { path: String },
    /// A wildcard matched a name that is not UTF-8 (selected paths are strings).
    #[error("{path}: a name matched by a wildcard is not valid UTF-8")]
    NonUtf8 { path: String },
    /// Several sources and a destination that is not a directory.
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir { dest: String },
    /// A directory would be copied onto something that is not a directory.
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory { path: String },
    /// A non-directory would replace a directory.
    #[error("cannot replace directory {path} with a non-directory")]
    IsADirectory { path: String },
    /// A filesystem operation in the destination rootfs failed.
    #[error("failed to {op} {path} in the destination")]
    Write {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// An `ADD` archive could not be unpacked.
    #[error("failed to unpack archive {path}")]
    Unpack {
        path: String,
        #[source]
        source: LayerError,
    },
    /// A copy's layer entry could not be written.
    #[error("failed to write /{path} into the layer")]
    Layer {
        path: String,
        #[source]
        source: LayerError,
    },
    /// The tar stream given as the context could not be extracted.
    #[error("failed to extract the build context archive into {path}")]
    Extract {
        path: PathBuf,
        #[source]
        source: LayerError,
    },
    /// The sink given to `inventory` failed to take an entry.
    #[error("failed to write the context listing")]
    Sink {
        #[source]
        source: io::Error,
    },
    /// The stat cache database failed.
    #[error("stat cache {path}: failed to {op}")]
    StatCache {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A `--chown` value that cannot be parsed.
    #[error("invalid --chown value {spec:?}: {reason}")]
    BadChown { spec: String, reason: &'static str },
    /// A user name not found in the rootfs' `/etc/passwd`.
    #[error("unknown user {name}: not found in /etc/passwd of the destination")]
    UnknownUser { name: String },
    /// A group name not found in the rootfs' `/etc/group`.
    #[error("unknown group {name}: not found in /etc/group of the destination")]
    UnknownGroup { name: String },
}
