//! The build context and every other source of `COPY`/`ADD`: selecting files with source
//! patterns, hashing exactly what a copy would copy (with a persistent stat cache), and copying
//! into a rootfs with Docker/BuildKit's rules.
//!
//! - [`Context`]: a directory read in place (never copied anywhere), or a tar stream extracted
//!   through the safe `layer::apply` into a scratch directory the caller owns; its
//!   `.dockerignore` ([`ignore`]) rules — or those of a Dockerfile-specific ignore file,
//!   [`DockerfileIgnore`] — hide paths from everything below.
//! - [`SourceRoot`]: a directory files are copied from — the context with its ignore rules, or
//!   a stage's / image's rootfs without.
//! - [`select`] resolves source patterns (Go `filepath.Match` per component: `glob`),
//!   [`digest`] hashes the selection ([`StatCache`] avoids re-reading unchanged files),
//!   [`copy`] / [`write_inline`] write into a rootfs, [`resolve_chown`] turns `--chown` into ids,
//!   [`Chmod`] is a validated `--chmod` (octal, or chmod(1)'s symbolic modes as BuildKit applies them).
//!
//! Every path inside a root — the source root or the destination rootfs — is resolved by the
//! kernel with `openat2(RESOLVE_IN_ROOT)` (`crate::dirfd`): symlinks are followed but clamped at
//! the root (`a -> /etc` in a context means `<context>/etc`, catalogue B1), and nothing outside
//! a root is ever opened or written. Below a selected item the walk never follows a symlink (B2).
//!
//! Knows nothing of snapshots, stores or builds: it is given directories.

mod chmod;
mod chown;
mod copy;
mod digest;
mod error;
mod glob;
pub mod ignore;
mod inventory;
mod select;
mod statcache;
mod walk;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

pub use self::chmod::{Chmod, ChmodError};
pub use self::chown::resolve_chown;
pub use self::copy::{CopyOptions, CopyReport, LayerPlan, copy, make_dir, plan_layer, write_inline};
pub use self::digest::{SourceDigest, digest};
pub use self::error::ContextError;
use self::ignore::IgnoreFile;
pub use self::inventory::{
    Below, DirSummary, Entry, EntryKind, Inventory, InventorySink, Reader, Status, Totals, inventory,
};
pub use self::select::{Selected, Selection, select, select_parents};
pub use self::statcache::StatCache;
use crate::dirfd::{self, XattrFilter};

/// The xattrs COPY/ADD copy and hash: one filter for both, so a digest covers exactly what a
/// copy carries (not overlayfs's bookkeeping, not the host's SELinux label).
const COPIED_XATTRS: XattrFilter = XattrFilter::Portable;

/// Largest ignore file read (1 MiB).
const MAX_IGNORE_FILE: u64 = 1 << 20;

/// A build context: a root directory and its ignore rules.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: IgnoreFile,
    /// The ignore file read (host path), none when there was none.
    ignore_path: Option<PathBuf>,
}

/// A Dockerfile-specific ignore file: when it exists, it is used instead of the context's
/// `.dockerignore` (BuildKit reads `<Dockerfile name>.dockerignore` beside the Dockerfile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileIgnore {
    /// A host path the caller chose: `-f FILE` gives `FILE.dockerignore`.
    Host(PathBuf),
    /// A file of the context, resolved inside it like `.dockerignore`: the default Dockerfile's
    /// `Dockerfile.dockerignore`.
    InContext(String),
}

impl Context {
    /// Opens `dir` as the build context. `ignore_file`: a Dockerfile-specific ignore file to use
    /// instead of `<dir>/.dockerignore` when it exists.
    ///
    /// `<dir>/.dockerignore` and a [`DockerfileIgnore::InContext`] file are resolved inside the
    /// context (a symlink pointing out of it is clamped at the root, catalogue B1); a
    /// [`DockerfileIgnore::Host`] file is a host path the caller chose.
    pub fn open_dir(dir: &Path, ignore_file: Option<&DockerfileIgnore>) -> Result<Context, ContextError> {
        let open_err = |source: std::io::Error| ContextError::Open { path: dir.to_path_buf(), source };
        let root = std::fs::canonicalize(dir).map_err(open_err)?;
        let root_fd = dirfd::open_root(&root).map_err(|e| open_err(e.into()))?;
        let special = match ignore_file {
            Some(DockerfileIgnore::Host(path)) => read_host_ignore(path)?.map(|text| (text, path.clone())),
            Some(DockerfileIgnore::InContext(rel)) => {
                read_context_ignore(&root, root_fd.as_fd(), rel)?.map(|text| (text, root.join(rel)))
            }
            None => None,
        };
        let (text, ignore_path) = match special {
            Some((text, path)) => (text, Some(path)),
            None => match read_context_ignore(&root, root_fd.as_fd(), ".dockerignore")? {
                Some(text) => (text, Some(root.join(".dockerignore"))),
                None => (Vec::new(), None),
            },
        };
        let name = ignore_path.as_deref().and_then(Path::file_name);
        let name =
            name.map_or_else(|| ".dockerignore".to_owned(), |n| String::from_utf8_lossy(n.as_bytes()).into_owned());
        let text = String::from_utf8_lossy(&text).into_owned();
        let ignore = IgnoreFile::parse(&name, &text).map_err(|source| ContextError::Ignore {
            path: ignore_path.clone().unwrap_or_else(|| root.join(".dockerignore")),
            source,
        })?;
        Ok(Context { root, ignore, ignore_path })
    }

    /// Extracts a tar stream (plain, gzip, bzip2, xz or zstd — `layer::decompress`) into `scratch`
    /// (an empty directory the caller owns and removes) through the safe `layer::apply`, then opens it
    /// as [`Context::open_dir`] does with `ignore_file`.
    pub fn from_tar(
        reader: impl Read,
        scratch: &Path,
        ignore_file: Option<&DockerfileIgnore>,
    ) -> Result<Context, ContextError> {
        let extract_err = |source| ContextError::Extract { path: scratch.to_path_buf(), source };
        let read_err = |source| ContextError::Open { path: scratch.to_path_buf(), source };
        // `decompress` wants an owned (`'static`) reader and the caller's reader is borrowed:
        // this thread pumps it into a pipe whose read end a scoped thread decompresses and
        // applies, so the stream is never held in memory (nor spooled anywhere).
        let (rx, tx) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| read_err(std::io::Error::from(e)))?;
        let target = scratch.to_path_buf();
        let mut reader = reader;
        let (pumped, applied) = std::thread::scope(|s| {
            let worker = s.spawn(move || {
                let mut rx = File::from(rx);
                let result = crate::layer::decompress(
                    rx.try_clone().map_err(|source| crate::layer::LayerError::ReadStream { source })?,
                )
                .and_then(|plain| crate::layer::apply(plain, &target, &crate::layer::ApplyOptions::default()));
                // Drain what follows the end of the archive (or an error), so the writer never
                // meets a closed pipe.
                let _ = std::io::copy(&mut rx, &mut std::io::sink());
                result
            });
            let mut tx = File::from(tx);
            let pumped = std::io::copy(&mut reader, &mut tx);
            drop(tx);
            (pumped, worker.join())
        });
        let applied = applied.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A failing reader truncates the archive: report the reader, not the truncation.
        pumped.map_err(read_err)?;
        applied.map_err(extract_err)?;
        Context::open_dir(scratch, ignore_file)
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules in use (empty without an ignore file).
    pub fn ignore(&self) -> &IgnoreFile {
        &self.ignore
    }

    /// The ignore file in use (a host path: in the context, or `FILE.dockerignore` beside a
    /// Dockerfile given with `-f`), none when there is none.
    pub fn ignore_path(&self) -> Option<&Path> {
        self.ignore_path.as_deref()
    }

    /// Reads a file of the context (e.g. the Dockerfile), resolved inside the root (symlinks followed only
    /// while they stay inside: catalogue B1 `Dockerfile -> /etc/shadow`), at most `max` bytes (error beyond).
    ///
    /// Ignore rules do not apply (Docker reads the Dockerfile even when `.dockerignore` lists it).
    pub fn read_file(&self, rel: &str, max: u64) -> Result<Vec<u8>, ContextError> {
        let root = dirfd::open_root(&self.root)
            .map_err(|e| ContextError::Open { path: self.root.clone(), source: e.into() })?;
        let cleaned = ignore::clean_path(&format!("/{rel}"));
        let rel_bytes = cleaned.trim_start_matches('/').as_bytes();
        match dirfd::read_in_root(root.as_fd(), rel_bytes, max) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(ContextError::NotFound { pattern: rel.to_owned() }),
            Err(dirfd::ReadError::Io(source)) if source.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                Err(ContextError::SymlinkLoop { path: rel.to_owned() })
            }
            Err(dirfd::ReadError::Io(source)) => Err(ContextError::Read { path: rel.to_owned(), source }),
            Err(dirfd::ReadError::NotAFile) => Err(ContextError::NotAFile { path: rel.to_owned() }),
            Err(dirfd::ReadError::TooLarge) => Err(ContextError::TooLarge { path: rel.to_owned(), max }),
        }
    }

    /// The context as a COPY source (its root + its ignore rules).
    pub fn source(&self) -> SourceRoot<'_> {
        SourceRoot { dir: &self.root, ignore: Some(&self.ignore) }
    }
}

/// An ignore file at a host path, at most [`MAX_IGNORE_FILE`] bytes; `None` when it does not exist.
fn read_host_ignore(path: &Path) -> Result<Option<Vec<u8>>, ContextError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ContextError::Open { path: path.to_path_buf(), source }),
    };
    let read_err = |source| ContextError::Open { path: path.to_path_buf(), source };
    match dirfd::read_capped(&mut file, MAX_IGNORE_FILE).map_err(read_err)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(ContextError::TooLarge { path: path.display().to_string(), max: MAX_IGNORE_FILE }),
    }
}

/// An ignore file of the context (`rel`, resolved inside `root_fd`), at most [`MAX_IGNORE_FILE`]
/// bytes; `None` when it does not exist.
fn read_context_ignore(root: &Path, root_fd: BorrowedFd<'_>, rel: &str) -> Result<Option<Vec<u8>>, ContextError> {
    match dirfd::read_in_root(root_fd, rel.as_bytes(), MAX_IGNORE_FILE) {
        Ok(bytes) => Ok(bytes),
        Err(dirfd::ReadError::Io(source)) => Err(ContextError::Open { path: root.join(rel), source }),
        Err(dirfd::ReadError::NotAFile) => Err(ContextError::NotAFile { path: rel.to_owned() }),
        Err(dirfd::ReadError::TooLarge) => Err(ContextError::TooLarge { path: rel.to_owned(), max: MAX_IGNORE_FILE }),
    }
}

/// A directory files are copied from: the build context (with its .dockerignore) or a stage's / image's
/// mounted rootfs (no ignore rules).
#[derive(Debug, Clone, Copy)]
pub struct SourceRoot<'a> {
    dir: &'a Path,
    ignore: Option<&'a IgnoreFile>,
}

impl<'a> SourceRoot<'a> {
    /// A source without ignore rules (a stage's or an image's rootfs).
    pub fn dir(dir: &'a Path) -> SourceRoot<'a> {
        SourceRoot { dir, ignore: None }
    }

    /// The source directory.
    pub fn path(&self) -> &Path {
        self.dir
    }

    /// Whether the ignore rules hide `rel` (relative to the root, `/`-separated).
    fn ignored(&self, rel: &[u8]) -> bool {
        match self.ignore {
            Some(ignore) if !rel.is_empty() => ignore.matches(&String::from_utf8_lossy(rel)).is_some(),
            _ => false,
        }
    }

    /// Opens the root directory and its canonical path (for [`dirfd::real_rel`]).
    fn open(&self) -> Result<(std::os::fd::OwnedFd, PathBuf), ContextError> {
        let open_err = |source: std::io::Error| ContextError::Open { path: self.dir.to_path_buf(), source };
        let real = std::fs::canonicalize(self.dir).map_err(open_err)?;
        let fd = dirfd::open_root(&real).map_err(|e| open_err(e.into()))?;
        Ok((fd, real))
    }
}

/// Parses `COPY --exclude` patterns (the `.dockerignore` line syntax); `None` when there are none.
fn compile_excludes(excludes: &[String]) -> Result<Option<IgnoreFile>, ContextError> {
    if excludes.is_empty() {
        return Ok(None);
    }
    let text = excludes.iter().map(|e| e.replace('\n', "")).collect::<Vec<_>>().join("\n");
    IgnoreFile::parse("--exclude", &text).map(Some).map_err(|source| ContextError::Exclude { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context with `.dockerignore` hiding `dot` and whatever `extra` writes.
    fn context(extra: impl FnOnce(&Path)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "dot\n").unwrap();
        extra(dir.path());
        dir
    }

    fn hides(ctx: &Context, path: &str) -> bool {
        ctx.ignore().matches(path).is_some()
    }

    fn in_context() -> DockerfileIgnore {
        DockerfileIgnore::InContext("Dockerfile.dockerignore".to_owned())
    }

    #[test]
    fn a_dockerfile_ignore_in_the_context_replaces_dockerignore() {
        let dir = context(|d| std::fs::write(d.join("Dockerfile.dockerignore"), "special\n").unwrap());
        let ctx = Context::open_dir(dir.path(), Some(&in_context())).unwrap();
        assert!(hides(&ctx, "special") && !hides(&ctx, "dot"));
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        assert!(!hides(&ctx, "special") && hides(&ctx, "dot"), "only when asked for");
    }

    #[test]
    fn the_ignore_file_in_use_is_known() {
        let dir = context(|d| std::fs::write(d.join("Dockerfile.dockerignore"), "special\n").unwrap());
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let ctx = Context::open_dir(dir.path(), Some(&in_context())).unwrap();
        assert_eq!(ctx.ignore_path(), Some(root.join("Dockerfile.dockerignore").as_path()));
        assert_eq!(
            Context::open_dir(dir.path(), None).unwrap().ignore_path(),
            Some(root.join(".dockerignore").as_path())
        );
        std::fs::remove_file(dir.path().join(".dockerignore")).unwrap();
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        assert_eq!((ctx.ignore_path(), ctx.ignore().rules().len()), (None, 0));
    }

    #[test]
    fn a_missing_dockerfile_ignore_falls_back_to_dockerignore() {
        let dir = context(|_| {});
        let ctx = Context::open_dir(dir.path(), Some(&in_context())).unwrap();
        assert!(hides(&ctx, "dot"));
        let host = DockerfileIgnore::Host(dir.path().join("absent.dockerignore"));
        assert!(hides(&Context::open_dir(dir.path(), Some(&host)).unwrap(), "dot"));
    }

    #[test]
    fn a_dockerfile_ignore_in_the_context_is_resolved_inside_it() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("rules");
        std::fs::write(&target, "special\n").unwrap();
        // Clamped at the context's root, the link points at nothing: `.dockerignore` applies.
        let dir = context(|d| std::os::unix::fs::symlink(&target, d.join("Dockerfile.dockerignore")).unwrap());
        let ctx = Context::open_dir(dir.path(), Some(&in_context())).unwrap();
        assert!(!hides(&ctx, "special") && hides(&ctx, "dot"));
    }

    #[test]
    fn a_dockerfile_ignore_that_is_no_file_is_an_error() {
        let dir = context(|d| std::fs::create_dir(d.join("Dockerfile.dockerignore")).unwrap());
        let err = Context::open_dir(dir.path(), Some(&in_context())).unwrap_err();
        assert!(matches!(err, ContextError::NotAFile { ref path } if path == "Dockerfile.dockerignore"), "{err}");
        let dir = context(|d| std::fs::write(d.join("Dockerfile.dockerignore"), "bad[\n").unwrap());
        let err = Context::open_dir(dir.path(), Some(&in_context())).unwrap_err();
        assert!(matches!(err, ContextError::Ignore { ref path, .. } if path.ends_with("Dockerfile.dockerignore")));
    }
}
