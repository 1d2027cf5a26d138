//! Confined, fd-relative filesystem primitives for `apply`.
//!
//! Owns every syscall `apply` makes on the target tree. Parents are resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` against a root fd opened once; leaves are
//! only ever touched with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` or through an fd opened that
//! way. No path string is ever joined onto the target path. Knows nothing about tar.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// The target root, opened once.
pub(super) struct Root {
    fd: OwnedFd,
}

/// A path inside the root as cleaned components.
pub(super) type Comps<'a> = [&'a [u8]];

pub(super) fn join(comps: &Comps<'_>) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

impl Root {
    pub(super) fn open(path: &Path) -> Result<Root, Errno> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Root { fd })
    }

    /// Opens the directory at `comps` (resolved inside the root, symlinks included).
    pub(super) fn open_dir(&self, comps: &Comps<'_>) -> Result<OwnedFd, Errno> {
        if comps.is_empty() {
            return rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty());
        }
        let rel = join(comps);
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, os(&rel), DIR_FLAGS, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    /// Opens the directory at `comps`, creating missing components (0755) below the deepest
    /// existing one. Returns the fd and how many components were created.
    pub(super) fn open_or_create_dir(&self, comps: &Comps<'_>) -> Result<(OwnedFd, usize), Errno> {
        match self.open_dir(comps) {
            Err(Errno::NOENT) => {}
            other => return other.map(|fd| (fd, 0)),
        }
        let mut created = 0;
        let mut fd = self.open_dir(&[])?;
        for i in 0..comps.len() {
            match self.open_dir(&comps[..=i]) {
                Ok(next) => fd = next,
                Err(Errno::NOENT) => {
                    rustix::fs::mkdirat(&fd, os(comps[i]), Mode::from_raw_mode(0o755))?;
                    created += 1;
                    fd = rustix::fs::openat(&fd, os(comps[i]), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((fd, created))
    }
}

/// lstat of `name` in `dir`; `None` when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<rustix::fs::Stat>, Errno> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Opens directory `name` in `dir` without following a symlink at `name`.
pub(super) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
}

/// Removes whatever `name` in `dir` is (recursively for a directory). Returns false if there was
/// nothing.
pub(super) fn remove_existing(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool, Errno> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(false);
    };
    if is_dir(&st) {
        remove_tree(dir, name)?;
    } else {
        rustix::fs::unlinkat(dir, os(name), AtFlags::empty())?;
    }
    Ok(true)
}

/// Removes directory `name` in `dir` and everything below it, never following a symlink.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let child = open_child_dir(dir, name)?;
    for entry in list_names(child.as_fd())? {
        remove_existing(child.as_fd(), &entry)?;
    }
    drop(child);
    rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)
}

/// Names in directory `dir` (without `.` and `..`).
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
    Ok(names)
}

pub(super) fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// Sets the times of `name` in `dir` without following it.
pub(super) fn set_times_nofollow(dir: BorrowedFd<'_>, name: &[u8], mtime: i64) -> Result<(), Errno> {
    rustix::fs::utimensat(dir, os(name), &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
}

/// Changes the owner of `name` in `dir` without following it.
pub(super) fn chown_nofollow(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> Result<(), Errno> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::chownat(dir, os(name), Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
}

/// Opens `name` in `dir` as an `O_PATH | O_NOFOLLOW` handle (devices and FIFOs are not opened
/// for IO, so no device driver runs).
pub(super) fn open_path_handle(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// The `/proc/self/fd/N` name of our own handle: the kernel resolves it to exactly the inode
/// we opened with `O_NOFOLLOW`, so nothing the archive planted is followed. Used for `chmod`
/// and `setxattr` on devices and FIFOs, which cannot be opened for IO safely and have no
/// `fchmodat(AT_SYMLINK_NOFOLLOW)` in rustix.
fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

pub(super) fn chmod_handle(handle: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    rustix::fs::chmod(proc_fd_path(handle), Mode::from_raw_mode(mode))
}

pub(super) fn setxattr_handle(handle: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::setxattr(proc_fd_path(handle), os(name), value, rustix::fs::XattrFlags::empty())
}

pub(super) fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::fsetxattr(fd, os(name), value, rustix::fs::XattrFlags::empty())
}

pub(super) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::fchown(fd, Some(uid), Some(gid))
}

pub(super) fn os_name(bytes: &[u8]) -> &OsStr {
    os(bytes)
}
