//! Blob upload sessions of a push: resuming a remembered session, mounting, starting one
//! (`POST`), sending a blob whole or in `PATCH` chunks that resume at the registry's offset, and
//! closing it (`PUT ?digest=`). The request-level pieces are shared with `ahead`'s uploads made
//! while compressing.

use reqwest::Method;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::super::RegistryError;
use super::super::auth::repository_scope;
use super::super::client::Client;
use super::super::transport::{Body, Request};
use super::{MOUNT_SOURCES, Outcome, Parked, Pusher, RECOVERIES, Started, header, recoverable};
use crate::oci::Descriptor;
use crate::progress::Unit;
use crate::store::UploadSession;

/// `POST /v2/<repository>/blobs/uploads/` → the upload URL of a new session.
pub(in crate::registry) fn open_upload(client: &Client, repository: &str, scope: &str) -> Result<Url, RegistryError> {
    let url = client.url(&format!("v2/{repository}/blobs/uploads/"))?;
    let request = Request::new(Method::POST, url);
    let mut response = client.send(request.clone(), scope)?;
    if response.status != 202 {
        return Err(client.status_error(&request, &mut response));
    }
    client.location(&request.url, &response)
}

/// A `PATCH` of `body` at `offset` of the session at `location` (`Content-Range`).
pub(in crate::registry) fn patch_request(
    client: &Client,
    location: &Url,
    offset: u64,
    body: Body,
) -> Result<Request, RegistryError> {
    let end = offset + body.len();
    let mut request = Request::new(Method::PATCH, location.clone());
    request.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    let range = format!("{offset}-{}", end.saturating_sub(1));
    request.headers.insert("content-range", header(client.registry(), "Content-Range", &range)?);
    request.body = body;
    Ok(request)
}

/// Best effort: `DELETE` an upload that will not be finished (a registry forgets it anyway).
pub(in crate::registry) fn cancel_upload(client: &Client, scope: &str, location: Url) {
    let request = Request::new(Method::DELETE, location);
    if let Err(err) = client.send_once(&request, scope) {
        tracing::debug!(error = %err, "cannot cancel an unfinished upload");
    }
}

impl Pusher<'_> {
    /// A remembered session (see `resume`), a mount, or one new upload session after another
    /// until one completes (at most `RECOVERIES` restarts).
    pub(super) fn upload(&self, d: &Descriptor, task: &crate::progress::Task) -> Result<Outcome, RegistryError> {
        if !self.store.has_blob(&d.digest) {
            // A layer of an imported build cache, never downloaded: only a mount brings it here.
            return match self.start_upload(d)? {
                Started::Mounted => Ok(Outcome::Mounted),
                Started::Session(_) => Err(RegistryError::Unmountable {
                    registry: self.registry(),
                    repository: self.repository().to_string(),
                    digest: d.digest,
                }),
            };
        }
        let path = self.store.blob_path(&d.digest);
        if self.store.blob_size(&d.digest)? != d.size {
            return Err(RegistryError::Protocol {
                registry: self.registry(),
                reason: format!("blob {} in the store does not have size {}", d.digest, d.size),
            });
        }
        if let Some(parked) = self.take_parked(d) {
            match self.finish_upload(parked.location, d, Body::Empty) {
                Ok(()) => return Ok(Outcome::Uploaded),
                Err(err) => {
                    tracing::warn!(digest = %d.digest, error = %err, "closing the upload made while compressing failed; uploading again")
                }
            }
        }
        let chunked = d.size > self.options.monolithic_limit;
        let mut resumed = if chunked { self.resume(d)? } else { None };
        let mut restarts = 0;
        loop {
            let (location, offset) = match resumed.take() {
                Some(session) => session,
                None => match self.start_upload(d)? {
                    Started::Mounted => return Ok(Outcome::Mounted),
                    Started::Session(location) => (location, 0),
                },
            };
            let result = if chunked {
                self.put_chunked(location, offset, d, &path, task)
            } else {
                self.put_whole(location, d, &path)
            };
            match result {
                Err(err) if restarts < RECOVERIES && recoverable(&err) => {
                    restarts += 1;
                    self.forget_session(d);
                    tracing::warn!(digest = %d.digest, error = %err, "upload failed; starting it again");
                }
                Err(err) => return Err(err),
                Ok(()) => {
                    self.forget_session(d);
                    return Ok(Outcome::Uploaded);
                }
            }
        }
    }

    /// The session an earlier run left (killed, or failed for good) if the registry still has
    /// it: (upload URL, offset to continue at) from its upload status.
    fn resume(&self, d: &Descriptor) -> Result<Option<(Url, u64)>, RegistryError> {
        let Some(session) = self.store.upload_session(&self.registry(), self.repository(), &d.digest)? else {
            return Ok(None);
        };
        let location = match Url::parse(&session.url) {
            Ok(url) if self.client.check_target(&url).is_ok() => url,
            _ => {
                tracing::warn!(url = session.url, "ignoring a remembered upload URL this registry may not use");
                self.forget_session(d);
                return Ok(None);
            }
        };
        match self.upload_status(&location) {
            Ok((location, offset)) if offset <= d.size => {
                tracing::info!(digest = %d.digest, offset, confirmed = session.confirmed, "resuming an earlier upload");
                Ok(Some((location, offset)))
            }
            Ok((_, offset)) => {
                tracing::warn!(digest = %d.digest, offset, "the registry holds more than the blob; starting over");
                self.forget_session(d);
                Ok(None)
            }
            Err(err) => {
                tracing::info!(digest = %d.digest, error = %err, "the earlier upload is gone; starting over");
                self.forget_session(d);
                Ok(None)
            }
        }
    }

    fn remember_session(&self, d: &Descriptor, location: &Url, confirmed: u64) {
        let session = UploadSession {
            registry: self.registry(),
            repository: self.repository().to_string(),
            digest: d.digest,
            url: location.to_string(),
            confirmed,
        };
        if let Err(err) = self.store.record_upload(&session) {
            tracing::warn!(digest = %d.digest, error = %err, "cannot remember the upload session");
        }
    }

    fn forget_source(&self, repository: &str, d: &Descriptor) {
        if let Err(err) = self.store.forget_blob_source(&self.registry(), repository, &d.digest) {
            tracing::warn!(digest = %d.digest, error = %err, "cannot forget a blob source");
        }
    }

    fn forget_session(&self, d: &Descriptor) {
        if let Err(err) = self.store.forget_upload(&self.registry(), self.repository(), &d.digest) {
            tracing::warn!(digest = %d.digest, error = %err, "cannot forget the upload session");
        }
    }

    /// Tries a cross-repository mount from each repository of this registry the store knows to
    /// hold the blob; else (or when the registry answers a mount with a plain session, 202)
    /// `POST /v2/<name>/blobs/uploads/` → the upload URL.
    fn start_upload(&self, d: &Descriptor) -> Result<Started, RegistryError> {
        let sources = self.store.blob_sources(&self.registry(), &d.digest)?;
        for from in sources.iter().filter(|r| r.as_str() != self.repository()).take(MOUNT_SOURCES) {
            let mut url = self.client.url(&format!("v2/{}/blobs/uploads/", self.repository()))?;
            url.query_pairs_mut().append_pair("mount", &d.digest.to_string()).append_pair("from", from);
            let scope = format!("{} {}", self.scope, repository_scope(from, "pull"));
            let request = Request::new(Method::POST, url);
            let response = self.client.send(request.clone(), &scope)?;
            match response.status {
                201 => {
                    tracing::debug!(digest = %d.digest, from, "mounted");
                    return Ok(Started::Mounted);
                }
                // The registry could not mount (not there, or not allowed) and opened a session.
                202 => {
                    self.forget_source(from, d);
                    return Ok(Started::Session(self.client.location(&request.url, &response)?));
                }
                status => {
                    tracing::debug!(digest = %d.digest, from, status, "mount refused; forgetting that source");
                    self.forget_source(from, d);
                }
            }
        }
        Ok(Started::Session(open_upload(self.client, self.repository(), &self.scope)?))
    }

    /// The whole blob in the closing `PUT ?digest=`.
    fn put_whole(&self, location: Url, d: &Descriptor, path: &std::path::Path) -> Result<(), RegistryError> {
        let body = Body::File { path: path.to_path_buf(), offset: 0, len: d.size };
        self.finish_upload(location, d, body)
    }

    /// `PATCH` chunks from `offset`, then an empty closing `PUT`; resumes at the registry's
    /// offset on failure. Every confirmed chunk is remembered in the store, so that a later run
    /// resumes too (`resume`).
    fn put_chunked(
        &self,
        mut location: Url,
        mut offset: u64,
        d: &Descriptor,
        path: &std::path::Path,
        task: &crate::progress::Task,
    ) -> Result<(), RegistryError> {
        let mut resumes = 0;
        let chunk = self.options.chunk_size.max(1);
        self.remember_session(d, &location, offset);
        while offset < d.size {
            let end = (offset + chunk).min(d.size);
            let body = Body::File { path: path.to_path_buf(), offset, len: end - offset };
            let request = patch_request(self.client, &location, offset, body)?;
            let result = self.client.send_once(&request, &self.scope);
            match result {
                Ok(response) if response.status == 202 => {
                    location = self.client.location(&request.url, &response)?;
                    offset = end;
                    self.remember_session(d, &location, offset);
                    task.progress(offset, Some(d.size), Unit::Bytes);
                }
                Ok(response) if resumes < RECOVERIES && (response.status == 416 || response.status >= 500) => {
                    resumes += 1;
                    (location, offset) = self.upload_status(&location)?;
                }
                Err(err @ RegistryError::Connect { .. }) if resumes < RECOVERIES => {
                    resumes += 1;
                    tracing::warn!(digest = %d.digest, offset, error = %err, "chunk failed; asking where to resume");
                    (location, offset) = self.upload_status(&location)?;
                }
                Ok(mut response) => return Err(self.client.status_error(&request, &mut response)),
                Err(err) => return Err(err),
            }
        }
        self.finish_upload(location, d, Body::Empty)
    }

    /// `GET <upload-url>` → (upload URL, next offset) from its 204 `Range: 0-N`.
    fn upload_status(&self, location: &Url) -> Result<(Url, u64), RegistryError> {
        let request = Request::new(Method::GET, location.clone());
        let mut response = self.client.send(request.clone(), &self.scope)?;
        if response.status != 204 {
            return Err(self.client.status_error(&request, &mut response));
        }
        let next = match response.header("range") {
            None => 0,
            Some(range) => {
                let end = range
                    .trim()
                    .trim_start_matches("bytes=")
                    .split('-')
                    .nth(1)
                    .and_then(|e| e.trim().parse::<u64>().ok());
                match end {
                    // distribution answers `0-0` for an empty upload as well as for one byte:
                    // take it as empty (a 1-byte chunk never happens; if it did, the registry
                    // would answer the resent byte with a 416 and the upload restart).
                    Some(0) => 0,
                    Some(end) => end + 1,
                    None => {
                        return Err(RegistryError::UploadStatus {
                            registry: self.registry(),
                            url: location.to_string(),
                            range: range.to_string(),
                        });
                    }
                }
            }
        };
        let next_location = match response.header("location") {
            Some(_) => self.client.location(location, &response)?,
            None => location.clone(),
        };
        Ok((next_location, next))
    }

    /// The closing `PUT <upload-url>?digest=…` (201; a 204 is checked with a `HEAD`).
    fn finish_upload(&self, mut location: Url, d: &Descriptor, body: Body) -> Result<(), RegistryError> {
        location.query_pairs_mut().append_pair("digest", &d.digest.to_string());
        let mut request = Request::new(Method::PUT, location);
        request.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        request.body = body;
        let mut response = self.client.send(request.clone(), &self.scope)?;
        match response.status {
            201 => Ok(()),
            // Not what the spec says (201): believe it only once the blob is there (catalogue G9).
            204 if self.exists(d)? => Ok(()),
            204 => Err(RegistryError::Protocol {
                registry: self.registry(),
                reason: format!(
                    "repository {}: the upload of {} was answered 204 but the blob is not there",
                    self.repository(),
                    d.digest
                ),
            }),
            _ => Err(self.client.status_error(&request, &mut response)),
        }
    }

    /// The upload made while `d` was compressed, if one holds all of it.
    pub(super) fn take_parked(&self, d: &Descriptor) -> Option<Parked> {
        let parked = self.ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&d.digest)?;
        (parked.size == d.size).then_some(parked)
    }
}
