//! The HTTP seam: one request in, one response out, no redirects followed, no retries.
//!
//! `HttpTransport` is the real one (reqwest, blocking, rustls). Redirects, authentication and
//! retries are the client's business, so that the rules about where credentials may go live in
//! one place (`client`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;

use super::RegistryError;

/// A request body that can be sent again (retries, re-authentication).
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    /// Bytes in memory (shared, so a retry or a second send copies nothing).
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset`: reopened for every attempt, never held in memory.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Request {
    pub fn new(method: Method, url: reqwest::Url) -> Request {
        Request { method, url, headers: HeaderMap::new(), body: Body::Empty }
    }
}

/// One HTTP response; the body is read as a stream.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl Response {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the whole body, failing beyond `limit` bytes.
    pub fn read_limited(&mut self, limit: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self.body).take(limit + 1).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(std::io::Error::other(format!("body larger than {limit} bytes")));
        }
        Ok(out)
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connecting, TLS, sending or receiving headers failed: worth a retry.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The connection failed (transports other than reqwest's): worth a retry.
    #[error("connection failed")]
    Connection(#[source] std::io::Error),
    /// The request body could not be read from its file: a local problem, not retried.
    #[error("cannot read the request body from {path}")]
    Body {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Sends one request; implementations follow no redirects and do not retry.
pub trait Transport: Send + Sync {
    fn send(&self, request: &Request) -> Result<Response, TransportError>;
}

/// Slowest upload rate tolerated: a request body of `len` bytes may take `len / MIN_UPLOAD_RATE`
/// seconds on top of the idle timeout before the request is given up.
const MIN_UPLOAD_RATE: u64 = 64 << 10;

/// A file body up to this size is read into memory and sent whole; a bigger one is streamed.
/// reqwest's blocking client streams a reader in 8 KiB pieces, each handed to its runtime thread
/// through a channel: a context switch per 8 KiB, which made an upload to a local registry take
/// about 1.7 × as long as the same bytes sent whole. Push chunks are 16 MiB (`PushOptions`), so
/// with 4 uploads at once this holds at most 64 MiB.
const WHOLE_BODY_MAX: u64 = 16 << 20;

/// The default idle timeout: response headers, and each read of a response body, must come
/// within it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The real transport: reqwest's blocking client with redirects disabled.
pub struct HttpTransport {
    client: reqwest::blocking::Client,
    idle: Duration,
}

impl HttpTransport {
    /// `insecure` accepts any TLS certificate (`--tls-verify=false`). Extra CA certificates come
    /// from `ca_files` (PEM) and from the PEM bundle `SSL_CERT_FILE` names, when set.
    ///
    /// `idle` bounds the wait for response headers and for each read of a response body (the
    /// blocking client applies its timeout per read); a request with a body gets `idle` plus the
    /// time its body takes at `MIN_UPLOAD_RATE` for the whole exchange.
    pub fn new(insecure: bool, ca_files: &[PathBuf], idle: Duration) -> Result<HttpTransport, RegistryError> {
        let mut builder = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(idle.min(Duration::from_secs(30)))
            .timeout(idle)
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")));
        if insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let env = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()).map(PathBuf::from);
        for path in ca_files.iter().chain(env.as_ref()) {
            let pem = std::fs::read(path)
                .map_err(|source| RegistryError::Io { what: format!("CA certificates {}", path.display()), source })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(RegistryError::Tls)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(HttpTransport { client: builder.build().map_err(RegistryError::Tls)?, idle })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: &Request) -> Result<Response, TransportError> {
        let mut builder =
            self.client.request(request.method.clone(), request.url.clone()).headers(request.headers.clone());
        if !request.body.is_empty() {
            builder = builder.timeout(self.idle + Duration::from_secs(request.body.len() / MIN_UPLOAD_RATE));
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            Body::File { path, offset, len } => {
                let body_err = |source| TransportError::Body { path: path.clone(), source };
                let file = File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(*offset)).map(|_| f));
                let mut file = file.map_err(body_err)?;
                if *len <= WHOLE_BODY_MAX {
                    let mut bytes = vec![0; *len as usize];
                    file.read_exact(&mut bytes).map_err(body_err)?;
                    builder.body(bytes)
                } else {
                    builder.body(reqwest::blocking::Body::sized(file.take(*len), *len))
                }
            }
        };
        let response = builder.send()?;
        Ok(Response {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::new(response),
        })
    }
}
