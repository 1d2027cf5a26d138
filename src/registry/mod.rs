//! A client of the OCI Distribution API: `pull` into the store, `push` from it.
//!
//! Owns talking HTTP to registries: the `Transport` seam, scheme probing, redirects (followed by
//! our own code, never carrying credentials to another host), authentication (anonymous, Basic,
//! Bearer tokens per scope), retries with backoff. Reads credentials from Docker's `config.json`
//! and its own settings (insecure registries, mirrors, CA directories) from `config.toml`.
//! Knows nothing of Dockerfiles or snapshots; never prints (progress goes to a `Reporter`).
//!
//! Architecture invariants: every remote byte is verified (digest and size) before the store
//! commits it, and the digest a registry claims is never used as a store key; `Authorization` is
//! only sent to the registry's own host (and Basic credentials to its token realm).

mod ahead;
mod auth;
mod client;
mod config;
#[cfg(test)]
mod fake;
mod pull;
mod push;
mod retry;
mod settings;
mod transport;

use crate::oci::Digest;

pub use auth::Credentials;

/// Parsers reached by the fuzz targets (`fuzz/`); not API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::auth::{Challenge, parse_challenge};
}
pub use ahead::{UploadAhead, UploadedAhead};
pub use client::{Client, ClientOptions};
pub use config::{AuthFile, auth_file_path, helper_erase, helper_store};
pub use pull::{
    Fetcher, PullOptions, PullReport, RemoteImage, pull, pull_leased, pull_leased_with_mirrors, pull_with_mirrors,
};
pub use push::{IndexEntry, IndexPush, PushOptions, PushReport, push, push_index};
pub use settings::{Settings, settings_path};
pub use transport::{Body, HttpTransport, Request, Response, Transport, TransportError};

/// Errors talking to a registry; each names the registry and, where it applies, the repository
/// and digest.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: cannot connect to registry {registry}")]
    Connect {
        registry: String,
        method: String,
        url: String,
        #[source]
        source: TransportError,
    },
    #[error("{method} {url}: registry {registry} answered {status}{detail}")]
    Status { registry: String, method: String, url: String, status: u16, detail: String },
    #[error("registry {registry}: rate limited, retry after {seconds} s")]
    RateLimited { registry: String, seconds: u64 },
    #[error("registry {registry}: authentication failed for {repository}{detail}")]
    Unauthorized { registry: String, repository: String, detail: String },
    #[error("registry {registry}: {reason}")]
    Protocol { registry: String, reason: String },
    /// A blob the store does not hold (a layer of an imported build cache) that the registry
    /// would not mount into the destination from any repository known to have it.
    #[error("registry {registry}: blob {digest} is not in the store and could not be mounted into {repository}")]
    Unmountable { registry: String, repository: String, digest: Digest },
    #[error("registry {registry}: invalid {what} {input:?}")]
    Url {
        registry: String,
        what: &'static str,
        input: String,
        #[source]
        source: url::ParseError,
    },
    /// A header value that cannot be sent (its value is not shown: it may be a credential).
    #[error("registry {registry}: invalid {header} header value")]
    Header {
        registry: String,
        header: &'static str,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("registry {registry}: upload status {url}: invalid Range {range:?}")]
    UploadStatus { registry: String, url: String, range: String },
    #[error("registry {registry}, repository {repository}: {what} {digest}: digest mismatch (got {actual})")]
    DigestMismatch { registry: String, repository: String, what: Checked, digest: Digest, actual: Digest },
    #[error("registry {registry}, repository {repository}: {what} {digest} is larger than {limit} bytes")]
    TooLarge { registry: String, repository: String, what: &'static str, digest: String, limit: u64 },
    #[error("registry {registry}, repository {repository}: {reference} has no manifest for platform {platform}")]
    NoPlatform { registry: String, repository: String, reference: String, platform: String },
    #[error("registry {registry}, repository {repository}: unsupported media type {media_type} of {digest}")]
    UnsupportedMediaType { registry: String, repository: String, media_type: String, digest: Digest },
    /// A manifest whose body and `Content-Type` name different document kinds (CVE-2021-41190).
    #[error(
        "registry {registry}, repository {repository}: manifest {digest} says it is {body} but was served as {header}"
    )]
    MediaTypeMismatch { registry: String, repository: String, digest: Digest, body: Box<str>, header: Box<str> },
    /// A document with both an index's `manifests` and a manifest's `layers` or `config`
    /// (CVE-2021-41190): readers could take it for either.
    #[error(
        "registry {registry}, repository {repository}: manifest {digest} is ambiguous (it has both manifests and layers or config)"
    )]
    AmbiguousManifest { registry: String, repository: String, digest: Digest },
    /// A Docker schema 1 manifest: deprecated, unsigned content addressing, never read.
    #[error(
        "registry {registry}, repository {repository}: manifest {digest} is a Docker schema 1 manifest, which is not supported (push the image again with a current client)"
    )]
    Schema1 { registry: String, repository: String, digest: Digest },
    #[error("registry {registry}, repository {repository}: invalid {what} {digest}")]
    Decode {
        registry: String,
        repository: String,
        what: &'static str,
        digest: Digest,
        #[source]
        source: Box<crate::oci::canonical::DecodeError>,
    },
    #[error("registry {registry}, repository {repository}: blob {digest}")]
    Blob {
        registry: String,
        repository: String,
        digest: Digest,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("registry {registry}, repository {repository}: storing blob {digest}")]
    Store {
        registry: String,
        repository: String,
        digest: Digest,
        #[source]
        source: Box<crate::store::StoreError>,
    },
    #[error("credentials file {path}")]
    AuthFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path}: {reason}")]
    AuthFileFormat { path: std::path::PathBuf, reason: String },
    #[error("credentials file {path}: invalid JSON")]
    AuthFileJson {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("credentials file {path}: auths.{key}.auth is not base64")]
    AuthFileBase64 {
        path: std::path::PathBuf,
        key: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("configuration file {path}: {reason}")]
    Settings { path: std::path::PathBuf, reason: String },
    #[error("configuration file {path}")]
    SettingsRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: invalid TOML")]
    SettingsToml {
        path: std::path::PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper { helper: String, registry: String, reason: String },
    #[error("credential helper docker-credential-{helper} for {registry}: cannot {action} it")]
    CredentialHelperIo {
        helper: String,
        registry: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls setup")]
    Tls(#[source] reqwest::Error),
    #[error(transparent)]
    StoreOther(Box<crate::store::StoreError>),
    #[error(transparent)]
    Image(Box<crate::image::ImageError>),
    #[error(transparent)]
    Layer(Box<crate::layer::LayerError>),
}

/// What a digest check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Manifest,
    /// A layer's uncompressed content against the config's diff id.
    LayerDiffId,
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checked::Manifest => "manifest",
            Checked::LayerDiffId => "layer diff id",
        })
    }
}

impl From<crate::store::StoreError> for RegistryError {
    fn from(e: crate::store::StoreError) -> RegistryError {
        RegistryError::StoreOther(Box::new(e))
    }
}

impl From<crate::image::ImageError> for RegistryError {
    fn from(e: crate::image::ImageError) -> RegistryError {
        RegistryError::Image(Box::new(e))
    }
}

impl From<crate::layer::LayerError> for RegistryError {
    fn from(e: crate::layer::LayerError) -> RegistryError {
        RegistryError::Layer(Box::new(e))
    }
}

/// Whether `host` (a registry's `host[:port]`) is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name == "localhost" {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host the Distribution API of `registry` lives at (`docker.io` is `registry-1.docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == crate::oci::DEFAULT_REGISTRY { "registry-1.docker.io" } else { registry }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
