//! Uploading a layer while it is compressed: `push --compression` hands each layer it
//! compresses now to an [`UploadAhead`], whose thread sends every chunk to the registry
//! (`POST`, then `PATCH` with `Content-Range`) as soon as the compressor has made it, so
//! compressing and uploading overlap. The session is left open: `push` closes it with the
//! blob's digest (`PUT ?digest=`) once the blob is in the store. Anything that goes wrong on the
//! way (a refused `PATCH`, a dropped connection) only drops the session; `push` then uploads the
//! blob from the store as it always does.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};

use reqwest::Url;

use super::RegistryError;
use super::auth::repository_scope;
use super::client::Client;
use super::push::PushOptions;
use super::push::{cancel_upload, open_upload, patch_request};
use super::transport::Body;
use crate::image::LayerCopy;
use crate::oci::{Descriptor, Digest, Reference};

/// Chunks in flight between a compressor and its upload thread.
const CHUNKS_IN_FLIGHT: usize = 2;

/// The largest chunk sent (the push's chunk size when smaller): a few of them are in memory
/// at once (one filling, those in flight, one on the wire).
const MAX_CHUNK: u64 = 8 << 20;

/// An upload whose bytes all reached the registry, waiting for its closing `PUT`.
#[derive(Debug, Clone)]
pub struct Parked {
    pub(super) location: Url,
    pub(super) size: u64,
}

/// The uploads an [`UploadAhead`] left open, by the digest of the blob they hold.
#[derive(Debug, Clone, Default)]
pub struct UploadedAhead(pub(super) HashMap<Digest, Parked>);

/// Starts one upload per layer being compressed, each on a thread of `scope`.
pub struct UploadAhead<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    target: Target<'env>,
    chunk_size: usize,
    threads: Mutex<Vec<UploadThread<'scope>>>,
}

/// One upload's thread: the blob it holds whole, if it does.
type UploadThread<'scope> = ScopedJoinHandle<'scope, Option<(Digest, Parked)>>;

/// Where the uploads go.
#[derive(Clone)]
struct Target<'env> {
    client: &'env Client,
    repository: String,
    scope: String,
}

impl<'scope, 'env> UploadAhead<'scope, 'env> {
    pub fn new(
        scope: &'scope Scope<'scope, 'env>,
        client: &'env Client,
        destination: &Reference,
        options: &PushOptions,
    ) -> UploadAhead<'scope, 'env> {
        let repository = destination.repository().to_string();
        let target = Target { client, scope: repository_scope(&repository, "pull,push"), repository };
        let chunk_size = usize::try_from(options.chunk_size.clamp(1, MAX_CHUNK)).unwrap_or(1);
        UploadAhead { scope, target, chunk_size, threads: Mutex::new(Vec::new()) }
    }

    /// A copy of one layer's compressed bytes, uploaded chunk by chunk on a new thread.
    pub fn start(&self) -> Option<Box<dyn LayerCopy + 'scope>> {
        let (chunks, received) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let target = self.target.clone();
        let thread = self.scope.spawn(move || target.upload(received));
        self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(thread);
        Some(Box::new(Chunker { buf: Vec::new(), chunk_size: self.chunk_size, chunks: Some(chunks) }))
    }

    /// Waits for every upload; returns those that hold a whole blob.
    pub fn finish(self) -> UploadedAhead {
        let threads = self.threads.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let parked = threads.into_iter().filter_map(|t| t.join().ok().flatten());
        UploadedAhead(parked.collect())
    }
}

/// What a compressor sends its upload thread.
enum Message {
    Chunk(Vec<u8>),
    /// The end: the blob the bytes make, or `None` when compressing failed.
    Done(Option<Box<Descriptor>>),
}

/// The [`LayerCopy`] of an [`UploadAhead`]: gathers chunks and sends them to the upload thread.
struct Chunker {
    buf: Vec<u8>,
    chunk_size: usize,
    /// `None` once the upload thread is gone (what follows is dropped).
    chunks: Option<mpsc::SyncSender<Message>>,
}

impl Chunker {
    fn send(&mut self, message: Message) {
        if let Some(chunks) = &self.chunks
            && chunks.send(message).is_err()
        {
            self.chunks = None;
        }
    }
}

impl Write for Chunker {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len();
        while !bytes.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.chunk_size);
            }
            let take = bytes.len().min(self.chunk_size - self.buf.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == self.chunk_size {
                let full = std::mem::take(&mut self.buf);
                self.send(Message::Chunk(full));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LayerCopy for Chunker {
    fn done(mut self: Box<Self>, blob: Option<&Descriptor>) {
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.send(Message::Chunk(last));
        }
        self.send(Message::Done(blob.cloned().map(Box::new)));
    }
}

impl Target<'_> {
    /// Runs one upload: opens a session, sends each chunk, and parks the session when all the
    /// blob's bytes went. On the first failure it stops uploading (and keeps receiving, so the
    /// compressor never waits on it).
    fn upload(&self, received: mpsc::Receiver<Message>) -> Option<(Digest, Parked)> {
        let mut session = self.open().map_err(|err| self.give_up(&err)).ok().map(|location| (location, 0u64));
        for message in received {
            match message {
                Message::Chunk(bytes) => {
                    let Some((location, offset)) = session.take() else { continue };
                    let len = bytes.len() as u64;
                    match self.patch(&location, offset, bytes) {
                        Ok(next) => session = Some((next, offset + len)),
                        Err(err) => {
                            self.give_up(&err);
                            self.cancel(location);
                        }
                    }
                }
                Message::Done(blob) => {
                    return match (session, blob) {
                        (Some((location, size)), Some(blob)) if size == blob.size => {
                            tracing::debug!(digest = %blob.digest, size, "uploaded while compressing");
                            Some((blob.digest, Parked { location, size }))
                        }
                        (Some((location, _)), _) => {
                            self.cancel(location);
                            None
                        }
                        (None, _) => None,
                    };
                }
            }
        }
        // The compressor went away without a word (it panicked): nothing to keep.
        if let Some((location, _)) = session {
            self.cancel(location);
        }
        None
    }

    fn give_up(&self, err: &RegistryError) {
        tracing::debug!(error = %err, "uploading while compressing failed; the blob goes after it is made");
    }

    fn open(&self) -> Result<Url, RegistryError> {
        open_upload(self.client, &self.repository, &self.scope)
    }

    /// One `PATCH` of `bytes` at `offset`; returns the upload URL to go on with.
    fn patch(&self, location: &Url, offset: u64, bytes: Vec<u8>) -> Result<Url, RegistryError> {
        let request = patch_request(self.client, location, offset, Body::Bytes(bytes.into()))?;
        let mut response = self.client.send_once(&request, &self.scope)?;
        if response.status != 202 {
            return Err(self.client.status_error(&request, &mut response));
        }
        self.client.location(&request.url, &response)
    }

    fn cancel(&self, location: Url) {
        cancel_upload(self.client, &self.scope, location);
    }
}
