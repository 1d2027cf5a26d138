//! [`ExecError`]: everything that can stop a process from running or being waited for.
//!
//! A process that runs and fails is not an error: its status is an [`ExitStatus`](super::ExitStatus).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a run did not produce an exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid exec spec: {reason}")]
    InvalidSpec { reason: String },
    #[error("building the OCI {what}")]
    OciSpec {
        what: &'static str,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("root filesystem {path} is not a directory")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to prepare {what}")]
    Prepare {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to start the sandbox helper {helper}")]
    Spawn {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed: {step}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
    #[error(
        "user {uid}:{gid} is not mapped in the sandbox: a rootless run maps only root unless newuidmap and newgidmap are installed (apt-get install uidmap) and the user has subordinate ids in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)"
    )]
    UserNotMapped { uid: u32, gid: u32 },
    #[error("cannot read the sandbox's {path}: {reason}")]
    UserDb { path: String, reason: String },
    #[error("cannot use working directory {path}")]
    Workdir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{limit} limit requested but cgroups cannot apply it: {reason}")]
    LimitUnavailable {
        limit: &'static str,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "network mode default needs slirp4netns, which is not installed: install it (apt-get install slirp4netns) or choose network none or host"
    )]
    SlirpMissing,
    #[error(
        "network mode default needs /dev/net/tun for slirp4netns, and this user cannot open it: make it usable (chmod 0666 /dev/net/tun, its usual mode) or choose network none or host"
    )]
    TunUnavailable {
        #[source]
        source: io::Error,
    },
    #[error("oci runtime {runtime} cannot be used: {reason}")]
    RuntimeUnavailable { runtime: String, reason: String },
    #[error("oci runtime {runtime} failed: {reason}")]
    RuntimeFailed { runtime: PathBuf, reason: String },
    #[error("mapping the subordinate ids of the sandbox failed")]
    IdMapping {
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot enter a user namespace for a rootless slipway: user namespaces may be disabled (check the sysctls user.max_user_namespaces and kernel.unprivileged_userns_clone) or the id helpers failed; run as root, with --isolation chroot where namespaces are forbidden"
    )]
    UserNamespace {
        #[source]
        source: io::Error,
    },
    #[error("chroot isolation cannot run this: {reason}")]
    ChrootRefused { reason: String },
    #[error("run cancelled")]
    Cancelled,
    #[error("run timed out after {timeout:?}")]
    TimedOut { timeout: Duration },
    #[error("failed to forward the process output")]
    Output {
        #[source]
        source: io::Error,
    },
    #[error("the sandbox helper ended without reporting a status ({status})")]
    HelperLost { status: std::process::ExitStatus },
    #[error("failed to wait for the sandbox helper")]
    Wait {
        #[source]
        source: io::Error,
    },
    #[error("failed to clean up after the run: {what}")]
    Cleanup {
        what: String,
        #[source]
        source: io::Error,
    },
}
