//! [`ChrootExecutor`]: chroot isolation (`--isolation chroot`), for a slipway that runs as root
//! where it may not create namespaces (a default Kubernetes pod, some CI runners).
//!
//! A mode of the embedded executor rather than a machine of its own: the host side (run
//! directory, generated `/etc` files, secrets, mount points, cgroups, supervision, the helper
//! re-exec) and the payload's setup (rlimits, user and groups, capabilities, `no_new_privs`,
//! working directory, exec and its 126/127) are the embedded executor's code; only how the
//! payload is confined differs, here.
//!
//! Process model: **helper** (`__exec-init`, a child subreaper) → **init** (its child, not a
//! pid 1) → **payload**. No pid, ipc, uts, cgroup or network namespace is made: the step shares
//! the host's processes, hostname and network. Two tiers, probed once by [`ChrootExecutor::new`]:
//!
//! - **with a mount namespace** (the process may unshare one, e.g. it has `CAP_SYS_ADMIN`):
//!   the helper gets one before exec (sealing its binary, as the embedded executor), init a
//!   second of its own (so `pivot_root` leaves the helper's root and `/proc` alone), then builds
//!   the sandbox's mount table (`mounts::setup`: a fresh `/proc` where the kernel allows one,
//!   `/dev`, `/sys`, `/etc/hosts`, `/etc/resolv.conf`, the step's mounts, masked and read-only
//!   paths) and pivots into the rootfs.
//! - **without one**: init `chroot`s into the rootfs as it is. Nothing can be mounted, so a
//!   spec with mounts (binds, tmpfs, secret files) or extra hosts is refused before anything
//!   starts; `/proc`, `/sys`, `/etc/hosts` and `/etc/resolv.conf` are the rootfs' own, and `/dev`
//!   gets the standard device nodes for the run where this process may make them
//!   (`MountPoints::create_devices`).
//!
//! A root payload keeps Docker's capabilities without [`CHROOT_DROPPED`](super::caps::CHROOT_DROPPED)
//! (no `CAP_SYS_CHROOT`: a second chroot would walk out of the first). Nothing confines pids, so
//! the helper kills what a payload leaves behind: orphaned descendants are reparented to it, and
//! when init ends or the run is cancelled it kills its children (found in `/proc` by parent pid)
//! until none is left. A helper killed with SIGKILL takes init and the payload with it
//! (parent-death signals) but not their own children.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::embedded::EmbeddedExecutor;
use super::init;
use super::mounts;
use super::protocol::{Failure, HelperConfig, Isolation, Report, Reporter};
use super::sys::{self, WaitStatus};
use super::user::{self, ExecUser};
use super::{CancelToken, ExecError, ExecSpec, Executor, ExitStatus, Network, Output};

/// Runs processes chrooted into their rootfs, without namespaces but (where the process may
/// make one) a mount namespace; weaker isolation than [`EmbeddedExecutor`], see `SECURITY.md`.
#[derive(Debug, Clone)]
pub struct ChrootExecutor {
    inner: EmbeddedExecutor,
    mount_ns: bool,
}

impl ChrootExecutor {
    /// `helper` is a slipway binary, as for [`EmbeddedExecutor::new`]. Probes whether this
    /// process may make a mount namespace.
    pub fn new(helper: impl Into<PathBuf>) -> ChrootExecutor {
        let mount_ns = sys::can_create_mount_namespace();
        let inner = EmbeddedExecutor::new(helper).with_isolation(Isolation::Chroot { mount_ns });
        ChrootExecutor { inner, mount_ns }
    }

    /// Where per-run directories are created (default: the temp dir).
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> ChrootExecutor {
        self.inner = self.inner.with_run_dir(dir);
        self
    }

    /// Whether runs get a mount namespace of their own (else a plain chroot, and no mounts).
    pub fn mount_namespace(&self) -> bool {
        self.mount_ns
    }

    /// The spec as chroot isolation runs it (the host's network and hostname), or why it cannot.
    fn admit(&self, spec: &ExecSpec) -> Result<ExecSpec, ExecError> {
        spec.validate()?;
        let refuse = |reason: String| Err(ExecError::ChrootRefused { reason });
        if !rustix::process::geteuid().is_root() {
            return refuse("it needs root (chroot takes CAP_SYS_CHROOT)".to_string());
        }
        if spec.network == Network::None {
            return refuse(
                "network none needs a network namespace; under chroot isolation every step has the host's network"
                    .to_string(),
            );
        }
        if !self.mount_ns {
            let without = "which needs a mount namespace, and this process may not create one";
            if let Some(mount) = spec.mounts.first() {
                return refuse(format!("the mount at {} {without}", mount.target));
            }
            if let Some((name, _)) = spec.extra_hosts.first() {
                return refuse(format!("the extra host {name} goes into a generated /etc/hosts, {without}"));
            }
        }
        let mut admitted = spec.clone();
        admitted.network = Network::Host;
        // The step shares the host's hostname: /etc/hosts names that one.
        if let Ok(host) = rustix::system::uname().nodename().to_str() {
            let mut named = admitted.clone();
            named.hostname = host.to_string();
            if named.validate().is_ok() {
                admitted = named;
            }
        }
        Ok(admitted)
    }
}

impl Executor for ChrootExecutor {
    fn run(
        &self,
        spec: &ExecSpec,
        rootfs: &Path,
        output: Output<'_>,
        cancel: &CancelToken,
    ) -> Result<ExitStatus, ExecError> {
        let spec = self.admit(spec)?;
        self.inner.run(&spec, rootfs, output, cancel)
    }
}

/// The helper under chroot isolation, after it read its config and joined the cgroups: forks
/// init, reports its pid, and waits; on SIGTERM from the executor, or once init is gone, kills
/// every process the run left. Single-threaded (see `init`).
pub(super) fn helper(cfg: &HelperConfig, reporter: &Reporter, mount_ns: bool) -> Result<(), Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    sys::set_child_subreaper().map_err(step("becoming a subreaper"))?;
    let waited = [sys::SIGCHLD, sys::SIGTERM, sys::SIGINT, sys::SIGHUP];
    sys::block_signals(&waited).map_err(step("blocking signals"))?;
    let (alive_r, alive_w) = sys::pipe().map_err(step("creating the liveness pipe"))?;
    // SAFETY: the helper is single-threaded (see `init`).
    let init_pid = match unsafe { sys::fork() }.map_err(step("forking the sandbox init"))? {
        None => {
            drop(alive_w);
            chroot_init(cfg, reporter, &alive_r, mount_ns)
        }
        Some(pid) => pid,
    };
    drop(alive_r);
    reporter.send(&Report::Init { pid: init_pid });
    loop {
        let (signal, _) = sys::sigwait(&waited).map_err(step("waiting for signals"))?;
        if signal != sys::SIGCHLD {
            kill_descendants();
            return Ok(());
        }
        loop {
            match sys::waitpid(-1, true) {
                Ok(Some((pid, status))) if pid == init_pid => {
                    if let WaitStatus::Signaled(signal) = status {
                        reporter.send(&Report::InitDied { signal });
                    }
                    kill_descendants();
                    return Ok(());
                }
                // An orphaned descendant, reparented to us.
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return Err(Failure::setup("waiting for the sandbox init", &e)),
            }
        }
    }
}

/// Init under chroot isolation. Never returns.
fn chroot_init(cfg: &HelperConfig, reporter: &Reporter, alive: &impl AsRawFd, mount_ns: bool) -> ! {
    match prepare(cfg, reporter, alive, mount_ns) {
        Ok(user) => init::supervise(cfg, reporter, &user),
        Err(failure) => {
            reporter.send(&Report::Failed(failure));
            sys::exit_now(init::SETUP_FAILED)
        }
    }
}

/// Confines init to the rootfs (a mount table and `pivot_root`, or a plain `chroot`), then
/// resolves the user from the rootfs' own files and creates the working directory.
fn prepare(cfg: &HelperConfig, reporter: &Reporter, alive: &impl AsRawFd, mount_ns: bool) -> Result<ExecUser, Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    sys::set_pdeathsig(sys::SIGKILL).map_err(step("arming the parent-death signal"))?;
    if sys::pipe_hung_up(alive).map_err(step("checking the helper"))? {
        sys::exit_now(init::SETUP_FAILED);
    }
    // Not dumpable: the payload (same uid, fewer capabilities) cannot ptrace us.
    sys::set_dumpable(false).map_err(step("making init non-dumpable"))?;
    match mount_ns {
        true => {
            sys::unshare(sys::CLONE_NEWNS).map_err(step("unsharing the mount namespace"))?;
            mounts::setup(cfg)?;
        }
        false => enter_rootfs(&cfg.rootfs).map_err(step("chroot into the rootfs"))?,
    }
    sys::close_fds_except(&[reporter.fd]).map_err(step("closing descriptors"))?;
    let passwd = user::read_db("/etc/passwd")?;
    let group = user::read_db("/etc/group")?;
    let user = user::resolve(&cfg.spec.user, &passwd, &group)?;
    init::create_workdir(&cfg.spec.cwd, &user)?;
    Ok(user)
}

fn enter_rootfs(rootfs: &Path) -> io::Result<()> {
    std::env::set_current_dir(rootfs)?;
    sys::chroot(Path::new("."))?;
    std::env::set_current_dir("/")
}

/// Kills every child of this process and reaps it, until none is left; as a subreaper it
/// inherits the orphans of those it kills, so this ends with the whole tree.
fn kill_descendants() {
    let me = sys::getpid();
    loop {
        for pid in children_of(me) {
            let _ = sys::kill(pid, sys::SIGKILL);
        }
        loop {
            match sys::waitpid(-1, true) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                // ECHILD: nothing left.
                Err(_) => return,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat` (gone processes skipped).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| ppid(&s)) == Some(parent))
        .collect()
}

/// The parent pid in a `/proc/<pid>/stat` line: the second field after the command, whose
/// parentheses may hold anything.
fn ppid(stat: &str) -> Option<libc::pid_t> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_reads_past_any_command_name() {
        assert_eq!(ppid("42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(ppid("42 (a) b) (c) R 9 1"), Some(9));
        assert_eq!(ppid("42 (sh"), None);
    }

    #[test]
    fn children_of_finds_a_child() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children_of(sys::getpid());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&(child.id() as libc::pid_t)), "{found:?}");
    }
}
