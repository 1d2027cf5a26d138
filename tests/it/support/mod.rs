//! Shared helpers for integration tests: temp dirs, running the slipway binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Path of the slipway binary under test.
pub fn slipway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slipway"))
}

/// A test's private store root and scratch space, removed on drop.
pub struct TestContext {
    pub dir: tempfile::TempDir,
}

impl TestContext {
    pub fn new() -> TestContext {
        TestContext { dir: tempfile::Builder::new().prefix("slipway-it-").tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A `slipway` command with `--root` set to this context's store and logs kept quiet; the CI
    /// markers that fold plain progress (`GITHUB_ACTIONS`, `GITLAB_CI`) are removed, so output is
    /// the same when the suite itself runs in CI.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(slipway_bin());
        cmd.arg("--root").arg(self.root());
        cmd.env_remove("SLIPWAY_ROOT").env_remove("SOURCE_DATE_EPOCH").env("SLIPWAY_LOG", "warn");
        cmd.env_remove("GITHUB_ACTIONS").env_remove("GITLAB_CI");
        cmd
    }

    /// Runs `slipway ARGS` and returns its output, whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn slipway")
    }

    /// Runs `slipway ARGS`, panicking with its stderr unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "slipway {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Path of the shared corpus: `shared/corpus` beside the repository (or beside any ancestor,
/// so that git worktrees nested under the workspace find it too).
pub fn shared_corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().skip(1).map(|dir| dir.join("shared/corpus")).find(|p| p.is_dir()).unwrap_or_else(|| {
        panic!(
            "shared/corpus not found beside {} or its parents: clone the repository beside shared/",
            manifest.display()
        )
    })
}

/// A command re-running this test binary so that it executes only `test` (its exact name), for
/// crash tests that need a process to kill. The child learns what to do from env vars the caller
/// sets; `SLIPWAY_FAILPOINT` is cleared unless the caller sets it again.
pub fn self_child(test: &str) -> Command {
    let exe = std::env::current_exe().expect("path of the running test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1", "-q"]);
    cmd.env_remove("SLIPWAY_FAILPOINT").env("RUST_BACKTRACE", "0");
    cmd
}

/// Runs `cmd`, an `unshare --user …` whose first program waits for a line on stdin before it
/// goes on (`sh -c 'read -r go && exec "$@"'`: exec'd before its ids are mapped, it has no
/// capabilities), once its user namespace exists: ids `0..count` inside are mapped to the same
/// ids outside (root's map, written from here), then the line is sent. Returns its output.
pub fn run_mapped(mut cmd: Command, count: u64) -> Output {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    let deadline = std::time::Instant::now() + scaled(Duration::from_secs(10));
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap() == own {
        assert!(std::time::Instant::now() < deadline, "unshare never made its user namespace");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 0 {count}\n")).unwrap();
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 0 {count}\n")).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child.wait_with_output().unwrap()
}

/// `KEY=value` lines a child printed on stdout.
pub fn child_value(out: &Output, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// The signal that killed a process, if any.
pub fn killed_by(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

/// Formats a child's output for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `base` times `SLIPWAY_TEST_TIMEOUT_SCALE` (a positive number, 1 when unset): how long to wait
/// for a helper process to get ready, stretched on a slow or crowded machine.
pub fn scaled(base: Duration) -> Duration {
    match std::env::var("SLIPWAY_TEST_TIMEOUT_SCALE") {
        Err(_) => base,
        Ok(text) => match text.parse::<f64>() {
            Ok(factor) if factor.is_finite() && factor > 0.0 => base.mul_f64(factor),
            _ => panic!("SLIPWAY_TEST_TIMEOUT_SCALE={text:?}: expected a positive number"),
        },
    }
}

pub mod build;
pub mod dockerd;
pub mod emulation;
pub mod files;
pub mod git;
pub mod layout;
pub mod proxy;
pub mod rawtar;
pub mod registry;
pub mod rootfs;
pub mod rootless;
pub mod sandbox;
pub mod snapshot;
pub mod sshd;
pub mod tree;
