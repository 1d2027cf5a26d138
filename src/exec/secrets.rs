//! Secret files for a run: written into a tmpfs mounted on a fresh directory outside the
//! rootfs (mode 0700, `nodev,nosuid,noexec`), bound read-only into the sandbox, and gone —
//! unmounted, directory removed — when the run ends, whatever happened. The embedded executor
//! detaches the tmpfs from the caller's mount table as soon as its helper holds a copy, so a
//! caller killed with kill -9 leaves none (the oci-runtime executor's stays for the run: the
//! runtime reads its bundle from it). Their bytes never touch
//! a disk. Both executors use it: the secrets of a spec become read-only host binds before the
//! sandbox is built, so the sandbox helper and the runtime bundle never see secret bytes as
//! files (the oci-runtime executor also keeps its whole bundle, whose `config.json` holds the
//! environment, in one of these when the spec carries secrets).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::spec::{ExecSpec, Mount, MountSource, SecretFile};
use super::{ExecError, sys};

/// A tmpfs on a private directory; unmounted and removed on drop.
pub struct SecretDir {
    dir: PathBuf,
    mounted: bool,
    next: u32,
}

impl SecretDir {
    /// Mounts a fresh tmpfs on a new directory in `parent`. Needs `CAP_SYS_ADMIN` in the caller's
    /// mount namespace (root, or a rootless build's own namespaces).
    pub fn new(parent: &Path) -> Result<SecretDir, ExecError> {
        let prepare =
            |source| ExecError::Prepare { what: format!("a secrets directory in {}", parent.display()), source };
        let dir = tempfile::Builder::new().prefix("slipway-secrets-").tempdir_in(parent).map_err(prepare)?.keep();
        // Without links on its way: secret files are bound without following any.
        let dir = std::fs::canonicalize(&dir).map_err(prepare)?;
        let mut secrets = SecretDir { dir, mounted: false, next: 0 };
        let flags = sys::MS_NODEV | sys::MS_NOSUID | sys::MS_NOEXEC;
        sys::mount(None, &secrets.dir, Some("tmpfs"), flags, Some("mode=0700,size=16m")).map_err(|source| {
            ExecError::Prepare { what: format!("a tmpfs for secrets on {}", secrets.dir.display()), source }
        })?;
        secrets.mounted = true;
        Ok(secrets)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Takes the tmpfs out of the caller's mount table once a process has its own copy (the
    /// embedded executor's helper, whose private mount namespace was made after the files were
    /// written): the secrets then live exactly as long as that namespace, so a caller killed
    /// with kill -9 leaves no tmpfs with secrets behind. The directory goes on drop.
    pub fn detach(&mut self) -> Result<(), ExecError> {
        if self.mounted {
            sys::umount_detach(&self.dir).map_err(|source| ExecError::Prepare {
                what: format!("the secrets tmpfs on {} detached", self.dir.display()),
                source,
            })?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Writes one secret file with its owner and mode; returns its path.
    pub fn write(&mut self, file: &SecretFile) -> Result<PathBuf, ExecError> {
        self.next += 1;
        let path = self.dir.join(format!("secret-{}", self.next));
        let fail = |source| ExecError::Prepare { what: format!("secret file {}", path.display()), source };
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(fail)?;
        out.write_all(file.data.bytes()).map_err(fail)?;
        rustix::fs::fchown(&out, Some(rustix::fs::Uid::from_raw(file.uid)), Some(rustix::fs::Gid::from_raw(file.gid)))
            .map_err(|e| fail(e.into()))?;
        rustix::fs::fchmod(&out, rustix::fs::Mode::from_raw_mode(file.mode & 0o7777)).map_err(|e| fail(e.into()))?;
        Ok(path)
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        if self.mounted
            && let Err(e) = sys::umount_detach(&self.dir)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "unmounting a secrets tmpfs");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `spec` with every secret file mount turned into a read-only bind of a file written in `dir`.
pub fn bind_secrets(spec: &ExecSpec, dir: &mut SecretDir) -> Result<ExecSpec, ExecError> {
    let mut resolved = spec.clone();
    for mount in &mut resolved.mounts {
        if let MountSource::Secret(file) = &mount.source {
            let path = dir.write(file)?;
            *mount = Mount::host(path, mount.target.clone(), true);
        }
    }
    Ok(resolved)
}

/// The spec with its secret files bound from a fresh [`SecretDir`] in `parent`, which the
/// caller keeps until the run is over; no directory when the spec has no secret files.
pub fn with_secret_files(spec: &ExecSpec, parent: &Path) -> Result<(ExecSpec, Option<SecretDir>), ExecError> {
    if !spec.has_secret_files() {
        return Ok((spec.clone(), None));
    }
    let mut dir = SecretDir::new(parent)?;
    Ok((bind_secrets(spec, &mut dir)?, Some(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Secret;

    #[test]
    fn secrets_live_in_a_tmpfs_that_is_gone_after_drop() {
        let parent = tempfile::tempdir().unwrap();
        let mut spec = ExecSpec::new(["true"]);
        let file = SecretFile { data: Secret::new(b"hunter2".to_vec()), mode: 0o400, uid: 1, gid: 2 };
        spec.mounts.push(Mount { target: "/run/secrets/s".into(), source: MountSource::Secret(file) });
        let (resolved, dir) = with_secret_files(&spec, parent.path()).unwrap();
        let MountSource::Host { path, readonly: true } = &resolved.mounts[0].source else { panic!("not a bind") };
        let meta = std::fs::metadata(path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o400, 1, 2));
        assert_eq!(std::fs::read(path).unwrap(), b"hunter2");
        let dir = dir.unwrap();
        let root = dir.path().to_path_buf();
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mounted.contains(&root.display().to_string()), "a tmpfs is mounted there");
        drop(dir);
        assert!(!root.exists(), "the directory is gone");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_spec_without_secrets_needs_no_tmpfs() {
        let parent = tempfile::tempdir().unwrap();
        let (_, dir) = with_secret_files(&ExecSpec::new(["true"]), parent.path()).unwrap();
        assert!(dir.is_none());
    }
}
