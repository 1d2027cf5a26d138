//! Running one process in a sandbox: the RUN step of a build.
//!
//! Owns the [`Executor`] seam and its embedded implementation, [`EmbeddedExecutor`], which
//! builds the sandbox itself from Linux namespaces, mounts, capabilities and cgroups, with its
//! weaker mode [`ChrootExecutor`] (chroot isolation: no namespaces, for where none may be made).
//!
//! Process model: the caller (possibly multi-threaded) re-executes the slipway binary as a
//! single-threaded helper (`slipway __exec-init`, see [`helper_main`]) that unshares the
//! namespaces, forks a tiny init that is pid 1 of the new pid namespace, and that init forks
//! the payload (pid 2). Raw syscalls live in `sys` only.
//!
//! **Invariant:** `exec` never sees the store, images or Dockerfiles: it is given a root
//! filesystem directory and an [`ExecSpec`]. **Invariant:** the rootfs' own files are read
//! only from inside the sandbox (its `/etc/passwd` is never parsed by a host-side process
//! following the rootfs' symlinks), and every mount lives and dies with the sandbox's mount
//! namespace.

mod bundle;
mod caps;
mod cgroup;
mod chroot;
mod devices;
mod embedded;
pub mod emulation;
mod error;
mod idmap;
mod init;
mod mountpoints;
mod mounts;
mod oci_runtime;
mod protocol;
mod secrets;
mod slirp;
mod spec;
mod supervise;
mod sys;
mod user;
pub mod userns;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use caps::DOCKER_DEFAULT_CAPS;
pub use chroot::ChrootExecutor;
pub use embedded::EmbeddedExecutor;
pub use emulation::{Emulation, EmulationError, PlatformSupport, Support};
pub use error::ExecError;
pub use init::helper_main;
pub use oci_runtime::OciRuntimeExecutor;
pub use spec::{
    DEFAULT_HOSTNAME, DEFAULT_MASKED_PATHS, DEFAULT_PATH, DEFAULT_READONLY_PATHS, DEFAULT_SHM_SIZE, ExecSpec, Limits,
    Mount, MountSource, Network, Secret, SecretFile, Security, ULIMIT_NAMES, Ulimit, mount_order,
};

/// The `slirp4netns` that serves [`Network::Default`], found in `PATH`.
pub fn slirp_binary() -> Result<std::path::PathBuf, ExecError> {
    slirp::find()
}

/// Whether this process can open `/dev/net/tun` (slirp4netns needs it for [`Network::Default`]).
pub fn tun_usable() -> Result<(), ExecError> {
    slirp::check_tun()
}

/// Name of the hidden subcommand that runs the sandbox helper.
pub const HELPER_SUBCOMMAND: &str = "__exec-init";

/// Runs processes in sandboxes.
///
/// Lifecycle of one [`run`](Executor::run): validate the spec, build a fresh sandbox over
/// `rootfs`, run `spec.args` in it with stdin empty (or `output.stdin`), stream stdout and stderr to `output` as
/// they come, wait, tear the sandbox down (every process in it killed, every mount gone, cgroups
/// removed) and return how the process ended. The rootfs is the only state that outlives the
/// run. Cancelling `cancel` (or reaching `spec.timeout`) kills the sandbox and makes `run`
/// return [`ExecError::Cancelled`] (or [`ExecError::TimedOut`]) promptly.
///
/// Runs may proceed in parallel from several threads, each over its own rootfs; two runs over
/// the same rootfs at once are not supported (a build never does that: each step gets its
/// own snapshot).
pub trait Executor: Send + Sync {
    /// Runs `spec` over `rootfs`; blocks the calling thread until the sandbox is gone.
    fn run(
        &self,
        spec: &ExecSpec,
        rootfs: &Path,
        output: Output<'_>,
        cancel: &CancelToken,
    ) -> Result<ExitStatus, ExecError>;
}

/// Where a process' stdout and stderr go (written from reader threads while the process runs)
/// and, optionally, what it reads on stdin (empty otherwise).
pub struct Output<'a> {
    pub stdout: &'a mut (dyn Write + Send),
    pub stderr: &'a mut (dyn Write + Send),
    /// Copied to the process' stdin by a detached thread, which ends at the source's end of
    /// file or once the sandbox is gone (a terminal that stays open costs a blocked thread,
    /// never a blocked run).
    pub stdin: Option<Box<dyn Read + Send>>,
}

impl<'a> Output<'a> {
    /// Output to these two writers, stdin empty.
    pub fn new(stdout: &'a mut (dyn Write + Send), stderr: &'a mut (dyn Write + Send)) -> Output<'a> {
        Output { stdout, stderr, stdin: None }
    }

    /// The process reads `stdin` (`slipway run -i`).
    pub fn with_stdin(mut self, stdin: Box<dyn Read + Send>) -> Output<'a> {
        self.stdin = Some(stdin);
        self
    }
}

/// Starts the detached thread that feeds a sandbox's stdin pipe; errors (the process closed
/// its stdin, the sandbox is gone) end it quietly.
fn feed_stdin(mut from: Box<dyn Read + Send>, mut to: impl Write + Send + 'static) {
    let _ = std::thread::Builder::new().name("stdin".to_string()).spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
    });
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (126: not executable, 127: not found, Docker's convention).
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Exited with 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(signal) => Some(signal),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// Which signal [`cancel_on_signals`] saw first, if any.
#[derive(Debug, Clone, Default)]
pub struct SignalWatch {
    received: Arc<std::sync::atomic::AtomicI32>,
}

impl SignalWatch {
    /// The first of SIGINT, SIGTERM, SIGHUP the process received since the watch started.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

/// Turns SIGINT, SIGTERM and SIGHUP into a cancellation of `cancel` (so a run is torn down and
/// its caller can clean up) instead of killing the process. Blocks those signals in the calling
/// thread and starts a thread that waits for them; call it from the main thread before any
/// other thread starts, so that every thread has them blocked. Children inherit the mask: the
/// sandbox helper waits for them itself and the payload gets a clean one.
pub fn cancel_on_signals(cancel: &CancelToken) -> std::io::Result<SignalWatch> {
    const WATCHED: [libc::c_int; 3] = [sys::SIGINT, sys::SIGTERM, sys::SIGHUP];
    sys::block_signals(&WATCHED)?;
    let watch = SignalWatch::default();
    let (token, seen) = (cancel.clone(), watch.clone());
    std::thread::Builder::new().name("signals".to_string()).spawn(move || {
        while let Ok((signal, _)) = sys::sigwait(&WATCHED) {
            let _ = seen.received.compare_exchange(
                0,
                signal,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            );
            token.cancel();
        }
    })?;
    Ok(watch)
}

/// A cancellation flag shared between the caller and running executors; cloning shares it.
/// Once cancelled it stays cancelled.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every run using this token (now and later).
    pub fn cancel(&self) {
        let (lock, cvar) = &*self.inner;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every thread in [`wait_until`](Self::wait_until) so it re-checks its condition.
    fn wake(&self) {
        let (lock, cvar) = &*self.inner;
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        cvar.notify_all();
    }

    /// Waits until `done()` holds (checked after every [`wake`](Self::wake)), the token is
    /// cancelled, or `timeout` passes; returns whether it was cancelled.
    fn wait_until(&self, timeout: Option<Duration>, done: impl Fn() -> bool) -> bool {
        self.wait(timeout, true, done)
    }

    /// Waits until `done()` holds or `timeout` passes, cancelled or not (the grace period
    /// after a cancellation).
    fn wait_for(&self, timeout: Duration, done: impl Fn() -> bool) {
        self.wait(Some(timeout), false, done);
    }

    fn wait(&self, timeout: Option<Duration>, stop_on_cancel: bool, done: impl Fn() -> bool) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let (lock, cvar) = &*self.inner;
        let mut cancelled = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if (stop_on_cancel && *cancelled) || done() {
                return *cancelled;
            }
            match deadline {
                None => cancelled = cvar.wait(cancelled).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return *cancelled;
                    }
                    cancelled = cvar.wait_timeout(cancelled, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }
}
