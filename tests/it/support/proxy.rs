//! A TCP proxy in front of a test registry that cuts connections: once a trigger string has
//! passed in one direction, it lets `after` more bytes through and then shuts the connection
//! down, `times` times in all. Enough to drop a PATCH mid-chunk or a blob GET mid-body.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Which direction the trigger is looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to registry (requests).
    Request,
    /// Registry to client (responses).
    Response,
}

/// A running proxy; stops accepting on drop.
pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    cuts_left: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(
        upstream: u16,
        direction: Direction,
        trigger: &'static [u8],
        after: usize,
        times: usize,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts_left = Arc::new(AtomicUsize::new(times));
        let (stop2, cuts2) = (stop.clone(), cuts_left.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let cuts = cuts2.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (c3, s3) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = if direction == Direction::Request { Some(trigger) } else { None };
                let down = if direction == Direction::Response { Some(trigger) } else { None };
                let cuts_up = cuts.clone();
                std::thread::spawn(move || pump(client, server, up, after, cuts_up, (c3, s3)));
                std::thread::spawn(move || {
                    let (c4, s4) = (c2.try_clone().unwrap(), s2.try_clone().unwrap());
                    pump(s2, c2, down, after, cuts, (c4, s4))
                });
            }
        });
        FaultProxy { port, stop, cuts_left }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts not made yet.
    pub fn cuts_left(&self) -> usize {
        self.cuts_left.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` → `to`; when `trigger` is set and seen, cuts both connections `after` bytes later.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    trigger: Option<&'static [u8]>,
    after: usize,
    cuts: Arc<AtomicUsize>,
    both: (TcpStream, TcpStream),
) {
    let mut buf = vec![0u8; 16 << 10];
    let mut window: Vec<u8> = Vec::new();
    let mut countdown: Option<usize> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let (Some(trigger), None) = (trigger, countdown) {
            if cuts.load(Ordering::SeqCst) > 0 {
                window.extend_from_slice(chunk);
                if let Some(pos) = window.windows(trigger.len()).position(|w| w == trigger) {
                    // Bytes of this chunk after the trigger count already.
                    let seen_after = window.len() - pos - trigger.len();
                    countdown = Some(after.saturating_sub(seen_after));
                    window.clear();
                } else if window.len() > trigger.len() {
                    window.drain(..window.len() - trigger.len());
                }
            }
        } else if let Some(left) = countdown {
            if chunk.len() >= left {
                if cuts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok() {
                    let _ = to.write_all(&chunk[..left]);
                    let _ = both.0.shutdown(Shutdown::Both);
                    let _ = both.1.shutdown(Shutdown::Both);
                    return;
                }
                countdown = None;
            } else {
                countdown = Some(left - chunk.len());
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
