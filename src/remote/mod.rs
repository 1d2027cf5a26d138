//! Remote sources of `ADD`: files from `http(s)://` URLs and trees from git repositories.
//!
//! Owns how a source word is read ([`source`]: BuildKit's rules for telling a git repository from
//! a plain URL, the fragment `#ref:subdir` and the query form of Dockerfile 1.18), the download of
//! a URL ([`http`]: conditional requests, redirects followed by hand, proxies, a size reported as
//! it streams, the content hashed on the way) and the checkout of a git commit ([`git`]: `git` run
//! with a clean environment, every user word behind `--` and refused when git could read it as an
//! option, catalogue A6). Everything is written into a directory the caller gives (a scratch
//! directory of the store); nothing here knows of snapshots, layers, caches or Dockerfiles.

pub mod git;
pub mod http;
pub mod source;

use std::path::PathBuf;

pub use git::{Checkout, GitFetcher};
pub use http::{Download, Fetched, HttpClient, HttpOptions, Validators};
pub use source::{GitSource, RefKind, RemoteSource};

use crate::oci::Digest;

/// What can go wrong fetching a remote source.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The word looks remote but is not a source slipway can read.
    #[error("invalid remote source {word:?}: {reason}")]
    Invalid { word: String, reason: String },
    /// A ref, subdir or URL part git could read as an option, or a path leaving the checkout (A6).
    #[error("refused git source {word:?}: {reason}")]
    Unsafe { word: String, reason: &'static str },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("invalid proxy {value:?} for {name}")]
    Proxy {
        name: String,
        value: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: redirected to {location:?}, which is {reason}")]
    Redirect { url: String, location: String, reason: &'static str },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: usize },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("reading {url} failed")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// `ADD --checksum` (or a git source's `checksum=`) does not match what was fetched.
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch { url: String, expected: String, actual: String },
    #[error("invalid --checksum {value:?}: {reason}")]
    BadChecksum { value: String, reason: &'static str },
    /// The content changed between the request that keyed the step and the one that fetched it.
    #[error("{url} changed while building: expected {expected}, got {actual}")]
    Changed { url: String, expected: Digest, actual: Digest },
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git {what} failed for {url}: {stderr}")]
    Git { what: &'static str, url: String, stderr: String },
    #[error("git source {url}: {reason}")]
    GitRef { url: String, reason: String },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> RemoteError {
        RemoteError::Io { op, path: path.into(), source }
    }
}

/// A URL as shown in messages, keys and records: without a password (`user:***@host`).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("https://u:secret@h/x"), "https://u:***@h/x");
        assert_eq!(super::redact("https://h/x"), "https://h/x");
        assert_eq!(super::redact("git@h:r.git"), "git@h:r.git");
    }
}
