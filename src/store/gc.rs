//! Reachability and garbage collection.
//!
//! Roots are tags ∪ the GC-root table ∪ live leases. The closure walks indexes → manifests →
//! config + layers (decoded with the `oci` types; the descriptor's media type says which, and a
//! root known only by digest is sniffed), and a reachable layer keeps its recorded variants:
//! the uncompressed blob stored under its DiffID and every compressed variant (N2). [`Store::prune`]
//! marks and sweeps under the exclusive store lock, so a commit (shared lock + lease record)
//! can never interleave between mark and sweep (N5). Knows nothing of who created the roots.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::PathBuf;

use super::blob::list_blob_dir;
use super::fsck::MissingBlob;
use super::lock::{StoreLock, is_held};
use super::reclaim::bytes_under;
use super::tags::read_index;
use super::{CACHE_ROOT_PREFIX, Store, StoreError, unix_now};
use crate::failpoint;
use crate::oci::canonical;
use crate::oci::{Digest, ImageIndex, ImageManifest, MediaType, Versioned};
use crate::progress::{Reporter, Unit};

/// Largest manifest or index the walk reads (the registries' own limit).
const MAX_MANIFEST_LEN: u64 = 4 << 20;

/// Whether a root or child must exist for the store to be whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requirement {
    /// Referenced by a tag, a GC root or an existing manifest: absence is damage.
    Required,
    /// Pinned by a lease (maybe not written yet) or linked as a layer variant: absence is fine.
    Optional,
}

/// One thing to visit: digest, media type if known, who references it, whether it must exist.
pub(super) type Visit = (Digest, Option<MediaType>, String, Requirement);

/// The result of a walk.
#[derive(Debug, Default)]
pub(super) struct Closure {
    /// Every digest reached (present or not).
    pub reachable: BTreeSet<Digest>,
    /// Required digests that are absent.
    pub missing: Vec<MissingBlob>,
    /// Manifests or indexes that exist but could not be read or decoded: their children are
    /// unknown, so nothing may be swept.
    pub unreadable: Vec<(Digest, StoreError)>,
}

/// What [`Store::prune`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Blobs removed, with their sizes.
    pub removed: Vec<(Digest, u64)>,
    /// Bytes freed: the blobs removed plus the temp files.
    pub bytes_freed: u64,
    /// Stale temp files removed from `ingest/` (no live writer held them), by this prune or
    /// by the [`Store::open`] before it.
    pub temp_removed: Vec<PathBuf>,
    /// Bytes of those temp files (also counted in `bytes_freed`).
    pub temp_bytes_freed: u64,
    /// GC roots dropped (`prune --all` drops the cache's).
    pub roots_dropped: usize,
    /// Leases deleted because they expired or their holder died.
    pub leases_expired: usize,
}

impl Store {
    /// Removes every blob unreachable from tags ∪ GC roots ∪ live leases, and stale temp files.
    /// `all` first drops the build cache's roots (`cache:*`). Refuses to sweep anything when a
    /// reachable manifest is missing or unreadable (its children would look unreachable).
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        self.prune_reporting(all, &Reporter::silent())
    }

    /// [`Store::prune`], reporting the mark and the sweep (blobs removed) to `progress`.
    pub fn prune_reporting(&self, all: bool, progress: &Reporter) -> Result<PruneReport, StoreError> {
        let _lock = StoreLock::exclusive(&self.inner.paths.lock)?;
        let mut report = PruneReport::default();
        if all {
            report.roots_dropped = self.remove_roots(CACHE_ROOT_PREFIX)?;
        }
        let now = unix_now();
        report.leases_expired = self.expire_leases(now)?;
        let mark = progress.start(|| "find referenced blobs".to_string());
        let closure = mark.finish(self.root_visits(now).and_then(|visits| walk(self, visits)))?;
        if let Some((digest, source)) = closure.unreadable.into_iter().next() {
            return Err(StoreError::PruneUnsafe { digest, source: Box::new(source) });
        }
        if let Some(m) =
            closure.missing.iter().find(|m| m.media_type.as_ref().is_some_and(|t| t.is_manifest() || t.is_index()))
        {
            let source = StoreError::MissingBlob { digest: m.digest, referenced_by: m.referenced_by.clone() };
            return Err(StoreError::PruneUnsafe { digest: m.digest, source: Box::new(source) });
        }
        failpoint::io("gc.before_sweep").map_err(|e| StoreError::io("sweep", &self.inner.paths.blobs, e))?;
        let sweep = progress.start(|| "remove unreferenced blobs".to_string());
        let mut removed_count = sweep.meter(None, Unit::Items);
        for (name, path) in list_blob_dir(&self.inner.paths.blobs)? {
            let Ok(digest) = Digest::from_hex(&name) else {
                continue; // not a blob name: fsck reports it, prune never guesses
            };
            if closure.reachable.contains(&digest) {
                continue;
            }
            let size = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => continue, // damage for fsck to report and quarantine
                Ok(m) => m.len(),
                Err(_) => continue,
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
            tracing::debug!(%digest, size, "pruned blob");
            report.bytes_freed += size;
            report.removed.push((digest, size));
            removed_count.add(1);
        }
        drop(removed_count);
        sweep.done();
        let removed: Vec<Digest> = report.removed.iter().map(|(d, _)| *d).collect();
        self.forget_layer_blobs(&removed)?;
        let (temp_removed, temp_bytes) = self.remove_temp_residue()?;
        let reclaimed = self.take_reclaimed();
        report.temp_removed = reclaimed.temp_removed.into_iter().chain(temp_removed).collect();
        report.temp_bytes_freed = reclaimed.temp_bytes + temp_bytes;
        report.bytes_freed += report.temp_bytes_freed;
        report.leases_expired += reclaimed.leases_expired;
        Ok(report)
    }

    /// Tags, GC roots and live-lease pins as walk roots.
    pub(super) fn root_visits(&self, now: i64) -> Result<Vec<Visit>, StoreError> {
        self.root_visits_with(now, true)
    }

    /// [`Store::root_visits`], the tags left out when `tags` is false (fsck of a store whose
    /// tag index does not parse).
    pub(super) fn root_visits_with(&self, now: i64, tags: bool) -> Result<Vec<Visit>, StoreError> {
        let mut visits = Vec::new();
        let index = if tags { read_index(&self.inner.paths)? } else { crate::oci::ImageIndex::new() };
        for entry in index.manifests {
            let by = entry
                .annotation(crate::oci::ANNOTATION_SLIPWAY_REF)
                .or_else(|| entry.annotation(crate::oci::ANNOTATION_REF_NAME))
                .map_or_else(|| "index.json".to_string(), |r| format!("tag {r}"));
            visits.push((entry.digest, Some(entry.media_type.clone()), by, Requirement::Required));
        }
        for (owner, digest) in self.roots("")? {
            visits.push((digest, None, format!("root {owner}"), Requirement::Required));
        }
        for digest in self.leased_digests(now)? {
            visits.push((digest, None, "lease".to_string(), Requirement::Optional));
        }
        Ok(visits)
    }

    /// Removes `ingest/` entries no live writer holds (flock free); returns their paths and
    /// bytes. The caller holds the exclusive store lock.
    pub(super) fn remove_temp_residue(&self) -> Result<(Vec<PathBuf>, u64), StoreError> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for path in self.temp_residue()? {
            let size = bytes_under(&path);
            let res = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(_) => continue,
            };
            match res {
                Ok(()) => {
                    removed.push(path);
                    bytes += size;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
        Ok((removed, bytes))
    }

    /// `ingest/` entries whose writer is gone.
    pub(super) fn temp_residue(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = &self.inner.paths.ingest;
        let mut out = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io("list", dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io("list", dir, e))?.path();
            if !is_held(&path) {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Walks the closure of `roots`.
pub(super) fn walk(store: &Store, roots: Vec<Visit>) -> Result<Closure, StoreError> {
    walk_with(store, roots, &variants(store)?)
}

/// Layer variant links both ways: a DiffID's blob ↔ each of its compressed blobs.
pub(super) type Variants = BTreeMap<Digest, Vec<Digest>>;

/// The layer variant links of `store`, read once for several walks.
pub(super) fn variants(store: &Store) -> Result<Variants, StoreError> {
    let mut variants: Variants = BTreeMap::new();
    for (diff_id, variant) in store.layer_links()? {
        variants.entry(diff_id).or_default().push(variant);
        variants.entry(variant).or_default().push(diff_id);
    }
    Ok(variants)
}

/// [`walk`] with the variant links already read.
pub(super) fn walk_with(store: &Store, roots: Vec<Visit>, variants: &Variants) -> Result<Closure, StoreError> {
    let mut closure = Closure::default();
    let mut stack = roots;
    stack.reverse();
    while let Some((digest, media_type, referenced_by, requirement)) = stack.pop() {
        if !closure.reachable.insert(digest) {
            continue;
        }
        if fs::symlink_metadata(store.blob_path(&digest)).is_err() {
            if requirement == Requirement::Required {
                closure.missing.push(MissingBlob { digest, referenced_by, media_type });
            }
            continue;
        }
        let parent = format!("{digest}");
        for linked in variants.get(&digest).into_iter().flatten() {
            stack.push((*linked, None, format!("layer variant of {parent}"), Requirement::Optional));
        }
        let kind = match &media_type {
            Some(t) if t.is_index() => Kind::Index,
            Some(t) if t.is_manifest() => Kind::Manifest,
            Some(_) => continue,
            None => sniff(store, &digest),
        };
        let children = match read_children(store, &digest, kind) {
            Ok(c) => c,
            Err(e) => {
                closure.unreadable.push((digest, e));
                continue;
            }
        };
        for (child, child_type) in children {
            stack.push((child, Some(child_type), parent.clone(), Requirement::Required));
        }
    }
    Ok(closure)
}

/// The images the store holds that no index among its blobs lists: every manifest or index
/// blob that is no index blob's child, with its media type (as the blob says, else OCI's) and
/// size. What fsck names when it replaces a tag index that does not parse.
pub(super) fn heads(store: &Store) -> Result<Vec<crate::oci::Descriptor>, StoreError> {
    let mut found = Vec::new();
    let mut listed = BTreeSet::new();
    for (name, _) in list_blob_dir(&store.inner.paths.blobs)? {
        let Ok(digest) = Digest::from_hex(&name) else { continue };
        let kind = sniff(store, &digest);
        if kind == Kind::Leaf {
            continue;
        }
        if kind == Kind::Index
            && let Ok(children) = read_children(store, &digest, kind)
        {
            listed.extend(children.into_iter().map(|(child, _)| child));
        }
        let bytes = store.read_blob(&digest, MAX_MANIFEST_LEN)?;
        let fallback = if kind == Kind::Index { MediaType::OciIndex } else { MediaType::OciManifest };
        let media_type =
            canonical::from_bytes::<Versioned>("manifest", &bytes).ok().and_then(|v| v.media_type).unwrap_or(fallback);
        found.push(crate::oci::Descriptor::new(media_type, digest, bytes.len() as u64));
    }
    found.retain(|d| !listed.contains(&d.digest));
    Ok(found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Manifest,
    Leaf,
}

/// Guesses whether a blob known only by digest is a manifest or an index.
fn sniff(store: &Store, digest: &Digest) -> Kind {
    let Ok(file) = store.open_blob(digest) else {
        return Kind::Leaf;
    };
    if file.metadata().map_or(true, |m| m.len() > MAX_MANIFEST_LEN) {
        return Kind::Leaf;
    }
    let mut first = [0u8; 1];
    if (&file).read_exact(&mut first).is_err() || first[0] != b'{' {
        return Kind::Leaf;
    }
    let Ok(bytes) = store.read_blob(digest, MAX_MANIFEST_LEN) else {
        return Kind::Leaf;
    };
    match canonical::from_bytes::<Versioned>("manifest", &bytes) {
        Ok(v) if v.media_type.as_ref().is_some_and(MediaType::is_index) || v.manifests.is_some() => Kind::Index,
        Ok(v)
            if v.media_type.as_ref().is_some_and(MediaType::is_manifest)
                || (v.layers.is_some() && v.config.is_some()) =>
        {
            Kind::Manifest
        }
        _ => Kind::Leaf,
    }
}

/// The children of a manifest or index.
fn read_children(store: &Store, digest: &Digest, kind: Kind) -> Result<Vec<(Digest, MediaType)>, StoreError> {
    if kind == Kind::Leaf {
        return Ok(Vec::new());
    }
    let bytes = store.read_blob(digest, MAX_MANIFEST_LEN)?;
    let decode_err = |source| StoreError::Decode { digest: *digest, source };
    if kind == Kind::Index {
        let index: ImageIndex = canonical::from_bytes("image index", &bytes).map_err(decode_err)?;
        return Ok(index.manifests.into_iter().map(|d| (d.digest, d.media_type)).collect());
    }
    let manifest: ImageManifest = canonical::from_bytes("image manifest", &bytes).map_err(decode_err)?;
    let mut children = vec![(manifest.config.digest, manifest.config.media_type)];
    children.extend(manifest.layers.into_iter().map(|d| (d.digest, d.media_type)));
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Descriptor, DiffId, Reference};
    use crate::store::tags::tests::image;

    #[test]
    fn prune_keeps_tagged_closure_roots_leases_and_variants() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let tagged = image(&s, b"tagged-layer");
        s.set_tag(&Reference::parse("keep").unwrap(), tagged.clone()).unwrap();
        // The tagged layer's uncompressed form and another variant survive through the DB.
        let uncompressed = s.write_blob(b"uncompressed", None).unwrap();
        let zstd = s.write_blob(b"zstd variant", None).unwrap();
        let diff = DiffId(uncompressed);
        s.record_layer_blob(diff, &Descriptor::new(MediaType::OciLayer, Digest::of(b"tagged-layer"), 12)).unwrap();
        s.record_layer_blob(diff, &Descriptor::new(MediaType::OciLayerZstd, zstd, 12)).unwrap();
        let cached = s.write_blob(b"cache layer", None).unwrap();
        s.add_root("cache:k1", &cached).unwrap();
        let lease = s.lease("build").unwrap();
        let leased = s.write_blob(b"leased", Some(&lease)).unwrap();
        let orphan = s.write_blob(b"orphan", None).unwrap();
        let mut live = s.ingest().unwrap();
        std::io::Write::write_all(&mut live, b"in progress").unwrap();
        let crashed = s.root().join("ingest/blob-crashed.tmp"); // no flock: its writer is gone
        fs::write(&crashed, b"partial").unwrap();

        let odd_dir = s.blob_path(&Digest::of(b"a directory"));
        fs::create_dir(&odd_dir).unwrap();

        let report = s.prune(false).unwrap();
        assert_eq!(report.removed, vec![(orphan, 6)]);
        assert!(odd_dir.is_dir(), "prune only removes files; fsck handles the rest");
        fs::remove_dir(&odd_dir).unwrap();
        assert_eq!(report.bytes_freed, 6 + 7);
        assert_eq!(report.temp_removed, vec![crashed.clone()]);
        assert_eq!(report.temp_bytes_freed, 7);
        assert!(live.path().exists(), "a live ingest was reaped");
        drop(live);
        for d in [tagged.digest, uncompressed, zstd, cached, leased] {
            assert!(s.has_blob(&d), "{d} was swept");
        }
        drop(lease);
        let report = s.prune(true).unwrap();
        assert_eq!(report.roots_dropped, 1);
        let mut removed: Vec<Digest> = report.removed.iter().map(|r| r.0).collect();
        removed.sort();
        let mut expected = vec![cached, leased];
        expected.sort();
        assert_eq!(removed, expected);
        s.remove_tag(&Reference::parse("keep").unwrap()).unwrap();
        s.prune(true).unwrap();
        assert_eq!(fs::read_dir(s.root().join("blobs/sha256")).unwrap().count(), 0);
        assert!(s.layer_blobs(diff).unwrap().is_empty());
    }

    #[test]
    fn prune_refuses_when_a_reachable_manifest_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let tagged = image(&s, b"layer");
        s.set_tag(&Reference::parse("t").unwrap(), tagged.clone()).unwrap();
        let p = s.blob_path(&tagged.digest);
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"{garbage").unwrap();
        assert!(matches!(s.prune(false), Err(StoreError::PruneUnsafe { .. })));
        assert!(s.has_blob(&Digest::of(b"layer")));
    }

    #[test]
    fn roots_known_by_digest_are_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let m = image(&s, b"layer");
        s.add_root("cache:x", &m.digest).unwrap();
        assert!(s.prune(false).unwrap().removed.is_empty());
    }
}
