//! Test double for the HTTP seam: a transport answering from a function, recording requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::Credentials;
use super::client::{Client, ClientOptions};
use super::retry::RetryPolicy;
use super::transport::{Body, Request, Response, Transport, TransportError};

pub type Answer = Box<dyn Fn(&Request, usize) -> Result<Response, TransportError> + Send + Sync>;

/// Answers requests with a function of (request, how many came before) and records
/// (method, url, Authorization) of each.
pub struct FakeTransport {
    pub answer: Answer,
    pub log: Mutex<Vec<(String, String, Option<String>)>>,
}

impl Transport for Arc<FakeTransport> {
    fn send(&self, request: &Request) -> Result<Response, TransportError> {
        let mut log = self.log.lock().unwrap();
        let auth = request.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
        log.push((request.method.to_string(), request.url.to_string(), auth));
        let n = log.len() - 1;
        drop(log);
        (self.answer)(request, n)
    }
}

pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    Response { status, headers: map, body: Box::new(std::io::Cursor::new(body.as_bytes().to_vec())) }
}

pub fn client(
    credentials: Option<Credentials>,
    answer: impl Fn(&Request, usize) -> Response + Send + Sync + 'static,
) -> (Client, Arc<FakeTransport>) {
    client_with_failures(credentials, move |req, n| Ok(answer(req, n)))
}

/// Like `client`, with an answer that may fail like a dropped connection.
pub fn client_with_failures(
    credentials: Option<Credentials>,
    answer: impl Fn(&Request, usize) -> Result<Response, TransportError> + Send + Sync + 'static,
) -> (Client, Arc<FakeTransport>) {
    let fake = Arc::new(FakeTransport { answer: Box::new(answer), log: Mutex::new(Vec::new()) });
    let options = ClientOptions {
        insecure: false,
        credentials,
        retry: Some(RetryPolicy { attempts: 3, base: Duration::from_millis(1), max_wait: Duration::from_secs(5) }),
        ca_files: Vec::new(),
        idle_timeout: None,
    };
    let base = Url::parse("https://reg.test/").unwrap();
    (Client::with_transport("reg.test", base, Box::new(fake.clone()), &options), fake)
}

/// The bytes a request body sends.
pub fn body_bytes(body: &Body) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    match body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) => b.to_vec(),
        Body::File { path, offset, len } => {
            let mut file = std::fs::File::open(path).unwrap();
            file.seek(SeekFrom::Start(*offset)).unwrap();
            let mut out = Vec::new();
            file.take(*len).read_to_end(&mut out).unwrap();
            out
        }
    }
}

/// A request's method and path, for matching.
pub fn route(request: &Request) -> (Method, String) {
    (request.method.clone(), request.url.path().to_string())
}
