//! Helpers for sandbox tests: a busybox rootfs per test, runs captured into [`Ran`], and the
//! host-side checks every escape test ends with (canaries, mount table, leftover processes).

use std::path::PathBuf;

use slipway::exec::{
    CancelToken, EmbeddedExecutor, ExecError, ExecSpec, Executor, ExitStatus, OciRuntimeExecutor, Output,
};

use super::TestContext;
use super::rootfs::busybox_rootfs_all_applets;

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

/// The oci-runtime executor driving runc (scripts/install-deps installs runc, crun and tini).
pub fn runc() -> OciRuntimeExecutor {
    OciRuntimeExecutor::new("runc").expect("runc and tini-static are installed")
}

/// The oci-runtime executor driving crun.
pub fn crun() -> OciRuntimeExecutor {
    OciRuntimeExecutor::new("crun").expect("crun and tini-static are installed")
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
        let status = ex.run(spec, &self.rootfs, Output::new(&mut stdout, &mut stderr), cancel);
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
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) && !cmdline.contains("--exact") {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// Canary files outside the rootfs that no sandbox may touch; checked by [`Canary::check`].
pub struct Canary {
    pub dir: PathBuf,
    before: Vec<(PathBuf, Vec<u8>)>,
    meta: Vec<(PathBuf, u32, u32, u32, i64, u64, u64)>,
}

impl Canary {
    pub fn plant(sb: &Sandbox) -> Canary {
        Canary::plant_in(sb.ctx.path())
    }

    /// Canary files in `top/canary`, for tests that have no [`Sandbox`] (builds, pulls).
    pub fn plant_in(top: &std::path::Path) -> Canary {
        let dir = top.join("canary");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("secret"), b"host secret\n").unwrap();
        std::fs::write(dir.join("sub/file"), b"host file\n").unwrap();
        let before =
            ["secret", "sub/file"].iter().map(|f| (dir.join(f), std::fs::read(dir.join(f)).unwrap())).collect();
        let meta = canary_meta(&dir);
        Canary { dir, before, meta }
    }

    #[track_caller]
    pub fn check(&self, sb: &Sandbox) {
        self.check_files();
        assert_no_leaks(sb, None);
    }

    /// The canary files have their content and nothing was added beside them.
    #[track_caller]
    pub fn check_files(&self) {
        for (path, bytes) in &self.before {
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{} changed", path.display());
        }
        let names: Vec<_> = std::fs::read_dir(&self.dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "canary dir changed: {names:?}");
        assert_eq!(canary_meta(&self.dir), self.meta, "a canary's mode, owner, mtime, inode or link count changed");
    }
}

/// (path, mode, uid, gid, mtime, inode, links) of the canary directory and everything in it.
fn canary_meta(dir: &std::path::Path) -> Vec<(PathBuf, u32, u32, u32, i64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    [dir.to_path_buf(), dir.join("secret"), dir.join("sub"), dir.join("sub/file")]
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            (p, m.mode(), m.uid(), m.gid(), m.mtime(), m.ino(), m.nlink())
        })
        .collect()
}

/// A host outside the machine for network tests, made locally: a network namespace joined to
/// the host by a veth pair, its end at [`addr`](TestHost::addr). Reached from the host's
/// namespace (so through slirp4netns' NAT) but never from the internet. Dropping it deletes
/// the namespace and with it the veth pair, also when the test fails.
pub struct TestHost {
    name: String,
    pub addr: std::net::Ipv4Addr,
}

impl TestHost {
    pub fn create() -> TestHost {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let idx = (std::process::id().wrapping_mul(16).wrapping_add(n)) % 16384;
        let base = idx * 4;
        let (x, y) = ((base >> 8) as u8, (base & 0xff) as u8);
        let name = format!("slipway-t{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let host = TestHost { name, addr: std::net::Ipv4Addr::new(10, 213, x, y + 2) };
        let (outer, inner) = (format!("swo{idx}"), format!("swi{idx}"));
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &host.name]);
        ip(&["addr", "add", &format!("10.213.{x}.{}/30", y + 1), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ip(&["-n", &host.name, "addr", "add", &format!("{}/30", host.addr), "dev", &inner]);
        ip(&["-n", &host.name, "link", "set", &inner, "up"]);
        ip(&["-n", &host.name, "link", "set", "lo", "up"]);
        host
    }

    /// Serves one TCP connection on the test host: reads a line, answers `reply`. Returns the
    /// port and the server thread.
    pub fn serve_once(&self, reply: &'static str) -> (u16, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let netns = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        let addr = self.addr;
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            // SAFETY: setns(2) on an open namespace file; it moves only this thread.
            let ret = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
            let listener = std::net::TcpListener::bind((addr, 0)).unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            conn.write_all(reply.as_bytes()).unwrap();
        });
        (rx.recv().unwrap(), server)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[track_caller]
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
