//! The sandbox's mount table, built inside its fresh mount namespace by the init process.
//!
//! Order: everything private; the rootfs bound onto itself (nodev); `/proc`, a tmpfs `/dev`, a
//! read-only `/sys`, the generated `/etc/hosts` and `/etc/resolv.conf`; masked and read-only
//! paths; then `pivot_root` and the old root detached. Insecure mode (as BuildKit's, where
//! every device is allowed) leaves out nodev, the read-only `/sys` and the masked and
//! read-only paths, and makes its device nodes in `/dev`. Every target inside the rootfs is
//! opened beneath the rootfs first (`openat2(RESOLVE_IN_ROOT)`, no symlinks at all for the
//! `/proc`, `/dev` and `/sys` mount points) and mounted through `/proc/self/fd/N`, so a
//! hostile rootfs cannot redirect a mount outside itself (R1, R2). Nothing untrusted runs in
//! the sandbox yet, so nothing can race these steps.
//!
//! Knows nothing of users, capabilities or processes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::devices::DeviceNode;
use super::protocol::{Failure, HelperConfig, Isolation};
use super::spec::{MountSource, Network, Security, mount_order};
use super::sys::{self, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT};

/// Host devices bound into the sandbox's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Builds the mount table and pivots into the rootfs. The process must be alone in a new
/// mount namespace.
pub fn setup(cfg: &HelperConfig) -> Result<(), Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    sys::mount(None, Path::new("/"), None, MS_REC | MS_PRIVATE, None).map_err(step("making mounts private"))?;
    sys::mount(Some(&cfg.rootfs), &cfg.rootfs, None, MS_BIND | MS_REC, None)
        .map_err(step("binding the rootfs onto itself"))?;
    // nodev: CAP_MKNOD stays (Docker's set), but without a devices cgroup a node made in the
    // rootfs must not open the host's disks; only the devices bound into /dev work. Insecure
    // mode allows every device, as BuildKit's.
    if cfg.spec.security == Security::Sandbox {
        let flags = sys::mount_flags(&cfg.rootfs).map_err(step("reading the rootfs mount flags"))?;
        sys::mount(None, &cfg.rootfs, None, MS_BIND | MS_REMOUNT | MS_NODEV | flags, None)
            .map_err(step("remounting the rootfs nodev"))?;
    }
    let root = rustix::fs::open(
        &cfg.rootfs,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Failure::setup("opening the rootfs", &e.into()))?;

    let proc_dir = mount_point(&root, "proc")?;
    match sys::mount(None, &sys::fd_path(&proc_dir), Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None) {
        Ok(()) => {}
        // Chroot isolation: a /proc only where the kernel allows one (it refuses a procfs of a pid
        // namespace that a user namespace of ours does not own); the rootfs' own stays.
        Err(e) if cfg.isolation != Isolation::Namespaces && e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => return Err(Failure::setup("mounting /proc", &e)),
    }
    setup_dev(&root, cfg)?;
    setup_sys(&root, cfg)?;
    bind_file(&root, "/etc/hosts", &cfg.hosts_file)?;
    bind_file(&root, "/etc/resolv.conf", &cfg.resolv_file)?;
    for mount in mount_order(&cfg.spec.mounts) {
        match &mount.source {
            MountSource::Host { path, readonly } => bind_host_path(&root, path, &mount.target, *readonly)?,
            MountSource::Tmpfs { size } => mount_tmpfs(&root, &mount.target, *size)?,
            // The executor turned them into binds of its secrets tmpfs (`secrets`).
            MountSource::Secret(_) => {
                let err = io::Error::from_raw_os_error(libc::EINVAL);
                return Err(Failure::setup(format!("a secret at {} reached the sandbox unbound", mount.target), &err));
            }
        }
    }
    for path in cfg.spec.applied_masked_paths() {
        mask(&root, path)?;
    }
    for path in cfg.spec.applied_readonly_paths() {
        readonly(&root, path)?;
    }
    drop(root);

    std::env::set_current_dir(&cfg.rootfs).map_err(step("entering the rootfs"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(step("pivot_root"))?;
    sys::umount_detach(Path::new(".")).map_err(step("detaching the old root"))?;
    std::env::set_current_dir("/").map_err(step("entering the new root"))?;
    Ok(())
}

/// Opens (creating when missing) a directory mount point directly under the rootfs; a
/// symlink there is refused rather than followed.
fn mount_point(root: &OwnedFd, name: &str) -> Result<OwnedFd, Failure> {
    match sys::open_beneath(root, name, true) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            rustix::fs::mkdirat(root, name, rustix::fs::Mode::from_raw_mode(0o755))
                .map_err(|e| Failure::setup(format!("creating /{name}"), &e.into()))?;
        }
        Err(e) => return Err(Failure::setup(format!("opening /{name} (it must be a directory)"), &e)),
        Ok(fd) => return check_dir(fd, name),
    }
    let fd = sys::open_beneath(root, name, true).map_err(|e| Failure::setup(format!("opening /{name}"), &e))?;
    check_dir(fd, name)
}

fn check_dir(fd: OwnedFd, name: &str) -> Result<OwnedFd, Failure> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| Failure::setup(format!("inspecting /{name}"), &e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Directory {
        let err = io::Error::from_raw_os_error(libc::ENOTDIR);
        return Err(Failure::setup(format!("mounting on /{name}"), &err));
    }
    Ok(fd)
}

fn setup_dev(root: &OwnedFd, cfg: &HelperConfig) -> Result<(), Failure> {
    let step = |what: String| move |e: io::Error| Failure::setup(what, &e);
    let dev = mount_point(root, "dev")?;
    let nodev = match cfg.spec.security {
        Security::Sandbox => MS_NODEV,
        Security::Insecure => 0,
    };
    sys::mount(
        None,
        &sys::fd_path(&dev),
        Some("tmpfs"),
        MS_NOSUID | nodev | sys::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(step("mounting /dev".into()))?;
    drop(dev);
    // The tmpfs is ours and empty: plain paths through its fd are safe from here on.
    let dev = sys::open_beneath(root, "dev", true).map_err(step("opening /dev".into()))?;
    let dev_path = sys::fd_path(&dev);
    for name in DEVICES {
        let target = dev_path.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&target)
            .map_err(step(format!("creating /dev/{name}")))?;
        let source = Path::new("/dev").join(name);
        sys::mount(Some(&source), &target, None, MS_BIND, None).map_err(step(format!("binding /dev/{name}")))?;
    }
    let mut dirs = std::fs::DirBuilder::new();
    dirs.mode(0o755);
    dirs.create(dev_path.join("pts")).map_err(step("creating /dev/pts".into()))?;
    dirs.create(dev_path.join("shm")).map_err(step("creating /dev/shm".into()))?;
    let pts_opts =
        if cfg.rootless { "newinstance,ptmxmode=0666,mode=0620" } else { "newinstance,ptmxmode=0666,mode=0620,gid=5" };
    sys::mount(None, &dev_path.join("pts"), Some("devpts"), MS_NOSUID | MS_NOEXEC, Some(pts_opts))
        .map_err(step("mounting /dev/pts".into()))?;
    let shm = format!("mode=1777,size={}", cfg.spec.shm_size.unwrap_or(super::DEFAULT_SHM_SIZE));
    sys::mount(None, &dev_path.join("shm"), Some("tmpfs"), MS_NOSUID | MS_NODEV | MS_NOEXEC, Some(&shm))
        .map_err(step("mounting /dev/shm".into()))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev_path.join(link)).map_err(step(format!("linking /dev/{link}")))?;
    }
    make_devices(&dev_path, &cfg.devices)
}

/// Makes insecure mode's device nodes in the sandbox's `/dev` tmpfs (ours and empty: plain
/// paths through its fd are safe), with their parent directories (`/dev/net`).
fn make_devices(dev_path: &Path, devices: &[DeviceNode]) -> Result<(), Failure> {
    for node in devices {
        let step = |e: io::Error| Failure::setup(format!("making the device {}", node.path), &e);
        let rel = node.path.strip_prefix("/dev/").filter(|r| !r.split('/').any(|c| c.is_empty() || c == ".."));
        let Some(rel) = rel else { return Err(step(io::Error::from_raw_os_error(libc::EINVAL))) };
        let path = dev_path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(step)?;
        }
        sys::mknod(&path, node.block, node.major, node.minor, 0o666).map_err(step)?;
    }
    Ok(())
}

/// A fresh read-only sysfs when the sandbox has its own network namespace or we are root;
/// otherwise (rootless or chroot isolation in a user namespace, with the host network, where the
/// kernel refuses sysfs) a read-only bind of the host's `/sys`. Writable in insecure mode.
fn setup_sys(root: &OwnedFd, cfg: &HelperConfig) -> Result<(), Failure> {
    let sys_dir = mount_point(root, "sys")?;
    let target = sys::fd_path(&sys_dir);
    let readonly = match cfg.spec.security {
        Security::Sandbox => MS_RDONLY,
        Security::Insecure => 0,
    };
    let flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | readonly;
    let fresh = sys::mount(None, &target, Some("sysfs"), flags, None);
    match fresh {
        Ok(()) => Ok(()),
        Err(e)
            if (cfg.rootless || cfg.isolation != Isolation::Namespaces)
                && cfg.spec.network == Network::Host
                && e.raw_os_error() == Some(libc::EPERM) =>
        {
            sys::mount(Some(Path::new("/sys")), &target, None, MS_BIND | MS_REC, None)
                .map_err(|e| Failure::setup("binding /sys", &e))?;
            drop(sys_dir);
            let sys_dir = sys::open_beneath(root, "sys", true).map_err(|e| Failure::setup("opening /sys", &e))?;
            sys::mount(None, &sys::fd_path(&sys_dir), None, MS_BIND | MS_REMOUNT | flags, None)
                .map_err(|e| Failure::setup("remounting the bound /sys", &e))
        }
        Err(e) => Err(Failure::setup("mounting /sys", &e)),
    }
}

/// Binds a host file over `path` in the rootfs (symlinks followed, but only within it). The
/// target must exist as a regular file (the executor creates missing mount points).
fn bind_file(root: &OwnedFd, path: &str, source: &Path) -> Result<(), Failure> {
    let target = open_target(root, path, false)?
        .ok_or_else(|| Failure::setup(format!("binding {path}"), &io::Error::from_raw_os_error(libc::ENOENT)))?;
    let stat = rustix::fs::fstat(&target).map_err(|e| Failure::setup(format!("inspecting {path}"), &e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Failure::setup(
            format!("binding {path} (not a regular file)"),
            &io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    sys::mount(Some(source), &sys::fd_path(&target), None, MS_BIND, None)
        .map_err(|e| Failure::setup(format!("binding {path}"), &e))
}

/// Binds a host path at `path` inside the rootfs, creating the missing part of the target
/// (directories, then a directory or an empty file like the source) beneath the rootfs.
fn bind_host_path(root: &OwnedFd, source: &Path, path: &str, readonly: bool) -> Result<(), Failure> {
    let step = |e: io::Error| Failure::setup(format!("binding {} at {path}", source.display()), &e);
    // The source is pinned: opened without following any link, mounted through its descriptor.
    let pinned = sys::open_host_no_symlinks(source).map_err(step)?;
    let stat = rustix::fs::fstat(&pinned).map_err(|e| step(e.into()))?;
    let source_is_dir = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
    let source = sys::fd_path(&pinned);
    let source = source.as_path();
    let target = match open_target(root, path, false)? {
        Some(fd) => fd,
        None => {
            let mut parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
            let name = parts.pop().unwrap_or(".");
            let mut dir = sys::open_beneath(root, "/", false).map_err(step)?;
            for part in parts {
                match rustix::fs::mkdirat(&dir, part, rustix::fs::Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(step(e.into())),
                }
                dir = sys::open_beneath(&dir, part, false).map_err(step)?;
            }
            let created = match source_is_dir {
                true => rustix::fs::mkdirat(&dir, name, rustix::fs::Mode::from_raw_mode(0o755)),
                false => rustix::fs::openat(
                    &dir,
                    name,
                    rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::from_raw_mode(0o644),
                )
                .map(drop),
            };
            match created {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(step(e.into())),
            }
            sys::open_beneath(&dir, name, false).map_err(step)?
        }
    };
    sys::mount(Some(source), &sys::fd_path(&target), None, MS_BIND | MS_REC, None).map_err(step)?;
    if readonly {
        drop(target);
        let target = sys::open_beneath(root, path, false).map_err(step)?;
        let flags = sys::mount_flags(&sys::fd_path(&target)).map_err(step)?;
        sys::mount(None, &sys::fd_path(&target), None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, None).map_err(step)?;
    }
    Ok(())
}

/// Mounts a fresh tmpfs (`nosuid,nodev`, at most `size` bytes) on the directory `path`, which
/// the executor created when missing.
fn mount_tmpfs(root: &OwnedFd, path: &str, size: Option<u64>) -> Result<(), Failure> {
    let step = |e: io::Error| Failure::setup(format!("mounting a tmpfs at {path}"), &e);
    let target = open_target(root, path, false)?.ok_or_else(|| step(io::Error::from_raw_os_error(libc::ENOENT)))?;
    check_dir(target, path.trim_start_matches('/')).and_then(|target| {
        let data = size.map(|s| format!("size={s}"));
        sys::mount(None, &sys::fd_path(&target), Some("tmpfs"), MS_NOSUID | MS_NODEV, data.as_deref()).map_err(step)
    })
}

fn open_target(root: &impl AsFd, path: &str, no_symlinks: bool) -> Result<Option<OwnedFd>, Failure> {
    match sys::open_beneath(root, path, no_symlinks) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Failure::setup(format!("opening {path}"), &e)),
    }
}

/// Hides `path`: `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask(root: &OwnedFd, path: &str) -> Result<(), Failure> {
    let Some(target) = open_target(root, path, true)? else { return Ok(()) };
    let stat = rustix::fs::fstat(&target).map_err(|e| Failure::setup(format!("inspecting {path}"), &e.into()))?;
    let result = if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
        sys::mount(
            None,
            &sys::fd_path(&target),
            Some("tmpfs"),
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            Some("size=0"),
        )
    } else {
        sys::mount(Some(Path::new("/dev/null")), &sys::fd_path(&target), None, MS_BIND, None)
    };
    result.map_err(|e| Failure::setup(format!("masking {path}"), &e))
}

/// Makes `path` read-only: bind it onto itself, then remount that bind read-only.
fn readonly(root: &OwnedFd, path: &str) -> Result<(), Failure> {
    let Some(target) = open_target(root, path, true)? else { return Ok(()) };
    let step = |e: io::Error| Failure::setup(format!("making {path} read-only"), &e);
    sys::mount(Some(&sys::fd_path(&target)), &sys::fd_path(&target), None, MS_BIND | MS_REC, None).map_err(step)?;
    drop(target);
    // Reopen: the old descriptor still names the covered inode, not the new bind.
    let Some(target) = open_target(root, path, true)? else { return Ok(()) };
    let flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    sys::mount(None, &sys::fd_path(&target), None, flags, None).map_err(step)
}
