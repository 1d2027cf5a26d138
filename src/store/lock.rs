//! The store-wide `<root>/lock` flock and per-file flocks on ingest temp files.
//!
//! Shared mode is held by a blob commit from its existence check to its lease record, by the
//! creation of an ingest temp file until its flock is taken, by `Lease::add`, by a read-only
//! fsck and by [`Store::open`](super::Store::open)'s health check; exclusive mode by GC (mark +
//! sweep), tag writes, `fsck --repair`, `Store::open`'s set-up or database repair and (only
//! when free at once) its reclaim of crash residue. Every acquisition opens its own file
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

    /// The exclusive lock if nobody holds the lock in any mode right now, else `None`.
    pub(super) fn try_exclusive(path: &Path) -> Result<Option<StoreLock>, StoreError> {
        let file = open_rw(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StoreLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(StoreError::io("lock", path, e.into())),
        }
    }

    fn acquire(path: &Path, op: FlockOperation) -> Result<StoreLock, StoreError> {
        let file = open_rw(path)?;
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

/// A lease's liveness pin: an open-file-description (OFD) write lock on byte `id` of
/// `<root>/lock`. OFD locks are independent of the flock on the same file, belong to the open
/// file description (so threads and processes conflict alike) and die with their holder, so a
/// lease whose process was killed is seen as dead at once instead of pinning for its whole TTL.
#[derive(Debug)]
pub(super) struct LeasePin {
    _file: File,
}

impl LeasePin {
    /// Takes the pin for lease `id`.
    pub(super) fn take(path: &Path, id: i64) -> Result<LeasePin, StoreError> {
        let file = open_rw(path)?;
        let mut fl = byte_lock(id, libc::F_WRLCK);
        loop {
            // SAFETY: `file` is an open descriptor for the duration of the call and `fl` is a live,
            // fully initialised `struct flock` the kernel reads and writes only during the call.
            let rc = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_OFD_SETLK, &mut fl) };
            if rc == 0 {
                return Ok(LeasePin { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::io("pin lease in", path, err));
            }
        }
    }
}

/// Tells live lease pins from dead ones.
#[derive(Debug)]
pub(super) struct LeaseProbe {
    file: File,
    path: std::path::PathBuf,
}

impl LeaseProbe {
    pub(super) fn open(path: &Path) -> Result<LeaseProbe, StoreError> {
        Ok(LeaseProbe { file: open_rw(path)?, path: path.to_path_buf() })
    }

    /// Whether some open file description holds the pin of lease `id`.
    pub(super) fn is_held(&self, id: i64) -> Result<bool, StoreError> {
        let mut fl = byte_lock(id, libc::F_WRLCK);
        // SAFETY: as in `LeasePin::take`; F_OFD_GETLK only fills in `fl`.
        let rc = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&self.file), libc::F_OFD_GETLK, &mut fl) };
        if rc != 0 {
            return Err(StoreError::io("probe lease pins in", &self.path, std::io::Error::last_os_error()));
        }
        Ok(i32::from(fl.l_type) != libc::F_UNLCK)
    }
}

/// A one-byte lock request at offset `id` (pid 0, as OFD locks require).
fn byte_lock(id: i64, kind: i32) -> libc::flock {
    // SAFETY: `struct flock` is plain old data; all-zero is a valid value (and l_pid must be 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = id;
    fl.l_len = 1;
    fl
}

fn open_rw(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| StoreError::io("open lock file", path, e))
}
