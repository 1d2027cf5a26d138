//! [`Network::Default`](super::Network::Default): outbound access for a private network
//! namespace through `slirp4netns` (user-mode NAT, no privileges, no host interfaces).
//!
//! Owns finding the binary on the host side ([`find`]), starting it for a network namespace
//! from outside the sandbox ([`Slirp::start`]) and stopping it ([`Slirp::stop`]); both
//! executors use it. The sandbox sees a `tap0` interface at 10.0.2.100, its gateway at
//! 10.0.2.2 and a DNS forwarder at [`DNS`]; the host's loopback is never reachable
//! (`--disable-host-loopback`). slirp4netns also exits by itself when the process that
//! started it dies (`--exit-fd`).
//!
//! Knows nothing of mounts, users or specs.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{ExecError, sys};

/// The DNS forwarder slirp4netns provides inside the sandbox.
pub const DNS: &str = "10.0.2.3";

/// The interface slirp4netns creates in the sandbox.
const TAP: &str = "tap0";

/// slirp4netns' largest MTU: fewer, bigger packets through the user-mode stack.
const MTU: &str = "65520";

/// Where `slirp4netns` is looked up when `PATH` is not set.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Finds `slirp4netns` in the caller's `PATH`.
pub fn find() -> Result<PathBuf, ExecError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(FALLBACK_PATH));
    std::env::split_paths(&path)
        .map(|dir| dir.join("slirp4netns"))
        .find(|candidate| is_executable(candidate))
        .ok_or(ExecError::SlirpMissing)
}

/// Whether this process can open `/dev/net/tun`, where slirp4netns makes the sandbox's interface
/// (as the caller: an unprivileged one cannot when the node is 0600).
pub fn check_tun() -> Result<(), ExecError> {
    match std::fs::OpenOptions::new().read(true).write(true).open(TUN) {
        Ok(_) => Ok(()),
        Err(source) => Err(ExecError::TunUnavailable { source }),
    }
}

const TUN: &str = "/dev/net/tun";

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running slirp4netns serving one sandbox's network namespace.
pub struct Slirp {
    child: Child,
    /// Closing this ends slirp4netns (`--exit-fd`); it also closes when we die.
    exit_w: Option<OwnedFd>,
}

impl Slirp {
    /// Starts `binary` for the network namespace `netns` and waits until it has configured the
    /// interface (address, route, loopback up). The caller must be in the host's network and
    /// pid namespaces: the embedded executor's helper before it unshares, or the oci-runtime
    /// executor itself. stdio goes to `/dev/null`.
    pub fn start(binary: &Path, netns: &File) -> io::Result<Slirp> {
        let (ready_r, ready_w) = sys::pipe()?;
        let (exit_r, exit_w) = sys::pipe()?;
        let (ready_fd, exit_fd, netns_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd(), netns.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args(["--configure", "--mtu", MTU, "--disable-host-loopback", "--netns-type=path"])
            .arg(format!("--ready-fd={ready_fd}"))
            .arg(format!("--exit-fd={exit_fd}"))
            .arg(format!("/proc/self/fd/{netns_fd}"))
            .arg(TAP)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl(2) on descriptors that
        // stay open in the parent for the whole spawn.
        unsafe {
            command.pre_exec(move || {
                sys::set_cloexec(ready_fd, false)?;
                sys::set_cloexec(exit_fd, false)?;
                sys::set_cloexec(netns_fd, false)
            });
        }
        let child = command.spawn()?;
        drop((ready_w, exit_r));
        let mut slirp = Slirp { child, exit_w: Some(exit_w) };
        let mut byte = [0u8; 1];
        let ready = File::from(ready_r).read(&mut byte);
        match ready {
            Ok(1) if byte[0] == b'1' => Ok(slirp),
            Ok(_) => {
                let status = slirp.stop();
                Err(io::Error::other(format!("slirp4netns ended before the network was ready ({status})")))
            }
            Err(e) => {
                slirp.stop();
                Err(e)
            }
        }
    }

    /// Ends slirp4netns and reaps it; returns how it ended, for error messages.
    pub fn stop(&mut self) -> String {
        drop(self.exit_w.take());
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        if self.exit_w.is_some() {
            self.stop();
        }
    }
}

/// The `/etc/resolv.conf` of a sandbox on the default network.
pub fn resolv_conf() -> String {
    format!("nameserver {DNS}\n")
}
