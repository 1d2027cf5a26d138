//! Confined, fd-relative filesystem primitives, shared by `context`, `layer` and `snapshot`.
//!
//! Paths inside a root (a build context, a rootfs, a layer's target) are resolved by the kernel
//! beneath a directory fd opened once, with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
//! `..` and absolute symlinks are clamped at the root, so nothing outside it is ever opened
//! (catalogue B1, B4). Leaves are touched with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, or through
//! an `O_PATH` handle reopened as `/proc/self/fd/N`; no path string is joined onto a root's
//! path. Names are listed sorted bytewise. Extended attributes are read with the one rule of
//! which names slipway never carries ([`XattrFilter`]).
//!
//! A leaf: imports no other slipway module, knows nothing of contexts, layers or snapshots.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, XattrFlags};
use rustix::io::Errno;

/// A directory opened for listing and as the base of `*at` calls.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

pub(crate) fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Renders path bytes for messages (non-UTF-8 bytes escaped).
pub(crate) fn display(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// Joins two relative `/`-separated paths ("" is the root).
pub(crate) fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => [a, b"/", b].concat(),
    }
}

/// Opens a host directory to serve as a root.
pub(crate) fn open_root(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, DIR_FLAGS, Mode::empty())
}

/// Opens `rel` (relative, `/`-separated; "" = the root) resolved inside `root`: symlinks are
/// followed but clamped at the root, `..` never leaves it.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
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
pub(crate) fn path_handle_in_root(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    open_in_root(root, rel, OFlags::PATH)
}

/// The path of the inode behind `fd` relative to `root_real` (the canonical root path), as the
/// kernel names it; `None` if it is not below the root.
pub(crate) fn real_rel(root_real: &Path, fd: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, Errno> {
    let target = rustix::fs::readlink(proc_fd(fd), Vec::new())?;
    let target = target.as_bytes();
    let root = root_real.as_os_str().as_bytes();
    if target == root {
        return Ok(Some(Vec::new()));
    }
    let prefix: Vec<u8> = if root.ends_with(b"/") { root.to_vec() } else { [root, b"/"].concat() };
    Ok(target.strip_prefix(prefix.as_slice()).map(<[u8]>::to_vec))
}

/// `/proc/self/fd/N` of our own handle: the kernel resolves it to exactly the inode behind the
/// handle (opened with `O_NOFOLLOW` or beneath a root), so nothing planted there is followed.
pub(crate) fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Reopens an `O_PATH` handle of a regular file for reading.
pub(crate) fn reopen_read(handle: BorrowedFd<'_>) -> Result<File, Errno> {
    let fd = rustix::fs::open(proc_fd(handle), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Opens `name` in `dir` for reading without following a symlink and without blocking on a
/// FIFO that appeared there; the caller checks the returned stat.
pub(crate) fn open_child_read(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(File, Stat), Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, os(name), flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((File::from(fd), st))
}

/// Opens directory `name` in `dir` without following a symlink at `name`.
pub(crate) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
}

/// Opens `name` in `dir` as an `O_PATH | O_NOFOLLOW` handle (devices and FIFOs are not opened
/// for IO, so no device driver runs).
pub(crate) fn open_path_handle(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// `chmod` through an `O_PATH` handle (devices and FIFOs cannot be opened for IO safely, and
/// rustix has no `fchmodat(AT_SYMLINK_NOFOLLOW)`).
pub(crate) fn chmod_handle(handle: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    rustix::fs::chmod(proc_fd(handle), Mode::from_raw_mode(mode))
}

/// lstat of `name` in `dir`; `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    file_type(st) == FileType::Directory
}

/// Names in directory `dir` (without `.` and `..`), sorted bytewise.
pub(crate) fn list_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
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
pub(crate) fn read_capped(file: &mut File, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= max).then_some(out))
}

/// Reads the regular file `rel` inside `root` (symlinks followed inside it), at most `max` bytes.
/// `Ok(None)`: it does not exist.
pub(crate) fn read_in_root(root: BorrowedFd<'_>, rel: &[u8], max: u64) -> Result<Option<Vec<u8>>, ReadError> {
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
pub(crate) enum ReadError {
    Io(io::Error),
    NotAFile,
    TooLarge,
}

/// overlayfs's own xattrs (whiteouts, opaque directories, redirects) on a mount made by root.
pub(crate) const OVERLAY_TRUSTED_XATTRS: &[u8] = b"trusted.overlay.";
/// overlayfs's own xattrs on a `userxattr` mount (inside a user namespace).
pub(crate) const OVERLAY_USER_XATTRS: &[u8] = b"user.overlay.";
/// The host's SELinux label: it belongs to the policy of the machine the file is on.
const SELINUX_XATTR: &[u8] = b"security.selinux";

/// Which xattrs a reader keeps: the one rule of which names slipway never copies, hashes,
/// records or applies. overlayfs's bookkeeping and the host's SELinux label are not file
/// content; two callers need a documented exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XattrFilter {
    /// The rule: neither overlayfs's (`trusted.overlay.*`, `user.overlay.*`) nor the SELinux
    /// label (`security.selinux`). COPY/ADD copying and hashing the context, `layer::apply`.
    Portable,
    /// The rule, except that the SELinux label is kept: the layer writer records what the tree
    /// holds (`layer::apply`, with [`Portable`](Self::Portable), never applies it).
    KeepSelinuxLabel,
    /// Nothing left out: an exact copy of a tree (the copy snapshotter), whose copy diff then
    /// compares every xattr with the parent's — a label or any xattr dropped from the copy
    /// would show up as a change.
    Exact,
}

impl XattrFilter {
    /// Whether the xattr `name` is kept.
    pub(crate) fn keeps(self, name: &[u8]) -> bool {
        let overlay = name.starts_with(OVERLAY_TRUSTED_XATTRS) || name.starts_with(OVERLAY_USER_XATTRS);
        let label = name.starts_with(SELINUX_XATTR);
        match self {
            XattrFilter::Portable => !overlay && !label,
            XattrFilter::KeepSelinuxLabel => !overlay,
            XattrFilter::Exact => true,
        }
    }
}

/// An entry's extended attributes, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The xattrs `filter` keeps of an open file or directory (not an `O_PATH` handle); none where
/// the filesystem has no xattr support.
pub(crate) fn xattrs(fd: BorrowedFd<'_>, filter: XattrFilter) -> Result<Xattrs, Errno> {
    read_xattrs(XattrsOf::Fd(fd), filter)
}

/// The xattrs `filter` keeps of `path`, not followed (of a symlink itself); none where the
/// filesystem has no xattr support.
pub(crate) fn xattrs_nofollow(path: &Path, filter: XattrFilter) -> Result<Xattrs, Errno> {
    read_xattrs(XattrsOf::Path(path), filter)
}

/// What xattrs are read from.
#[derive(Clone, Copy)]
enum XattrsOf<'a> {
    Fd(BorrowedFd<'a>),
    /// Not followed (`llistxattr`, `lgetxattr`).
    Path(&'a Path),
}

impl XattrsOf<'_> {
    fn list_size(self) -> Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::flistxattr_query(fd),
            XattrsOf::Path(p) => rustix::fs::llistxattr_query(p),
        }
    }

    fn list(self, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrsOf::Path(p) => rustix::fs::llistxattr(p, buf),
        }
    }

    fn value_size(self, name: &OsStr) -> Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::fgetxattr_query(fd, name),
            XattrsOf::Path(p) => rustix::fs::lgetxattr_query(p, name),
        }
    }

    fn value(self, name: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            XattrsOf::Path(p) => rustix::fs::lgetxattr(p, name, buf),
        }
    }
}

fn read_xattrs(of: XattrsOf<'_>, filter: XattrFilter) -> Result<Xattrs, Errno> {
    let names = loop {
        let size = match of.list_size() {
            Ok(0) | Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        match of.list(&mut buf[..]) {
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
        if !filter.keeps(name) {
            continue;
        }
        let value = loop {
            let size = match of.value_size(os(name)) {
                Ok(n) => n,
                Err(Errno::NODATA) => break None, // removed in between
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; size];
            match of.value(os(name), &mut buf[..]) {
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
pub(crate) fn set_xattrs(fd: BorrowedFd<'_>, xattrs: &Xattrs) -> Result<u64, Errno> {
    let mut refused = 0;
    for (name, value) in xattrs {
        match fsetxattr(fd, name, value) {
            Ok(()) => {}
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS) => refused += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// Sets one xattr on an open file or directory.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::fsetxattr(fd, os(name), value, XattrFlags::empty())
}

/// Sets one xattr through an `O_PATH` handle (see [`chmod_handle`]).
pub(crate) fn setxattr_handle(handle: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::setxattr(proc_fd(handle), os(name), value, XattrFlags::empty())
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
        let got = xattrs(file.as_fd(), XattrFilter::Portable).unwrap();
        assert_eq!(got, vec![(b"user.one".to_vec(), b"1".to_vec()), (b"user.two".to_vec(), Vec::new())]);
        let b = dir.path().join("b");
        std::fs::write(&b, "y").unwrap();
        let out = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        assert_eq!(set_xattrs(out.as_fd(), &got).unwrap(), 0);
        assert_eq!(xattrs(File::open(&b).unwrap().as_fd(), XattrFilter::Portable).unwrap(), got);
    }

    #[test]
    fn the_filter_rule() {
        let names: [&[u8]; 5] =
            [b"user.a", b"trusted.overlay.opaque", b"user.overlay.origin", b"security.selinux", b"security.capability"];
        let kept = |f: XattrFilter| names.iter().map(|n| f.keeps(n)).collect::<Vec<_>>();
        assert_eq!(kept(XattrFilter::Portable), [true, false, false, false, true]);
        assert_eq!(kept(XattrFilter::KeepSelinuxLabel), [true, false, false, true, true]);
        assert_eq!(kept(XattrFilter::Exact), [true; 5]);
    }
}
