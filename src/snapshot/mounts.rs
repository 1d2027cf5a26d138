//! [`Mounts`]: what to mount to see a snapshot, and the mount/unmount helper.
//!
//! A description is plain data (paths and flags) that can be handed to another process (the
//! executor); [`Mounts::mount`] is the in-process helper. Deep overlay stacks do not fit the
//! one-page limit of the legacy `lowerdir=` option with absolute paths, so when they do not,
//! the helper opens every lower directory `O_PATH` and names it `/proc/self/fd/N` (≤ 19 bytes
//! per layer, whatever the root's length; about 200 layers), which the kernel resolves at
//! mount time; the fds are closed right after. That works on every kernel with overlay in user
//! namespaces and needs no chdir (process-wide, unsafe in a multi-threaded process) and no
//! helper process. Deeper stacks (up to the kernel's 500) use the new mount API, one
//! `fsconfig(lowerdir+)` per layer (kernel ≥ 6.8); older kernels get [`SnapshotError::TooManyLayers`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::SnapshotError;

/// Room the legacy mount data has (one page, minus a margin for the other options).
const MAX_OPTIONS: usize = 4096 - 1;
/// Most lower layers one overlay mount takes (the kernel's `OVL_MAX_STACK`).
pub(super) const MAX_LAYERS: usize = 500;

/// How to see a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// A bind mount of a plain directory.
    Bind { source: PathBuf, readonly: bool },
    /// An overlay: `lowerdirs` top first; no upper directory means a read-only view.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: Option<PathBuf>,
        workdir: Option<PathBuf>,
        /// Keep overlay metadata in `user.overlay.*` xattrs (mounts inside a user namespace).
        userxattr: bool,
    },
}

impl Mounts {
    /// The directory to use as is, without mounting: a writable bind (a copy snapshot, or an
    /// overlay snapshot without parent). Read-only binds return `None` (mount them to get the
    /// protection).
    pub fn plain_dir(&self) -> Option<&Path> {
        match self {
            Mounts::Bind { source, readonly: false } => Some(source),
            _ => None,
        }
    }

    /// Whether the mounts are read-only.
    pub fn readonly(&self) -> bool {
        match self {
            Mounts::Bind { readonly, .. } => *readonly,
            Mounts::Overlay { upperdir, .. } => upperdir.is_none(),
        }
    }

    /// Mounts on the existing directory `target`. The mount is private (no propagation).
    pub fn mount(&self, target: &Path) -> Result<Mounted, SnapshotError> {
        match self {
            Mounts::Bind { source, readonly } => {
                let err = |source| SnapshotError::Mount { what: "bind", target: target.to_path_buf(), source };
                rustix::mount::mount_bind(source, target).map_err(|e| err(e.into()))?;
                let mounted = Mounted { target: target.to_path_buf(), live: true };
                make_private(target)?;
                if *readonly {
                    let flags = MountFlags::BIND | MountFlags::RDONLY;
                    rustix::mount::mount_remount(target, flags, "").map_err(|e| err(e.into()))?;
                }
                Ok(mounted)
            }
            Mounts::Overlay { lowerdirs, upperdir, workdir, userxattr } => {
                mount_overlay(lowerdirs, upperdir.as_deref().zip(workdir.as_deref()), *userxattr, target)?;
                let mounted = Mounted { target: target.to_path_buf(), live: true };
                make_private(target)?;
                Ok(mounted)
            }
        }
    }
}

fn make_private(target: &Path) -> Result<(), SnapshotError> {
    rustix::mount::mount_change(target, MountPropagationFlags::PRIVATE).map_err(|e| SnapshotError::Mount {
        what: "private propagation",
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Mounts an overlay of `lowerdirs` (top first) with an optional (upper, work) pair.
pub(super) fn mount_overlay(
    lowerdirs: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    userxattr: bool,
    target: &Path,
) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError::Mount { what: "overlay", target: target.to_path_buf(), source };
    if lowerdirs.len() > MAX_LAYERS {
        return Err(err(std::io::Error::from_raw_os_error(libc::EINVAL)));
    }
    let mut tail = Vec::new();
    if let Some((upper, work)) = upper_work {
        tail.extend_from_slice(b",upperdir=");
        escape_into(&mut tail, upper.as_os_str().as_bytes());
        tail.extend_from_slice(b",workdir=");
        escape_into(&mut tail, work.as_os_str().as_bytes());
    }
    // Metadata-only copy-up, redirects and the inode index would put changes outside the plain
    // upper tree the diff reads; `userxattr` mounts have them off already.
    if userxattr {
        tail.extend_from_slice(b",userxattr");
    } else {
        tail.extend_from_slice(b",index=off,redirect_dir=off,metacopy=off");
    }
    let mut data = b"lowerdir=".to_vec();
    for (i, dir) in lowerdirs.iter().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        escape_into(&mut data, dir.as_os_str().as_bytes());
    }
    if data.len() + tail.len() <= MAX_OPTIONS {
        data.extend_from_slice(&tail);
        return legacy_mount(data, target);
    }
    // Too long for absolute paths: name each lower by an O_PATH fd.
    let mut fds = Vec::new();
    data = b"lowerdir=".to_vec();
    for (i, dir) in lowerdirs.iter().enumerate() {
        let fd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| SnapshotError::io("open lower directory", dir, e))?;
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes());
        fds.push(fd);
    }
    if data.len() + tail.len() <= MAX_OPTIONS {
        data.extend_from_slice(&tail);
        let mounted = legacy_mount(data, target);
        drop(fds);
        return mounted;
    }
    drop(fds);
    // Still too long: one `lowerdir+` per layer through the new mount API (kernel >= 6.8).
    fsconfig_mount(lowerdirs, upper_work, userxattr, target)
}

fn legacy_mount(data: Vec<u8>, target: &Path) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError::Mount { what: "overlay", target: target.to_path_buf(), source };
    let data = std::ffi::CString::new(data).map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), data.as_c_str()).map_err(|e| err(e.into()))
}

/// Mounts with `fsopen`/`fsconfig`, appending each lower with `lowerdir+` (no page limit, no
/// escaping). Older kernels reject `lowerdir+`: the stack is then too deep for this kernel.
fn fsconfig_mount(
    lowerdirs: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    userxattr: bool,
    target: &Path,
) -> Result<(), SnapshotError> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create, fsconfig_set_flag,
        fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let err =
        |e: rustix::io::Errno| SnapshotError::Mount { what: "overlay", target: target.to_path_buf(), source: e.into() };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(err)?;
    for dir in lowerdirs {
        match fsconfig_set_string(&fs, "lowerdir+", dir.as_path()) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => {
                return Err(SnapshotError::TooManyLayers {
                    key: target.display().to_string(),
                    layers: lowerdirs.len(),
                    max: MAX_LAYERS.min(MAX_OPTIONS / 20),
                });
            }
            Err(e) => return Err(err(e)),
        }
    }
    if let Some((upper, work)) = upper_work {
        fsconfig_set_string(&fs, "upperdir", upper).map_err(err)?;
        fsconfig_set_string(&fs, "workdir", work).map_err(err)?;
    }
    if userxattr {
        fsconfig_set_flag(&fs, "userxattr").map_err(err)?;
    } else {
        for key in ["index", "redirect_dir", "metacopy"] {
            fsconfig_set_string(&fs, key, "off").map_err(err)?;
        }
    }
    fsconfig_create(&fs).map_err(err)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(err)?;
    move_mount(&mnt, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(err)
}

/// Escapes `\`, `:` and `,`, which separate overlay options and layers.
fn escape_into(out: &mut Vec<u8>, path: &[u8]) {
    for &b in path {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// A live mount; [`Mounted::unmount`] reports errors, dropping unmounts (lazily if busy) and
/// logs them.
#[derive(Debug)]
#[must_use = "dropping a Mounted unmounts it"]
pub struct Mounted {
    target: PathBuf,
    live: bool,
}

impl Mounted {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts. A busy mount is detached lazily and reported as an error.
    pub fn unmount(mut self) -> Result<(), SnapshotError> {
        self.live = false;
        unmount(&self.target)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.live {
            if let Err(e) = unmount(&self.target) {
                tracing::warn!(target = %self.target.display(), error = %e, "unmount on drop failed");
            }
        }
    }
}

/// Unmounts `target`, retrying while it is busy (a process forked at that moment holds our
/// descriptors until it execs), then detaching it lazily: never leaves the mount behind.
fn unmount(target: &Path) -> Result<(), SnapshotError> {
    let mut busy = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::BUSY) if busy < 50 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
                return Err(SnapshotError::Unmount { target: target.to_path_buf(), source: e.into() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_escaped() {
        let mut out = Vec::new();
        escape_into(&mut out, b"/a,b:c\\d");
        assert_eq!(out, b"/a\\,b\\:c\\\\d");
    }

    #[test]
    fn plain_dir_only_for_writable_binds() {
        let rw = Mounts::Bind { source: "/x".into(), readonly: false };
        let ro = Mounts::Bind { source: "/x".into(), readonly: true };
        assert_eq!(rw.plain_dir(), Some(Path::new("/x")));
        assert_eq!(ro.plain_dir(), None);
        assert!(ro.readonly() && !rw.readonly());
    }
}
