//! The rootless subset: the embedded executor run by uid 65534, first with only the caller
//! mapped (to root; no cgroups), then with a subordinate range mapped by newuidmap. Each phase
//! runs in a mount namespace of its own whose `/etc/subuid` and `/etc/subgid` the test writes,
//! so neither the machine's ranges (uid 65534 may have one) nor a test running beside it matter.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use slipway::exec::{Limits, Network};

use super::*;
use crate::support::rootfs::busybox_rootfs_all_applets;

const NOBODY: u32 = 65534;
const ROOTLESS_ENV: &str = "SLIPWAY_TEST_ROOTLESS_EXEC_DIR";

#[test]
fn rootless_subset() {
    let ctx = crate::support::TestContext::new();
    std::fs::set_permissions(ctx.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = ctx.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    busybox_rootfs_all_applets(&rootfs);
    for entry in walkdir::WalkDir::new(&rootfs) {
        let path = entry.unwrap().into_path();
        std::os::unix::fs::lchown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let child = |phase: &str, subids: &str| {
        let mut cmd = crate::support::rootless::with_subids(&ctx.path().join(format!("etc-{phase}")), subids);
        let out = cmd
            .args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["exec::rootless::rootless_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROOTLESS_ENV, ctx.path())
            .env(PHASE_ENV, phase)
            .output()
            .expect("unshare and setpriv (util-linux) are installed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{phase} child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    };
    // Each phase sees the /etc/subuid and /etc/subgid it needs, whatever the machine's hold:
    // without subordinate ids only root is mapped; with a range newuidmap maps the rest.
    child("single", "");
    child("subids", &format!("{NOBODY}:400000:65536\n"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(ctx.path().to_str().unwrap()), "a rootless sandbox mount leaked");
    assert!(!rootfs.join("etc/hosts").exists(), "stub left behind");
}

const PHASE_ENV: &str = "SLIPWAY_TEST_ROOTLESS_PHASE";

/// The unprivileged half of the test above; does nothing unless started by it.
#[test]
fn rootless_child() {
    let Some(work) = std::env::var_os(ROOTLESS_ENV).map(PathBuf::from) else {
        return;
    };
    assert!(!rustix::process::geteuid().is_root());
    let sb = Sandbox { ctx: crate::support::TestContext::new(), rootfs: work.join("rootfs") };
    let ex = embedded();
    if std::env::var(PHASE_ENV).as_deref() == Ok("subids") {
        let ran = sb.sh(&ex, "touch /tmp/owned && chown 1000:1000 /tmp/owned && stat -c %u:%g /tmp/owned; id -u");
        assert_eq!(ran.ok(), "1000:1000\n0\n");
        let mut spec = sh("id -u; id -G; touch /tmp/mine-$(id -u) && stat -c %u /tmp/mine-$(id -u)");
        spec.user = "user".into();
        assert_eq!(sb.run(&ex, &spec).ok(), "1000\n1000\n1000\n");
        spec.user = "4242:4243".into();
        assert_eq!(sb.run(&ex, &spec).ok(), "4242\n4243\n4242\n");
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(sb.rootfs.join("tmp/owned")).unwrap());
        assert_eq!(owner, 400_000 + 999, "uid 1000 inside is the subordinate range on the host");
        assert_no_leaks(&sb, None);
        return;
    }
    assert_eq!(sb.sh(&ex, "exit 3").status.unwrap(), ExitStatus::Exited(3));
    assert_eq!(sb.run(&ex, &ExecSpec::new(["no-such-command"])).status.unwrap(), ExitStatus::Exited(127));
    assert_eq!(sb.sh(&ex, "kill -KILL $$").status.unwrap(), ExitStatus::Signaled(9));
    let out = sb.sh(&ex, "id -u; echo $$; hostname; grep -E '^Cap(Eff|Inh)' /proc/self/status; ls /sys/class/net").ok();
    assert_eq!(out, "0\n2\nslipway\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nlo\n");
    let mut spec = sh("ls /sys/class/net | wc -l");
    spec.network = Network::Host;
    let host = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(sb.run(&ex, &spec).ok().trim(), host.to_string());
    let mut spec = sh("pwd; cat /etc/hosts");
    spec.cwd = "/made/here".into();
    let out = sb.run(&ex, &spec).ok();
    assert!(out.starts_with("/made/here\n") && out.contains("localhost slipway"), "{out}");
    spec.user = "1000".into();
    let err = sb.run(&ex, &spec).status.unwrap_err();
    assert!(matches!(err, ExecError::UserNotMapped { uid: 1000, .. }), "{err:?}");
    assert!(err.to_string().contains("apt-get install uidmap") && err.to_string().contains("/etc/subuid"), "{err}");
    spec.user = String::new();
    spec.limits = Limits { pids: Some(10), ..Limits::default() };
    let err = sb.run(&ex, &spec).status.unwrap_err();
    assert!(matches!(err, ExecError::LimitUnavailable { limit: "pids", .. }), "{err:?}");
    let ran = sb.sh(&ex, "echo 1 > /proc/sys/kernel/panic || echo denied; mount -t tmpfs t /tmp || echo denied");
    assert_eq!(ran.ok(), "denied\ndenied\n");
    // Insecure mode: every capability of the sandbox's user namespace (all the kernel has), a
    // tmpfs mounts; no device nodes (the kernel refuses them there, BuildKit skips them).
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
    let mut spec = sh("grep -E '^Cap(Eff|Amb)' /proc/self/status; mount -t tmpfs t /tmp && echo mounted; ls /dev/fuse");
    spec.security = slipway::exec::Security::Insecure;
    let ran = sb.run(&ex, &spec);
    let all = format!("{:016x}", (1u64 << (last + 1)) - 1);
    assert_eq!(ran.out(), format!("CapEff:\t{all}\nCapAmb:\t{all}\nmounted\n"), "{}", ran.err());
    assert!(ran.err().contains("/dev/fuse"), "{}", ran.err());
    let cancel = CancelToken::new();
    let ran = std::thread::scope(|s| {
        let run = s.spawn(|| sb.run_cancel(&ex, &sh("sleep 876700"), &cancel));
        std::thread::sleep(std::time::Duration::from_millis(200));
        cancel.cancel();
        run.join().unwrap()
    });
    assert!(matches!(ran.status, Err(ExecError::Cancelled)), "{:?}", ran.status);
    assert!(procs_with("sleep 876700").is_empty());
}
