//! `slipway df`: the rows, the images with their shared and unique bytes, and every item
//! `--keep-storage` weighs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::analysis::{Analysis, analyse};
use super::{Category, DiskError, Item, KeptBecause};
use crate::oci::Digest;
use crate::snapshot::Snapshotter;
use crate::store::Store;

/// The disk use of a store root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub root: PathBuf,
    /// Every byte under the root (what `du -s -B1 -x` says); the rows add up to it.
    pub total: u64,
    /// One per [`Category`], in [`Category::ALL`]'s order.
    pub rows: Vec<Row>,
    /// Tagged images first (by name), then untagged ones.
    pub images: Vec<ImageUsage>,
    /// Build cache entries, layer snapshots (and other snapshotters' directories), cache
    /// mounts and builds, each with why it stays when it does.
    pub items: Vec<Item>,
}

/// One category's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub category: Category,
    /// Images, cache entries, blobs, snapshots, cache mount ids, builds (0 for
    /// [`Category::Other`]).
    pub count: usize,
    /// Those that stay: tagged images, cache entries sharing all their blobs with kept things,
    /// pinned blobs, kept snapshots, held cache mounts, running builds.
    pub active: usize,
    pub bytes: u64,
    /// Bytes `prune --keep-storage 0` (without `--all`) would free.
    pub reclaimable: u64,
}

/// One image: a manifest or index that tags or an untagged root name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    /// Its references, sorted; empty for an untagged image.
    pub names: Vec<String>,
    /// The manifest's (or index's) digest.
    pub digest: Digest,
    /// Its blobs: manifest, config, layers and their variants.
    pub bytes: u64,
    /// The part of `bytes` other images reach too.
    pub shared: u64,
    /// The part only this image reaches.
    pub unique: u64,
    /// Unix seconds its manifest blob was written.
    pub last_used: i64,
    /// Why `--keep-storage` keeps it (without `--all`).
    pub kept: Option<KeptBecause>,
}

/// Measures the store root of `store` (snapshots of `sn`; those younger than `min_age` are
/// not reclaimable).
pub fn usage(store: &Store, sn: &dyn Snapshotter, min_age: Duration) -> Result<DiskUsage, DiskError> {
    let analysis = analyse(store, sn, min_age)?;
    Ok(DiskUsage {
        root: store.root().to_path_buf(),
        total: analysis.measured.total,
        rows: rows(&analysis),
        images: images(&analysis, false),
        items: items(&analysis, false),
    })
}

/// The images with their shared and unique bytes; `all`: tagged ones are not kept.
pub(super) fn images(a: &Analysis, all: bool) -> Vec<ImageUsage> {
    let kept = a.kept_blobs(all);
    let mut reach = std::collections::BTreeMap::<Digest, usize>::new();
    for image in &a.images {
        for b in &image.blobs {
            *reach.entry(*b).or_default() += 1;
        }
    }
    a.images
        .iter()
        .map(|image| {
            let bytes: u64 = image.blobs.iter().map(|b| a.blob_bytes(b)).sum();
            let shared: u64 = image.blobs.iter().filter(|b| reach[*b] > 1).map(|b| a.blob_bytes(b)).sum();
            let kept = if image.tagged() && !all {
                Some(KeptBecause::Tagged)
            } else if !image.blobs.is_empty() && image.blobs.iter().all(|b| kept.contains(b)) {
                Some(KeptBecause::SharedWithKept)
            } else {
                None
            };
            ImageUsage {
                names: image.names.clone(),
                digest: image.digest,
                bytes,
                shared,
                unique: bytes - shared,
                last_used: image.last_used,
                kept,
            }
        })
        .collect()
}

/// Every cache entry, snapshot, other snapshotter, cache mount and build, with why it stays.
pub(super) fn items(a: &Analysis, all: bool) -> Vec<Item> {
    let kept = a.kept_blobs(all);
    let holders = a.holders();
    let mut out = Vec::new();
    for cache in &a.caches {
        let alone: u64 = cache.blobs.iter().filter(|b| holders[*b] == 1).map(|b| a.blob_bytes(b)).sum();
        let shared_with_kept = !cache.blobs.is_empty() && cache.blobs.iter().all(|b| kept.contains(b));
        out.push(Item {
            category: Category::BuildCache,
            name: cache.owner.clone(),
            bytes: alone,
            last_used: Some(cache.last_used),
            kept: shared_with_kept.then_some(KeptBecause::SharedWithKept),
        });
    }
    for snap in &a.snapshots {
        let used_by = snap.users.iter().next().filter(|_| !all).map(|i| KeptBecause::UsedByImage(a.images[*i].label()));
        out.push(Item {
            category: Category::Snapshots,
            name: snap.info.key.clone(),
            bytes: snap.bytes,
            last_used: Some(snap.last_used),
            kept: snap.blocked.clone().or(used_by),
        });
    }
    for (kind, bytes) in &a.foreign {
        out.push(Item {
            category: Category::Snapshots,
            name: format!("snapshots/{kind}"),
            bytes: *bytes,
            last_used: None,
            kept: Some(KeptBecause::OtherSnapshotter(kind.clone())),
        });
    }
    for m in &a.mounts {
        out.push(Item {
            category: Category::CacheMounts,
            name: m.id.clone(),
            bytes: m.bytes,
            last_used: Some(m.last_used),
            kept: m.held.then_some(KeptBecause::MountHeld),
        });
    }
    for l in &a.logs {
        out.push(Item {
            category: Category::Logs,
            name: l.id.clone(),
            bytes: l.bytes,
            last_used: Some(l.last_used),
            kept: l.running.then_some(KeptBecause::Running),
        });
    }
    out
}

/// One row per category.
fn rows(a: &Analysis) -> Vec<Row> {
    let kept = a.kept_blobs(false);
    let in_images: BTreeSet<Digest> = a.images.iter().flat_map(|i| i.blobs.iter().copied()).collect();
    let in_caches: BTreeSet<Digest> = a.caches.iter().flat_map(|c| c.blobs.iter().copied()).collect();
    let pinned: BTreeSet<Digest> = a.pins.iter().flat_map(|p| p.blobs.iter().copied()).collect();
    let mut blob_rows = [Category::Images, Category::BuildCache, Category::OtherBlobs].map(|category| Row {
        category,
        count: 0,
        active: 0,
        bytes: 0,
        reclaimable: 0,
    });
    for (digest, bytes) in &a.measured.blobs {
        let row = if in_images.contains(digest) {
            0
        } else if in_caches.contains(digest) {
            1
        } else {
            2
        };
        blob_rows[row].bytes += bytes;
        if !kept.contains(digest) {
            blob_rows[row].reclaimable += bytes;
        }
        if row == 2 {
            blob_rows[2].count += 1;
            blob_rows[2].active += usize::from(pinned.contains(digest));
        }
    }
    blob_rows[0].count = a.images.len();
    blob_rows[0].active = a.images.iter().filter(|i| i.tagged()).count();
    blob_rows[1].count = a.caches.len();
    blob_rows[1].bytes += a.measured.cache_dbs;
    let items = items(a, false);
    let count = |c: Category| items.iter().filter(|i| i.category == c).count();
    let active = |c: Category| items.iter().filter(|i| i.category == c && i.kept.is_some()).count();
    let free = |c: Category| items.iter().filter(|i| i.category == c && i.kept.is_none()).map(|i| i.bytes).sum::<u64>();
    blob_rows[1].active = active(Category::BuildCache);
    let m = &a.measured;
    let mut rows = blob_rows.to_vec();
    let snapshots = a.snapshots.len();
    let kept_snapshots = a.snapshots.len() - (count(Category::Snapshots) - active(Category::Snapshots));
    rows.push(Row {
        category: Category::Snapshots,
        count: snapshots,
        active: kept_snapshots,
        bytes: m.snapshots(),
        reclaimable: free(Category::Snapshots),
    });
    for (category, bytes) in [(Category::CacheMounts, m.cache_mounts()), (Category::Logs, m.logs_total())] {
        rows.push(Row {
            category,
            count: count(category),
            active: active(category),
            bytes,
            reclaimable: free(category),
        });
    }
    rows.push(Row { category: Category::Other, count: 0, active: 0, bytes: m.other, reclaimable: 0 });
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::analysis::{CacheUnit, ImageUnit};
    use super::super::measure::Measured;
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn rows_add_up_and_images_split_shared_from_unique() {
        let blobs = BTreeMap::from([(d(1), 1000), (d(2), 2000), (d(3), 3000), (d(4), 4000)]);
        let image = |names: &[&str], held: &[u8]| ImageUnit {
            digest: d(100 + held.len() as u8),
            names: names.iter().map(|n| n.to_string()).collect(),
            owners: Vec::new(),
            blobs: held.iter().map(|n| d(*n)).collect(),
            last_used: 0,
            snapshots: Vec::new(),
        };
        let measured = Measured {
            total: 10_000 + 500 + 50 + 5,
            blobs,
            cache_dbs: 500,
            logs_other: 50,
            other: 5,
            ..Measured::default()
        };
        let a = Analysis {
            measured,
            images: vec![image(&["a"], &[1]), image(&[], &[1, 2])],
            caches: vec![CacheUnit { owner: "cache:k".into(), key: None, blobs: BTreeSet::from([d(3)]), last_used: 0 }],
            pins: Vec::new(),
            snapshots: Vec::new(),
            foreign: Vec::new(),
            mounts: Vec::new(),
            logs: Vec::new(),
        };
        let rows = rows(&a);
        assert_eq!(rows.iter().map(|r| r.bytes).sum::<u64>(), a.measured.total);
        let by = |c: Category| *rows.iter().find(|r| r.category == c).unwrap();
        assert_eq!(
            by(Category::Images),
            Row { category: Category::Images, count: 2, active: 1, bytes: 3000, reclaimable: 2000 }
        );
        assert_eq!(by(Category::BuildCache).bytes, 3500);
        assert_eq!(by(Category::BuildCache).reclaimable, 3000);
        assert_eq!(
            by(Category::OtherBlobs),
            Row { category: Category::OtherBlobs, count: 1, active: 0, bytes: 4000, reclaimable: 4000 }
        );
        let images = images(&a, false);
        assert_eq!((images[0].bytes, images[0].shared, images[0].unique), (1000, 1000, 0));
        assert_eq!((images[1].bytes, images[1].shared, images[1].unique), (3000, 1000, 2000));
        assert_eq!(images[0].kept, Some(KeptBecause::Tagged));
        assert_eq!(images[1].kept, None);
    }
}
