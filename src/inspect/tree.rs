//! The filesystem a stack of layers makes, and what each layer (or another image) changes in it.
//! Pure: listings in, changes out.
//!
//! The OCI rules: a layer's whiteouts and opaque directories remove what the layers *below* put
//! there (never the layer's own entries); an entry replaces what was at its path, and a
//! non-directory replacing a directory takes the directory's contents with it; a missing parent
//! directory is created (0755, root). A hardlink is the file it links to: a regular file with
//! that file's content.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::listing::{FileEntry, FileKind, LayerListing};

/// A path in the tree: its entry and the layer that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub entry: FileEntry,
    pub layer: usize,
    /// The entry was a hardlink in its layer (it stores no bytes there).
    pub hardlink: bool,
}

/// What happened to one path: absent before (`old` none), absent after (`new` none), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    pub path: Vec<u8>,
    pub old: Option<Node>,
    pub new: Option<Node>,
}

impl PathChange {
    /// Whether the path's state differs (added, deleted, or another type, content, mode, owner,
    /// target or device).
    pub fn changed(&self) -> bool {
        match (&self.old, &self.new) {
            (Some(a), Some(b)) => !same_state(&a.entry, &b.entry),
            (None, None) => false,
            _ => true,
        }
    }
}

/// The merged filesystem of some layers, by path.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn get(&self, path: &[u8]) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Applies layer `index`, returning every path it touched with its old and new state, sorted
    /// by path; `PathChange::changed` tells the ones whose state differs (a path written again
    /// with the same type, content, mode, owner and target is touched, not changed).
    pub fn apply(&mut self, index: usize, layer: &LayerListing) -> Vec<PathChange> {
        let mut before: BTreeMap<Vec<u8>, Option<Node>> = BTreeMap::new();
        for dir in &layer.opaques {
            for (path, node) in self.take_below(dir) {
                before.entry(path).or_insert(Some(node));
            }
        }
        for path in &layer.whiteouts {
            for (path, node) in self.take_below(path) {
                before.entry(path).or_insert(Some(node));
            }
            if let Some(node) = self.nodes.remove(path) {
                before.entry(path.clone()).or_insert(Some(node));
            }
        }
        for entry in &layer.entries {
            self.make_parents(index, &entry.path, &mut before);
            let mut node = Node { entry: entry.clone(), layer: index, hardlink: entry.kind == FileKind::Hardlink };
            if node.hardlink {
                node.entry.kind = FileKind::File;
                if let Some(target) =
                    self.nodes.get(&entry.link).filter(|t| entry.digest.is_none() && t.entry.kind == FileKind::File)
                {
                    node.entry.size = target.entry.size;
                    node.entry.digest = target.entry.digest;
                }
            }
            if node.entry.kind != FileKind::Dir {
                for (path, old) in self.take_below(&entry.path) {
                    before.entry(path).or_insert(Some(old));
                }
            }
            let old = self.nodes.insert(entry.path.clone(), node);
            before.entry(entry.path.clone()).or_insert(old);
        }
        before
            .into_iter()
            .map(|(path, old)| {
                let new = self.nodes.get(&path).cloned();
                PathChange { path, old, new }
            })
            .filter(|c| c.old.is_some() || c.new.is_some())
            .collect()
    }

    /// Every path whose state differs between `self` (old) and `other` (new), sorted.
    pub fn compare(&self, other: &Tree) -> Vec<PathChange> {
        let mut out = Vec::new();
        let mut a = self.nodes.iter().peekable();
        let mut b = other.nodes.iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (path, node) = a.next().expect("peeked");
                    out.push(PathChange { path: path.clone(), old: Some(node.clone()), new: None });
                }
                std::cmp::Ordering::Greater => {
                    let (path, node) = b.next().expect("peeked");
                    out.push(PathChange { path: path.clone(), old: None, new: Some(node.clone()) });
                }
                std::cmp::Ordering::Equal => {
                    let (path, old) = a.next().expect("peeked");
                    let (_, new) = b.next().expect("peeked");
                    if !same_state(&old.entry, &new.entry) {
                        out.push(PathChange { path: path.clone(), old: Some(old.clone()), new: Some(new.clone()) });
                    }
                }
            }
        }
        out
    }

    /// Removes and returns everything strictly below `dir`.
    fn take_below(&mut self, dir: &[u8]) -> Vec<(Vec<u8>, Node)> {
        let (lo, hi) = below(dir);
        let keys: Vec<Vec<u8>> = self
            .nodes
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter().filter_map(|k| self.nodes.remove(&k).map(|n| (k, n))).collect()
    }

    /// Creates the missing parent directories of `path` as `apply` does (0755, root).
    fn make_parents(&mut self, index: usize, path: &[u8], before: &mut BTreeMap<Vec<u8>, Option<Node>>) {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|&b| b == b'/') {
            end += i;
            let parent = &path[..end];
            let is_dir = self.nodes.get(parent).map(|n| n.entry.kind == FileKind::Dir);
            if is_dir != Some(true) {
                if is_dir == Some(false) {
                    // A non-directory in the way: `apply` replaces it with a directory.
                    let old = self.nodes.remove(parent);
                    before.entry(parent.to_vec()).or_insert(old);
                } else {
                    before.entry(parent.to_vec()).or_insert(None);
                }
                let entry = FileEntry {
                    path: parent.to_vec(),
                    kind: FileKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    digest: None,
                    link: Vec::new(),
                    device: (0, 0),
                };
                self.nodes.insert(parent.to_vec(), Node { entry, layer: index, hardlink: false });
            }
            end += 1;
        }
    }
}

/// The key range of the paths strictly below `dir` (`dir/` up to `dir0`; the root: everything).
fn below(dir: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if dir.is_empty() {
        return (Vec::new(), vec![0xff; 4097]);
    }
    let mut lo = dir.to_vec();
    lo.push(b'/');
    let mut hi = dir.to_vec();
    hi.push(b'/' + 1);
    (lo, hi)
}

/// Whether two entries are the same file state: type, content, mode, owner, target, device
/// (never the modification time).
pub(crate) fn same_state(a: &FileEntry, b: &FileEntry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && match a.kind {
            FileKind::File | FileKind::Hardlink => a.size == b.size && a.digest == b.digest,
            FileKind::Symlink => a.link == b.link,
            FileKind::Char | FileKind::Block => a.device == b.device,
            FileKind::Dir | FileKind::Fifo => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn file(path: &str, content: &str) -> FileEntry {
        FileEntry {
            path: path.as_bytes().to_vec(),
            kind: FileKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            digest: Some(Digest::of(content.as_bytes())),
            link: Vec::new(),
            device: (0, 0),
        }
    }

    fn dir(path: &str) -> FileEntry {
        FileEntry { kind: FileKind::Dir, mode: 0o755, size: 0, digest: None, ..file(path, "") }
    }

    fn layer(entries: Vec<FileEntry>, whiteouts: &[&str], opaques: &[&str]) -> LayerListing {
        LayerListing {
            entries,
            whiteouts: whiteouts.iter().map(|w| w.as_bytes().to_vec()).collect(),
            opaques: opaques.iter().map(|w| w.as_bytes().to_vec()).collect(),
            tar_bytes: 0,
        }
    }

    fn summary(changes: &[PathChange]) -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.changed())
            .map(|c| {
                let k = match (&c.old, &c.new) {
                    (None, _) => "A",
                    (_, None) => "D",
                    _ => "C",
                };
                format!("{k} {}", String::from_utf8_lossy(&c.path))
            })
            .collect()
    }

    #[test]
    fn whiteouts_and_opaques_remove_only_what_is_below() {
        let mut t = Tree::new();
        let c0 = t
            .apply(0, &layer(vec![dir("d"), file("d/a", "1"), file("d/b", "2"), dir("e"), file("e/x", "x")], &[], &[]));
        assert_eq!(summary(&c0), ["A d", "A d/a", "A d/b", "A e", "A e/x"]);
        // Opaque d: a and b go, c is the layer's own; e is whited out whole.
        let c1 = t.apply(1, &layer(vec![dir("d"), file("d/c", "3")], &["e"], &["d"]));
        assert_eq!(summary(&c1), ["D d/a", "D d/b", "A d/c", "D e", "D e/x"]);
        // Same content written again is no change; a changed mode is.
        let mut m = file("d/c", "3");
        m.mode = 0o755;
        let c2 = t.apply(2, &layer(vec![dir("d"), m], &[], &[]));
        assert_eq!(summary(&c2), ["C d/c"]);
    }

    #[test]
    fn a_file_replacing_a_directory_takes_its_contents_and_parents_are_made() {
        let mut t = Tree::new();
        t.apply(0, &layer(vec![dir("d"), file("d/a", "1")], &[], &[]));
        let c = t.apply(1, &layer(vec![file("d", "now a file"), file("p/q/r", "r")], &[], &[]));
        assert_eq!(summary(&c), ["C d", "D d/a", "A p", "A p/q", "A p/q/r"]);
        assert_eq!(t.get(b"p/q").unwrap().entry.mode, 0o755);
    }

    #[test]
    fn a_hardlink_is_the_file_it_links_to() {
        let mut t = Tree::new();
        t.apply(0, &layer(vec![file("a", "same")], &[], &[]));
        let mut link = file("b", "");
        link.kind = FileKind::Hardlink;
        link.digest = None;
        link.size = 0;
        link.link = b"a".to_vec();
        t.apply(1, &layer(vec![link], &[], &[]));
        let b = t.get(b"b").unwrap();
        assert!(b.hardlink);
        assert_eq!(b.entry.digest, Some(Digest::of(b"same")));
        assert!(same_state(&b.entry, &file("b", "same")));
    }

    #[test]
    fn compare_finds_added_changed_and_deleted_paths() {
        let mut a = Tree::new();
        a.apply(0, &layer(vec![file("same", "s"), file("gone", "g"), file("changed", "1")], &[], &[]));
        let mut b = Tree::new();
        b.apply(0, &layer(vec![file("same", "s"), file("new", "n"), file("changed", "2")], &[], &[]));
        assert_eq!(summary(&a.compare(&b)), ["C changed", "D gone", "A new"]);
    }
}
