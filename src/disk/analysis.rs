//! Everything `df` and `--keep-storage` decide on, read once: the walk, what each root holds,
//! the snapshots and whom they serve, the cache mounts, the builds' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::measure::{Measured, measure};
use super::{DiskError, KeptBecause};
use crate::cache::{CacheDb, CacheKey, CacheMounts};
use crate::oci::Digest;
use crate::snapshot::{Info, Kind, Snapshotter};
use crate::store::{CACHE_ROOT_PREFIX, RootHolder, Store};

/// Owner prefix of the roots of images built without a name (`image::UNTAGGED_ROOT`).
const UNTAGGED_PREFIX: &str = "untagged:";

/// An image: its tags and the untagged roots naming the same manifest or index.
#[derive(Debug, Clone)]
pub(super) struct ImageUnit {
    pub digest: Digest,
    /// References, sorted; empty for an image only an untagged root keeps.
    pub names: Vec<String>,
    /// `untagged:<hex>` roots naming it.
    pub owners: Vec<String>,
    /// Present blobs it reaches.
    pub blobs: BTreeSet<Digest>,
    /// Its manifest blob's modification time.
    pub last_used: i64,
    /// Its layer snapshots' names.
    pub snapshots: Vec<String>,
}

impl ImageUnit {
    pub fn tagged(&self) -> bool {
        !self.names.is_empty()
    }

    /// The names, or the digest of an untagged image.
    pub fn label(&self) -> String {
        if self.names.is_empty() { format!("<untagged> {}", self.digest) } else { self.names.join(", ") }
    }
}

/// A build cache entry: the root `cache:<key>`.
#[derive(Debug, Clone)]
pub(super) struct CacheUnit {
    pub owner: String,
    pub key: Option<CacheKey>,
    pub blobs: BTreeSet<Digest>,
    pub last_used: i64,
}

/// Blobs something that is never removed here pins: a lease, another module's root.
#[derive(Debug, Clone)]
pub(super) struct PinUnit {
    pub reason: KeptBecause,
    pub blobs: BTreeSet<Digest>,
}

/// A snapshot of the snapshotter in use.
#[derive(Debug, Clone)]
pub(super) struct SnapUnit {
    pub info: Info,
    pub bytes: u64,
    /// The newest creation among it and what sits on it: a snapshot is used whenever one on it
    /// is (as a lower layer).
    pub last_used: i64,
    /// Indices into [`Analysis::images`] of the tagged images using it.
    pub users: BTreeSet<usize>,
    /// Why it stays whatever images go: in use, not a layer, young, or under one of those.
    pub blocked: Option<KeptBecause>,
}

/// A cache mount id.
#[derive(Debug, Clone)]
pub(super) struct MountUnit {
    pub id: String,
    pub bytes: u64,
    pub last_used: i64,
    pub held: bool,
}

/// One build's directory under `logs/`.
#[derive(Debug, Clone)]
pub(super) struct LogUnit {
    pub id: String,
    pub bytes: u64,
    pub last_used: i64,
    pub running: bool,
}

/// The state of a store root.
#[derive(Debug, Clone)]
pub(super) struct Analysis {
    pub measured: Measured,
    pub images: Vec<ImageUnit>,
    pub caches: Vec<CacheUnit>,
    pub pins: Vec<PinUnit>,
    pub snapshots: Vec<SnapUnit>,
    /// Other snapshotters' directories and their bytes.
    pub foreign: Vec<(String, u64)>,
    pub mounts: Vec<MountUnit>,
    pub logs: Vec<LogUnit>,
}

impl Analysis {
    /// How many image, cache and pin units reach each present blob.
    pub fn holders(&self) -> BTreeMap<Digest, usize> {
        let mut refs: BTreeMap<Digest, usize> = BTreeMap::new();
        let sets = self.images.iter().map(|i| &i.blobs).chain(self.caches.iter().map(|c| &c.blobs));
        for blobs in sets.chain(self.pins.iter().map(|p| &p.blobs)) {
            for b in blobs {
                *refs.entry(*b).or_default() += 1;
            }
        }
        refs
    }

    /// Blobs nothing `--keep-storage` may remove holds: pins, and tagged images unless `all`.
    pub fn kept_blobs(&self, all: bool) -> BTreeSet<Digest> {
        let tagged = self.images.iter().filter(|i| !all && i.tagged()).map(|i| &i.blobs);
        tagged.chain(self.pins.iter().map(|p| &p.blobs)).flatten().copied().collect()
    }

    /// Bytes of a present blob.
    pub fn blob_bytes(&self, digest: &Digest) -> u64 {
        self.measured.blobs.get(digest).copied().unwrap_or(0)
    }
}

/// Reads the state of `store`'s root; snapshots younger than `min_age` are blocked.
pub(super) fn analyse(store: &Store, sn: &dyn Snapshotter, min_age: Duration) -> Result<Analysis, DiskError> {
    let root = store.root();
    // Opened (and so created) before the walk, so the walk sees what a later one will.
    let mounts = CacheMounts::open(root).map_err(DiskError::Cache)?;
    let closures = store.root_closures().map_err(DiskError::Store)?;
    let measured = measure(root)?;
    let present = |reachable: BTreeSet<Digest>| -> BTreeSet<Digest> {
        reachable.into_iter().filter(|d| measured.blobs.contains_key(d)).collect()
    };
    let used = cache_last_used(root)?;
    let mut images: BTreeMap<Digest, ImageUnit> = BTreeMap::new();
    let mut caches = Vec::new();
    let mut pins = Vec::new();
    for closure in closures {
        let blobs = present(closure.reachable);
        let digest = closure.digest;
        match closure.holder {
            RootHolder::Tags(names) => image_unit(&mut images, store, digest, blobs).names = names,
            RootHolder::Root(owner) if owner.starts_with(UNTAGGED_PREFIX) => {
                image_unit(&mut images, store, digest, blobs).owners.push(owner);
            }
            RootHolder::Root(owner) if owner.starts_with(CACHE_ROOT_PREFIX) => {
                let key: Option<CacheKey> = owner[CACHE_ROOT_PREFIX.len()..].parse().ok();
                let last_used = key
                    .and_then(|k| used.get(&k.to_string()).copied())
                    .or_else(|| mtime(&store.blob_path(&digest)))
                    .unwrap_or(0);
                caches.push(CacheUnit { owner, key, blobs, last_used });
            }
            RootHolder::Root(owner) => pins.push(PinUnit { reason: KeptBecause::Root(owner), blobs }),
            RootHolder::Lease => pins.push(PinUnit { reason: KeptBecause::Leased, blobs }),
        }
    }
    let mut images: Vec<ImageUnit> = images.into_values().collect();
    images.sort_by(|a, b| (!a.tagged(), &a.names, a.digest).cmp(&(!b.tagged(), &b.names, b.digest)));
    for image in &mut images {
        image.snapshots = match crate::image::layer_snapshot_names(store, &image.digest) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(digest = %image.digest, error = %e, "cannot read an image's layers");
                Vec::new()
            }
        };
    }
    let snapshots = snapshots(sn, &images, min_age)?;
    let kind = sn.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let foreign = measured.snapshot_kinds.iter().filter(|(k, _)| **k != kind).map(|(k, b)| (k.clone(), *b)).collect();
    let mounts = mount_units(&mounts, &measured)?;
    let logs = log_units(root, &measured);
    Ok(Analysis { measured, images, caches, pins, snapshots, foreign, mounts, logs })
}

/// The image `digest` names, added on first sight (a tag and an untagged root may name one).
fn image_unit<'a>(
    images: &'a mut BTreeMap<Digest, ImageUnit>,
    store: &Store,
    digest: Digest,
    blobs: BTreeSet<Digest>,
) -> &'a mut ImageUnit {
    images.entry(digest).or_insert_with(|| ImageUnit {
        digest,
        names: Vec::new(),
        owners: Vec::new(),
        blobs,
        last_used: mtime(&store.blob_path(&digest)).unwrap_or(0),
        snapshots: Vec::new(),
    })
}

/// `cache.db`'s last use of each record, by key text; nothing when there is no database (it is
/// not created just to be read).
fn cache_last_used(root: &Path) -> Result<BTreeMap<String, i64>, DiskError> {
    let path = root.join("cache").join("cache.db");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let db = CacheDb::open(&path).map_err(DiskError::Cache)?;
    Ok(db.last_used().map_err(DiskError::Cache)?.into_iter().map(|(k, t)| (k.to_string(), t)).collect())
}

/// The snapshots of `sn`, their users among the tagged images and what blocks them.
fn snapshots(sn: &dyn Snapshotter, images: &[ImageUnit], min_age: Duration) -> Result<Vec<SnapUnit>, DiskError> {
    let cutoff = unix_now().saturating_sub(i64::try_from(min_age.as_secs()).unwrap_or(i64::MAX));
    let mut users: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (i, image) in images.iter().enumerate().filter(|(_, i)| i.tagged()) {
        for name in &image.snapshots {
            users.entry(name.as_str()).or_default().insert(i);
        }
    }
    let mut out = Vec::new();
    for info in sn.list().map_err(DiskError::Snapshot)? {
        let bytes = match sn.usage(&info.key) {
            Ok(u) => u.size,
            Err(crate::snapshot::SnapshotError::NotFound { .. }) => continue,
            Err(e) => return Err(DiskError::Snapshot(e)),
        };
        let blocked = if info.kind != Kind::Committed {
            Some(KeptBecause::InUse)
        } else if !info.key.starts_with(crate::image::LAYER_SNAPSHOT_PREFIX) {
            Some(KeptBecause::NotLayer)
        } else if info.created > cutoff {
            Some(KeptBecause::Young)
        } else {
            None
        };
        let users = users.get(info.key.as_str()).cloned().unwrap_or_default();
        let last_used = info.created;
        out.push(SnapUnit { info, bytes, last_used, users, blocked });
    }
    let index: BTreeMap<String, usize> = out.iter().enumerate().map(|(i, s)| (s.info.key.clone(), i)).collect();
    // A parent is used when its children are.
    for i in 0..out.len() {
        let created = out[i].info.created;
        let mut parent = out[i].info.parent.clone();
        while let Some(p) = parent.and_then(|p| index.get(&p).copied()) {
            out[p].last_used = out[p].last_used.max(created);
            parent = out[p].info.parent.clone();
        }
    }
    // What sits on a blocked snapshot blocks it too.
    for i in 0..out.len() {
        if out[i].blocked.is_none() {
            continue;
        }
        let mut parent = out[i].info.parent.clone();
        while let Some(p) = parent.and_then(|p| index.get(&p).copied()) {
            if out[p].blocked.is_some() {
                break;
            }
            out[p].blocked = Some(KeptBecause::ChildInUse);
            parent = out[p].info.parent.clone();
        }
    }
    Ok(out)
}

/// The cache mounts with their bytes as the walk measured them.
fn mount_units(mounts: &CacheMounts, measured: &Measured) -> Result<Vec<MountUnit>, DiskError> {
    let mut out = Vec::new();
    for info in mounts.list().map_err(DiskError::Cache)? {
        let name = info.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = measured.mounts.get(&name).copied().unwrap_or(0);
        let held = mounts.is_held(&info.id).map_err(DiskError::Cache)?;
        out.push(MountUnit { id: info.id, bytes, last_used: info.last_used, held });
    }
    Ok(out)
}

/// The builds' directories with their bytes as the walk measured them.
fn log_units(root: &Path, measured: &Measured) -> Vec<LogUnit> {
    let logs = root.join(crate::engine::LOG_DIR);
    let mut out = Vec::new();
    for (id, bytes) in &measured.logs {
        let dir = logs.join(id);
        let last_used = mtime(&dir).unwrap_or(0);
        let running = crate::engine::records::is_running(&dir);
        out.push(LogUnit { id: id.clone(), bytes: *bytes, last_used, running });
    }
    out
}

/// Modification time in Unix seconds, not following a symlink.
fn mtime(path: &Path) -> Option<i64> {
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
    Some(modified.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
