//! The copy snapshotter: every active snapshot is a full copy of its parent (the fallback where
//! overlayfs cannot be mounted, like containerd's `native`).
//!
//! `<dir>/<id>/fs` is the tree; `<id>/copied` is touched when the copy is complete, so its
//! ctime tells the differ which files may have changed since (see [`super::diff`]). Views are
//! read-only binds of the committed tree itself (nothing copied). Knows nothing of overlay.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::meta::{Meta, Record};
use super::{Backend, DiffWritten, Info, Kind, Mounts, SnapshotError, Snapshotter, Usage, check_key, diff, treecopy};
use crate::layer::WriteOptions;
use crate::oci::DiffId;

/// The copy snapshotter of one root.
#[derive(Debug)]
pub struct CopySnapshotter {
    meta: Meta,
}

impl CopySnapshotter {
    /// Opens (creating) the snapshotter directory `dir` (`<root>/snapshots/copy`).
    pub fn open(dir: &Path) -> Result<CopySnapshotter, SnapshotError> {
        Ok(CopySnapshotter { meta: Meta::open(dir)? })
    }

    fn fs_dir(&self, id: i64) -> PathBuf {
        self.meta.snapshot_dir(id).join("fs")
    }

    fn marker(&self, id: i64) -> PathBuf {
        self.meta.snapshot_dir(id).join("copied")
    }

    fn mounts_of(&self, rec: &Record, parent_dir: Option<PathBuf>) -> Mounts {
        match rec.info.kind {
            Kind::View => Mounts::Bind { source: parent_dir.unwrap_or_else(|| self.fs_dir(rec.id)), readonly: true },
            _ => Mounts::Bind { source: self.fs_dir(rec.id), readonly: false },
        }
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Mounts, SnapshotError> {
        check_key(key)?;
        let mut locked = self.meta.lock()?;
        let (rec, parent_dir) = locked.transaction(|tx| {
            let chain = tx.parent_chain(parent)?;
            let id = tx.insert(key, kind, parent)?;
            let dir = self.meta.snapshot_dir(id);
            super::mkdir_private(&dir.join("fs"))?;
            super::init_root(&dir.join("fs"), chain.first().map(|p| self.fs_dir(p.id)).as_deref())?;
            crate::failpoint::io("snapshot.prepare.before_record")
                .map_err(|e| SnapshotError::io("prepare", &dir, e))?;
            let parent_dir = chain.first().map(|p| self.fs_dir(p.id));
            Ok((tx.require(key)?, parent_dir))
        })?;
        drop(locked);
        // The record (a child of `parent`) protects the parent from removal while we copy.
        if kind == Kind::Active {
            let done = (|| {
                if let Some(parent_dir) = &parent_dir {
                    let stats = treecopy::copy_tree(parent_dir, &self.fs_dir(rec.id))?;
                    tracing::debug!(
                        key,
                        files = stats.files,
                        bytes = stats.bytes,
                        reflinked = stats.reflinked,
                        "copied parent"
                    );
                }
                let marker = self.marker(rec.id);
                std::fs::write(&marker, b"").map_err(|e| SnapshotError::io("create", &marker, e))?;
                settle_past(&marker)
            })();
            if let Err(e) = done {
                if let Err(cleanup) = self.remove(key) {
                    tracing::warn!(key, error = %cleanup, "failed to remove a failed snapshot");
                }
                return Err(e);
            }
        }
        Ok(self.mounts_of(&rec, parent_dir))
    }
}

impl Snapshotter for CopySnapshotter {
    fn backend(&self) -> Backend {
        Backend::Copy
    }

    fn dir(&self) -> &Path {
        self.meta.dir()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mounts, SnapshotError> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Mounts, SnapshotError> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Mounts, SnapshotError> {
        let locked = self.meta.lock()?;
        let rec = locked.require(key)?;
        if rec.info.kind == Kind::Committed {
            return Err(SnapshotError::Committed { key: key.to_string() });
        }
        let chain = locked.parent_chain(rec.info.parent.as_deref())?;
        Ok(self.mounts_of(&rec, chain.first().map(|p| self.fs_dir(p.id))))
    }

    fn commit(&self, name: &str, key: &str, diff_id: Option<DiffId>) -> Result<Info, SnapshotError> {
        check_key(name)?;
        let mut locked = self.meta.lock()?;
        locked.transaction(|tx| {
            let rec = tx.require(key)?;
            if rec.info.kind != Kind::Active {
                return Err(SnapshotError::NotActive { key: key.to_string(), kind: rec.info.kind });
            }
            if tx.get(name)?.is_some() {
                return Err(SnapshotError::AlreadyExists { key: name.to_string() });
            }
            tx.commit(rec.id, name, diff_id.as_ref())?;
            Ok(tx.require(name)?.info)
        })
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.meta.remove(key)
    }

    fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        Ok(self.meta.lock()?.require(key)?.info)
    }

    fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let rec = self.meta.lock()?.require(key)?;
        if rec.info.kind == Kind::View {
            return Ok(Usage::default());
        }
        super::tree_usage(&self.fs_dir(rec.id))
    }

    fn walk(&self, f: &mut dyn FnMut(&Info) -> Result<(), SnapshotError>) -> Result<(), SnapshotError> {
        let all = self.meta.lock()?.all()?;
        for rec in &all {
            f(&rec.info)?;
        }
        Ok(())
    }

    fn diff_unhashed(&self, key: &str, opts: &WriteOptions, out: &mut dyn Write) -> Result<DiffWritten, SnapshotError> {
        let (rec, parent_dir) = {
            let locked = self.meta.lock()?;
            let rec = locked.require(key)?;
            if rec.info.kind != Kind::Active {
                return Err(SnapshotError::NotActive { key: key.to_string(), kind: rec.info.kind });
            }
            let chain = locked.parent_chain(rec.info.parent.as_deref())?;
            (rec, chain.first().map(|p| self.fs_dir(p.id)))
        };
        let marker = self.marker(rec.id);
        let copied = std::fs::symlink_metadata(&marker).map_err(|e| SnapshotError::io("stat", &marker, e))?;
        diff::copy_diff(key, parent_dir.as_deref(), &self.fs_dir(rec.id), &copied, opts, out)
    }
}

/// Waits until the filesystem clock has certainly moved past `marker`'s timestamp, so every
/// file created from now on has a later ctime and birth time than the marker: the diff can
/// then tell "changed after the copy" (and "re-created after the copy") without ties. File
/// timestamps come from a coarse kernel clock up to one tick (≤ 10 ms) behind real time.
fn settle_past(marker: &std::path::Path) -> Result<(), SnapshotError> {
    const TICK: std::time::Duration = std::time::Duration::from_millis(10);
    let stamped = std::fs::symlink_metadata(marker)
        .and_then(|m| m.modified())
        .map_err(|e| SnapshotError::io("stat", marker, e))?;
    if let Ok(ahead) = (stamped + TICK).duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(ahead);
    }
    Ok(())
}
