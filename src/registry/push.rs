//! `push`: an image's blobs, then its manifest, to a repository.
//!
//! Every blob is checked with `HEAD` first; a missing one is mounted from another repository of
//! the same registry when the store knows one that holds it (`POST ?mount=&from=`), else uploaded
//! from the store file (never read into memory): one `PUT` for small blobs, `PATCH` chunks with
//! `Content-Range` for big ones, resuming from the offset the registry reports (`GET` on the
//! upload URL) after a dropped connection or a 416. The session of a chunked upload is kept in
//! the store after every confirmed chunk, so a run killed mid-upload is resumed by the next one.
//! Several blobs go at once; the manifest goes last, and the registry's `Docker-Content-Digest`
//! must equal ours. A multi-platform image (`push_index`) sends every platform's blobs and
//! manifest (by digest) before the index that names them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::ahead::{Parked, UploadedAhead};
use super::auth::repository_scope;
use super::client::Client;
use super::transport::{Body, Request};
use super::{Checked, RegistryError};
use crate::image::Distributable;
use crate::oci::{Descriptor, Digest, ImageIndex, MediaType, Reference, canonical};
use crate::progress::Reporter;
use crate::store::Store;
pub(super) use upload::{cancel_upload, open_upload, patch_request};

mod upload;

/// Times one upload recovers (resume, or restart) before it fails.
const RECOVERIES: u32 = 3;
/// Repositories a cross-repository mount is tried from before a plain upload.
const MOUNT_SOURCES: usize = 3;

/// Options of `push`.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub parallel: usize,
    /// Blobs up to this size go in one `PUT`; bigger ones in `PATCH` chunks.
    pub monolithic_limit: u64,
    /// Size of one `PATCH` chunk.
    pub chunk_size: u64,
    /// Uploads an `UploadAhead` made to this destination while the image's layers were
    /// compressed: closed with their digests instead of uploading those blobs again.
    pub ahead: UploadedAhead,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions { parallel: 4, monolithic_limit: 16 << 20, chunk_size: 16 << 20, ahead: UploadedAhead::default() }
    }
}

/// What `push` did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The manifest's digest (as computed here and confirmed by the registry).
    pub digest: Digest,
    /// Blobs uploaded, and blobs the registry already had.
    pub uploaded: usize,
    pub existing: usize,
    /// Blobs the registry mounted from another of its repositories.
    pub mounted: usize,
}

/// Blobs by what happened to them.
#[derive(Debug, Default)]
struct Counts {
    uploaded: usize,
    existing: usize,
    mounted: usize,
}

/// What happened to one blob.
enum Outcome {
    Existing,
    Mounted,
    Uploaded,
}

/// How an upload began.
enum Started {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// An upload session at this URL.
    Session(Url),
}

struct Pusher<'a> {
    /// Whether a `HEAD` answering 200 is believed (cleared once a manifest `PUT` showed the
    /// registry lacks a blob it claimed).
    trust_head: AtomicBool,
    client: &'a Client,
    destination: &'a Reference,
    scope: String,
    store: &'a Store,
    options: &'a PushOptions,
    progress: &'a Reporter,
    /// Uploads that went while their blob was compressed, waiting for their closing `PUT`.
    ahead: Mutex<HashMap<Digest, Parked>>,
}

impl<'a> Pusher<'a> {
    fn new(
        client: &'a Client,
        store: &'a Store,
        destination: &'a Reference,
        options: &'a PushOptions,
        progress: &'a Reporter,
    ) -> Pusher<'a> {
        Pusher {
            trust_head: AtomicBool::new(true),
            client,
            destination,
            scope: repository_scope(destination.repository(), "pull,push"),
            store,
            options,
            progress,
            ahead: Mutex::new(options.ahead.0.clone()),
        }
    }
}

/// Pushes `image` (see `image::distributable`) to `destination` on `client`'s registry.
pub fn push(
    client: &Client,
    store: &Store,
    image: &Distributable,
    destination: &Reference,
    options: &PushOptions,
    progress: &Reporter,
) -> Result<PushReport, RegistryError> {
    let pusher = Pusher::new(client, store, destination, options, progress);
    let blobs = unique_blobs([image]);
    let counts = pusher.push_blobs(&blobs)?;
    pusher.checked(&blobs, || pusher.put_manifest(&image.manifest, &image.manifest_descriptor, &pusher.target()))?;
    Ok(PushReport {
        digest: image.manifest_descriptor.digest,
        uploaded: counts.uploaded,
        existing: counts.existing,
        mounted: counts.mounted,
    })
}

/// The layers and configs of `images`, each digest once, in order.
fn unique_blobs<'a>(images: impl IntoIterator<Item = &'a Distributable>) -> Vec<&'a Descriptor> {
    let mut blobs: Vec<&Descriptor> = Vec::new();
    for image in images {
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob);
            }
        }
    }
    blobs
}

/// One platform's image in an index being pushed.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The entry as the stored index has it (platform, annotations); its digest and size are
    /// replaced by those of `image`'s manifest.
    pub entry: Descriptor,
    /// The image's blobs and manifest, as `image::distributable` made them.
    pub image: Distributable,
}

/// A multi-platform image to push: its platforms' images and the index's own annotations.
#[derive(Debug, Clone, Default)]
pub struct IndexPush {
    pub entries: Vec<IndexEntry>,
    /// The annotations of the index pushed (the stored index's, or a build's `index:` ones).
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Pushes a multi-platform image: every entry's blobs (each once), every entry's manifest by
/// digest, then an OCI index of them to `destination`'s tag. The report's digest is the index's.
pub fn push_index(
    client: &Client,
    store: &Store,
    index: &IndexPush,
    destination: &Reference,
    options: &PushOptions,
    progress: &Reporter,
) -> Result<PushReport, RegistryError> {
    let entries = &index.entries;
    let pusher = Pusher::new(client, store, destination, options, progress);
    let blobs = unique_blobs(entries.iter().map(|e| &e.image));
    let counts = pusher.push_blobs(&blobs)?;
    let mut pushed = ImageIndex::new();
    pushed.annotations.clone_from(&index.annotations);
    for entry in entries {
        let manifest = &entry.image.manifest_descriptor;
        let target = manifest.digest.to_string();
        pusher.checked(&blobs, || pusher.put_manifest(&entry.image.manifest, manifest, &target))?;
        let mut listed = entry.entry.clone();
        listed.media_type = manifest.media_type.clone();
        listed.digest = manifest.digest;
        listed.size = manifest.size;
        pushed.manifests.push(listed);
    }
    let bytes = canonical::to_bytes(&pushed);
    let descriptor = Descriptor::new(MediaType::OciIndex, Digest::of(&bytes), bytes.len() as u64);
    pusher.put_manifest(&bytes, &descriptor, &pusher.target())?;
    Ok(PushReport {
        digest: descriptor.digest,
        uploaded: counts.uploaded,
        existing: counts.existing,
        mounted: counts.mounted,
    })
}

impl Pusher<'_> {
    fn registry(&self) -> String {
        self.client.registry().to_string()
    }

    fn repository(&self) -> &str {
        self.destination.repository()
    }

    fn wrap(&self, digest: Digest) -> impl FnOnce(RegistryError) -> RegistryError + '_ {
        move |source| RegistryError::Blob {
            registry: self.registry(),
            repository: self.repository().to_string(),
            digest,
            source: Box::new(source),
        }
    }

    /// Pushes every blob with up to `parallel` threads; returns how many went which way.
    fn push_blobs(&self, blobs: &[&Descriptor]) -> Result<Counts, RegistryError> {
        let queue = Mutex::new(blobs.iter());
        let outcome: Mutex<(Counts, Option<RegistryError>)> = Mutex::new((Counts::default(), None));
        std::thread::scope(|scope| {
            for _ in 0..self.options.parallel.max(1).min(blobs.len()) {
                scope.spawn(|| {
                    loop {
                        if outcome.lock().map(|o| o.1.is_some()).unwrap_or(true) {
                            return;
                        }
                        let next = queue.lock().ok().and_then(|mut q| q.next().copied());
                        let Some(blob) = next else { return };
                        let result = self.push_blob(blob);
                        let Ok(mut o) = outcome.lock() else { return };
                        match result {
                            Ok(Outcome::Uploaded) => o.0.uploaded += 1,
                            Ok(Outcome::Existing) => o.0.existing += 1,
                            Ok(Outcome::Mounted) => o.0.mounted += 1,
                            Err(err) => {
                                o.1.get_or_insert(err);
                                return;
                            }
                        }
                    }
                });
            }
        });
        let (counts, error) = outcome.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(err) => Err(err),
            None => Ok(counts),
        }
    }

    /// Runs `put` (a manifest `PUT`); if the registry refuses it for a blob it does not have
    /// (its `HEAD` said otherwise), uploads `blobs` again without asking and runs `put` once more.
    fn checked(&self, blobs: &[&Descriptor], put: impl Fn() -> Result<(), RegistryError>) -> Result<(), RegistryError> {
        match put() {
            Err(err) if blob_unknown(&err) => {
                tracing::warn!(error = %err, "the registry lacks blobs it said it had; uploading them again");
                self.trust_head.store(false, Ordering::SeqCst);
                self.push_blobs(blobs)?;
                put()
            }
            other => other,
        }
    }

    /// Uploads (or mounts) one blob unless the registry has it.
    fn push_blob(&self, d: &Descriptor) -> Result<Outcome, RegistryError> {
        let trust = self.trust_head.load(Ordering::SeqCst);
        let outcome = if trust && self.exists(d).map_err(self.wrap(d.digest))? {
            if let Some(parked) = self.take_parked(d) {
                // Made here but already there (another push of the same bytes): drop ours.
                cancel_upload(self.client, &self.scope, parked.location);
            }
            Outcome::Existing
        } else {
            let task = self.progress.start(|| format!("push blob sha256:{}", d.digest.short()));
            let result = self.upload(d, &task).map_err(self.wrap(d.digest));
            task.finish(result)?
        };
        // A hint for later mounts into other repositories; losing it costs only an upload.
        if let Err(err) = self.store.record_blob_sources(&self.registry(), self.repository(), &[d.digest]) {
            tracing::warn!(digest = %d.digest, error = %err, "cannot remember where the blob was pushed");
        }
        Ok(outcome)
    }

    fn exists(&self, d: &Descriptor) -> Result<bool, RegistryError> {
        let url = self.client.url(&format!("v2/{}/blobs/{}", self.repository(), d.digest))?;
        let request = Request::new(Method::HEAD, url);
        let mut response = self.client.send(request.clone(), &self.scope)?;
        match response.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.status_error(&request, &mut response)),
        }
    }

    /// The tag (or digest) the destination names.
    fn target(&self) -> String {
        match (self.destination.tag(), self.destination.digest()) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(digest)) => digest.to_string(),
            (None, None) => crate::oci::DEFAULT_TAG.to_string(),
        }
    }

    /// `PUT /v2/<name>/manifests/<target>` with our bytes; the registry's digest must be ours.
    fn put_manifest(&self, bytes: &[u8], descriptor: &Descriptor, target: &str) -> Result<(), RegistryError> {
        let ours = descriptor.digest;
        let url = self.client.url(&format!("v2/{}/manifests/{target}", self.repository()))?;
        let mut request = Request::new(Method::PUT, url);
        request.headers.insert(CONTENT_TYPE, header(&self.registry(), "Content-Type", descriptor.media_type.as_str())?);
        request.body = Body::Bytes(bytes::Bytes::copy_from_slice(bytes));
        let mut response = self.client.send(request.clone(), &self.scope)?;
        if !matches!(response.status, 200 | 201) {
            return Err(self.client.status_error(&request, &mut response));
        }
        if let Some(claimed) = response.header("docker-content-digest") {
            let theirs: Digest = claimed.parse().map_err(|_| RegistryError::Protocol {
                registry: self.registry(),
                reason: format!("invalid Docker-Content-Digest {claimed:?}"),
            })?;
            if theirs != ours {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry(),
                    repository: self.repository().to_string(),
                    what: Checked::Manifest,
                    digest: ours,
                    actual: theirs,
                });
            }
        }
        Ok(())
    }
}

fn header(registry: &str, name: &'static str, value: &str) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(value).map_err(|source| RegistryError::Header {
        registry: registry.to_string(),
        header: name,
        source,
    })
}

/// Whether a manifest `PUT` failed for a blob the registry does not have.
fn blob_unknown(err: &RegistryError) -> bool {
    matches!(err, RegistryError::Status { status: 400 | 404, detail, .. } if detail.contains("BLOB_UNKNOWN"))
}

/// Whether a failed upload session is worth starting again.
fn recoverable(err: &RegistryError) -> bool {
    match err {
        // An offset we cannot read is no offset to resume at: start over.
        RegistryError::Connect { .. } | RegistryError::UploadStatus { .. } => true,
        RegistryError::Status { status, .. } => *status == 416 || *status >= 500 || *status == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::fake::{body_bytes, client, response, route};
    use super::*;
    use crate::oci::ImageManifest;

    /// Blobs the fake registry completed, with their bytes.
    type Uploads = Arc<Mutex<Vec<(Digest, Vec<u8>)>>>;

    /// An image of one 20 000-byte layer and a config, in a fresh store.
    fn image(store: &Store) -> Distributable {
        let layer: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let layer_digest = store.write_blob(&layer, None).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = store.write_blob(config, None).unwrap();
        let config = Descriptor::new(MediaType::OciConfig, config_digest, config.len() as u64);
        let layers = vec![Descriptor::new(MediaType::OciLayerGzip, layer_digest, layer.len() as u64)];
        let manifest = canonical::to_bytes(&ImageManifest::oci(config.clone(), layers.clone()));
        let manifest_descriptor = Descriptor::new(MediaType::OciManifest, Digest::of(&manifest), manifest.len() as u64);
        Distributable { manifest, manifest_descriptor, config, layers }
    }

    /// A registry in memory: one upload session at a time, a 416 for the second chunk once.
    fn answer(
        claimed_digest: Option<String>,
        uploaded: Uploads,
    ) -> impl Fn(&Request, usize) -> super::super::Response + Send + Sync {
        let session: Mutex<Vec<u8>> = Mutex::new(Vec::new());
        let chunks = Mutex::new(0);
        move |req, _| {
            let (method, path) = route(req);
            let mut session = session.lock().unwrap();
            match method.as_str() {
                "HEAD" => response(404, &[], ""),
                "POST" => {
                    session.clear();
                    response(202, &[("location", "/v2/r/blobs/uploads/u1?_state=abc")], "")
                }
                "PATCH" => {
                    let mut n = chunks.lock().unwrap();
                    *n += 1;
                    if *n == 2 {
                        return response(416, &[], "");
                    }
                    let range = req.headers.get("content-range").unwrap().to_str().unwrap().to_string();
                    let start: usize = range.split('-').next().unwrap().parse().unwrap();
                    assert_eq!(start, session.len(), "chunk out of order: {range}");
                    session.extend(body_bytes(&req.body));
                    assert!(req.url.query().unwrap().contains("_state="), "query lost: {}", req.url);
                    let end = format!("0-{}", session.len() - 1);
                    response(202, &[("location", "/v2/r/blobs/uploads/u1?_state=def"), ("range", &end)], "")
                }
                "GET" => {
                    let end = format!("0-{}", session.len() - 1);
                    response(204, &[("range", &end), ("location", "/v2/r/blobs/uploads/u1?_state=ghi")], "")
                }
                "PUT" if path.contains("/blobs/uploads/") => {
                    session.extend(body_bytes(&req.body));
                    let digest: Digest = req.url.query_pairs().find(|(k, _)| k == "digest").unwrap().1.parse().unwrap();
                    assert_eq!(Digest::of(&session), digest);
                    uploaded.lock().unwrap().push((digest, session.clone()));
                    response(201, &[], "")
                }
                "PUT" => {
                    assert_eq!(uploaded.lock().unwrap().len(), 2, "manifest before its blobs");
                    let ours = Digest::of(&body_bytes(&req.body)).to_string();
                    let claimed = claimed_digest.clone().unwrap_or(ours);
                    response(201, &[("docker-content-digest", &claimed)], "")
                }
                other => panic!("unexpected {other} {path}"),
            }
        }
    }

    fn options() -> PushOptions {
        PushOptions { parallel: 1, monolithic_limit: 1000, chunk_size: 4096, ..PushOptions::default() }
    }

    /// Uploads made while compressing: one whose closing `PUT` is refused falls back to a plain
    /// upload; one for a blob the registry already has is cancelled (`DELETE`).
    #[test]
    fn uploads_made_while_compressing_are_closed_cancelled_or_done_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let image = image(&store);
        let (layer, config) = (image.layers[0].clone(), image.config.clone());
        let uploaded: Uploads = Arc::new(Mutex::new(Vec::new()));
        let done = uploaded.clone();
        let (client, fake) = client(None, move |req, _| {
            let (method, path) = route(req);
            let digest = req.url.query_pairs().find(|(k, _)| k == "digest").map(|(_, v)| v.to_string());
            match (method.as_str(), path.as_str()) {
                ("HEAD", p) if p.ends_with(&config.digest.to_string()) => response(200, &[], ""),
                ("HEAD", _) => response(404, &[], ""),
                ("DELETE", "/v2/r/blobs/uploads/parked-config") => response(204, &[], ""),
                ("PUT", "/v2/r/blobs/uploads/parked-layer") => {
                    response(400, &[], "{\"errors\":[{\"code\":\"DIGEST_INVALID\"}]}")
                }
                ("POST", _) => response(202, &[("location", "/v2/r/blobs/uploads/fresh")], ""),
                ("PUT", "/v2/r/blobs/uploads/fresh") => {
                    done.lock().unwrap().push((digest.unwrap().parse().unwrap(), body_bytes(&req.body)));
                    response(201, &[], "")
                }
                ("PUT", p) if p.contains("/manifests/") => {
                    let ours = Digest::of(&body_bytes(&req.body)).to_string();
                    response(201, &[("docker-content-digest", &ours)], "")
                }
                (m, p) => panic!("unexpected {m} {p}"),
            }
        });
        let parked = |name: &str, size| Parked {
            location: Url::parse(&format!("https://reg.test/v2/r/blobs/uploads/{name}")).unwrap(),
            size,
        };
        let ahead = UploadedAhead(HashMap::from([
            (layer.digest, parked("parked-layer", layer.size)),
            (image.config.digest, parked("parked-config", image.config.size)),
        ]));
        let dest = Reference::parse("reg.test/r:1").unwrap();
        let options = PushOptions { parallel: 1, ahead, ..PushOptions::default() };
        let report = push(&client, &store, &image, &dest, &options, &Reporter::silent()).unwrap();
        assert_eq!((report.uploaded, report.existing), (1, 1));
        let uploaded = uploaded.lock().unwrap();
        assert_eq!(uploaded.len(), 1);
        assert_eq!(uploaded[0], (layer.digest, store.read_blob(&layer.digest, 1 << 20).unwrap()));
        let log = fake.log.lock().unwrap();
        assert!(log.iter().any(|(m, u, _)| m == "DELETE" && u.ends_with("parked-config")), "{log:?}");
        assert!(log.iter().any(|(m, u, _)| m == "PUT" && u.contains("parked-layer?digest=")), "{log:?}");
    }

    #[test]
    fn chunked_upload_resumes_at_the_reported_offset_and_manifest_goes_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let image = image(&store);
        let uploaded = Arc::new(Mutex::new(Vec::new()));
        let (client, fake) = client(None, answer(None, uploaded.clone()));
        let dest = Reference::parse("reg.test/r:1").unwrap();
        let report = push(&client, &store, &image, &dest, &options(), &Reporter::silent()).unwrap();
        assert_eq!(report.digest, image.manifest_descriptor.digest);
        assert_eq!((report.uploaded, report.existing, report.mounted), (2, 0, 0));
        let uploaded = uploaded.lock().unwrap();
        let layer = uploaded.iter().find(|(d, _)| *d == image.layers[0].digest).unwrap();
        assert_eq!(layer.1, store.read_blob(&image.layers[0].digest, 1 << 20).unwrap());
        let log = fake.log.lock().unwrap();
        assert!(log.iter().any(|(m, _, _)| m == "GET"), "no upload status request: {log:?}");
        assert!(log.last().unwrap().1.ends_with("/manifests/1"), "{log:?}");
    }

    #[test]
    fn wrong_docker_content_digest_fails_the_push() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let image = image(&store);
        let wrong = Digest::of(b"x").to_string();
        let (client, _) = client(None, answer(Some(wrong), Arc::new(Mutex::new(Vec::new()))));
        let dest = Reference::parse("reg.test/r:1").unwrap();
        let err = push(&client, &store, &image, &dest, &options(), &Reporter::silent()).unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { what: Checked::Manifest, .. }), "{err}");
    }

    /// Monolithic uploads answered 204 (not 201): believed only when a `HEAD` then finds the blob.
    fn answer_204(keeps: bool) -> impl Fn(&Request, usize) -> super::super::Response + Send + Sync {
        let stored: Mutex<Vec<Digest>> = Mutex::new(Vec::new());
        move |req, _| {
            let (method, path) = route(req);
            let mut stored = stored.lock().unwrap();
            match method.as_str() {
                "HEAD" => {
                    let found = stored.iter().any(|d| path.ends_with(&d.to_string()));
                    response(if found { 200 } else { 404 }, &[], "")
                }
                "POST" => response(202, &[("location", "/v2/r/blobs/uploads/u1")], ""),
                "PUT" if path.contains("/blobs/uploads/") => {
                    let digest: Digest = req.url.query_pairs().find(|(k, _)| k == "digest").unwrap().1.parse().unwrap();
                    if keeps {
                        stored.push(digest);
                    }
                    response(204, &[], "")
                }
                "PUT" => {
                    response(201, &[("docker-content-digest", &Digest::of(&body_bytes(&req.body)).to_string())], "")
                }
                other => panic!("unexpected {other} {path}"),
            }
        }
    }

    #[test]
    fn a_204_to_the_closing_put_is_checked_with_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let image = image(&store);
        let dest = Reference::parse("reg.test/r:1").unwrap();
        let opts =
            PushOptions { parallel: 1, monolithic_limit: 1 << 20, chunk_size: 1 << 20, ..PushOptions::default() };
        let (kept, _) = client(None, answer_204(true));
        push(&kept, &store, &image, &dest, &opts, &Reporter::silent()).unwrap();
        let (lost, _) = client(None, answer_204(false));
        let err = push(&lost, &store, &image, &dest, &opts, &Reporter::silent()).unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(chain.contains("answered 204 but the blob is not there"), "{chain}");
    }
}
