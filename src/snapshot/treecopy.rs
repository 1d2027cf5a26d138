//! Copying a tree exactly (the copy snapshotter's `prepare`) and removing one.
//!
//! Keeps hardlinks, every xattr, devices, FIFOs, sockets, ownership, modes (setuid included: owner
//! is set before mode) and atime/mtime with nanoseconds; directory times are set after their
//! content. File data goes through `FICLONE` (reflink) where the filesystem shares extents,
//! else `copy_file_range`, else read/write. Never follows a symlink. Knows nothing of
//! snapshots.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use super::SnapshotError;
use crate::dirfd::{self, XattrFilter, Xattrs};

/// How file data was copied, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CopyStats {
    pub files: u64,
    pub bytes: u64,
    pub reflinked: u64,
}

/// Copies the content of `src` (not `src` itself) into the existing empty directory `dst`,
/// and `src`'s own metadata onto `dst`.
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats, SnapshotError> {
    let mut stats = CopyStats::default();
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut dirs = Vec::new();
    let mut reflink = true;
    for entry in walkdir::WalkDir::new(src).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(src).to_path_buf();
            SnapshotError::io("walk", path, e.into())
        })?;
        let from = entry.path();
        let rel =
            from.strip_prefix(src).map_err(|_| SnapshotError::io("copy", from, io::ErrorKind::InvalidInput.into()))?;
        let to = dst.join(rel);
        let md = fs::symlink_metadata(from).map_err(|e| SnapshotError::io("stat", from, e))?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &to).map_err(|e| SnapshotError::io("hardlink", &to, e))?;
                continue;
            }
            links.insert(key, to.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| SnapshotError::io("create directory", &to, e))?;
            // Owner-writable while we fill it; the real mode is set afterwards.
            fs::set_permissions(&to, fs::Permissions::from_mode(0o700))
                .map_err(|e| SnapshotError::io("chmod", &to, e))?;
            dirs.push((to, md));
            continue;
        }
        if ft.is_symlink() {
            let target = fs::read_link(from).map_err(|e| SnapshotError::io("read link", from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| SnapshotError::io("create symlink", &to, e))?;
        } else if ft.is_file() {
            stats.files += 1;
            stats.bytes += md.len();
            if copy_data(from, &to, md.len(), &mut reflink)? {
                stats.reflinked += 1;
            }
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_socket() {
                FileType::Socket
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::CharacterDevice
            };
            rustix::fs::mknodat(CWD, &to, kind, Mode::from_raw_mode(0o600), md.rdev())
                .map_err(|e| SnapshotError::io("create special file", &to, e.into()))?;
        }
        copy_metadata(from, &to, &md)?;
    }
    // Directory metadata last, deepest first (a read-only parent must not block a child).
    for (to, md) in dirs.iter().rev() {
        let rel = to.strip_prefix(dst).unwrap_or(to);
        copy_metadata(&src.join(rel), to, md)?;
    }
    let md = fs::symlink_metadata(src).map_err(|e| SnapshotError::io("stat", src, e))?;
    copy_metadata(src, dst, &md)?;
    Ok(stats)
}

/// Copies a regular file's data; returns whether it was reflinked.
fn copy_data(from: &Path, to: &Path, len: u64, reflink: &mut bool) -> Result<bool, SnapshotError> {
    let mut src = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(from)
        .map_err(|e| SnapshotError::io("open", from, e))?;
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)
        .map_err(|e| SnapshotError::io("create", to, e))?;
    if len == 0 {
        return Ok(false);
    }
    if *reflink {
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => return Ok(true),
            // Not supported here: stop trying for the rest of the tree.
            Err(_) => *reflink = false,
        }
    }
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(&src, None, &dst, None, want) {
            Ok(0) => return Err(SnapshotError::io("copy", from, io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => left -= n as u64,
            Err(rustix::io::Errno::INTR) => continue,
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::OPNOTSUPP,
            ) => {
                return read_write(&mut src, &mut dst, from, to).map(|()| false);
            }
            Err(e) => return Err(SnapshotError::io("copy", from, e.into())),
        }
    }
    Ok(false)
}

fn read_write(src: &mut File, dst: &mut File, from: &Path, to: &Path) -> Result<(), SnapshotError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SnapshotError::io("read", from, e)),
        };
        dst.write_all(&buf[..n]).map_err(|e| SnapshotError::io("write", to, e))?;
    }
}

/// Owner, xattrs, mode and times of `from` onto `to`, in that order: chown clears setuid bits
/// and `security.capability`.
fn copy_metadata(from: &Path, to: &Path, md: &fs::Metadata) -> Result<(), SnapshotError> {
    let uid = rustix::fs::Uid::from_raw(md.uid());
    let gid = rustix::fs::Gid::from_raw(md.gid());
    rustix::fs::chownat(CWD, to, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| SnapshotError::io("chown", to, e.into()))?;
    for (name, value) in read_xattrs(from)? {
        let name = OsStr::from_bytes(&name);
        match rustix::fs::lsetxattr(to, name, &value, XattrFlags::empty()) {
            Ok(()) => {}
            // `security.*`/`trusted.*` need privileges, and symlinks take no `user.*` xattrs.
            Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
                tracing::debug!(path = %to.display(), name = %name.to_string_lossy(), "xattr not copied");
            }
            Err(e) => return Err(SnapshotError::io("set xattr on", to, e.into())),
        }
    }
    if !md.file_type().is_symlink() {
        rustix::fs::chmod(to, Mode::from_raw_mode(md.mode() & 0o7777))
            .map_err(|e| SnapshotError::io("chmod", to, e.into()))?;
    }
    let times = Timestamps {
        last_access: Timespec { tv_sec: md.atime(), tv_nsec: md.atime_nsec() as _ },
        last_modification: Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() as _ },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| SnapshotError::io("set times of", to, e.into()))
}

/// Every extended attribute of `path` (not followed), sorted by name: an exact copy leaves
/// nothing out ([`XattrFilter::Exact`]).
pub(super) fn read_xattrs(path: &Path) -> Result<Xattrs, SnapshotError> {
    dirfd::xattrs_nofollow(path, XattrFilter::Exact).map_err(|e| SnapshotError::io("read xattrs of", path, e.into()))
}

/// Removes `path` and everything under it, making read-only directories writable on the way
/// (an unprivileged owner cannot otherwise empty a 0555 directory).
pub(super) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for entry in walkdir::WalkDir::new(path).follow_links(false).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_links_modes_times_and_xattrs() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::write(src.join("d/f"), b"data").unwrap();
        fs::hard_link(src.join("d/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("s")).unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        rustix::fs::lsetxattr(src.join("g"), "user.k", b"v", XattrFlags::empty()).unwrap();
        fs::set_permissions(src.join("d/e"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir(&dst).unwrap();
        copy_tree(&src, &dst).unwrap();
        let f = fs::symlink_metadata(dst.join("d/f")).unwrap();
        let g = fs::symlink_metadata(dst.join("g")).unwrap();
        assert_eq!(f.ino(), g.ino());
        assert_eq!(f.mode() & 0o7777, 0o4751);
        assert_eq!(fs::read_link(dst.join("s")).unwrap(), Path::new("d/f"));
        assert_eq!(read_xattrs(&dst.join("g")).unwrap(), vec![(b"user.k".to_vec(), b"v".to_vec())]);
        let (a, b) = (fs::symlink_metadata(src.join("d")).unwrap(), fs::symlink_metadata(dst.join("d")).unwrap());
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        assert_eq!(fs::symlink_metadata(dst.join("d/e")).unwrap().mode() & 0o7777, 0o555);
        remove_tree(&dst).unwrap();
        assert!(!dst.exists());
    }
}
