//! The store-wide `<root>/lock` flock and per-file flocks on ingest temp files.
//!
//! Shared mode is held by a blob commit from its existence check to its lease record, by the
//! creation of an ingest temp file until its flock is taken, by `Lease::add`, by a read-only
//! fsck and by [`Store::open`](super::Store::open)'s health check; exclusive mode by GC (mark +
//! sweep), tag writes, `fsck --repair` and `Store::open`'s set-up or database repair. Every acquisition opens its own file
//! description, so threads of one process exclude each other exactly as processes do, and the
//! kernel drops the lock when a holder dies (kill -9 never leaves a stale lock: catalogue E8).
//! Knows nothing of what the lock protects.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use super::StoreError;

/// A held `<root>/lock`; released on drop.
#[derive(Debug)]
pub(super) struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Blocks until the shared lock is held.
    pub(super) fn shared(path: &Path) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(path, FlockOperation::LockShared)
    }

    /// Blocks until the exclusive lock is held.
    pub(super) fn exclusive(path: &Path) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(path, FlockOperation::LockExclusive)
    }

    fn acquire(path: &Path, op: FlockOperation) -> Result<StoreLock, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| StoreError::io("open lock file", path, e))?;
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(StoreError::io("lock", path, e.into())),
            }
        }
        tracing::trace!(path = %path.display(), ?op, "store lock held");
        Ok(StoreLock { _file: file })
    }
}

/// Takes a non-blocking exclusive flock on an open temp file: `true` when we got it.
pub(super) fn try_lock_file(file: &File) -> bool {
    flock(file, FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Whether a temp file is still held by a live writer (its flock cannot be taken). A file that
/// cannot be opened counts as not held.
pub(super) fn is_held(path: &Path) -> bool {
    let opened =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path);
    match opened {
        Ok(f) => !try_lock_file(&f),
        Err(_) => false,
    }
}
