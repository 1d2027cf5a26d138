//! The overlayfs snapshotter: a committed snapshot is one directory, shared read-only as a
//! lowerdir by every snapshot above it; an active snapshot's upper directory holds exactly its
//! changes, and becomes the committed directory as it is on commit (nothing is copied or
//! extracted again).
//!
//! `<dir>/<id>/fs` is the upper (then committed) tree, `<id>/work` the overlay work directory
//! of an active snapshot. `<dir>` is `overlay` for mounts by real root (opaque markers in
//! `trusted.overlay.*`) and `overlay-userxattr` inside a user namespace (`user.overlay.*`):
//! layers written by one flavour are not read correctly by the other, so they never share.
//!
//! Mounts are made with `index=off,redirect_dir=off,metacopy=off` (implied by `userxattr`), so
//! the upper directory is a plain tree: renaming a lower directory answers `EXDEV` and tools
//! copy it instead, which is what the diff needs. Known limitation, as in Docker's overlay2:
//! copying up one name of a lower hardlink group splits the group (the merged view and the
//! layer agree on content; the other names keep the old inode).
//!
//! Callers unmount an active snapshot before `diff`, `commit` or `remove`: overlay leaves the
//! result of changing an upper directory under a live mount undefined.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::meta::{Meta, Record};
use super::mounts::{MAX_LAYERS, mount_overlay};
use super::{Backend, DiffWritten, Info, Kind, Mounts, SnapshotError, Snapshotter, Usage, check_key, diff, treecopy};
use crate::layer::WriteOptions;
use crate::oci::DiffId;

/// The overlay snapshotter of one root.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    meta: Meta,
    userxattr: bool,
}

impl OverlaySnapshotter {
    /// Opens (creating) the overlay snapshotter under `base` (`<root>/snapshots`). `userxattr`:
    /// mounts are made inside a user namespace.
    pub fn open(base: &Path, userxattr: bool) -> Result<OverlaySnapshotter, SnapshotError> {
        let name = if userxattr { "overlay-userxattr" } else { "overlay" };
        Ok(OverlaySnapshotter { meta: Meta::open(&base.join(name))?, userxattr })
    }

    fn fs_dir(&self, id: i64) -> PathBuf {
        self.meta.snapshot_dir(id).join("fs")
    }

    fn work_dir(&self, id: i64) -> PathBuf {
        self.meta.snapshot_dir(id).join("work")
    }

    fn mounts_of(&self, rec: &Record, chain: &[Record]) -> Result<Mounts, SnapshotError> {
        if chain.len() > MAX_LAYERS {
            return Err(SnapshotError::TooManyLayers {
                key: rec.info.key.clone(),
                layers: chain.len(),
                max: MAX_LAYERS,
            });
        }
        let lowerdirs: Vec<PathBuf> = chain.iter().map(|p| self.fs_dir(p.id)).collect();
        let mounts = match (rec.info.kind, lowerdirs.len()) {
            (Kind::Committed, _) => return Err(SnapshotError::Committed { key: rec.info.key.clone() }),
            (Kind::Active, 0) => Mounts::Bind { source: self.fs_dir(rec.id), readonly: false },
            (Kind::Active, _) => Mounts::Overlay {
                lowerdirs,
                upperdir: Some(self.fs_dir(rec.id)),
                workdir: Some(self.work_dir(rec.id)),
                userxattr: self.userxattr,
            },
            (Kind::View, 0) => Mounts::Bind { source: self.fs_dir(rec.id), readonly: true },
            (Kind::View, 1) => Mounts::Bind { source: lowerdirs[0].clone(), readonly: true },
            (Kind::View, _) => Mounts::Overlay { lowerdirs, upperdir: None, workdir: None, userxattr: self.userxattr },
        };
        Ok(mounts)
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Mounts, SnapshotError> {
        check_key(key)?;
        let mut locked = self.meta.lock()?;
        locked.transaction(|tx| {
            let chain = tx.parent_chain(parent)?;
            if chain.len() > MAX_LAYERS {
                return Err(SnapshotError::TooManyLayers {
                    key: key.to_string(),
                    layers: chain.len(),
                    max: MAX_LAYERS,
                });
            }
            let id = tx.insert(key, kind, parent)?;
            super::mkdir_private(&self.fs_dir(id))?;
            super::init_root(&self.fs_dir(id), chain.first().map(|p| self.fs_dir(p.id)).as_deref())?;
            if kind == Kind::Active && !chain.is_empty() {
                super::mkdir_private(&self.work_dir(id))?;
            }
            crate::failpoint::io("snapshot.prepare.before_record")
                .map_err(|e| SnapshotError::io("prepare", self.meta.snapshot_dir(id), e))?;
            let rec = tx.require(key)?;
            self.mounts_of(&rec, &chain)
        })
    }

    fn lowers(&self, parent: Option<&str>) -> Result<Vec<PathBuf>, SnapshotError> {
        let locked = self.meta.lock()?;
        Ok(locked.parent_chain(parent)?.iter().map(|p| self.fs_dir(p.id)).collect())
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn backend(&self) -> Backend {
        Backend::Overlay
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
        let chain = locked.parent_chain(rec.info.parent.as_deref())?;
        self.mounts_of(&rec, &chain)
    }

    fn commit(&self, name: &str, key: &str, diff_id: Option<DiffId>) -> Result<Info, SnapshotError> {
        check_key(name)?;
        let mut locked = self.meta.lock()?;
        let (info, id) = locked.transaction(|tx| {
            let rec = tx.require(key)?;
            if rec.info.kind != Kind::Active {
                return Err(SnapshotError::NotActive { key: key.to_string(), kind: rec.info.kind });
            }
            if tx.get(name)?.is_some() {
                return Err(SnapshotError::AlreadyExists { key: name.to_string() });
            }
            tx.commit(rec.id, name, diff_id.as_ref())?;
            Ok((tx.require(name)?.info, rec.id))
        })?;
        drop(locked);
        // The work directory is only needed while mounted; a leftover is harmless.
        if let Err(e) = treecopy::remove_tree(&self.work_dir(id)) {
            tracing::warn!(name, error = %e, "failed to remove an overlay work directory");
        }
        Ok(info)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.meta.remove(key)
    }

    fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        Ok(self.meta.lock()?.require(key)?.info)
    }

    fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let rec = self.meta.lock()?.require(key)?;
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
        let rec = self.meta.lock()?.require(key)?;
        if rec.info.kind != Kind::Active {
            return Err(SnapshotError::NotActive { key: key.to_string(), kind: rec.info.kind });
        }
        let lowers = self.lowers(rec.info.parent.as_deref())?;
        diff::overlay_diff(key, &self.fs_dir(rec.id), &lowers, self.userxattr, opts, out)
    }
}

/// Mounts a one-layer overlay in a scratch directory under `base` and unmounts it: `Ok` when
/// overlay works here (as this user, in this namespace, on this filesystem).
pub(super) fn probe(base: &Path, userxattr: bool) -> Result<(), SnapshotError> {
    let scratch = tempfile::Builder::new()
        .prefix("probe-")
        .tempdir_in(base)
        .map_err(|e| SnapshotError::io("create probe directory in", base, e))?;
    let p = scratch.path();
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(p.join(d)).map_err(|e| SnapshotError::io("create directory", p.join(d), e))?;
    }
    let merged = p.join("merged");
    mount_overlay(&[p.join("lower")], Some((&p.join("upper"), &p.join("work"))), userxattr, &merged)?;
    let unmounted = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty())
        .map_err(|e| SnapshotError::Unmount { target: merged.clone(), source: e.into() });
    treecopy::remove_tree(p)?;
    unmounted
}
