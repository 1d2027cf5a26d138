//! `<store root>/cache/mounts`: the directories of `RUN --mount=type=cache`, kept across builds.
//!
//! A cache mount is named by its id (any text: BuildKit's default is the target path). Its
//! directory is the sha256 hex of the id, so no id can name a path outside `mounts/`:
//!
//! | path under `mounts/` | what |
//! | --- | --- |
//! | `lock` | flock: shared while an [`CacheMounts::acquire`] sets up, exclusive for [`CacheMounts::clear`] |
//! | `<hex>/id` | the id text, for [`CacheMounts::list`] (written through a temp file + rename) |
//! | `<hex>/<n>/` | instance `n`, the directory a RUN step sees (0, and 1, 2, … for `sharing=private`) |
//! | `<hex>/<n>.lock` | flock of instance `n`: shared by `shared` holders, exclusive otherwise |
//! | `<hex>/tmp-<n>-<random>/` | instance `n` being created: by its creator, or residue of a killed one |
//!
//! # Sharing (BuildKit's `sharing=`)
//!
//! - [`Sharing::Shared`]: holders take instance 0's lock shared and use the directory at once.
//! - [`Sharing::Locked`]: holders take instance 0's lock exclusive, one after the other (and
//!   exclude shared holders, and the other way round).
//! - [`Sharing::Private`]: a holder takes the first instance whose lock it can take exclusive
//!   without waiting — 0 if free, else 1, 2, …, created as needed and reused by later holders.
//!
//! Every lock is a `flock` on a file opened by the acquisition itself, so threads of one process
//! exclude each other exactly as processes sharing a store do, and the kernel releases the lock
//! of a killed holder. Waiting is polling (every [`POLL`]) so a waiter sees cancellation; a
//! `locked` waiter can therefore be overtaken by `shared` holders that keep overlapping.
//!
//! # Creating an instance
//!
//! Only the holder of an instance's exclusive lock creates it (a `shared` acquirer that finds no
//! instance 0 takes its lock exclusive to create it): as `tmp-<n>-<random>`, chowned to the
//! request's uid:gid and given its mode. The lease is new ([`CacheMountLease::is_new`]): its
//! holder seeds it (`from=`/`source=`) and runs its step in the temp directory, and releasing the
//! lease renames it to `<n>` (`RENAME_NOREPLACE`) before the lock goes. So a creator killed at any
//! point leaves only `tmp-…` residue, which the next creator of that instance removes: a
//! half-created or half-seeded instance is never taken for a seeded one. The price: until its
//! first holder releases it, a new instance is exclusive even for `shared` holders.
//!
//! A step that needs several cache mounts should acquire them in one order (by id): two steps
//! acquiring the same two exclusive instances in opposite orders wait for each other until
//! cancelled, and so does one step mounting the same new or `locked` id twice.
//!
//! # Clearing
//!
//! [`CacheMounts::clear`] holds `mounts/lock` exclusive, so no acquisition is between choosing
//! an instance and holding its lock; it removes each instance whose lock it can take exclusive
//! without waiting, and an id's whole directory when none of its instances is held.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{CWD, FlockOperation, RenameFlags, flock, renameat_with};
use sha2::{Digest as _, Sha256};

use super::CacheError;

/// How often a waiting [`CacheMounts::acquire`] tries again and asks whether it is cancelled.
pub const POLL: Duration = Duration::from_millis(50);

/// The directory under the store root, below `cache/`.
const MOUNTS_DIR: &str = "mounts";
/// The mounts-wide setup lock, in the mounts directory.
const SETUP_LOCK: &str = "lock";
/// The file holding an id's text, in the id's directory.
const ID_FILE: &str = "id";

/// How holders of one cache mount id share it (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Every holder uses the same directory at once (the default).
    #[default]
    Shared,
    /// Each holder gets a directory no other current holder has.
    Private,
    /// Holders use the same directory one after the other.
    Locked,
}

/// One cache mount of one RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMountRequest<'a> {
    /// The mount's id: any text.
    pub id: &'a str,
    /// How concurrent holders share it.
    pub sharing: Sharing,
    /// Mode of the instance's root directory when this acquisition creates it.
    pub mode: u32,
    /// Owner of the instance's root directory when this acquisition creates it.
    pub uid: u32,
    /// Group of the instance's root directory when this acquisition creates it.
    pub gid: u32,
}

/// The cache mounts of one store: `<store root>/cache/mounts`. `Send + Sync`; every call opens
/// its own lock files, so one value serves every thread.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    dir: PathBuf,
}

/// A cache mount as [`CacheMounts::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMountInfo {
    /// The id the Dockerfile gave.
    pub id: String,
    /// Instances created (more than one only for `sharing=private` holders that overlapped).
    pub instances: usize,
    /// Apparent size of the regular files under the id's directory.
    pub bytes: u64,
    /// Unix seconds of the last acquisition (of any instance).
    pub last_used: i64,
    /// The id's directory, `<store root>/cache/mounts/<sha256 hex of the id>`.
    pub dir: PathBuf,
}

/// What [`CacheMounts::remove`] did with one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedMount {
    /// The id is gone, with every instance.
    Removed,
    /// An instance is held (a build is using it): that instance stays, the free ones went.
    Held,
    /// There was no such id.
    Absent,
}

/// What [`CacheMounts::clear`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClearedMounts {
    /// Ids removed entirely, with the bytes each freed.
    pub removed: Vec<(String, u64)>,
    /// Ids kept because an instance is held (their free instances are removed all the same).
    pub skipped: Vec<String>,
    /// Bytes freed in all: the removed ids and the free instances of skipped ones.
    pub bytes_freed: u64,
}

/// A held cache mount instance; dropping it (or [`CacheMountLease::release`]) releases it.
#[derive(Debug)]
pub struct CacheMountLease {
    path: PathBuf,
    /// Where a new instance goes when released.
    publish_to: Option<PathBuf>,
    is_new: bool,
    /// The instance's flock; released when the lease drops, after the rename.
    _lock: File,
}

/// The kind of flock taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Shared,
    Exclusive,
}

impl CacheMounts {
    /// Opens the cache mounts of the store at `store_root`, creating `cache/mounts` (mode 0700).
    pub fn open(store_root: &Path) -> Result<CacheMounts, CacheError> {
        let dir = store_root.join("cache").join(MOUNTS_DIR);
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| io_err("create", &dir, e))?;
        Ok(CacheMounts { dir })
    }

    /// The mounts directory, `<store root>/cache/mounts`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the cache mount `req.id` for one RUN step; blocks (polling `cancelled` every
    /// [`POLL`]) while another holder excludes it, and fails with
    /// [`CacheError::MountCancelled`] once `cancelled` says so.
    pub fn acquire(
        &self,
        req: &CacheMountRequest<'_>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<CacheMountLease, CacheError> {
        let mut waited = false;
        loop {
            if let Some(lease) = self.try_acquire(req)? {
                return Ok(lease);
            }
            if cancelled() {
                return Err(CacheError::MountCancelled { id: req.id.to_string() });
            }
            if !waited {
                tracing::debug!(id = req.id, sharing = ?req.sharing, "waiting for a cache mount");
                waited = true;
            }
            std::thread::sleep(POLL);
        }
    }

    /// One attempt: the lease, or `None` when a holder (or a clear) excludes it right now.
    fn try_acquire(&self, req: &CacheMountRequest<'_>) -> Result<Option<CacheMountLease>, CacheError> {
        let Some(_setup) = self.setup_lock(Mode::Shared)? else { return Ok(None) };
        let dir = self.id_dir(req.id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err("create", &dir, e)),
            _ => {}
        }
        write_id(&dir, req.id)?;
        let claimed = match req.sharing {
            Sharing::Shared => claim_shared(&dir)?,
            Sharing::Locked => try_instance(&dir, 0, Mode::Exclusive)?.map(|lock| (0, lock)),
            Sharing::Private => Some(claim_private(&dir)?),
        };
        let Some((n, lock)) = claimed else { return Ok(None) };
        lock.set_modified(SystemTime::now()).map_err(|e| io_err("touch", &lock_path(&dir, n), e))?;
        let path = instance_path(&dir, n);
        if is_dir(&path)? {
            return Ok(Some(CacheMountLease { path, publish_to: None, is_new: false, _lock: lock }));
        }
        // Only an exclusive holder gets here: `claim_shared` shares only an existing instance.
        let tmp = create_instance(&dir, n, req)?;
        tracing::debug!(id = req.id, instance = n, path = %tmp.display(), "created a cache mount instance");
        Ok(Some(CacheMountLease { path: tmp, publish_to: Some(path), is_new: true, _lock: lock }))
    }

    /// Every cache mount, sorted by id. An id still being set up (no `id` file yet) or removed
    /// while listed is left out.
    pub fn list(&self) -> Result<Vec<CacheMountInfo>, CacheError> {
        let mut out = Vec::new();
        for dir in self.id_dirs()? {
            match describe(&dir) {
                Ok(Some(info)) => out.push(info),
                Ok(None) => {}
                Err(CacheError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes every cache mount instance no one holds (and the ids left with none); blocks
    /// only while an acquisition is setting up.
    pub fn clear(&self) -> Result<ClearedMounts, CacheError> {
        let _lock = self.setup_lock_wait()?;
        let mut report = ClearedMounts::default();
        for dir in self.id_dirs()? {
            let (id, bytes, kept) = clear_id(&dir)?;
            report.bytes_freed += bytes;
            if kept {
                report.skipped.push(id);
            } else {
                report.removed.push((id, bytes));
            }
        }
        report.removed.sort();
        report.skipped.sort();
        Ok(report)
    }

    /// Removes the cache mount `id` as [`CacheMounts::clear`] removes each: every instance no
    /// one holds, and the id when none is held.
    pub fn remove(&self, id: &str) -> Result<RemovedMount, CacheError> {
        let _lock = self.setup_lock_wait()?;
        let dir = self.id_dir(id);
        if !is_dir(&dir)? {
            return Ok(RemovedMount::Absent);
        }
        let (_, _, kept) = clear_id(&dir)?;
        Ok(if kept { RemovedMount::Held } else { RemovedMount::Removed })
    }

    /// Whether a build holds an instance of `id` right now (a moment later it may not).
    pub fn is_held(&self, id: &str) -> Result<bool, CacheError> {
        let dir = self.id_dir(id);
        if !is_dir(&dir)? {
            return Ok(false);
        }
        for (name, path) in entries(&dir)? {
            if lock_number(&name).is_none() {
                continue;
            }
            let file = open_lock(&path)?;
            // Taken and let go at once: an acquirer meeting it only tries again after `POLL`.
            if !try_flock(&file, Mode::Exclusive, &path)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `mounts/lock` exclusive, waiting for acquisitions that are setting up.
    fn setup_lock_wait(&self) -> Result<File, CacheError> {
        let path = self.dir.join(SETUP_LOCK);
        let lock = open_lock(&path)?;
        loop {
            match flock(&lock, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(lock),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", &path, e.into())),
            }
        }
    }

    /// The directory of `id`: the sha256 hex of its text, so that no id escapes `mounts/`.
    fn id_dir(&self, id: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(id.as_bytes())))
    }

    /// The id directories (names of 64 lowercase hex digits; anything else is not ours).
    fn id_dirs(&self) -> Result<Vec<PathBuf>, CacheError> {
        let mut dirs = Vec::new();
        for (name, path) in entries(&self.dir)? {
            let hex = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if hex && is_dir(&path)? {
                dirs.push(path);
            }
        }
        Ok(dirs)
    }

    /// `mounts/lock` in `mode` without waiting: `None` while a conflicting holder has it.
    fn setup_lock(&self, mode: Mode) -> Result<Option<File>, CacheError> {
        let path = self.dir.join(SETUP_LOCK);
        let file = open_lock(&path)?;
        Ok(try_flock(&file, mode, &path)?.then_some(file))
    }
}

impl CacheMountLease {
    /// The directory to mount: the instance's, or for a new one its temp directory until
    /// released.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this acquisition created the instance: its holder seeds it (`from=`/`source=`).
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// Releases the instance; a new one is renamed into place first, and an error doing so is
    /// returned (dropping the lease does the same and only logs it).
    pub fn release(mut self) -> Result<(), CacheError> {
        self.publish()
    }

    fn publish(&mut self) -> Result<(), CacheError> {
        let Some(to) = self.publish_to.take() else { return Ok(()) };
        // The exclusive lock already keeps anyone else from creating `to`; NOREPLACE makes
        // sure, where the filesystem has it.
        match renameat_with(CWD, &self.path, CWD, &to, RenameFlags::NOREPLACE) {
            Err(rustix::io::Errno::INVAL) => fs::rename(&self.path, &to),
            other => other.map_err(io::Error::from),
        }
        .map_err(|e| io_err("publish", &self.path, e))?;
        self.path = to;
        Ok(())
    }
}

impl Drop for CacheMountLease {
    fn drop(&mut self) {
        if let Err(e) = self.publish() {
            tracing::warn!(error = %e, "a new cache mount instance was not kept; the next holder creates it again");
        }
    }
}

/// One id directory as [`CacheMounts::list`] shows it; `None` without an `id` file.
fn describe(dir: &Path) -> Result<Option<CacheMountInfo>, CacheError> {
    let Some(id) = read_id(dir)? else { return Ok(None) };
    let mut instances = 0;
    let mut last_used = None;
    for (name, path) in entries(dir)? {
        if name.parse::<u32>().is_ok() && is_dir(&path)? {
            instances += 1;
        } else if lock_number(&name).is_some() {
            let modified = fs::symlink_metadata(&path).and_then(|m| m.modified());
            last_used = last_used.max(Some(modified.map_err(|e| io_err("stat", &path, e))?));
        }
    }
    let last_used = match last_used {
        Some(t) => t,
        None => fs::symlink_metadata(dir).and_then(|m| m.modified()).map_err(|e| io_err("stat", dir, e))?,
    };
    let bytes = apparent_size(dir)?;
    Ok(Some(CacheMountInfo { id, instances, bytes, last_used: unix_secs(last_used), dir: dir.to_path_buf() }))
}

/// Instance 0 for a `shared` holder: shared when it exists, exclusive (to create it) when not.
fn claim_shared(dir: &Path) -> Result<Option<(u32, File)>, CacheError> {
    loop {
        let exists = is_dir(&instance_path(dir, 0))?;
        let mode = if exists { Mode::Shared } else { Mode::Exclusive };
        let Some(lock) = try_instance(dir, 0, mode)? else { return Ok(None) };
        if !exists && is_dir(&instance_path(dir, 0))? {
            continue; // published between the look and the lock: share it
        }
        return Ok(Some((0, lock)));
    }
}

/// The first instance whose lock is free, exclusive; a new number when every one is held.
fn claim_private(dir: &Path) -> Result<(u32, File), CacheError> {
    let mut n = 0u32;
    loop {
        if let Some(lock) = try_instance(dir, n, Mode::Exclusive)? {
            return Ok((n, lock));
        }
        n = n.checked_add(1).expect("fewer than 2^32 instances of one cache mount are held at once");
    }
}

/// Instance `n`'s lock in `mode` without waiting: `None` while a conflicting holder has it.
fn try_instance(dir: &Path, n: u32, mode: Mode) -> Result<Option<File>, CacheError> {
    let path = lock_path(dir, n);
    let file = open_lock(&path)?;
    Ok(try_flock(&file, mode, &path)?.then_some(file))
}

/// Creates instance `n` as `tmp-<n>-<random>` (removing a killed creator's residue first),
/// owned and moded as `req` says.
fn create_instance(dir: &Path, n: u32, req: &CacheMountRequest<'_>) -> Result<PathBuf, CacheError> {
    let prefix = format!("tmp-{n}-");
    for (name, path) in entries(dir)? {
        if name.starts_with(&prefix) {
            tracing::debug!(path = %path.display(), "removing a half-created cache mount instance");
            remove(&path)?;
        }
    }
    let tmp = tempfile::Builder::new().prefix(&prefix).tempdir_in(dir).map_err(|e| io_err("create in", dir, e))?.keep();
    let owned = std::os::unix::fs::lchown(&tmp, Some(req.uid), Some(req.gid)).map_err(|e| io_err("chown", &tmp, e));
    // chown clears set-id bits: the mode goes after it.
    let moded = owned.and_then(|()| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(req.mode & 0o7777)).map_err(|e| io_err("chmod", &tmp, e))
    });
    if let Err(e) = moded {
        let _ = fs::remove_dir(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Writes `<dir>/id` unless present, through a temp file and a rename.
fn write_id(dir: &Path, id: &str) -> Result<(), CacheError> {
    let path = dir.join(ID_FILE);
    if fs::symlink_metadata(&path).is_ok() {
        return Ok(());
    }
    let mut tmp =
        tempfile::Builder::new().prefix("tmp-id-").tempfile_in(dir).map_err(|e| io_err("create in", dir, e))?;
    io::Write::write_all(&mut tmp, id.as_bytes()).map_err(|e| io_err("write", tmp.path(), e))?;
    tmp.persist(&path).map_err(|e| io_err("write", &path, e.error))?;
    Ok(())
}

/// The id text of an id directory; `None` when it has none (set up by a killed process, or
/// removed meanwhile).
fn read_id(dir: &Path) -> Result<Option<String>, CacheError> {
    let path = dir.join(ID_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path, e)),
    }
}

/// Clears one id directory (the caller holds `mounts/lock` exclusive): its id, the bytes freed
/// and whether it was kept because an instance is held.
fn clear_id(dir: &Path) -> Result<(String, u64, bool), CacheError> {
    let id = match read_id(dir)? {
        Some(id) => id,
        None => dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    };
    let mut held = BTreeSet::new();
    let mut taken = Vec::new(); // kept open (locked) until their instances are gone
    for (name, path) in entries(dir)? {
        let Some(n) = lock_number(&name) else { continue };
        let file = open_lock(&path)?;
        if try_flock(&file, Mode::Exclusive, &path)? {
            taken.push(file);
        } else {
            held.insert(n);
        }
    }
    // Listed again once the locks are taken: a holder that let go in between may have renamed
    // its new instance into place. No lock file appears meanwhile (no acquisition is setting up).
    let (locks, others): (Vec<_>, Vec<_>) =
        entries(dir)?.into_iter().partition(|(name, _)| lock_number(name).is_some());
    let mut bytes = 0;
    // An instance's lock file goes after its directory.
    for (name, path) in others.into_iter().chain(locks) {
        let keep = match instance_number(&name) {
            Some(n) => held.contains(&n),
            None => !held.is_empty(),
        };
        if !keep {
            bytes += apparent_size(&path)?;
            remove(&path)?;
        }
    }
    if held.is_empty() {
        fs::remove_dir(dir).map_err(|e| io_err("remove", dir, e))?;
    }
    tracing::debug!(id, bytes, held = held.len(), "cleared a cache mount");
    Ok((id, bytes, !held.is_empty()))
}

/// The instance an id directory's entry belongs to: `<n>`, `<n>.lock`, `tmp-<n>-…`.
fn instance_number(name: &str) -> Option<u32> {
    let n = match name.strip_prefix("tmp-") {
        Some(rest) => rest.split_once('-')?.0,
        None => name.strip_suffix(".lock").unwrap_or(name),
    };
    n.parse().ok()
}

/// `n` of a lock file's name `<n>.lock`.
fn lock_number(name: &str) -> Option<u32> {
    name.strip_suffix(".lock")?.parse().ok()
}

fn lock_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n}.lock"))
}

fn instance_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(n.to_string())
}

/// Takes `mode` on `file` without waiting: `false` when a conflicting holder has it.
pub(super) fn try_flock(file: &File, mode: Mode, path: &Path) -> Result<bool, CacheError> {
    let op = match mode {
        Mode::Shared => FlockOperation::NonBlockingLockShared,
        Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err("lock", path, e.into())),
        }
    }
}

/// Opens (creating) a lock file: a file description of its own, so its flock is this caller's.
pub(super) fn open_lock(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err("open lock file", path, e))
}

/// The names and paths in `dir`, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, CacheError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

fn is_dir(path: &Path) -> Result<bool, CacheError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat", path, e)),
    }
}

/// Removes a file or a whole directory (never following a symlink); gone already is fine.
fn remove(path: &Path) -> Result<(), CacheError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path, e)),
        _ => Ok(()),
    }
}

/// The apparent size of the regular files under `path`, not following symlinks; what vanishes
/// during the walk counts as nothing.
fn apparent_size(path: &Path) -> Result<u64, CacheError> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => continue,
            Err(e) => {
                let at = e.path().unwrap_or(path).to_path_buf();
                return Err(io_err("measure", &at, e.into()));
            }
        };
        if entry.file_type().is_file() {
            match entry.metadata() {
                Ok(m) => total += m.len(),
                Err(e) if e.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => {}
                Err(e) => return Err(io_err("measure", entry.path(), e.into())),
            }
        }
    }
    Ok(total)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(super) fn io_err(op: &'static str, path: &Path, source: io::Error) -> CacheError {
    CacheError::Io { op, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests;
