//! What a layer holds: every entry with its metadata and the sha256 of its content, whiteouts and
//! opaque directories recognised, the layer's DiffID checked while it streams by.

use std::io::{self, Read};

use super::InspectError;
use crate::layer::reader::{ReadLimits, TarReader};
use crate::layer::{EntryKind, LayerError};
use crate::oci::{DiffId, Digest, Hasher, HashingReader};

/// Entries and bytes a listed layer may have (the limits `layer::apply` uses).
const LIMITS: ReadLimits = ReadLimits { max_bytes: 64 << 30, max_entries: 10_000_000 };

/// What an entry is, as `slipway diff` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One entry of a layer (or of the filesystem the layers make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Cleaned path without a leading or trailing `/` (raw bytes: names need not be UTF-8).
    pub path: Vec<u8>,
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content bytes (regular files; a hardlink has the size of what it links to once resolved).
    pub size: u64,
    /// sha256 of the content: regular files, and hardlinks whose target is in the same layer.
    pub digest: Option<Digest>,
    /// Symlink target, or the hardlink's target path (cleaned).
    pub link: Vec<u8>,
    /// Device numbers of a character or block device.
    pub device: (u32, u32),
}

/// Everything one layer says.
#[derive(Debug, Clone, Default)]
pub struct LayerListing {
    /// Entries in archive order (a path seen twice keeps its last entry, as `apply` does).
    pub entries: Vec<FileEntry>,
    /// Paths a `.wh.NAME` entry deletes from the layers below.
    pub whiteouts: Vec<Vec<u8>>,
    /// Directories a `.wh..wh..opq` entry empties of what the layers below put there.
    pub opaques: Vec<Vec<u8>>,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
}

impl LayerListing {
    /// The sum of the content sizes of its regular files (what `docker history` calls SIZE).
    pub fn content_bytes(&self) -> u64 {
        self.entries.iter().filter(|e| e.kind == FileKind::File).map(|e| e.size).sum()
    }
}

/// Lists an uncompressed layer stream, checking that its digest is `expected`.
pub fn list_layer(plain: impl Read, expected: DiffId) -> Result<LayerListing, ListError> {
    let mut hashing = HashingReader::new(plain);
    let mut listing = read_entries(&mut hashing)?;
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| ListError::Layer(LayerError::ReadStream { source }))?;
    let (_, actual, len) = hashing.finish();
    if actual != expected.digest() {
        return Err(ListError::DiffId { actual });
    }
    listing.tar_bytes = len;
    resolve_hardlinks(&mut listing.entries);
    Ok(listing)
}

/// Why a layer could not be listed; the caller adds which layer of which image.
#[derive(Debug)]
pub enum ListError {
    Layer(LayerError),
    DiffId { actual: Digest },
}

impl ListError {
    /// The error naming the layer.
    pub(crate) fn into_inspect(self, source_name: &str, index: usize, diff_id: DiffId) -> InspectError {
        match self {
            ListError::Layer(source) => {
                InspectError::Layer { source_name: source_name.to_string(), index, diff_id, source }
            }
            ListError::DiffId { actual } => {
                InspectError::DiffId { source_name: source_name.to_string(), index, expected: diff_id, actual }
            }
        }
    }
}

fn read_entries(stream: &mut impl Read) -> Result<LayerListing, ListError> {
    let mut reader = TarReader::new(stream, LIMITS);
    let mut listing = LayerListing::default();
    let mut seen: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    let mut buf = vec![0u8; 256 << 10];
    while let Some(entry) = reader.next_entry().map_err(ListError::Layer)? {
        let path = clean(&entry.path);
        if path.is_empty() {
            continue;
        }
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        if name == b".wh..wh..opq" {
            listing.opaques.push(parent.to_vec());
            continue;
        }
        if let Some(deleted) = name.strip_prefix(b".wh.") {
            if !deleted.starts_with(b".wh.") {
                listing.whiteouts.push(join(parent, deleted));
            }
            continue;
        }
        let digest = if entry.kind == EntryKind::Regular {
            let mut hasher = Hasher::new();
            loop {
                let n = reader.read_data(&mut buf).map_err(ListError::Layer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Some(hasher.finish())
        } else {
            None
        };
        let kind = match entry.kind {
            EntryKind::Regular => FileKind::File,
            EntryKind::Directory => FileKind::Dir,
            EntryKind::Symlink => FileKind::Symlink,
            EntryKind::Link => FileKind::Hardlink,
            EntryKind::CharDevice => FileKind::Char,
            EntryKind::BlockDevice => FileKind::Block,
            EntryKind::Fifo => FileKind::Fifo,
        };
        let link = match kind {
            FileKind::Hardlink => clean(&entry.link),
            FileKind::Symlink => entry.link.clone(),
            _ => Vec::new(),
        };
        let file = FileEntry {
            path: path.clone(),
            kind,
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            size: entry.size,
            digest,
            link,
            device: (entry.devmajor, entry.devminor),
        };
        match seen.get(&path) {
            Some(&i) => listing.entries[i] = file,
            None => {
                seen.insert(path, listing.entries.len());
                listing.entries.push(file);
            }
        }
    }
    Ok(listing)
}

/// Gives each hardlink the size and digest of the file it links to, when that is in the layer.
fn resolve_hardlinks(entries: &mut [FileEntry]) {
    let targets: std::collections::HashMap<Vec<u8>, (u64, Option<Digest>)> =
        entries.iter().filter(|e| e.kind == FileKind::File).map(|e| (e.path.clone(), (e.size, e.digest))).collect();
    for entry in entries.iter_mut().filter(|e| e.kind == FileKind::Hardlink) {
        if let Some((size, digest)) = targets.get(&entry.link) {
            entry.size = *size;
            entry.digest = *digest;
        }
    }
}

/// `./a//b/../c/` → `a/c`: lexical, `..` clamped at the root (as `layer::apply` reads paths).
pub(crate) fn clean(raw: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join(&b'/')
}

pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut out = parent.to_vec();
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            if path.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            } else {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn lists_entries_whiteouts_and_opaques_and_checks_the_diff_id() {
        let tar = tar_of(&[("a/", b""), ("a/f", b"hi"), ("a/.wh.g", b""), ("d/.wh..wh..opq", b""), ("./x", b"x")]);
        let diff_id = DiffId(Digest::of(&tar));
        let listing = list_layer(&tar[..], diff_id).unwrap();
        let paths: Vec<&[u8]> = listing.entries.iter().map(|e| &e.path[..]).collect();
        assert_eq!(paths, [&b"a"[..], b"a/f", b"x"]);
        assert_eq!(listing.entries[1].digest, Some(Digest::of(b"hi")));
        assert_eq!(listing.whiteouts, [b"a/g".to_vec()]);
        assert_eq!(listing.opaques, [b"d".to_vec()]);
        assert_eq!(listing.tar_bytes, tar.len() as u64);
        assert_eq!(listing.content_bytes(), 3);
        let wrong = DiffId(Digest::of(b"other"));
        assert!(matches!(list_layer(&tar[..], wrong), Err(ListError::DiffId { .. })));
    }

    #[test]
    fn cleans_paths() {
        assert_eq!(clean(b"./a//b/../c/"), b"a/c");
        assert_eq!(clean(b"../../etc"), b"etc");
        assert_eq!(clean(b"/"), b"");
    }
}
