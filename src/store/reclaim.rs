//! Crash residue reclaimed when the store is opened: `ingest/` entries no live writer flocks
//! (a blob or scratch directory a killed process was writing) and leases whose holder is gone
//! or whose time ran out (reliability N4, N5).
//!
//! It runs only when [`Store::open`] gets the exclusive store lock without waiting: a process
//! holding the shared lock may be creating an ingest file whose flock it has not taken yet, or a
//! lease row whose pin it has not taken yet, so nothing is judged while anyone else is inside
//! those critical sections; a busy store is left for the next open. Ownership is the kernel's
//! word (a writer's flock, a lease's OFD pin), never a pid, so a live process in another pid
//! namespace never loses its files. Cost: one listing of `ingest/` and one query of the lease
//! table; the blobs are never walked. What was reclaimed is kept on the [`Store`], so `prune`
//! counts it as freed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::lock::StoreLock;
use super::{Store, StoreError, unix_now};

/// What opening the store reclaimed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// `ingest/` entries removed.
    pub temp_removed: Vec<PathBuf>,
    /// Their bytes (file lengths; a directory's files summed).
    pub temp_bytes: u64,
    /// Leases deleted because they expired or their holder died.
    pub leases_expired: usize,
}

impl Reclaimed {
    /// Whether nothing was reclaimed.
    pub fn is_empty(&self) -> bool {
        self.temp_removed.is_empty() && self.leases_expired == 0
    }
}

impl Store {
    /// Reclaims dead processes' residue if the store is idle (see the module docs).
    pub(super) fn reclaim_residue(&self) -> Result<Reclaimed, StoreError> {
        let Some(_lock) = StoreLock::try_exclusive(&self.inner.paths.lock)? else {
            tracing::debug!("store busy: crash residue is left for the next open");
            return Ok(Reclaimed::default());
        };
        let leases_expired = self.expire_leases(unix_now())?;
        let (temp_removed, temp_bytes) = self.remove_temp_residue()?;
        let reclaimed = Reclaimed { temp_removed, temp_bytes, leases_expired };
        if !reclaimed.is_empty() {
            tracing::info!(
                temp_files = reclaimed.temp_removed.len(),
                bytes = reclaimed.temp_bytes,
                leases = reclaimed.leases_expired,
                "reclaimed what killed processes left in the store"
            );
        }
        Ok(reclaimed)
    }

    /// What [`Store::open`] reclaimed (nothing for [`Store::open_as_is`]).
    pub fn reclaimed(&self) -> Reclaimed {
        self.inner.reclaimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes what [`Store::open`] reclaimed, leaving nothing (so it is counted once).
    pub(super) fn take_reclaimed(&self) -> Reclaimed {
        std::mem::take(&mut *self.inner.reclaimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Bytes of the files at or below `path` (file lengths, links not followed).
pub(super) fn bytes_under(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => walkdir::WalkDir::new(path)
            .follow_links(false)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.size())
            .sum(),
        Ok(m) => m.size(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    #[test]
    fn open_reclaims_dead_residue_and_spares_live_writers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let s = Store::open(&root).unwrap();
        assert!(s.reclaimed().is_empty());
        let mut live = s.ingest().unwrap();
        std::io::Write::write_all(&mut live, b"still writing").unwrap();
        let scratch = s.scratch_dir("live").unwrap();
        let live_lease = s.lease("live").unwrap();
        live_lease.add(&Digest::of(b"x")).unwrap();
        // What kill -9 leaves: a temp file and a scratch directory nobody flocks, a lease row
        // without its pin.
        fs::write(root.join("ingest/blob-dead.tmp"), vec![7u8; 1000]).unwrap();
        fs::create_dir(root.join("ingest/import-dead.dir")).unwrap();
        fs::write(root.join("ingest/import-dead.dir/f"), vec![7u8; 24]).unwrap();
        s.with_db(|db| {
            db.execute(
                "INSERT INTO leases (label, pid, created_at, expires_at) VALUES ('dead', 1, 0, ?1)",
                [unix_now() + 100],
            )
        })
        .unwrap();

        let again = Store::open(&root).unwrap();
        let r = again.reclaimed();
        let mut expected = vec![root.join("ingest/blob-dead.tmp"), root.join("ingest/import-dead.dir")];
        expected.sort();
        assert_eq!((r.temp_removed.clone(), r.temp_bytes, r.leases_expired), (expected, 1024, 1), "{r:?}");
        assert!(live.path().exists() && scratch.path().exists(), "a live writer lost its file");
        assert_eq!(again.leases().unwrap().len(), 1, "the live lease stays");
        // Taken once: prune counts it, the next prune does not.
        assert_eq!(again.take_reclaimed(), r);
        assert!(again.reclaimed().is_empty());
        drop(live);
    }

    #[test]
    fn a_busy_store_is_left_alone_and_open_as_is_never_reclaims() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        Store::open(&root).unwrap();
        fs::write(root.join("ingest/blob-dead.tmp"), b"x").unwrap();
        let held = StoreLock::shared(&root.join("lock")).unwrap();
        assert!(Store::open(&root).unwrap().reclaimed().is_empty());
        drop(held);
        assert!(Store::open_as_is(&root).unwrap().reclaimed().is_empty());
        assert!(root.join("ingest/blob-dead.tmp").exists());
        assert_eq!(Store::open(&root).unwrap().reclaimed().temp_bytes, 1);
    }
}
