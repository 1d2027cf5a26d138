//! Downloading one `http(s)://` source into a directory, as BuildKit's http source does for
//! `ADD <url>`: a conditional `GET` (`If-None-Match`, `If-Modified-Since`) when the caller knows
//! the resource, the body streamed to a file while it is hashed and counted, never held whole.
//!
//! Redirects are followed here (at most [`MAX_REDIRECTS`]), not by reqwest, so their rules live
//! in one place: only to `http` or `https`, never from `https` down to `http`, and the
//! credentials of the URL (`https://user:pass@host/…`, sent as Basic `Authorization`) only to
//! the URL's own host and port — a redirect elsewhere gets none. Proxies come from the build's
//! proxy build-args (`HTTP_PROXY`, `https_proxy`, `NO_PROXY`, …) when it has any, else from the
//! environment, as reqwest reads it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use super::RemoteError;
use crate::oci::{Digest, Hasher};
use crate::progress::{Task, Unit};

/// Redirects followed at most (BuildKit and Go's client stop at 10 too).
pub const MAX_REDIRECTS: usize = 10;

/// The default idle timeout: connecting, the response headers and each read of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest body accepted by default.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 30;

/// How the client is built.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connecting, waiting for the response headers and each read of the body must finish
    /// within it.
    pub timeout: Duration,
    /// The build's proxy variables (`proxy_env` of the build-args: `HTTP_PROXY`, `http_proxy`,
    /// …); when empty, reqwest's own reading of the environment applies.
    pub proxy_env: Vec<(String, String)>,
    /// A body larger than this fails the download.
    pub max_bytes: u64,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions { timeout: DEFAULT_TIMEOUT, proxy_env: Vec::new(), max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// What identifies a version of a resource for a conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A body written to a file.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The file (in the directory the caller gave), mode 0600.
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    /// The response's `ETag` and `Last-Modified`.
    pub validators: Validators,
    /// The file name `Content-Disposition` gives, if any (its last path component).
    pub disposition_name: Option<String>,
}

/// What a `GET` gave.
#[derive(Debug)]
pub enum Download {
    /// `304 Not Modified` to a conditional request: the resource is the version the validators name.
    NotModified,
    Fetched(Fetched),
}

/// A reqwest client that follows no redirect itself.
pub struct HttpClient {
    client: reqwest::blocking::Client,
    max_bytes: u64,
}

impl HttpClient {
    pub fn new(opts: &HttpOptions) -> Result<HttpClient, RemoteError> {
        let mut builder = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")));
        // Extra CA certificates as the registry client takes them: the PEM bundle SSL_CERT_FILE names.
        if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()).map(PathBuf::from) {
            let pem = std::fs::read(&path).map_err(|e| RemoteError::io("read CA certificates", &path, e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(RemoteError::Client)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if !opts.proxy_env.is_empty() {
            builder = builder.no_proxy();
            for proxy in proxies(&opts.proxy_env)? {
                builder = builder.proxy(proxy);
            }
        }
        Ok(HttpClient { client: builder.build().map_err(RemoteError::Client)?, max_bytes: opts.max_bytes })
    }

    /// `GET url`, following redirects by hand; with `conditional`, a `304` is
    /// [`Download::NotModified`]. The body goes to a new file in `dir`, hashed and counted on
    /// `task` as it streams.
    pub fn get(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
        dir: &Path,
        task: &Task,
    ) -> Result<Download, RemoteError> {
        let shown = super::redact(url.as_str());
        let auth = basic_auth(url);
        let mut current = without_credentials(url);
        for _ in 0..=MAX_REDIRECTS {
            let mut headers = HeaderMap::new();
            // Credentials only for the URL's own origin (scheme, host and port).
            if let Some(auth) = &auth
                && current.origin() == url.origin()
            {
                headers.insert(header::AUTHORIZATION, auth.clone());
            }
            if let Some(v) = conditional {
                insert(&mut headers, header::IF_NONE_MATCH, v.etag.as_deref());
                insert(&mut headers, header::IF_MODIFIED_SINCE, v.last_modified.as_deref());
            }
            let response = self
                .client
                .get(current.clone())
                .headers(headers)
                .send()
                .map_err(|source| RemoteError::Request { url: super::redact(current.as_str()), source })?;
            let status = response.status().as_u16();
            match status {
                301 | 302 | 303 | 307 | 308 => current = next_hop(&shown, &current, &response)?,
                304 if conditional.is_some() => return Ok(Download::NotModified),
                200 => return self.stream(&shown, response, dir, task).map(Download::Fetched),
                _ => return Err(RemoteError::Status { url: super::redact(current.as_str()), status }),
            }
        }
        Err(RemoteError::TooManyRedirects { url: shown, max: MAX_REDIRECTS })
    }

    /// Writes the body to a new file in `dir`, hashing and counting it.
    fn stream(
        &self,
        shown: &str,
        response: reqwest::blocking::Response,
        dir: &Path,
        task: &Task,
    ) -> Result<Fetched, RemoteError> {
        let header = |name: header::HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok());
        let validators = Validators {
            etag: header(header::ETAG).map(str::to_string),
            last_modified: header(header::LAST_MODIFIED).map(str::to_string),
        };
        let disposition_name = header(header::CONTENT_DISPOSITION).and_then(disposition_name);
        let total = response.content_length();
        if total.is_some_and(|t| t > self.max_bytes) {
            return Err(RemoteError::TooLarge { url: shown.to_string(), limit: self.max_bytes });
        }
        let file = tempfile::Builder::new()
            .prefix("download-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| RemoteError::io("create a download file in", dir, e))?;
        let (mut out, path) = file.keep().map_err(|e| RemoteError::io("keep", dir, e.error))?;
        let mut meter = task.meter(total, Unit::Bytes);
        let mut hasher = Hasher::new();
        let mut body = response.take(self.max_bytes + 1);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = body.read(&mut buf).map_err(|source| RemoteError::Body { url: shown.to_string(), source })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| RemoteError::io("write", &path, e))?;
            meter.add(n as u64);
        }
        meter.flush();
        let size = hasher.len();
        if size > self.max_bytes {
            return Err(RemoteError::TooLarge { url: shown.to_string(), limit: self.max_bytes });
        }
        out.flush().map_err(|e| RemoteError::io("write", &path, e))?;
        Ok(Fetched { path, digest: hasher.finish(), size, validators, disposition_name })
    }
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, v);
    }
}

/// The target of a redirect, checked: http(s) only, no downgrade, no credentials of its own.
fn next_hop(shown: &str, current: &Url, response: &reqwest::blocking::Response) -> Result<Url, RemoteError> {
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let refuse = |reason| RemoteError::Redirect { url: shown.to_string(), location: location.to_string(), reason };
    if location.is_empty() {
        return Err(refuse("empty"));
    }
    let next = current.join(location).map_err(|_| refuse("not a URL"))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(refuse("not http or https"));
    }
    if current.scheme() == "https" && next.scheme() == "http" {
        return Err(refuse("a downgrade from https to http"));
    }
    Ok(without_credentials(&next))
}

fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// Basic credentials from the URL's user info, if it has any.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_decode(s);
    let pair = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or("")));
    let mut value =
        HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The name a URL gives its file: the last component of its path, percent-decoded (`None` for
/// `/` or an empty path: the caller decides).
pub fn url_file_name(url: &Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let name = percent_decode(last);
    (!name.is_empty() && name != "." && name != ".." && !name.contains('/')).then_some(name)
}

/// `attachment; filename="a.tar.gz"` (or `filename*=UTF-8''a.tar.gz`) → `a.tar.gz`: the last
/// path component only.
fn disposition_name(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for param in value.split(';').skip(1) {
        let Some((key, v)) = param.split_once('=') else { continue };
        let v = v.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "filename" => plain = Some(v.trim_matches('"').to_string()),
            "filename*" => extended = v.split_once("''").map(|(_, rest)| percent_decode(rest)),
            _ => {}
        }
    }
    let name = extended.or(plain)?;
    let base = name.rsplit(['/', '\\']).next()?.to_string();
    (!base.is_empty() && base != "." && base != "..").then_some(base)
}

/// reqwest proxies for the proxy variables: `http_proxy` for http URLs, `https_proxy` for https,
/// `all_proxy` for both, all minus `no_proxy`.
fn proxies(env: &[(String, String)]) -> Result<Vec<reqwest::Proxy>, RemoteError> {
    let get = |name: &str| env.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let no_proxy = get("no_proxy").and_then(reqwest::NoProxy::from_string);
    let mut out = Vec::new();
    for name in ["http_proxy", "https_proxy", "all_proxy"] {
        if let Some(value) = get(name) {
            let made = match name {
                "http_proxy" => reqwest::Proxy::http(value),
                "https_proxy" => reqwest::Proxy::https(value),
                _ => reqwest::Proxy::all(value),
            };
            let proxy = made.map_err(|source| RemoteError::Proxy {
                name: name.to_string(),
                value: super::redact(value),
                source,
            })?;
            out.push(proxy.no_proxy(no_proxy.clone()));
        }
    }
    Ok(out)
}

/// Checks a download is the content the step was keyed on (the resource may change between
/// the conditional request that keyed the step and the download its work needs).
pub fn check_digest(fetched: &Fetched, url: &str, expected: &Digest) -> Result<(), RemoteError> {
    if fetched.digest != *expected {
        return Err(RemoteError::Changed { url: super::redact(url), expected: *expected, actual: fetched.digest });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls_and_dispositions() {
        let name = |u: &str| url_file_name(&Url::parse(u).unwrap());
        assert_eq!(name("https://h/a/b.tar.gz?x=1"), Some("b.tar.gz".into()));
        assert_eq!(name("https://h/a/my%20file"), Some("my file".into()));
        assert_eq!(name("https://h/"), None);
        assert_eq!(name("https://h"), None);
        assert_eq!(disposition_name("attachment; filename=\"r.tar.gz\""), Some("r.tar.gz".into()));
        assert_eq!(disposition_name("attachment; filename=\"../../etc/passwd\""), Some("passwd".into()));
        assert_eq!(disposition_name("attachment; filename*=UTF-8''na%C3%AFve.txt"), Some("naïve.txt".into()));
        assert_eq!(disposition_name("inline"), None);
        assert_eq!(disposition_name("attachment; filename=\"..\""), None);
    }

    #[test]
    fn credentials_come_from_the_url_and_leave_it() {
        let url = Url::parse("https://u%40x:p%3Aw@h:8443/f").unwrap();
        let auth = basic_auth(&url).unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("u@x:p:w");
        assert_eq!(auth.to_str().unwrap(), format!("Basic {expected}"));
        assert_eq!(without_credentials(&url).as_str(), "https://h:8443/f");
        assert!(basic_auth(&Url::parse("https://h/f").unwrap()).is_none());
    }

    #[test]
    fn proxies_from_build_args() {
        let env =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(proxies(&env(&[("HTTP_PROXY", "http://127.0.0.1:3128")])).unwrap().len(), 1);
        assert_eq!(proxies(&env(&[("NO_PROXY", "x")])).unwrap().len(), 0);
    }
}
