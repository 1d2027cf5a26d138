//! Disk use of a store root: what `slipway df` shows and what `slipway prune --keep-storage`
//! removes to bring the root under a cap.
//!
//! # Accounting
//!
//! One walk of the root ([`measure`](measure::measure)) counts what `du` counts: allocated bytes
//! (`st_blocks * 512`) of every entry, directories included, each inode once, never following a
//! symlink nor crossing into another filesystem. Every byte lands in exactly one [`Category`], so
//! the rows of [`DiskUsage`] add up to [`DiskUsage::total`], which is what `du -s -B1 -x <root>`
//! says. The cap of [`keep_storage`] is measured the same way, so "under the cap" means `du`
//! agrees.
//!
//! A blob is in one category, the first that applies: [`Category::Images`] (reached from a tag
//! or an untagged image's root), [`Category::BuildCache`] (from a `cache:<key>` root), else
//! [`Category::OtherBlobs`] (pinned by a lease or another module's root, or unreferenced).
//! An image's size is its blobs (manifest, config, layers and their recorded variants); a blob
//! reached from two images or more is *shared*, from one *unique*. Extracted layers are
//! [`Category::Snapshots`], counted once whichever images use them.
//!
//! # Least recently used
//!
//! What [`keep_storage`] removes goes in order of last use: a build cache entry's last hit (or
//! its creation) as `cache.db` records it; a layer snapshot's creation or that of the newest
//! snapshot on it (a parent is used whenever a child is); a cache mount's last
//! acquisition; a build's logs' last write; an image's arrival in the store (its manifest
//! blob's modification time: slipway records no other use of an image).
//!
//! Knows nothing of how a report is shown: `cli` renders [`DiskUsage`] and
//! [`KeepStorageReport`].

mod analysis;
mod df;
mod keep;
mod measure;

use std::path::PathBuf;

pub use df::{DiskUsage, ImageUsage, Row, usage};
pub use keep::{KeepStorageReport, Removed, keep_storage};

/// The parts of a store root, as `slipway df` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Blobs reached from a tag or an untagged image.
    Images,
    /// Blobs reached only from build cache roots, and `cache/`'s databases.
    BuildCache,
    /// Other blobs: pinned by a lease (a running operation) or another root, or unreferenced.
    OtherBlobs,
    /// `snapshots/`: extracted layers, and the active snapshots of running steps.
    Snapshots,
    /// `cache/mounts/`: the directories of `RUN --mount=type=cache`.
    CacheMounts,
    /// `logs/`: build records and step logs.
    Logs,
    /// Everything else: tags, the metadata database, locks, temp files, directories.
    Other,
}

impl Category {
    /// Every category, in the order `df` shows them.
    pub const ALL: [Category; 7] = [
        Category::Images,
        Category::BuildCache,
        Category::OtherBlobs,
        Category::Snapshots,
        Category::CacheMounts,
        Category::Logs,
        Category::Other,
    ];

    /// The name tables show.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Images => "images",
            Category::BuildCache => "build cache",
            Category::OtherBlobs => "other blobs",
            Category::Snapshots => "layer snapshots",
            Category::CacheMounts => "cache mounts",
            Category::Logs => "build logs",
            Category::Other => "other",
        }
    }

    /// The name JSON uses.
    pub fn key(self) -> &'static str {
        match self {
            Category::Images => "images",
            Category::BuildCache => "build_cache",
            Category::OtherBlobs => "other_blobs",
            Category::Snapshots => "snapshots",
            Category::CacheMounts => "cache_mounts",
            Category::Logs => "logs",
            Category::Other => "other",
        }
    }
}

/// Why something stays (in `df`: why it is not reclaimable; in a keep-storage report: why it
/// was not removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeptBecause {
    /// A tagged image: only `--all` lets `--keep-storage` remove one.
    Tagged,
    /// Pinned by a live lease: an operation (a build, a pull) is using it.
    Leased,
    /// Pinned by a GC root of another owner.
    Root(String),
    /// Every blob it holds is also held by something kept: removing it would free nothing.
    SharedWithKept,
    /// A layer snapshot of a tagged image (the image names it).
    UsedByImage(String),
    /// A layer snapshot younger than the minimum age (a running build may be about to use it).
    Young,
    /// An active snapshot or a view: a running step's.
    InUse,
    /// A snapshot something kept sits on.
    ChildInUse,
    /// A committed snapshot that is no layer snapshot (`layer:<chain id>`).
    NotLayer,
    /// Snapshots of a snapshotter this command does not use (`--snapshotter` picks one).
    OtherSnapshotter(String),
    /// A cache mount a build holds.
    MountHeld,
    /// A build that is running.
    Running,
    /// The store's own files: tags, metadata, locks, directories.
    Store,
    /// The store was at or under the cap without removing it.
    NotNeeded,
}

impl KeptBecause {
    /// A stable word for JSON.
    pub fn key(&self) -> &'static str {
        match self {
            KeptBecause::Tagged => "tagged",
            KeptBecause::Leased => "leased",
            KeptBecause::Root(_) => "root",
            KeptBecause::SharedWithKept => "shared_with_kept",
            KeptBecause::UsedByImage(_) => "used_by_image",
            KeptBecause::Young => "young",
            KeptBecause::InUse => "in_use",
            KeptBecause::ChildInUse => "child_in_use",
            KeptBecause::NotLayer => "not_a_layer",
            KeptBecause::OtherSnapshotter(_) => "other_snapshotter",
            KeptBecause::MountHeld => "mount_held",
            KeptBecause::Running => "running",
            KeptBecause::Store => "store",
            KeptBecause::NotNeeded => "not_needed",
        }
    }
}

impl std::fmt::Display for KeptBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeptBecause::Tagged => f.write_str("tagged (only --all removes tagged images)"),
            KeptBecause::Leased => f.write_str("held by a running operation (lease)"),
            KeptBecause::Root(owner) => write!(f, "held by GC root {owner}"),
            KeptBecause::SharedWithKept => f.write_str("its blobs belong to something kept"),
            KeptBecause::UsedByImage(name) => write!(f, "used by image {name}"),
            KeptBecause::Young => f.write_str("younger than the snapshot minimum age"),
            KeptBecause::InUse => f.write_str("in use by a running step"),
            KeptBecause::ChildInUse => f.write_str("a snapshot that is kept sits on it"),
            KeptBecause::NotLayer => f.write_str("not a layer snapshot"),
            KeptBecause::OtherSnapshotter(kind) => write!(f, "snapshots of the {kind} snapshotter, not the one in use"),
            KeptBecause::MountHeld => f.write_str("held by a running build"),
            KeptBecause::Running => f.write_str("the build is running"),
            KeptBecause::Store => f.write_str("the store's own files (tags, metadata, locks, directories)"),
            KeptBecause::NotNeeded => f.write_str("not needed to meet the cap"),
        }
    }
}

/// One thing `df -v` lists and `--keep-storage` may remove: a build cache entry, a layer
/// snapshot, a cache mount, a build's logs (images are [`ImageUsage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub category: Category,
    /// `cache:<key>`, the snapshot's name, the cache mount's id, the build's id, an image's
    /// names.
    pub name: String,
    /// Bytes removing it alone would free now.
    pub bytes: u64,
    /// Unix seconds of its last use, when known.
    pub last_used: Option<i64>,
    /// Why it stays; `None` when `--keep-storage` may remove it without `--all`.
    pub kept: Option<KeptBecause>,
}

/// What measuring or trimming a store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the store's roots")]
    Store(#[source] crate::store::StoreError),
    #[error("reading the images in the store")]
    Image(#[source] crate::image::ImageError),
    #[error("reading the layer snapshots")]
    Snapshot(#[source] crate::snapshot::SnapshotError),
    #[error("reading the build cache")]
    Cache(#[source] crate::cache::CacheError),
    #[error("reading the build logs")]
    Records(#[source] crate::engine::records::RecordError),
    #[error("removing {what}")]
    Remove {
        what: String,
        #[source]
        source: Box<DiskError>,
    },
}
