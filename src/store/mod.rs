//! The content-addressed store under `--root`: blobs, tags, metadata, leases, GC and fsck.
//!
//! Layout (the root is itself a valid OCI image layout, so `skopeo inspect oci:<root>:<ref>` works):
//!
//! | path | owner | what |
//! | --- | --- | --- |
//! | `oci-layout` | [`Store::open`] | `{"imageLayoutVersion":"1.0.0"}` |
//! | `blobs/sha256/<hex>` | `blob` | immutable content, mode 0444, name = sha256 of the bytes |
//! | `index.json` | `tags` | OCI index; one manifest descriptor per tag, annotated with the reference |
//! | `ingest/` | `blob`, `tags`, `scratch` | temp files and scratch directories being written, each flocked by its writer while alive; what no writer holds is residue, reclaimed by the next [`Store::open`] (`reclaim`) |
//! | `metadata.db` | `db` | SQLite (WAL): layer variants, leases, GC roots, registry upload sessions and blob sources; derivable, never holds tags |
//! | `lock` | `lock` | flock: shared for commit + lease record, exclusive for GC and tag writes |
//! | `quarantine/` | `fsck` | corrupt blobs moved aside by `fsck --repair` |
//!
//! Other modules keep their own directories beside these (never inside them): `cache/`
//! (`engine::BuildCaches`: step records, the context stat cache, cache mounts), `snapshots/`
//! (`snapshot`), `logs/` (`engine`'s step logs).
//!
//! Architecture invariants: only this module writes the entries above; a file under `blobs/` exists
//! only for complete, fsync'd, verified content (N3); GC deletes only what is unreachable from
//! tags ∪ GC roots ∪ live leases, under the exclusive lock (N5). This module knows nothing of
//! Dockerfiles, builds or registries, and never prints: it logs with `tracing` and returns
//! [`StoreError`].

mod blob;
mod db;
mod fsck;
mod gc;
mod lease;
mod lock;
mod reclaim;
mod scratch;
mod tags;
mod uploads;
mod usage;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::oci::canonical::{self, DecodeError};
use crate::oci::{Digest, OciLayout};

pub use blob::Ingest;
pub use fsck::{CorruptBlob, FsckReport, MetadataDamage, MissingBlob, OrphanBlob, PermViolation, TempResidue};
pub use gc::PruneReport;
pub use lease::{LEASE_TTL_SECS, Lease, LeaseInfo};
pub use reclaim::Reclaimed;
pub use scratch::ScratchDir;
pub use tags::Tag;
pub use uploads::UploadSession;
pub use usage::{RootClosure, RootHolder};

/// Owner prefix of GC roots registered by the build cache; `prune --all` drops them.
pub const CACHE_ROOT_PREFIX: &str = "cache:";

/// Mode of the store root (N9).
const ROOT_MODE: u32 = 0o700;
/// Mode of a committed blob (N9).
const BLOB_MODE: u32 = 0o444;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store root {path} is read-only")]
    ReadOnly { path: PathBuf },
    #[error("blob {digest} not found")]
    NotFound { digest: Digest },
    #[error("blob {digest} referenced by {referenced_by} is missing")]
    MissingBlob { digest: Digest, referenced_by: String },
    #[error("blob {digest} is not a regular file (symlink or special file at {path})")]
    NotRegular { digest: Digest, path: PathBuf },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("blob {digest} is {size} bytes, more than the {max} allowed here")]
    TooLarge { digest: Digest, size: u64, max: u64 },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("blob {digest} does not decode")]
    Decode {
        digest: Digest,
        #[source]
        source: DecodeError,
    },
    #[error("index {path} does not decode")]
    Index {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error(
        "refusing to prune: reachable blob {digest} cannot be read, so what it references is unknown (run `slipway fsck`)"
    )]
    PruneUnsafe {
        digest: Digest,
        #[source]
        source: Box<StoreError>,
    },
    #[error("metadata database {path} failed")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("metadata database {path} has schema version {found}, newer than the {supported} this slipway knows")]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
}

impl StoreError {
    /// An IO error with the path it happened on.
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io { action, path: path.into(), source }
    }

    /// The OS errno behind this error, if it is an IO error (tests and the CLI branch on ENOSPC).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Paths of the parts of a store root.
#[derive(Debug, Clone)]
struct Paths {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
    index: PathBuf,
    lock: PathBuf,
    db: PathBuf,
    quarantine: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
            index: root.join("index.json"),
            lock: root.join("lock"),
            db: root.join("metadata.db"),
            quarantine: root.join("quarantine"),
        }
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        // `Digest` is validated (64 lowercase hex), so the name can never traverse.
        self.blobs.join(digest.hex())
    }
}

/// State shared by a [`Store`] and the [`Ingest`]s and [`Lease`]s it hands out.
#[derive(Debug)]
struct Inner {
    paths: Paths,
    db: Mutex<rusqlite::Connection>,
    /// What [`Store::open`] reclaimed, until `prune` takes it into its report.
    reclaimed: Mutex<Reclaimed>,
}

/// An open store. Cheap to clone; safe to share between threads; several processes may open
/// the same root at once.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the store at `root`, creating the layout if needed. A read-only root is refused
    /// before anything is written. A corrupt metadata database is moved aside and recreated.
    /// When no other process is inside the store's critical sections, what killed processes left
    /// (temp files, scratch directories, leases) is reclaimed ([`Store::reclaimed`] says what).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store::open_as_is(root)?;
        // Residue that cannot be removed now is no reason to fail the command that opened the
        // store: it stays for the next open (and fsck names it).
        match store.reclaim_residue() {
            Ok(reclaimed) => {
                *store.inner.reclaimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = reclaimed;
            }
            Err(e) => tracing::warn!(root = %root.display(), error = %e, "could not reclaim crash residue"),
        }
        Ok(store)
    }

    /// [`Store::open`] without reclaiming anything: for `fsck`, which reports residue before it
    /// removes it.
    pub fn open_as_is(root: &Path) -> Result<Store, StoreError> {
        let paths = Paths::new(root);
        create_root(&paths.root)?;
        // Fast path under the shared lock, so a long fsck or a running build never blocks an
        // open: the layout is complete and the database healthy.
        {
            let _lock = lock::StoreLock::shared(&paths.lock)?;
            if layout_complete(&paths) {
                if let Some(conn) = db::open_existing(&paths.db)? {
                    return Ok(Store::from_parts(paths, conn));
                }
            }
        }
        // Set-up or repair under the exclusive lock: nobody else is creating or using the parts.
        let _lock = lock::StoreLock::exclusive(&paths.lock)?;
        for dir in [&paths.blobs, &paths.ingest] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        }
        let layout = paths.root.join("oci-layout");
        if !layout.exists() {
            write_file_atomic(&paths, &layout, &canonical::to_bytes(&OciLayout::default()))?;
        }
        if !paths.index.exists() {
            write_file_atomic(&paths, &paths.index, &canonical::to_bytes(&crate::oci::ImageIndex::new()))?;
        }
        let conn = db::open(&paths.db)?;
        Ok(Store::from_parts(paths, conn))
    }

    fn from_parts(paths: Paths, conn: rusqlite::Connection) -> Store {
        let inner = Inner { paths, db: Mutex::new(conn), reclaimed: Mutex::new(Reclaimed::default()) };
        Store { inner: Arc::new(inner) }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.paths.root
    }

    /// Path of the blob named `digest` (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.paths.blob(digest)
    }
}

/// Whether every part of the layout but the database exists.
fn layout_complete(paths: &Paths) -> bool {
    [&paths.blobs, &paths.ingest, &paths.index, &paths.root.join("oci-layout")].iter().all(|p| p.exists())
}

/// Creates the root (mode 0700) or checks an existing one is writable.
fn create_root(root: &Path) -> Result<(), StoreError> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {
            if is_read_only(root) {
                return Err(StoreError::ReadOnly { path: root.to_path_buf() });
            }
            Ok(())
        }
        Ok(_) => Err(StoreError::io("open store root", root, io::Error::from(io::ErrorKind::NotADirectory))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| map_create_error(parent, e))?;
            }
            match fs::DirBuilder::new().mode(ROOT_MODE).create(root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(map_create_error(root, e)),
            }
            // The umask may have narrowed the mode; set it exactly.
            fs::set_permissions(root, fs::Permissions::from_mode(ROOT_MODE))
                .map_err(|e| StoreError::io("set permissions of", root, e))
        }
        Err(e) => Err(StoreError::io("open store root", root, e)),
    }
}

fn map_create_error(path: &Path, e: io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::EROFS) {
        return StoreError::ReadOnly { path: path.to_path_buf() };
    }
    StoreError::io("create directory", path, e)
}

/// A read-only mount, or a directory this user may not write (root is only stopped by EROFS).
fn is_read_only(root: &Path) -> bool {
    if let Ok(st) = rustix::fs::statvfs(root) {
        if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
            return true;
        }
    }
    rustix::fs::access(root, rustix::fs::Access::WRITE_OK).is_err()
}

/// Writes `bytes` to `target` atomically: temp file in `ingest/`, fsync, rename, fsync dir.
fn write_file_atomic(paths: &Paths, target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = tempfile::Builder::new()
        .prefix("meta-")
        .suffix(".tmp")
        .tempfile_in(&paths.ingest)
        .map_err(|e| StoreError::io("create temp file in", &paths.ingest, e))?;
    io::Write::write_all(&mut tmp, bytes).map_err(|e| StoreError::io("write", tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| StoreError::io("fsync", tmp.path(), e))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
        .map_err(|e| StoreError::io("set permissions of", tmp.path(), e))?;
    tmp.persist(target).map_err(|e| StoreError::io("rename into place", target, e.error))?;
    let dir = target.parent().unwrap_or(&paths.root);
    fsync_dir(dir)
}

/// fsyncs a directory so a rename in it is durable.
fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let f = fs::File::open(dir).map_err(|e| StoreError::io("open directory", dir, e))?;
    f.sync_all().map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Store>();
        send_sync::<Lease>();
        fn send<T: Send>() {}
        send::<Ingest>();
    }

    #[test]
    fn open_creates_layout_with_owner_only_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let store = Store::open(&root).unwrap();
        for p in ["oci-layout", "index.json", "blobs/sha256", "ingest", "metadata.db", "lock"] {
            assert!(root.join(p).exists(), "{p} missing");
        }
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        assert_eq!(store.root(), root);
        // Reopening an existing store works, even while someone holds the shared lock (a long
        // fsck, a commit): the healthy path never needs the exclusive lock.
        drop(store);
        let _held = lock::StoreLock::shared(&root.join("lock")).unwrap();
        Store::open(&root).unwrap();
    }
}

/// Helpers for the unit tests of `store` and its submodules.
#[cfg(test)]
pub(crate) mod testutil {
    use super::Store;

    /// A fresh store in a temporary directory (kept alive by the returned guard).
    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("r")).expect("open store");
        (dir, store)
    }
}
