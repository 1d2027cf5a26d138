//! `fsck`: checks the store against the "nothing lost" invariants (reliability.md §5).
//!
//! Walks blobs (N1: name = sha256 of content, regular file, valid name), roots (N2: everything
//! referenced exists), temp files (N4: only live writers' files in `ingest/`, told apart by
//! their flock), leases (N5: pins count as roots) and permissions (N9: root 0700, blobs 0444).
//! Also N3 (the tag index parses, SQLite's `quick_check` of the metadata database), N5 (leases of
//! dead holders or past their time) and N7 (a build-cache root whose layer is gone).
//! `repair` removes temp residue and stale leases, restores modes, drops broken build-cache roots
//! and moves corrupt blobs to `<root>/quarantine/`; it never deletes a referenced blob, and
//! leaves orphans to prune. Knows nothing of how the
//! report is shown.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::blob::list_blob_dir;
use super::gc::walk;
use super::lock::StoreLock;
use super::{BLOB_MODE, ROOT_MODE, Store, StoreError, unix_now};
use crate::oci::{Digest, Hasher, MediaType};

/// A blob that breaks N1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptBlob {
    pub path: PathBuf,
    /// The digest its name claims, when the name is a valid digest.
    pub digest: Option<Digest>,
    pub reason: String,
    /// Where `--repair` moved it.
    pub quarantined_to: Option<PathBuf>,
}

/// A referenced blob that is absent (N2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingBlob {
    pub digest: Digest,
    /// `tag <ref>`, `root <owner>` or the digest of the manifest that references it.
    pub referenced_by: String,
    pub media_type: Option<MediaType>,
}

/// A valid blob nothing references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Something temporary no live process holds (N4): an ingest file, or what a snapshotter keeps
/// for a process that died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TempResidue {
    pub path: PathBuf,
    /// What it is, for people.
    pub what: String,
    pub removed: bool,
}

/// A mode that breaks N9.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermViolation {
    pub path: PathBuf,
    pub mode: u32,
    pub expected: u32,
    pub repaired: bool,
}

/// A lease whose holder is gone or whose time is up (N5): it pins nothing, but its row stays
/// until a prune or a repair deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleLease {
    pub id: i64,
    pub label: String,
    pub pid: i64,
    pub removed: bool,
}

/// A build-cache GC root whose closure is not whole (N7: the cache is derivable). `--repair`
/// drops the root; the step's record then misses and the step builds again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenCacheRoot {
    pub owner: String,
    pub digest: Digest,
    pub dropped: bool,
}

/// A metadata file that cannot be read whole (N3): the tag index, the metadata database, or
/// (checked by the caller) the cache and snapshot databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataDamage {
    pub path: PathBuf,
    pub reason: String,
    /// Where a repair moved it, if it did: a derivable database is rebuilt empty; the tag index
    /// is rebuilt naming every image the store holds (`salvaged`).
    pub moved_to: Option<PathBuf>,
    /// The names a repaired tag index gives the store's images (`salvaged:<hex>`).
    pub salvaged: Vec<String>,
}

/// What fsck found (and, with repair, fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    pub corrupt: Vec<CorruptBlob>,
    pub missing: Vec<MissingBlob>,
    pub orphans: Vec<OrphanBlob>,
    pub temp_residue: Vec<TempResidue>,
    pub perm_violations: Vec<PermViolation>,
    pub stale_leases: Vec<StaleLease>,
    pub broken_cache_roots: Vec<BrokenCacheRoot>,
    pub metadata: Vec<MetadataDamage>,
    /// Entries examined under `blobs/sha256/`.
    pub blobs_checked: u64,
}

impl FsckReport {
    /// Whether the store is damaged. Default: a corrupt blob still in `blobs/`, or a missing
    /// blob (a quarantined blob that something references is listed as missing too). `strict`:
    /// also temp residue not removed and permission violations not repaired. Orphans never
    /// count (they are prune's business).
    pub fn is_damaged(&self, strict: bool) -> bool {
        if self.corrupt.iter().any(|c| c.quarantined_to.is_none())
            || !self.missing.is_empty()
            || self.metadata.iter().any(|m| m.moved_to.is_none())
        {
            return true;
        }
        strict
            && (self.temp_residue.iter().any(|t| !t.removed)
                || self.perm_violations.iter().any(|p| !p.repaired)
                || self.stale_leases.iter().any(|l| !l.removed))
    }

    /// Whether nothing at all was found, orphans included.
    pub fn is_clean(&self) -> bool {
        !self.is_damaged(true)
            && self.orphans.is_empty()
            && self.temp_residue.is_empty()
            && self.perm_violations.is_empty()
            && self.stale_leases.is_empty()
            && self.broken_cache_roots.is_empty()
            && self.metadata.is_empty()
    }
}

impl Store {
    /// Checks the store; with `repair`, fixes what can be fixed without losing data.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport, StoreError> {
        let paths = &self.inner.paths;
        let _lock = if repair { StoreLock::exclusive(&paths.lock)? } else { StoreLock::shared(&paths.lock)? };
        let mut report = FsckReport::default();
        check_mode(&paths.root, ROOT_MODE, repair, &mut report)?;

        // Anything in blobs/ other than the sha256 directory is a bad name.
        let blobs_parent = paths.root.join("blobs");
        for (name, path) in list_blob_dir(&blobs_parent)? {
            if name != "sha256" || !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.corrupt(&mut report, path, None, "unexpected entry under blobs/".to_string(), repair)?;
            }
        }
        let mut valid: BTreeSet<(Digest, u64)> = BTreeSet::new();
        for (name, path) in list_blob_dir(&paths.blobs)? {
            report.blobs_checked += 1;
            let Ok(digest) = Digest::from_hex(&name) else {
                self.corrupt(&mut report, path, None, "name is not a sha256 digest".to_string(), repair)?;
                continue;
            };
            let meta = fs::symlink_metadata(&path).map_err(|e| StoreError::io("stat", &path, e))?;
            if !meta.file_type().is_file() {
                let reason = "not a regular file (symlink, directory or special file)".to_string();
                self.corrupt(&mut report, path, Some(digest), reason, repair)?;
                continue;
            }
            match self.hash_blob(&digest) {
                Ok(actual) if actual == digest => {}
                Ok(actual) => {
                    let reason = format!("content hashes to {actual}");
                    self.corrupt(&mut report, path, Some(digest), reason, repair)?;
                    continue;
                }
                Err(e) => {
                    self.corrupt(&mut report, path, Some(digest), format!("unreadable: {e}"), repair)?;
                    continue;
                }
            }
            check_mode(&path, BLOB_MODE, repair, &mut report)?;
            valid.insert((digest, meta.len()));
        }

        self.check_metadata(repair, &mut report)?;
        let now = unix_now();
        self.check_leases(now, repair, &mut report)?;
        self.check_cache_roots(repair, &mut report)?;
        // Without a readable tag index, the other roots are still walked.
        let tags_readable = !report.metadata.iter().any(|m| m.path == paths.index && m.moved_to.is_none());
        let visits = self.root_visits_with(now, tags_readable)?;
        let closure = walk(self, visits)?;
        report.missing = closure.missing;
        // A quarantined blob that something references is now missing as well.
        let quarantined: BTreeSet<Digest> =
            report.corrupt.iter().filter(|c| c.quarantined_to.is_some()).filter_map(|c| c.digest).collect();
        for digest in quarantined.iter().filter(|d| closure.reachable.contains(d)) {
            if !report.missing.iter().any(|m| m.digest == *digest) {
                report.missing.push(MissingBlob {
                    digest: *digest,
                    referenced_by: "quarantined".to_string(),
                    media_type: None,
                });
            }
        }
        report.orphans = valid
            .into_iter()
            .filter(|(d, _)| !closure.reachable.contains(d))
            .map(|(digest, size)| OrphanBlob { digest, size })
            .collect();

        for path in self.temp_residue()? {
            let removed = repair && remove_any(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            let what = "temporary file no live process holds".to_string();
            report.temp_residue.push(TempResidue { path, what, removed });
        }
        Ok(report)
    }

    /// N3: the tag index parses (`repair` replaces one that does not, losing names but no image:
    /// see `salvage_index`), and SQLite finds the metadata database whole.
    fn check_metadata(&self, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
        let paths = &self.inner.paths;
        if let Err(e) = super::tags::read_index(paths) {
            let (moved_to, salvaged) = match repair {
                true => {
                    let (aside, names) = self.salvage_index()?;
                    (Some(aside), names.iter().map(ToString::to_string).collect())
                }
                false => (None, Vec::new()),
            };
            report.metadata.push(MetadataDamage {
                path: paths.index.clone(),
                reason: e.to_string(),
                moved_to,
                salvaged,
            });
        }
        let verdict: Vec<String> = self.with_db(|db| {
            let mut stmt = db.prepare("PRAGMA quick_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })?;
        if verdict != ["ok"] {
            let reason = verdict.join("; ");
            report.metadata.push(MetadataDamage {
                path: paths.db.clone(),
                reason,
                moved_to: None,
                salvaged: Vec::new(),
            });
        }
        Ok(())
    }

    /// N5: leases whose holder died or whose time is up; `repair` deletes them (as prune does).
    fn check_leases(&self, now: i64, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
        let stale: Vec<_> = self.leases()?.into_iter().filter(|l| !l.alive || l.expires_at <= now).collect();
        if repair && !stale.is_empty() {
            self.expire_leases(now)?;
        }
        report.stale_leases =
            stale.into_iter().map(|l| StaleLease { id: l.id, label: l.label, pid: l.pid, removed: repair }).collect();
        Ok(())
    }

    /// N7: a build-cache root whose closure misses a blob; `repair` drops the root (the record
    /// then misses, saying why, and the step builds again), which loses no image.
    fn check_cache_roots(&self, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
        for (owner, digest) in self.roots(super::CACHE_ROOT_PREFIX)? {
            let visit = (digest, None, format!("root {owner}"), super::gc::Requirement::Required);
            if walk(self, vec![visit])?.missing.is_empty() {
                continue;
            }
            if repair {
                self.remove_roots(&owner)?;
                tracing::warn!(owner, %digest, "dropped a build-cache root whose layer is missing");
            }
            report.broken_cache_roots.push(BrokenCacheRoot { owner, digest, dropped: repair });
        }
        Ok(())
    }

    /// sha256 of a blob's content, read `O_NOFOLLOW`.
    fn hash_blob(&self, digest: &Digest) -> Result<Digest, StoreError> {
        let mut file = self.open_blob(digest)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read", self.blob_path(digest), e)),
            };
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    /// Records a corrupt entry; with `repair`, moves it to `quarantine/`.
    fn corrupt(
        &self,
        report: &mut FsckReport,
        path: PathBuf,
        digest: Option<Digest>,
        reason: String,
        repair: bool,
    ) -> Result<(), StoreError> {
        let mut quarantined_to = None;
        if repair {
            let q = &self.inner.paths.quarantine;
            fs::create_dir_all(q).map_err(|e| StoreError::io("create directory", q, e))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut target = q.join(format!("{name}.{}", unix_now()));
            let mut n = 1;
            while fs::symlink_metadata(&target).is_ok() {
                target = q.join(format!("{name}.{}.{n}", unix_now()));
                n += 1;
            }
            fs::rename(&path, &target).map_err(|e| StoreError::io("quarantine", &path, e))?;
            tracing::warn!(path = %path.display(), to = %target.display(), reason, "quarantined corrupt blob");
            quarantined_to = Some(target);
        }
        report.corrupt.push(CorruptBlob { path, digest, reason, quarantined_to });
        Ok(())
    }
}

/// Checks (and with `repair`, restores) the permission bits of `path`.
fn check_mode(path: &Path, expected: u32, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|e| StoreError::io("stat", path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode == expected {
        return Ok(());
    }
    if repair {
        fs::set_permissions(path, fs::Permissions::from_mode(expected))
            .map_err(|e| StoreError::io("set permissions of", path, e))?;
    }
    report.perm_violations.push(PermViolation { path: path.to_path_buf(), mode, expected, repaired: repair });
    Ok(())
}

/// Removes a file or directory; `false` when it was already gone.
fn remove_any(path: &Path) -> io::Result<bool> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Reference;
    use crate::store::tags::tests::image;

    #[test]
    fn fsck_finds_each_kind_of_damage_and_repair_never_loses_data() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        assert!(s.fsck(false).unwrap().is_clean());
        let tagged = image(&s, b"tagged layer");
        s.set_tag(&Reference::parse("t").unwrap(), tagged).unwrap();
        let orphan = s.write_blob(b"orphan", None).unwrap();
        let flipped = s.write_blob(b"flip me", None).unwrap();
        let linked = s.write_blob(b"link me", None).unwrap();
        let p = s.blob_path(&flipped);
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"flip mE").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        let lp = s.blob_path(&linked);
        fs::remove_file(&lp).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &lp).unwrap();
        fs::write(s.root().join("blobs/sha256/not-a-digest"), b"").unwrap();
        fs::write(s.root().join("ingest/blob-dead.tmp"), b"").unwrap();
        fs::remove_file(s.blob_path(&Digest::of(b"tagged layer"))).unwrap();
        fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();

        let r = s.fsck(false).unwrap();
        assert_eq!(r.corrupt.len(), 3, "{r:#?}");
        assert_eq!(r.missing.len(), 1, "{r:#?}");
        assert_eq!(r.missing[0].digest, Digest::of(b"tagged layer"));
        assert_eq!(r.orphans, vec![OrphanBlob { digest: orphan, size: 6 }]);
        assert_eq!(r.temp_residue.len(), 1);
        assert_eq!(r.perm_violations.len(), 1);
        assert!(r.is_damaged(false));
        serde_json::to_string(&r).unwrap();

        let r = s.fsck(true).unwrap();
        assert!(r.corrupt.iter().all(|c| c.quarantined_to.is_some()));
        assert!(r.temp_residue.iter().all(|t| t.removed));
        assert!(s.has_blob(&orphan), "repair must leave orphans to prune");
        assert!(r.is_damaged(false), "the missing layer still counts after repair");
        let r = s.fsck(false).unwrap();
        assert!(r.corrupt.is_empty() && r.temp_residue.is_empty() && r.perm_violations.is_empty(), "{r:#?}");
        assert_eq!(r.missing.len(), 1);
        assert_eq!(fs::read_dir(s.root().join("quarantine")).unwrap().count(), 3);
    }

    #[test]
    fn stale_leases_broken_cache_roots_and_a_bad_index_are_found_and_repaired_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let tagged = image(&s, b"kept layer");
        s.set_tag(&Reference::parse("t").unwrap(), tagged.clone()).unwrap();
        // A lease whose holder is gone: its row stays, pinning nothing.
        let lease = s.lease("build").unwrap();
        let id = lease.id();
        s.with_db(|db| db.execute("UPDATE leases SET expires_at = 0 WHERE id = ?1", [id])).unwrap();
        // A cache root on a layer that is gone.
        let layer = s.write_blob(b"cached layer", None).unwrap();
        s.add_root(&format!("{}abc", crate::store::CACHE_ROOT_PREFIX), &layer).unwrap();
        fs::remove_file(s.blob_path(&layer)).unwrap();

        let r = s.fsck(false).unwrap();
        assert_eq!(r.stale_leases.len(), 1, "{r:#?}");
        assert_eq!(r.broken_cache_roots.len(), 1, "{r:#?}");
        assert!(r.is_damaged(false), "a missing blob is damage until the root is dropped");
        let r = s.fsck(true).unwrap();
        assert!(r.stale_leases[0].removed && r.broken_cache_roots[0].dropped, "{r:#?}");
        assert!(r.missing.is_empty(), "the dropped root is walked no more: {r:#?}");
        assert!(!r.is_damaged(true), "{r:#?}");
        assert!(s.fsck(false).unwrap().is_clean());
        assert!(s.has_blob(&tagged.digest), "the tagged image stays");
        drop(lease);

        // An index that does not parse is damage that names the file; the roots still walk.
        // A second image, untagged: it is the index child of nothing, so it is salvaged too;
        // a multi-platform index's members are not (the index is).
        let untagged = image(&s, b"untagged layer");
        let member = image(&s, b"member layer");
        let mut multi = crate::oci::ImageIndex::new();
        multi.manifests.push(member.clone());
        let bytes = crate::oci::canonical::to_bytes(&multi);
        let multi = s.write_blob(&bytes, None).unwrap();
        fs::write(s.root().join("index.json"), b"{not json").unwrap();
        let r = s.fsck(false).unwrap();
        assert_eq!(r.metadata.len(), 1, "{r:#?}");
        assert!(r.metadata[0].path.ends_with("index.json") && r.metadata[0].moved_to.is_none());
        assert!(r.is_damaged(false));
        assert!(s.root().join("index.json").exists(), "a look changes nothing");

        // The repair moves it aside and names every image the store holds.
        let r = s.fsck(true).unwrap();
        let damage = &r.metadata[0];
        assert!(damage.moved_to.as_ref().is_some_and(|p| fs::read(p).unwrap() == b"{not json"), "{r:#?}");
        let short = |d: &Digest| format!("docker.io/library/salvaged:{}", &d.hex()[..12]);
        let mut expected = vec![short(&tagged.digest), short(&untagged.digest), short(&multi)];
        expected.sort();
        assert_eq!(damage.salvaged, expected, "{r:#?}");
        assert!(!r.is_damaged(true), "{r:#?}");
        assert!(r.orphans.is_empty(), "no image's blob is left for prune: {r:#?}");
        assert!(s.fsck(false).unwrap().is_clean());
        let tags: Vec<String> = s.tags().unwrap().iter().map(|t| t.reference.to_string()).collect();
        assert_eq!(tags, expected);
        s.prune(false).unwrap();
        for d in [&tagged.digest, &untagged.digest, &multi, &member.digest] {
            assert!(s.has_blob(d), "{d} survives a prune");
        }
    }

    #[test]
    fn quarantining_an_unreferenced_corrupt_blob_repairs_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let d = s.write_blob(b"bits", None).unwrap();
        let p = s.blob_path(&d);
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"bitz").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(s.fsck(false).unwrap().is_damaged(false));
        let r = s.fsck(true).unwrap();
        assert_eq!(r.corrupt.len(), 1);
        assert!(!r.is_damaged(true), "{r:#?}");
        assert!(s.fsck(false).unwrap().is_clean());
    }
}
