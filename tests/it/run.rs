//! `slipway run`: a busybox image imported from a directory (its config has no CMD, so every
//! run names its command), run in throwaway snapshots that leave the store clean.

use std::os::unix::process::CommandExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use slipway::snapshot::{self, Info, Kind};

use crate::support::rootfs::busybox_rootfs_all_applets;
use crate::support::{TestContext, describe};

/// A context whose store holds the busybox image `bb`.
fn with_image() -> TestContext {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    busybox_rootfs_all_applets(&rootfs);
    ctx.ok(&["import", rootfs.to_str().unwrap(), "bb"]);
    ctx
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshots(ctx: &TestContext) -> Vec<Info> {
    snapshot::open(&ctx.root(), None).unwrap().list().unwrap()
}

/// No mount under the test directory, no active snapshot or view, `fsck --strict` happy.
#[track_caller]
fn assert_clean(ctx: &TestContext) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = ctx.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&dir), "a mount was left behind:\n{mountinfo}");
    let left: Vec<Info> = snapshots(ctx).into_iter().filter(|i| i.kind != Kind::Committed).collect();
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    ctx.ok(&["fsck", "--strict"]);
}

#[test]
fn run_echo_prints_and_exits_zero() {
    let ctx = with_image();
    let out = ctx.run(&["run", "bb", "echo", "hi"]);
    assert_eq!(code(&out), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert_clean(&ctx);
}

#[test]
fn run_exit_status_is_the_commands() {
    let ctx = with_image();
    let out = ctx.run(&["run", "bb", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&out), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"), "{}", describe(&out));
    let out = ctx.run(&["run", "bb", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(code(&out), Some(128 + 9), "{}", describe(&out));
    assert_clean(&ctx);
}

#[test]
fn run_env_user_and_workdir() {
    let ctx = with_image();
    let script = r#"echo "$FOO|$FROM_CALLER|${NOT_IN_CALLER-unset}"; id -u; pwd"#;
    let out = ctx
        .cmd()
        .env("FROM_CALLER", "caller value")
        .env_remove("NOT_IN_CALLER")
        .args(["run", "-e", "FOO=bar baz", "-e", "FROM_CALLER", "-e", "NOT_IN_CALLER", "-u", "1000", "-w", "/tmp"])
        .args(["bb", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "bar baz|caller value|unset\n1000\n/tmp\n");
    // Defaults: root in /.
    let out = ctx.ok(&["run", "bb", "sh", "-c", "id -u; pwd"]);
    assert_eq!(stdout(&out), "0\n/\n");
    assert_clean(&ctx);
}

#[test]
fn run_missing_or_unexecutable_command() {
    let ctx = with_image();
    let out = ctx.run(&["run", "bb", "no-such-command"]);
    assert_eq!(code(&out), Some(127), "{}", describe(&out));
    let out = ctx.run(&["run", "bb", "/etc/passwd"]);
    assert_eq!(code(&out), Some(126), "{}", describe(&out));
    assert_clean(&ctx);
}

#[test]
fn run_entrypoint_replaces_and_takes_the_command_as_arguments() {
    let ctx = with_image();
    let out = ctx.ok(&["run", "--entrypoint", "/bin/echo", "bb", "a", "-n", "b"]);
    assert_eq!(stdout(&out), "a -n b\n");
    let out = ctx.ok(&["run", "--entrypoint", "", "bb", "echo", "plain"]);
    assert_eq!(stdout(&out), "plain\n");
    assert_clean(&ctx);
}

#[test]
fn run_failures_of_slipway_exit_125() {
    let ctx = with_image();
    let out = ctx.run(&["run", "no-such-image", "true"]);
    assert_eq!(code(&out), Some(125), "{}", describe(&out));
    // The imported config has no CMD: a command must be given.
    let out = ctx.run(&["run", "bb"]);
    assert_eq!(code(&out), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command"), "{}", describe(&out));
    let out = ctx.run(&["run", "-w", "relative", "bb", "true"]);
    assert_eq!(code(&out), Some(125), "{}", describe(&out));
    let out = ctx.run(&["run", "--memory", "12x", "bb", "true"]);
    assert_eq!(code(&out), Some(2), "{}", describe(&out));
    assert_clean(&ctx);
}

#[test]
fn run_reuses_committed_layer_snapshots() {
    let ctx = with_image();
    ctx.ok(&["run", "bb", "sh", "-c", "echo changed > /etc/motd"]);
    let first = snapshots(&ctx);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].key.starts_with("layer:sha256:") && first[0].kind == Kind::Committed, "{first:?}");
    // The second run starts from the same, unchanged layer snapshot: the first run's change is gone.
    let out = ctx.ok(&["run", "bb", "sh", "-c", "cat /etc/motd 2>/dev/null || echo fresh"]);
    assert_eq!(stdout(&out), "fresh\n");
    assert_eq!(snapshots(&ctx), first);
    assert_clean(&ctx);
}

#[test]
fn run_with_the_copy_snapshotter() {
    let ctx = with_image();
    let out = ctx.ok(&["--snapshotter", "copy", "run", "bb", "echo", "copied"]);
    assert_eq!(stdout(&out), "copied\n");
    let sn = snapshot::open(&ctx.root(), Some(snapshot::Backend::Copy)).unwrap();
    let left: Vec<Info> = sn.list().unwrap().into_iter().filter(|i| i.kind != Kind::Committed).collect();
    assert!(left.is_empty(), "{left:?}");
    assert_clean(&ctx);
}

#[test]
fn run_interrupted_tears_down_and_cleans_up() {
    let ctx = with_image();
    for (runtime, marker) in [("embedded", "876801"), ("runc", "876802"), ("crun", "876803")] {
        interrupted(&ctx, runtime, marker);
    }
}

/// SIGINT to slipway alone, then to its whole process group, with the executor `runtime`.
fn interrupted(ctx: &TestContext, runtime: &str, marker: &str) {
    let child = ctx
        .cmd()
        .env("SLIPWAY_RUNTIME", runtime)
        .args(["run", "bb", "sleep", marker])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !snapshots(ctx).iter().any(|i| i.kind == Kind::Active) {
        assert!(Instant::now() < deadline, "the run never prepared its snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the sandbox start, then interrupt slipway alone (not its process group).
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::INT).unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "interrupt took {:?}", started.elapsed());
    assert_eq!(code(&out), Some(130), "{runtime}: {}", describe(&out));
    assert_clean(ctx);
    assert!(crate::support::sandbox::procs_with(&format!("sleep {marker}")).is_empty(), "{runtime}: left behind");

    // Ctrl-C on a terminal: the whole process group (slipway and its sandbox helper) gets SIGINT.
    let child = ctx
        .cmd()
        .env("SLIPWAY_RUNTIME", runtime)
        .args(["run", "bb", "sleep", marker])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !snapshots(ctx).iter().any(|i| i.kind == Kind::Active) {
        assert!(Instant::now() < deadline, "the run never prepared its snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let group = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), Some(130), "{runtime}: {}", describe(&out));
    assert_clean(ctx);
    assert!(crate::support::sandbox::procs_with(&format!("sleep {marker}")).is_empty(), "{runtime}: left behind");
}

#[test]
fn run_limits_apply() {
    let ctx = with_image();
    let out = ctx.run(&["run", "--memory", "32m", "--cpus", "0.5", "bb", "sh", "-c", "head -c 400m /dev/zero | tail"]);
    assert_eq!(code(&out), Some(128 + 9), "400 MiB under --memory 32m is OOM-killed: {}", describe(&out));
    let out = ctx.run(&["run", "--pids-limit", "20", "bb", "sh", "-c", "for i in $(seq 100); do sleep 5 & done; wait"]);
    assert_ne!(code(&out), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fork"), "{}", describe(&out));
    assert_clean(&ctx);
}

#[test]
fn run_network_default_none_and_host() {
    let ctx = with_image();
    let names = |text: &str| -> Vec<String> {
        let mut names: Vec<String> =
            text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect();
        names.sort();
        names
    };
    let out = ctx.ok(&["run", "bb", "cat", "/proc/net/dev", "/etc/resolv.conf"]);
    assert_eq!(names(&stdout(&out)), ["lo", "nameserver 10.0.2.3", "tap0"], "default is slirp4netns");
    let out = ctx.ok(&["run", "--network", "none", "bb", "cat", "/proc/net/dev"]);
    assert_eq!(names(&stdout(&out)), ["lo"]);
    let out = ctx.cmd().args(["run", "bb", "true"]).env("PATH", ctx.path()).output().unwrap();
    assert_eq!(code(&out), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slirp4netns") && err.contains("install") && err.contains("network none or host"), "{err}");
    let out = ctx.ok(&["run", "--network", "host", "bb", "cat", "/proc/net/dev"]);
    assert_eq!(names(&stdout(&out)), names(&std::fs::read_to_string("/proc/self/net/dev").unwrap()));
    assert_clean(&ctx);
}

/// A docker archive of the two-layer image `multi:1` (busybox, then a layer adding `/etc/motd`
/// and deleting `/home/user/notes.txt`) whose config has `Env`, `Cmd`, `User`, `WorkingDir`.
fn two_layer_archive(ctx: &TestContext) -> std::path::PathBuf {
    let rootfs = ctx.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    busybox_rootfs_all_applets(&rootfs);
    let mut base = tar::Builder::new(Vec::new());
    base.follow_symlinks(false);
    base.append_dir_all(".", &rootfs).unwrap();
    let base = base.into_inner().unwrap();
    let mut top = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        top.append_data(&mut h, name, data).unwrap();
    };
    add("etc/motd", b"layer two\n");
    add("home/user/.wh.notes.txt", b"");
    let top = top.into_inner().unwrap();
    let diff_id = |b: &[u8]| slipway::oci::Digest::of(b).to_string();
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["FROM_IMAGE=image value", "PATH=/bin"],
            "Cmd": ["sh", "-c", "echo \"$FROM_IMAGE\"; id -u; pwd; cat /etc/motd; ls /home/user"],
            "User": "1000",
            "WorkingDir": "/home/user",
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id(&base), diff_id(&top)] },
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", slipway::oci::Digest::of(&config).hex());
    let manifest =
        serde_json::json!([{ "Config": config_name, "RepoTags": ["multi:1"], "Layers": ["base.tar", "top.tar"] }]);
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
        (config_name.as_str(), config),
        ("base.tar", base),
        ("top.tar", top),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, &data[..]).unwrap();
    }
    let path = ctx.path().join("multi.tar");
    std::fs::write(&path, archive.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn run_two_layer_image_uses_its_config_and_a_snapshot_chain() {
    let ctx = TestContext::new();
    let archive = two_layer_archive(&ctx);
    ctx.ok(&["load", "-i", archive.to_str().unwrap()]);
    let out = ctx.ok(&["run", "multi:1"]);
    assert_eq!(stdout(&out), "image value\n1000\n/home/user\nlayer two\n");
    let layers = snapshots(&ctx);
    assert_eq!(layers.len(), 2, "{layers:?}");
    let base = layers.iter().find(|i| i.parent.is_none()).expect("a base layer snapshot");
    let top = layers.iter().find(|i| i.parent.as_deref() == Some(base.key.as_str())).expect("a layer on top of it");
    assert!(top.key.starts_with("layer:sha256:") && top.kind == Kind::Committed, "{layers:?}");
    // -e overrides the image's Env; a command replaces Cmd but keeps User and WorkingDir.
    let out = ctx.ok(&["run", "-e", "FROM_IMAGE=cli", "multi:1", "sh", "-c", "echo $FROM_IMAGE $PATH; id -u; pwd"]);
    assert_eq!(stdout(&out), "cli /bin\n1000\n/home/user\n");
    assert_eq!(snapshots(&ctx), layers, "the second run reuses both layer snapshots");
    assert_clean(&ctx);
}

/// `--runtime` (and `SLIPWAY_RUNTIME`) picks the executor; `info` names it; an unknown runtime
/// fails with exit 125 and says how to install it.
#[test]
fn run_with_an_oci_runtime() {
    let ctx = with_image();
    for runtime in ["runc", "crun"] {
        let out = ctx.run(&[
            "--runtime",
            runtime,
            "run",
            "-w",
            "/made",
            "-u",
            "user",
            "bb",
            "sh",
            "-c",
            "pwd; id -u; exit 4",
        ]);
        assert_eq!(code(&out), Some(4), "{runtime}: {}", describe(&out));
        assert_eq!(stdout(&out), "/made\n1000\n", "{runtime}");
        let out =
            ctx.cmd().env("SLIPWAY_RUNTIME", runtime).args(["run", "bb", "cat", "/etc/resolv.conf"]).output().unwrap();
        assert_eq!(stdout(&out), "nameserver 10.0.2.3\n", "{runtime}: {}", describe(&out));
        let info = ctx.ok(&["--runtime", runtime, "info", "--format", "json"]);
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert!(info["executor"].as_str().unwrap().starts_with("oci-runtime /"), "{info}");
        assert!(info["executor"].as_str().unwrap().ends_with(runtime), "{info}");
    }
    let info = ctx.ok(&["info", "--format", "json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&info.stdout).unwrap()["executor"], "embedded");
    let out = ctx.run(&["--runtime", "no-such-runtime", "run", "bb", "true"]);
    assert_eq!(code(&out), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("install"), "{}", describe(&out));
    assert_clean(&ctx);
}

/// `-i` passes stdin through (without it the command reads nothing); `-v` binds host paths,
/// read-only with `:ro`; malformed volumes are usage errors of the run (125).
#[test]
fn run_interactive_and_volumes() {
    use std::io::Write;
    let ctx = with_image();
    let run_with_stdin = |args: &[&str]| {
        let mut child = ctx
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"typed in\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run_with_stdin(&["run", "-i", "bb", "cat"]);
    assert_eq!(stdout(&out), "typed in\n", "{}", describe(&out));
    let out = run_with_stdin(&["run", "bb", "cat"]);
    assert_eq!(stdout(&out), "", "{}", describe(&out));

    let host = ctx.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "host data\n").unwrap();
    let rw = format!("{}:/mnt/vol", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let out = ctx.run(&[
        "run",
        "-v",
        &rw,
        "-v",
        &ro,
        "bb",
        "sh",
        "-c",
        "cat /ro/in; echo new > /mnt/vol/out; touch /ro/x || echo denied",
    ]);
    assert_eq!(code(&out), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "host data\ndenied\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "new\n");
    for bad in ["relative:/x", "/a/../b:/x", "/tmp:/x:rx", "/no/such/dir:/x"] {
        let out = ctx.run(&["run", "-v", bad, "bb", "true"]);
        assert_eq!(code(&out), Some(125), "{bad}: {}", describe(&out));
    }
    assert_clean(&ctx);
}
