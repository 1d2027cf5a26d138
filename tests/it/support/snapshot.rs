//! Snapshot helpers shared by the snapshot tests and, later, the build and executor tests:
//! open a given backend, see a snapshot for the length of a closure, check no mount is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slipway::snapshot::{self, Backend, Mounts, Snapshotter};

/// Opens `backend` under the store root `root` (forced, never probed away).
pub fn open(root: &Path, backend: Backend) -> Box<dyn Snapshotter> {
    snapshot::open(root, Some(backend)).unwrap_or_else(|e| panic!("open {backend} snapshotter: {e:#?}"))
}

/// Shows `mounts` for the length of `f`: mounted on a fresh directory under `scratch` when
/// `can_mount`, else (unprivileged, no user namespace) the bind source used in place. The mount
/// is gone when this returns, whether `f` panicked or not.
pub fn with_mounts<T>(mounts: &Mounts, scratch: &Path, can_mount: bool, f: impl FnOnce(&Path) -> T) -> T {
    if !can_mount {
        match mounts {
            Mounts::Bind { source, .. } => return f(source),
            Mounts::Overlay { .. } => panic!("overlay mounts need mount privileges: {mounts:?}"),
        }
    }
    let target = tempfile::Builder::new().prefix("mnt-").tempdir_in(scratch).expect("mount point");
    let mounted = mounts.mount(target.path()).unwrap_or_else(|e| panic!("mount {mounts:?}: {e:#?}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(target.path())));
    mounted.unmount().expect("unmount");
    assert_no_mounts_under(scratch);
    match result {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Prepares the active snapshot `key` on `parent`, runs `f` on it mounted, unmounts it.
pub fn prepare_and_run<T>(
    sn: &dyn Snapshotter,
    key: &str,
    parent: Option<&str>,
    scratch: &Path,
    can_mount: bool,
    f: impl FnOnce(&Path) -> T,
) -> T {
    let mounts = sn.prepare(key, parent).unwrap_or_else(|e| panic!("prepare {key} on {parent:?}: {e:#?}"));
    with_mounts(&mounts, scratch, can_mount, f)
}

/// Runs `f` on a read-only view of the committed `parent`, removed afterwards.
pub fn view_and_run<T>(
    sn: &dyn Snapshotter,
    parent: &str,
    scratch: &Path,
    can_mount: bool,
    f: impl FnOnce(&Path) -> T,
) -> T {
    let key = format!("view-of-{parent}");
    let mounts = sn.view(&key, Some(parent)).unwrap_or_else(|e| panic!("view {parent}: {e:#?}"));
    let result = with_mounts(&mounts, scratch, can_mount, f);
    sn.remove(&key).expect("remove view");
    result
}

/// Panics if any mount point of this mount namespace lies under `dir`.
#[track_caller]
pub fn assert_no_mounts_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.to_string_lossy();
    let left: Vec<&str> = info.lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&*dir))).collect();
    assert!(left.is_empty(), "mounts left under {dir}:\n{}", left.join("\n"));
}

/// Runs this test binary's test `test` as uid/gid 65534, optionally inside a fresh user and
/// mount namespace (`unshare --user --map-root-user --mount`, a single-threaded process that
/// unshares, then execs the harness). The binary is copied into `dir` (made 0755) so the
/// unprivileged user can run it wherever the build tree is; `work` (owned by 65534) is passed
/// in `SLIPWAY_SNAPSHOT_CHILD` and serves as HOME and XDG dirs.
pub fn unprivileged_child(test: &str, dir: &Path, work: &Path, userns: bool) -> Output {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("it-under-test");
    if !bin.exists() {
        std::fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    if userns {
        cmd.args(["unshare", "--user", "--map-root-user", "--mount", "--"]);
    }
    cmd.arg(&bin).args([test, "--exact", "--nocapture", "--test-threads=1"]);
    cmd.env("SLIPWAY_SNAPSHOT_CHILD", work)
        .env("HOME", work)
        .env("XDG_DATA_HOME", work.join("data"))
        .env("XDG_RUNTIME_DIR", work.join("run"))
        .env("TMPDIR", work.join("tmp"))
        .env_remove("SLIPWAY_ROOT")
        .env("RUST_BACKTRACE", "1");
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    rustix::fs::chown(work.join("tmp"), Some(rustix::fs::Uid::from_raw(65534)), Some(rustix::fs::Gid::from_raw(65534)))
        .unwrap();
    cmd.output().expect("setpriv and unshare (util-linux) are installed")
}

/// The work directory a child started by [`unprivileged_child`] was given, if this process is one.
pub fn child_work_dir() -> Option<PathBuf> {
    std::env::var_os("SLIPWAY_SNAPSHOT_CHILD").map(PathBuf::from)
}
