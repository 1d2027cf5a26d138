//! `prune --keep-storage SIZE`: a hard cap on the store root, least recently used first.
//!
//! Each round measures the root; while it is over the cap, it plans — the removable things in
//! order of last use, each counted at what it frees *given what was planned before it* (a blob
//! goes when the last root reaching it goes; a snapshot with everything that sits on it) — until
//! the estimate is at or under the cap, then removes them and sweeps (`Store::prune`). Rounds
//! repeat (a removed image leaves snapshots nothing uses) until the walk says the root is at or
//! under the cap, or nothing removable is left.
//!
//! Removable without `--all`: build cache entries (their roots, their `cache.db` records, then
//! the blobs nothing else holds), untagged images, layer snapshots no tagged image uses (and
//! not young, not under a snapshot in use), cache mounts no build holds, the logs of builds
//! that are not running. With `--all`, tagged images too (all their tags), but only once
//! everything else is gone: an image last, least recently used first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::analysis::{Analysis, analyse};
use super::df::{images, items};
use super::{Category, DiskError, Item, KeptBecause};
use crate::cache::{CacheDb, CacheMounts, RemovedMount};
use crate::oci::{Digest, Reference};
use crate::snapshot::{SnapshotError, Snapshotter};
use crate::store::Store;

/// Rounds of measure → plan → remove before giving up (each removes something, so this only
/// stops a store that another process keeps filling).
const MAX_ROUNDS: usize = 8;

/// What [`keep_storage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepStorageReport {
    /// The cap, in bytes.
    pub cap: u64,
    /// The root's bytes before anything was removed here.
    pub before: u64,
    /// The root's bytes at the end, as the last walk measured them.
    pub after: u64,
    /// What was removed, in the order it was chosen.
    pub removed: Vec<Removed>,
    /// What stays, each with its reason (the images among them too).
    pub kept: Vec<Item>,
}

impl KeepStorageReport {
    /// Whether the root is at or under the cap.
    pub fn met(&self) -> bool {
        self.after <= self.cap
    }
}

/// One thing [`keep_storage`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub category: Category,
    /// As [`Item::name`] says it; an image's names (or `<untagged> <digest>`).
    pub name: String,
    /// What the plan counted it to free.
    pub bytes: u64,
    pub last_used: Option<i64>,
}

/// Removes the least recently used removable things until the store root (as a walk counts it:
/// see the module docs of `disk`) is at or under `cap` bytes. `all` lets it remove tagged
/// images too, after everything else. Snapshots younger than `min_age` stay. The caller runs
/// the ordinary prune first (unreferenced blobs, stale temp files); this one leaves what it cannot
/// remove, so a cap it cannot meet is no error: see [`KeepStorageReport::met`].
pub fn keep_storage(
    store: &Store,
    sn: &dyn Snapshotter,
    min_age: Duration,
    cap: u64,
    all: bool,
) -> Result<KeepStorageReport, DiskError> {
    let mut report = KeepStorageReport { cap, before: 0, after: 0, removed: Vec::new(), kept: Vec::new() };
    for round in 0..=MAX_ROUNDS {
        let analysis = analyse(store, sn, min_age)?;
        if round == 0 {
            report.before = analysis.measured.total;
        }
        report.after = analysis.measured.total;
        let picks =
            if analysis.measured.total > cap && round < MAX_ROUNDS { plan(&analysis, cap, all) } else { Vec::new() };
        if picks.is_empty() {
            report.kept = kept(&analysis, all);
            return Ok(report);
        }
        remove(store, sn, &analysis, &picks, &mut report)?;
    }
    unreachable!("the last round plans nothing")
}

/// Something the plan removes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unit {
    Cache(usize),
    Image(usize),
    /// Snapshots (indices), what sits on them included.
    Snapshots(Vec<usize>),
    Mount(usize),
    Log(usize),
}

/// A planned removal and what it frees.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pick {
    unit: Unit,
    bytes: u64,
    /// The snapshots it removes: a snapshot unit's, or an image's own.
    snapshots: Vec<usize>,
    /// Its last use, as the order saw it.
    last_used: i64,
}

/// A candidate: (tier, last used, snapshots it takes, name) orders them.
type Candidate = ((u8, i64, usize, String), Unit);

/// The removals that bring `a` to `cap` by the estimate, least recently used first.
fn plan(a: &Analysis, cap: u64, all: bool) -> Vec<Pick> {
    let mut candidates = candidates(a, all);
    candidates.sort_by(|x, y| x.0.cmp(&y.0));
    let mut refs = a.holders();
    let mut gone_snaps = BTreeSet::new();
    let mut gone_images = BTreeSet::new();
    let mut estimate = a.measured.total;
    let mut picks = Vec::new();
    for ((_, last_used, _, _), unit) in candidates {
        if estimate <= cap {
            break;
        }
        let mut bytes = 0;
        let mut snapshots = Vec::new();
        let mut drop_blobs = |blobs: &BTreeSet<Digest>| {
            for b in blobs {
                let n = refs.get_mut(b).expect("every held blob is counted");
                *n -= 1;
                if *n == 0 {
                    bytes += a.blob_bytes(b);
                }
            }
        };
        let unit = match unit {
            Unit::Cache(i) => {
                drop_blobs(&a.caches[i].blobs);
                Unit::Cache(i)
            }
            Unit::Image(i) => {
                drop_blobs(&a.images[i].blobs);
                gone_images.insert(i);
                // Its snapshots no other kept image uses go with it.
                let freed: Vec<usize> = (0..a.snapshots.len())
                    .filter(|s| !gone_snaps.contains(s))
                    .filter(|s| {
                        let snap = &a.snapshots[*s];
                        snap.blocked.is_none() && snap.users.contains(&i) && snap.users.is_subset(&gone_images)
                    })
                    .collect();
                bytes += freed.iter().map(|s| a.snapshots[*s].bytes).sum::<u64>();
                gone_snaps.extend(freed.iter().copied());
                snapshots = freed;
                Unit::Image(i)
            }
            Unit::Snapshots(set) => {
                let new: Vec<usize> = set.into_iter().filter(|s| !gone_snaps.contains(s)).collect();
                if new.is_empty() {
                    continue;
                }
                bytes += new.iter().map(|s| a.snapshots[*s].bytes).sum::<u64>();
                gone_snaps.extend(new.iter().copied());
                snapshots.clone_from(&new);
                Unit::Snapshots(new)
            }
            Unit::Mount(i) => {
                bytes += a.mounts[i].bytes;
                Unit::Mount(i)
            }
            Unit::Log(i) => {
                bytes += a.logs[i].bytes;
                Unit::Log(i)
            }
        };
        estimate = estimate.saturating_sub(bytes);
        picks.push(Pick { unit, bytes, snapshots, last_used });
    }
    picks
}

/// Everything removable, keyed for the order: tier 0 before tier 1 (tagged images, `all`
/// only), then least recently used, then fewer snapshots (a leaf before what it sits on).
fn candidates(a: &Analysis, all: bool) -> Vec<Candidate> {
    let kept_items = items(a, all);
    let kept_images = images(a, all);
    let mut out: Vec<Candidate> = Vec::new();
    let mut item = kept_items.iter();
    for (i, cache) in a.caches.iter().enumerate() {
        if item.next().is_some_and(|it| it.kept.is_none()) {
            out.push(((0, cache.last_used, 0, cache.owner.clone()), Unit::Cache(i)));
        }
    }
    for (i, snap) in a.snapshots.iter().enumerate() {
        let removable = item.next().is_some_and(|it| it.kept.is_none());
        if removable && snap.users.is_empty() {
            let subtree = subtree(a, i);
            out.push(((0, snap.last_used, subtree.len(), snap.info.key.clone()), Unit::Snapshots(subtree)));
        }
    }
    // `items` lists the other snapshotters' directories after the snapshots: never removable.
    let mut item = item.skip(a.foreign.len());
    for (i, m) in a.mounts.iter().enumerate() {
        if item.next().is_some_and(|it| it.kept.is_none()) {
            out.push(((0, m.last_used, 0, m.id.clone()), Unit::Mount(i)));
        }
    }
    for (i, l) in a.logs.iter().enumerate() {
        if item.next().is_some_and(|it| it.kept.is_none()) {
            out.push(((0, l.last_used, 0, l.id.clone()), Unit::Log(i)));
        }
    }
    for (i, (image, usage)) in a.images.iter().zip(&kept_images).enumerate() {
        if usage.kept.is_none() {
            let tier = u8::from(image.tagged());
            out.push(((tier, image.last_used, 0, image.label()), Unit::Image(i)));
        }
    }
    out
}

/// Snapshot `i` and every snapshot that sits on it, directly or not.
fn subtree(a: &Analysis, i: usize) -> Vec<usize> {
    let mut children: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (j, s) in a.snapshots.iter().enumerate() {
        if let Some(p) = &s.info.parent {
            children.entry(p.as_str()).or_default().push(j);
        }
    }
    let mut out = vec![i];
    let mut next = 0;
    while next < out.len() {
        let key = a.snapshots[out[next]].info.key.as_str();
        out.extend(children.get(key).into_iter().flatten().copied());
        next += 1;
    }
    out
}

/// Carries out `picks`, then sweeps the blobs nothing holds any more.
fn remove(
    store: &Store,
    sn: &dyn Snapshotter,
    a: &Analysis,
    picks: &[Pick],
    report: &mut KeepStorageReport,
) -> Result<(), DiskError> {
    let cache_db = cache_db(store)?;
    let mounts = CacheMounts::open(store.root()).map_err(DiskError::Cache)?;
    let mut snapshots = Vec::new();
    for pick in picks {
        let (category, name) = match &pick.unit {
            Unit::Cache(i) => {
                let cache = &a.caches[*i];
                store.remove_roots(&cache.owner).map_err(|e| removing(&cache.owner, DiskError::Store(e)))?;
                if let (Some(db), Some(key)) = (&cache_db, &cache.key) {
                    db.forget(key).map_err(|e| removing(&cache.owner, DiskError::Cache(e)))?;
                }
                (Category::BuildCache, cache.owner.clone())
            }
            Unit::Image(i) => {
                let image = &a.images[*i];
                remove_image(store, image)?;
                snapshots.extend(pick.snapshots.iter().copied());
                (Category::Images, image.label())
            }
            Unit::Snapshots(set) => {
                snapshots.extend(pick.snapshots.iter().copied());
                (Category::Snapshots, a.snapshots[set[0]].info.key.clone())
            }
            Unit::Mount(i) => {
                let m = &a.mounts[*i];
                match mounts.remove(&m.id).map_err(|e| removing(&m.id, DiskError::Cache(e)))? {
                    RemovedMount::Held => continue, // taken meanwhile: the next round says so
                    RemovedMount::Removed | RemovedMount::Absent => {}
                }
                (Category::CacheMounts, m.id.clone())
            }
            Unit::Log(i) => {
                let l = &a.logs[*i];
                match crate::engine::records::remove(store, &l.id) {
                    Ok(()) | Err(crate::engine::records::RecordError::NotFound { .. }) => {}
                    Err(crate::engine::records::RecordError::Running { .. }) => continue,
                    Err(e) => return Err(removing(&l.id, DiskError::Records(e))),
                }
                (Category::Logs, l.id.clone())
            }
        };
        report.removed.push(Removed { category, name, bytes: pick.bytes, last_used: Some(pick.last_used) });
    }
    remove_snapshots(sn, a, snapshots)?;
    store.prune(false).map_err(|e| removing("unreferenced blobs", DiskError::Store(e)))?;
    Ok(())
}

/// Untags an image (every name) and drops its untagged roots.
fn remove_image(store: &Store, image: &super::analysis::ImageUnit) -> Result<(), DiskError> {
    for name in &image.names {
        let Ok(reference) = Reference::parse(name) else { continue };
        store.remove_tag(&reference).map_err(|e| removing(name, DiskError::Store(e)))?;
    }
    for owner in &image.owners {
        store.remove_roots(owner).map_err(|e| removing(owner, DiskError::Store(e)))?;
    }
    Ok(())
}

/// Removes snapshots, what sits on others first; one that something else now sits on stays.
fn remove_snapshots(sn: &dyn Snapshotter, a: &Analysis, set: Vec<usize>) -> Result<(), DiskError> {
    let mut left: Vec<String> = set.into_iter().map(|s| a.snapshots[s].info.key.clone()).collect();
    left.sort();
    left.dedup();
    loop {
        let before = left.len();
        let mut next = Vec::new();
        for key in left {
            match sn.remove(&key) {
                Ok(()) | Err(SnapshotError::NotFound { .. }) => {}
                Err(SnapshotError::HasChildren { .. }) => next.push(key),
                Err(e) => return Err(removing(&key, DiskError::Snapshot(e))),
            }
        }
        left = next;
        if left.is_empty() || left.len() == before {
            return Ok(());
        }
    }
}

/// `cache.db` when it exists (it is not created just to forget records).
fn cache_db(store: &Store) -> Result<Option<CacheDb>, DiskError> {
    let path = store.root().join("cache").join("cache.db");
    if !path.exists() {
        return Ok(None);
    }
    CacheDb::open(&path).map(Some).map_err(DiskError::Cache)
}

/// What stays after the last round: every item and image with its reason, the removable ones
/// as not needed, plus the pinned blobs and the store's own files.
fn kept(a: &Analysis, all: bool) -> Vec<Item> {
    let mut out: Vec<Item> = images(a, all)
        .into_iter()
        .zip(&a.images)
        .map(|(usage, unit)| Item {
            category: Category::Images,
            name: unit.label(),
            bytes: usage.bytes,
            last_used: Some(usage.last_used),
            kept: usage.kept,
        })
        .collect();
    out.extend(items(a, all));
    for pin in &a.pins {
        let name = match &pin.reason {
            KeptBecause::Root(owner) => owner.clone(),
            _ => "lease".to_string(),
        };
        let bytes = pin.blobs.iter().map(|b| a.blob_bytes(b)).sum();
        out.push(Item { category: Category::OtherBlobs, name, bytes, last_used: None, kept: Some(pin.reason.clone()) });
    }
    let store_bytes = a.measured.other + a.measured.cache_dbs + a.measured.mounts_other + a.measured.logs_other;
    out.push(Item {
        category: Category::Other,
        name: "store files".to_string(),
        bytes: store_bytes + a.measured.snapshots_other,
        last_used: None,
        kept: Some(KeptBecause::Store),
    });
    for item in &mut out {
        item.kept.get_or_insert(KeptBecause::NotNeeded);
    }
    out
}

fn removing(what: &str, source: DiskError) -> DiskError {
    DiskError::Remove { what: what.to_string(), source: Box::new(source) }
}

#[cfg(test)]
mod tests {
    use super::super::analysis::{CacheUnit, ImageUnit, LogUnit, MountUnit, PinUnit, SnapUnit};
    use super::super::measure::Measured;
    use super::*;
    use crate::snapshot::{Info, Kind};

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn snap(key: &str, parent: Option<&str>, created: i64, bytes: u64) -> SnapUnit {
        let info =
            Info { key: key.into(), kind: Kind::Committed, parent: parent.map(Into::into), diff_id: None, created };
        SnapUnit { info, bytes, last_used: created, users: BTreeSet::new(), blocked: None }
    }

    /// bb (tagged, blob 1) and app (tagged, blobs 1 + 2); cache entries: one on blob 2 (shared with
    /// app: kept), two on blob 3 (only they hold it), one on blob 4; a pinned blob 5; a snapshot
    /// chain p ← c nothing uses; a free cache mount; a finished build.
    fn analysis() -> Analysis {
        let blobs = BTreeMap::from([(d(1), 1000), (d(2), 2000), (d(3), 3000), (d(4), 4000), (d(5), 5000)]);
        let image = |names: &[&str], held: &[u8], last_used| ImageUnit {
            digest: d(100 + held.len() as u8),
            names: names.iter().map(|n| n.to_string()).collect(),
            owners: Vec::new(),
            blobs: held.iter().map(|n| d(*n)).collect(),
            last_used,
            snapshots: Vec::new(),
        };
        let cache = |owner: &str, blob: u8, last_used| CacheUnit {
            owner: owner.into(),
            key: None,
            blobs: BTreeSet::from([d(blob)]),
            last_used,
        };
        let mut a = Analysis {
            measured: Measured { total: 100_000, blobs, ..Measured::default() },
            images: vec![image(&["bb"], &[1], 5), image(&["app"], &[1, 2], 1)],
            caches: vec![
                cache("cache:a", 2, 1),
                cache("cache:b", 3, 10),
                cache("cache:c", 3, 20),
                cache("cache:d", 4, 30),
            ],
            pins: vec![PinUnit { reason: KeptBecause::Leased, blobs: BTreeSet::from([d(5)]) }],
            snapshots: vec![snap("layer:p", None, 15, 500), snap("layer:c", Some("layer:p"), 25, 700)],
            foreign: Vec::new(),
            mounts: vec![MountUnit { id: "m".into(), bytes: 6000, last_used: 40, held: false }],
            logs: vec![LogUnit { id: "1-2-3".into(), bytes: 100, last_used: 50, running: false }],
        };
        a.snapshots[0].last_used = 25; // c sits on p
        a
    }

    fn names(a: &Analysis, picks: &[Pick]) -> Vec<(String, u64)> {
        picks
            .iter()
            .map(|p| {
                let name = match &p.unit {
                    Unit::Cache(i) => a.caches[*i].owner.clone(),
                    Unit::Image(i) => a.images[*i].label(),
                    Unit::Snapshots(s) => a.snapshots[s[0]].info.key.clone(),
                    Unit::Mount(i) => a.mounts[*i].id.clone(),
                    Unit::Log(i) => a.logs[*i].id.clone(),
                };
                (name, p.bytes)
            })
            .collect()
    }

    #[test]
    fn least_recently_used_first_until_the_estimate_fits() {
        let a = analysis();
        // cache:a shares its blob with a tagged image: it is never picked, it would free nothing.
        // cache:b frees nothing alone (cache:c holds blob 3 too), cache:c then frees it; the
        // leaf snapshot goes before its parent.
        let all = names(&a, &plan(&a, 0, false));
        assert_eq!(
            all,
            vec![
                ("cache:b".to_string(), 0),
                ("cache:c".to_string(), 3000),
                ("layer:c".to_string(), 700),
                ("layer:p".to_string(), 500),
                ("cache:d".to_string(), 4000),
                ("m".to_string(), 6000),
                ("1-2-3".to_string(), 100),
            ]
        );
        // A cap 3000 bytes under the total stops once cache:c went.
        assert_eq!(names(&a, &plan(&a, 97_000, false)).len(), 2);
        assert!(plan(&a, 100_000, false).is_empty(), "at the cap already");
    }

    #[test]
    fn all_takes_tagged_images_last_least_recently_used_first() {
        let a = analysis();
        let all = names(&a, &plan(&a, 0, true));
        // With --all nothing is kept for a tagged image's sake: cache:a is a candidate (LRU first).
        assert_eq!(all.first(), Some(&("cache:a".to_string(), 0)));
        let tail: Vec<_> = all[all.len() - 2..].to_vec();
        assert_eq!(tail, vec![("app".to_string(), 2000), ("bb".to_string(), 1000)], "{all:?}");
        assert!(!all.iter().any(|(n, _)| n == "lease"));
    }

    #[test]
    fn blocked_and_used_snapshots_and_held_things_stay() {
        let mut a = analysis();
        a.snapshots[1].blocked = Some(KeptBecause::Young);
        a.snapshots[0].blocked = Some(KeptBecause::ChildInUse);
        a.mounts[0].held = true;
        a.logs[0].running = true;
        let picked = names(&a, &plan(&a, 0, false));
        assert_eq!(picked.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["cache:b", "cache:c", "cache:d"]);
        let kept = kept(&a, false);
        let reason = |name: &str| kept.iter().find(|i| i.name == name).and_then(|i| i.kept.clone());
        assert_eq!(reason("bb"), Some(KeptBecause::Tagged));
        assert_eq!(reason("cache:a"), Some(KeptBecause::SharedWithKept));
        assert_eq!(reason("layer:c"), Some(KeptBecause::Young));
        assert_eq!(reason("layer:p"), Some(KeptBecause::ChildInUse));
        assert_eq!(reason("m"), Some(KeptBecause::MountHeld));
        assert_eq!(reason("1-2-3"), Some(KeptBecause::Running));
        assert_eq!(reason("lease"), Some(KeptBecause::Leased));
        assert_eq!(reason("cache:d"), Some(KeptBecause::NotNeeded));
    }
}
