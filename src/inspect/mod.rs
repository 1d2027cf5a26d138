//! Understanding images: where an image comes from (`source`: the store, an OCI layout or
//! archive, a docker archive, a registry), what each layer holds (`listing`: every entry with the
//! digest of its content), the filesystem the layers make (`tree`, pure), and the three
//! questions `slipway history`, `slipway diff` and `slipway layers` ask of them.
//!
//! Reads only: it never tags, never unpacks into a snapshot, never writes outside the store's
//! blobs (a registry's manifests, config and the layers an answer needs, kept under a lease so a
//! second question does not download them again) and a scratch file for a compressed archive.
//! Never prints: `cli` renders its reports.

mod diff;
mod history;
mod listing;
mod source;
mod tree;
mod waste;

use std::path::PathBuf;

use crate::oci::{DiffId, Digest};

pub use diff::{Change, ChangeKind, DiffOptions, ImageDiff, LayerDiff, Pair, diff_images, diff_layers, layers_needed};
pub use history::{FileCounts, HistoryRow, history};
pub use listing::{FileEntry, FileKind, LayerListing, ListError, list_layer};
pub use source::{ImageArg, LayerInfo, OpenOptions, Opened, SourceKind, open};
pub use tree::{Node, PathChange, Tree};
pub use waste::{Duplicate, Leftover, WasteLayer, WasteReport, WastedFile, waste};

/// A path as `--path` gives it, cleaned as layer entries are (`/usr//lib/` → `usr/lib`).
pub fn clean_path(raw: &[u8]) -> Vec<u8> {
    listing::clean(raw)
}

/// Errors of the inspection commands; each names the image, layer, path or digest it concerns.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("invalid image argument {arg:?}: {reason}")]
    Argument { arg: String, reason: &'static str },
    #[error("image {name:?} is not in the store, and is not a registry reference")]
    NotFound { name: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON in {entry}")]
    Json {
        path: PathBuf,
        entry: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("{path}: not a readable tar archive")]
    Archive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name:?} is not an image in the store; reading it from registry {registry} failed")]
    Remote {
        name: String,
        registry: String,
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
    #[error("{path}: no image tagged {tag:?} (it has {available})")]
    NoTag { path: PathBuf, tag: String, available: String },
    #[error("{path}: it holds {count} images; name one ({available})")]
    Ambiguous { path: PathBuf, count: usize, available: String },
    #[error("blob {digest} of {source_name}: its content has digest {actual}")]
    BlobDigest { source_name: String, digest: Digest, actual: Digest },
    #[error("layer {index} of {source_name}: its content is {actual}, the config says {expected}")]
    DiffId { source_name: String, index: usize, expected: DiffId, actual: Digest },
    #[error("layer {index} ({diff_id}) of {source_name}")]
    Layer {
        source_name: String,
        index: usize,
        diff_id: DiffId,
        #[source]
        source: crate::layer::LayerError,
    },
    #[error("{name}: manifest lists {layers} layers, config lists {diff_ids} diff ids")]
    LayerCount { name: String, layers: usize, diff_ids: usize },
    #[error("--layer {index}: {name} has {count} layer(s), numbered from 0")]
    LayerIndex { name: String, index: usize, count: usize },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl InspectError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> InspectError {
        let path = path.into();
        move |source| InspectError::Io { path, source }
    }
}
