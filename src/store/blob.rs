//! Blobs: ingest (temp file → verify → fsync → rename) and verified reads.
//!
//! An [`Ingest`] is a temp file in `<root>/ingest/` (same filesystem as `blobs/`, so `TMPDIR`
//! never matters and the rename is atomic), flocked by its writer while alive so fsck can tell
//! residue from live work, hashed while written. Past its first MiB, a big blob is hashed on a
//! second thread while its writer writes and makes the next chunk (a layer's tar, a compressor's
//! output), and the kernel is asked to start writing it to disk as it goes, so the fsync at
//! commit finds little left to do. [`Ingest::commit`] verifies size and digest,
//! fsyncs, renames to `blobs/sha256/<hex>` (0444) and fsyncs the directory (containerd's
//! `Writer.Commit`). Reads open `O_NOFOLLOW` and insist on a regular file. Knows nothing of what
//! the bytes mean (manifests are the GC's business).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

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

/// Bytes an [`Ingest`] gathers before it writes them and hands them to its hasher.
const CHUNK: usize = 1 << 20;

/// Chunks in flight between an [`Ingest`] and its hashing thread (bounds the memory to a few
/// MiB per blob being written).
const CHUNKS_IN_FLIGHT: usize = 4;

/// Bytes written to the file after which the kernel is asked to start writing them to disk.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// A blob being written. Dropping it without [`Ingest::commit`] removes its temp file.
pub struct Ingest {
    inner: Arc<Inner>,
    path: TempPath,
    file: File,
    /// Bytes given but not yet written.
    buf: Vec<u8>,
    hashing: Hashing,
    /// Bytes given so far (in `buf` or written).
    len: u64,
    /// Bytes written to `file`.
    written: u64,
    /// Bytes written but not yet handed to the kernel's writeback.
    unflushed_from: u64,
}

/// Who hashes an [`Ingest`]'s bytes: the writing thread until [`FAILPOINT_AFTER`] bytes are
/// written, then a thread of its own, chunk by chunk, while the writer makes the next one.
enum Hashing {
    Inline(Hasher),
    Thread {
        /// Written chunks go out here; hashed (emptied) ones come back on `empty`.
        chunks: mpsc::SyncSender<Vec<u8>>,
        empty: mpsc::Receiver<Vec<u8>>,
        thread: JoinHandle<Hasher>,
    },
    /// Only while switching from one to the other.
    Switching,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("path", &self.path).field("len", &self.len).finish()
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
            path,
            file,
            buf: Vec::new(),
            hashing: Hashing::Inline(Hasher::new()),
            len: 0,
            written: 0,
            unflushed_from: 0,
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
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the gathered bytes and has them hashed: on this thread until
    /// [`FAILPOINT_AFTER`] bytes are in the file (then the `blob.write` failpoint), on the
    /// hashing thread after that.
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        if self.written - self.unflushed_from >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.unflushed_from, self.written - self.unflushed_from);
            self.unflushed_from = self.written;
        }
        match &mut self.hashing {
            Hashing::Inline(hasher) => {
                hasher.update(&self.buf);
                self.buf.clear();
                if self.written > FAILPOINT_AFTER {
                    failpoint::io("blob.write")?;
                    let Hashing::Inline(hasher) = std::mem::replace(&mut self.hashing, Hashing::Switching) else {
                        unreachable!("matched above")
                    };
                    self.hashing = Hashing::start(hasher)?;
                }
            }
            Hashing::Thread { chunks, empty, .. } => {
                let next = empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                let full = std::mem::replace(&mut self.buf, next);
                chunks.send(full).map_err(|_| io::Error::other("the blob hashing thread stopped"))?;
            }
            Hashing::Switching => return Err(io::Error::other("the blob hashing thread did not start")),
        }
        Ok(())
    }

    /// Verifies `expected` (digest, size) if given, makes the blob durable and visible under its
    /// digest, and records it in `lease` in the same critical section (shared store lock) as the
    /// rename. A blob that already exists is success: the temp file is discarded. On any error
    /// the temp file is removed and nothing appears under `blobs/`.
    pub fn commit(self, expected: Option<(Digest, u64)>, lease: Option<&Lease>) -> Result<(Digest, u64), StoreError> {
        let mut ingest = self;
        ingest.send_buf().map_err(|e| StoreError::io("write", &*ingest.path, e))?;
        let Ingest { inner, file, path, hashing, .. } = ingest;
        let hasher = hashing.finish().map_err(|e| StoreError::io("hash", &*path, e))?;
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
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK);
        }
        let n = buf.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    /// Writes what is gathered to the file (its hashing may still be under way).
    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Hashing {
    /// Starts the hashing thread on `hasher`.
    fn start(hasher: Hasher) -> io::Result<Hashing> {
        let (chunks, full) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (emptied, empty) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        let thread = std::thread::Builder::new().name("blob-hasher".into()).spawn(move || {
            let mut hasher = hasher;
            for mut chunk in full {
                hasher.update(&chunk);
                chunk.clear();
                let _ = emptied.try_send(chunk);
            }
            hasher
        })?;
        Ok(Hashing::Thread { chunks, empty, thread })
    }

    /// The hash of everything written, once the hashing thread has caught up.
    fn finish(self) -> io::Result<Hasher> {
        match self {
            Hashing::Inline(hasher) => Ok(hasher),
            Hashing::Thread { chunks, thread, .. } => {
                drop(chunks);
                thread.join().map_err(|_| io::Error::other("the blob hashing thread panicked"))
            }
            Hashing::Switching => Err(io::Error::other("the blob hashing thread did not start")),
        }
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to disk, without
/// waiting: the fsync at commit then finds them written or on their way. Only a hint; an
/// error (a filesystem without it) changes nothing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: sync_file_range reads no memory of ours; the fd is open for the call's duration.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
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
    fn a_big_blob_hashed_on_its_own_thread_has_the_digest_of_its_bytes() {
        let (_d, s) = store();
        // Past the inline first MiB, over several chunks, in writes of odd sizes that straddle
        // the chunk boundaries, and a total that is no multiple of a chunk.
        let bytes: Vec<u8> = (0..(5 * CHUNK + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut i = s.ingest().unwrap();
        for (n, piece) in bytes.chunks(CHUNK / 3 + 17).enumerate() {
            i.write_all(piece).unwrap();
            if n == 4 {
                i.flush().unwrap();
            }
        }
        assert_eq!(i.len(), bytes.len() as u64);
        assert!(matches!(i.hashing, Hashing::Thread { .. }), "a blob past the first MiB is hashed on a thread");
        let (d, n) = i.commit(Some((Digest::of(&bytes), bytes.len() as u64)), None).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(fs::read(s.blob_path(&d)).unwrap(), bytes);
        // Exactly the first MiB: hashed inline, and one byte more than that.
        for len in [FAILPOINT_AFTER as usize, FAILPOINT_AFTER as usize + 1] {
            let mut i = s.ingest().unwrap();
            i.write_all(&bytes[..len]).unwrap();
            assert_eq!(i.commit(None, None).unwrap().0, Digest::of(&bytes[..len]));
        }
        assert_eq!(ingest_entries(&s), 0);
    }

    #[test]
    fn a_dropped_big_ingest_leaves_no_temp() {
        let (_d, s) = store();
        let mut i = s.ingest().unwrap();
        i.write_all(&vec![1u8; 3 * CHUNK]).unwrap();
        drop(i);
        assert_eq!(ingest_entries(&s), 0);
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
