//! Mount-point stubs: empty `/etc/hosts` and `/etc/resolv.conf` files (and `/etc` itself)
//! created in the rootfs when missing, so the generated files can be bound over them, and
//! removed after the run if they are still the empty files we made (BuildKit's
//! `executor/stubs.go`). Existing files are never written: the bind hides them for the run.
//!
//! Everything is fd-relative with `O_NOFOLLOW`: a rootfs that turns `/etc` or a stub into a
//! symlink during the run (D4) makes the cleanup skip it, never follow it.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::ExecError;

pub const STUB_FILES: &[&str] = &["hosts", "resolv.conf"];

/// What was created, to be undone.
#[derive(Debug, Default)]
pub struct Stubs {
    rootfs: std::path::PathBuf,
    created_etc: bool,
    created: Vec<&'static str>,
}

fn open_dir_nofollow(dir: &impl rustix::fd::AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Stubs {
    pub fn create(rootfs: &Path) -> Result<Stubs, ExecError> {
        let prepare = |what: &str| {
            let what = what.to_string();
            move |e: rustix::io::Errno| ExecError::Prepare { what, source: e.into() }
        };
        let mut stubs = Stubs { rootfs: rootfs.to_path_buf(), created_etc: false, created: Vec::new() };
        let root = rustix::fs::open(rootfs, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ExecError::Rootfs { path: rootfs.to_path_buf(), source: e.into() })?;
        let etc = match open_dir_nofollow(&root, "etc") {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&root, "etc", Mode::from_raw_mode(0o755)).map_err(prepare("/etc in the rootfs"))?;
                stubs.created_etc = true;
                open_dir_nofollow(&root, "etc").map_err(prepare("/etc in the rootfs"))?
            }
            // A symlinked /etc is resolved inside the sandbox; nothing to stub here.
            Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => return Ok(stubs),
            Err(e) => return Err(prepare("/etc in the rootfs")(e)),
        };
        for &name in STUB_FILES {
            match rustix::fs::statat(&etc, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => continue,
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(prepare(&format!("/etc/{name} in the rootfs"))(e)),
            }
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            rustix::fs::openat(&etc, name, flags, Mode::from_raw_mode(0o644))
                .map_err(prepare(&format!("/etc/{name} in the rootfs")))?;
            stubs.created.push(name);
        }
        Ok(stubs)
    }

    /// Removes the stubs that are still empty regular files, and `/etc` if we made it and it
    /// is empty again.
    pub fn remove(&mut self) -> Result<(), ExecError> {
        if self.created.is_empty() && !self.created_etc {
            return Ok(());
        }
        let cleanup = |what: &str| {
            let what = what.to_string();
            move |e: rustix::io::Errno| ExecError::Cleanup { what, source: e.into() }
        };
        let root = rustix::fs::open(&self.rootfs, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(cleanup("opening the rootfs"))?;
        let etc = match open_dir_nofollow(&root, "etc") {
            Ok(fd) => fd,
            Err(_) => return Ok(()),
        };
        for name in self.created.drain(..) {
            let Ok(stat) = rustix::fs::statat(&etc, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && stat.st_size == 0 {
                rustix::fs::unlinkat(&etc, name, AtFlags::empty())
                    .map_err(cleanup(&format!("removing /etc/{name} stub")))?;
            }
        }
        if std::mem::take(&mut self.created_etc) {
            // Fails harmlessly when the run put something into /etc.
            let _ = rustix::fs::unlinkat(&root, "etc", AtFlags::REMOVEDIR);
        }
        Ok(())
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_created_when_missing_and_removed_when_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut stubs = Stubs::create(root).unwrap();
        assert!(root.join("etc/hosts").is_file() && root.join("etc/resolv.conf").is_file());
        stubs.remove().unwrap();
        assert!(!root.join("etc").exists(), "a created /etc is removed again");

        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hosts"), "image's own\n").unwrap();
        let mut stubs = Stubs::create(root).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "written by the run\n").unwrap();
        stubs.remove().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/hosts")).unwrap(), "image's own\n");
        assert!(root.join("etc/resolv.conf").exists(), "a stub the run filled is kept");
    }

    #[test]
    fn cleanup_never_follows_a_swapped_etc() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mut stubs = Stubs::create(&root).unwrap();
        std::fs::write(outside.join("hosts"), "").unwrap();
        std::fs::rename(root.join("etc"), root.join("etc.old")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        stubs.remove().unwrap();
        assert!(outside.join("hosts").exists());
    }
}
