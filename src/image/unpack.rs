//! Unpacking an image into committed snapshots: one per layer, named by its chain id.
//!
//! The one bridge between images and snapshots. Layer `i` of an image becomes the committed
//! snapshot `layer:<chain id of layers 0..=i>` (the OCI chain id: `DiffID(L0)`, then
//! `sha256(chain(L0..Li-1) + " " + DiffID(Li))`), whose parent is layer `i - 1`'s. Two images
//! sharing a base share its snapshots, and a snapshot already there is reused, never
//! extracted again. Each layer is checked against the config's diff id after extraction; a
//! mismatching one is removed again.

use super::{Image, ImageError};
use crate::layer::ApplyOptions;
use crate::oci::{Descriptor, DiffId, Digest};
use crate::snapshot::{Kind, SnapshotError, Snapshotter};
use crate::store::Store;

/// Prefix of the names of the committed snapshots [`unpack`] creates.
pub const LAYER_SNAPSHOT_PREFIX: &str = "layer:";

/// What [`unpack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Name of the committed snapshot holding the whole image (`None` for an image without
    /// layers): the parent to prepare a rootfs on.
    pub top: Option<String>,
    /// Layers extracted by this call.
    pub extracted: usize,
    /// Layers whose snapshot was already there.
    pub reused: usize,
}

/// The OCI chain ids of `diff_ids`: element `i` identifies layers `0..=i` stacked.
pub fn chain_ids(diff_ids: &[DiffId]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.digest(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// Name of the committed snapshot holding the layers whose chain id is `chain_id`.
pub fn layer_snapshot_name(chain_id: &Digest) -> String {
    format!("{LAYER_SNAPSHOT_PREFIX}{chain_id}")
}

/// Makes sure every layer of `image` is a committed snapshot in `sn`, extracting the missing
/// ones from the store's blobs (any compression `layer::decompress` reads).
pub fn unpack(store: &Store, sn: &dyn Snapshotter, image: &Image) -> Result<Unpacked, ImageError> {
    unpack_layers(store, sn, &image.id(), &image.config.rootfs.diff_ids, &image.manifest.layers)
}

/// [`unpack`] for a layer list that is not (yet) an image — a build's stage in progress.
/// `config` names the image (or build state) in errors.
pub fn unpack_layers(
    store: &Store,
    sn: &dyn Snapshotter,
    config: &Digest,
    diff_ids: &[DiffId],
    layers: &[Descriptor],
) -> Result<Unpacked, ImageError> {
    if diff_ids.len() != layers.len() {
        return Err(ImageError::LayerCount { config: *config, layers: layers.len(), diff_ids: diff_ids.len() });
    }
    let mut unpacked = Unpacked { top: None, extracted: 0, reused: 0 };
    for (index, (chain_id, (diff_id, layer))) in chain_ids(diff_ids).iter().zip(diff_ids.iter().zip(layers)).enumerate()
    {
        let name = layer_snapshot_name(chain_id);
        let parent = unpacked.top.as_deref();
        match sn.stat(&name) {
            Ok(info) if info.kind == Kind::Committed && info.parent.as_deref() == parent => {
                unpacked.reused += 1;
            }
            Ok(info) => {
                let reason =
                    format!("is {} with parent {:?}, expected committed on {parent:?}", info.kind, info.parent);
                return Err(ImageError::LayerSnapshot { name, reason });
            }
            Err(SnapshotError::NotFound { .. }) => {
                let blob = store.open_blob(&layer.digest)?;
                let reader = crate::layer::decompress(blob)?;
                match crate::snapshot::apply_layer(sn, &name, parent, reader, &ApplyOptions::default()) {
                    Ok(info) => {
                        let actual = info.diff_id.unwrap_or(DiffId(Digest::from_bytes([0; 32])));
                        if actual != *diff_id {
                            if let Err(e) = sn.remove(&name) {
                                tracing::warn!(name, error = %e, "failed to remove a mismatching layer snapshot");
                            }
                            return Err(ImageError::DiffIdMismatch {
                                config: *config,
                                index,
                                expected: *diff_id,
                                actual,
                            });
                        }
                        unpacked.extracted += 1;
                    }
                    // Another process extracted it meanwhile: the name only exists once committed.
                    Err(SnapshotError::AlreadyExists { .. }) => unpacked.reused += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        unpacked.top = Some(name);
    }
    Ok(unpacked)
}

/// What [`prune_snapshots`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPruneReport {
    /// Names of the layer snapshots removed.
    pub removed: Vec<String>,
    /// Layer snapshots kept: an image uses them, they are younger than the minimum age, or a
    /// snapshot in use (an active step, a view) sits on them.
    pub kept: usize,
}

/// Removes the committed layer snapshots (`layer:<chain id>`) that no image in the store uses
/// and that were made more than `min_age` ago, children before parents. Their layers stay in
/// the store (blobs are `Store::prune`'s business), so a later build or run extracts them again
/// when it needs them. The age keeps what a running build has just made; a snapshot something
/// still sits on (an active step, a view) is never removed.
pub fn prune_snapshots(
    store: &Store,
    sn: &dyn Snapshotter,
    min_age: std::time::Duration,
) -> Result<SnapshotPruneReport, ImageError> {
    let mut live = std::collections::BTreeSet::new();
    for (_, root) in super::resolve::roots(store)? {
        match chains_of(store, &root) {
            Ok(names) => live.extend(names),
            // Not an image (an artifact, a config of another kind): nothing of it was unpacked.
            Err(ImageError::Decode { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let cutoff = now.saturating_sub(min_age.as_secs() as i64);
    let all = sn.list()?;
    let mut candidates: Vec<String> = all
        .iter()
        .filter(|i| i.kind == Kind::Committed && i.key.starts_with(LAYER_SNAPSHOT_PREFIX))
        .filter(|i| !live.contains(&i.key) && i.created <= cutoff)
        .map(|i| i.key.clone())
        .collect();
    let layer_snapshots = all.iter().filter(|i| i.key.starts_with(LAYER_SNAPSHOT_PREFIX)).count();
    let mut report = SnapshotPruneReport::default();
    // Leaves first: a pass removes what has no children now, until a pass removes nothing.
    loop {
        let before = report.removed.len();
        let mut left = Vec::new();
        for key in candidates {
            match sn.remove(&key) {
                Ok(()) => report.removed.push(key),
                Err(SnapshotError::HasChildren { .. }) => left.push(key),
                Err(SnapshotError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        candidates = left;
        if candidates.is_empty() || report.removed.len() == before {
            break;
        }
    }
    report.kept = layer_snapshots - report.removed.len();
    Ok(report)
}

/// The layer snapshot names of every image `root` (a manifest or an index) holds, as
/// [`unpack`] names them; empty for a root that is no image (an artifact, a config of another
/// kind).
pub fn layer_snapshot_names(store: &Store, root: &Digest) -> Result<Vec<String>, ImageError> {
    let bytes = store.read_blob(root, super::MAX_JSON_BLOB)?;
    let Ok(versioned) = crate::oci::canonical::from_bytes::<crate::oci::Versioned>("manifest", &bytes) else {
        return Ok(Vec::new());
    };
    let media_type = versioned.media_type.unwrap_or(if versioned.manifests.is_some() {
        crate::oci::MediaType::OciIndex
    } else {
        crate::oci::MediaType::OciManifest
    });
    match chains_of(store, &Descriptor::new(media_type, *root, bytes.len() as u64)) {
        Err(ImageError::Decode { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// The layer snapshot names of every image `root` holds (one, or each of an index's).
fn chains_of(store: &Store, root: &Descriptor) -> Result<Vec<String>, ImageError> {
    let mut manifests = Vec::new();
    if root.media_type.is_index() {
        let index: crate::oci::ImageIndex = super::resolve::read_json(store, "index", &root.digest)?;
        manifests.extend(index.manifests.into_iter().filter(|m| m.media_type.is_manifest()));
    } else {
        manifests.push(root.clone());
    }
    let mut names = Vec::new();
    for m in manifests {
        let manifest: crate::oci::ImageManifest = super::resolve::read_json(store, "manifest", &m.digest)?;
        let config: crate::oci::ImageConfig = super::resolve::read_json(store, "config", &manifest.config.digest)?;
        names.extend(chain_ids(&config.rootfs.diff_ids).iter().map(layer_snapshot_name));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = DiffId(Digest::of(b"a"));
        let b = DiffId(Digest::of(b"b"));
        let chain = chain_ids(&[a, b]);
        assert_eq!(chain[0], a.digest());
        assert_eq!(chain[1], Digest::of(format!("{} {}", a, b).as_bytes()));
        assert_eq!(layer_snapshot_name(&chain[0]), format!("layer:{a}"));
        assert!(chain_ids(&[]).is_empty());
    }
}
