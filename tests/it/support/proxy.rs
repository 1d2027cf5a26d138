//! A fault-injecting HTTP/1.1 proxy in front of a test registry (or standing alone as "another
//! host": blob storage, a token server, a foreign-layer server).
//!
//! It parses each request, buffers its body before forwarding it (as nginx does by default, so a
//! request cut by a fault never reaches the registry half-written), and applies the first rule
//! that matches: answer with a status of its own, cut the request after some body bytes (running
//! a hook first, e.g. to kill -9 the client), cut or corrupt the response body, change response
//! headers, delay the response. It can also issue Bearer tokens at `/token` and refuse expired
//! ones, for registries using `auth: silly`. Every request is logged with the host it reached,
//! whether it carried `Authorization`, and the body bytes received.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A hook run by a rule (from the proxy's thread).
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// What a rule does to a request it matches.
#[derive(Clone)]
pub enum Action {
    /// Answer without forwarding.
    Respond { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Once the bodies of the requests this rule matched add up to `after_total` bytes, run
    /// `hook` and drop the connection; the cut request is not forwarded.
    CutRequest { after_total: u64, hook: Option<Hook> },
    /// Forward, then drop the connection after `after` bytes of the response body.
    CutResponse { after: u64 },
    /// Forward, flipping byte `at` of the response body.
    FlipResponseByte { at: u64 },
    /// Forward, setting a response header.
    SetResponseHeader(String, String),
    /// Forward, pointing the response's `Location` at `host` (`ip:port`) with the same path.
    RelocateTo { host: String },
    /// Forward, holding the response back this long first.
    Delay(Duration),
    /// Forward, stalling after `after` bytes of the response body for `stall`, then closing.
    StallResponse { after: u64, stall: Duration },
    /// Answer without forwarding, with a chunked body that never ends (until the client hangs
    /// up, or 4 GiB as a safety net).
    Endless { status: u16, headers: Vec<(String, String)> },
}

/// One fault: `action` on requests with `method` whose target contains `path`, after skipping
/// `skip` matches, `times` times.
#[derive(Clone)]
pub struct Rule {
    method: String,
    path: String,
    skip: usize,
    times: usize,
    action: Action,
    seen_bytes: u64,
}

impl Rule {
    /// A rule applied once to the first match.
    pub fn new(method: &str, path: &str, action: Action) -> Rule {
        Rule { method: method.to_string(), path: path.to_string(), skip: 0, times: 1, action, seen_bytes: 0 }
    }

    /// Leaves the first `n` matches alone.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    /// Applies to `n` matches.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.times > 0 && (self.method.is_empty() || self.method == method) && target.contains(&self.path)
    }
}

/// A status answer with headers (for `Action::Respond`).
pub fn respond(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Action {
    Action::Respond {
        status,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: body.to_vec(),
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
    pub cookie: bool,
    /// Request body bytes received (also of a request that was cut).
    pub body_bytes: u64,
    /// The status answered (0 when the connection was cut before one).
    pub status: u16,
    /// Response body bytes relayed from the upstream to the client.
    pub response_bytes: u64,
    pub at: Instant,
}

struct Tokens {
    ttl: Option<Duration>,
    issued: HashMap<String, Instant>,
}

struct State {
    ip: String,
    port: u16,
    upstream: AtomicU16,
    stop: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Entry>>,
    inject: Mutex<Vec<(String, String)>>,
    tokens: Mutex<Option<Tokens>>,
}

/// A running proxy; stops accepting on drop.
pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 in front of the registry on `upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let proxy = Proxy::start_on("127.0.0.1");
        proxy.set_upstream(upstream);
        proxy
    }

    /// A proxy on `ip` (any 127.x address works on Linux) with no upstream yet.
    pub fn start_on(ip: &str) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            ip: ip.to_string(),
            port,
            upstream: AtomicU16::new(0),
            stop: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            inject: Mutex::new(Vec::new()),
            tokens: Mutex::new(None),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(&state, client));
            }
        });
        Proxy { port, state }
    }

    /// Forwards to the registry on 127.0.0.1:`port`.
    pub fn set_upstream(&self, port: u16) {
        self.state.upstream.store(port, Ordering::SeqCst);
    }

    /// `IP:PORT`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.state.ip, self.port)
    }

    /// Adds a rule (after those already there).
    pub fn rule(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Rules that still have matches to apply to.
    pub fn rules_left(&self) -> usize {
        self.state.rules.lock().unwrap().iter().filter(|r| r.times > 0).count()
    }

    /// Adds a header to every forwarded request (blob storage that signs on the client's behalf).
    pub fn inject_header(&self, name: &str, value: &str) {
        self.state.inject.lock().unwrap().push((name.to_string(), value.to_string()));
    }

    /// Serves Bearer tokens at `/token`; with `ttl`, forwarded requests carrying a token older
    /// than `ttl` are answered 401 with a fresh challenge.
    pub fn issue_tokens(&self, ttl: Option<Duration>) {
        *self.state.tokens.lock().unwrap() = Some(Tokens { ttl, issued: HashMap::new() });
    }

    /// The token realm this proxy serves.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.host())
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Entry> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests with `method` (any when empty) whose target contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.log().iter().filter(|e| (method.is_empty() || e.method == method) && e.target.contains(path)).count()
    }

    /// Request body bytes received for requests with `method` whose target contains `path`.
    pub fn body_bytes(&self, method: &str, path: &str) -> u64 {
        self.log().iter().filter(|e| e.method == method && e.target.contains(path)).map(|e| e.body_bytes).sum()
    }

    /// Response body bytes relayed for requests with `method` whose target contains `path`.
    pub fn response_bytes(&self, method: &str, path: &str) -> u64 {
        self.log().iter().filter(|e| e.method == method && e.target.contains(path)).map(|e| e.response_bytes).sum()
    }

    /// The log as text, for assertion messages.
    pub fn dump(&self) -> String {
        self.log()
            .iter()
            .map(|e| {
                format!(
                    "{} {} -> {} (body {} B, auth {})\n",
                    e.method,
                    e.target,
                    e.status,
                    e.body_bytes,
                    e.authorization.is_some()
                )
            })
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.state.ip.as_str(), self.port));
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads a head (request or response): the first line and the headers.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((first.trim_end().to_string(), headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_response(out: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) -> bool {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    out.write_all(head.as_bytes()).and_then(|()| out.write_all(body)).is_ok()
}

/// A chunked answer whose body never ends; returns when the client stops reading.
fn write_endless(out: &mut TcpStream, status: u16, headers: &[(String, String)]) {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b' '; 64 << 10];
    let frame = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
    for _ in 0..(4u64 << 30) / (64 << 10) {
        if out.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Serves one client connection, request after request.
fn serve(state: &State, client: TcpStream) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut out = client;
    while let Some((first, headers)) = read_head(&mut reader) {
        let mut parts = first.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return };
        let head = Head { method: method.to_string(), target: target.to_string(), headers };
        if !serve_one(state, &head, &mut reader, &mut out) {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The first rule matching `head`: its index and, unless it is a `CutRequest` (used up when it
/// cuts), its action, taking one of its uses at once (requests arrive in parallel).
fn take_rule(state: &State, head: &Head) -> Option<(usize, Option<Action>)> {
    let mut rules = state.rules.lock().unwrap();
    for (i, rule) in rules.iter_mut().enumerate() {
        if rule.matches(&head.method, &head.target) {
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if matches!(rule.action, Action::CutRequest { .. }) {
                return Some((i, None));
            }
            rule.times -= 1;
            return Some((i, Some(rule.action.clone())));
        }
    }
    None
}

/// Logs a request; returns its index in the log.
fn log(state: &State, head: &Head, body_bytes: u64, status: u16) -> usize {
    let mut log = state.log.lock().unwrap();
    log.push(Entry {
        method: head.method.clone(),
        target: head.target.clone(),
        authorization: head.header("authorization").map(str::to_string),
        cookie: head.header("cookie").is_some(),
        body_bytes,
        status,
        response_bytes: 0,
        at: Instant::now(),
    });
    log.len() - 1
}

/// Reads the request body (Content-Length or chunked); a `CutRequest` rule may stop it early.
/// Returns the body, or `None` when the connection is to be cut.
fn read_body(state: &State, head: &Head, reader: &mut impl BufRead, cut: Option<usize>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let take = |reader: &mut dyn BufRead, n: u64, body: &mut Vec<u8>| -> bool {
        let mut left = n;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = match reader.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return false,
                Ok(got) => got,
            };
            left -= got as u64;
            body.extend_from_slice(&buf[..got]);
            if let Some(i) = cut {
                let mut rules = state.rules.lock().unwrap();
                let rule = &mut rules[i];
                rule.seen_bytes += got as u64;
                if let Action::CutRequest { after_total, hook } = &rule.action {
                    if rule.seen_bytes >= *after_total && rule.times > 0 {
                        let hook = hook.clone();
                        rule.times -= 1;
                        drop(rules);
                        if let Some(hook) = hook {
                            hook();
                        }
                        return false;
                    }
                }
            }
        }
        true
    };
    let complete = if head.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).ok()? == 0 {
                break false;
            }
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                let _ = reader.read_line(&mut end);
                break true;
            }
            if !take(reader, n, &mut body) {
                break false;
            }
            let mut crlf = String::new();
            let _ = reader.read_line(&mut crlf);
        }
    } else {
        let n = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        take(reader, n, &mut body)
    };
    if !complete {
        log(state, head, body.len() as u64, 0);
        return None;
    }
    Some(body)
}

/// Handles one request; returns whether the client connection stays open.
fn serve_one(state: &State, head: &Head, reader: &mut impl BufRead, out: &mut TcpStream) -> bool {
    // An expired token is refused first, as a registry's auth would, leaving the rules for the
    // request sent again with a fresh one.
    if let Some((status, headers, text)) = expired(state, head) {
        let Some(body) = read_body(state, head, reader, None) else { return false };
        log(state, head, body.len() as u64, status);
        return write_response(out, status, &headers, text.as_bytes());
    }
    let (cut, action) = match take_rule(state, head) {
        Some((i, None)) => (Some(i), None),
        Some((_, action)) => (None, action),
        None => (None, None),
    };
    let Some(body) = read_body(state, head, reader, cut) else { return false };
    if let Some(Action::Respond { status, headers, body: answer }) = &action {
        log(state, head, body.len() as u64, *status);
        return write_response(out, *status, headers, answer);
    }
    if let Some(Action::Endless { status, headers }) = &action {
        log(state, head, body.len() as u64, *status);
        write_endless(out, *status, headers);
        return false;
    }
    if let Some(answer) = tokens(state, head) {
        let (status, headers, text) = answer;
        log(state, head, body.len() as u64, status);
        return write_response(out, status, &headers, text.as_bytes());
    }
    forward(state, head, &body, action, out)
}

/// An answer the proxy gives itself: status, headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// The token server: `Some(answer)` for a request to `/token` when it serves tokens.
fn tokens(state: &State, head: &Head) -> Option<Answer> {
    let mut guard = state.tokens.lock().unwrap();
    let tokens = guard.as_mut()?;
    if !head.target.starts_with("/token") {
        return None;
    }
    let token = format!("token-{}", tokens.issued.len() + 1);
    tokens.issued.insert(token.clone(), Instant::now());
    let expires = tokens.ttl.map(|t| t.as_secs().max(1)).unwrap_or(300);
    let json = format!("{{\"token\":\"{token}\",\"expires_in\":{expires}}}");
    Some((200, vec![("Content-Type".into(), "application/json".into())], json))
}

/// The expiry check: a 401 with a fresh challenge for a Bearer token older than the TTL.
fn expired(state: &State, head: &Head) -> Option<Answer> {
    let guard = state.tokens.lock().unwrap();
    let tokens = guard.as_ref()?;
    let ttl = tokens.ttl?;
    let token = head.header("authorization")?.strip_prefix("Bearer ")?;
    let expired = tokens.issued.get(token).is_none_or(|at| at.elapsed() > ttl);
    if !expired {
        return None;
    }
    let challenge = format!(
        "Bearer realm=\"http://{}:{}/token\",service=\"slipway-test\",error=\"invalid_token\"",
        state.ip, state.port
    );
    Some((401, vec![("WWW-Authenticate".into(), challenge)], "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".into()))
}

/// Forwards the request upstream and streams the answer back, applying `action`.
fn forward(state: &State, head: &Head, body: &[u8], action: Option<Action>, out: &mut TcpStream) -> bool {
    let upstream = state.upstream.load(Ordering::SeqCst);
    if upstream == 0 {
        log(state, head, body.len() as u64, 404);
        return write_response(out, 404, &[], b"no upstream");
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        log(state, head, body.len() as u64, 0);
        return false;
    };
    let mut request = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        if ["connection", "content-length", "transfer-encoding"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in state.inject.lock().unwrap().iter() {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    if server.write_all(request.as_bytes()).and_then(|()| server.write_all(body)).is_err() {
        log(state, head, body.len() as u64, 0);
        return false;
    }
    let mut from = BufReader::new(server);
    let Some((status_line, mut headers)) = read_head(&mut from) else {
        log(state, head, body.len() as u64, 0);
        return false;
    };
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    match &action {
        Some(Action::SetResponseHeader(name, value)) => {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        Some(Action::RelocateTo { host }) => {
            if let Some((_, location)) = headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("location")) {
                let path = match location.find("://") {
                    Some(i) => location[i + 3..].find('/').map(|j| location[i + 3 + j..].to_string()),
                    None => Some(location.clone()),
                };
                *location = format!("http://{host}{}", path.unwrap_or_default());
            }
        }
        Some(Action::Delay(delay)) => std::thread::sleep(*delay),
        _ => {}
    }
    let entry = log(state, head, body.len() as u64, status);
    let mut text = format!("{status_line}\r\n");
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("connection") {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let no_body = head.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let length: Option<u64> = header(&headers, "content-length").and_then(|v| v.parse().ok());
    let chunked = header(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let keep_alive = no_body || length.is_some() || chunked;
    if !keep_alive {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    if out.write_all(text.as_bytes()).is_err() {
        return false;
    }
    if no_body {
        return true;
    }
    // The upstream closes after its answer (`Connection: close`), so copying to EOF copies
    // exactly one framed body, chunked or not.
    let mut buf = vec![0u8; 64 << 10];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        match &action {
            Some(Action::FlipResponseByte { at }) if *at >= sent && *at < sent + n as u64 => {
                chunk[(*at - sent) as usize] ^= 0xff;
            }
            Some(Action::CutResponse { after }) if sent + n as u64 >= *after => {
                let keep = (*after - sent.min(*after)) as usize;
                let _ = out.write_all(&chunk[..keep]);
                return false;
            }
            Some(Action::StallResponse { after, stall }) if sent + n as u64 >= *after => {
                let keep = (*after - sent.min(*after)) as usize;
                let _ = out.write_all(&chunk[..keep]);
                std::thread::sleep(*stall);
                return false;
            }
            _ => {}
        }
        if out.write_all(chunk).is_err() {
            return false;
        }
        sent += n as u64;
        state.log.lock().unwrap()[entry].response_bytes = sent;
    }
    keep_alive
}
