//! A private Docker engine for one test: Debian's `/usr/sbin/dockerd` (docker.io 20.10) with
//! its own data-root, exec-root, socket, pid file and config file in a temp dir, and the
//! `/usr/bin/docker` client pointed at that socket. It never talks to a system dockerd (no
//! `/var/run/docker.sock`, no `DOCKER_HOST`), never uses `/var/lib/docker`, and reads no
//! `/etc/docker/daemon.json` (`--config-file` is its own, which also moves the daemon's trust
//! key from `/etc/docker/key.json` into the temp dir).
//!
//! The daemon runs as the test (root) with:
//! - `--iptables=false --ip6tables=false --bridge=none`: no firewall rules and no `docker0`
//!   bridge on the machine; containers run with `--network none`;
//! - no `--containerd`: dockerd starts its own containerd, whose socket, state and root are
//!   under the exec-root and data-root (it kills it when it stops);
//! - the storage driver dockerd picks: overlay2 where the temp dir is on ext4 (as on the test
//!   machines); where it is on an overlayfs itself (a container's root) overlay2 cannot mount
//!   and dockerd falls back by itself to vfs, where `docker load` and `docker run` work too
//!   (slower, but the test images are a few MB).
//!
//! Nothing in the machine stops dockerd here: cgroup v1 (hybrid, `cgroupfs` driver) is enough
//! for `docker run`, and no systemd is needed.
//!
//! Outside the temp dir only what dockerd 20.10 and containerd 1.6 hard-code is touched: the
//! (empty) plugin directory `/run/docker/plugins`, the shim sockets under `/run/containerd/s/`
//! (named by a hash of this containerd's own socket path), and cgroups named by container id.
//!
//! Stopping (on drop, so also when the test panics): SIGTERM to dockerd and to every process
//! whose command line names the temp dir (its containerd, a shim of a container still running),
//! SIGKILL to those still alive after a while, then every mount left under the temp dir is
//! detached before the dir is removed. If the test process itself dies (killed by a timeout),
//! the kernel sends dockerd SIGTERM (`PR_SET_PDEATHSIG`), which stops its containerd and
//! unmounts what it mounted; only the temp dir stays behind, as every test's does then. The
//! signal follows the thread that started dockerd: start and drop it in the test itself, never
//! share one between tests.
//!
//! Starting takes about half a second, stopping about one (dockerd waits for its containerd).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{describe, scaled};

/// The daemon binary the tests run (Debian's docker.io installs it in `/usr/sbin`).
pub const DOCKERD_BIN: &str = "/usr/sbin/dockerd";

/// The client binary, named by its path: another `docker` may come first on `PATH`.
pub const DOCKER_BIN: &str = "/usr/bin/docker";

/// A running dockerd, stopped (and its temp dir removed) on drop.
pub struct TestDockerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl TestDockerd {
    /// Starts dockerd, returning once `docker version` gets the server's answer.
    pub fn start() -> TestDockerd {
        for bin in [DOCKERD_BIN, DOCKER_BIN] {
            assert!(Path::new(bin).exists(), "{bin} missing: scripts/install-deps installs docker.io");
        }
        // Short names: containerd's sockets under the exec-root must fit a sockaddr_un (108 bytes).
        let dir = tempfile::Builder::new().prefix("slipway-dockerd-").tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        let socket = path("docker.sock");
        let log = path("dockerd.log");
        let config = path("daemon.json");
        let settings = serde_json::json!({ "deprecated-key-path": path("key.json") });
        std::fs::write(&config, settings.to_string()).unwrap();
        std::fs::create_dir(path("client")).unwrap();

        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(DOCKERD_BIN);
        cmd.arg("--config-file").arg(&config);
        cmd.args(["--iptables=false", "--ip6tables=false", "--bridge=none"]);
        cmd.arg("--data-root").arg(path("data"));
        cmd.arg("--exec-root").arg(path("exec"));
        cmd.arg("--pidfile").arg(path("dockerd.pid"));
        cmd.arg("--host").arg(format!("unix://{}", socket.display()));
        // Settings dockerd would take from the environment instead of its flags.
        cmd.env_remove("DOCKER_DRIVER").env_remove("DOCKER_TMPDIR").env_remove("DOCKER_HOST");
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file);
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn dockerd");
        let mut dockerd = TestDockerd { child, dir, socket, log };
        dockerd.wait_ready();
        dockerd
    }

    fn wait_ready(&mut self) {
        let limit = scaled(Duration::from_secs(30));
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dockerd exited with {status}:\n{}", self.log());
            }
            let out = self.cmd().arg("version").stdin(Stdio::null()).output().expect("spawn docker");
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "dockerd did not answer `docker version` within {limit:?}: {}\ndockerd log:\n{}",
                    describe(&out),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A `docker -H unix://SOCKET` command, with a client config directory of its own and no
    /// `DOCKER_*` setting from the environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(DOCKER_BIN);
        cmd.arg("-H").arg(format!("unix://{}", self.socket.display()));
        for var in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"] {
            cmd.env_remove(var);
        }
        cmd.env("DOCKER_CONFIG", self.dir.path().join("client"));
        cmd
    }

    /// Runs `docker ARGS`, panicking with its output and the daemon's log unless it exits 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().expect("spawn docker");
        self.check(args, &out);
        out
    }

    /// Panics with `out`, and the daemon's log, unless `docker ARGS` exited 0.
    #[track_caller]
    pub fn check(&self, args: &[&str], out: &Output) {
        assert!(out.status.success(), "docker {args:?}: {}\ndockerd log:\n{}", describe(out), self.log());
    }

    /// `docker image inspect IMAGE` → its one object.
    #[track_caller]
    pub fn inspect_image(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", image]);
        let mut all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(all.len(), 1, "docker image inspect {image}: {all:?}");
        all.remove(0)
    }

    /// Everything dockerd (and its containerd) logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The ids of the processes other than dockerd whose command line names the temp dir: its
    /// containerd (`--config DIR/exec/containerd/containerd.toml`) and shims (`-address …`).
    fn helpers(&self) -> Vec<i32> {
        let needle = self.dir.path().as_os_str().as_encoded_bytes();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != self.child.id() as i32)
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                cmdline.windows(needle.len()).any(|w| w == needle)
            })
            .collect()
    }

    fn signal_helpers(&self, signal: rustix::process::Signal) {
        for pid in self.helpers().into_iter().filter_map(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Detaches every mount under the temp dir, deepest first (dockerd bind-mounts its
    /// data-root on itself; overlay and netns mounts remain when it was killed).
    fn unmount_all(&self) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.path().to_str().unwrap();
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
            .collect();
        points.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in points {
            let _ = rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

impl Drop for TestDockerd {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        // Signalled by id only while not yet reaped (the id cannot have been reused).
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), Signal::TERM);
        }
        self.signal_helpers(Signal::TERM);
        let deadline = Instant::now() + scaled(Duration::from_secs(15));
        while Instant::now() < deadline {
            let dockerd_gone = !matches!(self.child.try_wait(), Ok(None));
            if dockerd_gone && self.helpers().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Child::kill sends nothing to a child already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.signal_helpers(Signal::KILL);
        self.unmount_all();
    }
}
