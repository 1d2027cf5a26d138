//! Confined, fd-relative filesystem primitives shared by selection, hashing and copying.
//!
//! Owns every lookup of a path inside a root (the source root or the destination rootfs):
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a root fd opened once, so `..` and
//! absolute symlinks are clamped at the root and nothing outside it is ever opened (catalogue
//! B1, B4). Leaves are touched with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` or through an `O_PATH`
//! handle. Knows nothing about patterns or layers.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

pub(super) fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Renders path bytes for messages and `SourceDigest::files` (non-UTF-8 bytes escaped).
pub(super) fn display(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// Joins two relative `/`-separated paths ("" is the root).
pub(super) fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => [a, b"/", b].concat(),
    }
}

/// Opens a host directory to serve as a root.
pub(super) fn open_root(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, DIR_FLAGS, Mode::empty())
}

/// Opens `rel` (relative, `/`-separated; "" = the root) resolved inside `root`: symlinks are
/// followed but clamped at the root, `..` never leaves it.
pub(super) fn open_in_root(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, os(rel), flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// `O_PATH` handle of `rel` inside `root`, following a final symlink (inside the root).
pub(super) fn path_handle_in_root(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    open_in_root(root, rel, OFlags::PATH)
}

/// The path of the inode behind `fd` relative to `root_real` (the canonical root path), as the
/// kernel names it; `None` if it is not below the root.
pub(super) fn real_rel(root_real: &Path, fd: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, Errno> {
    let target = rustix::fs::readlink(proc_fd(fd), Vec::new())?;
    let target = target.as_bytes();
    let root = root_real.as_os_str().as_bytes();
    if target == root {
        return Ok(Some(Vec::new()));
    }
    let prefix: Vec<u8> = if root.ends_with(b"/") { root.to_vec() } else { [root, b"/"].concat() };
    Ok(target.strip_prefix(prefix.as_slice()).map(<[u8]>::to_vec))
}

/// `/proc/self/fd/N` of our own handle: opening it reopens exactly that inode.
pub(super) fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Reopens an `O_PATH` handle of a regular file for reading.
pub(super) fn reopen_read(handle: BorrowedFd<'_>) -> Result<File, Errno> {
    let fd = rustix::fs::open(proc_fd(handle), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Opens `name` in `dir` for reading without following a symlink and without blocking on a
/// FIFO that appeared there; the caller checks the returned stat.
pub(super) fn open_child_read(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(File, Stat), Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, os(name), flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((File::from(fd), st))
}

/// Opens directory `name` in `dir` without following a symlink at `name`.
pub(super) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
}

/// lstat of `name` in `dir`; `None` when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Names in directory `dir` (without `.` and `..`), sorted bytewise.
pub(super) fn list_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// Reads at most `max` bytes of `file`; `Ok(None)` when it holds more.
pub(super) fn read_capped(file: &mut File, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= max).then_some(out))
}

/// Reads the regular file `rel` inside `root` (symlinks followed inside it), at most `max` bytes.
/// `Ok(None)`: it does not exist.
pub(super) fn read_in_root(root: BorrowedFd<'_>, rel: &[u8], max: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let handle = match path_handle_in_root(root, rel) {
        Ok(h) => h,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(ReadError::Io(e.into())),
    };
    let st = rustix::fs::fstat(&handle).map_err(|e| ReadError::Io(e.into()))?;
    if file_type(&st) != FileType::RegularFile {
        return Err(ReadError::NotAFile);
    }
    let mut file = reopen_read(handle.as_fd()).map_err(|e| ReadError::Io(e.into()))?;
    match read_capped(&mut file, max).map_err(ReadError::Io)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(ReadError::TooLarge),
    }
}

/// Why [`read_in_root`] failed.
pub(super) enum ReadError {
    Io(io::Error),
    NotAFile,
    TooLarge,
}

/// xattrs never copied nor hashed: overlayfs internals and the host's SELinux labels (as
/// `layer::apply` never applies them).
const SKIPPED_XATTRS: [&[u8]; 3] = [b"trusted.overlay.", b"user.overlay.", b"security.selinux"];

/// An entry's extended attributes, sorted by name.
pub(super) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The xattrs of an open file or directory (not an `O_PATH` handle); none where the filesystem
/// has no xattr support.
pub(super) fn xattrs(fd: BorrowedFd<'_>) -> Result<Xattrs, Errno> {
    let names = loop {
        let size = match rustix::fs::flistxattr_query(fd) {
            Ok(0) | Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(Errno::RANGE) => continue, // grew in between
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if SKIPPED_XATTRS.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let value = loop {
            let size = match rustix::fs::fgetxattr_query(fd, os(name)) {
                Ok(n) => n,
                Err(Errno::NODATA) => break None, // removed in between
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; size];
            match rustix::fs::fgetxattr(fd, os(name), &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(value) = value {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Sets xattrs on an open file or directory; returns how many the filesystem or the kernel
/// refused (no support, or not permitted for this user).
pub(super) fn set_xattrs(fd: BorrowedFd<'_>, xattrs: &Xattrs) -> Result<u64, Errno> {
    let mut refused = 0;
    for (name, value) in xattrs {
        match rustix::fs::fsetxattr(fd, os(name), value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS) => refused += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// Feeds xattrs into a hash, length-prefixed.
pub(super) fn hash_xattrs(h: &mut crate::oci::Hasher, xattrs: &Xattrs) {
    h.update(&(xattrs.len() as u64).to_le_bytes());
    for (name, value) in xattrs {
        for part in [name, value] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "x").unwrap();
        rustix::fs::setxattr(&a, "user.one", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&a, "user.two", b"", rustix::fs::XattrFlags::empty()).unwrap();
        let file = File::open(&a).unwrap();
        let got = xattrs(file.as_fd()).unwrap();
        assert_eq!(got, vec![(b"user.one".to_vec(), b"1".to_vec()), (b"user.two".to_vec(), Vec::new())]);
        let b = dir.path().join("b");
        std::fs::write(&b, "y").unwrap();
        let out = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        assert_eq!(set_xattrs(out.as_fd(), &got).unwrap(), 0);
        assert_eq!(xattrs(File::open(&b).unwrap().as_fd()).unwrap(), got);
    }
}
