//! The sandbox helper: the three processes on the far side of the `__exec-init` re-exec.
//!
//! 1. **helper** (host pid namespace; started by the executor already inside its own mount
//!    namespace and, rootless, user namespace): reads its [`HelperConfig`] from stdin,
//!    (network `Default`) starts slirp4netns on a fresh network namespace and enters it, joins
//!    the cgroups, unshares the pid, ipc, uts, cgroup and (network `None`) net namespaces,
//!    forks the init, reports its pid, waits for it, and turns SIGTERM from the executor into
//!    SIGKILL for the whole sandbox; slirp4netns is stopped when the helper returns.
//! 2. **init** (pid 1 inside): builds the mount table and pivots (`mounts`), sets the
//!    hostname, resolves the user from the sandbox's own files (`user`), creates the working
//!    directory, forks the payload, then reaps every process and forwards signals to the
//!    payload. When the payload ends, init reports its status and exits, which kills whatever
//!    the payload left behind (the pid namespace dies with its init).
//! 3. **payload** (pid 2): drops to the user and Docker's capabilities, sets no_new_privs
//!    (insecure mode: keeps every capability, in all five sets, and no no_new_privs), leaves
//!    only stdio open, enters the working directory and execs.
//!
//! The helper is single-threaded by construction (a fresh exec of the slipway binary that
//! starts no thread), which is what makes `unshare` and `fork` sound here.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use super::caps;
use super::mounts;
use super::protocol::{Failure, HelperConfig, Isolation, Report, Reporter};
use super::slirp::Slirp;
use super::spec::{DEFAULT_PATH, Network, Security};
use super::sys::{self, WaitStatus};
use super::user::{self, ExecUser};

/// Largest helper configuration accepted on stdin.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Exit status of a helper, init or payload-to-be that failed before the payload ran.
pub(super) const SETUP_FAILED: i32 = 125;

/// Signals the init passes on to the payload.
const FORWARDED: &[libc::c_int] =
    &[sys::SIGINT, sys::SIGTERM, sys::SIGHUP, sys::SIGQUIT, sys::SIGUSR1, sys::SIGUSR2, sys::SIGWINCH];

/// Entry point of `slipway __exec-init --report-fd N`; returns the helper's exit code (0 when
/// the outcome went through the report pipe). The executor started it in its own mount
/// namespace (and user namespace, rootless), from a read-only bind of the binary
/// (`sys::prepare_helper_child`).
pub fn helper_main(report_fd: RawFd) -> u8 {
    let reporter = Reporter { fd: report_fd };
    match helper(&reporter) {
        Ok(()) => 0,
        Err(failure) => {
            reporter.send(&Report::Failed(failure));
            SETUP_FAILED as u8
        }
    }
}

fn helper(reporter: &Reporter) -> Result<(), Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    // The parent-death signal was armed before exec; make sure the executor did not die before.
    if sys::pipe_reader_gone(reporter.fd).map_err(step("checking the executor"))? {
        return Err(Failure::setup("starting", &io::Error::from_raw_os_error(libc::EPIPE)));
    }
    sys::close_fds_except(&[reporter.fd]).map_err(step("closing inherited descriptors"))?;
    sys::set_cloexec(reporter.fd, true).map_err(step("marking the report pipe close-on-exec"))?;
    // Exactly the config: what follows on stdin is the payload's (unbuffered reads).
    let mut len = [0u8; 8];
    sys::read_exact(0, &mut len).map_err(step("reading the helper config"))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_CONFIG_BYTES {
        return Err(Failure::setup("reading the helper config", &io::Error::from(io::ErrorKind::InvalidData)));
    }
    let mut text = vec![0u8; len as usize];
    sys::read_exact(0, &mut text).map_err(step("reading the helper config"))?;
    let cfg: HelperConfig = serde_json::from_slice(&text)
        .map_err(|e| Failure::setup("parsing the helper config", &io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if !cfg.stdin {
        let null = std::fs::File::open("/dev/null").map_err(step("opening /dev/null"))?;
        sys::dup2(null.as_raw_fd(), 0).map_err(step("replacing stdin"))?;
        drop(null);
    }

    // Held until the helper returns: dropping it stops slirp4netns. Started before joining
    // the cgroups, so that its memory and process do not count against the sandbox's limits.
    let _slirp = match &cfg.slirp {
        Some(binary) => Some(default_network(binary)?),
        None => None,
    };
    for procs in &cfg.cgroup_procs {
        std::fs::write(procs, sys::getpid().to_string())
            .map_err(|e| Failure::setup(format!("joining {}", procs.display()), &e))?;
    }
    if let Isolation::Chroot { mount_ns } = cfg.isolation {
        return super::chroot::helper(&cfg, reporter, mount_ns);
    }
    // Already in a private mount namespace (see `helper_main`): the sandbox's mounts go there.
    let mut flags = sys::CLONE_NEWPID | sys::CLONE_NEWIPC | sys::CLONE_NEWUTS | sys::CLONE_NEWCGROUP;
    if cfg.spec.network == Network::None {
        flags |= sys::CLONE_NEWNET;
    }
    sys::unshare(flags).map_err(step("unsharing namespaces"))?;

    let waited = [sys::SIGCHLD, sys::SIGTERM, sys::SIGINT, sys::SIGHUP];
    sys::block_signals(&waited).map_err(step("blocking signals"))?;
    // While this pipe's write end is open the helper is alive: init checks it once its
    // parent-death signal is armed, closing the window where the helper died before.
    let (alive_r, alive_w) = sys::pipe().map_err(step("creating the liveness pipe"))?;
    // SAFETY: the helper is single-threaded (see the module docs).
    let init_pid = match unsafe { sys::fork() }.map_err(step("forking the sandbox init"))? {
        None => {
            drop(alive_w);
            container_init(&cfg, reporter, &alive_r)
        }
        Some(pid) => pid,
    };
    drop(alive_r);
    reporter.send(&Report::Init { pid: init_pid });
    loop {
        let (signal, _) = sys::sigwait(&waited).map_err(step("waiting for signals"))?;
        if signal != sys::SIGCHLD {
            // The executor cancels: kill the sandbox's init, which kills everything inside.
            let _ = sys::kill(init_pid, sys::SIGKILL);
            continue;
        }
        match sys::waitpid(init_pid, true).map_err(step("waiting for the sandbox init"))? {
            None => continue,
            Some((_, WaitStatus::Exited(_))) => return Ok(()),
            Some((_, WaitStatus::Signaled(signal))) => {
                reporter.send(&Report::InitDied { signal });
                return Ok(());
            }
        }
    }
}

/// Sets up [`Network::Default`] before the pid namespace exists (so that slirp4netns is never
/// a process of the sandbox): a fresh network namespace, slirp4netns serving it from the
/// host's, the helper moved into it (init inherits it) and into a fresh mount namespace
/// (init's `pivot_root` must not move slirp4netns' root).
fn default_network(binary: &Path) -> Result<Slirp, Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    let netns = new_netns().map_err(step("creating the network namespace"))?;
    let slirp =
        Slirp::start(binary, &netns).map_err(|e| Failure::setup(format!("starting {}", binary.display()), &e))?;
    sys::setns(&netns, sys::CLONE_NEWNET).map_err(step("entering the network namespace"))?;
    sys::unshare(sys::CLONE_NEWNS).map_err(step("unsharing the mount namespace"))?;
    Ok(slirp)
}

/// A new network namespace, made by a short-lived child (the helper itself stays in the
/// host's, which it could not re-enter from a user namespace).
fn new_netns() -> io::Result<std::fs::File> {
    let (ready_r, ready_w) = sys::pipe()?;
    let (hold_r, hold_w) = sys::pipe()?;
    // SAFETY: the helper is single-threaded (see the module docs).
    let pid = match unsafe { sys::fork() }? {
        None => {
            drop((ready_r, hold_w));
            if sys::unshare(sys::CLONE_NEWNET).is_err() {
                sys::exit_now(1);
            }
            let _ = std::fs::File::from(ready_w).write_all(b"1");
            // Wait until the helper has opened the namespace (it closes the other end).
            let _ = std::fs::File::from(hold_r).read(&mut [0u8; 1]);
            sys::exit_now(0)
        }
        Some(pid) => pid,
    };
    drop((ready_w, hold_r));
    let mut byte = [0u8; 1];
    let ready = std::fs::File::from(ready_r).read(&mut byte);
    let netns = match ready {
        Ok(1) => std::fs::File::open(format!("/proc/{pid}/ns/net")),
        Ok(_) => Err(io::Error::other("the namespace child failed to unshare")),
        Err(e) => Err(e),
    };
    drop(hold_w);
    sys::waitpid(pid, false)?;
    netns
}

/// Pid 1 of the sandbox. Never returns.
fn container_init(cfg: &HelperConfig, reporter: &Reporter, alive: &impl AsRawFd) -> ! {
    match prepare_sandbox(cfg, reporter, alive) {
        Ok(user) => supervise(cfg, reporter, &user),
        Err(failure) => {
            reporter.send(&Report::Failed(failure));
            sys::exit_now(SETUP_FAILED)
        }
    }
}

fn prepare_sandbox(cfg: &HelperConfig, reporter: &Reporter, alive: &impl AsRawFd) -> Result<ExecUser, Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    sys::set_pdeathsig(sys::SIGKILL).map_err(step("arming the parent-death signal"))?;
    if sys::pipe_hung_up(alive).map_err(step("checking the helper"))? {
        sys::exit_now(SETUP_FAILED);
    }
    // Not dumpable: the payload (same uid, fewer capabilities) cannot open /proc/1/fd or ptrace us.
    sys::set_dumpable(false).map_err(step("making init non-dumpable"))?;
    if cfg.spec.network != Network::Host {
        sys::loopback_up().map_err(step("bringing up lo"))?;
    }
    sys::sethostname(&cfg.spec.hostname).map_err(step("setting the hostname"))?;
    mounts::setup(cfg)?;
    sys::close_fds_except(&[reporter.fd]).map_err(step("closing descriptors"))?;

    let passwd = user::read_db("/etc/passwd")?;
    let group = user::read_db("/etc/group")?;
    let user = user::resolve(&cfg.spec.user, &passwd, &group)?;
    let unmapped = |id: u32| cfg.rootless && id >= cfg.mapped_ids;
    if unmapped(user.uid) || unmapped(user.gid) || user.groups.iter().any(|&g| unmapped(g)) {
        return Err(Failure::UserNotMapped { uid: user.uid, gid: user.gid });
    }
    create_workdir(&cfg.spec.cwd, &user)?;
    Ok(user)
}

/// Creates the missing components of `cwd`, owned by the user (as BuildKit's WORKDIR does).
/// Runs after `pivot_root`, so symlinks resolve inside the sandbox.
pub(super) fn create_workdir(cwd: &str, user: &ExecUser) -> Result<(), Failure> {
    let mut path = PathBuf::from("/");
    for component in Path::new(cwd).components() {
        match component {
            Component::Normal(name) => path.push(name),
            Component::ParentDir => {
                path.pop();
            }
            _ => continue,
        }
        match std::fs::symlink_metadata(&path) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::workdir(cwd, &e)),
        }
        match std::fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Failure::workdir(cwd, &e)),
        }
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid)).map_err(|e| Failure::workdir(cwd, &e))?;
    }
    Ok(())
}

/// Init's life after setup: fork the payload, reap, forward, report. Never returns.
pub(super) fn supervise(cfg: &HelperConfig, reporter: &Reporter, user: &ExecUser) -> ! {
    let mut waited = vec![sys::SIGCHLD];
    waited.extend_from_slice(FORWARDED);
    if let Err(e) = sys::block_signals(&waited) {
        reporter.send(&Report::Failed(Failure::setup("blocking signals", &e)));
        sys::exit_now(SETUP_FAILED);
    }
    // SAFETY: init is a fork of the single-threaded helper and starts no thread.
    let payload = match unsafe { sys::fork() } {
        Ok(None) => payload(cfg, reporter, user),
        Ok(Some(pid)) => pid,
        Err(e) => {
            reporter.send(&Report::Failed(Failure::setup("forking the payload", &e)));
            sys::exit_now(SETUP_FAILED)
        }
    };
    loop {
        let Ok((signal, _)) = sys::sigwait(&waited) else { sys::exit_now(SETUP_FAILED) };
        if signal != sys::SIGCHLD {
            let _ = sys::kill(payload, signal);
            continue;
        }
        while let Ok(Some((pid, status))) = sys::waitpid(-1, true) {
            if pid != payload {
                continue;
            }
            reporter.send(&match status {
                WaitStatus::Exited(code) => Report::Exited { code },
                WaitStatus::Signaled(signal) => Report::Signaled { signal },
            });
            sys::exit_now(0);
        }
    }
}

/// The payload process: from init's fork to exec. Never returns.
fn payload(cfg: &HelperConfig, reporter: &Reporter, user: &ExecUser) -> ! {
    // Before the capabilities go: raising a hard limit takes CAP_SYS_RESOURCE.
    for u in &cfg.spec.ulimits {
        let resource = u.resource().expect("validated before the run");
        if let Err(e) = sys::setrlimit(resource, u.soft, u.hard) {
            reporter.send(&Report::Failed(Failure::setup("setting a ulimit", &e)));
            sys::exit_now(SETUP_FAILED);
        }
    }
    if let Err(failure) = become_user(cfg, user) {
        reporter.send(&Report::Failed(failure));
        sys::exit_now(SETUP_FAILED);
    }
    let env = environment(cfg, user);
    let argv: Vec<CString> = cfg.spec.args.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let path_var =
        env.iter().find_map(|e| e.to_bytes().strip_prefix(b"PATH=").map(|p| String::from_utf8_lossy(p).into_owned()));
    let (program, mut code) = lookup(&cfg.spec.args[0], path_var.as_deref().unwrap_or(DEFAULT_PATH));
    let mut detail = "executable file not found in $PATH".to_string();
    if let Some(program) = program {
        let err = sys::execve(&program, &argv, &env);
        code = match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => 127,
            _ => 126,
        };
        detail = err.to_string();
    }
    let message = format!("slipway: exec {:?}: {detail}\n", cfg.spec.args[0]);
    let _ = sys::write_all(2, message.as_bytes());
    sys::exit_now(code)
}

fn become_user(cfg: &HelperConfig, user: &ExecUser) -> Result<(), Failure> {
    let step = |what: &'static str| move |e: io::Error| Failure::setup(what, &e);
    sys::reset_signals().map_err(step("resetting signals"))?;
    let keep = match cfg.isolation {
        Isolation::Namespaces => caps::default_mask(),
        Isolation::Chroot { .. } => caps::chroot_mask(),
    };
    let insecure = match cfg.spec.security {
        Security::Sandbox => {
            caps::drop_bounding(keep).map_err(step("dropping bounding capabilities"))?;
            None
        }
        Security::Insecure => {
            let mask = caps::insecure_mask().map_err(step("reading capabilities"))?;
            caps::keep_insecure(mask).map_err(step("keeping capabilities"))?;
            Some(mask)
        }
    };
    // A single-id rootless sandbox has setgroups denied (and no other group to set).
    if !cfg.rootless || cfg.mapped_ids > 1 {
        sys::setgroups(&user.groups).map_err(step("setting supplementary groups"))?;
    }
    sys::setresgid(user.gid).map_err(step("setting the group id"))?;
    sys::setresuid(user.uid).map_err(step("setting the user id"))?;
    // Chroot isolation has no pid namespace to die with: the payload dies with its init (armed
    // after the switch, which clears it; no_new_privs keeps a set-id program from clearing it).
    if cfg.isolation != Isolation::Namespaces {
        sys::set_pdeathsig(sys::SIGKILL).map_err(step("arming the parent-death signal"))?;
    }
    match insecure {
        None => {
            caps::apply(user.uid, keep).map_err(step("setting capabilities"))?;
            sys::set_no_new_privs().map_err(step("setting no_new_privs"))?;
        }
        // As BuildKit (which never sets no_new_privs): it would guard nothing here.
        Some(mask) => caps::apply_insecure(mask).map_err(step("setting capabilities"))?,
    }
    sys::cloexec_from_3().map_err(step("closing descriptors"))?;
    let cwd = &cfg.spec.cwd;
    std::env::set_current_dir(cwd).map_err(|e| Failure::workdir(cwd, &e))?;
    // CVE-2024-21626: a working directory reached through a leaked descriptor lies outside
    // the root, and getcwd then fails or reports an unreachable path.
    match std::env::current_dir() {
        Ok(dir) if dir.is_absolute() => Ok(()),
        Ok(_) => Err(Failure::workdir(cwd, &io::Error::other("working directory is outside the container"))),
        Err(e) => {
            Err(Failure::workdir(cwd, &io::Error::other(format!("working directory is outside the container: {e}"))))
        }
    }
}

/// The payload's environment ([`ExecSpec::environment`](super::ExecSpec::environment)).
fn environment(cfg: &HelperConfig, user: &ExecUser) -> Vec<CString> {
    cfg.spec.environment(&user.home).into_iter().filter_map(|e| CString::new(e).ok()).collect()
}

/// Finds `name` as execve would be given it: a path as is, a bare name in `path_var`.
/// Returns the program, or the exit code to use when there is none (127 not found, 126 found
/// but not executable).
fn lookup(name: &str, path_var: &str) -> (Option<CString>, i32) {
    if name.contains('/') {
        return (CString::new(name).ok(), 127);
    }
    let mut code = 127;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let Ok(candidate) = CString::new(format!("{dir}/{name}")) else { continue };
        let Ok(meta) = std::fs::metadata(Path::new(dir).join(name)) else { continue };
        if meta.is_file() && sys::executable(&candidate) {
            return (Some(candidate), 0);
        }
        code = 126;
    }
    (None, code)
}
