//! The target tree of `apply`: its root, opened once, and the few operations `apply` needs
//! beyond the shared primitives of [`crate::dirfd`].
//!
//! Parents are resolved inside the root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! ([`dirfd::open_in_root`]); leaves are only ever touched with `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW` or through an fd opened that way. No path string is ever joined onto
//! the target path. Knows nothing about tar.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};
use rustix::io::Errno;

use crate::dirfd::{self, DIR_FLAGS, os};

/// The target root, opened once.
pub(super) struct Root {
    fd: OwnedFd,
}

/// A path inside the root as cleaned components.
pub(super) type Comps<'a> = [&'a [u8]];

pub(super) fn join(comps: &Comps<'_>) -> Vec<u8> {
    comps.join(&b'/')
}

impl Root {
    pub(super) fn open(path: &Path) -> Result<Root, Errno> {
        Ok(Root { fd: dirfd::open_root(path)? })
    }

    /// Opens the directory at `comps` (resolved inside the root, symlinks included).
    pub(super) fn open_dir(&self, comps: &Comps<'_>) -> Result<OwnedFd, Errno> {
        dirfd::open_in_root(self.fd.as_fd(), &join(comps), DIR_FLAGS)
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
                    fd = dirfd::open_child_dir(fd.as_fd(), comps[i])?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((fd, created))
    }
}

/// Removes whatever `name` in `dir` is (recursively for a directory). Returns false if there was
/// nothing.
pub(super) fn remove_existing(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool, Errno> {
    let Some(st) = dirfd::lstat_at(dir, name)? else {
        return Ok(false);
    };
    if dirfd::is_dir(&st) {
        remove_tree(dir, name)?;
    } else {
        rustix::fs::unlinkat(dir, os(name), AtFlags::empty())?;
    }
    Ok(true)
}

/// Removes directory `name` in `dir` and everything below it, never following a symlink.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let child = dirfd::open_child_dir(dir, name)?;
    for entry in dirfd::list_names(child.as_fd())? {
        remove_existing(child.as_fd(), &entry)?;
    }
    drop(child);
    rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)
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

pub(super) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::fchown(fd, Some(uid), Some(gid))
}
