//! Scratch directories inside the store, for work that needs a real tree on the store's
//! filesystem (unpacking an archive before it is re-written as a layer).
//!
//! A scratch directory lives in `<root>/ingest/` and holds an flock on its own directory fd while
//! alive, exactly like an ingest temp file: prune and `fsck --repair` remove it only once its
//! holder is gone (even after kill -9), and never while it is in use.

use std::fs::File;
use std::io;
use std::path::Path;

use super::lock::{StoreLock, try_lock_file};
use super::{Store, StoreError};

/// A directory removed with its content when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
    _held: File,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Store {
    /// Creates a scratch directory named after `label`.
    pub fn scratch_dir(&self, label: &str) -> Result<ScratchDir, StoreError> {
        let ingest_dir = &self.inner.paths.ingest;
        // Created and flocked under the shared store lock, as ingest temp files are.
        let _lock = StoreLock::shared(&self.inner.paths.lock)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .suffix(".dir")
            .tempdir_in(ingest_dir)
            .map_err(|e| StoreError::io("create scratch directory in", ingest_dir, e))?;
        let held = File::open(dir.path()).map_err(|e| StoreError::io("open", dir.path(), e))?;
        if !try_lock_file(&held) {
            return Err(StoreError::io("lock", dir.path(), io::Error::from(io::ErrorKind::WouldBlock)));
        }
        Ok(ScratchDir { dir, _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_safe_from_prune_while_held_and_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("root")).unwrap();
        let scratch = store.scratch_dir("import").unwrap();
        std::fs::write(scratch.path().join("f"), b"x").unwrap();
        let report = store.prune(false).unwrap();
        assert!(report.temp_removed.is_empty(), "{report:?}");
        assert!(scratch.path().join("f").exists());
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists());
    }
}
