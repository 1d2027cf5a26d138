//! Content hashes of a selection: exactly what `copy` would copy, nothing about where the
//! context lies or when its files were touched.
//!
//! Per entry: sha256 over its kind, permission bits (`0o7777`), uid, gid and its content digest
//! (regular file) or link target (symlink); a second link to an inode already seen in the same
//! selection also names the first path (copy preserves hardlinks). Entries are named relative
//! to their selected item, and each item contributes its path and whether it is a directory,
//! so the same tree in two directories gives the same digest and a renamed file changes it.
//! Extended attributes of files and directories are hashed (not those of overlayfs nor
//! `security.selinux`, which are never copied). Sockets are left out, as `copy` skips them.
//!
//! The walk is sequential (cheap: `getdents` + `lstat`; `lstat`s of one directory in parallel
//! cost more than they saved); when only directories are selected, the stat cache's rows below
//! them are read on a second thread meanwhile. File contents are hashed in parallel with rayon,
//! streaming, after the stat cache has answered what it can.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use rayon::prelude::*;
use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;

use super::statcache::{StatCache, StatKey};
use super::walk::{At, Kind, Node, Visitor, Walk};
use super::{COPIED_XATTRS, ContextError, Selection, SourceRoot, compile_excludes};
use crate::dirfd::{self, Xattrs};
use crate::oci::{Digest, Hasher};

/// Domain separation and schema version of the digest (change it when the hashed fields change).
const SCHEMA: &[u8] = b"slipway.context.v1\0";

/// A content hash of exactly what `copy` would copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    pub digest: Digest,
    /// One entry per file, dir, symlink (path relative to the source root → digest of that entry's
    /// type, mode bits, uid, gid, content or link target), sorted by path. Used to explain cache misses
    /// ("src/main.rs changed (sha256:1f2e… → 9a0b…)").
    pub files: Vec<(String, Digest)>,
    /// Regular files whose content was read (the others were answered by the stat cache).
    pub files_read: u64,
    /// Bytes of content read.
    pub bytes_read: u64,
}

struct Collected {
    rel: Vec<u8>,
    src_rel: Vec<u8>,
    kind: Kind,
    st: rustix::fs::Stat,
    /// Symlink target, or the first path of an inode already seen.
    extra: Vec<u8>,
}

struct Collector<'r> {
    root: BorrowedFd<'r>,
    entries: Vec<Collected>,
    inodes: HashMap<(u64, u64), Vec<u8>>,
}

impl Collector<'_> {
    fn push(&mut self, node: &Node<'_>, extra: Vec<u8>) {
        self.entries.push(Collected {
            rel: node.rel.to_vec(),
            src_rel: node.src_rel.to_vec(),
            kind: node.kind,
            st: *node.st,
            extra,
        });
    }
}

impl Visitor for Collector<'_> {
    fn enter_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError> {
        let read_err = |e: Errno| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() };
        let dir =
            dirfd::open_in_root(self.root, node.src_rel, dirfd::DIR_FLAGS | OFlags::NOFOLLOW).map_err(read_err)?;
        let xattrs = dirfd::xattrs(dir.as_fd(), COPIED_XATTRS).map_err(read_err)?;
        let mut extra = Vec::new();
        if !xattrs.is_empty() {
            let mut h = Hasher::new();
            hash_xattrs(&mut h, &xattrs);
            extra = h.finish().as_bytes().to_vec();
        }
        self.push(node, extra);
        Ok(())
    }

    fn leave_dir(&mut self, _node: &Node<'_>) -> Result<(), ContextError> {
        Ok(())
    }

    fn leaf(&mut self, node: &Node<'_>, at: At<'_>) -> Result<(), ContextError> {
        let extra = match node.kind {
            Kind::Socket => return Ok(()),
            Kind::Symlink => at
                .read_link()
                .map_err(|e| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() })?,
            Kind::File if node.st.st_nlink > 1 => {
                let key = (node.st.st_dev, node.st.st_ino);
                match self.inodes.get(&key) {
                    Some(first) => [b"=".as_slice(), first].concat(),
                    None => {
                        self.inodes.insert(key, node.src_rel.to_vec());
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        self.push(node, extra);
        Ok(())
    }
}

/// Hashes the selection: content, mode, uid/gid, symlink targets, names relative to each selected item
/// (so the absolute context path and mtimes do not matter). With a stat cache, a file whose
/// (dev, ino, size, mtime ns, ctime ns, mode, uid, gid) did not change is not read again. Parallel
/// and streaming: a 4 GiB file is never held in memory.
pub fn digest(
    src: &SourceRoot,
    selection: &Selection,
    excludes: &[String],
    stat: Option<&StatCache>,
) -> Result<SourceDigest, ContextError> {
    let excludes = compile_excludes(excludes)?;
    let (root, root_real) = src.open()?;
    let walk = Walk { src, root: root.as_fd(), excludes: excludes.as_ref() };
    let root_key = root_real.to_string_lossy().into_owned();
    let mut per_item = Vec::with_capacity(selection.items.len());
    let mut collector = Collector { root: root.as_fd(), entries: Vec::new(), inodes: HashMap::new() };
    // When only directories are selected, the stat cache's rows under them are read on another
    // thread while the walk runs (the walk and that read are most of a no-op rebuild).
    let dirs: Option<Vec<&[u8]>> =
        selection.items.iter().map(|item| item.is_dir.then_some(item.path.as_bytes())).collect();
    let root_key_ref = root_key.as_str();
    let (walked, prefetched) = std::thread::scope(|scope| {
        let prefetch = stat
            .zip(dirs.filter(|d| !d.is_empty()))
            .map(|(cache, dirs)| scope.spawn(move || cache.rows_under(root_key_ref, &dirs)));
        let walked = selection.items.iter().try_for_each(|item| {
            let start = collector.entries.len();
            walk.run(item, &mut collector)?;
            per_item.push(start..collector.entries.len());
            Ok::<_, ContextError>(())
        });
        (walked, prefetch.map(|t| t.join().expect("the stat cache read does not panic")))
    });
    walked?;
    let prefetched = prefetched.transpose()?;
    let entries = collector.entries;

    // Content digests: from the stat cache where it can answer, else read (in parallel).
    let files: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].kind == Kind::File).collect();
    let keys: Vec<(&[u8], StatKey)> =
        files.iter().map(|&i| (entries[i].src_rel.as_slice(), StatKey::of(&entries[i].st))).collect();
    let cached = match stat {
        Some(cache) => cache.lookup_with(&root_key, &keys, prefetched)?,
        None => vec![None; files.len()],
    };
    let read_started = now_ns();
    let to_read: Vec<usize> = (0..files.len()).filter(|&k| cached[k].is_none()).collect();
    let read: Vec<(Digest, u64)> =
        to_read.par_iter().map(|&k| hash_file(root.as_fd(), &entries[files[k]])).collect::<Result<_, _>>()?;
    let mut content: HashMap<usize, Digest> = HashMap::with_capacity(files.len());
    for (k, &i) in files.iter().enumerate() {
        if let Some(d) = cached[k] {
            content.insert(i, d);
        }
    }
    let mut bytes_read = 0;
    let mut fresh = Vec::with_capacity(to_read.len());
    for (&k, &(d, n)) in to_read.iter().zip(&read) {
        content.insert(files[k], d);
        bytes_read += n;
        fresh.push((keys[k].0, keys[k].1, d));
    }
    if let Some(cache) = stat {
        cache.store(&root_key, &fresh, read_started)?;
    }

    let mut total = Hasher::new();
    total.update(SCHEMA);
    let mut listing = Vec::with_capacity(entries.len());
    for (item, range) in selection.items.iter().zip(per_item) {
        put(&mut total, item.path.as_bytes());
        total.update(&[u8::from(item.is_dir)]);
        put(&mut total, item.name.as_bytes());
        for i in range {
            let e = &entries[i];
            let d = entry_digest(e, content.get(&i));
            put(&mut total, &e.rel);
            total.update(d.as_bytes());
            listing.push((dirfd::display(&e.src_rel), d));
        }
        total.update(b"\xff");
    }
    listing.sort();
    Ok(SourceDigest { digest: total.finish(), files: listing, files_read: read.len() as u64, bytes_read })
}

fn now_ns() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Length-prefixed bytes, so concatenations cannot collide.
fn put(h: &mut Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn entry_digest(e: &Collected, content: Option<&Digest>) -> Digest {
    let mut h = Hasher::new();
    h.update(&[e.kind.tag()]);
    h.update(&(e.st.st_mode & 0o7777).to_le_bytes());
    h.update(&e.st.st_uid.to_le_bytes());
    h.update(&e.st.st_gid.to_le_bytes());
    if let Some(c) = content {
        h.update(c.as_bytes());
    }
    put(&mut h, &e.extra);
    h.finish()
}

/// Reads one regular file by its path inside the root (never following a final symlink, never
/// blocking on a FIFO swapped in) and checks it is the inode the walk saw.
fn hash_file(root: BorrowedFd<'_>, e: &Collected) -> Result<(Digest, u64), ContextError> {
    let path = || dirfd::display(&e.src_rel);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = dirfd::open_in_root(root, &e.src_rel, flags).map_err(|err| match err {
        Errno::LOOP | Errno::NOENT => ContextError::Changed { path: path() },
        err => ContextError::Read { path: path(), source: err.into() },
    })?;
    let now = rustix::fs::fstat(&fd).map_err(|err| ContextError::Read { path: path(), source: err.into() })?;
    if now.st_ino != e.st.st_ino || now.st_dev != e.st.st_dev || dirfd::file_type(&now) != FileType::RegularFile {
        return Err(ContextError::Changed { path: path() });
    }
    let mut file = std::fs::File::from(fd);
    thread_local! {
        // One buffer per rayon worker: allocating 256 KiB per file costs more than small files do.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 << 10]);
    }
    BUF.with_borrow_mut(|buf| {
        let mut h = Hasher::new();
        let mut n = 0u64;
        loop {
            match file.read(buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ContextError::Read { path: path(), source }),
            }
        }
        let content = h.finish();
        // xattrs belong to the file's digest (and so to the stat cache row: setting one changes ctime).
        let xattrs = dirfd::xattrs(file.as_fd(), COPIED_XATTRS)
            .map_err(|err| ContextError::Read { path: path(), source: err.into() })?;
        if xattrs.is_empty() {
            return Ok((content, n));
        }
        let mut h = Hasher::new();
        h.update(b"xattrs\0");
        h.update(content.as_bytes());
        hash_xattrs(&mut h, &xattrs);
        Ok((h.finish(), n))
    })
}

/// Feeds xattrs into a hash, length-prefixed.
fn hash_xattrs(h: &mut Hasher, xattrs: &Xattrs) {
    h.update(&(xattrs.len() as u64).to_le_bytes());
    for (name, value) in xattrs {
        for part in [name, value] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
}
