//! Blobs: ingest (temp file → verify → fsync → rename) and verified reads.
//!
//! An [`Ingest`] is a temp file in `<root>/ingest/` (same filesystem as `blobs/`, so `TMPDIR`
//! never matters and the rename is atomic), flocked by its writer while alive so fsck can tell
//! residue from live work, hashed while written. [`Ingest::commit`] verifies size and digest,
//! fsyncs, renames to `blobs/sha256/<hex>` (0444) and fsyncs the directory (containerd's
//! `Writer.Commit`). Reads open `O_NOFOLLOW` and insist on a regular file. Knows nothing of what
//! the bytes mean (manifests are the GC's business).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use tempfile::TempPath;

use super::lease::Lease;
use super::lock::{StoreLock, try_lock_file};
use super::{BLOB_MODE, Inner, Store, StoreError, fsync_dir};
use crate::failpoint;
use crate::oci::{Digest, Hasher};

/// Bytes after which the `blob.write` failpoint is evaluated (once).
const FAILPOINT_AFTER: u64 = 1 << 20;

/// A blob being written. Dropping it without [`Ingest::commit`] removes its temp file.
pub struct Ingest {
    inner: Arc<Inner>,
    file: BufWriter<File>,
    path: TempPath,
    hasher: Hasher,
    failpoint_evaluated: bool,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("path", &self.path).field("len", &self.hasher.len()).finish()
    }
}

impl Store {
    /// Starts writing a blob.
    pub fn ingest(&self) -> Result<Ingest, StoreError> {
        let ingest_dir = &self.inner.paths.ingest;
        // Created and flocked under the shared store lock, so prune and `fsck --repair`
        // (exclusive) never see it in the instant before its flock is taken.
        let _lock = StoreLock::shared(&self.inner.paths.lock)?;
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .suffix(".tmp")
            .tempfile_in(ingest_dir)
            .map_err(|e| StoreError::io("create temp file in", ingest_dir, e))?;
        let (file, path) = tmp.into_parts();
        if !try_lock_file(&file) {
            return Err(StoreError::io("lock", &*path, io::Error::from(io::ErrorKind::WouldBlock)));
        }
        Ok(Ingest {
            inner: Arc::clone(&self.inner),
            file: BufWriter::with_capacity(256 * 1024, file),
            path,
            hasher: Hasher::new(),
            failpoint_evaluated: false,
        })
    }

    /// Writes a small blob (a manifest, a config) from memory; returns its digest.
    pub fn write_blob(&self, bytes: &[u8], lease: Option<&Lease>) -> Result<Digest, StoreError> {
        let mut ingest = self.ingest()?;
        if let Err(e) = ingest.write_all(bytes) {
            return Err(StoreError::io("write", ingest.path(), e));
        }
        let expected = (Digest::of(bytes), bytes.len() as u64);
        let (digest, _) = ingest.commit(Some(expected), lease)?;
        Ok(digest)
    }

    /// Whether a blob named `digest` exists as a regular file (its content is not verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.file_type().is_file())
    }

    /// The size of blob `digest`.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let file = self.open_blob(digest)?;
        let meta = file.metadata().map_err(|e| StoreError::io("stat", self.blob_path(digest), e))?;
        Ok(meta.len())
    }

    /// Opens blob `digest` for reading: `O_NOFOLLOW`, and it must be a regular file (a blob
    /// replaced by a symlink or a fifo is an error naming the digest, catalogue E5).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(StoreError::NotFound { digest: *digest }),
            Err(Errno::LOOP) => {
                return Err(StoreError::NotRegular { digest: *digest, path });
            }
            Err(e) => return Err(StoreError::io("open", path, e.into())),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| StoreError::io("stat", &path, e))?;
        if !meta.file_type().is_file() {
            return Err(StoreError::NotRegular { digest: *digest, path });
        }
        Ok(file)
    }

    /// Reads blob `digest` whole, refusing more than `max_len` bytes, and verifies its digest.
    pub fn read_blob(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = file.metadata().map_err(|e| StoreError::io("stat", &path, e))?.len();
        if size > max_len {
            return Err(StoreError::TooLarge { digest: *digest, size, max: max_len });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_len.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| StoreError::io("read", &path, e))?;
        if bytes.len() as u64 > max_len {
            return Err(StoreError::TooLarge { digest: *digest, size: bytes.len() as u64, max: max_len });
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt { digest: *digest, actual });
        }
        Ok(bytes)
    }
}

impl Ingest {
    /// Path of the temp file (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Verifies `expected` (digest, size) if given, makes the blob durable and visible under its
    /// digest, and records it in `lease` in the same critical section (shared store lock) as the
    /// rename. A blob that already exists is success: the temp file is discarded. On any error
    /// the temp file is removed and nothing appears under `blobs/`.
    pub fn commit(self, expected: Option<(Digest, u64)>, lease: Option<&Lease>) -> Result<(Digest, u64), StoreError> {
        let Ingest { inner, file, path, hasher, .. } = self;
        let file = file.into_inner().map_err(|e| StoreError::io("write", &*path, e.into_error()))?;
        file.sync_all().map_err(|e| StoreError::io("fsync", &*path, e))?;
        let size = hasher.len();
        let digest = hasher.finish();
        if let Some((expected_digest, expected_size)) = expected {
            if expected_size != size {
                return Err(StoreError::SizeMismatch { expected: expected_size, actual: size });
            }
            if expected_digest != digest {
                return Err(StoreError::DigestMismatch { expected: expected_digest, actual: digest });
            }
        }
        file.set_permissions(fs::Permissions::from_mode(BLOB_MODE))
            .map_err(|e| StoreError::io("set permissions of", &*path, e))?;
        let target = inner.paths.blob(&digest);

        let _lock = StoreLock::shared(&inner.paths.lock)?;
        failpoint::io("blob.before_rename").map_err(|e| StoreError::io("rename into place", &target, e))?;
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_file() && meta.len() == size => {
                tracing::debug!(%digest, "blob already exists; discarding the new copy");
                drop(path);
                // Its writer may still be between its rename and its directory fsync.
                fsync_dir(&inner.paths.blobs)?;
            }
            existing => {
                if existing.is_ok() {
                    // A truncated blob or a symlink where a blob should be: replace it.
                    tracing::warn!(%digest, path = %target.display(), "replacing a damaged blob");
                    fs::rename(&path, &target).map_err(|e| StoreError::io("rename into place", &target, e))?;
                } else {
                    rename_noreplace(&path, &target)?;
                }
                if path.exists() {
                    // Lost a race with another writer of the same digest: theirs is as good.
                    drop(path);
                } else {
                    // Disarm the temp path: the file now lives under its digest.
                    let _ = path.keep();
                }
                failpoint::io("blob.after_rename").map_err(|e| StoreError::io("rename into place", &target, e))?;
                fsync_dir(&inner.paths.blobs)?;
            }
        }
        drop(file);
        if let Some(lease) = lease {
            lease.record(&digest)?;
        }
        tracing::debug!(%digest, size, "blob committed");
        Ok((digest, size))
    }
}

/// Renames without replacing; an existing target (a concurrent writer won) is success and the
/// source stays for the caller to drop.
fn rename_noreplace(from: &Path, to: &Path) -> Result<(), StoreError> {
    match rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: identical content, so replacing is harmless.
        Err(Errno::INVAL | Errno::NOSYS) => {
            fs::rename(from, to).map_err(|e| StoreError::io("rename into place", to, e))
        }
        Err(e) => Err(StoreError::io("rename into place", to, e.into())),
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        if !self.failpoint_evaluated && self.hasher.len() > FAILPOINT_AFTER {
            self.failpoint_evaluated = true;
            self.file.flush()?;
            failpoint::io("blob.write")?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Lists `blobs/sha256/`: every entry name with its path (names are not validated here).
pub(super) fn list_blob_dir(blobs: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(blobs).map_err(|e| StoreError::io("list", blobs, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", blobs, e))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testutil::store;

    fn ingest_entries(s: &Store) -> usize {
        fs::read_dir(s.root().join("ingest")).unwrap().count()
    }

    #[test]
    fn commit_verifies_and_stores_read_only() {
        let (_d, s) = store();
        let mut i = s.ingest().unwrap();
        i.write_all(b"hello").unwrap();
        let (d, n) = i.commit(Some((Digest::of(b"hello"), 5)), None).unwrap();
        assert_eq!((d, n), (Digest::of(b"hello"), 5));
        assert!(s.has_blob(&d));
        assert_eq!(s.blob_size(&d).unwrap(), 5);
        assert_eq!(s.read_blob(&d, 5).unwrap(), b"hello");
        let mode = fs::metadata(s.blob_path(&d)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o444);
        assert_eq!(ingest_entries(&s), 0);
        assert!(matches!(s.read_blob(&d, 4), Err(StoreError::TooLarge { .. })));
    }

    #[test]
    fn mismatch_leaves_nothing_under_either_digest() {
        let (_d, s) = store();
        let wrong = Digest::of(b"other");
        let mut i = s.ingest().unwrap();
        i.write_all(b"hello").unwrap();
        let err = i.commit(Some((wrong, 5)), None).unwrap_err();
        assert!(
            matches!(err, StoreError::DigestMismatch { expected, actual } if expected == wrong && actual == Digest::of(b"hello"))
        );
        let mut i = s.ingest().unwrap();
        i.write_all(b"hello").unwrap();
        assert!(matches!(
            i.commit(Some((Digest::of(b"hello"), 6)), None),
            Err(StoreError::SizeMismatch { expected: 6, actual: 5 })
        ));
        assert!(!s.has_blob(&wrong));
        assert!(!s.has_blob(&Digest::of(b"hello")));
        assert_eq!(ingest_entries(&s), 0);
    }

    #[test]
    fn dropped_ingest_leaves_no_temp_and_existing_blob_is_success() {
        let (_d, s) = store();
        let mut i = s.ingest().unwrap();
        i.write_all(b"partial").unwrap();
        assert_eq!(ingest_entries(&s), 1);
        drop(i);
        assert_eq!(ingest_entries(&s), 0);
        let a = s.write_blob(b"same", None).unwrap();
        let b = s.write_blob(b"same", None).unwrap();
        assert_eq!(a, b);
        assert_eq!(ingest_entries(&s), 0);
    }

    #[test]
    fn symlinked_and_corrupt_blobs_are_errors_naming_the_digest() {
        let (dir, s) = store();
        let d = s.write_blob(b"content", None).unwrap();
        let p = s.blob_path(&d);
        fs::remove_file(&p).unwrap();
        let canary = dir.path().join("canary");
        fs::write(&canary, b"content").unwrap();
        std::os::unix::fs::symlink(&canary, &p).unwrap();
        let err = s.read_blob(&d, 100).unwrap_err();
        assert!(matches!(err, StoreError::NotRegular { digest, .. } if digest == d), "{err:?}");
        assert!(err.to_string().contains(&d.to_string()));
        assert!(!s.has_blob(&d));
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"tampered").unwrap();
        assert!(matches!(s.read_blob(&d, 100), Err(StoreError::Corrupt { digest, .. }) if digest == d));
        assert!(matches!(s.open_blob(&Digest::of(b"absent")), Err(StoreError::NotFound { .. })));
        // Committing the right content again repairs the damaged blob.
        s.write_blob(b"content", None).unwrap();
        assert_eq!(s.read_blob(&d, 100).unwrap(), b"content");
    }

    #[test]
    fn concurrent_same_digest_commits_all_succeed() {
        let (_d, s) = store();
        let data = vec![7u8; 3 << 20];
        let expected = Digest::of(&data);
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let s = Store::open(s.root()).unwrap();
                let (data, barrier) = (&data, &barrier);
                scope.spawn(move || {
                    let mut i = s.ingest().unwrap();
                    i.write_all(data).unwrap();
                    barrier.wait();
                    let (d, _) = i.commit(Some((expected, data.len() as u64)), None).unwrap();
                    assert_eq!(d, expected);
                });
            }
        });
        assert_eq!(s.read_blob(&expected, 4 << 20).unwrap().len(), 3 << 20);
        assert_eq!(ingest_entries(&s), 0);
    }
}
