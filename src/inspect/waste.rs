//! `slipway layers`: where an image's bytes go — per layer, bytes a later layer overwrote or
//! deleted, identical content stored under several paths, and well-known leftovers (package
//! manager caches and lists, `__pycache__`, `/tmp`, `.git`), with an efficiency score.

use std::collections::BTreeMap;

use super::listing::{FileKind, LayerListing};
use super::source::Opened;
use super::tree::{Node, Tree};
use crate::oci::{DiffId, Digest};

/// How many example paths a duplicate group or leftover category lists.
const EXAMPLES: usize = 5;

/// One layer's share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WasteLayer {
    pub layer: usize,
    pub diff_id: DiffId,
    pub created_by: Option<String>,
    /// Bytes of the regular files the layer stores, and how many entries it has.
    pub size: u64,
    pub entries: u64,
    /// Of `size`, the bytes a later layer overwrote or deleted.
    pub wasted: u64,
}

/// A file whose bytes a later layer made unreachable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WastedFile {
    pub path: String,
    pub layer: usize,
    pub size: u64,
    /// The layer that overwrote or deleted it.
    pub by_layer: usize,
    pub deleted: bool,
}

/// Identical content stored at several paths of the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Duplicate {
    pub digest: Digest,
    pub size: u64,
    /// Each copy: path and the layer that stored it.
    pub copies: Vec<(String, usize)>,
    /// `size` × (copies − 1).
    pub wasted: u64,
}

/// Files of one well-known kind of leftover in the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leftover {
    pub kind: &'static str,
    pub files: u64,
    pub bytes: u64,
    pub examples: Vec<String>,
}

/// The whole analysis.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WasteReport {
    pub layers: Vec<WasteLayer>,
    /// Bytes of regular files over all layers (what the layers store).
    pub total_bytes: u64,
    /// Bytes overwritten or deleted by a later layer.
    pub overwritten_bytes: u64,
    /// Bytes of the second and further copies of identical content.
    pub duplicate_bytes: u64,
    /// `overwritten_bytes` + `duplicate_bytes`.
    pub wasted_bytes: u64,
    /// 100 × (1 − wasted / total), 100 for an image without file bytes.
    pub efficiency: f64,
    /// Largest first.
    pub wasted_files: Vec<WastedFile>,
    pub duplicates: Vec<Duplicate>,
    /// Reported apart: not counted as wasted (the image may need them).
    pub leftovers: Vec<Leftover>,
}

/// Analyses `image` from its layers' listings (base first).
pub fn waste(image: &Opened, listings: &[LayerListing]) -> WasteReport {
    let commands: Vec<Option<String>> =
        image.config.history.iter().filter(|h| !h.empty_layer).map(|h| h.created_by.clone()).collect();
    let mut tree = Tree::new();
    let mut layers: Vec<WasteLayer> = Vec::new();
    let mut wasted_files = Vec::new();
    for (i, listing) in listings.iter().enumerate() {
        layers.push(WasteLayer {
            layer: i,
            diff_id: image.layers[i].diff_id,
            created_by: commands.get(i).cloned().flatten(),
            size: stored(listing),
            entries: listing.entries.len() as u64,
            wasted: 0,
        });
        for change in tree.apply(i, listing) {
            let Some(old) = change.old.filter(|o| o.layer < i && stores_bytes(o)) else { continue };
            layers[old.layer].wasted += old.entry.size;
            wasted_files.push(WastedFile {
                path: shown(&change.path),
                layer: old.layer,
                size: old.entry.size,
                by_layer: i,
                deleted: change.new.is_none(),
            });
        }
    }
    wasted_files.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let duplicates = duplicates(&tree);
    let total_bytes: u64 = layers.iter().map(|l| l.size).sum();
    let overwritten_bytes: u64 = layers.iter().map(|l| l.wasted).sum();
    let duplicate_bytes: u64 = duplicates.iter().map(|d| d.wasted).sum();
    let wasted_bytes = overwritten_bytes + duplicate_bytes;
    let efficiency = if total_bytes == 0 { 100.0 } else { 100.0 * (1.0 - wasted_bytes as f64 / total_bytes as f64) };
    WasteReport {
        layers,
        total_bytes,
        overwritten_bytes,
        duplicate_bytes,
        wasted_bytes,
        efficiency,
        wasted_files,
        duplicates,
        leftovers: leftovers(&tree),
    }
}

/// Bytes a layer stores: its regular files (a hardlink stores none).
fn stored(listing: &LayerListing) -> u64 {
    listing.entries.iter().filter(|e| e.kind == FileKind::File).map(|e| e.size).sum()
}

fn stores_bytes(node: &Node) -> bool {
    node.entry.kind == FileKind::File && !node.hardlink && node.entry.size > 0
}

fn shown(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

/// Groups of two or more files of the final filesystem with the same content, largest waste first.
fn duplicates(tree: &Tree) -> Vec<Duplicate> {
    let mut groups: BTreeMap<Digest, Vec<&Node>> = BTreeMap::new();
    for node in tree.iter().filter(|n| stores_bytes(n)) {
        if let Some(digest) = node.entry.digest {
            groups.entry(digest).or_default().push(node);
        }
    }
    let mut out: Vec<Duplicate> = groups
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(digest, nodes)| {
            let size = nodes[0].entry.size;
            Duplicate {
                digest,
                size,
                wasted: size * (nodes.len() as u64 - 1),
                copies: nodes.iter().map(|n| (shown(&n.entry.path), n.layer)).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.wasted.cmp(&a.wasted).then_with(|| a.digest.cmp(&b.digest)));
    out
}

/// The kind of leftover a path is, if any.
fn leftover_kind(path: &[u8]) -> Option<&'static str> {
    const PREFIXES: [(&str, &str); 8] = [
        ("var/lib/apt/lists/", "apt package lists"),
        ("var/cache/apt/", "apt cache"),
        ("var/cache/apk/", "apk cache"),
        ("var/cache/yum/", "yum cache"),
        ("var/cache/dnf/", "dnf cache"),
        ("root/.cache/pip/", "pip cache"),
        ("tmp/", "/tmp"),
        ("var/tmp/", "/tmp"),
    ];
    let text = String::from_utf8_lossy(path);
    if let Some((_, kind)) = PREFIXES.iter().find(|(p, _)| text.starts_with(p)) {
        return Some(kind);
    }
    let parts: Vec<&str> = text.split('/').collect();
    let dirs = &parts[..parts.len().saturating_sub(1)];
    if dirs.contains(&"__pycache__") {
        Some("python bytecode (__pycache__)")
    } else if dirs.contains(&".git") {
        Some("git metadata (.git)")
    } else if dirs.windows(2).any(|w| w == [".cache", "pip"]) {
        Some("pip cache")
    } else if dirs.windows(2).any(|w| w == [".npm", "_cacache"]) {
        Some("npm cache")
    } else {
        None
    }
}

fn leftovers(tree: &Tree) -> Vec<Leftover> {
    let mut kinds: BTreeMap<&'static str, Leftover> = BTreeMap::new();
    for node in tree.iter().filter(|n| n.entry.kind == FileKind::File) {
        let Some(kind) = leftover_kind(&node.entry.path) else { continue };
        let entry = kinds.entry(kind).or_insert_with(|| Leftover { kind, files: 0, bytes: 0, examples: Vec::new() });
        entry.files += 1;
        entry.bytes += if node.hardlink { 0 } else { node.entry.size };
        if entry.examples.len() < EXAMPLES {
            entry.examples.push(shown(&node.entry.path));
        }
    }
    let mut out: Vec<Leftover> = kinds.into_values().collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.kind.cmp(b.kind)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_usual_leftovers() {
        assert_eq!(leftover_kind(b"var/lib/apt/lists/deb.debian.org_dists"), Some("apt package lists"));
        assert_eq!(leftover_kind(b"usr/lib/python3/x/__pycache__/a.pyc"), Some("python bytecode (__pycache__)"));
        assert_eq!(leftover_kind(b"src/app/.git/objects/ab/cd"), Some("git metadata (.git)"));
        assert_eq!(leftover_kind(b"home/u/.cache/pip/http/x"), Some("pip cache"));
        assert_eq!(leftover_kind(b"tmp/build.log"), Some("/tmp"));
        assert_eq!(leftover_kind(b"usr/bin/git"), None);
        assert_eq!(leftover_kind(b"app/.gitignore"), None);
    }
}
