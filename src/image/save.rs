//! `save`: images out of the store as an OCI directory, an OCI archive or a docker archive.
//!
//! OCI formats carry each layer compressed as asked (gzip by default); a compressed blob is made
//! once, kept in the store and reused. `docker-archive` writes the layout `docker save` writes
//! since Docker 25 — an OCI layout plus `manifest.json` — with uncompressed layers, which every
//! version of `docker load` and `skopeo` reads.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::ImageError;
use super::archive::{DirSink, LayoutSink, TarSink, blob_path};
use super::resolve::{Image, resolve};
use crate::layer::{self, Compression};
use crate::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, DiffId, DockerManifestEntry, ImageIndex, ImageManifest,
    LayerCompression, MediaType, OciLayout, Reference, canonical,
};
use crate::progress::{MeteredReader, Reporter, Task, Unit};
use crate::store::{Ingest, Lease, Store};

/// Output formats of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    OciDir,
    OciArchive,
    DockerArchive,
}

/// Options of `save`.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub format: SaveFormat,
    /// Layer compression of the OCI formats (docker archives are always uncompressed).
    pub compression: LayerCompression,
    /// Level, forced compression and media types of the layers written.
    pub layers: LayerOptions,
    /// Tar header mtime of archive entries.
    pub mtime: u64,
}

/// How an image's layers and manifest leave the store, besides the layers' compression
/// (buildx's `compression-level`, `force-compression`, `oci-mediatypes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// Level of layers compressed now (None: gzip 6, zstd 3; [`layer::level_range`]).
    pub level: Option<u32>,
    /// Compress every layer now, at `level`, even when a blob in the asked compression exists
    /// (without it, the image's own blob or a variant made earlier is reused).
    pub force: bool,
    /// A Docker schema2 manifest (Docker media types for manifest, config and layers) instead
    /// of an OCI one; gzip or uncompressed layers only.
    pub docker_media_types: bool,
    /// A layer blob already in the asked compression may be absent from the store (a push mounts
    /// it from another repository: a layer of an imported build cache never downloaded).
    pub absent_ok: bool,
}

/// A second place a layer's compressed bytes go while [`distributable_copied`] makes them: a
/// push uploading the layer as it is compressed. Writing to it never fails the compression (an
/// implementation drops what it cannot use).
pub trait LayerCopy: Write + Send {
    /// All bytes are written: `blob` is the layer blob they make, `None` when compressing
    /// failed (the copy is worthless).
    fn done(self: Box<Self>, blob: Option<&Descriptor>);
}

/// Starts a [`LayerCopy`] for each layer compressed now (`None`: no copy of this one).
pub type CopyLayers<'r, 'c> = &'r (dyn Fn() -> Option<Box<dyn LayerCopy + 'c>> + Sync);

/// Where `save` writes.
pub enum SaveTarget {
    /// For `oci-dir`.
    Dir(PathBuf),
    /// For `oci-archive` and `docker-archive` (a file is written by the caller, atomically).
    Stream(Box<dyn Write>),
}

/// Writes the images named by `specs` (names or ids) to `target`; each layer compressed and each
/// blob copied is a task reported to `progress`.
pub fn save(
    store: &Store,
    specs: &[String],
    opts: &SaveOptions,
    target: SaveTarget,
    progress: &Reporter,
) -> Result<(), ImageError> {
    let mut images = Vec::new();
    for spec in specs {
        let image = resolve(store, spec)?;
        // A name saves that name; an id saves the image without names, as `docker save` does.
        let names: Vec<Reference> = match Reference::parse(spec) {
            Ok(r) if image.names.contains(&r) => vec![r],
            _ => Vec::new(),
        };
        images.push((image, names));
    }
    save_images(store, &images, opts, target, progress)
}

/// [`save`] for images already resolved, each with the names it is saved under (none: by id).
pub fn save_images(
    store: &Store,
    images: &[(Image, Vec<Reference>)],
    opts: &SaveOptions,
    target: SaveTarget,
    progress: &Reporter,
) -> Result<(), ImageError> {
    let lease = store.lease("save")?;
    let mut sink: Box<dyn LayoutSink> = match (target, opts.format) {
        (SaveTarget::Dir(dir), SaveFormat::OciDir) => Box::new(DirSink::new(&dir)?),
        (SaveTarget::Stream(w), SaveFormat::OciArchive | SaveFormat::DockerArchive) => {
            Box::new(TarSink::new(w, opts.mtime))
        }
        (SaveTarget::Dir(_), _) | (SaveTarget::Stream(_), SaveFormat::OciDir) => {
            return Err(ImageError::Archive {
                entry: "-".to_string(),
                reason: "oci-dir writes a directory; the archive formats write a stream".to_string(),
            });
        }
    };
    let compression = match opts.format {
        SaveFormat::DockerArchive => LayerCompression::None,
        _ => opts.compression,
    };
    let exporter = Exporter { store, lease: &lease, progress, layers: opts.layers, copies: None };
    let mut index = ImageIndex::new();
    let mut docker_manifest = Vec::new();
    for (image, names) in images {
        let (manifest_descriptor, layers) = exporter.write_image(&mut *sink, image, compression)?;
        index.manifests.extend(named_entries(&manifest_descriptor, names));
        docker_manifest.push(DockerManifestEntry {
            config: blob_path(&image.manifest.config.digest),
            repo_tags: Some(names.iter().map(Reference::familiar).collect()),
            layers: layers.iter().map(|l| blob_path(&l.digest)).collect(),
        });
    }
    sink.add_file("oci-layout", &canonical::to_bytes(&OciLayout::default()))?;
    sink.add_file("index.json", &canonical::to_bytes(&index))?;
    if opts.format == SaveFormat::DockerArchive {
        sink.add_file("manifest.json", &canonical::to_bytes(&docker_manifest))?;
    }
    sink.finish()
}

/// A multi-platform image to write as an OCI layout.
#[derive(Debug, Clone, Default)]
pub struct IndexToSave {
    /// Each platform's entry in the index (its platform and annotations) and its image.
    pub members: Vec<(Descriptor, Image)>,
    /// The index's own annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The annotations of the index's entries in `index.json` (buildx's `index-descriptor`).
    pub entry_annotations: Option<BTreeMap<String, String>>,
}

/// The platforms of one multi-platform image as an OCI layout (`save_images` for one index):
/// each platform's blobs and manifest, an image index over the manifests (each entry with its
/// platform and annotations), and `index.json` naming that index once per name in `names` (once,
/// unnamed, when there are none), as buildx's oci exporter writes a multi-platform build.
/// Docker archives hold one platform: refused.
pub fn save_index(
    store: &Store,
    index: &IndexToSave,
    names: &[Reference],
    opts: &SaveOptions,
    target: SaveTarget,
    progress: &Reporter,
) -> Result<Descriptor, ImageError> {
    let lease = store.lease("save")?;
    let mut sink: Box<dyn LayoutSink> = match (target, opts.format) {
        (SaveTarget::Dir(dir), SaveFormat::OciDir) => Box::new(DirSink::new(&dir)?),
        (SaveTarget::Stream(w), SaveFormat::OciArchive) => Box::new(TarSink::new(w, opts.mtime)),
        _ => {
            return Err(ImageError::Archive {
                entry: "-".to_string(),
                reason: "an image of several platforms is written as an oci layout (a docker archive holds one)"
                    .to_string(),
            });
        }
    };
    let exporter = Exporter { store, lease: &lease, progress, layers: opts.layers, copies: None };
    let mut platform_index = ImageIndex::new();
    platform_index.annotations.clone_from(&index.annotations);
    for (entry, image) in &index.members {
        let (manifest, _) = exporter.write_image(&mut *sink, image, opts.compression)?;
        let mut listed = entry.clone();
        (listed.media_type, listed.digest, listed.size) = (manifest.media_type, manifest.digest, manifest.size);
        platform_index.manifests.push(listed);
    }
    let bytes = canonical::to_bytes(&platform_index);
    let mut descriptor = Descriptor::new(MediaType::OciIndex, crate::oci::Digest::of(&bytes), bytes.len() as u64);
    sink.add_blob(&descriptor.digest, descriptor.size, &mut &bytes[..])?;
    descriptor.annotations.clone_from(&index.entry_annotations);
    let mut index = ImageIndex::new();
    index.manifests = named_entries(&descriptor, names);
    sink.add_file("oci-layout", &canonical::to_bytes(&OciLayout::default()))?;
    sink.add_file("index.json", &canonical::to_bytes(&index))?;
    sink.finish()?;
    Ok(descriptor)
}

/// `index.json`'s entries for `descriptor`: one per name (full name and tag annotations), or one
/// without names.
fn named_entries(descriptor: &Descriptor, names: &[Reference]) -> Vec<Descriptor> {
    if names.is_empty() {
        return vec![descriptor.clone()];
    }
    names
        .iter()
        .map(|name| {
            let mut d = descriptor.clone();
            d.set_annotation(ANNOTATION_IMAGE_NAME, &name.to_string());
            if let Some(tag) = name.tag() {
                d.set_annotation(ANNOTATION_REF_NAME, tag);
            }
            d
        })
        .collect()
}

/// Copies one blob from the store into the layout, once.
fn copy_blob(store: &Store, sink: &mut dyn LayoutSink, d: &Descriptor, progress: &Reporter) -> Result<(), ImageError> {
    if sink.has_blob(&d.digest) {
        return Ok(());
    }
    let task = progress.start(|| format!("copy blob sha256:{}", d.digest.short()));
    let copied = store.open_blob(&d.digest).map_err(ImageError::from).and_then(|file| {
        let mut reader = MeteredReader::new(file, task.meter(Some(d.size), Unit::Bytes));
        sink.add_blob(&d.digest, d.size, &mut reader)
    });
    task.finish(copied)
}

/// An image as `save` and a registry push send it.
#[derive(Debug, Clone)]
pub struct Distributable {
    /// The OCI manifest's bytes (canonical JSON) and descriptor.
    pub manifest: Vec<u8>,
    pub manifest_descriptor: Descriptor,
    pub config: Descriptor,
    /// Layer blobs, in the requested compression, all in the store.
    pub layers: Vec<Descriptor>,
}

/// The blobs and manifest of `image` with layers in `compression`; variants made on the way are
/// kept in the store (and in `lease`), as `save` keeps them.
pub fn distributable(
    store: &Store,
    image: &Image,
    compression: LayerCompression,
    lease: &Lease,
    progress: &Reporter,
) -> Result<Distributable, ImageError> {
    distributable_with(store, image, compression, &LayerOptions::default(), lease, progress)
}

/// [`distributable`] with a level, forced compression or Docker media types.
pub fn distributable_with(
    store: &Store,
    image: &Image,
    compression: LayerCompression,
    layers: &LayerOptions,
    lease: &Lease,
    progress: &Reporter,
) -> Result<Distributable, ImageError> {
    Exporter { store, lease, progress, layers: *layers, copies: None }.distributable(image, compression)
}

/// [`distributable_with`], with a copy of each layer compressed now going to a [`LayerCopy`]
/// from `copies` while it is made.
pub fn distributable_copied(
    store: &Store,
    image: &Image,
    (compression, layers): (LayerCompression, &LayerOptions),
    lease: &Lease,
    progress: &Reporter,
    copies: CopyLayers<'_, '_>,
) -> Result<Distributable, ImageError> {
    Exporter { store, lease, progress, layers: *layers, copies: Some(copies) }.distributable(image, compression)
}

/// What exporting layers needs at hand: the store, the lease that keeps new blobs, progress,
/// how layers leave.
struct Exporter<'a, 'c> {
    store: &'a Store,
    lease: &'a Lease,
    progress: &'a Reporter,
    layers: LayerOptions,
    copies: Option<CopyLayers<'a, 'c>>,
}

impl Exporter<'_, '_> {
    /// Writes one image's blobs; returns its (possibly re-compressed) manifest descriptor and layers.
    fn write_image(
        &self,
        sink: &mut dyn LayoutSink,
        image: &Image,
        compression: LayerCompression,
    ) -> Result<(Descriptor, Vec<Descriptor>), ImageError> {
        let plan = self.distributable(image, compression)?;
        for blob in plan.layers.iter().chain(std::iter::once(&plan.config)) {
            copy_blob(self.store, sink, blob, self.progress)?;
        }
        let descriptor = plan.manifest_descriptor;
        sink.add_blob(&descriptor.digest, descriptor.size, &mut &plan.manifest[..])?;
        Ok((descriptor, plan.layers))
    }

    /// The image as it leaves the store: layers in `compression` (made and kept when missing),
    /// the config, and an OCI manifest over them with the stored manifest's annotations.
    fn distributable(&self, image: &Image, compression: LayerCompression) -> Result<Distributable, ImageError> {
        let diff_ids = &image.config.rootfs.diff_ids;
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(ImageError::LayerCount {
                config: image.id(),
                layers: image.manifest.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (i, (diff_id, source)) in diff_ids.iter().zip(&image.manifest.layers).enumerate() {
            layers.push(self.layer_blob(image, i, *diff_id, source, compression)?);
        }
        let config = Descriptor::new(MediaType::OciConfig, image.manifest.config.digest, image.manifest.config.size);
        let mut manifest = ImageManifest::oci(config, layers);
        // The image's own annotations (`build --annotation`) go where it goes.
        manifest.annotations.clone_from(&image.manifest.annotations);
        if self.layers.docker_media_types {
            manifest = docker_manifest(image, manifest)?;
        }
        let bytes = canonical::to_bytes(&manifest);
        let media_type = manifest.media_type.clone().expect("set by both constructors");
        let manifest_descriptor = Descriptor::new(media_type, crate::oci::Digest::of(&bytes), bytes.len() as u64);
        Ok(Distributable { manifest: bytes, manifest_descriptor, config: manifest.config, layers: manifest.layers })
    }

    /// The blob of layer `diff_id` in `compression`: the manifest's own blob when it already has that
    /// compression, a variant made earlier, or a new one made now and kept (reported to `progress`).
    fn layer_blob(
        &self,
        image: &Image,
        index: usize,
        diff_id: DiffId,
        source: &Descriptor,
        compression: LayerCompression,
    ) -> Result<Descriptor, ImageError> {
        let (store, lease, progress) = (self.store, self.lease, self.progress);
        if !self.layers.force {
            let same = source.media_type.layer_compression() == Some(compression);
            if same && (self.layers.absent_ok || store.has_blob(&source.digest)) {
                return Ok(source.clone());
            }
            for known in store.layer_blobs(diff_id)? {
                if known.media_type.layer_compression() == Some(compression) && store.has_blob(&known.digest) {
                    lease.add(&known.digest)?;
                    return Ok(known);
                }
            }
        }
        let algorithm = match compression {
            LayerCompression::None => Compression::None,
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        };
        let how = match compression {
            LayerCompression::None => "uncompressed",
            LayerCompression::Gzip => "gzip",
            LayerCompression::Zstd => "zstd",
        };
        let task = progress.start(|| format!("compress layer {} ({how})", diff_id.digest().short()));
        let mut copy = self.copies.and_then(|start| start());
        let copy_to = copy.as_mut().map(|c| c.as_mut() as &mut (dyn Write + Send));
        let compressed = compress_layer(store, diff_id, source, (algorithm, self.layers.level), copy_to, &task);
        let committed = task.finish(compressed).and_then(|(ingest, read)| {
            if read != diff_id {
                return Err(ImageError::DiffIdMismatch { config: image.id(), index, expected: diff_id, actual: read });
            }
            let (digest, size) = ingest.commit(None, Some(lease))?;
            Ok(Descriptor::new(MediaType::oci_layer(compression), digest, size))
        });
        if let Some(copy) = copy {
            copy.done(committed.as_ref().ok());
        }
        let descriptor = committed?;
        store.record_layer_blob(diff_id, &descriptor)?;
        Ok(descriptor)
    }
}

/// Compresses layer `diff_id` (from its uncompressed blob, or by decompressing `source`) into a
/// new ingest (and `copy`), counting the uncompressed bytes read for `task`.
fn compress_layer(
    store: &Store,
    diff_id: DiffId,
    source: &Descriptor,
    (algorithm, level): (Compression, Option<u32>),
    copy: Option<&mut (dyn Write + Send)>,
    task: &Task,
) -> Result<(Ingest, DiffId), ImageError> {
    let uncompressed: Box<dyn Read> = if store.has_blob(&diff_id.digest()) {
        let total = store.blob_size(&diff_id.digest())?;
        let file = store.open_blob(&diff_id.digest())?;
        Box::new(MeteredReader::new(file, task.meter(Some(total), Unit::Bytes)))
    } else {
        let plain = layer::decompress(Box::new(store.open_blob(&source.digest)?))?;
        Box::new(MeteredReader::new(plain, task.meter(None, Unit::Bytes)))
    };
    let mut ingest = store.ingest()?;
    // The ingest hashes the compressed bytes itself (and verifies them on commit).
    let (diff_id, _) = match copy {
        None => layer::compress_into(uncompressed, algorithm, level, &mut ingest)?,
        Some(copy) => layer::compress_into(uncompressed, algorithm, level, &mut Tee { ingest: &mut ingest, copy })?,
    };
    Ok((ingest, diff_id))
}

/// Writes to the ingest, and the same bytes to a [`LayerCopy`] (which takes all it is given).
struct Tee<'a> {
    ingest: &'a mut Ingest,
    copy: &'a mut (dyn Write + Send),
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.ingest.write(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ingest.flush()
    }
}

/// The OCI `manifest` with Docker schema2 media types (`oci-mediatypes=false`): Docker has no
/// zstd layer type, so zstd layers are refused.
fn docker_manifest(image: &Image, manifest: ImageManifest) -> Result<ImageManifest, ImageError> {
    let mut layers = Vec::new();
    for layer in manifest.layers {
        let media_type = match layer.media_type.layer_compression() {
            Some(LayerCompression::Gzip) => MediaType::DockerLayerGzip,
            Some(LayerCompression::None) => MediaType::Other(DOCKER_LAYER.to_string()),
            _ => return Err(ImageError::DockerMediaType { config: image.id(), media_type: layer.media_type }),
        };
        layers.push(Descriptor::new(media_type, layer.digest, layer.size));
    }
    let config = Descriptor::new(MediaType::DockerConfig, manifest.config.digest, manifest.config.size);
    Ok(ImageManifest { media_type: Some(MediaType::DockerManifest), config, layers, ..manifest })
}

/// Docker's media type of an uncompressed layer.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
