//! `slipway diff`: what each layer of one image changes in the filesystem below it, or what
//! differs between the filesystems of two images.
//!
//! Two images are compared by DiffID first: the layers both start with are the same bytes, so
//! only the layers after them are read. When those layers touch the same paths on both sides
//! (no whiteout, no opaque directory, no directory turned into something else, no hardlink into
//! a shared layer) the answer is complete without the shared layers; otherwise the shared
//! layers are read too, once, to know what lies under the differing ones.

use std::collections::BTreeMap;

use super::InspectError;
use super::listing::{FileKind, LayerListing};
use super::source::Opened;
use super::tree::{Node, PathChange, Tree};
use crate::oci::{DiffId, Digest};

/// A = added, C = changed, D = deleted (`docker diff`'s letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ChangeKind {
    A,
    C,
    D,
}

/// An old and a new value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pair<T> {
    pub old: T,
    pub new: T,
}

/// One changed path and, for `C`, what changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute path (`/etc/passwd`); a name that is not UTF-8 is shown lossily.
    pub path: String,
    /// The entry's type: the new one, or for `D` the old one.
    #[serde(rename = "type")]
    pub file_type: FileKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_change: Option<Pair<FileKind>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Pair<Option<Digest>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Pair<u64>>,
    /// Permission bits in octal, like `0755`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Pair<String>>,
    /// `uid:gid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Pair<String>>,
    /// A symbolic link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Pair<String>>,
}

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only paths at or below this one (cleaned, without the leading `/`).
    pub path: Option<Vec<u8>>,
    /// One image: only this layer (base layer 0).
    pub layer: Option<usize>,
}

/// One layer's changes against the layers below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerDiff {
    pub layer: usize,
    pub diff_id: DiffId,
    pub created_by: Option<String>,
    pub changes: Vec<Change>,
}

/// Two images' differences.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageDiff {
    /// Layers both images start with (same DiffIDs).
    pub shared_layers: usize,
    /// The layers that were read, of each image (base layer 0).
    pub read_a: Vec<usize>,
    pub read_b: Vec<usize>,
    pub changes: Vec<Change>,
}

/// Which layers of `image` `diff_layers` needs: all, or those up to `--layer`.
pub fn layers_needed(image: &Opened, opts: &DiffOptions) -> Result<Vec<usize>, InspectError> {
    let count = image.layers.len();
    match opts.layer {
        Some(index) if index >= count => Err(InspectError::LayerIndex { name: image.name.clone(), index, count }),
        Some(index) => Ok((0..=index).collect()),
        None => Ok((0..count).collect()),
    }
}

/// Each layer of `image` against the layers below it; `listings` are its first layers, base first.
pub fn diff_layers(image: &Opened, listings: &[LayerListing], opts: &DiffOptions) -> Vec<LayerDiff> {
    let created_by = layer_commands(image);
    let mut tree = Tree::new();
    let mut out = Vec::new();
    for (i, listing) in listings.iter().enumerate() {
        let changes = tree.apply(i, listing);
        if opts.layer.is_some_and(|l| l != i) {
            continue;
        }
        out.push(LayerDiff {
            layer: i,
            diff_id: image.layers[i].diff_id,
            created_by: created_by.get(i).cloned().flatten(),
            changes: shown(&changes, opts),
        });
    }
    out
}

/// The `created_by` of each layer's history entry, by layer.
fn layer_commands(image: &Opened) -> Vec<Option<String>> {
    image.config.history.iter().filter(|h| !h.empty_layer).map(|h| h.created_by.clone()).collect()
}

/// The filesystem differences from image `a` to image `b`.
pub fn diff_images(a: &Opened, b: &Opened, opts: &DiffOptions) -> Result<ImageDiff, InspectError> {
    let shared = a.layers.iter().zip(&b.layers).take_while(|(x, y)| x.diff_id == y.diff_id).count();
    let read_a: Vec<usize> = (shared..a.layers.len()).collect();
    let read_b: Vec<usize> = (shared..b.layers.len()).collect();
    let top_a: Vec<LayerListing> = a.list(&read_a)?.into_values().collect();
    let top_b: Vec<LayerListing> = b.list(&read_b)?.into_values().collect();
    if shared == 0 || tops_suffice(&top_a, &top_b) {
        let tree_a = stack(Tree::new(), shared, &top_a);
        let tree_b = stack(Tree::new(), shared, &top_b);
        let changes = shown(&tree_a.compare(&tree_b), opts);
        return Ok(ImageDiff { shared_layers: shared, read_a, read_b, changes });
    }
    let lower_indices: Vec<usize> = (0..shared).collect();
    let lower = stack(Tree::new(), 0, &a.list(&lower_indices)?.into_values().collect::<Vec<_>>());
    let tree_a = stack(lower.clone(), shared, &top_a);
    let tree_b = stack(lower, shared, &top_b);
    let changes = shown(&tree_a.compare(&tree_b), opts);
    // The shared layers were read from `a`: they are `b`'s too.
    Ok(ImageDiff { shared_layers: shared, read_a: (0..a.layers.len()).collect(), read_b, changes })
}

fn stack(mut tree: Tree, first: usize, listings: &[LayerListing]) -> Tree {
    for (i, listing) in listings.iter().enumerate() {
        tree.apply(first + i, listing);
    }
    tree
}

/// Whether the differing layers alone decide every difference: both sides touch the same
/// paths, delete nothing below them, never swap a directory for something else, and link to
/// nothing outside themselves.
fn tops_suffice(a: &[LayerListing], b: &[LayerListing]) -> bool {
    let touched = |side: &[LayerListing]| -> Option<BTreeMap<Vec<u8>, bool>> {
        let mut paths = BTreeMap::new();
        for listing in side {
            if !listing.whiteouts.is_empty() || !listing.opaques.is_empty() {
                return None;
            }
            for e in &listing.entries {
                if e.kind == FileKind::Hardlink && e.digest.is_none() {
                    return None;
                }
                let is_dir = e.kind == FileKind::Dir;
                if paths.insert(e.path.clone(), is_dir).is_some_and(|was| was != is_dir) {
                    return None;
                }
            }
        }
        Some(paths)
    };
    match (touched(a), touched(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The changes to show, as `Change`s.
fn shown(changes: &[PathChange], opts: &DiffOptions) -> Vec<Change> {
    changes.iter().filter(|c| c.changed() && under(&c.path, opts.path.as_deref())).map(describe).collect()
}

fn under(path: &[u8], prefix: Option<&[u8]>) -> bool {
    match prefix {
        None | Some(b"") => true,
        Some(p) => path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/')),
    }
}

fn pair<T>(old: T, new: T) -> Option<Pair<T>> {
    Some(Pair { old, new })
}

fn describe(c: &PathChange) -> Change {
    let path = format!("/{}", String::from_utf8_lossy(&c.path));
    let base = |kind, node: &Node| Change {
        kind,
        path: path.clone(),
        file_type: node.entry.kind,
        type_change: None,
        content: None,
        size: None,
        mode: None,
        owner: None,
        target: None,
    };
    match (&c.old, &c.new) {
        (None, Some(new)) => base(ChangeKind::A, new),
        (Some(old), None) => base(ChangeKind::D, old),
        (Some(old), Some(new)) => {
            let (o, n) = (&old.entry, &new.entry);
            let mut ch = base(ChangeKind::C, new);
            if o.kind != n.kind {
                ch.type_change = pair(o.kind, n.kind);
            }
            if o.kind == FileKind::File && n.kind == FileKind::File && o.digest != n.digest {
                ch.content = pair(o.digest, n.digest);
            }
            if o.size != n.size {
                ch.size = pair(o.size, n.size);
            }
            if o.mode != n.mode {
                ch.mode = pair(format!("{:04o}", o.mode), format!("{:04o}", n.mode));
            }
            if (o.uid, o.gid) != (n.uid, n.gid) {
                ch.owner = pair(format!("{}:{}", o.uid, o.gid), format!("{}:{}", n.uid, n.gid));
            }
            if (o.kind == FileKind::Symlink || n.kind == FileKind::Symlink) && o.link != n.link {
                ch.target =
                    pair(String::from_utf8_lossy(&o.link).into_owned(), String::from_utf8_lossy(&n.link).into_owned());
            }
            ch
        }
        (None, None) => unreachable!("a change has a state on one side at least"),
    }
}
