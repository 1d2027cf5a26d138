//! `pull`: a reference's manifest (through an index to one platform), config and layers into
//! the store, every byte verified before it is committed.
//!
//! Manifests are stored exactly as received; their digest is computed here (it must equal a
//! pinned reference's digest and `Docker-Content-Digest` when sent). Blobs stream into
//! `Store::ingest` with the descriptor's digest and size, several at once, resuming with `Range`
//! after a dropped connection. Each layer's uncompressed digest is checked against the config's
//! diff ids before the reference is tagged. An index is stored as received, but the tag names
//! the chosen platform's manifest: only that platform's blobs are fetched.

use std::io::{Read, Write};
use std::sync::Mutex;

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue, RANGE};

use super::auth::repository_scope;
use super::client::Client;
use super::transport::{Request, Response};
use super::{Checked, RegistryError};
use crate::image::MAX_JSON_BLOB;
use crate::oci::{
    Descriptor, DiffId, Digest, ImageConfig, ImageIndex, ImageManifest, MediaType, Platform, Reference, canonical,
};
use crate::progress::{Reporter, Unit};
use crate::store::{Lease, Store};

/// Media types a manifest request accepts.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Times one blob download resumes after a broken connection.
const RESUMES: u32 = 4;

/// Options of `pull`.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform an index resolves to.
    pub platform: Platform,
    /// Blobs downloaded at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions { platform: Platform::host(), parallel: 4 }
    }
}

/// What `pull` did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// What the reference named in the registry (an index or a manifest), stored as received.
    pub descriptor: Descriptor,
    /// The platform's manifest, which the reference now names in the store.
    pub manifest: Descriptor,
    /// The image id (config digest).
    pub id: Digest,
    /// Blobs downloaded, and blobs already in the store.
    pub fetched: usize,
    pub skipped: usize,
}

/// Largest manifest or index read from a registry (distribution refuses bigger ones on push).
const MAX_MANIFEST: u64 = 4 << 20;

/// Reads one reference's image from a registry into the store, under the caller's lease: its
/// manifest and config (`image`), then the layers the caller asks for (`layers`). `pull` is both
/// with a tag; `slipway history`/`diff`/`layers` read only the layers their answer needs.
pub struct Fetcher<'a> {
    client: &'a Client,
    reference: &'a Reference,
    scope: String,
    store: &'a Store,
    lease: &'a Lease,
    progress: &'a Reporter,
}

/// A registry image whose manifest and config are in the store (under the fetcher's lease) and
/// whose layers may not be.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// What the reference named in the registry (an index or a manifest), stored as received.
    pub top: Descriptor,
    /// The platform's manifest.
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    /// Whether the config had to be downloaded (it was not in the store).
    pub config_fetched: bool,
}

/// Pulls `reference` from `client`'s registry into `store` and tags it there.
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &Reporter,
) -> Result<PullReport, RegistryError> {
    let lease = store.lease("pull")?;
    let report = pull_leased(client, store, reference, options, &lease, progress)?;
    // The tag names the platform's manifest, not the index: a tag must have its whole closure in
    // the store, and the other platforms' images are not fetched.
    store.set_tag(reference, report.manifest.clone())?;
    Ok(report)
}

/// [`pull`] without the tag: the image is kept by the caller's `lease` alone (a build's base for
/// another platform than the one the store names, kept by the image built on it).
pub fn pull_leased(
    client: &Client,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    lease: &Lease,
    progress: &Reporter,
) -> Result<PullReport, RegistryError> {
    let fetcher = Fetcher::new(client, store, reference, lease, progress);
    let remote = fetcher.image(&options.platform)?;
    let all: Vec<usize> = (0..remote.manifest.layers.len()).collect();
    let (fetched, skipped) = fetcher.layers(&remote, &all, options.parallel)?;
    let descriptor = remote.manifest_descriptor.clone();
    // A hint for pushes to other repositories of this registry (cross-repository mount).
    let mut sources: Vec<Digest> = remote.manifest.layers.iter().map(|l| l.digest).collect();
    sources.push(remote.manifest.config.digest);
    if let Err(err) = store.record_blob_sources(client.registry(), reference.repository(), &sources) {
        tracing::warn!(error = %err, "cannot remember where the blobs came from");
    }
    Ok(PullReport {
        descriptor: remote.top,
        manifest: descriptor,
        id: remote.manifest.config.digest,
        fetched: fetched + usize::from(remote.config_fetched),
        skipped: skipped + usize::from(!remote.config_fetched),
    })
}

/// Pulls `reference` from the first of `mirrors` that has it, else from its own registry.
/// `connect` makes the client for a registry (`host[:port]`); a mirror that cannot be reached
/// or does not have the image is passed over (logged), and the registry's own error is the one
/// returned. The store names the image by `reference` whichever served it.
pub fn pull_with_mirrors(
    mirrors: &[String],
    connect: &dyn Fn(&str) -> Result<Client, RegistryError>,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &Reporter,
) -> Result<PullReport, RegistryError> {
    from_mirrors(mirrors, connect, reference, |client| pull(client, store, reference, options, progress))
}

/// [`pull_leased`] from the first of `mirrors` that has it, else from its own registry.
pub fn pull_leased_with_mirrors(
    mirrors: &[String],
    connect: &dyn Fn(&str) -> Result<Client, RegistryError>,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    lease: &Lease,
    progress: &Reporter,
) -> Result<PullReport, RegistryError> {
    from_mirrors(mirrors, connect, reference, |client| pull_leased(client, store, reference, options, lease, progress))
}

/// `get` from the first mirror that answers, else from the reference's registry.
fn from_mirrors(
    mirrors: &[String],
    connect: &dyn Fn(&str) -> Result<Client, RegistryError>,
    reference: &Reference,
    get: impl Fn(&Client) -> Result<PullReport, RegistryError>,
) -> Result<PullReport, RegistryError> {
    for mirror in mirrors {
        match connect(mirror).and_then(|client| get(&client)) {
            Ok(report) => return Ok(report),
            Err(err) => tracing::warn!(mirror, error = %err, "mirror failed; trying the next source"),
        }
    }
    let client = connect(reference.registry())?;
    get(&client)
}

impl<'a> Fetcher<'a> {
    pub fn new(
        client: &'a Client,
        store: &'a Store,
        reference: &'a Reference,
        lease: &'a Lease,
        progress: &'a Reporter,
    ) -> Fetcher<'a> {
        let scope = repository_scope(reference.repository(), "pull");
        Fetcher { client, reference, scope, store, lease, progress }
    }

    /// Fetches what the reference names — through an index to `platform`'s manifest — and that
    /// manifest's config into the store, every byte verified; no layer is read.
    pub fn image(&self, platform: &Platform) -> Result<RemoteImage, RegistryError> {
        let wanted = match (self.reference.digest(), self.reference.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => crate::oci::DEFAULT_TAG.to_string(),
        };
        let top = self.fetch_manifest(&wanted, self.reference.digest().copied())?;
        let mut descriptor = top.clone();
        for _ in 0..4 {
            if !descriptor.media_type.is_index() {
                break;
            }
            let bytes = self.store.read_blob(&descriptor.digest, MAX_JSON_BLOB)?;
            let index: ImageIndex = self.decode("index", &descriptor.digest, &bytes)?;
            let pick =
                index.manifests.iter().find(|m| m.platform.as_ref().is_some_and(|p| p.matches(platform))).ok_or_else(
                    || RegistryError::NoPlatform {
                        registry: self.registry(),
                        repository: self.repository(),
                        reference: self.reference.to_string(),
                        platform: platform.to_string(),
                    },
                )?;
            descriptor = self.fetch_manifest(&pick.digest.to_string(), Some(pick.digest))?;
        }
        if !descriptor.media_type.is_manifest() {
            return Err(RegistryError::UnsupportedMediaType {
                registry: self.registry(),
                repository: self.repository(),
                media_type: descriptor.media_type.to_string(),
                digest: descriptor.digest,
            });
        }
        let bytes = self.store.read_blob(&descriptor.digest, MAX_JSON_BLOB)?;
        let manifest: ImageManifest = self.decode("manifest", &descriptor.digest, &bytes)?;
        let config_fetched = !self.store.has_blob(&manifest.config.digest);
        if config_fetched {
            self.fetch_blob(&manifest.config)?;
        } else {
            self.lease.add(&manifest.config.digest)?;
        }
        let config_bytes = self.store.read_blob(&manifest.config.digest, MAX_JSON_BLOB)?;
        let config: ImageConfig = self.decode("config", &manifest.config.digest, &config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::Protocol {
                registry: self.registry(),
                reason: format!(
                    "{}: manifest {} has {} layers but config {} lists {} diff ids",
                    self.repository(),
                    descriptor.digest,
                    manifest.layers.len(),
                    manifest.config.digest,
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(RemoteImage { top, manifest_descriptor: descriptor, manifest, config, config_fetched })
    }

    /// Brings layers `indices` of `remote` into the store (up to `parallel` downloads at once),
    /// each checked against its diff id; returns how many were downloaded and how many were
    /// already there.
    pub fn layers(
        &self,
        remote: &RemoteImage,
        indices: &[usize],
        parallel: usize,
    ) -> Result<(usize, usize), RegistryError> {
        let mut missing: Vec<&Descriptor> = Vec::new();
        let mut skipped = 0;
        for &i in indices {
            let layer = &remote.manifest.layers[i];
            if self.store.has_blob(&layer.digest) {
                self.lease.add(&layer.digest)?;
                skipped += 1;
            } else if !missing.iter().any(|d| d.digest == layer.digest) {
                missing.push(layer);
            }
        }
        self.fetch_parallel(&missing, parallel.max(1))?;
        for &i in indices {
            self.verify_layer(remote.config.rootfs.diff_ids[i], &remote.manifest.layers[i])?;
        }
        Ok((missing.len(), skipped))
    }
    fn registry(&self) -> String {
        self.client.registry().to_string()
    }

    fn repository(&self) -> String {
        self.reference.repository().to_string()
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<T, RegistryError> {
        canonical::from_bytes(what, bytes).map_err(|source| RegistryError::Decode {
            registry: self.registry(),
            repository: self.repository(),
            what,
            digest: *digest,
            source: Box::new(source),
        })
    }

    /// GETs manifest `wanted` (a tag or digest), checks its digest, stores its bytes as received.
    fn fetch_manifest(&self, wanted: &str, pinned: Option<Digest>) -> Result<Descriptor, RegistryError> {
        let url = self.client.url(&format!("v2/{}/manifests/{wanted}", self.reference.repository()))?;
        let mut request = Request::new(Method::GET, url);
        request.headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let mut response = self.client.send(request.clone(), &self.scope)?;
        if response.status != 200 {
            return Err(self.client.status_error(&request, &mut response));
        }
        let bytes = response.read_limited(MAX_MANIFEST).map_err(|_| RegistryError::TooLarge {
            registry: self.registry(),
            repository: self.repository(),
            what: "manifest",
            digest: wanted.to_string(),
            limit: MAX_MANIFEST,
        })?;
        let digest = Digest::of(&bytes);
        let claimed = response.header("docker-content-digest").map(str::to_string);
        for expected in pinned.into_iter().chain(claimed.and_then(|c| c.parse::<Digest>().ok())) {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry(),
                    repository: self.repository(),
                    what: Checked::Manifest,
                    digest: expected,
                    actual: digest,
                });
            }
        }
        let media_type = self.manifest_media_type(&response, &bytes, &digest)?;
        self.store.write_blob(&bytes, Some(self.lease))?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// The media type the body declares; the body's own `mediaType` wins over the header, and it
    /// must agree with the document's shape (an index has `manifests`, a manifest `layers`).
    fn manifest_media_type(
        &self,
        response: &Response,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<MediaType, RegistryError> {
        let versioned: crate::oci::Versioned = self.decode("manifest", digest, bytes)?;
        let header = response.header("content-type").and_then(|v| v.split(';').next()).map(str::trim);
        self.refuse_confusing(&versioned, header, digest)?;
        let media_type = match (versioned.media_type, header) {
            (Some(m), _) => m,
            (None, Some(h)) => h.parse::<MediaType>().map_err(|_| RegistryError::UnsupportedMediaType {
                registry: self.registry(),
                repository: self.repository(),
                media_type: h.to_string(),
                digest: *digest,
            })?,
            (None, None) if versioned.manifests.is_some() => MediaType::OciIndex,
            (None, None) => MediaType::OciManifest,
        };
        let shape_ok = if media_type.is_index() {
            versioned.manifests.is_some()
        } else {
            media_type.is_manifest() && versioned.manifests.is_none()
        };
        if !shape_ok {
            return Err(RegistryError::UnsupportedMediaType {
                registry: self.registry(),
                repository: self.repository(),
                media_type: media_type.to_string(),
                digest: *digest,
            });
        }
        Ok(media_type)
    }

    /// Refuses what containerd refuses since CVE-2021-41190: a schema 1 manifest, a body whose
    /// `mediaType` is another document kind than its `Content-Type` names, and a document with
    /// both `manifests` and `layers`/`config` (catalogue C13).
    fn refuse_confusing(
        &self,
        versioned: &crate::oci::Versioned,
        header: Option<&str>,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let schema1 = |m: &MediaType| matches!(m, MediaType::DockerManifestV1 | MediaType::DockerManifestV1Signed);
        let header_type = header.and_then(|h| h.parse::<MediaType>().ok());
        if versioned.schema_version == 1
            || versioned.media_type.as_ref().is_some_and(schema1)
            || (versioned.media_type.is_none() && header_type.as_ref().is_some_and(schema1))
        {
            return Err(RegistryError::Schema1 {
                registry: self.registry(),
                repository: self.repository(),
                digest: *digest,
            });
        }
        let document = |m: &MediaType| m.is_index() || m.is_manifest() || schema1(m);
        if let (Some(body), Some(served)) = (&versioned.media_type, &header_type)
            && document(served)
            && body != served
        {
            return Err(RegistryError::MediaTypeMismatch {
                registry: self.registry(),
                repository: self.repository(),
                digest: *digest,
                body: body.as_str().into(),
                header: served.as_str().into(),
            });
        }
        if versioned.manifests.is_some() && (versioned.layers.is_some() || versioned.config.is_some()) {
            return Err(RegistryError::AmbiguousManifest {
                registry: self.registry(),
                repository: self.repository(),
                digest: *digest,
            });
        }
        Ok(())
    }

    /// Downloads `blobs` with up to `parallel` threads; the first error wins.
    fn fetch_parallel(&self, blobs: &[&Descriptor], parallel: usize) -> Result<(), RegistryError> {
        let queue = Mutex::new(blobs.iter());
        let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..parallel.min(blobs.len()) {
                scope.spawn(|| {
                    loop {
                        if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                            return;
                        }
                        let next = queue.lock().ok().and_then(|mut q| q.next().copied());
                        let Some(blob) = next else { return };
                        if let Err(err) = self.fetch_blob(blob) {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(err);
                            }
                            return;
                        }
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Streams blob `d` into the store, resuming with `Range` after a broken connection.
    fn fetch_blob(&self, d: &Descriptor) -> Result<(), RegistryError> {
        let task = self.progress.start(|| format!("pull blob sha256:{}", d.digest.short()));
        let result = self.fetch_blob_inner(d, &task).map_err(|source| RegistryError::Blob {
            registry: self.registry(),
            repository: self.repository(),
            digest: d.digest,
            source: Box::new(source),
        });
        task.finish(result)
    }

    fn fetch_blob_inner(&self, d: &Descriptor, task: &crate::progress::Task) -> Result<(), RegistryError> {
        let url = self.client.url(&format!("v2/{}/blobs/{}", self.reference.repository(), d.digest))?;
        let mut ingest = self.store.ingest()?;
        let mut meter = task.meter(Some(d.size), Unit::Bytes);
        let mut resumes = 0;
        loop {
            let offset = ingest.len();
            let mut request = Request::new(Method::GET, url.clone());
            if offset > 0 {
                let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(|source| RegistryError::Header { registry: self.registry(), header: "Range", source })?;
                request.headers.insert(RANGE, range);
            }
            let mut response = self.client.send(request.clone(), &self.scope)?;
            let mut skip = 0;
            match response.status {
                200 => skip = offset,
                206 if content_range_start(&response) == Some(offset) => {}
                416 if offset >= d.size => break,
                _ => return Err(self.client.status_error(&request, &mut response)),
            }
            match copy_body(&mut response.body, &mut ingest, skip, d.size, &mut meter) {
                Ok(()) => break,
                Err(CopyError::Read(err)) if resumes < RESUMES => {
                    resumes += 1;
                    tracing::warn!(digest = %d.digest, at = ingest.len(), error = %err, "download broke; resuming");
                }
                Err(CopyError::Read(source)) => {
                    return Err(RegistryError::Io { what: format!("blob {} from {url}", d.digest), source });
                }
                Err(CopyError::Write(source)) => {
                    return Err(RegistryError::Io { what: format!("writing {}", ingest.path().display()), source });
                }
                Err(CopyError::TooLong) => {
                    return Err(RegistryError::TooLarge {
                        registry: self.registry(),
                        repository: self.repository(),
                        what: "blob",
                        digest: d.digest.to_string(),
                        limit: d.size,
                    });
                }
            }
        }
        meter.flush();
        ingest.commit(Some((d.digest, d.size)), Some(self.lease)).map_err(|source| RegistryError::Store {
            registry: self.registry(),
            repository: self.repository(),
            digest: d.digest,
            source: Box::new(source),
        })?;
        Ok(())
    }

    /// Checks that layer `d` decompresses to `diff_id` (once per blob) and records the pair.
    fn verify_layer(&self, diff_id: DiffId, d: &Descriptor) -> Result<(), RegistryError> {
        if self.store.layer_blobs(diff_id)?.iter().any(|known| known.digest == d.digest) {
            return Ok(());
        }
        let task = self.progress.start(|| format!("verify layer sha256:{}", d.digest.short()));
        let result = (|| {
            let file = self.store.open_blob(&d.digest)?;
            let mut plain = crate::layer::decompress(Box::new(file))?;
            let mut hasher = crate::oci::HashingWriter::new(std::io::sink());
            std::io::copy(&mut plain, &mut hasher)
                .map_err(|source| RegistryError::Io { what: format!("layer {}", d.digest), source })?;
            let (_, actual, _) = hasher.finish();
            if actual != diff_id.digest() {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry(),
                    repository: self.repository(),
                    what: Checked::LayerDiffId,
                    digest: diff_id.digest(),
                    actual,
                });
            }
            self.store.record_layer_blob(diff_id, d)?;
            Ok(())
        })();
        task.finish(result)
    }
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    TooLong,
}

/// Copies `body` into `out`, dropping the first `skip` bytes, never beyond `limit` bytes in `out`.
fn copy_body(
    body: &mut dyn Read,
    out: &mut crate::store::Ingest,
    mut skip: u64,
    limit: u64,
    meter: &mut crate::progress::Meter,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let mut chunk = &buf[..n];
        if skip > 0 {
            let dropped = skip.min(chunk.len() as u64);
            chunk = &chunk[dropped as usize..];
            skip -= dropped;
        }
        if out.len() + chunk.len() as u64 > limit {
            return Err(CopyError::TooLong);
        }
        out.write_all(chunk).map_err(CopyError::Write)?;
        meter.add(chunk.len() as u64);
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn content_range_start(response: &Response) -> Option<u64> {
    let value = response.header("content-range")?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::super::fake::{client, response, route};
    use super::*;

    /// A body that yields `head` and then fails like a dropped connection.
    struct Broken(std::io::Cursor<Vec<u8>>);

    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset")),
                n => Ok(n),
            }
        }
    }

    /// Pseudo-random bytes, so that gzip cannot shrink them to nothing.
    pub(crate) fn noise(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn broken_download_resumes_with_range_and_layers_are_verified() {
        let plain = noise(200_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let layer = gz.finish().unwrap();
        let layer_digest = Digest::of(&layer);
        let diff_id = Digest::of(&plain);
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)
                .into_bytes();
        let config_desc = Descriptor::new(MediaType::OciConfig, Digest::of(&config), config.len() as u64);
        let layer_desc =
            Descriptor::new(MediaType::oci_layer(crate::oci::LayerCompression::Gzip), layer_digest, layer.len() as u64);
        let manifest = canonical::to_bytes(&ImageManifest::oci(config_desc.clone(), vec![layer_desc]));
        let half = layer.len() / 2;
        let (client, fake) = client(None, move |req, _| {
            let (_, path) = route(req);
            if path.ends_with("/manifests/1") {
                return response(
                    200,
                    &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                    std::str::from_utf8(&manifest).unwrap(),
                );
            }
            if path.ends_with(&config_desc.digest.to_string()) {
                return response(200, &[], std::str::from_utf8(&config).unwrap());
            }
            match req.headers.get(RANGE).map(|v| v.to_str().unwrap().to_string()) {
                None => {
                    let mut r = response(200, &[], "");
                    r.body = Box::new(Broken(std::io::Cursor::new(layer[..half].to_vec())));
                    r
                }
                Some(range) => {
                    assert_eq!(range, format!("bytes={half}-"));
                    let mut r = response(
                        206,
                        &[("content-range", &format!("bytes {half}-{}/{}", layer.len() - 1, layer.len()))],
                        "",
                    );
                    r.body = Box::new(std::io::Cursor::new(layer[half..].to_vec()));
                    r
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let reference = Reference::parse("reg.test/r:1").unwrap();
        let options = PullOptions { platform: Platform::new("linux", "amd64", None), parallel: 2 };
        let report = pull(&client, &store, &reference, &options, &Reporter::silent()).unwrap();
        assert_eq!(
            report.id,
            Digest::of(
                &format!(
                    r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
                )
                .into_bytes()
            )
        );
        assert!(store.has_blob(&layer_digest));
        assert_eq!(store.layer_blobs(DiffId(diff_id)).unwrap().len(), 1);
        assert!(store.get_tag(&reference).unwrap().is_some());
        let log = fake.log.lock().unwrap();
        assert_eq!(log.iter().filter(|(_, url, _)| url.ends_with(&layer_digest.to_string())).count(), 2, "{log:?}");
    }

    #[test]
    fn manifest_not_matching_its_pinned_digest_is_refused() {
        let (client, _) =
            client(None, |_, _| response(200, &[("content-type", "application/vnd.oci.image.manifest.v1+json")], "{}"));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let wanted = Digest::of(b"something else");
        let reference = Reference::parse(&format!("reg.test/r@{wanted}")).unwrap();
        let err = pull(&client, &store, &reference, &PullOptions::default(), &Reporter::silent()).unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { what: Checked::Manifest, .. }), "{err}");
        assert!(!store.has_blob(&Digest::of(b"{}")));
    }

    #[test]
    fn index_resolves_to_the_requested_platform() {
        let config = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let config_desc = Descriptor::new(MediaType::OciConfig, Digest::of(&config), config.len() as u64);
        let manifest = canonical::to_bytes(&ImageManifest::oci(config_desc.clone(), vec![]));
        let mut arm = Descriptor::new(MediaType::OciManifest, Digest::of(&manifest), manifest.len() as u64);
        arm.platform = Some(Platform::new("linux", "arm64", None));
        let mut amd = Descriptor::new(MediaType::OciManifest, Digest::of(b"not fetched"), 11);
        amd.platform = Some(Platform::new("linux", "amd64", None));
        let mut index = ImageIndex::new();
        index.manifests = vec![amd.clone(), arm.clone()];
        let index = canonical::to_bytes(&index);
        let arm_digest = arm.digest.to_string();
        let (client, fake) = client(None, move |req, _| {
            let (_, path) = route(req);
            let text = |b: &[u8]| std::str::from_utf8(b).unwrap().to_string();
            if path.ends_with("/manifests/1") {
                response(200, &[("content-type", "application/vnd.oci.image.index.v1+json")], &text(&index))
            } else if path.ends_with(&format!("/manifests/{arm_digest}")) {
                response(200, &[("docker-content-digest", &arm_digest)], &text(&manifest))
            } else if path.ends_with(&config_desc.digest.to_string()) {
                response(200, &[], &text(&config))
            } else {
                response(404, &[], "")
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let reference = Reference::parse("reg.test/r:1").unwrap();
        let options = PullOptions { platform: Platform::new("linux", "arm64", None), parallel: 4 };
        let report = pull(&client, &store, &reference, &options, &Reporter::silent()).unwrap();
        assert!(report.descriptor.media_type.is_index());
        assert_eq!(report.manifest.digest, arm.digest);
        assert_eq!(store.get_tag(&reference).unwrap().unwrap().digest, arm.digest);
        assert!(store.has_blob(&report.descriptor.digest), "index bytes not stored");
        let log = fake.log.lock().unwrap().clone();
        assert!(!log.iter().any(|(_, url, _)| url.contains(&amd.digest.to_string())), "{log:?}");

        let options = PullOptions { platform: Platform::new("linux", "s390x", None), parallel: 4 };
        let err = pull(&client, &store, &reference, &options, &Reporter::silent()).unwrap_err();
        assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    }
}
