//! The deterministic tar writer.
//!
//! Owns how a filesystem object becomes tar bytes: ustar headers, PAX records for whatever
//! ustar cannot hold (long or non-ASCII-safe names, big sizes, big ids, xattrs), hardlink
//! detection, mtime clamping and the sorted walk of [`write_dir`]. Knows nothing about
//! compression, the store or how layers are applied. Never follows a symlink and never holds a
//! file's content in memory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::LayerError;
use super::reader::{Entry, EntryKind};
use super::tarfmt::{self, BLOCK, MAX_OCTAL_8, MAX_OCTAL_12, UstarFields, flag};
use crate::dirfd::{self, XattrFilter, Xattrs};
use crate::oci::{DiffId, HashingWriter};

/// Options of the writer.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// When set, every mtime later than this is clamped to it (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// Writes tar entries in the order they are added. Paths are given relative to the layer root,
/// without a leading `./`; the writer adds the trailing `/` of directories.
pub struct TarWriter<W: Write> {
    out: W,
    epoch: Option<i64>,
    /// (dev, ino) of multiply-linked non-directories → the first path written for them.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

/// Metadata of one entry, before it is fitted into ustar + PAX.
struct Meta<'a> {
    path: &'a [u8],
    typeflag: u8,
    linkname: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    devmajor: u32,
    devminor: u32,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, opts: &WriteOptions) -> TarWriter<W> {
        TarWriter { out, epoch: opts.source_date_epoch, links: HashMap::new(), buf: vec![0u8; 1 << 20] }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.out.write_all(bytes).map_err(|source| LayerError::Write { source })
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    /// Writes the PAX header (if needed) and the ustar header of one entry.
    fn write_header(&mut self, m: &Meta<'_>) -> Result<(), LayerError> {
        let mut pax = Vec::new();
        if m.path.len() > 100 {
            tarfmt::pax_record(&mut pax, b"path", m.path);
        }
        if m.linkname.len() > 100 {
            tarfmt::pax_record(&mut pax, b"linkpath", m.linkname);
        }
        if m.size > MAX_OCTAL_12 {
            tarfmt::pax_record(&mut pax, b"size", m.size.to_string().as_bytes());
        }
        if m.uid > MAX_OCTAL_8 {
            tarfmt::pax_record(&mut pax, b"uid", m.uid.to_string().as_bytes());
        }
        if m.gid > MAX_OCTAL_8 {
            tarfmt::pax_record(&mut pax, b"gid", m.gid.to_string().as_bytes());
        }
        let mtime_fits = u64::try_from(m.mtime).is_ok_and(|t| t <= MAX_OCTAL_12);
        if !mtime_fits {
            tarfmt::pax_record(&mut pax, b"mtime", m.mtime.to_string().as_bytes());
        }
        // Non-UTF-8 `path`/`linkpath` values are written as raw bytes without `hdrcharset`:
        // GNU tar warns about that keyword yet keeps raw values byte-exact anyway.
        for (name, value) in m.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            tarfmt::pax_record(&mut pax, &key, value);
        }
        if !pax.is_empty() {
            let header = tarfmt::encode_header(&UstarFields {
                name: b"././@PaxHeader",
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: pax.len() as u64,
                mtime: 0,
                typeflag: flag::PAX,
                linkname: b"",
                devmajor: 0,
                devminor: 0,
            });
            self.write_all(&header)?;
            self.write_all(&pax)?;
            self.write_padding(pax.len() as u64)?;
        }
        let header = tarfmt::encode_header(&UstarFields {
            name: m.path,
            mode: m.mode & 0o7777,
            uid: if m.uid > MAX_OCTAL_8 { 0 } else { m.uid },
            gid: if m.gid > MAX_OCTAL_8 { 0 } else { m.gid },
            size: if m.size > MAX_OCTAL_12 { 0 } else { m.size },
            mtime: if mtime_fits { m.mtime as u64 } else { 0 },
            typeflag: m.typeflag,
            linkname: m.linkname,
            devmajor: m.devmajor,
            devminor: m.devminor,
        });
        self.write_all(&header)
    }

    fn write_padding(&mut self, size: u64) -> Result<(), LayerError> {
        let pad = tarfmt::padding(size) as usize;
        self.write_all(&[0u8; BLOCK][..pad])
    }

    /// Adds the object at `abs` (read with lstat, never followed) under the name `rel`.
    /// Sockets are skipped (they cannot be archived).
    pub fn add_path(&mut self, rel: &Path, abs: &Path) -> Result<(), LayerError> {
        self.add_path_with_mtime(rel, abs, None)
    }

    /// [`add_path`](Self::add_path), with the mtime `mtime` instead of the object's when given
    /// (a directory a copy changes, written before it is changed).
    pub fn add_path_with_mtime(&mut self, rel: &Path, abs: &Path, mtime: Option<i64>) -> Result<(), LayerError> {
        let rel = check_rel(rel)?;
        let read_err = |source| LayerError::ReadSource { path: abs.to_path_buf(), source };
        let md = fs::symlink_metadata(abs).map_err(read_err)?;
        let ft = md.file_type();
        let xattrs = read_xattrs(abs).map_err(read_err)?;
        let mtime = self.clamp(mtime.unwrap_or(md.mtime()));
        let mut path = rel.to_vec();
        let mut meta = Meta {
            path: &[],
            typeflag: flag::REGULAR,
            linkname: &[],
            mode: md.mode(),
            uid: u64::from(md.uid()),
            gid: u64::from(md.gid()),
            size: 0,
            mtime,
            devmajor: 0,
            devminor: 0,
            xattrs: &xattrs,
        };
        if ft.is_dir() {
            path.push(b'/');
            meta.path = &path;
            meta.typeflag = flag::DIR;
            return self.write_header(&meta);
        }
        if ft.is_socket() {
            tracing::debug!(path = %abs.display(), "skipping socket");
            return Ok(());
        }
        meta.path = &path;
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                meta.typeflag = flag::LINK;
                meta.linkname = &first;
                meta.xattrs = &[];
                return self.write_header(&meta);
            }
            self.links.insert(key, path.clone());
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(read_err)?;
            meta.typeflag = flag::SYMLINK;
            meta.linkname = target.as_os_str().as_bytes();
            return self.write_header(&meta);
        }
        if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() {
            meta.typeflag = if ft.is_fifo() {
                flag::FIFO
            } else if ft.is_block_device() {
                flag::BLOCK
            } else {
                flag::CHAR
            };
            if !ft.is_fifo() {
                let rdev = md.rdev();
                meta.devmajor = rustix::fs::major(rdev);
                meta.devminor = rustix::fs::minor(rdev);
            }
            return self.write_header(&meta);
        }
        // Regular file: open without following (it may have been swapped for a link since lstat).
        let mut file =
            File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(abs).map_err(read_err)?;
        meta.size = md.len();
        self.write_header(&meta)?;
        self.copy_exact(&mut file, md.len(), abs)?;
        self.write_padding(md.len())
    }

    /// Adds an entry read from another archive (its path, link target and metadata as stored;
    /// its mtime clamped as every entry), with its data from `data` (exactly `entry.size` bytes
    /// for a regular file). Returns whether the mtime was clamped.
    pub fn add_entry(
        &mut self,
        entry: &Entry,
        data: &mut dyn FnMut(&mut [u8]) -> Result<usize, LayerError>,
    ) -> Result<bool, LayerError> {
        let mtime = self.clamp(entry.mtime);
        let typeflag = match entry.kind {
            EntryKind::Regular => flag::REGULAR,
            EntryKind::Link => flag::LINK,
            EntryKind::Symlink => flag::SYMLINK,
            EntryKind::CharDevice => flag::CHAR,
            EntryKind::BlockDevice => flag::BLOCK,
            EntryKind::Directory => flag::DIR,
            EntryKind::Fifo => flag::FIFO,
        };
        let size = if entry.kind == EntryKind::Regular { entry.size } else { 0 };
        self.write_header(&Meta {
            path: &entry.path,
            typeflag,
            linkname: &entry.link,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            size,
            mtime,
            devmajor: entry.devmajor,
            devminor: entry.devminor,
            xattrs: &entry.xattrs,
        })?;
        let mut left = size;
        let mut buf = std::mem::take(&mut self.buf);
        let copied = (|| {
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = data(&mut buf[..want])?;
                if n == 0 {
                    let source =
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "entry data ends before its size");
                    return Err(LayerError::ReadStream { source });
                }
                self.out.write_all(&buf[..n]).map_err(|source| LayerError::Write { source })?;
                left -= n as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        copied?;
        self.write_padding(size)?;
        Ok(mtime != entry.mtime)
    }

    fn copy_exact(&mut self, file: &mut File, size: u64, abs: &Path) -> Result<(), LayerError> {
        let mut left = size;
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| {
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = match file.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(LayerError::ReadSource { path: abs.to_path_buf(), source });
                    }
                };
                if n == 0 {
                    return Err(LayerError::SourceChanged { path: abs.to_path_buf() });
                }
                self.out.write_all(&buf[..n]).map_err(|source| LayerError::Write { source })?;
                left -= n as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        res
    }

    fn add_marker(&mut self, path: &[u8]) -> Result<(), LayerError> {
        let mtime = self.epoch.unwrap_or(0).max(0);
        self.write_header(&Meta {
            path,
            typeflag: flag::REGULAR,
            linkname: &[],
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime,
            devmajor: 0,
            devminor: 0,
            xattrs: &[],
        })
    }

    /// Adds a whiteout deleting `rel` from lower layers: `dir/.wh.name`.
    pub fn add_whiteout(&mut self, rel: &Path) -> Result<(), LayerError> {
        let rel = check_rel(rel)?;
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..=i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        let mut path = dir.to_vec();
        path.extend_from_slice(b".wh.");
        path.extend_from_slice(name);
        self.add_marker(&path)
    }

    /// Marks directory `dir` opaque: `dir/.wh..wh..opq` (lower content of `dir` is hidden).
    pub fn add_opaque(&mut self, dir: &Path) -> Result<(), LayerError> {
        let dir = check_rel(dir)?;
        let mut path = dir.to_vec();
        path.extend_from_slice(b"/.wh..wh..opq");
        self.add_marker(&path)
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> Result<W, LayerError> {
        self.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush().map_err(|source| LayerError::Write { source })?;
        Ok(self.out)
    }
}

/// Validates a relative entry name: non-empty, no leading `/` or `./`, no `.`/`..` components.
fn check_rel(rel: &Path) -> Result<&[u8], LayerError> {
    let bytes = rel.as_os_str().as_bytes();
    let bytes = bytes.strip_suffix(b"/").unwrap_or(bytes);
    let invalid = |reason| LayerError::InvalidName { name: dirfd::display(bytes), reason };
    if bytes.is_empty() {
        return Err(invalid("empty name"));
    }
    if bytes.starts_with(b"/") {
        return Err(invalid("absolute name"));
    }
    if bytes.split(|&b| b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") {
        return Err(invalid("name with an empty, `.` or `..` component"));
    }
    if bytes.contains(&0) {
        return Err(invalid("name with a NUL byte"));
    }
    Ok(bytes)
}

/// Extended attributes of `path` (not followed), sorted by name, as a layer records them:
/// overlayfs's own left out, the SELinux label kept ([`XattrFilter::KeepSelinuxLabel`]).
fn read_xattrs(path: &Path) -> std::io::Result<Xattrs> {
    Ok(dirfd::xattrs_nofollow(path, XattrFilter::KeepSelinuxLabel)?)
}

/// Tars the tree under `root` (the root itself is not an entry) in byte order of the entry
/// paths, returning the output, the DiffID of the tar stream and its length.
///
/// The walk never follows symlinks. Directory children are visited with the key `name/` for
/// directories and `name` otherwise, which makes the depth-first order equal to the global byte
/// order of the emitted paths (`a-b` < `a/` < `a/x` < `a0`).
pub fn write_dir<W: Write>(root: &Path, opts: &WriteOptions, out: W) -> Result<(W, DiffId, u64), LayerError> {
    let mut tw = TarWriter::new(HashingWriter::new(out), opts);
    // A stack of pending sorted children lists, each reversed so `pop` yields the smallest.
    let mut stack: Vec<Vec<(Vec<u8>, bool)>> = vec![sorted_children(root, &[])?];
    while let Some(top) = stack.last_mut() {
        let Some((rel, is_dir)) = top.pop() else {
            stack.pop();
            continue;
        };
        let rel_path = PathBuf::from(std::ffi::OsStr::from_bytes(&rel));
        let abs = root.join(&rel_path);
        tw.add_path(&rel_path, &abs)?;
        if is_dir {
            let children = sorted_children(&abs, &rel)?;
            stack.push(children);
        }
    }
    let hashing = tw.finish()?;
    let (out, digest, len) = hashing.finish();
    Ok((out, DiffId(digest), len))
}

/// Children of `dir` as (relative path, is_dir), sorted descending by their walk key.
fn sorted_children(dir: &Path, rel_dir: &[u8]) -> Result<Vec<(Vec<u8>, bool)>, LayerError> {
    let read_err = |source| LayerError::ReadSource { path: dir.to_path_buf(), source };
    let mut children = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let is_dir = entry.file_type().map_err(read_err)?.is_dir();
        let mut rel = rel_dir.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(entry.file_name().as_bytes());
        children.push((rel, is_dir));
    }
    let key = |(rel, is_dir): &(Vec<u8>, bool)| {
        let mut k = rel.clone();
        if *is_dir {
            k.push(b'/');
        }
        k
    };
    children.sort_by_cached_key(key);
    children.reverse();
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        rustix::fs::lsetxattr(&f, "user.a", b"b", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(read_xattrs(&f).unwrap(), vec![(b"user.a".to_vec(), b"b".to_vec())]);
    }
}
