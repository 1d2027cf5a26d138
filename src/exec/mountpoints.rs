//! Mount points made to exist for the run: the files `/etc/hosts` and `/etc/resolv.conf` must
//! exist in the rootfs for the generated ones to be bound over them. When missing they are
//! created empty (with any missing directories), following the image's symlinks the way the
//! sandbox will see them (a `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf` gets
//! its target created), and everything created is removed after the run if it is still an
//! empty file or directory (BuildKit's `executor/stubs.go`). The directory mount points
//! `/proc`, `/dev` and `/sys` are made the same way, and each parent gets its times back once
//! the stand-in created in it is gone: a run that changes nothing leaves the rootfs as it found
//! it, so a build step's diff is empty. Existing files are never written: the bind hides them
//! for the run.
//!
//! Every step is confined to the rootfs: symlinks are resolved by hand against the rootfs as
//! `/`, directories are opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`, so a
//! rootfs that swaps `/etc` for a symlink to a host directory during the run (D4) can neither
//! redirect the creation nor the cleanup.
//!
//! Chroot isolation without a mount namespace binds nothing: there the standard device nodes
//! are made in the rootfs' `/dev` instead ([`MountPoints::create_devices`]), and removed the
//! same way.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};

use super::spec::{Mount, MountSource};
use super::{ExecError, sys};

/// The file mount points made to exist, as absolute paths in the sandbox.
pub const FILE_MOUNT_POINTS: &[&str] = &["/etc/hosts", "/etc/resolv.conf"];

/// The directory mount points directly under the rootfs, created when missing (a symlink there
/// is left for the sandbox to refuse, never followed).
pub const DIR_MOUNT_POINTS: &[&str] = &["proc", "dev", "sys"];

/// The standard devices chroot isolation without a mount namespace makes as nodes in the
/// rootfs' `/dev` for a run (name, major, minor): what the sandbox's `/dev` binds otherwise.
pub const DEVICE_NODES: &[(&str, u32, u32)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Symlinks followed while resolving one mount point.
const MAX_LINKS: u32 = 16;

/// The stand-ins created for missing mount points, to be undone.
#[derive(Debug)]
pub struct MountPoints {
    rootfs: PathBuf,
    /// Paths relative to the rootfs, in creation order (parents first), each with its parent
    /// directory's times from just before it was created.
    created: Vec<(String, Timestamps)>,
    /// Mount points of mounts below a host directory mount, made in that directory (the
    /// sandbox cannot make them there once it is mounted read-only).
    nested: Vec<MountPoints>,
}

/// A directory's times, to put back once a stand-in created in it is gone: a run that changes
/// nothing then leaves no trace in the rootfs (so its diff is empty, as BuildKit's stub cleaning
/// ensures).
fn times_of(dir: &OwnedFd) -> io::Result<Timestamps> {
    let st = rustix::fs::fstat(dir)?;
    let ts = |sec: i64, nsec: i64| rustix::fs::Timespec { tv_sec: sec, tv_nsec: nsec as _ };
    Ok(Timestamps {
        last_access: ts(st.st_atime as i64, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime as i64, st.st_mtime_nsec as i64),
    })
}

fn open_root(rootfs: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

/// A directory of the rootfs given by real components only (no symlink allowed on the way).
fn open_dir(root: &OwnedFd, components: &[String]) -> io::Result<OwnedFd> {
    let path = components.join("/");
    let fd = sys::open_beneath(root, &path, true)?;
    // O_PATH descriptors cannot be used with *at calls that create: reopen as a directory.
    rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io::Error::from)
}

/// Splits `path` into normal components, resolving `.` and `..` lexically (`..` at the root
/// stays at the root, as the kernel does).
fn components(path: &str, mut base: Vec<String>) -> Vec<String> {
    if path.starts_with('/') {
        base.clear();
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                base.pop();
            }
            name => base.push(name.to_string()),
        }
    }
    base
}

impl MountPoints {
    /// Creates the missing mount points of the sandbox's own mounts and of `mounts` (their
    /// targets: a directory, or an empty file when the source is not a directory).
    pub fn create(rootfs: &Path, mounts: &[Mount]) -> Result<MountPoints, ExecError> {
        let mut points = MountPoints { rootfs: rootfs.to_path_buf(), created: Vec::new(), nested: Vec::new() };
        let root = open_root(rootfs).map_err(|source| ExecError::Rootfs { path: rootfs.to_path_buf(), source })?;
        for path in FILE_MOUNT_POINTS {
            points
                .ensure_path(&root, path, false)
                .map_err(|source| ExecError::Prepare { what: format!("{path} in the rootfs"), source })?;
        }
        for mount in mounts {
            let path = &mount.target;
            points
                .ensure_path(&root, path, mount.target_is_dir())
                .map_err(|source| ExecError::Prepare { what: format!("mount point {path} in the rootfs"), source })?;
        }
        for name in DIR_MOUNT_POINTS {
            points
                .ensure_dir(&root, name)
                .map_err(|source| ExecError::Prepare { what: format!("/{name} in the rootfs"), source })?;
        }
        points.nested = nested(mounts)?;
        Ok(points)
    }

    /// Chroot isolation without a mount namespace, where nothing can be bound: makes the
    /// [`DEVICE_NODES`] missing from the rootfs' `/dev` (and `/dev` itself), to be removed after
    /// the run as mount points are. A process that may not make device nodes (no `CAP_MKNOD`,
    /// a user namespace) makes none, and the run has only what the rootfs holds.
    pub fn create_devices(rootfs: &Path) -> Result<MountPoints, ExecError> {
        let mut points = MountPoints { rootfs: rootfs.to_path_buf(), created: Vec::new(), nested: Vec::new() };
        let prepare = |source| ExecError::Prepare { what: "device nodes in the rootfs' /dev".to_string(), source };
        let root = open_root(rootfs).map_err(|source| ExecError::Rootfs { path: rootfs.to_path_buf(), source })?;
        points.ensure_dir(&root, "dev").map_err(prepare)?;
        let Ok(dev) = open_dir(&root, &["dev".to_string()]) else { return Ok(points) };
        for (name, major, minor) in DEVICE_NODES {
            match rustix::fs::statat(&dev, *name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(rustix::io::Errno::NOENT) => {}
                _ => continue,
            }
            let times = times_of(&dev).map_err(prepare)?;
            let node = rustix::fs::makedev(*major, *minor);
            match rustix::fs::mknodat(&dev, *name, FileType::CharacterDevice, Mode::from_raw_mode(0o666), node) {
                Ok(()) => points.created.push((format!("dev/{name}"), times)),
                Err(rustix::io::Errno::PERM) => break,
                Err(e) => return Err(prepare(e.into())),
            }
            // Just made (a node, not a link): its mode without the umask.
            rustix::fs::chmodat(&dev, *name, Mode::from_raw_mode(0o666), AtFlags::empty())
                .map_err(|e| prepare(e.into()))?;
        }
        Ok(points)
    }

    /// Creates the directory `name` directly under the rootfs when nothing has that name.
    fn ensure_dir(&mut self, root: &OwnedFd, name: &str) -> io::Result<()> {
        let dir = open_dir(root, &[])?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => {
                let times = times_of(&dir)?;
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))?;
                self.created.push((name.to_string(), times));
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `path` resolve (within the rootfs) to something that exists, creating what is
    /// missing: directories on the way, then an empty file or (`dir`) a directory.
    fn ensure_path(&mut self, root: &OwnedFd, path: &str, want_dir: bool) -> io::Result<()> {
        let mut pending = components(path, Vec::new());
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while !pending.is_empty() {
            let name = pending.remove(0);
            let last = pending.is_empty();
            let dir = open_dir(root, &done)?;
            let stat = match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
                Err(rustix::io::Errno::NOENT) => None,
                Err(e) => return Err(e.into()),
            };
            match stat {
                Some(FileType::Symlink) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())?;
                    let target = target.to_string_lossy().into_owned();
                    let mut resolved = components(&target, done.clone());
                    resolved.append(&mut pending);
                    pending = resolved;
                    done.clear();
                }
                Some(FileType::Directory) if !last => done.push(name),
                Some(_) if last => return Ok(()),
                Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                None => {
                    let times = times_of(&dir)?;
                    let made = if last && !want_dir {
                        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        rustix::fs::openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o644)).map(drop)
                    } else {
                        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755))
                    };
                    match made {
                        Ok(()) => {
                            done.push(name);
                            self.created.push((done.join("/"), times));
                        }
                        // A concurrent run made it first (two steps sharing a cache mount):
                        // look again at what is there now.
                        Err(rustix::io::Errno::EXIST) => pending.insert(0, name),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        // The path resolved to the rootfs itself: a directory, which the sandbox will refuse.
        Ok(())
    }

    /// Removes what [`create`](Self::create) made, newest first, where it is still an empty
    /// file or directory, and puts its parent's times back. Never follows a symlink.
    pub fn remove(&mut self) -> Result<(), ExecError> {
        for nested in &mut self.nested {
            nested.remove()?;
        }
        if self.created.is_empty() {
            return Ok(());
        }
        let root = open_root(&self.rootfs)
            .map_err(|source| ExecError::Cleanup { what: format!("opening {}", self.rootfs.display()), source })?;
        while let Some((path, times)) = self.created.pop() {
            let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
            let Some(name) = parts.pop() else { continue };
            let Ok(dir) = open_dir(&root, &parts) else { continue };
            let Ok(stat) = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
            let removed = match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile if stat.st_size == 0 => {
                    rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()).map(|()| true)
                }
                FileType::CharacterDevice => rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()).map(|()| true),
                // Fails harmlessly when the run put something into it.
                FileType::Directory => Ok(rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::REMOVEDIR).is_ok()),
                _ => Ok(false),
            };
            let removed = removed.map_err(|e| ExecError::Cleanup {
                what: format!("removing the mount point /{path}"),
                source: e.into(),
            })?;
            if removed {
                // Best effort: the times only matter for a diff that would otherwise list the parent.
                let _ = rustix::fs::futimens(&dir, &times);
            }
        }
        Ok(())
    }
}

/// For each mount below a host directory mount (the deepest such, by target components), its
/// mount point made in that directory, relative to it.
fn nested(mounts: &[Mount]) -> Result<Vec<MountPoints>, ExecError> {
    let mut made = Vec::new();
    for mount in mounts {
        let inner = components(&mount.target, Vec::new());
        let parent = mounts
            .iter()
            .filter_map(|p| match &p.source {
                MountSource::Host { path, readonly } if p.target_is_dir() => {
                    Some((components(&p.target, Vec::new()), path, *readonly))
                }
                _ => None,
            })
            .filter(|(outer, _, _)| outer.len() < inner.len() && inner.starts_with(outer))
            .max_by_key(|(outer, _, _)| outer.len());
        let Some((outer, source, readonly)) = parent else { continue };
        let rel = inner[outer.len()..].join("/");
        let mut points = MountPoints { rootfs: source.clone(), created: Vec::new(), nested: Vec::new() };
        let what = format!("mount point {} in {}", mount.target, source.display());
        let prepare = |source| ExecError::Prepare { what: what.clone(), source };
        let root = sys::open_host_no_symlinks(source).map_err(prepare)?;
        points.ensure_path(&root, &rel, mount.target_is_dir()).map_err(prepare)?;
        if !readonly {
            // Left in place, as runc leaves the mount points it makes in a bind's source: a
            // writable host directory is a cache other runs may be using at the same time
            // (removing it could pull the mount point from under one) or a scratch copy.
            points.created.clear();
        }
        made.push(points);
    }
    Ok(made)
}

impl Drop for MountPoints {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_nodes_are_made_for_a_run_and_gone_after() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        let mtime = std::fs::metadata(&root).unwrap().mtime_nsec();
        let mut points = MountPoints::create_devices(&root).unwrap();
        let null = std::fs::symlink_metadata(root.join("dev/null")).ok();
        match rustix::process::geteuid().is_root() && !super::super::devices::in_user_namespace() {
            // Root (CAP_MKNOD) makes every node, with its number and mode 0666.
            true => {
                for (name, major, minor) in DEVICE_NODES {
                    let meta = std::fs::symlink_metadata(root.join("dev").join(name)).unwrap();
                    assert!(meta.file_type().is_char_device(), "{name}");
                    assert_eq!(meta.rdev(), rustix::fs::makedev(*major, *minor), "{name}");
                    assert_eq!(meta.mode() & 0o7777, 0o666, "{name}");
                }
            }
            false => assert!(null.is_none(), "a node was made without CAP_MKNOD"),
        }
        assert!(root.join("dev").is_dir());
        points.remove().unwrap();
        assert!(!root.join("dev").exists(), "the /dev made for the run is gone");
        assert_eq!(std::fs::metadata(&root).unwrap().mtime_nsec(), mtime, "the rootfs' times are back");
        // What the rootfs has is left alone.
        std::fs::create_dir(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/null"), "image's own").unwrap();
        let mut points = MountPoints::create_devices(&root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("dev/null")).unwrap(), "image's own");
        points.remove().unwrap();
        assert_eq!(std::fs::read_dir(root.join("dev")).unwrap().count(), 1);
    }

    #[test]
    fn mount_points_are_created_when_missing_and_removed_when_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut points = MountPoints::create(root, &[]).unwrap();
        assert!(root.join("etc/hosts").is_file() && root.join("etc/resolv.conf").is_file());
        points.remove().unwrap();
        assert!(!root.join("etc").exists(), "a created /etc is removed again");

        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hosts"), "image's own\n").unwrap();
        let mut points = MountPoints::create(root, &[]).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "written by the run\n").unwrap();
        points.remove().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/hosts")).unwrap(), "image's own\n");
        assert!(root.join("etc/resolv.conf").exists(), "a mount point the run filled is kept");
    }

    #[test]
    fn mount_point_dirs_are_removed_and_parent_times_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::create_dir(root.join("dev")).unwrap();
        let before = |p: &str| std::fs::metadata(root.join(p)).unwrap().modified().unwrap();
        let (root_time, etc_time) = (before(""), before("etc"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut points = MountPoints::create(root, &[]).unwrap();
        assert!(root.join("proc").is_dir() && root.join("sys").is_dir() && root.join("etc/hosts").is_file());
        points.remove().unwrap();
        assert!(!root.join("proc").exists() && !root.join("sys").exists() && root.join("dev").is_dir());
        assert!(!root.join("etc/hosts").exists());
        assert_eq!((before(""), before("etc")), (root_time, etc_time), "a run that changed nothing leaves no trace");
    }

    #[test]
    fn dangling_symlinks_get_their_target_created_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        // Absolute and escaping links resolve against the rootfs, never the host.
        let host_file = outside.join("hosts");
        std::os::unix::fs::symlink(format!("../../..{}", host_file.display()), root.join("etc/hosts")).unwrap();
        let mut points = MountPoints::create(&root, &[]).unwrap();
        assert!(root.join("run/systemd/resolve/stub-resolv.conf").is_file());
        assert!(root.join(host_file.strip_prefix("/").unwrap()).is_file());
        assert!(!host_file.exists(), "a stub was created outside the rootfs");
        points.remove().unwrap();
        assert!(!root.join("run/systemd").exists() && root.join("run").is_dir());
        assert!(!root.join(dir.path().strip_prefix("/").unwrap()).exists(), "created directories are removed");
    }

    #[test]
    fn cleanup_never_follows_a_swapped_etc() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mut points = MountPoints::create(&root, &[]).unwrap();
        std::fs::write(outside.join("hosts"), "").unwrap();
        std::fs::rename(root.join("etc"), root.join("etc.old")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        points.remove().unwrap();
        assert!(outside.join("hosts").exists());
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("hosts", dir.path().join("etc/hosts")).unwrap();
        assert!(matches!(MountPoints::create(dir.path(), &[]), Err(ExecError::Prepare { .. })));
    }
}
