//! Chroot isolation where it is needed: every test here re-runs itself (the test binary, that
//! one test) inside a user namespace the test makes, identity-mapped, with its own mount and pid
//! namespaces and `user.max_user_namespaces = 0` — so `unshare(CLONE_NEWUSER)` fails there (the
//! sysctl belongs to that namespace; the machine's is never touched). Two tiers:
//!
//! - `mount_ns`: the process may still make mount namespaces (it has `CAP_SYS_ADMIN` in its
//!   user namespace): chroot isolation builds a mount table and pivots.
//! - `no_ns`: the process has Docker's default capabilities only (a default Kubernetes pod), so
//!   it may make no namespace at all: chroot isolation is a plain chroot.
//!
//! The contract suite's applicable cases run in both (`executor_contract!` in `exec.rs`), plus
//! the properties of chroot isolation itself below and an end-to-end build.

use std::process::{Command, Stdio};

use slipway::exec::{ChrootExecutor, Mount, MountSource, Network};

use super::*;

/// Set (to the tier's name) in the re-run test process.
const RESTRICTED_ENV: &str = "SLIPWAY_TEST_CHROOT_TIER";

/// Docker's default capabilities, as a default Kubernetes pod grants them (setpriv's names).
const POD_CAPS: &str = "-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,\
                        +net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    MountNs,
    NoNs,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::MountNs => "mount_ns",
            Tier::NoNs => "no_ns",
        }
    }
}

pub fn chroot() -> ChrootExecutor {
    ChrootExecutor::new(env!("CARGO_BIN_EXE_slipway"))
}

/// The chroot executor for the contract cases, whose specs ask for `Network::None` (the
/// library's default) although none of them is about the network: run with the host's, the
/// only network chroot isolation has (it refuses `None`, see `confines`).
pub fn chroot_for_contract() -> HostNetwork {
    HostNetwork(chroot())
}

pub struct HostNetwork(ChrootExecutor);

impl Executor for HostNetwork {
    fn run(
        &self,
        spec: &ExecSpec,
        rootfs: &std::path::Path,
        output: slipway::exec::Output<'_>,
        cancel: &CancelToken,
    ) -> Result<ExitStatus, ExecError> {
        let mut spec = spec.clone();
        if spec.network == Network::None {
            spec.network = Network::Host;
        }
        self.0.run(&spec, rootfs, output, cancel)
    }
}

/// Runs `case` in a restricted namespace with a mount namespace to spare (see the module docs).
pub fn with_mount_ns(test: &str, case: impl FnOnce()) {
    restricted(Tier::MountNs, test, case);
}

/// Runs `case` where no namespace at all may be made (see the module docs).
pub fn without_namespaces(test: &str, case: impl FnOnce()) {
    restricted(Tier::NoNs, test, case);
}

/// In the re-run process: checks the restrictions hold, then runs `case`. Else re-runs the test
/// `test` (a full path, crate first, as `module_path!` gives it) in the restricted namespace.
fn restricted(tier: Tier, test: &str, case: impl FnOnce()) {
    if std::env::var(RESTRICTED_ENV).as_deref() == Ok(tier.name()) {
        assert_restricted(tier);
        case();
        return;
    }
    let host_limit = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    let test = test.split_once("::").map_or(test, |(_, rest)| rest);
    let out = run_restricted(tier, test, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{} child failed:\n{stdout}\n{}", tier.name(), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    let after = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    assert_eq!(after, host_limit, "the machine's user.max_user_namespaces changed");
}

/// Runs the test `test` of this binary in a new user namespace (every id mapped to itself, which
/// only root can write), mount and pid namespaces, with `user.max_user_namespaces = 0` there and,
/// for [`Tier::NoNs`], only Docker's default capabilities.
fn run_restricted(tier: Tier, test: &str, envs: &[(&str, &str)]) -> std::process::Output {
    // The shell started before the ids were mapped has no capabilities (it was exec'd as an
    // unmapped user): it waits for the maps, then runs the script in a shell exec'd as root.
    let script = r#"set -e
mount -t proc proc /proc
echo 0 > /proc/sys/user/max_user_namespaces
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--mount", "--pid", "--fork", "--propagation", "private", "--"]);
    cmd.args(["sh", "-c", r#"read -r go && exec "$@""#, "sh", "sh", "-c", script, "sh"]);
    if tier == Tier::NoNs {
        cmd.args(["setpriv", &format!("--bounding-set={POD_CAPS}"), "--inh-caps=-all", "--"]);
    }
    cmd.arg(std::env::current_exe().unwrap()).args([test, "--exact", "--nocapture", "--test-threads=1"]);
    cmd.env(RESTRICTED_ENV, tier.name()).env("RUST_BACKTRACE", "0").envs(envs.iter().copied());
    crate::support::run_mapped(cmd, 4_294_967_295)
}

/// What the tier promises: no user namespace, and a mount namespace only in [`Tier::MountNs`];
/// the executor's probe agrees.
fn assert_restricted(tier: Tier) {
    let may =
        |flag: &str| Command::new("unshare").arg(flag).arg("true").stderr(Stdio::null()).status().unwrap().success();
    assert!(!may("--user"), "a user namespace could be made");
    assert_eq!(may("--mount"), tier == Tier::MountNs, "mount namespaces in {tier:?}");
    assert_eq!(chroot().mount_namespace(), tier == Tier::MountNs);
}

/// A root step keeps Docker's capabilities without kill, net_bind_service, net_raw, sys_chroot
/// and mknod, has no_new_privs, cannot chroot out, and shares the host's network and hostname;
/// network none is refused.
fn confines(tier: Tier) {
    let sb = Sandbox::new();
    let ex = chroot_for_contract();
    // (No /dev/null in the no_ns tier: the rootfs' /dev is empty and nothing is mounted.)
    let script = "grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs)' /proc/self/status 2>&1 || echo no-proc; \
                  mkdir -p /jail && chroot /jail /bin/true 2>&1 | grep -q 'not permitted' && echo no-chroot; \
                  rmdir /jail; hostname";
    let ran = sb.sh(&ex, script);
    let out = ran.ok();
    let expected = match tier {
        Tier::MountNs => {
            "CapInh:\t0000000000000000\nCapEff:\t00000000a00001db\nCapBnd:\t00000000a00001db\n\
                          CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"
        }
        Tier::NoNs => "grep: /proc/self/status: No such file or directory\nno-proc\n",
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(out, format!("{expected}no-chroot\n{host}"), "{}", ran.err());
    let mut spec = sh("cat /proc/self/status 2>&1 | grep NoNewPrivs; id -u");
    spec.user = "user".into();
    let expected = if tier == Tier::MountNs { "NoNewPrivs:\t1\n1000\n" } else { "1000\n" };
    assert_eq!(sb.run(&ex, &spec).ok(), expected);
    // The host's network: its loopback services are reachable.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"host-service").unwrap();
    });
    let mut spec = sh(&format!("echo hello | nc -w 2 127.0.0.1 {port}"));
    spec.network = Network::Default;
    assert_eq!(sb.run(&ex, &spec).ok(), "host-service");
    server.join().unwrap();
    spec.network = Network::None;
    let err = sb.run(&chroot(), &spec).status.unwrap_err();
    assert!(matches!(err, ExecError::ChrootRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("network none"), "{err}");
    assert_no_leaks(&sb, None);
}

/// Cancelling a run, or a payload ending, kills every process it started, a daemon that left
/// its session included.
fn kills_the_tree() {
    let sb = Sandbox::new();
    // A shell's background job reads /dev/null: a plain file where no device node can be made
    // (the no_ns tier's user namespace; a pod with CAP_MKNOD gets the node, `create_devices`).
    std::fs::create_dir(sb.rootfs.join("dev")).unwrap();
    std::fs::write(sb.rootfs.join("dev/null"), "").unwrap();
    let ex = chroot_for_contract();
    let running = |marker: &str| procs_with(marker).iter().any(|p| p.contains(&format!(": {marker}")));
    let ran = sb.sh(&ex, "setsid sleep 876811 >/tmp/daemon.log 2>&1 <&- & (sleep 876812 &); echo started");
    assert_eq!(ran.ok(), "started\n");
    assert!(procs_with("sleep 87681").is_empty(), "left behind: {:?}", procs_with("sleep 87681"));
    let cancel = CancelToken::new();
    let script = sh("setsid sleep 876813 >/tmp/daemon.log 2>&1 <&- & sleep 876814");
    let ran = std::thread::scope(|s| {
        let run = s.spawn(|| sb.run_cancel(&ex, &script, &cancel));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !running("sleep 876813") || !running("sleep 876814") {
            assert!(std::time::Instant::now() < deadline, "the step never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        cancel.cancel();
        run.join().unwrap()
    });
    assert!(matches!(ran.status, Err(ExecError::Cancelled)), "{:?}", ran.status);
    assert!(procs_with("sleep 87681").is_empty(), "left behind: {:?}", procs_with("sleep 87681"));
}

#[test]
fn mount_ns_confines() {
    with_mount_ns("it::exec::chroot::mount_ns_confines", || confines(Tier::MountNs));
}

#[test]
fn no_ns_confines() {
    without_namespaces("it::exec::chroot::no_ns_confines", || confines(Tier::NoNs));
}

#[test]
fn mount_ns_kills_the_tree() {
    with_mount_ns("it::exec::chroot::mount_ns_kills_the_tree", kills_the_tree);
}

#[test]
fn no_ns_kills_the_tree() {
    without_namespaces("it::exec::chroot::no_ns_kills_the_tree", kills_the_tree);
}

/// Without a mount namespace nothing can be mounted: a step with mounts or extra hosts is
/// refused before anything runs, and nothing is made in the rootfs.
#[test]
fn no_ns_refuses_mounts() {
    without_namespaces("it::exec::chroot::no_ns_refuses_mounts", || {
        let sb = Sandbox::new();
        let before: Vec<_> = std::fs::read_dir(&sb.rootfs).unwrap().flatten().map(|e| e.file_name()).collect();
        let mut spec = sh("true");
        spec.network = Network::Host;
        spec.mounts = vec![Mount { target: "/scratch".into(), source: MountSource::Tmpfs { size: None } }];
        let err = sb.run(&chroot(), &spec).status.unwrap_err();
        assert!(matches!(err, ExecError::ChrootRefused { .. }), "{err:?}");
        assert!(err.to_string().contains("/scratch") && err.to_string().contains("mount namespace"), "{err}");
        let mut spec = sh("true");
        spec.network = Network::Host;
        spec.extra_hosts = vec![("registry.test".into(), "10.1.2.3".parse().unwrap())];
        let err = sb.run(&chroot(), &spec).status.unwrap_err();
        assert!(err.to_string().contains("registry.test"), "{err}");
        let after: Vec<_> = std::fs::read_dir(&sb.rootfs).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(before, after);
    });
}

/// `slipway build --isolation chroot` end to end where no namespace may be made: a base pulled
/// from a local registry, a RUN step that writes a file as root and one as a user, the image run
/// again under chroot isolation.
#[test]
fn no_ns_build_end_to_end() {
    build_end_to_end(Tier::NoNs, "exec::chroot::no_ns_build_end_to_end");
}

/// The same with a mount namespace to spare (an overlay snapshotter, a mount table per step).
#[test]
fn mount_ns_build_end_to_end() {
    build_end_to_end(Tier::MountNs, "exec::chroot::mount_ns_build_end_to_end");
}

fn build_end_to_end(tier: Tier, test: &str) {
    const ROOT_ENV: &str = "SLIPWAY_TEST_CHROOT_BUILD_ROOT";
    if let Ok(root) = std::env::var(ROOT_ENV) {
        if std::env::var(RESTRICTED_ENV).is_ok() {
            assert_restricted(tier);
            build_in(std::path::Path::new(&root));
        }
        return;
    }
    let env = crate::support::build::BuildEnv::served();
    env.dockerfile("FROM bb\nRUN echo built > /built && id -u >> /built\nUSER user\nRUN id -u > /tmp/as-user\n");
    let root = env.tc.path().display().to_string();
    let out = run_restricted(tier, test, &[(ROOT_ENV, &root)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
}

fn build_in(dir: &std::path::Path) {
    let slipway = |args: &[&str]| {
        let out = Command::new(crate::support::slipway_bin())
            .arg("--root")
            .arg(dir.join("root"))
            .args(args)
            .env("SLIPWAY_ISOLATION", "chroot")
            .env("SLIPWAY_LOG", "warn")
            .env_remove("SLIPWAY_RUNTIME")
            .output()
            .unwrap();
        assert!(out.status.success(), "slipway {args:?}: {}", crate::support::describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(slipway(&["info"]).contains("\nisolation:       chroot\n"));
    let ctx = dir.join("ctx");
    slipway(&["build", "--progress", "plain", "-t", "img:1", ctx.to_str().unwrap()]);
    assert_eq!(slipway(&["run", "img:1", "cat", "/built", "/tmp/as-user"]), "built\n0\n1000\n");
}

/// `--isolation` (and `SLIPWAY_ISOLATION`) is shown by `info`; chroot with `--runtime` is a
/// usage error before anything runs.
#[test]
fn isolation_flag_in_info_and_not_with_a_runtime() {
    let ctx = crate::support::TestContext::new();
    let out = ctx.ok(&["info"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nexecutor:        embedded\nisolation:       default\n"));
    let out = ctx.cmd().args(["info", "--format", "json"]).env("SLIPWAY_ISOLATION", "chroot").output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["isolation"], "chroot", "{info}");
    let ctx = crate::support::TestContext::new();
    for args in [
        &["--isolation", "chroot", "--runtime", "runc", "info"][..],
        &["--runtime=embedded", "--isolation=chroot", "images"],
    ] {
        let out = ctx.run(args);
        assert_eq!(out.status.code(), Some(2), "{}", crate::support::describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--isolation chroot cannot be used with --runtime"), "{stderr}");
    }
    assert!(!ctx.root().exists(), "a usage error touched the store");
    let help = String::from_utf8_lossy(&ctx.ok(&["--help"]).stdout).into_owned();
    assert!(help.contains("--isolation <MODE>") && help.contains("weaker isolation"), "{help}");
}
