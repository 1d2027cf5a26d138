//! The `Executor` contract suite, run over the embedded executor on a busybox rootfs.

use std::path::{Path, PathBuf};

use slipway::exec::{CancelToken, EmbeddedExecutor, ExecError, ExecSpec, Executor, ExitStatus, Output};

use crate::support::{TestContext, rootfs::busybox_rootfs_all_applets};

/// What a run produced.
pub struct Ran {
    pub status: Result<ExitStatus, ExecError>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ran {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    #[track_caller]
    pub fn ok(&self) -> String {
        match &self.status {
            Ok(s) if s.success() => self.out(),
            other => panic!("run failed: {other:?}\nstdout:\n{}\nstderr:\n{}", self.out(), self.err()),
        }
    }
}

pub fn embedded() -> EmbeddedExecutor {
    EmbeddedExecutor::new(env!("CARGO_BIN_EXE_slipway"))
}

pub struct Sandbox {
    pub ctx: TestContext,
    pub rootfs: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let ctx = TestContext::new();
        let rootfs = ctx.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        busybox_rootfs_all_applets(&rootfs);
        Sandbox { ctx, rootfs }
    }

    pub fn run(&self, ex: &dyn Executor, spec: &ExecSpec) -> Ran {
        self.run_cancel(ex, spec, &CancelToken::new())
    }

    pub fn run_cancel(&self, ex: &dyn Executor, spec: &ExecSpec, cancel: &CancelToken) -> Ran {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = ex.run(spec, &self.rootfs, Output { stdout: &mut stdout, stderr: &mut stderr }, cancel);
        Ran { status, stdout, stderr }
    }

    pub fn sh(&self, ex: &dyn Executor, script: &str) -> Ran {
        self.run(ex, &sh(script))
    }
}

pub fn sh(script: &str) -> ExecSpec {
    ExecSpec::new(["/bin/sh", "-c", script])
}

/// Host-side leak checks run after every sandbox test: no mount of the test's directory in
/// the host's mount table, no process whose command line carries `marker`.
#[track_caller]
pub fn assert_no_leaks(sb: &Sandbox, marker: Option<&str>) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = sb.ctx.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&dir), "a sandbox mount leaked into the host:\n{mountinfo}");
    if let Some(marker) = marker {
        let leaked: Vec<String> = procs_with(marker);
        assert!(leaked.is_empty(), "processes left behind: {leaked:?}");
    }
}

/// Host pids whose command line contains `marker`.
pub fn procs_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(format!("{name}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Canary files outside the rootfs that no sandbox may touch; checked by [`Canary::check`].
pub struct Canary {
    pub dir: PathBuf,
    before: Vec<(PathBuf, Vec<u8>)>,
}

impl Canary {
    pub fn plant(sb: &Sandbox) -> Canary {
        let dir = sb.ctx.path().join("canary");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("secret"), b"host secret\n").unwrap();
        std::fs::write(dir.join("sub/file"), b"host file\n").unwrap();
        let before = ["secret", "sub/file"].iter().map(|f| (dir.join(f), std::fs::read(dir.join(f)).unwrap())).collect();
        Canary { dir, before }
    }

    #[track_caller]
    pub fn check(&self, sb: &Sandbox) {
        for (path, bytes) in &self.before {
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{} changed", path.display());
        }
        let names: Vec<_> = std::fs::read_dir(&self.dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "canary dir changed: {names:?}");
        assert_no_leaks(sb, None);
    }
}

/// The contract every `Executor` meets; `executor_contract!` instantiates it per
/// implementation.
pub mod contract {
    use super::*;

    pub fn exit_codes(ex: &dyn Executor) {
        let sb = Sandbox::new();
        assert_eq!(sb.sh(ex, "exit 0").status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(sb.sh(ex, "exit 3").status.unwrap(), ExitStatus::Exited(3));
        let ran = sb.run(ex, &ExecSpec::new(["/etc/passwd"]));
        assert_eq!(*ran.status.as_ref().unwrap(), ExitStatus::Exited(126), "{}", ran.err());
        let ran = sb.run(ex, &ExecSpec::new(["no-such-command", "x"]));
        assert_eq!(*ran.status.as_ref().unwrap(), ExitStatus::Exited(127));
        assert!(ran.err().contains("no-such-command"), "{}", ran.err());
        let ran = sb.run(ex, &ExecSpec::new(["/no/such/path"]));
        assert_eq!(ran.status.unwrap(), ExitStatus::Exited(127));
        assert_eq!(sb.run(ex, &ExecSpec::new(["true"])).status.unwrap(), ExitStatus::Exited(0));
        assert_no_leaks(&sb, None);
    }

    pub fn signals(ex: &dyn Executor) {
        let sb = Sandbox::new();
        assert_eq!(sb.sh(ex, "kill -KILL $$").status.unwrap(), ExitStatus::Signaled(9));
        assert_eq!(sb.sh(ex, "kill -TERM $$").status.unwrap(), ExitStatus::Signaled(15));
        // SIGPIPE is back at its default: `yes` dies quietly when `head` is done.
        assert_eq!(sb.sh(ex, "yes | head -n 1").ok(), "y\n");
    }

    pub fn env(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let mut spec = sh(r#"echo "$FOO|$PATH|$HOME|$EMPTY|""#);
        spec.env = vec!["FOO=bar baz".into(), "PATH=/bin:/usr/bin".into(), "EMPTY=".into()];
        assert_eq!(sb.run(ex, &spec).ok(), "bar baz|/bin:/usr/bin|/root||\n");
        let spec = sh(r#"echo "$PATH"; env | grep -c ."#);
        let out = sb.run(ex, &spec).ok();
        assert!(out.starts_with(&format!("{}\n", slipway::exec::DEFAULT_PATH)), "{out}");
    }

    pub fn cwd(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let mut spec = sh("pwd");
        spec.cwd = "/tmp".into();
        assert_eq!(sb.run(ex, &spec).ok(), "/tmp\n");
        let mut spec = sh("pwd; touch here");
        spec.cwd = "/work/deep/dir".into();
        spec.user = "user".into();
        assert_eq!(sb.run(ex, &spec).ok(), "/work/deep/dir\n");
        let meta = std::fs::metadata(sb.rootfs.join("work/deep/dir")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000, "a created workdir belongs to the user");
        assert!(sb.rootfs.join("work/deep/dir/here").exists());
    }

    pub fn user(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let id = |user: &str| {
            let mut spec = sh("id -u; id -g; id -G");
            spec.user = user.into();
            sb.run(ex, &spec).ok().split_whitespace().collect::<Vec<_>>().join(" ")
        };
        assert_eq!(id(""), "0 0 0");
        assert_eq!(id("root"), "0 0 0");
        assert_eq!(id("1000"), "1000 1000 1000");
        assert_eq!(id("user"), "1000 1000 1000");
        assert_eq!(id("user:root"), "1000 0 0");
        assert_eq!(id("4242:4243"), "4242 4243 4243");
        let mut spec = sh("cat /home/user/notes.txt");
        spec.user = "user".into();
        assert_eq!(sb.run(ex, &spec).ok(), "hello\n");
        spec.user = "nobody-here".into();
        let err = sb.run(ex, &spec).status.unwrap_err();
        assert!(matches!(err, ExecError::UnknownUser { .. }), "{err:?}");
        assert_eq!(err.to_string(), "unable to find user nobody-here: no matching entries in passwd file");
        spec.user = "user:nogroup".into();
        assert!(matches!(sb.run(ex, &spec).status, Err(ExecError::UnknownGroup { .. })));
    }

    pub fn output(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let ran = sb.sh(ex, "echo out; echo err >&2; echo out2");
        assert_eq!(ran.ok(), "out\nout2\n");
        assert_eq!(ran.err(), "err\n");
        // Several MiB on both streams at once: nothing truncated, no deadlock.
        let ran = sb.sh(ex, "(yes 0123456789 | head -c 3145728 >&2) & yes abcdefghi | head -c 6291456; wait");
        ran.ok();
        assert_eq!(ran.stdout.len(), 6 << 20);
        assert_eq!(ran.stderr.len(), 3 << 20);
        assert!(ran.stdout.chunks(10).all(|c| c == &b"abcdefghi\n"[..c.len()]));
    }

    pub fn pid_namespace(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let out = sb.sh(ex, "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline | tr '\\0' ' '").ok();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "2", "the payload is the first child of the sandbox's init");
        let pids: Vec<u32> = lines[1].split_whitespace().map(|p| p.parse().expect(&out)).collect();
        assert!(pids.starts_with(&[1, 2]) && pids.iter().all(|&p| p < 10), "foreign processes visible: {pids:?}");
    }

    pub fn hostname_and_hosts(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let mut spec = sh("hostname; cat /etc/hosts; cat /etc/resolv.conf > /dev/null");
        spec.hostname = "buildbox".into();
        spec.extra_hosts = vec![("registry.test".into(), "10.1.2.3".parse().unwrap())];
        let out = sb.run(ex, &spec).ok();
        assert!(out.starts_with("buildbox\n"), "{out}");
        assert!(out.contains("127.0.0.1\tlocalhost buildbox"), "{out}");
        assert!(out.contains("10.1.2.3\tregistry.test"), "{out}");
        assert!(!sb.rootfs.join("etc/hosts").exists(), "the /etc/hosts stub outlived the run");
        assert!(!sb.rootfs.join("etc/resolv.conf").exists(), "the /etc/resolv.conf stub outlived the run");
        // An image's own file is hidden during the run, never rewritten.
        std::fs::write(sb.rootfs.join("etc/hosts"), "# image's own\n").unwrap();
        let out = sb.run(ex, &sh("cat /etc/hosts; echo '1.1.1.1 x' >> /etc/hosts")).ok();
        assert!(out.contains("localhost slipway"), "{out}");
        assert_eq!(std::fs::read_to_string(sb.rootfs.join("etc/hosts")).unwrap(), "# image's own\n");
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim() == "buildbox", false);
    }

    pub fn network(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let out = sb.sh(ex, "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ip link show lo").ok();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], &["lo", "lo"], "network none has only lo:\n{out}");
        assert!(out.contains("UP"), "lo is up:\n{out}");
        let mut spec = sh("ls /sys/class/net");
        spec.network = slipway::exec::Network::Host;
        let mut host: Vec<String> =
            std::fs::read_dir("/sys/class/net").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        host.sort();
        let mut seen: Vec<String> = sb.run(ex, &spec).ok().lines().map(str::to_string).collect();
        seen.sort();
        assert_eq!(seen, host, "network host sees the host's interfaces");
    }

    pub fn capabilities(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let status = |user: &str| {
            let mut spec = sh("grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
            spec.user = user.into();
            sb.run(ex, &spec).ok()
        };
        let root = status("");
        for line in ["CapInh:\t0000000000000000", "CapPrm:\t00000000a80425fb", "CapEff:\t00000000a80425fb",
            "CapBnd:\t00000000a80425fb", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"]
        {
            assert!(root.lines().any(|l| l == line), "missing {line:?} in\n{root}");
        }
        let user = status("user");
        for line in ["CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
            "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1"]
        {
            assert!(user.lines().any(|l| l == line), "missing {line:?} in\n{user}");
        }
    }

    pub fn fds(ex: &dyn Executor) {
        let sb = Sandbox::new();
        // `ls` itself holds one descriptor: the directory it lists.
        let out = sb.run(ex, &ExecSpec::new(["ls", "-l", "/proc/self/fd"])).ok();
        let fds: Vec<(u32, String)> = out
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .map(|(l, target)| (l.rsplit(' ').next().unwrap().parse().unwrap(), target.to_string()))
            .collect();
        let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).filter(|&n| n <= 2).collect();
        assert_eq!(numbers, [0, 1, 2], "{out}");
        assert!(fds.iter().filter(|(n, _)| *n > 2).all(|(_, t)| t.starts_with("/proc/") && t.ends_with("/fd")), "{out}");
    }

    pub fn limits(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let own = format!("{}-", std::process::id());
        let mut spec = sh("i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait");
        spec.limits.pids = Some(20);
        spec.timeout = Some(std::time::Duration::from_secs(60));
        let ran = sb.run(ex, &spec);
        assert!(!ran.status.as_ref().unwrap().success(), "fork bomb under a pids limit: {:?}", ran.status);
        assert!(ran.err().contains("fork"), "the shell could not fork: {}", ran.err());
        let mut spec = sh("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null; head -c 400m /dev/zero | tail > /dev/null");
        spec.limits.memory = Some(32 << 20);
        spec.limits.cpus = Some(0.5);
        let ran = sb.run(ex, &spec);
        let status = *ran.status.as_ref().unwrap();
        assert!(
            status == ExitStatus::Exited(137) || status == ExitStatus::Signaled(9),
            "400 MiB in a 32 MiB sandbox is OOM-killed: {status:?} {}",
            ran.err()
        );
        for ctrl in ["pids", "memory", "cpu"] {
            let parent = std::path::Path::new("/sys/fs/cgroup").join(ctrl);
            let leftovers: Vec<_> = walk_slipway(&parent).into_iter().filter(|n| n.starts_with(&own)).collect();
            assert!(leftovers.is_empty(), "cgroups left behind in {ctrl}: {leftovers:?}");
        }
        assert_no_leaks(&sb, Some("sleep 30"));
    }

    fn walk_slipway(root: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(root).max_depth(6).into_iter().flatten() {
            if entry.file_type().is_dir()
                && entry.path().parent().and_then(|p| p.file_name()).is_some_and(|n| n == "slipway")
            {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        found
    }

    pub fn cancellation(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let cancel = CancelToken::new();
        let started = std::time::Instant::now();
        let ran = std::thread::scope(|s| {
            let run = s.spawn(|| sb.run_cancel(ex, &sh("sleep 987654"), &cancel));
            std::thread::sleep(std::time::Duration::from_millis(200));
            cancel.cancel();
            run.join().unwrap()
        });
        assert!(matches!(ran.status, Err(ExecError::Cancelled)), "{:?}", ran.status);
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "cancel took {:?}", started.elapsed());
        assert_no_leaks(&sb, Some("sleep 987654"));

        let mut spec = sh("sleep 987655");
        spec.timeout = Some(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let ran = sb.run(ex, &spec);
        assert!(matches!(ran.status, Err(ExecError::TimedOut { .. })), "{:?}", ran.status);
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert_no_leaks(&sb, Some("sleep 987655"));
    }
}

macro_rules! executor_contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::contract;
            #[test]
            fn exit_codes() {
                contract::exit_codes(&$make());
            }
            #[test]
            fn signals() {
                contract::signals(&$make());
            }
            #[test]
            fn env() {
                contract::env(&$make());
            }
            #[test]
            fn cwd() {
                contract::cwd(&$make());
            }
            #[test]
            fn user() {
                contract::user(&$make());
            }
            #[test]
            fn output() {
                contract::output(&$make());
            }
            #[test]
            fn pid_namespace() {
                contract::pid_namespace(&$make());
            }
            #[test]
            fn hostname_and_hosts() {
                contract::hostname_and_hosts(&$make());
            }
            #[test]
            fn network() {
                contract::network(&$make());
            }
            #[test]
            fn capabilities() {
                contract::capabilities(&$make());
            }
            #[test]
            fn fds() {
                contract::fds(&$make());
            }
            #[test]
            fn limits() {
                contract::limits(&$make());
            }
            #[test]
            fn cancellation() {
                contract::cancellation(&$make());
            }
        }
    };
}

executor_contract!(embedded_executor, super::embedded);
