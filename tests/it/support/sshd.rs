//! An SSH host for tests: OpenSSH's `/usr/sbin/sshd` on 127.0.0.1 with keys made by
//! `ssh-keygen` in a temp dir (a host key, and a client key pair whose public half is the only
//! authorized key), and no configuration read from the machine (`-f /dev/null`). Also the
//! host's `ssh` client copied into a test rootfs, so that a build step can log in.
//!
//! The server runs as the test (root) and lets `root` in by public key only; a login runs
//! commands with the host's own root account (its shell and home directory), so the files it
//! serves are named by absolute paths.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{describe, scaled};

/// The server binary the tests run.
pub const SSHD_BIN: &str = "/usr/sbin/sshd";

/// The client binary copied into test images and used from the host.
pub const SSH_BIN: &str = "/usr/bin/ssh";

/// Where a client logs in.
pub const DESTINATION: &str = "root@127.0.0.1";

/// The address of [`TestSshd::start_git_host`].
pub const GIT_HOST: &str = "127.0.0.2";

/// The privilege separation directory sshd insists on (compiled in; root-owned, not
/// group/world-writable).
const PRIVSEP_DIR: &str = "/run/sshd";

/// A running sshd, killed (and its temp dir removed) on drop.
pub struct TestSshd {
    child: Child,
    address: String,
    port: u16,
    dir: tempfile::TempDir,
    client_key: PathBuf,
    public_key: String,
    log: PathBuf,
}

impl TestSshd {
    /// Generates the keys and starts sshd on 127.0.0.1, returning once its port accepts
    /// connections.
    pub fn start() -> TestSshd {
        TestSshd::start_on("127.0.0.1", free_port(), None)
    }

    /// A git host as `git@HOST:path` remotes reach it: sshd on port 22 of 127.0.0.2 (a free
    /// address: 127.0.0.1:22 may be the machine's own sshd), and a user `git` — uid 0, in a copy
    /// of `/etc/passwd` bound over the real one in sshd's own mount namespace only.
    pub fn start_git_host() -> TestSshd {
        TestSshd::start_on(GIT_HOST, 22, Some("git:x:0:0:git:/root:/bin/sh"))
    }

    fn start_on(address: &str, port: u16, extra_user: Option<&str>) -> TestSshd {
        assert!(Path::new(SSHD_BIN).exists(), "{SSHD_BIN} missing: scripts/install-deps installs openssh-server");
        let dir = tempfile::Builder::new().prefix("slipway-sshd-").tempdir().expect("temp dir");
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ed25519");
        keygen(&host_key, "slipway-test-host");
        keygen(&client_key, "slipway-test-client");
        let public_key = std::fs::read_to_string(client_key.with_extension("pub")).unwrap().trim().to_string();
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{public_key}\n")).unwrap();
        std::fs::create_dir(dir.path().join("served")).unwrap();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(PRIVSEP_DIR)
            .unwrap_or_else(|e| panic!("create {PRIVSEP_DIR}: {e}"));

        let options = [
            format!("ListenAddress={address}"),
            format!("Port={port}"),
            format!("HostKey={}", host_key.display()),
            format!("AuthorizedKeysFile={}", authorized_keys.display()),
            "PidFile=none".to_string(),
            // The temp dir lies under a world-writable /tmp.
            "StrictModes=no".to_string(),
            "UsePAM=no".to_string(),
            "PasswordAuthentication=no".to_string(),
            "KbdInteractiveAuthentication=no".to_string(),
            "PermitRootLogin=prohibit-password".to_string(),
            // Not even the host root's ~/.ssh/rc runs.
            "PermitUserRC=no".to_string(),
        ];
        let log = dir.path().join("sshd.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = match extra_user {
            None => Command::new(SSHD_BIN),
            Some(line) => {
                let passwd = dir.path().join("passwd");
                let mut text = std::fs::read_to_string("/etc/passwd").unwrap();
                text.push_str(&format!("{line}\n"));
                std::fs::write(&passwd, text).unwrap();
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount --bind \"$0\" /etc/passwd && exec \"$@\"",
                ]);
                cmd.arg(&passwd).arg(SSHD_BIN);
                cmd
            }
        };
        cmd.args(["-D", "-e", "-f", "/dev/null"]);
        for option in &options {
            cmd.arg("-o").arg(option);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn sshd");
        let mut sshd = TestSshd { child, address: address.to_string(), port, dir, client_key, public_key, log };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let limit = scaled(Duration::from_secs(10));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect((self.address.as_str(), self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not listen on {} within {limit:?}:\n{}", self.port, self.log());
    }

    /// The port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's host key as a `known_hosts` line for `host`.
    pub fn known_hosts_line(&self, host: &str) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).unwrap();
        let mut parts = key.split_whitespace();
        format!("{host} {} {}\n", parts.next().unwrap(), parts.next().unwrap())
    }

    /// The client's private key file (ed25519, no passphrase, mode 0600).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The client's public key, as an `authorized_keys` line (`ssh-ed25519 AAAA… comment`).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Writes `content` to a file a client can fetch (`ssh … cat PATH`); returns its absolute
    /// path.
    pub fn serve_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join("served").join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `ssh` options for logging in here without a known_hosts file, any configuration file or
    /// a prompt; the key (`-i`, or an agent) and the destination ([`DESTINATION`]) come after.
    pub fn client_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.port.to_string()])
        .collect()
    }

    /// Everything sshd logged so far (`Accepted publickey for root …` per login).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `ssh-agent` in the foreground (`-D`) on a socket in its own temp dir, killed (and the dir
/// removed) on drop.
pub struct SshAgent {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl SshAgent {
    /// Starts the agent, returning once its socket exists.
    pub fn start() -> SshAgent {
        let dir = tempfile::Builder::new().prefix("slipway-agent-").tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let log = dir.path().join("agent.log");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ssh-agent (scripts/install-deps installs openssh-client)");
        let mut agent = SshAgent { child, _dir: dir, socket };
        let limit = scaled(Duration::from_secs(10));
        let deadline = Instant::now() + limit;
        while !agent.socket.exists() {
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("ssh-agent exited with {status}:\n{}", log());
            }
            assert!(Instant::now() < deadline, "ssh-agent made no socket within {limit:?}:\n{}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// The agent's socket (the value for `SSH_AUTH_SOCK`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ssh-add KEY` into this agent.
    pub fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("spawn ssh-add");
        assert!(out.status.success(), "ssh-add {}: {}", key.display(), describe(&out));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// `ssh-keygen`: an ed25519 pair without passphrase at `path` and `path.pub`.
fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("spawn ssh-keygen (scripts/install-deps installs openssh-client)");
    assert!(out.status.success(), "ssh-keygen {}: {}", path.display(), describe(&out));
}

/// Adds the host's `ssh` client to `rootfs` at the same path, with every shared library `ldd`
/// names for it (the dynamic loader included) at their host paths, and makes sure `root` has a
/// passwd entry and an existing home directory (the client looks itself up and refuses to run
/// otherwise). Parents are made as plain directories, so `rootfs` must not hold symlinks on
/// those paths (a busybox rootfs holds none).
pub fn ssh_client_rootfs(rootfs: &Path) {
    assert!(Path::new(SSH_BIN).exists(), "{SSH_BIN} missing: scripts/install-deps installs openssh-client");
    let out = Command::new("ldd").arg(SSH_BIN).output().expect("spawn ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("not found"), "ldd {SSH_BIN}: {}", describe(&out));
    let libraries = ldd_paths(&text);
    assert!(!libraries.is_empty(), "ldd named no library for {SSH_BIN}: {}", describe(&out));
    for path in std::iter::once(PathBuf::from(SSH_BIN)).chain(libraries) {
        let target = rootfs.join(path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        // Follows symlinks (`libz.so.1 -> libz.so.1.2.13`): the file lands at the name asked for.
        std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("copy {} into the rootfs: {e}", path.display()));
    }

    let passwd_path = rootfs.join("etc/passwd");
    let mut passwd = std::fs::read_to_string(&passwd_path).unwrap_or_default();
    if !passwd.lines().any(|l| l.split(':').nth(2) == Some("0")) {
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        passwd.push_str("root:x:0:0:root:/root:/bin/sh\n");
        std::fs::write(&passwd_path, &passwd).unwrap();
    }
    let home = passwd.lines().find(|l| l.split(':').nth(2) == Some("0")).and_then(|l| l.split(':').nth(5)).unwrap();
    std::fs::create_dir_all(rootfs.join(home.trim_start_matches('/'))).unwrap();
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and the loader's
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has none.
fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.split_once("=>").map_or(line, |(_, right)| right);
            line.split_whitespace().next().filter(|word| word.starts_with('/')).map(PathBuf::from)
        })
        .collect()
}
