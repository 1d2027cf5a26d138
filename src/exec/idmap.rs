//! Rootless id mapping: which ids a rootless sandbox has, and writing the full mapping with
//! the setuid helpers `newuidmap` / `newgidmap` (Debian package `uidmap`).
//!
//! Without them (or without a range for the caller in `/etc/subuid` and `/etc/subgid`) the
//! sandbox maps only the caller, as root: RUN as root works, `chown 1000` and `USER 1000` do
//! not. With them, root is the caller and ids 1..=N are the caller's subordinate range, as
//! rootless Podman and BuildKit do. Host side only; knows nothing of namespaces beyond the pid
//! it maps.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use super::ExecError;
use super::sys;

/// The caller's subordinate ids and the helpers that can map them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIds {
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
    /// (first host id, count) of the caller's ranges.
    pub uids: (u32, u32),
    pub gids: (u32, u32),
}

impl SubIds {
    /// How many ids the sandbox has: root plus the smaller range.
    pub fn mapped(&self) -> u32 {
        1 + self.uids.1.min(self.gids.1)
    }
}

/// The first range for `name` or `uid` in a `/etc/subuid`-format text.
fn range(text: &str, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse::<u32>().ok()?);
        let matches = Some(who) == name || who.parse() == Ok(uid);
        (matches && count > 0).then_some((start, count))
    })
}

/// The caller's name in the host's `/etc/passwd` (the host's own file: no NSS modules loaded).
fn host_user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// What the caller can map beyond itself, if anything.
pub fn probe(uid: u32) -> Option<SubIds> {
    probe_in(uid, Path::new("/etc/subuid"), Path::new("/etc/subgid"))
}

fn probe_in(uid: u32, subuid: &Path, subgid: &Path) -> Option<SubIds> {
    let name = host_user_name(uid);
    let uids = range(&std::fs::read_to_string(subuid).ok()?, name.as_deref(), uid)?;
    let gids = range(&std::fs::read_to_string(subgid).ok()?, name.as_deref(), uid)?;
    Some(SubIds { newuidmap: find_in_path("newuidmap")?, newgidmap: find_in_path("newgidmap")?, uids, gids })
}

/// The parent's half of the handshake with a child that unshared its user namespace
/// (`sys::prepare_helper_child`): reads the child's pid from `ready`, writes its maps with
/// the helpers, then writes one byte to `go` (dropping `go` unwritten makes the child fail).
pub fn map_child(ids: &SubIds, uid: u32, gid: u32, ready: OwnedFd, go: OwnedFd) -> io::Result<()> {
    let mut line = String::new();
    io::BufReader::new(std::fs::File::from(ready).take(32)).read_line(&mut line)?;
    let pid: u32 = line.trim().parse().map_err(|_| io::Error::other("the helper did not start"))?;
    let count = ids.mapped() - 1;
    for (helper, id, start) in [(&ids.newuidmap, uid, ids.uids.0), (&ids.newgidmap, gid, ids.gids.0)] {
        let out = Command::new(helper)
            .arg(pid.to_string())
            .args(["0", &id.to_string(), "1", "1", &start.to_string(), &count.to_string()])
            .output()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(io::Error::other(format!("{}: {err}", helper.display())));
        }
    }
    std::fs::File::from(go).write_all(b"1")
}

/// The user namespace a child about to be spawned enters (`sys::prepare_helper_child` or
/// `sys::prepare_userns_child`): the caller alone as root, or with `ids` its whole range, mapped
/// by a thread that answers the child's handshake ([`PendingMap::finish`] after the spawn).
pub fn user_namespace(ids: Option<&SubIds>) -> io::Result<(sys::UserNs, Option<PendingMap>)> {
    let Some(ids) = ids else { return Ok((sys::UserNs::single(), None)) };
    let (ready_r, ready_w) = sys::pipe()?;
    let (go_r, go_w) = sys::pipe()?;
    let userns = sys::UserNs::Helpers { ready: ready_w.as_raw_fd(), go: go_r.as_raw_fd() };
    let ids = ids.clone();
    let (uid, gid) = (sys::getuid(), sys::getgid());
    let thread = std::thread::spawn(move || map_child(&ids, uid, gid, ready_r, go_w));
    Ok((userns, Some(PendingMap { thread, ready_w, go_r })))
}

/// The mapping thread of a child being spawned, with the child's ends of its pipes.
pub struct PendingMap {
    thread: JoinHandle<io::Result<()>>,
    ready_w: OwnedFd,
    go_r: OwnedFd,
}

impl PendingMap {
    /// After the spawn: closes the child's ends (a child that never reached the handshake ends
    /// the thread too) and waits for the mapping. Its error matters only when the spawn failed
    /// (a child that was not mapped fails its handshake, which is the spawn error).
    pub fn finish(self, spawned: bool) -> Result<(), ExecError> {
        drop((self.ready_w, self.go_r));
        let mapped = self.thread.join().unwrap_or_else(|_| Err(io::Error::other("the id mapping thread panicked")));
        match (spawned, mapped) {
            (false, Err(source)) => Err(ExecError::IdMapping { source }),
            _ => Ok(()),
        }
    }
}

/// How many ids, from 0 up without a gap, this process' user namespace maps (uids and gids,
/// the smaller); `u32::MAX` in the initial namespace.
pub fn mapped_here() -> u32 {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    contiguous(&read("/proc/self/uid_map")).min(contiguous(&read("/proc/self/gid_map")))
}

/// The ids 0..N an `uid_map`-format text maps without a gap.
fn contiguous(map: &str) -> u32 {
    let lines: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            (f.len() == 3).then(|| (f[0], f[2]))
        })
        .collect();
    let mut next = 0u64;
    while let Some((_, n)) = lines.iter().find(|(inside, n)| *inside == next && *n > 0) {
        next += n;
    }
    next.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbad line\nzero:1:0\n";
        assert_eq!(range(text, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(range(text, Some("bob"), 1001), Some((200000, 1000)));
        assert_eq!(range(text, Some("zero"), 5), None, "an empty range maps nothing");
        assert_eq!(range(text, None, 7), None);
    }

    #[test]
    fn contiguous_ids_of_a_map() {
        assert_eq!(contiguous("         0          0 4294967295\n"), u32::MAX);
        assert_eq!(contiguous("0 1000 1\n"), 1);
        assert_eq!(contiguous("0 1000 1\n1 100000 65536\n"), 65537);
        assert_eq!(contiguous("1 100000 65536\n0 1000 1\n"), 65537, "lines in any order");
        assert_eq!(contiguous("0 1000 1\n2 100000 10\n"), 1, "a gap ends the run");
        assert_eq!(contiguous(""), 0);
    }

    #[test]
    fn no_files_no_mapping() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe_in(1000, &dir.path().join("subuid"), &dir.path().join("subgid")), None);
        std::fs::write(dir.path().join("subuid"), "1000:100000:65536\n").unwrap();
        assert_eq!(probe_in(1000, &dir.path().join("subuid"), &dir.path().join("subgid")), None);
    }
}
