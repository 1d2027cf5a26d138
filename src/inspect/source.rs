//! Where an image to inspect comes from, behind one shape (`Opened`): its config, its layers'
//! descriptors, and a way to read the layers an answer needs — from the store, an OCI layout
//! directory, an OCI or docker archive (read in place, blobs located by their offset in the tar),
//! or a registry (only the manifests and config first; a layer when it is asked for, kept in the
//! store under the caller's lease).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::InspectError;
use super::listing::{LayerListing, clean, join, list_layer};
use crate::image::MAX_JSON_BLOB;
use crate::oci::{
    ANNOTATION_REF_NAME, Descriptor, DiffId, Digest, DockerManifestEntry, HashingReader, ImageConfig, ImageIndex,
    ImageManifest, MediaType, Platform, Reference,
};
use crate::progress::Reporter;
use crate::registry::{Client, Fetcher, RegistryError, RemoteImage};
use crate::store::{Lease, ScratchDir, Store};

/// An image argument as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    /// A local name or id, else (when it parses as one) a registry reference.
    Name(String),
    /// `docker://REF`.
    Registry(Reference),
    /// `oci:DIR[:TAG]`.
    OciDir { dir: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`.
    OciArchive { file: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:NAME]`.
    DockerArchive { file: PathBuf, name: Option<String> },
}

impl ImageArg {
    pub fn parse(word: &str) -> Result<ImageArg, InspectError> {
        let bad = |reason| InspectError::Argument { arg: word.to_string(), reason };
        if let Some(rest) = word.strip_prefix("docker://") {
            let reference = Reference::parse(rest).map_err(|_| bad("not an image reference"))?;
            return Ok(ImageArg::Registry(reference));
        }
        for (prefix, kind) in [("oci:", 0), ("oci-archive:", 1), ("docker-archive:", 2)] {
            let Some(rest) = word.strip_prefix(prefix) else { continue };
            if rest.is_empty() {
                return Err(bad("no path after the transport"));
            }
            let (path, tag) = split_tag(rest);
            return Ok(match kind {
                0 => ImageArg::OciDir { dir: path, tag },
                1 => ImageArg::OciArchive { file: path, tag },
                _ => ImageArg::DockerArchive { file: path, name: tag },
            });
        }
        if word.is_empty() {
            return Err(bad("empty"));
        }
        Ok(ImageArg::Name(word.to_string()))
    }
}

/// `path:tag` → the path and the tag, unless the whole text names an existing path or what
/// follows the last `:` has a `/` (it is part of the path then).
fn split_tag(rest: &str) -> (PathBuf, Option<String>) {
    if Path::new(rest).exists() {
        return (PathBuf::from(rest), None);
    }
    match rest.rfind(':') {
        Some(i) if i > 0 && i + 1 < rest.len() && !rest[i + 1..].contains('/') => {
            (PathBuf::from(&rest[..i]), Some(rest[i + 1..].to_string()))
        }
        _ => (PathBuf::from(rest), None),
    }
}

/// Which kind of source an image was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Local,
    Oci,
    OciArchive,
    DockerArchive,
    Registry,
}

/// What opening needs: the store (local images, and where registry blobs are kept), the lease
/// that keeps what is fetched, the platform an index resolves to and how to reach a registry.
pub struct OpenOptions<'a> {
    pub store: &'a Store,
    pub lease: &'a Lease,
    /// The platform picked from a multi-platform image (`--platform`, else this machine's).
    pub platform: Platform,
    /// Whether `--platform` named it: a local multi-platform image without it is then an error
    /// (else its first platform is shown).
    pub platform_given: bool,
    pub connect: &'a dyn Fn(&str) -> Result<Client, RegistryError>,
    pub progress: &'a Reporter,
}

/// One layer of an opened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: DiffId,
    /// The stored blob's digest (none for an older docker archive's `layer.tar`).
    pub digest: Option<Digest>,
    /// Bytes as stored (compressed, usually).
    pub size: u64,
    pub media_type: Option<MediaType>,
}

/// An image ready to be read.
pub struct Opened<'a> {
    /// The argument as given.
    pub name: String,
    pub kind: SourceKind,
    /// The manifest's digest (none for a docker archive, which has no manifest).
    pub manifest_digest: Option<Digest>,
    /// The manifest (none for a docker archive).
    pub manifest: Option<ImageManifest>,
    /// The image id: the digest of the config.
    pub id: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerInfo>,
    reader: Box<dyn LayerReader + 'a>,
}

/// Reads the layers of one source.
trait LayerReader: Sync {
    /// Makes layers `indices` readable (a registry downloads the ones the store lacks).
    fn prepare(&self, _layers: &[LayerInfo], _indices: &[usize]) -> Result<(), InspectError> {
        Ok(())
    }
    /// The stored bytes of a layer, verified against its digest by the time they end.
    fn open(&self, layer: &LayerInfo, index: usize) -> Result<Box<dyn Read + Send>, InspectError>;
}

impl Opened<'_> {
    /// Lists layers `indices` (several at once), each checked against its DiffID.
    pub fn list(&self, indices: &[usize]) -> Result<BTreeMap<usize, LayerListing>, InspectError> {
        self.reader.prepare(&self.layers, indices)?;
        use rayon::prelude::*;
        indices
            .par_iter()
            .map(|&i| {
                let layer = &self.layers[i];
                let stored = self.reader.open(layer, i)?;
                let plain = crate::layer::decompress(stored).map_err(|source| InspectError::Layer {
                    source_name: self.name.clone(),
                    index: i,
                    diff_id: layer.diff_id,
                    source,
                })?;
                let listing =
                    list_layer(plain, layer.diff_id).map_err(|e| e.into_inspect(&self.name, i, layer.diff_id))?;
                Ok((i, listing))
            })
            .collect()
    }

    /// Lists every layer, base first.
    pub fn list_all(&self) -> Result<Vec<LayerListing>, InspectError> {
        let all: Vec<usize> = (0..self.layers.len()).collect();
        Ok(self.list(&all)?.into_values().collect())
    }
}

/// Opens an image argument.
pub fn open<'a>(arg: &ImageArg, opts: &OpenOptions<'a>) -> Result<Opened<'a>, InspectError> {
    let name = display(arg);
    match arg {
        ImageArg::Name(word) => {
            match crate::image::resolve_for(opts.store, word, opts.platform_given.then_some(&opts.platform)) {
                Ok(image) => Ok(local(name, opts.store, image)?),
                Err(crate::image::ImageError::NotFound { .. }) => match Reference::parse(word) {
                    Ok(reference) => remote(name, reference.clone(), opts).map_err(|err| match err {
                        InspectError::Registry(source) => InspectError::Remote {
                            name: word.clone(),
                            registry: reference.registry().to_string(),
                            source: Box::new(source),
                        },
                        other => other,
                    }),
                    Err(_) => Err(InspectError::NotFound { name: word.clone() }),
                },
                Err(err) => Err(err.into()),
            }
        }
        ImageArg::Registry(reference) => remote(name, reference.clone(), opts),
        ImageArg::OciDir { dir, tag } => {
            let files = Files::Dir(dir.clone());
            oci_layout(name, SourceKind::Oci, files, tag.as_deref(), &opts.platform)
        }
        ImageArg::OciArchive { file, tag } => {
            let files = Files::Archive(Archive::index(file, opts.store)?);
            oci_layout(name, SourceKind::OciArchive, files, tag.as_deref(), &opts.platform)
        }
        ImageArg::DockerArchive { file, name: wanted } => {
            let archive = Archive::index(file, opts.store)?;
            docker_archive(name, archive, wanted.as_deref())
        }
    }
}

fn display(arg: &ImageArg) -> String {
    let with = |kind: &str, path: &Path, tag: &Option<String>| match tag {
        Some(t) => format!("{kind}:{}:{t}", path.display()),
        None => format!("{kind}:{}", path.display()),
    };
    match arg {
        ImageArg::Name(n) => n.clone(),
        ImageArg::Registry(r) => format!("docker://{r}"),
        ImageArg::OciDir { dir, tag } => with("oci", dir, tag),
        ImageArg::OciArchive { file, tag } => with("oci-archive", file, tag),
        ImageArg::DockerArchive { file, name } => with("docker-archive", file, name),
    }
}

fn layer_infos(name: &str, manifest: &ImageManifest, config: &ImageConfig) -> Result<Vec<LayerInfo>, InspectError> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(InspectError::LayerCount {
            name: name.to_string(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(d, diff_id)| LayerInfo {
            diff_id: *diff_id,
            digest: Some(d.digest),
            size: d.size,
            media_type: Some(d.media_type.clone()),
        })
        .collect())
}

fn local<'a>(name: String, store: &'a Store, image: crate::image::Image) -> Result<Opened<'a>, InspectError> {
    let layers = layer_infos(&name, &image.manifest, &image.config)?;
    Ok(Opened {
        name,
        kind: SourceKind::Local,
        manifest_digest: Some(image.manifest_descriptor.digest),
        id: image.id(),
        manifest: Some(image.manifest.clone()),
        config: image.config,
        layers,
        reader: Box::new(StoreLayers { store }),
    })
}

/// Layers that are blobs of the store (whose names the store guarantees).
struct StoreLayers<'a> {
    store: &'a Store,
}

impl LayerReader for StoreLayers<'_> {
    fn open(&self, layer: &LayerInfo, _index: usize) -> Result<Box<dyn Read + Send>, InspectError> {
        let digest = layer.digest.expect("store layers have digests");
        Ok(Box::new(self.store.open_blob(&digest)?))
    }
}

fn remote<'a>(name: String, reference: Reference, opts: &OpenOptions<'a>) -> Result<Opened<'a>, InspectError> {
    let client = (opts.connect)(reference.registry())?;
    let image = Fetcher::new(&client, opts.store, &reference, opts.lease, opts.progress).image(&opts.platform)?;
    let layers = layer_infos(&name, &image.manifest, &image.config)?;
    Ok(Opened {
        name,
        kind: SourceKind::Registry,
        manifest_digest: Some(image.manifest_descriptor.digest),
        id: image.manifest.config.digest,
        manifest: Some(image.manifest.clone()),
        config: image.config.clone(),
        layers,
        reader: Box::new(RegistryLayers {
            client,
            reference,
            image,
            store: opts.store,
            lease: opts.lease,
            progress: opts.progress,
        }),
    })
}

/// Layers of a registry image: downloaded into the store when first asked for.
struct RegistryLayers<'a> {
    client: Client,
    reference: Reference,
    image: RemoteImage,
    store: &'a Store,
    lease: &'a Lease,
    progress: &'a Reporter,
}

impl LayerReader for RegistryLayers<'_> {
    fn prepare(&self, _layers: &[LayerInfo], indices: &[usize]) -> Result<(), InspectError> {
        let fetcher = Fetcher::new(&self.client, self.store, &self.reference, self.lease, self.progress);
        fetcher.layers(&self.image, indices, 4)?;
        Ok(())
    }

    fn open(&self, layer: &LayerInfo, _index: usize) -> Result<Box<dyn Read + Send>, InspectError> {
        let digest = layer.digest.expect("registry layers have digests");
        Ok(Box::new(self.store.open_blob(&digest)?))
    }
}

/// The files of an OCI layout or docker archive: a directory, or an archive read in place.
enum Files {
    Dir(PathBuf),
    Archive(Archive),
}

impl Files {
    fn origin(&self) -> &Path {
        match self {
            Files::Dir(dir) => dir,
            Files::Archive(a) => &a.path,
        }
    }

    fn open(&self, rel: &str) -> Result<(Box<dyn Read + Send>, u64), InspectError> {
        match self {
            Files::Dir(dir) => {
                let path = dir.join(rel);
                let file = File::open(&path).map_err(InspectError::io(&path))?;
                let len = file.metadata().map_err(InspectError::io(&path))?.len();
                Ok((Box::new(file), len))
            }
            Files::Archive(archive) => archive.open(rel),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
        digest: Option<&Digest>,
    ) -> Result<(T, Digest), InspectError> {
        let (reader, len) = self.open(rel)?;
        if len > MAX_JSON_BLOB {
            return Err(self.layout(format!("{rel} is {len} bytes, more than a JSON document may be")));
        }
        let mut bytes = Vec::new();
        reader.take(MAX_JSON_BLOB).read_to_end(&mut bytes).map_err(InspectError::io(self.origin().join(rel)))?;
        let actual = Digest::of(&bytes);
        if let Some(expected) = digest.filter(|d| **d != actual) {
            return Err(InspectError::BlobDigest {
                source_name: self.origin().display().to_string(),
                digest: *expected,
                actual,
            });
        }
        let value = serde_json::from_slice(&bytes).map_err(|source| InspectError::Json {
            path: self.origin().to_path_buf(),
            entry: rel.to_string(),
            source,
        })?;
        Ok((value, actual))
    }

    fn layout(&self, reason: String) -> InspectError {
        InspectError::Layout { path: self.origin().to_path_buf(), reason }
    }
}

fn blob_rel(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

fn oci_layout<'a>(
    name: String,
    kind: SourceKind,
    files: Files,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Opened<'a>, InspectError> {
    let (index, _): (ImageIndex, _) = files.read_json("index.json", None)?;
    let mut descriptor = pick_tagged(&files, &index, tag)?;
    for _ in 0..4 {
        if !descriptor.media_type.is_index() {
            break;
        }
        let (nested, _): (ImageIndex, _) = files.read_json(&blob_rel(&descriptor.digest), Some(&descriptor.digest))?;
        descriptor = nested
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(platform)))
            .or_else(|| if nested.manifests.len() == 1 { nested.manifests.first() } else { None })
            .cloned()
            .ok_or_else(|| files.layout(format!("index {} has no manifest for {platform}", descriptor.digest)))?;
    }
    if !descriptor.media_type.is_manifest() {
        return Err(files
            .layout(format!("{} has media type {}, not an image manifest", descriptor.digest, descriptor.media_type)));
    }
    let (manifest, _): (ImageManifest, _) = files.read_json(&blob_rel(&descriptor.digest), Some(&descriptor.digest))?;
    let (config, _): (ImageConfig, _) =
        files.read_json(&blob_rel(&manifest.config.digest), Some(&manifest.config.digest))?;
    let layers = layer_infos(&name, &manifest, &config)?;
    Ok(Opened {
        name,
        kind,
        manifest_digest: Some(descriptor.digest),
        id: manifest.config.digest,
        manifest: Some(manifest),
        config,
        layers,
        reader: Box::new(FileLayers { files, docker_paths: Vec::new() }),
    })
}

/// The descriptor of `index.json` tagged `tag` (`org.opencontainers.image.ref.name`), or its
/// only one.
fn pick_tagged(files: &Files, index: &ImageIndex, tag: Option<&str>) -> Result<Descriptor, InspectError> {
    let tag_of = |d: &Descriptor| d.annotations.as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)).cloned();
    let available = || {
        let tags: Vec<String> =
            index.manifests.iter().map(|d| tag_of(d).unwrap_or_else(|| d.digest.to_string())).collect();
        tags.join(", ")
    };
    match tag {
        Some(tag) => index.manifests.iter().find(|d| tag_of(d).as_deref() == Some(tag)).cloned().ok_or_else(|| {
            InspectError::NoTag { path: files.origin().to_path_buf(), tag: tag.to_string(), available: available() }
        }),
        None if index.manifests.len() == 1 => Ok(index.manifests[0].clone()),
        None if index.manifests.is_empty() => Err(files.layout("index.json lists no image".to_string())),
        None => Err(InspectError::Ambiguous {
            path: files.origin().to_path_buf(),
            count: index.manifests.len(),
            available: available(),
        }),
    }
}

fn docker_archive<'a>(name: String, archive: Archive, wanted: Option<&str>) -> Result<Opened<'a>, InspectError> {
    let files = Files::Archive(archive);
    let (entries, _): (Vec<DockerManifestEntry>, _) = files.read_json("manifest.json", None)?;
    let names = |e: &DockerManifestEntry| e.repo_tags.clone().unwrap_or_default();
    let entry = match wanted {
        Some(w) => {
            let normal = |n: &str| Reference::parse(n).map(|r| r.to_string()).unwrap_or_else(|_| n.to_string());
            entries.iter().find(|e| names(e).iter().any(|n| normal(n) == normal(w))).ok_or_else(|| {
                InspectError::NoTag {
                    path: files.origin().to_path_buf(),
                    tag: w.to_string(),
                    available: entries.iter().flat_map(names).collect::<Vec<_>>().join(", "),
                }
            })?
        }
        None if entries.len() == 1 => &entries[0],
        None if entries.is_empty() => return Err(files.layout("manifest.json lists no image".to_string())),
        None => {
            return Err(InspectError::Ambiguous {
                path: files.origin().to_path_buf(),
                count: entries.len(),
                available: entries.iter().flat_map(names).collect::<Vec<_>>().join(", "),
            });
        }
    };
    let (config, id): (ImageConfig, _) = files.read_json(&entry.config, None)?;
    if entry.layers.len() != config.rootfs.diff_ids.len() {
        return Err(InspectError::LayerCount {
            name,
            layers: entry.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let (_, size) = files.open(path)?;
        let digest = path.strip_prefix("blobs/sha256/").and_then(|hex| Digest::from_hex(hex).ok());
        layers.push(LayerInfo { diff_id: *diff_id, digest, size, media_type: None });
    }
    Ok(Opened {
        name,
        kind: SourceKind::DockerArchive,
        manifest_digest: None,
        id,
        manifest: None,
        config,
        layers,
        reader: Box::new(FileLayers { files, docker_paths: entry.layers.clone() }),
    })
}

/// Layers that are files of a layout or archive: named by digest, or (docker archives) by path.
struct FileLayers {
    files: Files,
    docker_paths: Vec<String>,
}

impl LayerReader for FileLayers {
    fn open(&self, layer: &LayerInfo, index: usize) -> Result<Box<dyn Read + Send>, InspectError> {
        let rel = match self.docker_paths.get(index) {
            Some(path) => path.clone(),
            None => blob_rel(&layer.digest.expect("layout layers have digests")),
        };
        let (reader, _) = self.files.open(&rel)?;
        Ok(match layer.digest {
            Some(expected) => Box::new(Verified { inner: Some(HashingReader::new(reader)), expected, name: rel }),
            None => reader,
        })
    }
}

/// A reader that fails at its end when what it read does not have the expected digest.
struct Verified {
    inner: Option<HashingReader<Box<dyn Read + Send>>>,
    expected: Digest,
    name: String,
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else { return Ok(0) };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let (_, actual, _) = self.inner.take().expect("checked").finish();
            if actual != self.expected {
                return Err(io::Error::other(format!(
                    "{}: content has digest {actual}, expected {}",
                    self.name, self.expected
                )));
            }
        }
        Ok(n)
    }
}

/// An archive read in place: each regular file's offset and size, found in one pass that seeks
/// over the data. A compressed archive is first decompressed into a scratch file of the store.
struct Archive {
    path: PathBuf,
    /// The tar itself: the archive, or the scratch copy of a compressed one.
    tar: PathBuf,
    entries: BTreeMap<String, (u64, u64)>,
    links: BTreeMap<String, String>,
    _scratch: Option<ScratchDir>,
}

impl Archive {
    fn index(path: &Path, store: &Store) -> Result<Archive, InspectError> {
        let mut file = File::open(path).map_err(InspectError::io(path))?;
        let mut magic = [0u8; 6];
        let got = file.read(&mut magic).map_err(InspectError::io(path))?;
        file.seek(SeekFrom::Start(0)).map_err(InspectError::io(path))?;
        let head = &magic[..got];
        let plain_tar = !(head.starts_with(&[0x1f, 0x8b])
            || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || head.starts_with(b"BZh")
            || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]));
        let (tar, scratch) = if plain_tar {
            (path.to_path_buf(), None)
        } else {
            let scratch = store.scratch_dir("inspect-archive")?;
            let tar = scratch.path().join("archive.tar");
            let mut out = File::create(&tar).map_err(InspectError::io(&tar))?;
            let mut plain = crate::layer::decompress(file).map_err(|source| InspectError::Layout {
                path: path.to_path_buf(),
                reason: format!("cannot decompress: {source}"),
            })?;
            io::copy(&mut plain, &mut out).map_err(InspectError::io(path))?;
            (tar, Some(scratch))
        };
        let (entries, links) =
            index_tar(&tar).map_err(|source| InspectError::Archive { path: path.to_path_buf(), source })?;
        Ok(Archive { path: path.to_path_buf(), tar, entries, links, _scratch: scratch })
    }

    fn open(&self, rel: &str) -> Result<(Box<dyn Read + Send>, u64), InspectError> {
        let mut key = String::from_utf8_lossy(&clean(rel.as_bytes())).into_owned();
        for _ in 0..16 {
            if let Some(&(offset, size)) = self.entries.get(&key) {
                let mut file = File::open(&self.tar).map_err(InspectError::io(&self.tar))?;
                file.seek(SeekFrom::Start(offset)).map_err(InspectError::io(&self.path))?;
                return Ok((Box::new(file.take(size)), size));
            }
            match self.links.get(&key) {
                Some(target) => key = target.clone(),
                None => break,
            }
        }
        Err(InspectError::Layout { path: self.path.clone(), reason: format!("it has no entry {rel:?}") })
    }
}

type TarIndex = (BTreeMap<String, (u64, u64)>, BTreeMap<String, String>);

fn index_tar(path: &Path) -> io::Result<TarIndex> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut entries = BTreeMap::new();
    let mut links = BTreeMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let raw = entry.path_bytes();
        let key = String::from_utf8_lossy(&clean(&raw)).into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                entries.insert(key, (entry.raw_file_position(), entry.size()));
            }
            kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                let Some(target) = entry.link_name_bytes() else { continue };
                let target = if kind == tar::EntryType::Symlink && !target.starts_with(b"/") {
                    let parent = key.rfind('/').map(|i| &key[..i]).unwrap_or("");
                    clean(&join(parent.as_bytes(), &target))
                } else {
                    clean(&target)
                };
                links.insert(key, String::from_utf8_lossy(&target).into_owned());
            }
            _ => {}
        }
    }
    Ok((entries, links))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(ImageArg::parse("busybox").unwrap(), ImageArg::Name("busybox".into()));
        assert!(matches!(ImageArg::parse("docker://127.0.0.1:5000/a:t").unwrap(), ImageArg::Registry(_)));
        assert_eq!(
            ImageArg::parse("oci:/nonexistent/dir:v1").unwrap(),
            ImageArg::OciDir { dir: "/nonexistent/dir".into(), tag: Some("v1".into()) }
        );
        assert_eq!(
            ImageArg::parse("oci-archive:/nonexistent/a.tar").unwrap(),
            ImageArg::OciArchive { file: "/nonexistent/a.tar".into(), tag: None }
        );
        assert!(ImageArg::parse("oci:").is_err());
        assert!(ImageArg::parse("docker://UPPER").is_err());
    }

    #[test]
    fn an_existing_path_keeps_its_colons() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a:b");
        std::fs::create_dir(&odd).unwrap();
        let word = format!("oci:{}", odd.display());
        assert_eq!(ImageArg::parse(&word).unwrap(), ImageArg::OciDir { dir: odd.clone(), tag: None });
        let tagged = format!("oci:{}:v2", odd.display());
        assert_eq!(ImageArg::parse(&tagged).unwrap(), ImageArg::OciDir { dir: odd, tag: Some("v2".into()) });
    }
}
