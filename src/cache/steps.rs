//! One step, built once: while a process builds a layer step it holds a flock named by the
//! step's cache key (`<root>/cache/steps/<key hex>.lock`); another process — or another stage
//! of the same build — that needs the same key waits for it, then finds the record the first one
//! wrote instead of running the step again. A flock dies with its process, so a killed holder
//! lets the waiters go on (one of them then runs the step). The file is removed by the holder
//! once the step's record is written; a waiter still blocked on the removed file finds that
//! record when it wakes, and a newcomer makes a new file and finds it too.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::mounts::{Mode, io_err, open_lock, try_flock};
use super::{CacheError, CacheKey};

/// How often a waiter looks again (and at its cancel flag).
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The step locks of one store.
#[derive(Debug)]
pub struct StepLocks {
    dir: PathBuf,
}

/// A step's lock, held until dropped (or until [`StepLock::release_done`] removes its file).
#[derive(Debug)]
pub struct StepLock {
    file: File,
    path: PathBuf,
}

impl StepLocks {
    /// Opens (creating) `cache_dir/steps`.
    pub fn open(cache_dir: &Path) -> Result<StepLocks, CacheError> {
        let dir = cache_dir.join("steps");
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&dir).map_err(|e| io_err("create", &dir, e))?;
        Ok(StepLocks { dir })
    }

    /// Takes the lock of `key`, waiting while another holder has it: `waiting` is called once
    /// when it has to wait. `None` when `cancelled` says so while waiting.
    pub fn lock(
        &self,
        key: &CacheKey,
        cancelled: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(),
    ) -> Result<Option<StepLock>, CacheError> {
        let path = self.dir.join(format!("{}.lock", key.digest().hex()));
        let mut waited = false;
        loop {
            let file = open_lock(&path)?;
            if try_flock(&file, Mode::Exclusive, &path)? {
                return Ok(Some(StepLock { file, path }));
            }
            if cancelled() {
                return Ok(None);
            }
            if !waited {
                waiting();
                waited = true;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl StepLock {
    /// The step's record is written: removes the lock file, then lets go of the lock.
    pub fn release_done(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "removing a step lock");
        }
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyInputs;

    #[test]
    fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let locks = StepLocks::open(dir.path()).unwrap();
        let mut inputs = KeyInputs::default();
        inputs.add("x", "1".to_string());
        let key = inputs.key();
        let first = locks.lock(&key, &|| false, &mut || {}).unwrap().unwrap();
        // Another file description of the same path: it must wait; cancelled, it gives up.
        let mut waited = 0;
        assert!(locks.lock(&key, &|| true, &mut || waited += 1).unwrap().is_none());
        assert_eq!(waited, 0, "cancelled before it had to wait");
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(120));
            first.release_done();
        });
        let mut waited = 0;
        let second = locks.lock(&key, &|| false, &mut || waited += 1).unwrap();
        assert!(second.is_some());
        assert_eq!(waited, 1);
        released.join().unwrap();
    }
}
