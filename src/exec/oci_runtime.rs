//! [`OciRuntimeExecutor`]: the sandbox built by an OCI runtime (`runc`, `crun`, or another
//! binary with their command line) from a bundle slipway writes.
//!
//! Host side of a run: resolves the user from the rootfs' own `/etc/passwd` and `/etc/group`
//! (opened beneath the rootfs, so their symlinks never leave it) and creates the working
//! directory the same way, creates the missing `/etc` mount points, writes `config.json` (`bundle`),
//! starts slirp4netns on a fresh network namespace for [`Network::Default`], then runs
//! `RUNTIME --root STATE run --bundle DIR ID` in the foreground with stdout and stderr
//! streamed. Pid 1 of the container is a static `tini` bound read-only from the host (as
//! Docker's `--init`), so the payload is pid 2 and signals, zombies and exit statuses behave
//! as with the embedded executor. Cancellation is `RUNTIME kill ID KILL` then `delete -f`; the
//! state directory lives in the run directory, which is removed afterwards.
//!
//! The runtime reports a payload killed by signal N as exit status 128+N (as Docker does);
//! this executor maps 129..=192 back to [`ExitStatus::Signaled`], so a process that exits
//! with such a code by itself is reported as signaled.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::bundle::{self, BundleFiles};
use super::caps;
use super::devices::{self, DeviceNode};
use super::mountpoints::MountPoints;
use super::secrets::{SecretDir, bind_secrets};
use super::slirp::{self, Slirp};
use super::spec::MountSource;
use super::supervise::supervise;
use super::user::{self, ExecUser};
use super::{CancelToken, ExecError, ExecSpec, Executor, ExitStatus, Network, Output, Security, sys};

/// Static inits looked up in `PATH`, in order (Debian's `tini` package ships `tini-static`).
const INITS: &[&str] = &["tini-static", "catatonit"];

/// Runs processes in containers made by an OCI runtime.
#[derive(Debug, Clone)]
pub struct OciRuntimeExecutor {
    runtime: PathBuf,
    init: PathBuf,
    run_dir: PathBuf,
    /// Run the runtime in a mount namespace without `/sys/fs/cgroup/unified` (see
    /// [`hybrid_cgroups`]).
    hide_unified: bool,
}

/// Whether this host mixes cgroup v1 hierarchies with controllers on a v2 one at
/// `/sys/fs/cgroup/unified` ("hybrid"), which crun refuses. Its commands then run in a mount
/// namespace of their own where that mount is gone, so crun sees (and uses) plain v1.
fn hybrid_cgroups(runtime: &Path) -> bool {
    runtime.file_name().is_some_and(|n| n.to_string_lossy().starts_with("crun"))
        && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").is_ok_and(|c| !c.trim().is_empty())
}

/// Finds `name` (a bare name) in the caller's `PATH`; a path is taken as it is.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

impl OciRuntimeExecutor {
    /// `runtime` is `runc`, `crun` (looked up in `PATH`) or a path to a compatible binary. Also
    /// finds the static init (`tini-static`). Needs root: rootless runtimes are not driven yet.
    pub fn new(runtime: &str) -> Result<OciRuntimeExecutor, ExecError> {
        if !rustix::process::geteuid().is_root() {
            return Err(ExecError::RuntimeUnavailable {
                runtime: runtime.to_string(),
                reason: "the oci-runtime executor needs root; use the embedded executor".to_string(),
            });
        }
        let resolved = find_program(runtime).filter(|p| p.is_file()).ok_or_else(|| ExecError::RuntimeUnavailable {
            runtime: runtime.to_string(),
            reason: format!("{runtime} not found: install it (apt-get install {runtime}) or give its path"),
        })?;
        let init = INITS.iter().find_map(|name| find_program(name)).ok_or_else(|| ExecError::RuntimeUnavailable {
            runtime: runtime.to_string(),
            reason: "no static init (tini-static) found: install it (apt-get install tini)".to_string(),
        })?;
        let hide_unified = hybrid_cgroups(&resolved);
        Ok(OciRuntimeExecutor { runtime: resolved, init, run_dir: std::env::temp_dir(), hide_unified })
    }

    /// Where per-run bundle directories are created (default: the temp dir).
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> OciRuntimeExecutor {
        self.run_dir = dir.into();
        self
    }

    /// The runtime binary this executor drives.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }
}

/// One container run: its id, its bundle directory and the runtime's state directory.
struct Container<'a> {
    id: &'a str,
    bundle: &'a Path,
    state: &'a Path,
}

impl Executor for OciRuntimeExecutor {
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
        let rootfs_err = |source| ExecError::Rootfs { path: rootfs.to_path_buf(), source };
        if !std::fs::metadata(rootfs).map_err(rootfs_err)?.is_dir() {
            return Err(rootfs_err(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let rootfs = std::fs::canonicalize(rootfs).map_err(rootfs_err)?;
        let slirp_binary = match spec.network {
            Network::Default => Some(slirp::find()?),
            Network::None | Network::Host => None,
        };
        let root = rustix::fs::open(
            &rootfs,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| rootfs_err(e.into()))?;
        let passwd = user::read_db_beneath(&root, "/etc/passwd")?;
        let group = user::read_db_beneath(&root, "/etc/group")?;
        let user = user::resolve(&spec.user, &passwd, &group)?;
        create_workdir(&root, &spec.cwd, &user)?;
        let (insecure_caps, insecure_devices) = insecure_grants(spec)?;

        let mut run_dir = RunDir::new(&self.run_dir, spec)?;
        let (hosts, resolv) = super::embedded::write_etc_files(run_dir.path(), spec)?;
        let spec = &run_dir.bind_secrets(spec)?;
        let mut mount_points = MountPoints::create(&rootfs, &spec.mounts)?;
        // Host sources pinned here, before the runtime (which follows links) sees their paths.
        let (spec, staged) = stage_sources(spec, run_dir.path())?;
        let spec = &spec;
        let (netns, mut slirp) = match &slirp_binary {
            Some(binary) => {
                let netns = sys::new_network_namespace()
                    .map_err(|source| ExecError::Prepare { what: "a network namespace".to_string(), source })?;
                let slirp = Slirp::start(binary, &netns)
                    .map_err(|source| ExecError::Prepare { what: format!("{}", binary.display()), source })?;
                (Some(netns), Some(slirp))
            }
            None => (None, None),
        };
        let id = container_id();
        let files = BundleFiles {
            rootfs: &rootfs,
            hosts: &hosts,
            resolv: &resolv,
            init: &self.init,
            netns: netns.as_ref().map(|f| PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), fd_of(f)))),
            cgroup: format!("slipway/{id}"),
            insecure_caps,
            insecure_devices: &insecure_devices,
        };
        let config = bundle::config(spec, &user, &files)?;
        let config_path = run_dir.path().join("config.json");
        let json = serde_json::to_vec_pretty(&config).map_err(|e| ExecError::Prepare {
            what: config_path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        std::fs::write(&config_path, json)
            .map_err(|source| ExecError::Prepare { what: config_path.display().to_string(), source })?;
        let state = run_dir.path().join("state");

        let container = Container { id: &id, bundle: run_dir.path(), state: &state };
        let result = self.run_runtime(&container, spec, output, cancel);
        // Whatever happened, the container is gone before the run directory (its state) is.
        let deleted = self.delete(&state, &id);
        if let Some(slirp) = slirp.as_mut() {
            slirp.stop();
        }
        drop(netns);
        let removed = mount_points.remove();
        drop(staged);
        drop(run_dir);
        let status = result?;
        deleted?;
        removed?;
        Ok(status)
    }
}

/// A run's bundle directory: a temporary directory, or, when the spec carries secrets (its
/// `config.json` holds the environment), a [`SecretDir`] tmpfs that also holds the secret files.
enum RunDir {
    Plain(tempfile::TempDir),
    Secret(SecretDir),
}

impl RunDir {
    fn new(parent: &Path, spec: &ExecSpec) -> Result<RunDir, ExecError> {
        if spec.has_secret_files() || !spec.secret_env.is_empty() {
            return Ok(RunDir::Secret(SecretDir::new(parent)?));
        }
        let dir = tempfile::Builder::new().prefix("slipway-oci-").tempdir_in(parent).map_err(|source| {
            ExecError::Prepare { what: format!("a run directory in {}", parent.display()), source }
        })?;
        Ok(RunDir::Plain(dir))
    }

    fn path(&self) -> &Path {
        match self {
            RunDir::Plain(dir) => dir.path(),
            RunDir::Secret(dir) => dir.path(),
        }
    }

    fn bind_secrets(&mut self, spec: &ExecSpec) -> Result<ExecSpec, ExecError> {
        match self {
            RunDir::Secret(dir) => bind_secrets(spec, dir),
            RunDir::Plain(_) => Ok(spec.clone()),
        }
    }
}

/// What insecure mode grants (nothing in the sandbox): this process' own capabilities, as a
/// bit mask, and BuildKit's device nodes.
fn insecure_grants(spec: &ExecSpec) -> Result<(u64, Vec<DeviceNode>), ExecError> {
    match spec.security {
        Security::Sandbox => Ok((0, Vec::new())),
        Security::Insecure => {
            let caps = caps::insecure_mask()
                .map_err(|source| ExecError::Prepare { what: "the capabilities to grant".to_string(), source })?;
            Ok((caps, devices::insecure(false)))
        }
    }
}

/// Host mount sources bound onto directories and files of the run directory, so the runtime
/// (which follows links in a source path) only ever sees paths slipway made; unmounted on drop.
struct StagedSources {
    staged: Vec<PathBuf>,
}

impl Drop for StagedSources {
    fn drop(&mut self) {
        for path in self.staged.iter().rev() {
            if let Err(e) = sys::umount_detach(path) {
                tracing::warn!(path = %path.display(), error = %e, "unmounting a staged mount source");
            }
        }
    }
}

/// `spec` with each host mount source opened without following links and bound (through that
/// descriptor, in this mount namespace) onto a fresh stand-in under `dir`, which the spec names
/// instead: what the runtime mounts is exactly what was opened.
fn stage_sources(spec: &ExecSpec, dir: &Path) -> Result<(ExecSpec, StagedSources), ExecError> {
    let mut staged = StagedSources { staged: Vec::new() };
    let mut spec = spec.clone();
    for (i, mount) in spec.mounts.iter_mut().enumerate() {
        let MountSource::Host { path, .. } = &mut mount.source else { continue };
        let fail = |source| ExecError::Prepare {
            what: format!("mount source {} for {}", path.display(), mount.target),
            source,
        };
        let fd = sys::open_host_no_symlinks(path).map_err(fail)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| fail(e.into()))?;
        let stand_in = dir.join(format!("source-{i}"));
        match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::Directory => std::fs::create_dir(&stand_in),
            _ => std::fs::File::create(&stand_in).map(drop),
        }
        .map_err(fail)?;
        sys::mount(Some(&sys::fd_path(&fd)), &stand_in, None, sys::MS_BIND, None).map_err(fail)?;
        staged.staged.push(stand_in.clone());
        *path = stand_in;
    }
    Ok((spec, staged))
}

fn fd_of(file: &std::fs::File) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(file)
}

/// A container id unique on the host: `slipway-<pid>-<counter>-<nanos>`.
fn container_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

/// Creates the missing components of `cwd` beneath the rootfs, owned by the user (as the
/// embedded executor's init does after `pivot_root`); the last component must be a directory.
fn create_workdir(root: &impl AsFd, cwd: &str, user: &ExecUser) -> Result<(), ExecError> {
    let fail = |e: io::Error| ExecError::Workdir { path: cwd.to_string(), source: e };
    let mut path = String::new();
    for component in Path::new(cwd).components() {
        match component {
            Component::Normal(name) => {
                let name = name.to_str().ok_or_else(|| fail(io::Error::from(io::ErrorKind::InvalidInput)))?;
                let parent = if path.is_empty() { "/".to_string() } else { path.clone() };
                path = format!("{path}/{name}");
                match sys::open_beneath(root, &path, false) {
                    Ok(_) => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(fail(e)),
                }
                let dir = sys::open_beneath(root, &parent, false).map_err(fail)?;
                match rustix::fs::mkdirat(&dir, name, rustix::fs::Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(e) => return Err(fail(e.into())),
                }
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(user.uid)),
                    Some(rustix::fs::Gid::from_raw(user.gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fail(e.into()))?;
            }
            Component::ParentDir => {
                path = path.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_string());
            }
            _ => {}
        }
    }
    let dir = sys::open_beneath(root, cwd, false).map_err(fail)?;
    let stat = rustix::fs::fstat(&dir).map_err(|e| fail(e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Directory {
        return Err(fail(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    Ok(())
}

impl OciRuntimeExecutor {
    fn command(&self, state: &Path) -> Command {
        let mut command = Command::new(&self.runtime);
        command.arg("--root").arg(state);
        if self.hide_unified {
            // SAFETY: the closure only makes the async-signal-safe system calls of
            // `sys::hide_unified_cgroup`, on static strings.
            unsafe {
                command.pre_exec(sys::hide_unified_cgroup);
            }
        }
        command
    }

    fn run_runtime(
        &self,
        container: &Container<'_>,
        spec: &ExecSpec,
        output: Output<'_>,
        cancel: &CancelToken,
    ) -> Result<ExitStatus, ExecError> {
        let log = container.bundle.join("runtime.log");
        let mut command = self.command(container.state);
        // SAFETY: prctl(2) only, between fork and exec. The runtime dies with the thread that
        // started it (which waits for it), and tini, pid 1 of the container, with the runtime.
        unsafe {
            command.pre_exec(|| sys::set_pdeathsig(sys::SIGKILL));
        }
        command
            .arg("--log")
            .arg(&log)
            .arg("--log-format=json")
            .args(["run", "--no-new-keyring", "--bundle"])
            .arg(container.bundle)
            .arg(container.id)
            .stdin(if output.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| ExecError::Spawn { helper: self.runtime.clone(), source })?;
        if let (Some(source), Some(sink)) = (output.stdin, child.stdin.take()) {
            super::feed_stdin(source, sink);
        }
        // Killing tini (pid 1) kills the whole pid namespace; the runtime then returns.
        let stop = |_| {
            let mut kill = self.command(container.state);
            let _ = kill.args(["kill", container.id, "KILL"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        let output = Output { stdout: output.stdout, stderr: output.stderr, stdin: None };
        let supervised = supervise(&mut child, output, cancel, spec.timeout, stop, || {});
        let (status, outcome, copied) = (supervised.status, supervised.stopped, supervised.copied);
        let status = status.map_err(|source| ExecError::Wait { source })?;
        if let Some(err) = outcome {
            return Err(err);
        }
        let code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => code,
            (None, signal) => {
                return Err(ExecError::RuntimeFailed {
                    runtime: self.runtime.clone(),
                    reason: format!("killed by signal {}", signal.unwrap_or(0)),
                });
            }
        };
        if code != 0
            && let Some(reason) = runtime_error(&log)
        {
            return Err(ExecError::RuntimeFailed { runtime: self.runtime.clone(), reason });
        }
        if let Some(source) = copied {
            return Err(ExecError::Output { source });
        }
        Ok(match code {
            129..=192 => ExitStatus::Signaled(code - 128),
            code => ExitStatus::Exited(code),
        })
    }

    /// `delete -f` when the runtime left the container's state behind (it was cancelled, or the
    /// runtime failed half-way); a clean `run` has removed it already.
    fn delete(&self, state: &Path, id: &str) -> Result<(), ExecError> {
        if !state.join(id).exists() {
            return Ok(());
        }
        let out = self
            .command(state)
            .args(["delete", "-f", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ExecError::Cleanup { what: format!("deleting container {id}"), source })?;
        if !out.status.success() && state.join(id).exists() {
            let reason = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ExecError::Cleanup {
                what: format!("deleting container {id}"),
                source: io::Error::other(reason),
            });
        }
        Ok(())
    }
}

/// The first error the runtime logged (`--log-format json`: one object per line with `level`
/// and `msg`), if any.
fn runtime_error(log: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(log).ok()?.take(64 << 10).read_to_string(&mut text).ok()?;
    first_error(&text)
}

fn first_error(text: &str) -> Option<String> {
    text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).find_map(|entry| {
        (entry["level"] == "error").then(|| entry["msg"].as_str().unwrap_or("unknown error").to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_entries_fail_the_run() {
        let log = "{\"level\":\"warning\",\"msg\":\"an error that is only a warning\"}\nnot json\n\
                   {\"level\":\"error\",\"msg\":\"mount failed\",\"time\":\"now\"}\n";
        assert_eq!(first_error(log).as_deref(), Some("mount failed"));
        assert_eq!(first_error("{\"level\":\"info\",\"msg\":\"error\"}\n"), None);
    }
}
