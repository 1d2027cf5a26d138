//! `Client`: one registry, its scheme, credentials, tokens; requests with auth, our own redirect
//! handling and retries.
//!
//! Credentials rule: `Authorization` goes only to the registry's own `host:port` (and, as Basic,
//! to the realm of its Bearer challenge, which is how token auth works). A redirect to another
//! host (blob storage) is followed without it; a 401 from another host is not answered.

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::Method;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::auth::{Challenge, Credentials, parse_challenge, token_from_json};
use super::retry::{RetryPolicy, parse_retry_after, retryable_status};
use super::transport::{Body, HttpTransport, Request, Response, Transport, TransportError};
use super::{RegistryError, api_host, is_loopback};

/// Largest error or token body we read.
const MAX_SMALL_BODY: u64 = 64 << 10;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `--tls-verify=false`: accept any certificate and allow plain HTTP.
    pub insecure: bool,
    /// Credentials for this registry, if any.
    pub credentials: Option<Credentials>,
    /// Retry policy (default: 4 attempts, 0.5 s doubling, 60 s longest `Retry-After`).
    pub retry: Option<RetryPolicy>,
    /// Extra CA certificates (PEM files) trusted for this registry (`Settings::ca_files`).
    pub ca_files: Vec<std::path::PathBuf>,
    /// Longest wait for response headers or for more of a response body (default 60 s).
    pub idle_timeout: Option<std::time::Duration>,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

/// A connection to one registry.
pub struct Client {
    transport: Box<dyn Transport>,
    registry: String,
    base: Url,
    insecure: bool,
    credentials: Option<Credentials>,
    retry: RetryPolicy,
    state: Mutex<AuthState>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("registry", &self.registry).field("base", &self.base.as_str()).finish()
    }
}

fn origin(url: &Url) -> (String, Option<u16>) {
    (url.host_str().unwrap_or_default().to_string(), url.port_or_known_default())
}

impl Client {
    /// Connects to `registry` (`host[:port]` as in references): HTTPS, then plain HTTP for a
    /// loopback registry or with `insecure`; pings `/v2/` to learn its authentication.
    pub fn connect(registry: &str, options: ClientOptions) -> Result<Client, RegistryError> {
        let idle = options.idle_timeout.unwrap_or(super::transport::DEFAULT_IDLE_TIMEOUT);
        let transport = HttpTransport::new(options.insecure, &options.ca_files, idle)?;
        let host = api_host(registry);
        let url_error = |input: String| {
            let registry = registry.to_string();
            move |source| RegistryError::Url { registry, what: "registry URL", input, source }
        };
        let https_url = format!("https://{host}/");
        let https = Url::parse(&https_url).map_err(url_error(https_url.clone()))?;
        let client = Client::with_transport(registry, https, Box::new(transport), &options);
        let may_fall_back = options.insecure || is_loopback(host);
        // With a fallback at hand, HTTPS gets one attempt: a plain-HTTP server will not start
        // speaking TLS on a retry.
        let first = if may_fall_back { client.ping_with(1) } else { client.ping() };
        match first {
            Ok(()) => Ok(client),
            Err(https_error @ RegistryError::Connect { .. }) if may_fall_back => {
                let mut client = client;
                let http_url = format!("http://{host}/");
                client.base = Url::parse(&http_url).map_err(url_error(http_url.clone()))?;
                tracing::debug!(registry, error = %https_error, "https failed; trying plain http");
                match client.ping() {
                    Ok(()) => Ok(client),
                    // Not an HTTP server either: the HTTPS failure is the one to explain.
                    Err(_) => Err(https_error),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// A client over any transport at `base` (`scheme://host[:port]/`); does not ping.
    pub fn with_transport(registry: &str, base: Url, transport: Box<dyn Transport>, options: &ClientOptions) -> Client {
        Client {
            transport,
            registry: registry.to_string(),
            base,
            insecure: options.insecure,
            credentials: options.credentials.clone(),
            retry: options.retry.unwrap_or_default(),
            state: Mutex::new(AuthState::default()),
        }
    }

    /// The registry's name as in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The base URL in use (its scheme tells whether TLS is used).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `GET /v2/`: 200, or 401 with a challenge we remember.
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.ping_with(self.retry.attempts)
    }

    fn ping_with(&self, attempts: u32) -> Result<(), RegistryError> {
        let url = self.url("v2/")?;
        let request = Request::new(Method::GET, url.clone());
        let policy = RetryPolicy { attempts, ..self.retry };
        let mut response = self.with_policy(&policy, &request, || self.transport_send(&request))?;
        match response.status {
            200..=299 => Ok(()),
            401 => {
                if let Some(challenge) = response.header("www-authenticate").and_then(parse_challenge) {
                    self.lock().challenge = Some(challenge);
                }
                Ok(())
            }
            _ => Err(self.status_error(&request, &mut response)),
        }
    }

    /// Checks that the credentials work for `/v2/` (used by `login`).
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/")?;
        let mut response = self.send(Request::new(Method::GET, url.clone()), "")?;
        if response.status == 401 {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                repository: String::new(),
                detail: error_detail(&mut response),
            });
        }
        if !(200..300).contains(&response.status) {
            return Err(self.status_error(&Request::new(Method::GET, url), &mut response));
        }
        Ok(())
    }

    /// A URL under the registry's base.
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|source| RegistryError::Url {
            registry: self.registry.clone(),
            what: "path",
            input: path.to_string(),
            source,
        })
    }

    /// Resolves a `Location` header against the request URL (it may be relative).
    pub fn location(&self, request_url: &Url, response: &Response) -> Result<Url, RegistryError> {
        let Some(location) = response.header("location") else {
            return Err(RegistryError::Protocol {
                registry: self.registry.clone(),
                reason: format!("{} answered {} without a Location header", request_url, response.status),
            });
        };
        let url = request_url.join(location).map_err(|source| RegistryError::Url {
            registry: self.registry.clone(),
            what: "Location",
            input: location.to_string(),
            source,
        })?;
        self.check_target(&url)?;
        Ok(url)
    }

    /// Refuses a `Location` a registry should not send us to: another scheme than http(s), a
    /// downgrade from https to http (unless insecure), or, from a registry that is not itself on
    /// this machine, an address literal on the loopback, private or link-local networks.
    pub(crate) fn check_target(&self, url: &Url) -> Result<(), RegistryError> {
        let refuse = |why: &str| RegistryError::Protocol {
            registry: self.registry.clone(),
            reason: format!("refusing to follow Location {url}: {why}"),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("not http or https"));
        }
        if self.same_origin(url) {
            return Ok(());
        }
        if self.base.scheme() == "https" && url.scheme() == "http" && !self.insecure {
            return Err(refuse("a downgrade to plain http"));
        }
        if self.base.host_str().is_some_and(is_loopback) {
            return Ok(());
        }
        let internal = match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
            }
            Some(url::Host::Ipv6(ip)) => {
                let first = ip.segments()[0];
                ip.is_loopback() || ip.is_unspecified() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
            }
            Some(url::Host::Domain(name)) => name == "localhost",
            None => true,
        };
        if internal {
            return Err(refuse("an address on this machine or a private network"));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn same_origin(&self, url: &Url) -> bool {
        origin(url) == origin(&self.base)
    }

    /// Sends with authentication for `scope`, redirects and retries; returns any final status.
    pub fn send(&self, request: Request, scope: &str) -> Result<Response, RegistryError> {
        self.with_retry(&request, || self.send_once(&request, scope))
    }

    /// Like `send` but a single attempt (for uploads that recover on their own).
    pub fn send_once(&self, request: &Request, scope: &str) -> Result<Response, RegistryError> {
        let (response, answered_by) = self.authorized_send(request, scope)?;
        // Only the registry's own 401 is answered: a challenge from a host a redirect led to
        // must not get a token fetched with our credentials.
        if response.status != 401 || !self.same_origin(&answered_by) {
            return Ok(response);
        }
        // A fresh challenge (the token expired, or a scope we have not asked for yet).
        let Some(challenge) = response.header("www-authenticate").and_then(parse_challenge) else {
            return Ok(response);
        };
        {
            let mut state = self.lock();
            state.tokens.remove(scope);
            state.challenge = Some(challenge.clone());
        }
        if challenge == Challenge::Basic && self.credentials.as_ref().and_then(Credentials::basic_header).is_none() {
            return Ok(response);
        }
        Ok(self.authorized_send(request, scope)?.0)
    }

    /// One attempt with the current authentication, following redirects; returns the response
    /// and the URL that gave it.
    /// An `Authorization` value as a header (its value is never shown in the error).
    fn authorization_header(&self, value: &str) -> Result<HeaderValue, RegistryError> {
        HeaderValue::from_str(value).map_err(|source| RegistryError::Header {
            registry: self.registry.clone(),
            header: "Authorization",
            source,
        })
    }

    fn authorized_send(&self, request: &Request, scope: &str) -> Result<(Response, Url), RegistryError> {
        let mut request = request.clone();
        request.headers.remove(AUTHORIZATION);
        // An upload `Location` may name another host (blob storage): it gets no credentials.
        let ours = self.same_origin(&request.url);
        if let Some(value) = if ours { self.authorization(scope)? } else { None } {
            request.headers.insert(AUTHORIZATION, self.authorization_header(&value)?);
        }
        for _ in 0..=MAX_REDIRECTS {
            let response = self.transport_send(&request)?;
            if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return Ok((response, request.url));
            }
            let next = self.location(&request.url, &response)?;
            if !self.same_origin(&next) {
                // Never carry credentials to another host (blob storage, a CDN).
                request.headers.remove(AUTHORIZATION);
                request.headers.remove(reqwest::header::COOKIE);
            }
            if response.status == 303 || (matches!(response.status, 301 | 302) && request.method != Method::HEAD) {
                request.method = if request.method == Method::HEAD { Method::HEAD } else { Method::GET };
                request.body = Body::Empty;
            }
            request.url = next;
        }
        Err(RegistryError::Protocol {
            registry: self.registry.clone(),
            reason: format!("more than {MAX_REDIRECTS} redirects from {}", request.url),
        })
    }

    fn transport_send(&self, request: &Request) -> Result<Response, RegistryError> {
        tracing::debug!(method = %request.method, url = %request.url, "request");
        self.transport.send(request).map_err(|source| match source {
            TransportError::Body { path, source } => RegistryError::Io {
                what: format!("the body of {} {} ({})", request.method, request.url, path.display()),
                source,
            },
            source => RegistryError::Connect {
                registry: self.registry.clone(),
                method: request.method.to_string(),
                url: request.url.to_string(),
                source,
            },
        })
    }

    /// The `Authorization` value for a request to the registry itself.
    fn authorization(&self, scope: &str) -> Result<Option<String>, RegistryError> {
        let challenge = self.lock().challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.as_ref().and_then(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(token) = self.lock().tokens.get(scope) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                self.lock().tokens.insert(scope.to_string(), token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Asks the realm for a token for `scope`, with our credentials when we have some.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).map_err(|source| RegistryError::Url {
            registry: self.registry.clone(),
            what: "token realm",
            input: realm.to_string(),
            source,
        })?;
        let loopback = url.host_str().is_some_and(is_loopback);
        if url.scheme() != "https" && !(loopback || self.insecure) {
            return Err(RegistryError::Protocol {
                registry: self.registry.clone(),
                reason: format!("refusing plain-http token realm {realm} (use --tls-verify=false to allow it)"),
            });
        }
        let request = match &self.credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token").append_pair("refresh_token", refresh);
                form.append_pair("client_id", "slipway");
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                for scope in scope.split(' ').filter(|s| !s.is_empty()) {
                    form.append_pair("scope", scope);
                }
                let mut request = Request::new(Method::POST, url);
                request.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
                request.body = Body::Bytes(form.finish().into_bytes().into());
                request
            }
            credentials => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    // Several scopes (a mount also pulls from the source repository) are
                    // space-separated here and separate `scope` parameters on the wire.
                    for scope in scope.split(' ').filter(|s| !s.is_empty()) {
                        query.append_pair("scope", scope);
                    }
                }
                let mut request = Request::new(Method::GET, url);
                if let Some(value) = credentials.as_ref().and_then(Credentials::basic_header) {
                    request.headers.insert(AUTHORIZATION, self.authorization_header(&value)?);
                }
                request
            }
        };
        let mut response = self.with_retry(&request, || self.transport_send(&request))?;
        if !(200..300).contains(&response.status) {
            if matches!(response.status, 401 | 403) {
                return Err(RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                    repository: scope.to_string(),
                    detail: error_detail(&mut response),
                });
            }
            return Err(self.status_error(&request, &mut response));
        }
        let body = response
            .read_limited(MAX_SMALL_BODY)
            .map_err(|source| RegistryError::Io { what: format!("token from {realm}"), source })?;
        token_from_json(&body).ok_or_else(|| RegistryError::Protocol {
            registry: self.registry.clone(),
            reason: format!("token realm {realm} answered without a token"),
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's attempts run out.
    pub(crate) fn with_retry(
        &self,
        request: &Request,
        attempt: impl FnMut() -> Result<Response, RegistryError>,
    ) -> Result<Response, RegistryError> {
        self.with_policy(&self.retry, request, attempt)
    }

    fn with_policy(
        &self,
        policy: &RetryPolicy,
        request: &Request,
        mut attempt: impl FnMut() -> Result<Response, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut n = 1;
        loop {
            let last = n >= policy.attempts;
            match attempt() {
                Err(err @ RegistryError::Connect { .. }) if !last => {
                    let wait = policy.backoff(n);
                    tracing::warn!(method = %request.method, url = %request.url, attempt = n, ?wait, error = %err, "retrying");
                    std::thread::sleep(wait);
                }
                Ok(response) if !last && retryable_status(response.status) => {
                    let wait = match response.header("retry-after").and_then(parse_retry_after) {
                        Some(wait) if wait > policy.max_wait => {
                            return Err(RegistryError::RateLimited {
                                registry: self.registry.clone(),
                                seconds: wait.as_secs(),
                            });
                        }
                        Some(wait) => wait,
                        None => policy.backoff(n),
                    };
                    tracing::warn!(method = %request.method, url = %request.url, status = response.status, attempt = n, ?wait, "retrying");
                    std::thread::sleep(wait);
                }
                other => return other,
            }
            n += 1;
        }
    }

    /// The error for an unexpected status, with the registry's error message if it sent one.
    pub fn status_error(&self, request: &Request, response: &mut Response) -> RegistryError {
        RegistryError::Status {
            registry: self.registry.clone(),
            method: request.method.to_string(),
            url: request.url.to_string(),
            status: response.status,
            detail: error_detail(response),
        }
    }
}

/// `: CODE message` from a Distribution error body, or nothing.
fn error_detail(response: &mut Response) -> String {
    let Ok(body) = response.read_limited(MAX_SMALL_BODY) else { return String::new() };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else { return String::new() };
    let Some(first) = value.get("errors").and_then(|e| e.get(0)) else { return String::new() };
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or_default();
    let message = first.get("message").and_then(|c| c.as_str()).unwrap_or_default();
    format!(": {code} {message}").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fake::{FakeTransport, client, client_with_failures, response};
    use super::*;

    fn basic() -> Option<Credentials> {
        Some(Credentials::Basic { username: "u".into(), password: "p".into() })
    }

    #[test]
    fn redirect_to_another_host_carries_no_credentials() {
        let (client, fake) = client(basic(), |req, _| match (req.url.host_str(), req.url.path()) {
            (Some("reg.test"), "/v2/") if req.headers.get(AUTHORIZATION).is_none() => {
                response(401, &[("www-authenticate", "Basic realm=\"r\"")], "")
            }
            (Some("reg.test"), "/v2/r/blobs/x") => {
                response(307, &[("location", "https://storage.test/blob?sig=1")], "")
            }
            (Some("storage.test"), _) => response(200, &[], "data"),
            _ => response(200, &[], ""),
        });
        client.ping().unwrap();
        let url = client.url("v2/r/blobs/x").unwrap();
        let mut resp = client.send(Request::new(Method::GET, url), "repository:r:pull").unwrap();
        assert_eq!(resp.read_limited(10).unwrap(), b"data");
        let log = fake.log.lock().unwrap();
        let blob = log.iter().find(|(_, url, _)| url.ends_with("/blobs/x")).unwrap();
        assert!(blob.2.as_deref().is_some_and(|a| a.starts_with("Basic ")), "{log:?}");
        let storage = log.iter().find(|(_, url, _)| url.contains("storage.test")).unwrap();
        assert_eq!(storage.2, None, "credentials went to blob storage: {log:?}");
    }

    #[test]
    fn bearer_token_per_scope_refreshed_after_401() {
        let challenge = "Bearer realm=\"http://127.0.0.1:1/token\",service=\"reg\"";
        let tokens = std::sync::atomic::AtomicUsize::new(0);
        let (client, fake) = client(basic(), move |req, _| {
            let auth = req.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
            match req.url.path() {
                "/token" => {
                    assert!(req.url.query().unwrap().contains("scope=repository%3Ar%3Apull"), "{}", req.url);
                    assert!(auth.as_deref().is_some_and(|a| a.starts_with("Basic ")));
                    let n = tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    response(200, &[], &format!("{{\"token\":\"t{n}\"}}"))
                }
                _ if auth.as_deref() == Some("Bearer t2") => response(200, &[], "ok"),
                _ => response(401, &[("www-authenticate", challenge)], ""),
            }
        });
        client.ping().unwrap();
        let url = client.url("v2/r/manifests/1").unwrap();
        let mut resp = client.send(Request::new(Method::GET, url), "repository:r:pull").unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.read_limited(10).unwrap(), b"ok");
        let log = fake.log.lock().unwrap();
        assert_eq!(log.iter().filter(|(_, url, _)| url.contains("/token")).count(), 2, "{log:?}");
    }

    #[test]
    fn retries_5xx_then_succeeds_and_fails_fast_on_long_retry_after() {
        let (client, fake) = client(None, |_, n| if n < 2 { response(503, &[], "") } else { response(200, &[], "") });
        let url = client.url("v2/").unwrap();
        assert_eq!(client.send(Request::new(Method::GET, url.clone()), "").unwrap().status, 200);
        assert_eq!(fake.log.lock().unwrap().len(), 3);

        let (client, _) = client_429();
        match client.send(Request::new(Method::GET, url), "") {
            Err(RegistryError::RateLimited { seconds, .. }) => assert_eq!(seconds, 3600),
            other => panic!("{:?}", other.map(|r| r.status)),
        }
    }

    fn client_429() -> (Client, std::sync::Arc<FakeTransport>) {
        client(None, |_, _| response(429, &[("retry-after", "3600")], ""))
    }

    #[test]
    fn persistent_5xx_gives_up_after_the_policy_attempts() {
        let (client, fake) =
            client(None, |_, _| response(502, &[], "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"down\"}]}"));
        let url = client.url("v2/").unwrap();
        let request = Request::new(Method::GET, url);
        let mut resp = client.send(request.clone(), "").unwrap();
        assert_eq!(resp.status, 502);
        assert_eq!(fake.log.lock().unwrap().len(), 3);
        let err = client.status_error(&request, &mut resp).to_string();
        assert!(err.contains("reg.test") && err.contains("502") && err.contains("UNAVAILABLE down"), "{err}");
    }

    #[test]
    fn dropped_connections_are_retried_but_an_unreadable_body_is_not() {
        let (client, fake) = client_with_failures(None, |_, n| {
            if n < 2 {
                return Err(TransportError::Connection(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
            }
            Ok(response(200, &[], ""))
        });
        let url = client.url("v2/").unwrap();
        assert_eq!(client.send(Request::new(Method::GET, url.clone()), "").unwrap().status, 200);
        assert_eq!(fake.log.lock().unwrap().len(), 3);

        let (client, fake) = client_with_failures(None, |req, _| match &req.body {
            Body::File { path, .. } => {
                Err(TransportError::Body { path: path.clone(), source: std::io::ErrorKind::NotFound.into() })
            }
            _ => Ok(response(200, &[], "")),
        });
        let mut request = Request::new(Method::PUT, url);
        request.body = Body::File { path: "/nonexistent".into(), offset: 0, len: 1 };
        let err = client.send(request, "").unwrap_err();
        assert!(matches!(err, RegistryError::Io { .. }), "{err}");
        assert_eq!(fake.log.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_request_to_another_host_carries_no_credentials() {
        let (client, fake) = client(basic(), |req, _| {
            if req.url.host_str() == Some("reg.test") && req.headers.get(AUTHORIZATION).is_none() {
                return response(401, &[("www-authenticate", "Basic realm=\"r\"")], "");
            }
            response(202, &[], "")
        });
        client.ping().unwrap();
        let own = client.url("v2/r/blobs/uploads/u").unwrap();
        client.send(Request::new(Method::PATCH, own), "repository:r:push").unwrap();
        let storage = Url::parse("https://storage.test/v2/r/blobs/uploads/u?_state=x").unwrap();
        client.send(Request::new(Method::PATCH, storage), "repository:r:push").unwrap();
        let log = fake.log.lock().unwrap().clone();
        assert!(log.iter().any(|(m, url, auth)| m == "PATCH" && url.contains("reg.test") && auth.is_some()), "{log:?}");
        assert!(log.iter().filter(|(_, url, _)| url.contains("storage.test")).all(|(_, _, a)| a.is_none()), "{log:?}");
    }

    #[test]
    fn a_401_from_a_redirect_target_is_not_answered() {
        let (client, fake) = client(basic(), |req, _| match (req.url.host_str(), req.url.path()) {
            (Some("reg.test"), "/v2/") if req.headers.get(AUTHORIZATION).is_none() => {
                response(401, &[("www-authenticate", "Basic realm=\"r\"")], "")
            }
            (Some("reg.test"), _) => response(307, &[("location", "https://evil.test/x")], ""),
            (Some("evil.test"), _) => {
                response(401, &[("www-authenticate", "Bearer realm=\"https://evil.test/token\"")], "")
            }
            _ => response(500, &[], ""),
        });
        client.ping().unwrap();
        let url = client.url("v2/r/blobs/x").unwrap();
        let resp = client.send(Request::new(Method::GET, url), "repository:r:pull").unwrap();
        assert_eq!(resp.status, 401);
        let log = fake.log.lock().unwrap().clone();
        assert!(!log.iter().any(|(_, url, _)| url.contains("/token")), "{log:?}");
        assert!(
            log.iter().filter(|(_, url, _)| url.contains("evil.test")).all(|(_, _, auth)| auth.is_none()),
            "{log:?}"
        );
        // Our own challenge is untouched: the next request to the registry still uses Basic.
        assert_eq!(client.lock().challenge, Some(Challenge::Basic));
    }

    #[test]
    fn a_short_retry_after_is_waited_for() {
        let (client, fake) =
            client(
                None,
                |_, n| {
                    if n == 0 { response(429, &[("retry-after", "1")], "") } else { response(200, &[], "") }
                },
            );
        let started = std::time::Instant::now();
        let url = client.url("v2/").unwrap();
        assert_eq!(client.send(Request::new(Method::GET, url), "").unwrap().status, 200);
        assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
        assert_eq!(fake.log.lock().unwrap().len(), 2);
    }

    #[test]
    fn locations_into_private_networks_or_downgrades_are_refused() {
        let (client, _) = client(None, |_, _| response(200, &[], ""));
        let base = client.url("v2/r/blobs/uploads/").unwrap();
        for (location, ok) in [
            ("/v2/r/blobs/uploads/u?_state=x", true),
            ("https://storage.example/u", true),
            ("http://storage.example/u", false),
            ("https://127.0.0.1:5000/u", false),
            ("https://10.1.2.3/u", false),
            ("https://169.254.169.254/latest", false),
            ("https://[::1]/u", false),
            ("ftp://storage.example/u", false),
        ] {
            let resp = response(202, &[("location", location)], "");
            assert_eq!(client.location(&base, &resp).is_ok(), ok, "{location}");
        }
    }
}
