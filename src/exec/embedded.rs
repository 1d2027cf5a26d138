//! [`EmbeddedExecutor`]: the sandbox built by slipway itself (no OCI runtime needed).
//!
//! Host side of a run: writes the generated `/etc/hosts` and `/etc/resolv.conf` into a private
//! run directory, creates their missing mount points in the rootfs, creates the cgroup, spawns
//! the helper (`slipway __exec-init`), streams its stdout and stderr into the caller's sinks
//! (`supervise`), waits (or cancels), and undoes all of it. The calling thread may belong to a
//! multi-threaded process: only the helper, a fresh exec, must be single-threaded.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::cgroup::RunCgroup;
use super::idmap::{self, SubIds};
use super::mountpoints::MountPoints;
use super::protocol::{HelperConfig, Isolation, Report};
use super::slirp;
use super::supervise::supervise;
use super::{
    CancelToken, ExecError, ExecSpec, Executor, ExitStatus, HELPER_SUBCOMMAND, Network, Output, Security, devices, sys,
};

/// Largest host `/etc/resolv.conf` copied into a sandbox.
const MAX_RESOLV_BYTES: u64 = 64 << 10;

/// Runs processes in namespaces built by a re-executed slipway binary.
///
/// ```no_run
/// use slipway::exec::{CancelToken, EmbeddedExecutor, ExecSpec, Executor, Output};
///
/// let executor = EmbeddedExecutor::new(std::env::current_exe()?);
/// let mut spec = ExecSpec::new(["/bin/sh", "-c", "echo hello from $(hostname)"]);
/// spec.user = "nobody".to_string();
/// let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
/// let output = Output::new(&mut stdout, &mut stderr);
/// let status = executor.run(&spec, "/path/to/rootfs".as_ref(), output, &CancelToken::new())?;
/// assert!(status.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedExecutor {
    helper: PathBuf,
    run_dir: PathBuf,
    /// Not root: each sandbox enters a user namespace of its own.
    own_userns: bool,
    /// Rootless: the subordinate ids `newuidmap`/`newgidmap` can map (probed once).
    subids: Option<SubIds>,
    /// The sandbox is in a user namespace: its own, or the one slipway itself runs in
    /// (`userns`: a rootless build). The kernel then refuses device nodes, sysfs with the host
    /// network and ids beyond the map.
    in_userns: bool,
    /// How many ids (0 up) exist in the sandbox.
    mapped_ids: u32,
    /// Namespaces, or chroot isolation for [`ChrootExecutor`](super::ChrootExecutor).
    isolation: Isolation,
}

impl EmbeddedExecutor {
    /// `helper` is a slipway binary (the sandbox helper is its hidden `__exec-init`
    /// subcommand): the running one in the CLI, `env!("CARGO_BIN_EXE_slipway")` in tests.
    pub fn new(helper: impl Into<PathBuf>) -> EmbeddedExecutor {
        let own_userns = !rustix::process::geteuid().is_root();
        let subids = if own_userns { idmap::probe(sys::getuid()) } else { None };
        let (in_userns, mapped_ids) = match (own_userns, &subids) {
            (true, ids) => (true, ids.as_ref().map_or(1, SubIds::mapped)),
            (false, _) => {
                let here = idmap::mapped_here();
                (here != u32::MAX, here)
            }
        };
        EmbeddedExecutor {
            helper: helper.into(),
            run_dir: std::env::temp_dir(),
            own_userns,
            subids,
            in_userns,
            mapped_ids,
            isolation: Isolation::Namespaces,
        }
    }

    /// The same helper isolating by chroot (see `chroot`).
    pub(super) fn with_isolation(mut self, isolation: Isolation) -> EmbeddedExecutor {
        self.isolation = isolation;
        self
    }

    /// Where per-run directories (generated `/etc` files) are created (default: the temp dir).
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> EmbeddedExecutor {
        self.run_dir = dir.into();
        self
    }
}

impl Executor for EmbeddedExecutor {
    fn run(
        &self,
        spec: &ExecSpec,
        rootfs: &Path,
        output: Output<'_>,
        cancel: &CancelToken,
    ) -> Result<ExitStatus, ExecError> {
        spec.validate()?;
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let meta =
            std::fs::metadata(rootfs).map_err(|source| ExecError::Rootfs { path: rootfs.to_path_buf(), source })?;
        if !meta.is_dir() {
            let source = io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(ExecError::Rootfs { path: rootfs.to_path_buf(), source });
        }
        let rootfs =
            std::fs::canonicalize(rootfs).map_err(|source| ExecError::Rootfs { path: rootfs.to_path_buf(), source })?;
        let run_dir = tempfile::Builder::new().prefix("slipway-exec-").tempdir_in(&self.run_dir).map_err(|source| {
            ExecError::Prepare { what: format!("a run directory in {}", self.run_dir.display()), source }
        })?;
        let slirp = match spec.network {
            Network::Default => {
                let binary = slirp::find()?;
                // In a user namespace slirp4netns opens the tun device as the caller: say why
                // it cannot before it fails without a reason.
                if self.in_userns {
                    slirp::check_tun()?;
                }
                Some(binary)
            }
            Network::None | Network::Host => None,
        };
        let (hosts_file, resolv_file) = write_etc_files(run_dir.path(), spec)?;
        // Secret files become read-only binds of a tmpfs that lives until this function returns.
        let (spec, mut secrets) = super::secrets::with_secret_files(spec, &self.run_dir)?;
        // Without a mount namespace (chroot isolation) nothing is mounted: device nodes instead.
        let mut mount_points = match self.isolation.mounts() {
            true => MountPoints::create(&rootfs, &spec.mounts)?,
            false => MountPoints::create_devices(&rootfs)?,
        };
        let mut cgroup = match spec.limits.is_empty() {
            true => None,
            false => Some(RunCgroup::create(&run_id(run_dir.path()), &spec.limits)?),
        };
        let devices = match spec.security {
            Security::Sandbox => Vec::new(),
            Security::Insecure => devices::insecure(self.in_userns),
        };
        let config = HelperConfig {
            spec,
            rootfs,
            hosts_file,
            resolv_file,
            cgroup_procs: cgroup.as_ref().map(RunCgroup::procs_files).unwrap_or_default(),
            rootless: self.in_userns,
            mapped_ids: self.mapped_ids,
            slirp,
            stdin: output.stdin.is_some(),
            devices,
            isolation: self.isolation,
        };
        let result = self.run_helper(&config, output, cancel, secrets.as_mut());
        let cleanup = [cgroup.as_mut().map_or(Ok(()), RunCgroup::remove), mount_points.remove()];
        let result = match result {
            Ok(status) => cleanup.into_iter().find_map(Result::err).map_or(Ok(status), Err),
            Err(err) => {
                for e in cleanup.into_iter().filter_map(Result::err) {
                    tracing::warn!(error = %e, "cleanup after a failed run");
                }
                Err(err)
            }
        };
        drop(secrets);
        drop(run_dir);
        result
    }
}

/// A unique cgroup name for the run: the run directory's random suffix.
fn run_id(run_dir: &Path) -> String {
    let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{}-{name}", std::process::id())
}

pub(super) fn write_etc_files(dir: &Path, spec: &ExecSpec) -> Result<(PathBuf, PathBuf), ExecError> {
    let mut hosts =
        format!("127.0.0.1\tlocalhost {host}\n::1\tlocalhost ip6-localhost ip6-loopback\n", host = spec.hostname);
    for (name, ip) in &spec.extra_hosts {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    let mut resolv = Vec::new();
    if spec.network == Network::Default {
        resolv = slirp::resolv_conf().into_bytes();
    } else if let Ok(file) = std::fs::File::open("/etc/resolv.conf") {
        let _ = file.take(MAX_RESOLV_BYTES).read_to_end(&mut resolv);
    }
    let hosts_file = dir.join("hosts");
    let resolv_file = dir.join("resolv.conf");
    for (path, bytes) in [(&hosts_file, hosts.as_bytes()), (&resolv_file, &resolv[..])] {
        std::fs::write(path, bytes)
            .map_err(|source| ExecError::Prepare { what: path.display().to_string(), source })?;
    }
    // The run directory is 0700; the sandbox's root (a mapped user when rootless) only needs
    // to reach these two files through the bind mounts.
    Ok((hosts_file, resolv_file))
}

/// The helper process, spawned and given its config.
struct Spawned {
    child: std::process::Child,
    /// The read end of the pipe the helper reports on (see [`Report`]).
    reports: OwnedFd,
}

impl EmbeddedExecutor {
    fn run_helper(
        &self,
        config: &HelperConfig,
        output: Output<'_>,
        cancel: &CancelToken,
        secrets: Option<&mut super::secrets::SecretDir>,
    ) -> Result<ExitStatus, ExecError> {
        let mut output = output;
        let Spawned { mut child, reports } = self.spawn_helper(config, output.stdin.take())?;
        // The helper has exec'd, so its private mount namespace holds the secrets tmpfs: the
        // caller's copy can go (a failure leaves it to the drop after the run).
        if let Some(Err(e)) = secrets.map(super::secrets::SecretDir::detach) {
            tracing::warn!(error = %e, "detaching the secrets tmpfs");
        }
        let read = Mutex::new(Vec::new());
        // The helper turns SIGTERM into SIGKILL for the sandbox's init; if it cannot within the
        // grace period, killing the helper kills init (parent-death signal).
        let stop = |pid| drop(sys::kill(pid, sys::SIGTERM));
        let also = || read_reports(reports, &read);
        let supervised = supervise(&mut child, output, cancel, config.spec.timeout, stop, also);
        let status = supervised.status.map_err(|source| ExecError::Wait { source })?;
        if let Some(err) = supervised.stopped {
            return Err(err);
        }
        let reports = read.into_inner().unwrap_or_else(|p| p.into_inner());
        let status = exit_status(reports)?.ok_or(ExecError::HelperLost { status })?;
        if let Some(source) = supervised.copied {
            return Err(ExecError::Output { source });
        }
        Ok(status)
    }

    /// Starts `slipway __exec-init` sealed, mapped into a user namespace when rootless, and
    /// writes its config (length first), then (run -i) the payload's stdin, to its stdin.
    fn spawn_helper(
        &self,
        config: &HelperConfig,
        payload_stdin: Option<Box<dyn Read + Send>>,
    ) -> Result<Spawned, ExecError> {
        let json = serde_json::to_vec(config).map_err(|e| ExecError::Prepare {
            what: "the helper config".to_string(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let (report_r, report_w) =
            sys::pipe().map_err(|source| ExecError::Prepare { what: "the report pipe".to_string(), source })?;
        let report_fd = report_w.as_raw_fd();
        // The binary as the kernel will find it, so the read-only bind covers what runs.
        let helper = std::fs::canonicalize(&self.helper)
            .map_err(|source| ExecError::Spawn { helper: self.helper.clone(), source })?;
        let mut command = Command::new(&helper);
        command
            .arg(HELPER_SUBCOMMAND)
            .arg("--report-fd")
            .arg(report_fd.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| ExecError::Spawn { helper: helper.clone(), source };
        // Rootless: the helper enters a user namespace of its own, mapped (with subordinate
        // ids) by a thread that answers its handshake.
        let (userns, pending) = match self.own_userns {
            false => (None, None),
            true => {
                let (userns, pending) = idmap::user_namespace(self.subids.as_ref()).map_err(spawn_err)?;
                (Some(userns), pending)
            }
        };
        let seal = sys::HelperSeal::new(&helper, userns, self.isolation.mounts()).map_err(spawn_err)?;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls on data prepared before the fork (no allocation, no locks).
        unsafe {
            command.pre_exec(move || sys::prepare_helper_child(report_fd, &seal));
        }
        let spawned = command.spawn();
        if let Some(pending) = pending {
            pending.finish(spawned.is_ok())?;
        }
        let mut child = spawned.map_err(|source| ExecError::Spawn { helper, source })?;
        drop(report_w);
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that died early shows up in its report, not here.
            let mut framed = (json.len() as u64).to_le_bytes().to_vec();
            framed.extend_from_slice(&json);
            if stdin.write_all(&framed).is_ok()
                && let Some(source) = payload_stdin
            {
                super::feed_stdin(source, stdin);
            }
        }
        Ok(Spawned { child, reports: report_r })
    }
}

/// How the payload ended, from the helper's reports (`None`: the helper said nothing).
fn exit_status(reports: Vec<Report>) -> Result<Option<ExitStatus>, ExecError> {
    let mut result = None;
    for report in reports {
        match report {
            Report::Failed(failure) => return Err(failure.into()),
            Report::Exited { code } => result = Some(ExitStatus::Exited(code)),
            Report::Signaled { signal } => result = Some(ExitStatus::Signaled(signal)),
            // The whole sandbox died with its init (OOM killer, a kill from the host).
            Report::InitDied { signal } => result = result.or(Some(ExitStatus::Signaled(signal))),
            Report::Init { pid } => tracing::debug!(pid, "sandbox init started"),
        }
    }
    Ok(result)
}

fn read_reports(pipe: OwnedFd, reports: &Mutex<Vec<Report>>) {
    let reader = io::BufReader::new(std::fs::File::from(pipe));
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        match serde_json::from_slice::<Report>(&line) {
            Ok(report) => reports.lock().unwrap_or_else(|p| p.into_inner()).push(report),
            Err(e) => tracing::warn!(error = %e, "unreadable report from the sandbox helper"),
        }
    }
}
