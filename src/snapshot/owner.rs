//! Which process owns an active snapshot, a view or a temporary directory of a snapshotter, and
//! the reclaim of what dead owners left (a build killed with kill -9: its step's snapshot, the
//! overlay still mounted on its mount point, a context copy for a bind mount).
//!
//! A process that makes any of these first holds `<dir>/owners/<token>` under an exclusive flock
//! for the rest of its life (the file descriptor is close-on-exec; the kernel drops the lock
//! when the process dies, whatever killed it). The token is `<pid>-<start time>` (field 22 of
//! `/proc/self/stat`), so a reused pid never names an older owner. Active snapshots and views
//! record their owner's token; temporary directories carry it in their name,
//! `<purpose>-<token>-<random>`. An owner is alive exactly while some process holds its file's
//! flock: the kernel answers, not a pid lookup, so a live process in another pid namespace is
//! never taken for dead. When a snapshotter is opened (`meta`), it unmounts and removes
//! dead owners' temporary directories, removes their active snapshots and views, and deletes
//! the owner files nobody holds. Knows nothing of builds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{FlockOperation, flock};

use super::SnapshotError;

/// The owner files' directory under a snapshotter's directory.
const OWNERS: &str = "owners";

/// This process's token: `<pid>-<start time in clock ticks since boot>`.
pub(super) fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let start = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| start_time(&s));
        // Without /proc a clock reading stands in: still unique enough to never collide.
        let start = start.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        format!("{}-{start}", std::process::id())
    })
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field 22 is the 20th from there.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Makes sure this process holds its owner file under `dir`; returns its token. The flock is
/// kept until the process ends.
pub(super) fn hold(dir: &Path) -> Result<&'static str, SnapshotError> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    let mut held = HELD.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if held.contains_key(dir) {
        return Ok(token());
    }
    let owners = dir.join(OWNERS);
    super::mkdir_private(&owners)?;
    let path = owners.join(token());
    // A reclaim may be removing a dead owner's file of the same name at this instant (it cannot
    // be ours: we hold nothing yet): lock, then check the name still leads to what we locked.
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| SnapshotError::io("create owner file", &path, e))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() && same_file(&file, &path) {
            held.insert(dir.to_path_buf(), file);
            return Ok(token());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(SnapshotError::io("lock owner file", &path, io::Error::from(io::ErrorKind::WouldBlock)))
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Answers "is this owner alive?" once per token.
#[derive(Debug)]
pub(super) struct Liveness {
    owners: PathBuf,
    known: HashMap<String, bool>,
}

impl Liveness {
    pub(super) fn new(dir: &Path) -> Liveness {
        Liveness { owners: dir.join(OWNERS), known: HashMap::new() }
    }

    /// Whether some process holds the owner file of `token`. A missing file is a dead owner
    /// (its file was reclaimed); a file that cannot be probed counts as alive.
    pub(super) fn is_alive(&mut self, token: &str) -> bool {
        if let Some(alive) = self.known.get(token) {
            return *alive;
        }
        let alive = match probe(&self.owners.join(token)) {
            Ok(Some(_free)) => false,
            Ok(None) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true,
        };
        self.known.insert(token.to_string(), alive);
        alive
    }

    /// Removes the owner files nobody holds (each while we hold its lock, see [`hold`]).
    pub(super) fn remove_dead_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.owners) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(Some(_locked)) = probe(&path) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::debug!(path = %path.display(), error = %e, "could not remove a dead owner's file");
                }
            }
        }
    }
}

/// Opens an owner file and tries its lock: `Some(file)` holding the lock when nobody else held
/// it, `None` when someone does.
fn probe(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW).open(path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The owner token in a temporary directory's name `<purpose>-<pid>-<start>-<random>`.
pub(super) fn temp_owner(name: &str) -> Option<&str> {
    let (purpose, rest) = name.split_once('-')?;
    if purpose.is_empty() || !purpose.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut parts = rest.splitn(3, '-');
    let (pid, start, random) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) || random.is_empty() {
        return None;
    }
    Some(&rest[..pid.len() + 1 + start.len()])
}

/// A temporary directory under the snapshotter's directory, named after `purpose` (lowercase
/// letters: `mnt`, `from`, `bind`, `run`) and owned by this process: removed on drop, and
/// (unmounted and) removed by the next open of the snapshotter if this process dies first.
pub fn temp_dir(dir: &Path, purpose: &str) -> Result<tempfile::TempDir, SnapshotError> {
    debug_assert!(!purpose.is_empty() && purpose.bytes().all(|b| b.is_ascii_lowercase()), "{purpose}");
    let token = hold(dir)?;
    tempfile::Builder::new()
        .prefix(&format!("{purpose}-{token}-"))
        .tempdir_in(dir)
        .map_err(|e| SnapshotError::io("create a temporary directory in", dir, e))
}

/// The mount points at or below `path` in this process's mount namespace, deepest first.
pub(super) fn mounts_below(path: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mp| mp.starts_with(&path))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let n = bytes[i + 1..i + 4].iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(n).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or below `path` (a dead owner's).
pub(super) fn unmount_below(path: &Path) {
    for mp in mounts_below(path) {
        match rustix::mount::unmount(&mp, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => tracing::info!(mount = %mp.display(), "unmounted what a dead process left mounted"),
            Err(e) => tracing::warn!(mount = %mp.display(), error = %e, "could not unmount what a dead process left"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_whatever_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time(stat), Some(987654));
        assert_eq!(start_time("1 (x) S 1"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(start_time(&own).is_some(), "{own}");
        assert!(token().starts_with(&format!("{}-", std::process::id())));
    }

    #[test]
    fn temp_names_carry_their_owner() {
        assert_eq!(temp_owner("mnt-12-345-Ab3xYz"), Some("12-345"));
        assert_eq!(temp_owner("from-1-2-x-y"), Some("1-2"));
        for name in ["mnt-Ab3xYz", "12", "trash-4", "mnt-12-345-", "Mnt-1-2-x", "-1-2-x", "mnt-1a-2-x", "owners"] {
            assert_eq!(temp_owner(name), None, "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        let t = temp_dir(dir.path(), "mnt").unwrap();
        let name = t.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(token()));
    }

    #[test]
    fn an_owner_is_alive_while_its_file_is_held() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hold(dir.path()).unwrap(), token());
        assert_eq!(hold(dir.path()).unwrap(), token(), "held once per directory");
        // A dead process's file: present, nobody holds it.
        std::fs::write(dir.path().join("owners/1-1"), b"").unwrap();
        let mut live = Liveness::new(dir.path());
        assert!(live.is_alive(token()));
        assert!(!live.is_alive("1-1"));
        assert!(!live.is_alive("2-2"), "a missing file is a dead owner");
        live.remove_dead_files();
        let left: Vec<_> =
            std::fs::read_dir(dir.path().join("owners")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(token())]);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape(r"/plain\04"), r"/plain\04");
    }
}
