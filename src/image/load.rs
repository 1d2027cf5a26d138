//! `load`: images into the store from an OCI directory, an OCI archive or a docker archive
//! (the Docker 25+ layout and the older `<id>/layer.tar` one), plain or compressed.
//!
//! Every blob is ingested with its expected digest and size, so bytes that do not match their
//! name never become visible under any digest (catalogue C12), and malformed digests are
//! rejected before any path is built (C14). Each layer's content is checked against the
//! config's `rootfs.diff_ids` before the image gets a name.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::resolve::{UNTAGGED_ROOT, load_image};
use super::{ImageError, MAX_JSON_BLOB};
use crate::layer;
use crate::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, DiffId, Digest, DockerManifestEntry, ImageConfig,
    ImageIndex, ImageManifest, LayerCompression, MediaType, Platform, Reference, canonical,
};
use crate::progress::{MeteredReader, Reporter, Unit};
use crate::store::{Lease, Store};

/// One image a `load` brought in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadedImage {
    pub names: Vec<String>,
    pub id: Digest,
    pub manifest_digest: Digest,
}

/// What a `load` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    pub images: Vec<LoadedImage>,
}

/// Files of the archive: small metadata kept in memory, blobs already in the store.
#[derive(Default)]
struct Collected {
    json: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, Digest>,
    links: BTreeMap<String, String>,
}

impl Collected {
    /// The digest of the blob at `path`, following the links legacy archives use for layers.
    fn digest(&self, path: &str) -> Result<Digest, ImageError> {
        let mut path = clean(path).ok_or_else(|| ImageError::MissingEntry { path: path.to_string() })?;
        for _ in 0..16 {
            if let Some(d) = self.blobs.get(&path) {
                return Ok(*d);
            }
            match self.links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        Err(ImageError::MissingEntry { path })
    }
}

/// Normalises an archive path (`./a/../b` → `b`); `None` for paths that leave the archive.
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Loads every image of an archive stream or a layout directory.
/// Each blob ingested and each layer verified is a task reported to `progress`.
pub fn load(store: &Store, input: LoadInput, progress: &Reporter) -> Result<LoadReport, ImageError> {
    let lease = store.lease("load")?;
    let mut collector = Collector { store, lease: &lease, progress, collected: Collected::default() };
    match input {
        LoadInput::Dir(dir) => collector.dir(&dir)?,
        LoadInput::Stream(reader) => collector.tar(layer::decompress(reader)?)?,
    }
    let collected = collector.collected;
    let report = if let Some(bytes) = collected.json.get("index.json") {
        let index: ImageIndex = decode("index.json", bytes)?;
        load_oci(store, &index, &lease, progress)?
    } else if let Some(bytes) = collected.json.get("manifest.json") {
        let entries: Vec<DockerManifestEntry> = decode("manifest.json", bytes)?;
        load_docker(store, &collected, &entries, &lease, progress)?
    } else {
        return Err(ImageError::EmptyArchive);
    };
    Ok(report)
}

/// What `load` reads.
pub enum LoadInput {
    Dir(PathBuf),
    Stream(Box<dyn Read>),
}

fn decode<T: serde::de::DeserializeOwned>(entry: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::ArchiveJson { entry: entry.to_string(), source })
}

/// Reads an archive's files into the store (blobs) and memory (the JSON entries, links).
struct Collector<'a> {
    store: &'a Store,
    lease: &'a Lease,
    progress: &'a Reporter,
    collected: Collected,
}

impl Collector<'_> {
    /// Handles one regular file of the archive.
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), ImageError> {
        let collected = &mut self.collected;
        let file_name = path.rsplit('/').next().unwrap_or(path);
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = Digest::from_hex(hex)
                .map_err(|source| ImageError::ArchiveDigest { entry: path.to_string(), source })?;
            let digest = Self::ingest(self.store, self.lease, self.progress, path, reader, Some((digest, size)))?;
            collected.blobs.insert(path.to_string(), digest);
        } else if matches!(path, "index.json" | "manifest.json") {
            if size > MAX_JSON_BLOB {
                return Err(ImageError::Archive {
                    entry: path.to_string(),
                    reason: format!("{size} bytes is too large"),
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            reader.take(MAX_JSON_BLOB).read_to_end(&mut bytes).map_err(ImageError::io(path))?;
            collected.json.insert(path.to_string(), bytes);
        } else if !path.contains('/') && file_name.len() == 69 && file_name.ends_with(".json") {
            // Legacy docker archive: the config is `<config digest hex>.json`.
            let digest = Digest::from_hex(&file_name[..64])
                .map_err(|source| ImageError::ArchiveDigest { entry: path.to_string(), source })?;
            let digest = Self::ingest(self.store, self.lease, self.progress, path, reader, Some((digest, size)))?;
            collected.blobs.insert(path.to_string(), digest);
        } else if file_name.ends_with(".tar") {
            // Docker archives name layer files by v1 ids (`<id>/layer.tar`) or by digest
            // (`<hex>.tar`, as skopeo writes them); either way each layer is checked against the
            // config's diff ids before the image is named.
            let digest = Self::ingest(self.store, self.lease, self.progress, path, reader, None)?;
            collected.blobs.insert(path.to_string(), digest);
        }
        Ok(())
    }

    /// One blob into the store, its digest (and size) verified when the archive names it.
    fn ingest(
        store: &Store,
        lease: &Lease,
        progress: &Reporter,
        path: &str,
        reader: &mut dyn Read,
        expected: Option<(Digest, u64)>,
    ) -> Result<Digest, ImageError> {
        let task = progress.start(|| format!("ingest {path}"));
        let ingested = (|| {
            let mut ingest = store.ingest()?;
            let mut counted = MeteredReader::new(reader, task.meter(expected.map(|(_, size)| size), Unit::Bytes));
            io::copy(&mut counted, &mut ingest).map_err(ImageError::io("archive blob"))?;
            drop(counted);
            let (digest, _) = ingest.commit(expected, Some(lease))?;
            Ok(digest)
        })();
        task.finish(ingested)
    }

    /// Every file and link of a tar stream.
    fn tar(&mut self, reader: Box<dyn Read>) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(ImageError::io("archive"))?;
        for entry in entries {
            let mut entry = entry.map_err(ImageError::io("archive"))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = clean(&raw) else {
                return Err(ImageError::Archive { entry: raw, reason: "path leaves the archive".to_string() });
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let size = entry.header().size().map_err(ImageError::io(&raw))?;
                self.file(&path, size, &mut entry)?;
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target =
                    entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
                let joined = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    format!("{dir}/{target}")
                } else {
                    target
                };
                if let Some(target) = clean(&joined) {
                    self.collected.links.insert(path, target);
                }
            }
        }
        Ok(())
    }

    /// Every file of a layout directory (links are not followed).
    fn dir(&mut self, dir: &Path) -> Result<(), ImageError> {
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name().follow_links(false) {
            let entry = entry.map_err(|e| ImageError::Io {
                path: e.path().map_or_else(|| dir.to_path_buf(), Path::to_path_buf),
                source: e.into_io_error().unwrap_or_else(|| io::Error::other("filesystem loop")),
            })?;
            let rel = entry.path().strip_prefix(dir).expect("walkdir yields paths under its root");
            let Some(path) = rel.to_str().and_then(clean) else {
                continue;
            };
            if entry.file_type().is_file() {
                let mut file = fs::File::open(entry.path()).map_err(ImageError::io(entry.path()))?;
                let size = file.metadata().map_err(ImageError::io(entry.path()))?.len();
                self.file(&path, size, &mut file)?;
            }
        }
        Ok(())
    }
}

/// Which image of an OCI layout: the one tagged `tag` (`org.opencontainers.image.ref.name`),
/// the entry with manifest or index digest `digest`, or the layout's only one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutSelector {
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Brings one image of the OCI layout `dir` into the store under `lease`, every blob verified
/// and every layer checked against its diff id, and names it nothing (a `--build-context
/// NAME=oci-layout://DIR` base); an index resolves to `platform`'s manifest.
pub fn load_layout_image(
    store: &Store,
    dir: &Path,
    selector: &LayoutSelector,
    platform: &Platform,
    lease: &Lease,
    progress: &Reporter,
) -> Result<super::Image, ImageError> {
    let mut collector = Collector { store, lease, progress, collected: Collected::default() };
    collector.dir(dir)?;
    let bytes = collector.collected.json.get("index.json").ok_or(ImageError::EmptyArchive)?;
    let index: ImageIndex = decode("index.json", bytes)?;
    let wanted = |d: &&Descriptor| {
        selector.tag.as_deref().is_none_or(|t| d.annotation(ANNOTATION_REF_NAME) == Some(t))
            && selector.digest.is_none_or(|digest| d.digest == digest)
    };
    let mut found = index.manifests.iter().filter(wanted);
    let descriptor = match (found.next(), found.next()) {
        (Some(d), None) => d.clone(),
        (None, _) => {
            let what = match (&selector.tag, &selector.digest) {
                (Some(t), _) => format!("no image tagged {t:?}"),
                (None, Some(d)) => format!("no image {d}"),
                (None, None) => "no image".to_string(),
            };
            return Err(ImageError::Archive { entry: "index.json".to_string(), reason: what });
        }
        (Some(_), Some(_)) => {
            let reason = "several images: name one with :TAG or @sha256:…".to_string();
            return Err(ImageError::Archive { entry: "index.json".to_string(), reason });
        }
    };
    if !store.has_blob(&descriptor.digest) {
        return Err(ImageError::MissingEntry { path: format!("blobs/sha256/{}", descriptor.digest.hex()) });
    }
    let image = load_image(store, &descriptor, platform, Vec::new())?;
    verify_layers(store, &image.manifest, &image.config, lease, progress)?;
    Ok(image)
}

fn load_oci(store: &Store, index: &ImageIndex, lease: &Lease, progress: &Reporter) -> Result<LoadReport, ImageError> {
    let platform = Platform::host();
    let mut report = LoadReport::default();
    for descriptor in &index.manifests {
        if !store.has_blob(&descriptor.digest) {
            return Err(ImageError::MissingEntry { path: format!("blobs/sha256/{}", descriptor.digest.hex()) });
        }
        // A multi-platform image: every platform's layers are checked, not only this machine's.
        let image = super::resolve::load_root(store, descriptor, None, Vec::new())?;
        if descriptor.media_type.is_index() {
            let platforms: ImageIndex = super::resolve::read_json(store, "index", &descriptor.digest)?;
            for entry in platforms.manifests.iter().filter(|e| e.media_type.is_manifest()) {
                let each = load_image(store, entry, &platform, Vec::new())?;
                verify_layers(store, &each.manifest, &each.config, lease, progress)?;
            }
        } else {
            verify_layers(store, &image.manifest, &image.config, lease, progress)?;
        }
        let names = oci_names(descriptor);
        finish_image(store, descriptor, &names, image.id(), &mut report)?;
    }
    Ok(report)
}

/// The names an OCI index entry carries: the full name annotation, or a `ref.name` that is a
/// full reference (a bare tag names no repository).
fn oci_names(descriptor: &Descriptor) -> Vec<Reference> {
    if let Some(name) = descriptor.annotation(ANNOTATION_IMAGE_NAME) {
        if let Ok(r) = Reference::parse(name) {
            return vec![r];
        }
    }
    match descriptor.annotation(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':']) => Reference::parse(name).map(|r| vec![r]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn load_docker(
    store: &Store,
    collected: &Collected,
    entries: &[DockerManifestEntry],
    lease: &Lease,
    progress: &Reporter,
) -> Result<LoadReport, ImageError> {
    let mut report = LoadReport::default();
    for entry in entries {
        let config_digest = collected.digest(&entry.config)?;
        let config_bytes = store.read_blob(&config_digest, MAX_JSON_BLOB)?;
        let config: ImageConfig = canonical::from_bytes("config", &config_bytes)
            .map_err(|source| ImageError::Decode { what: "config", digest: config_digest, source })?;
        let mut layers = Vec::new();
        for path in &entry.layers {
            let digest = collected.digest(path)?;
            let compression = sniff(store, &digest)?;
            let size = store.blob_size(&digest)?;
            layers.push(Descriptor::new(MediaType::oci_layer(compression), digest, size));
        }
        let manifest =
            ImageManifest::oci(Descriptor::new(MediaType::OciConfig, config_digest, config_bytes.len() as u64), layers);
        verify_layers(store, &manifest, &config, lease, progress)?;
        let bytes = canonical::to_bytes(&manifest);
        let digest = store.write_blob(&bytes, Some(lease))?;
        let descriptor = Descriptor::new(MediaType::OciManifest, digest, bytes.len() as u64);
        let mut names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            names.push(super::parse_name(tag)?);
        }
        finish_image(store, &descriptor, &names, config_digest, &mut report)?;
    }
    Ok(report)
}

/// Names the image (or keeps it as untagged) once everything under it is verified.
fn finish_image(
    store: &Store,
    descriptor: &Descriptor,
    names: &[Reference],
    id: Digest,
    report: &mut LoadReport,
) -> Result<(), ImageError> {
    if names.is_empty() {
        store.add_root(&format!("{UNTAGGED_ROOT}{}", descriptor.digest.hex()), &descriptor.digest)?;
    }
    for name in names {
        store.set_tag(name, descriptor.clone())?;
    }
    report.images.push(LoadedImage {
        names: names.iter().map(Reference::familiar).collect(),
        id,
        manifest_digest: descriptor.digest,
    });
    Ok(())
}

/// The compression of a layer blob, from its first bytes.
fn sniff(store: &Store, digest: &Digest) -> Result<LayerCompression, ImageError> {
    let mut magic = [0u8; 4];
    let mut file = store.open_blob(digest)?;
    let n = file.read(&mut magic).map_err(ImageError::io(format!("blob {digest}")))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => LayerCompression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => LayerCompression::Zstd,
        _ => LayerCompression::None,
    })
}

/// Checks each layer's content against the config's diff ids (C12) and records the blobs.
fn verify_layers(
    store: &Store,
    manifest: &ImageManifest,
    config: &ImageConfig,
    lease: &Lease,
    progress: &Reporter,
) -> Result<(), ImageError> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCount {
            config: manifest.config.digest,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    for (i, (layer_desc, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        if !store.has_blob(&layer_desc.digest) {
            return Err(ImageError::MissingEntry { path: format!("blobs/sha256/{}", layer_desc.digest.hex()) });
        }
        if store.layer_blobs(*diff_id)?.iter().any(|d| d.digest == layer_desc.digest) {
            continue;
        }
        let task = progress.start(|| format!("verify layer sha256:{}", layer_desc.digest.short()));
        let hashed = match layer_desc.media_type.layer_compression() {
            Some(LayerCompression::None) => Ok(DiffId(layer_desc.digest)),
            _ => (|| {
                let file = store.open_blob(&layer_desc.digest)?;
                let counted = MeteredReader::new(file, task.meter(Some(layer_desc.size), Unit::Bytes));
                let plain = layer::decompress(Box::new(counted))?;
                let mut hashing = crate::oci::HashingReader::new(plain);
                io::copy(&mut hashing, &mut io::sink())
                    .map_err(ImageError::io(format!("layer {}", layer_desc.digest)))?;
                Ok::<_, ImageError>(DiffId(hashing.finish().1))
            })(),
        };
        let actual = task.finish(hashed)?;
        if actual != *diff_id {
            return Err(ImageError::DiffIdMismatch {
                config: manifest.config.digest,
                index: i,
                expected: *diff_id,
                actual,
            });
        }
        store.record_layer_blob(*diff_id, layer_desc)?;
        lease.add(&layer_desc.digest)?;
    }
    Ok(())
}
