//! Root filesystem snapshots: the [`Snapshotter`] trait, its overlayfs and copy implementations,
//! and turning an active snapshot's changes into an OCI layer ([`diff`]).
//!
//! Owns `<root>/snapshots/<backend>/`: one SQLite database of snapshot records
//! (`metadata.db`), a flock (`lock`) and one directory per snapshot (`<id>/fs`, plus
//! `<id>/work` for overlay). Each backend keeps its own directory, so switching backends on an
//! existing root simply re-extracts from layers.
//!
//! Architecture invariants: committed snapshots are immutable and are the only parents; this
//! module knows nothing of Dockerfiles, builds, registries or where blobs are stored (it reads
//! and writes layer *streams* through `layer`, the caller decides where they come from and go).
//!
//! # Choosing a backend
//!
//! [`open`] probes once, when the root is opened: it mounts a tiny overlay in a scratch
//! directory under `<root>/snapshots/`. Overlay works as real root, and inside a user namespace
//! (kernel ≥ 5.11, where the mount uses `userxattr` and its own snapshot directory
//! `overlay-userxattr`, because the two flavours store opaque markers under different xattrs).
//! Where the probe fails, the copy backend is used. [`Backend`] can be forced; forcing overlay
//! where it cannot mount is an error, never a silent fallback.
//!
//! # Metadata: why SQLite
//!
//! The records are a small relational set (parent → children is the query every `remove`
//! needs) that several processes update; SQLite (WAL) gives atomic multi-row changes and is
//! already how the store keeps derivable metadata. Directory work that SQLite cannot cover
//! (creating, renaming, deleting snapshot directories) happens under the backend's flock, with
//! the database transaction committed last, and [`open`] removes directories no record owns
//! (a crash between the two), so nothing is left behind (catalogue N4).
//!
//! # What a killed process leaves
//!
//! Active snapshots and views record the process that made it (`owner`), and the temporary
//! directories callers mount on or copy into under [`Snapshotter::dir`] come from [`temp_dir`],
//! which names them after it. [`open`] unmounts and removes what dead processes left, so a build
//! killed with kill -9 costs nothing once the next command has opened the snapshotter. A library
//! user therefore cannot prepare a snapshot in one process and commit it in another.

mod copy;
pub mod diff;
mod meta;
mod mounts;
mod overlay;
mod owner;
mod treecopy;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::layer::{ApplyOptions, LayerError, WriteOptions};
use crate::oci::DiffId;

pub use copy::CopySnapshotter;
pub use diff::{DiffOutput, DiffWritten};
pub use meta::Residue;
pub use mounts::{Mounted, Mounts};
pub use overlay::OverlaySnapshotter;
pub use owner::temp_dir;

/// Most layers one overlay mount stacks (the kernel's `OVL_MAX_STACK`).
pub const OVERLAY_MAX_LAYERS: usize = mounts::MAX_LAYERS;

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Writable; becomes committed with [`Snapshotter::commit`].
    Active,
    /// Immutable; the only kind that can be a parent.
    Committed,
    /// A read-only view of a committed snapshot; can only be removed.
    View,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::Committed => "committed",
            Kind::View => "view",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "active" => Ok(Kind::Active),
            "committed" => Ok(Kind::Committed),
            "view" => Ok(Kind::View),
            other => Err(format!("unknown snapshot kind {other:?}")),
        }
    }
}

/// The record of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The key of an active snapshot or view, the name of a committed one.
    pub key: String,
    pub kind: Kind,
    /// Name of the committed parent, if any.
    pub parent: Option<String>,
    /// DiffID of the layer this committed snapshot holds the changes of, when known.
    pub diff_id: Option<DiffId>,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// Disk use of a snapshot's own data (for overlay: its upper directory only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated (`st_blocks * 512`, each inode counted once).
    pub size: u64,
    /// Inodes, the snapshot's root directory included.
    pub inodes: u64,
}

/// Which implementation a root uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Overlay,
    Copy,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Overlay => "overlay",
            Backend::Copy => "copy",
        })
    }
}

/// Everything that can go wrong with snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {key} not found")]
    NotFound { key: String },
    #[error("snapshot {key} already exists")]
    AlreadyExists { key: String },
    #[error("snapshot {key} is {kind}, not active")]
    NotActive { key: String, kind: Kind },
    #[error("parent {key} is {kind}: only committed snapshots can be parents")]
    ParentNotCommitted { key: String, kind: Kind },
    #[error("snapshot {key} is committed: committed snapshots cannot be mounted writable or changed")]
    Committed { key: String },
    #[error("snapshot {key} has {children} children: remove them first")]
    HasChildren { key: String, children: usize },
    #[error("snapshot {key} would stack {layers} layers, more than the {max} a mount can hold")]
    TooManyLayers { key: String, layers: usize, max: usize },
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot metadata {path} failed")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("snapshot metadata {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("snapshot metadata {path} is corrupt: diff id of {key}")]
    CorruptDiffId {
        path: PathBuf,
        key: String,
        #[source]
        source: crate::oci::DigestError,
    },
    #[error("failed to mount {what} on {target}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to unmount {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("overlayfs cannot be mounted under {path}")]
    OverlayUnsupported {
        path: PathBuf,
        #[source]
        source: Box<SnapshotError>,
    },
    #[error("{path} in snapshot {key} has the reserved prefix .wh. and cannot be stored in an OCI layer")]
    ReservedName { key: String, path: String },
    #[error("layer of snapshot {key} failed")]
    Layer {
        key: String,
        #[source]
        source: LayerError,
    },
}

impl SnapshotError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> SnapshotError {
        SnapshotError::Io { action, path: path.into(), source }
    }
}

/// A snapshotter: copy-on-write root filesystems, in containerd's vocabulary.
///
/// # Terminology
///
/// * A **key** names an *active* snapshot (writable) or a *view* (read-only); a **name** names
///   a *committed* snapshot. Keys and names share one key space: no key may equal a name.
/// * A **parent** is always a committed snapshot. A snapshot's content is its parent's content
///   plus its own changes; a snapshot without parent starts empty.
/// * **Mounts** ([`Mounts`]) describe how to see a snapshot: an overlay of directories or a
///   bind of one directory. The caller mounts them where it likes and unmounts them before it
///   commits or removes the snapshot.
///
/// # Lifecycle
///
/// `prepare(key, parent)` creates an active snapshot and returns its mounts; the caller changes
/// files through them; `commit(name, key)` turns it into the committed snapshot `name` (the key
/// is gone afterwards) without copying anything; `remove(key)` drops an active snapshot, a
/// view, or a committed snapshot without children. `view(key, parent)` gives read-only mounts
/// of a committed snapshot. Committed snapshots never change: `mounts` refuses them, `prepare`
/// on top of one copies or overlays, never writes into it.
///
/// # Example: unpack a layer, run a step, keep its changes as a layer
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use slipway::snapshot::{self, diff};
/// let sn = snapshot::open(std::path::Path::new("/var/lib/slipway"), None)?;
/// // A base layer becomes the committed snapshot "base" (extracted once, safely).
/// let layer = std::fs::File::open("base.tar")?;
/// snapshot::apply_layer(sn.as_ref(), "base", None, layer, &Default::default())?;
/// // A step gets a writable snapshot on top of it ...
/// let mounts = sn.prepare("step-1", Some("base"))?;
/// let target = std::path::Path::new("/run/slipway/rootfs");
/// let mounted = mounts.mount(target)?;
/// std::fs::write(target.join("hello"), b"world")?;
/// mounted.unmount()?;
/// // ... whose changes become the next layer, and the next committed snapshot, in one go.
/// let mut out = Vec::new();
/// let diff = diff::diff_and_commit(sn.as_ref(), "step-1-done", "step-1", &Default::default(), &mut out)?;
/// println!("layer {} ({} bytes)", diff.diff_id, diff.size);
/// sn.remove("step-1-done")?;
/// sn.remove("base")?;
/// # Ok(()) }
/// ```
pub trait Snapshotter: Send + Sync {
    /// The backend of this snapshotter.
    fn backend(&self) -> Backend;

    /// The directory this snapshotter owns (`<root>/snapshots/<backend>`).
    fn dir(&self) -> &Path;

    /// Creates the active snapshot `key` on top of the committed `parent` (empty without one).
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mounts, SnapshotError>;

    /// Creates the read-only view `key` of the committed `parent` (empty without one).
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Mounts, SnapshotError>;

    /// The mounts of an active snapshot or view (committed snapshots have none).
    fn mounts(&self, key: &str) -> Result<Mounts, SnapshotError>;

    /// Turns the active snapshot `key` into the committed snapshot `name`; `diff_id` records the
    /// layer its changes are. The active snapshot must not be mounted any more.
    fn commit(&self, name: &str, key: &str, diff_id: Option<DiffId>) -> Result<Info, SnapshotError>;

    /// Removes an active snapshot, a view, or a committed snapshot without children.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;

    /// The record of `key`.
    fn stat(&self, key: &str) -> Result<Info, SnapshotError>;

    /// Disk use of the snapshot's own data.
    fn usage(&self, key: &str) -> Result<Usage, SnapshotError>;

    /// Calls `f` for every snapshot, sorted by key; stops at the first error.
    fn walk(&self, f: &mut dyn FnMut(&Info) -> Result<(), SnapshotError>) -> Result<(), SnapshotError>;

    /// Writes the changes of the active snapshot `key` (relative to its parent) as a layer tar
    /// to `out`, without hashing it: for a writer that hashes what it is given itself (a store
    /// ingest), so that a layer is hashed once. The snapshot must not be mounted. See [`diff`].
    fn diff_unhashed(&self, key: &str, opts: &WriteOptions, out: &mut dyn Write) -> Result<DiffWritten, SnapshotError>;

    /// [`Snapshotter::diff_unhashed`] with the DiffID of what it wrote.
    fn diff(&self, key: &str, opts: &WriteOptions, out: &mut dyn Write) -> Result<DiffOutput, SnapshotError> {
        let mut hashing = crate::oci::HashingWriter::new(out);
        let written = self.diff_unhashed(key, opts, &mut hashing)?;
        let (_, digest, size) = hashing.finish();
        debug_assert_eq!(size, written.size);
        Ok(DiffOutput { diff_id: DiffId(digest), size, entries: written.entries })
    }

    /// Every snapshot, sorted by key.
    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        let mut all = Vec::new();
        self.walk(&mut |info| {
            all.push(info.clone());
            Ok(())
        })?;
        Ok(all)
    }
}

/// Opens the snapshotter of the store root `root`, forcing `backend` or probing for overlay.
pub fn open(root: &Path, backend: Option<Backend>) -> Result<Box<dyn Snapshotter>, SnapshotError> {
    let base = root.join("snapshots");
    mkdir_private(&base)?;
    let userns = in_user_namespace();
    // Forcing copy skips the probe: no mount is attempted at all.
    if backend == Some(Backend::Copy) {
        return Ok(Box::new(CopySnapshotter::open(&base.join("copy"))?));
    }
    match (backend, overlay::probe(&base, userns)) {
        (_, Ok(())) => Ok(Box::new(OverlaySnapshotter::open(&base, userns)?)),
        (Some(Backend::Overlay), Err(e)) => Err(SnapshotError::OverlayUnsupported { path: base, source: Box::new(e) }),
        (_, Err(e)) => {
            tracing::debug!(error = %e, "overlay unavailable, using the copy snapshotter");
            Ok(Box::new(CopySnapshotter::open(&base.join("copy"))?))
        }
    }
}

/// The snapshotters' directories under `<root>/snapshots`, one per backend (and overlay's two
/// ways of storing whiteouts).
const BACKEND_DIRS: &[&str] = &["copy", "overlay", "overlay-userxattr"];

/// What `fsck` finds in the snapshotters of a store root.
#[derive(Debug, Default)]
pub struct Check {
    /// Residue (see [`Residue`]), each with whether it was removed.
    pub residue: Vec<(Residue, bool)>,
    /// A snapshot database SQLite does not find whole, with what it found. Not repaired: its
    /// snapshots are re-made from the store's layers once the directory is removed.
    pub damaged: Vec<(PathBuf, String)>,
}

/// Lists what dead processes and interrupted work left in each snapshotter of the store root
/// `root` without removing it, or with `repair` removes it as the next open of the snapshotter
/// would. Creates nothing where no snapshotter was ever opened.
pub fn check(root: &Path, repair: bool) -> Result<Check, SnapshotError> {
    let mut out = Check::default();
    for name in BACKEND_DIRS {
        let dir = root.join("snapshots").join(name);
        if !dir.join("metadata.db").exists() {
            continue;
        }
        let meta = match meta::Meta::connect(&dir) {
            Ok(meta) => meta,
            Err(SnapshotError::Db { path, source }) if crate::sqlite::is_corruption(&source) => {
                out.damaged.push((path, source.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        let verdict = meta.quick_check()?;
        if verdict != "ok" {
            out.damaged.push((dir.join("metadata.db"), verdict));
            continue;
        }
        let mut locked = meta.lock()?;
        if repair {
            out.residue.extend(locked.reclaim()?.into_iter().map(|r| (r, true)));
        } else {
            let found = locked.residue(&mut owner::Liveness::new(&dir))?;
            out.residue.extend(found.into_iter().map(|r| (r, false)));
        }
    }
    Ok(out)
}

/// Whether overlay can be mounted for the store root `root` here (in a user namespace: with
/// `userxattr`), and why not: what [`open`] tries before it falls back to copies.
pub fn probe_overlay(root: &Path) -> Result<(), SnapshotError> {
    let base = root.join("snapshots");
    mkdir_private(&base)?;
    overlay::probe(&base, in_user_namespace())
}

/// Extracts an uncompressed layer once, through the safe [`crate::layer::apply`], into the new
/// committed snapshot `name` on top of `parent`. On error nothing named `name` exists.
pub fn apply_layer(
    sn: &dyn Snapshotter,
    name: &str,
    parent: Option<&str>,
    layer: impl Read,
    opts: &ApplyOptions,
) -> Result<Info, SnapshotError> {
    if sn.stat(name).is_ok() {
        return Err(SnapshotError::AlreadyExists { key: name.to_string() });
    }
    let key = format!("extract-{}-{}", std::process::id(), unique_suffix());
    let mounts = sn.prepare(&key, parent)?;
    let result = (|| {
        let mut hashing = crate::oci::HashingReader::new(layer);
        let layer_err = |source| SnapshotError::Layer { key: key.clone(), source };
        match mounts.plain_dir() {
            Some(dir) => {
                crate::layer::apply(&mut hashing, dir, opts).map_err(layer_err)?;
            }
            None => {
                let target = temp_dir(sn.dir(), "mnt")?;
                let mounted = mounts.mount(target.path())?;
                let applied = crate::layer::apply(&mut hashing, target.path(), opts).map_err(layer_err);
                mounted.unmount()?;
                applied?;
            }
        }
        // Read to the end so the DiffID covers the whole stream (tar padding included).
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| SnapshotError::io("read layer for", sn.dir(), e))?;
        let (_, digest, _) = hashing.finish();
        sn.commit(name, &key, Some(DiffId(digest)))
    })();
    if result.is_err() {
        if let Err(e) = sn.remove(&key) {
            tracing::warn!(key, error = %e, "failed to remove a failed extraction");
        }
    }
    result
}

/// Whether this process runs in a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Checks a key: non-empty, at most 255 bytes, no NUL.
fn check_key(key: &str) -> Result<(), SnapshotError> {
    let invalid = |reason| Err(SnapshotError::InvalidKey { key: key.to_string(), reason });
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > 255 {
        return invalid("longer than 255 bytes");
    }
    if key.contains('\0') {
        return invalid("contains a NUL byte");
    }
    Ok(())
}

/// Creates `dir` (and parents) owner-only if missing.
fn mkdir_private(dir: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(SnapshotError::io("create directory", dir, e)),
    }
}

/// Gives a new snapshot's root directory the mode and owner of its parent's root, or 0755
/// without a parent: a container's `/` must be searchable by every user it runs as (overlay
/// shows the upper directory's own attributes as the root). The store's `snapshots/`
/// directory (0700) is what keeps other users out.
fn init_root(dir: &Path, parent: Option<&Path>) -> Result<(), SnapshotError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (mode, owner) = match parent {
        Some(parent) => {
            let md = std::fs::metadata(parent).map_err(|e| SnapshotError::io("stat", parent, e))?;
            (md.mode() & 0o7777, Some((md.uid(), md.gid())))
        }
        None => (0o755, None),
    };
    if let Some((uid, gid)) = owner {
        let md = std::fs::metadata(dir).map_err(|e| SnapshotError::io("stat", dir, e))?;
        if (md.uid(), md.gid()) != (uid, gid) {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| SnapshotError::io("chown", dir, e))?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| SnapshotError::io("chmod", dir, e))
}

/// A short suffix unique within this process and unlikely across processes.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{n}-{nanos:x}")
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Disk use of the tree under `dir` (not following symlinks, hardlinks counted once).
fn tree_usage(dir: &Path) -> Result<Usage, SnapshotError> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut usage = Usage::default();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            SnapshotError::io("walk", path, e.into())
        })?;
        let md = entry.metadata().map_err(|e| SnapshotError::io("stat", entry.path(), e.into()))?;
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.size += md.blocks() * 512;
    }
    Ok(usage)
}
