//! What the executor and its sandbox helper say to each other.
//!
//! The executor writes one [`HelperConfig`] as JSON to the helper's stdin, preceded by its
//! length (8 bytes, little-endian) so that the payload's stdin can follow on the same pipe; the helper, its init
//! and the payload process (until it execs) write [`Report`]s, one JSON object per line, to an
//! inherited pipe. The format is private to one build of slipway (the helper is the same
//! binary), so it carries no version.

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::devices::DeviceNode;
use super::{ExecError, ExecSpec, sys};

/// Everything the helper needs, resolved on the host side.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelperConfig {
    pub spec: ExecSpec,
    pub rootfs: PathBuf,
    /// Files bound over the sandbox's `/etc/hosts` and `/etc/resolv.conf`.
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
    /// `cgroup.procs` files the helper joins before unsharing.
    pub cgroup_procs: Vec<PathBuf>,
    /// The sandbox is in a user namespace (its own when not root, or slipway's: a rootless
    /// build): no device nodes, no sysfs with the host network, ids beyond `mapped_ids` refused.
    pub rootless: bool,
    /// In a user namespace: ids 0..mapped_ids exist in the sandbox (1: only root; more with
    /// `newuidmap`).
    pub mapped_ids: u32,
    /// The `slirp4netns` binary serving [`Network::Default`](super::Network::Default).
    pub slirp: Option<PathBuf>,
    /// The payload reads the rest of the helper's stdin (`run -i`); else `/dev/null`.
    pub stdin: bool,
    /// Device nodes made in the sandbox's `/dev` (insecure mode only, see `devices`).
    pub devices: Vec<DeviceNode>,
    /// Namespaces (the embedded executor) or chroot isolation (`chroot`).
    pub isolation: Isolation,
}

/// How the helper isolates the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Its own pid, ipc, uts, cgroup, mount and (but for the host network) net namespaces.
    #[default]
    Namespaces,
    /// No namespace but, with `mount_ns`, a private mount namespace (the sandbox's mounts,
    /// then `pivot_root`); without it a plain `chroot` into the rootfs as it is.
    Chroot { mount_ns: bool },
}

impl Isolation {
    /// Whether the sandbox has a mount namespace of its own (and so its mounts).
    pub fn mounts(self) -> bool {
        match self {
            Isolation::Namespaces => true,
            Isolation::Chroot { mount_ns } => mount_ns,
        }
    }
}

/// One line on the report pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The sandbox's init (pid 1 inside) has this pid on the host.
    Init { pid: i32 },
    /// Setting up failed before the payload ran.
    Failed(Failure),
    /// The payload exited.
    Exited { code: i32 },
    /// A signal killed the payload.
    Signaled { signal: i32 },
    /// The init died before reporting the payload's end (it was killed).
    InitDied { signal: i32 },
}

/// A setup failure, serialisable across the pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    UnknownUser { user: String },
    UnknownGroup { group: String },
    UserNotMapped { uid: u32, gid: u32 },
    UserDb { path: String, reason: String },
    Workdir { path: String, errno: i32, reason: String },
    Setup { step: String, errno: Option<i32>, reason: String },
}

impl Failure {
    /// A failed system call during setup.
    pub fn setup(step: impl Into<String>, err: &io::Error) -> Failure {
        Failure::Setup { step: step.into(), errno: err.raw_os_error(), reason: err.to_string() }
    }

    pub fn workdir(path: &str, err: &io::Error) -> Failure {
        Failure::Workdir { path: path.to_string(), errno: err.raw_os_error().unwrap_or(0), reason: err.to_string() }
    }
}

fn io_error(errno: Option<i32>, reason: String) -> io::Error {
    match errno {
        Some(errno) if errno != 0 => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(reason),
    }
}

impl From<Failure> for ExecError {
    fn from(failure: Failure) -> ExecError {
        match failure {
            Failure::UnknownUser { user } => ExecError::UnknownUser { user },
            Failure::UnknownGroup { group } => ExecError::UnknownGroup { group },
            Failure::UserNotMapped { uid, gid } => ExecError::UserNotMapped { uid, gid },
            Failure::UserDb { path, reason } => ExecError::UserDb { path, reason },
            Failure::Workdir { path, errno, reason } => {
                ExecError::Workdir { path, source: io_error(Some(errno), reason) }
            }
            Failure::Setup { step, errno, reason } => ExecError::Setup { step, source: io_error(errno, reason) },
        }
    }
}

/// The writing end of the report pipe, held by the helper, init and payload-to-be.
pub struct Reporter {
    pub fd: RawFd,
}

impl Reporter {
    /// Writes one report line with a single write(2) (lines are far below PIPE_BUF, so reports
    /// from different processes never interleave). Errors are ignored: nobody is left to tell.
    pub fn send(&self, report: &Report) {
        let Ok(mut line) = serde_json::to_vec(report) else { return };
        line.push(b'\n');
        let _ = sys::write_all(self.fd, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_single_json_lines() {
        let reports = [
            Report::Init { pid: 42 },
            Report::Exited { code: 3 },
            Report::Signaled { signal: 9 },
            Report::InitDied { signal: 9 },
            Report::Failed(Failure::UnknownUser { user: "app".into() }),
            Report::Failed(Failure::setup("mounting /proc", &io::Error::from_raw_os_error(libc::EPERM))),
        ];
        for report in reports {
            let line = serde_json::to_string(&report).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Report>(&line).unwrap(), report);
        }
    }

    #[test]
    fn failures_become_typed_errors() {
        let err: ExecError = Failure::setup("mounting /proc", &io::Error::from_raw_os_error(libc::EPERM)).into();
        match err {
            ExecError::Setup { step, source } => {
                assert_eq!(step, "mounting /proc");
                assert_eq!(source.raw_os_error(), Some(libc::EPERM));
            }
            other => panic!("{other:?}"),
        }
        let err: ExecError = Failure::UserNotMapped { uid: 1000, gid: 1000 }.into();
        assert!(err.to_string().starts_with("user 1000:1000 is not mapped in the sandbox: "), "{err}");
        assert!(err.to_string().contains("apt-get install uidmap") && err.to_string().contains("/etc/subuid"));
    }
}
