//! Image-level operations over the store: resolving names and ids, reading manifests and
//! configs, and moving images in and out (`import`, `save`, `load`).
//!
//! Works through `store`'s blob and tag API and `layer`'s stream functions; knows nothing of
//! Dockerfiles or the registry, and of snapshots only in `unpack` (an image's layers as
//! committed snapshots). Never prints: commands in `cli` render its results.

mod archive;
mod import;
mod load;
mod resolve;
mod rewrite;
mod rootfs;
mod save;
mod unpack;

use std::path::PathBuf;

use crate::oci::{DiffId, Digest, MediaType, Reference};

pub use import::{ImportOptions, ImportSource, import};
pub use load::{LayoutSelector, LoadInput, LoadReport, LoadedImage, load, load_layout_image};
pub(crate) use resolve::UNTAGGED_ROOT;
pub use resolve::{Image, ImageSummary, list, load_image, resolve, resolve_for, root_platforms};
pub use rewrite::{Rewritten, TimestampRewrite};
pub use rootfs::{write_rootfs_dir, write_rootfs_tar};
pub use save::{
    CopyLayers, Distributable, IndexToSave, LayerCopy, LayerOptions, SaveFormat, SaveOptions, SaveTarget,
    distributable, distributable_copied, distributable_with, save, save_images, save_index,
};
pub use unpack::{
    LAYER_SNAPSHOT_PREFIX, SnapshotPruneReport, Unpacked, chain_ids, layer_snapshot_name, layer_snapshot_names,
    prune_snapshots, unpack, unpack_layers,
};

/// Largest manifest, index or config slipway reads (they are JSON documents, not data).
pub const MAX_JSON_BLOB: u64 = 16 << 20;

/// Errors of image operations; each names the image, digest or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name:?} not found")]
    NotFound { name: String },
    #[error("image id prefix {prefix:?} is ambiguous: it matches {count} images")]
    Ambiguous { prefix: String, count: usize },
    #[error("manifest {digest} has unsupported media type {media_type}")]
    UnsupportedMediaType { digest: Digest, media_type: MediaType },
    #[error("index {digest} has no manifest for platform {platform}")]
    NoPlatform { digest: Digest, platform: String },
    #[error("{name} in the store is a {has} image, not {wanted}")]
    WrongPlatform { name: String, has: String, wanted: String },
    #[error("invalid {what} {digest}")]
    Decode {
        what: &'static str,
        digest: Digest,
        #[source]
        source: crate::oci::canonical::DecodeError,
    },
    #[error("layer {index} of image {config}: digest mismatch (config says {expected}, layer content is {actual})")]
    DiffIdMismatch { config: Digest, index: usize, expected: DiffId, actual: DiffId },
    #[error("image {config}: a layer of media type {media_type} has no Docker media type (oci-mediatypes=false)")]
    DockerMediaType { config: Digest, media_type: MediaType },
    #[error("image {config} has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCount { config: Digest, layers: usize, diff_ids: usize },
    #[error("archive entry {entry:?}: {reason}")]
    Archive { entry: String, reason: String },
    #[error("archive entry {entry:?}: invalid JSON")]
    ArchiveJson {
        entry: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive entry {entry:?}: not named by a digest")]
    ArchiveDigest {
        entry: String,
        #[source]
        source: crate::oci::DigestError,
    },
    #[error("archive has no image (no index.json or manifest.json)")]
    EmptyArchive,
    #[error("archive references {path:?}, which it does not contain")]
    MissingEntry { path: String },
    #[error("invalid image name {name:?}")]
    Name {
        name: String,
        #[source]
        source: crate::oci::ReferenceError,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    #[error("layer snapshot {name} {reason}")]
    LayerSnapshot { name: String, reason: String },
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

/// Parses a user-given image name.
pub fn parse_name(name: &str) -> Result<Reference, ImageError> {
    Reference::parse(name).map_err(|source| ImageError::Name { name: name.to_string(), source })
}

/// Seconds since the epoch for `created` fields: `SOURCE_DATE_EPOCH` when given, else now.
pub fn timestamp(source_date_epoch: Option<i64>) -> i64 {
    source_date_epoch.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    })
}
