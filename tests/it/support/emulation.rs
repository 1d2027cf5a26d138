//! A binfmt_misc of the test's own, for foreign RUN steps: a test runs again in a new user and
//! mount namespace where a fresh `binfmt_misc` instance (one per user namespace since Linux 6.7)
//! is mounted over `/proc/sys/fs/binfmt_misc` and holds what the test asks for. The machine's
//! registrations are neither read nor changed, so the tests assert the same on every host.
//!
//! Ids 0..4294967294 map to themselves (one short of all, so that slipway sees it runs in a user
//! namespace and mounts overlay with `userxattr`); files keep their owners on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::describe;
use super::registry::ok;

/// The variable that tells the re-run test which state it runs in.
const INSIDE_ENV: &str = "SLIPWAY_IT_BINFMT";

/// Debian's registration of qemu-aarch64 (from `qemu-user-static`).
const QEMU_AARCH64: &str = "/usr/share/binfmts/qemu-aarch64";

/// Where `scripts/install-deps` keeps Debian's `busybox-static:arm64` package.
const DEB_CACHE: &str = "/var/cache/slipway-tests";

/// What the test's `binfmt_misc` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binfmt {
    /// Nothing registered: no foreign program runs.
    Empty,
    /// Debian's qemu-aarch64 entry with the `F` (fix-binary) flag, as `update-binfmts` would
    /// register it if its file asks for `F`: arm64 programs run in any root filesystem.
    Aarch64,
    /// The same entry without `F`: the kernel would look for the emulator inside the rootfs.
    Aarch64NoFix,
}

impl Binfmt {
    fn name(self) -> &'static str {
        match self {
            Binfmt::Empty => "empty",
            Binfmt::Aarch64 => "aarch64",
            Binfmt::Aarch64NoFix => "aarch64-nofix",
        }
    }

    /// The line written to `register`, if any.
    fn registration(self) -> Option<String> {
        let flags = match self {
            Binfmt::Empty => return None,
            Binfmt::Aarch64 => "FP",
            Binfmt::Aarch64NoFix => "P",
        };
        let text = std::fs::read_to_string(QEMU_AARCH64)
            .unwrap_or_else(|e| panic!("{QEMU_AARCH64}: {e}: scripts/install-deps installs qemu-user-static"));
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("{QEMU_AARCH64} has no {key}"))
                .to_string()
        };
        let (magic, mask, interpreter) = (field("magic"), field("mask"), field("interpreter"));
        Some(format!(":qemu-aarch64:M::{magic}:{mask}:{interpreter}:{flags}"))
    }
}

/// The state this test process was re-run in, `None` in the test binary the harness started.
pub fn inside() -> Option<Binfmt> {
    let name = std::env::var(INSIDE_ENV).ok()?;
    [Binfmt::Empty, Binfmt::Aarch64, Binfmt::Aarch64NoFix].into_iter().find(|b| b.name() == name)
}

/// For a test whose body must run with `state`: outside, re-runs `test` (its full name) in a
/// namespace holding `state`, asserts that it passed there, and returns true (the caller returns);
/// inside, returns false (the caller goes on with its body).
pub fn delegated(state: Binfmt, test: &str) -> bool {
    match inside() {
        Some(now) => {
            assert_eq!(now, state, "{test} re-ran in the wrong binfmt_misc state");
            false
        }
        None => {
            let out = run_in(state, test);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{test} in binfmt_misc {state:?}:\n{}",
                describe(&out)
            );
            true
        }
    }
}

/// Runs `test` of this binary in a new user and mount namespace with its own `binfmt_misc` set
/// to `state`. The first shell, exec'd before its ids are mapped, waits for the maps on stdin.
fn run_in(state: Binfmt, test: &str) -> Output {
    let script = r#"set -e
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -z "$SLIPWAY_IT_REGISTER" ] || printf '%s' "$SLIPWAY_IT_REGISTER" > /proc/sys/fs/binfmt_misc/register
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--mount", "--propagation", "private", "--"]);
    cmd.args(["sh", "-c", r#"read -r go && exec "$@""#, "sh", "sh", "-c", script, "sh"]);
    cmd.arg(std::env::current_exe().unwrap()).args([test, "--exact", "--nocapture", "--test-threads=1"]);
    cmd.env(INSIDE_ENV, state.name()).env("RUST_BACKTRACE", "1").env_remove("SLIPWAY_IT_REGISTER");
    if let Some(line) = state.registration() {
        cmd.env("SLIPWAY_IT_REGISTER", line);
    }
    super::run_mapped(cmd, 4_294_967_294)
}

/// A busybox root filesystem of Debian's `busybox-static:arm64` (the .deb `scripts/install-deps`
/// downloads), its applet list read by running it under `qemu-aarch64-static` directly.
pub fn arm64_busybox_rootfs(dir: &Path) {
    let deb = std::fs::read_dir(DEB_CACHE)
        .unwrap_or_else(|e| panic!("{DEB_CACHE}: {e}: scripts/install-deps downloads busybox-static:arm64 there"))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_arm64.deb"))
        .unwrap_or_else(|| panic!("no busybox-static arm64 .deb in {DEB_CACHE}: run scripts/install-deps"));
    let unpacked = dir.with_extension("deb");
    let mut extract = Command::new("dpkg-deb");
    extract.arg("-x").arg(&deb).arg(&unpacked);
    ok(extract);
    let busybox: PathBuf = unpacked.join("bin/busybox");
    let mut list = Command::new("qemu-aarch64-static");
    list.arg(&busybox).arg("--list");
    let list = ok(list);
    let applets: Vec<String> = String::from_utf8(list.stdout).unwrap().lines().map(str::to_string).collect();
    assert!(applets.iter().any(|a| a == "uname"), "{applets:?}");
    super::rootfs::busybox_rootfs_of(dir, &busybox, &applets);
}
