//! A small HTTP/1.1 server on 127.0.0.1 for `ADD <url>` tests: each path answers a scripted
//! reply (a file, a redirect, a status, after a delay), honouring `If-None-Match` and
//! `If-Modified-Since` against the reply's own `ETag` / `Last-Modified` with a `304`. A request
//! in absolute form (`GET http://host/path`, as a client sends to a proxy) is answered from the
//! same routes, so the server also stands in for a proxy. Every request is logged with its
//! headers and the status it got. One request per connection (`Connection: close`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a path answers.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Held back this long before the response is written.
    pub delay: Duration,
}

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// As sent: a path, or an absolute URL through a proxy.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    log: Vec<Seen>,
}

/// The server; it lives as long as the test process (its thread is never joined).
pub struct FileServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || handle(stream, &state));
            }
        });
        FileServer { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    pub fn serve(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().routes.insert(path.to_string(), reply);
    }

    /// `path` answers 200 with `body` and `headers`.
    pub fn file(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        self.serve(path, Reply { status: 200, headers, body: body.to_vec(), delay: Duration::ZERO });
    }

    /// `path` answers `status` with `Location: location`.
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        let headers = vec![("Location".to_string(), location.to_string())];
        self.serve(path, Reply { status, headers, body: Vec::new(), delay: Duration::ZERO });
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests whose target ends with `path`, and the statuses they got.
    pub fn statuses(&self, path: &str) -> Vec<u16> {
        self.log().iter().filter(|s| s.target.ends_with(path)).map(|s| s.status).collect()
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string()),
        None => target.clone(),
    };
    let reply = {
        let s = state.lock().unwrap();
        s.routes.get(&target).or_else(|| s.routes.get(&path)).cloned()
    };
    let mut reply = reply.unwrap_or(Reply { status: 404, ..Reply::default() });
    let seen_header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let own = |name: &str| reply.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let not_modified = (seen_header("If-None-Match").is_some() && seen_header("If-None-Match") == own("ETag"))
        || (seen_header("If-None-Match").is_none()
            && seen_header("If-Modified-Since").is_some()
            && seen_header("If-Modified-Since") == own("Last-Modified"));
    if reply.status == 200 && not_modified {
        reply.status = 304;
        reply.body.clear();
    }
    state.lock().unwrap().log.push(Seen { method, target, headers, status: reply.status });
    std::thread::sleep(reply.delay);
    let mut out = stream;
    let mut head =
        format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n", reply.status, reply.body.len());
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes()).and_then(|()| out.write_all(&reply.body));
    let _ = out.flush();
}
