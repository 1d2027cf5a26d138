//! One walk of the store root, every byte put in exactly one place.
//!
//! The unit is what `du` counts: allocated bytes, `st_blocks * 512`, of every entry
//! (directories too), each inode once (a hardlinked file counts where the walk meets it
//! first), never following a symlink and never crossing into another filesystem (a snapshot
//! a running step has mounted is not counted twice).

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use super::DiskError;
use crate::oci::Digest;

/// Where the walk put the root's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Measured {
    /// Every byte under the root.
    pub total: u64,
    /// `blobs/sha256/<hex>` files, by digest.
    pub blobs: BTreeMap<Digest, u64>,
    /// `cache/` outside `cache/mounts/`: the step records and the context stat cache.
    pub cache_dbs: u64,
    /// `cache/mounts/<hex>/…`, by directory name.
    pub mounts: BTreeMap<String, u64>,
    /// The rest of `cache/mounts/` (the directory itself, its lock).
    pub mounts_other: u64,
    /// `logs/<id>/…`, by build id.
    pub logs: BTreeMap<String, u64>,
    /// The rest of `logs/` (the directory itself, its lock).
    pub logs_other: u64,
    /// `snapshots/<kind>/…`, by kind directory.
    pub snapshot_kinds: BTreeMap<String, u64>,
    /// The rest of `snapshots/` (the directory itself, probe residue).
    pub snapshots_other: u64,
    /// Everything else: `index.json`, `oci-layout`, `metadata.db`, locks, `ingest/`,
    /// `quarantine/`, the directories `blobs/` and `blobs/sha256/`, anything unknown.
    pub other: u64,
}

impl Measured {
    /// Bytes of `snapshots/`.
    pub fn snapshots(&self) -> u64 {
        self.snapshots_other + self.snapshot_kinds.values().sum::<u64>()
    }

    /// Bytes of `cache/mounts/`.
    pub fn cache_mounts(&self) -> u64 {
        self.mounts_other + self.mounts.values().sum::<u64>()
    }

    /// Bytes of `logs/`.
    pub fn logs_total(&self) -> u64 {
        self.logs_other + self.logs.values().sum::<u64>()
    }
}

/// Walks `root`.
pub(super) fn measure(root: &Path) -> Result<Measured, DiskError> {
    let mut out = Measured::default();
    let mut seen = HashSet::new();
    let walk = walkdir::WalkDir::new(root).follow_links(false).same_file_system(true).sort_by_file_name();
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if vanished(e.io_error()) => continue,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                return Err(DiskError::Io { action: "walk", path, source: e.into() });
            }
        };
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if vanished(e.io_error()) => continue,
            Err(e) => return Err(DiskError::Io { action: "stat", path: entry.path().to_path_buf(), source: e.into() }),
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        let bytes = md.blocks() * 512;
        out.total += bytes;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let parts: Vec<&str> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        place(&mut out, &parts, md.is_file(), bytes);
    }
    Ok(out)
}

/// Puts one entry's bytes where its path says.
fn place(out: &mut Measured, parts: &[&str], is_file: bool, bytes: u64) {
    match parts {
        ["blobs", "sha256", hex] if is_file => match Digest::from_hex(hex) {
            Ok(digest) => *out.blobs.entry(digest).or_default() += bytes,
            Err(_) => out.other += bytes,
        },
        ["cache", "mounts", dir, ..] if is_hex(dir) => *out.mounts.entry((*dir).to_string()).or_default() += bytes,
        ["cache", "mounts", ..] => out.mounts_other += bytes,
        ["cache", ..] => out.cache_dbs += bytes,
        ["logs", id, rest @ ..] if !id.starts_with('.') && (!rest.is_empty() || !is_file) => {
            *out.logs.entry((*id).to_string()).or_default() += bytes;
        }
        ["logs", ..] => out.logs_other += bytes,
        ["snapshots", kind, ..] if KINDS.contains(kind) => {
            *out.snapshot_kinds.entry((*kind).to_string()).or_default() += bytes;
        }
        ["snapshots", ..] => out.snapshots_other += bytes,
        _ => out.other += bytes,
    }
}

/// The snapshotter directories under `snapshots/` (`snapshot::open` names them).
const KINDS: [&str; 3] = ["overlay", "overlay-userxattr", "copy"];

/// A cache mount id's directory name: 64 lowercase hex digits.
fn is_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Removed while the walk ran (a build finishing, a temp file renamed): counts as nothing.
fn vanished(e: Option<&io::Error>) -> bool {
    e.is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn du(root: &Path) -> u64 {
        let out = std::process::Command::new("du").args(["-s", "-B1", "-x"]).arg(root).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn every_byte_once_in_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let digest = Digest::of(b"blob");
        for d in ["blobs/sha256", "cache/mounts", "logs/1-2-3", "snapshots/overlay/1/fs", "ingest"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let mount = "a".repeat(64);
        fs::create_dir_all(root.join("cache/mounts").join(&mount).join("0")).unwrap();
        fs::write(root.join("blobs/sha256").join(digest.hex()), vec![1u8; 10_000]).unwrap();
        fs::write(root.join("cache/cache.db"), vec![1u8; 5000]).unwrap();
        fs::write(root.join("cache/mounts").join(&mount).join("0/f"), vec![1u8; 7000]).unwrap();
        fs::write(root.join("logs/1-2-3/record.json"), b"{}").unwrap();
        fs::write(root.join("logs/.lock"), b"").unwrap();
        fs::write(root.join("snapshots/overlay/1/fs/big"), vec![1u8; 20_000]).unwrap();
        fs::hard_link(root.join("snapshots/overlay/1/fs/big"), root.join("snapshots/overlay/1/fs/again")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("snapshots/overlay/1/fs/usr")).unwrap();
        fs::write(root.join("index.json"), b"{}").unwrap();
        let m = measure(root).unwrap();
        assert_eq!(m.total, du(root), "{m:?}");
        let placed =
            m.blobs.values().sum::<u64>() + m.cache_dbs + m.cache_mounts() + m.logs_total() + m.snapshots() + m.other;
        assert_eq!(placed, m.total);
        assert!(m.blobs[&digest] >= 10_000);
        assert!(m.cache_dbs >= 5000);
        assert!(m.mounts[&mount] >= 7000);
        assert!(m.logs.contains_key("1-2-3") && !m.logs.contains_key(".lock"));
        let overlay = m.snapshot_kinds["overlay"];
        assert!((20_000..40_000).contains(&overlay), "the hardlink counts once: {overlay}");
    }
}
