//! `import`: a one-layer image from a root filesystem, like `docker import`.
//!
//! A directory is written as a layer directly. A tar archive (plain or compressed) is first
//! unpacked into a scratch directory inside the store through the safe `layer::apply` — so a
//! hostile archive is confined and rejected exactly as a hostile base layer would be — and then
//! written back as a normalised, deterministic layer.

use std::io::Read;
use std::path::Path;

use super::ImageError;
use super::resolve::{Image, load_image};
use crate::layer;
use crate::oci::{
    ContainerConfig, Descriptor, History, ImageConfig, ImageManifest, MediaType, Platform, Reference, RootFs,
    canonical, time,
};
use crate::progress::{MeteredReader, MeteredWriter, Reporter, Unit};
use crate::store::{Ingest, Store};

/// Options of `import`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Clamp layer mtimes and set `created` to this time (seconds since the epoch).
    pub source_date_epoch: Option<i64>,
    /// The platform written into the config.
    pub platform: Platform,
}

/// Where the root filesystem comes from.
pub enum ImportSource<'a> {
    Dir(&'a Path),
    /// A tar stream, plain or compressed (gzip, zstd), with a label for the history comment.
    Tar(Box<dyn Read>, String),
}

/// Imports a root filesystem as the image `name`; returns the new image.
pub fn import(
    store: &Store,
    source: ImportSource<'_>,
    name: &Reference,
    opts: &ImportOptions,
    progress: &Reporter,
) -> Result<Image, ImageError> {
    let lease = store.lease("import")?;
    let write_opts = layer::WriteOptions { source_date_epoch: opts.source_date_epoch };
    let (ingest, label) = match source {
        ImportSource::Dir(dir) => {
            let label = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
            (write_layer(store, dir, &write_opts, progress)?, label)
        }
        ImportSource::Tar(reader, label) => {
            let scratch = store.scratch_dir("import")?;
            let unpack = progress.start(|| format!("unpack {label}"));
            let counted = MeteredReader::new(reader, unpack.meter(None, Unit::Bytes));
            let applied = layer::decompress(Box::new(counted))
                .and_then(|plain| layer::apply(plain, scratch.path(), &layer::ApplyOptions::default()));
            unpack.finish(applied)?;
            (write_layer(store, scratch.path(), &write_opts, progress)?, label)
        }
    };
    let (digest, size) = ingest.commit(None, Some(&lease))?;
    let diff_id = crate::oci::DiffId(digest);
    let layer_descriptor = Descriptor::new(MediaType::OciLayer, digest, size);
    store.record_layer_blob(diff_id, &layer_descriptor)?;

    let created = time::rfc3339(super::timestamp(opts.source_date_epoch));
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: opts.platform.architecture.clone(),
        os: opts.platform.os.clone(),
        variant: opts.platform.variant.clone(),
        config: Some(ContainerConfig::default()),
        rootfs: RootFs { kind: "layers".to_string(), diff_ids: vec![diff_id] },
        history: vec![History {
            created: Some(created),
            comment: Some(format!("Imported from {label}")),
            ..Default::default()
        }],
        ..Default::default()
    };
    let config_bytes = canonical::to_bytes(&config);
    let config_digest = store.write_blob(&config_bytes, Some(&lease))?;
    let manifest = ImageManifest::oci(
        Descriptor::new(MediaType::OciConfig, config_digest, config_bytes.len() as u64),
        vec![layer_descriptor],
    );
    let manifest_bytes = canonical::to_bytes(&manifest);
    let manifest_digest = store.write_blob(&manifest_bytes, Some(&lease))?;
    let descriptor = Descriptor::new(MediaType::OciManifest, manifest_digest, manifest_bytes.len() as u64);
    store.set_tag(name, descriptor.clone())?;
    load_image(store, &descriptor, &opts.platform, vec![name.clone()])
}

/// Writes `dir` as a layer into a new ingest, reporting the layer's bytes as they are written.
fn write_layer(
    store: &Store,
    dir: &Path,
    opts: &layer::WriteOptions,
    progress: &Reporter,
) -> Result<Ingest, ImageError> {
    let task = progress.start(|| "write layer".to_string());
    let written = store.ingest().map_err(ImageError::from).and_then(|ingest| {
        let out = MeteredWriter::new(ingest, task.meter(None, Unit::Bytes));
        let (out, _, _) = layer::write_dir(dir, opts, out)?;
        Ok(out.into_inner())
    });
    task.finish(written)
}
