//! The build cache: step cache keys, the records they name, explained misses, and the
//! directories of cache mounts.
//!
//! Owns four things: the key computation ([`KeyInputs`] → [`CacheKey`], pure), the record store
//! ([`CacheDb`], `<store root>/cache/cache.db`: key → the layer a step made), the explanation
//! of a miss ([`MissReason`], by comparing a step's inputs with what its [`Slot`] was last built
//! from) and the directories `RUN --mount=type=cache` mounts ([`CacheMounts`],
//! `<store root>/cache/mounts`: per id, instances held under flocks with BuildKit's `sharing=`
//! rules, removed whole or one id at a time; the layout and the locking protocol are in `mounts.rs`). It knows nothing of Dockerfiles, snapshots or the
//! blob store: the builder decides what goes into a key, registers the blobs records reference
//! as GC roots (`cache:<key>`), and seeds and mounts the cache mount directories it is given.
//!
//! # Keys
//!
//! A key is the sha256 of a domain tag, [`KEY_VERSION`] and the step's components, each name and
//! value length-prefixed, in the order the builder added them. Changing what a component means
//! or how it is written bumps [`KEY_VERSION`] (a unit test pins a golden key): old records then
//! simply never match, with no compatibility special cases. The builder adds the components
//! most-significant first (the first one that differs explains a miss), with these names:
//!
//! | name | value |
//! | --- | --- |
//! | `parent` | chain id of the parent's layers, `scratch` when none (content, not a step id: a step re-run with the same output lets the next steps hit) |
//! | `base` | first step of a stage only: the base image's manifest digest, `scratch` or `stage:<name>` |
//! | `instruction` | the instruction after expansion |
//! | `arg:NAME` | a build ARG's value, only for the ARGs the step uses |
//! | `env` | the environment the step sees: `NAME=VALUE` entries separated by newlines (or NULs) |
//! | `user`, `workdir`, `shell`, `platform`, `network`, `mounts` | as the step runs (mount declarations, never their contents or secrets) |
//! | `sources` | COPY/ADD: the digest of the selected context files (`context::digest`) |
//! | `from` | COPY --from: the source stage's chain id or the image's digest |
//! | `chown`, `chmod` | COPY/ADD flags |
//! | `url:URL` | ADD from a URL: the sha256 of the body (then `name`, `mtime`: the file's name and `Last-Modified`) |
//! | `git:REMOTE` | ADD from git: the commit id (then `subdir`, `keep-git-dir`, `submodules`, `mtime`) |
//! | `checksum` | `ADD --checksum` |
//! | `no-cache` | a value the builder changes to force a miss (explained as `--no-cache`) |
//!
//! What never enters a key: progress settings, resource limits, proxy variables, wall-clock
//! time, absolute host paths of the context.
//!
//! **Invariant (reliability F6):** a key is computed only from the inputs the builder hashes here
//! — values it computed itself from the Dockerfile, the build arguments, the context's content
//! and digests of objects in the store. Nothing an image carries (history, labels, annotations,
//! config fields) is ever read as a key or as a record: a record is only written by
//! [`CacheDb::insert`] after the builder ran the step, so an imported or pulled image that mimics
//! cache metadata cannot produce a hit.
//!
//! # Explained misses
//!
//! After each step (hit or miss) the builder calls [`CacheDb::remember`] with the step's
//! [`Slot`] (its identity across builds: context, Dockerfile, stage, step index), its inputs and,
//! for COPY/ADD, its source file list. On the next miss [`CacheDb::explain`] compares: the first
//! differing component decides ([`MissReason`]: `previous step changed`, `ARG VERSION changed
//! (1.2 → 1.3)`, `src/main.rs changed (sha256:1f2e… → 9a0b…)`, ...). File lists are stored
//! zstd-compressed, rewritten only when they change, and compared by one walk of two sorted lists.
//! For `ADD <url>` the table `remote_sources` keeps the version of each URL last fetched
//! ([`RemoteVersion`]: digest, `ETag`, `Last-Modified`) for the next conditional request, and the
//! version before it, so a miss reads `https://… changed (etag "a" → etag "b")`.

mod db;
mod exported;
mod files;
mod key;
mod miss;
mod mounts;
mod remote;
mod steps;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use db::{CacheDb, DbDamage};
pub use exported::{CONFIG_FIELD, ExportedCache, ExportedMount, ExportedRecord, portable_slot, sanitize};
pub use key::{CacheKey, Component, KEY_VERSION, KeyInputs, Slot};
pub use miss::{FileChange, MAX_FILES_SHOWN, MissReason, diff_files};
pub use mounts::{
    CacheMountInfo, CacheMountLease, CacheMountRequest, CacheMounts, ClearedMounts, POLL, RemovedMount, Sharing,
};
pub use remote::RemoteVersion;
pub use steps::{StepLock, StepLocks};

use crate::oci::{Descriptor, DiffId, Digest};

/// What a hit gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The layer the step made; `None` when the step changed no file (an `empty_layer` history
    /// entry).
    pub layer: Option<LayerRecord>,
    /// Unix seconds the record was written (a cached step's history `created` is the original one).
    pub created: i64,
}

/// The layer of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// The digest of the layer's uncompressed tar.
    pub diff_id: DiffId,
    /// The blob holding it in the store (media type, digest, size).
    pub blob: Descriptor,
}

/// What can go wrong in the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache database {path}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cache database {path} has schema version {found}; this slipway supports up to {supported}")]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for cache mount {id:?} was cancelled")]
    MountCancelled { id: String },
    #[error("cannot compress the file list of cache slot {slot}")]
    Compress {
        slot: Digest,
        #[source]
        source: std::io::Error,
    },
}
