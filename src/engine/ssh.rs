//! SSH agent forwarding for `RUN --mount=type=ssh`: the agents a build may use (a socket the
//! caller has, or an `ssh-agent` this build starts and loads with key files), and per step a
//! socket that forwards each connection to one of them.
//!
//! The step sees its own socket (in a fresh directory, with the mount's owner and mode), never
//! the caller's: the forwarder copies bytes between the two ends and knows nothing of the
//! protocol, so keys never leave the agent and nothing of the traffic is kept or logged.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why an agent or a forwarder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "ssh agent {id}: SSH_AUTH_SOCK is not set: start an agent (eval $(ssh-agent); ssh-add) or give --ssh {id}=SOCKET|KEY"
    )]
    NoAuthSock { id: String },
    #[error("ssh agent {id}: {path} is neither a socket nor a readable key file")]
    NotSocketOrKey {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "ssh agent {id}: key files are served by ssh-agent and ssh-add, which are not installed: install them (apt-get install openssh-client)"
    )]
    AgentMissing { id: String },
    #[error("ssh agent {id}: {what} failed")]
    Agent {
        id: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "ssh agent {id}: ssh-add could not load {key} (a key with a passphrase needs an agent of your own: --ssh {id}=$SSH_AUTH_SOCK)"
    )]
    AddKey { id: String, key: PathBuf },
    #[error("forwarding the ssh agent at {path}")]
    Forward {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One `--ssh` agent: the socket steps are forwarded to, and the agent process when this build
/// started it (killed on drop).
#[derive(Debug)]
pub struct SshAgent {
    socket: PathBuf,
    started: Option<(Child, tempfile::TempDir)>,
}

impl SshAgent {
    /// `--ssh ID` (the caller's `SSH_AUTH_SOCK`) or `--ssh ID=PATH[,PATH...]`: one socket, or key
    /// files loaded into an `ssh-agent` started for the build.
    pub fn open(id: &str, paths: &[PathBuf]) -> Result<SshAgent, SshError> {
        let paths: Vec<PathBuf> = match paths {
            [] => match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                Some(sock) => vec![PathBuf::from(sock)],
                None => return Err(SshError::NoAuthSock { id: id.to_string() }),
            },
            given => given.to_vec(),
        };
        let mut keys = Vec::new();
        for path in &paths {
            let meta = std::fs::metadata(path).map_err(|source| SshError::NotSocketOrKey {
                id: id.to_string(),
                path: path.clone(),
                source,
            })?;
            if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                if paths.len() == 1 {
                    return Ok(SshAgent { socket: path.clone(), started: None });
                }
                let source = io::Error::other("a socket must be the only path of its id");
                return Err(SshError::NotSocketOrKey { id: id.to_string(), path: path.clone(), source });
            }
            keys.push(path.clone());
        }
        start_agent(id, &keys)
    }

    /// The agent's socket on the host.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        if let Some((child, _dir)) = self.started.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `ssh-agent -D -a SOCKET` in a private directory and loads `keys` with `ssh-add`.
fn start_agent(id: &str, keys: &[PathBuf]) -> Result<SshAgent, SshError> {
    let fail = |what: &str| {
        let (id, what) = (id.to_string(), what.to_string());
        move |source| SshError::Agent { id, what, source }
    };
    let dir = tempfile::Builder::new().prefix("slipway-agent-").tempdir().map_err(fail("creating its directory"))?;
    let socket = dir.path().join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SshError::AgentMissing { id: id.to_string() }),
        Err(e) => return Err(fail("starting ssh-agent")(e)),
    };
    let agent = SshAgent { socket: socket.clone(), started: Some((child, dir)) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            return Err(fail("waiting for ssh-agent")(io::Error::from(io::ErrorKind::TimedOut)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for key in keys {
        let status = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .env_remove("SSH_ASKPASS")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(_) => return Err(SshError::AddKey { id: id.to_string(), key: key.clone() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SshError::AgentMissing { id: id.to_string() });
            }
            Err(e) => return Err(fail("running ssh-add")(e)),
        }
    }
    Ok(agent)
}

/// A socket for one step that forwards every connection to an agent; stopped and removed on
/// drop (connections still open end when either side closes).
pub(crate) struct Forwarder {
    /// Holds the socket; removed with it on drop.
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// A socket owned by `uid:gid` with `mode`, forwarding to `agent`.
    pub(crate) fn start(agent: &Path, uid: u32, gid: u32, mode: u32) -> Result<Forwarder, SshError> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-ssh-")
            .tempdir()
            .map_err(|source| SshError::Forward { path: agent.to_path_buf(), source })?;
        let fail = |source| SshError::Forward { path: dir.path().to_path_buf(), source };
        // Without links on its way: the executor binds it without following any.
        let path = std::fs::canonicalize(dir.path()).map_err(fail)?.join("agent.sock");
        let fail = |source| SshError::Forward { path: path.clone(), source };
        // The directory only needs to be crossed (the sandbox sees the socket through a bind).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).map_err(fail)?;
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777)).map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, stopped) = (agent.to_path_buf(), stop.clone());
        let accept = std::thread::Builder::new()
            .name("ssh-forward".to_string())
            .spawn(move || accept_loop(&listener, &upstream, &stopped))
            .map_err(fail)?;
        Ok(Forwarder { _dir: dir, path, stop, accept: Some(accept) })
    }

    /// The socket to bind into the sandbox.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &UnixListener, upstream: &Path, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let Ok(agent) = UnixStream::connect(upstream) else {
            tracing::warn!(agent = %upstream.display(), "the ssh agent does not answer");
            continue;
        };
        let _ = std::thread::Builder::new().name("ssh-conn".to_string()).spawn(move || pipe(client, agent));
    }
}

/// Copies both ways until either side closes.
fn pipe(client: UnixStream, agent: UnixStream) {
    let (Ok(mut client_r), Ok(mut agent_r)) = (client.try_clone(), agent.try_clone()) else { return };
    let (mut client_w, mut agent_w) = (client, agent);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_r, &mut agent_w);
        let _ = agent_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut agent_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_forwarder_relays_each_connection_with_its_own_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("up.sock");
        let listener = UnixListener::bind(&upstream).unwrap();
        let echo = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 5];
                conn.read_exact(&mut buf).unwrap();
                conn.write_all(&buf).unwrap();
            }
        });
        let fwd = Forwarder::start(&upstream, 1000, 1000, 0o600).unwrap();
        let meta = std::fs::metadata(fwd.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (1000, 1000, 0o600));
        for _ in 0..2 {
            let mut c = UnixStream::connect(fwd.path()).unwrap();
            c.write_all(b"hello").unwrap();
            let mut back = [0u8; 5];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"hello");
        }
        echo.join().unwrap();
        let path = fwd.path().to_path_buf();
        drop(fwd);
        assert!(!path.exists(), "the socket and its directory are gone");
    }

    #[test]
    fn an_agent_path_must_be_a_socket_or_a_key() {
        let err = SshAgent::open("default", &[PathBuf::from("/no/such/key")]).unwrap_err();
        assert!(err.to_string().contains("/no/such/key"), "{err}");
    }
}
