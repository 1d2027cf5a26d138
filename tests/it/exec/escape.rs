//! Catalogue D (reliability.md §4.D): sandbox escape attempts, each followed by the canary
//! and mount-table checks. D5 (cache mounts) waits for `RUN --mount`.

use super::*;

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// D1: a working directory reached through a leaked descriptor (CVE-2024-21626).
#[test]
fn d1_workdir_through_proc_self_fd() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ex = embedded();
    for n in 3..=20 {
        let mut spec = sh("ls ../../../; cat ../../../etc/hostname 2>&1; pwd");
        spec.cwd = format!("/proc/self/fd/{n}");
        let ran = sb.run(&ex, &spec);
        match &ran.status {
            Err(ExecError::Workdir { .. }) => {}
            Ok(_) => {
                let out = ran.out();
                assert!(!out.contains("canary") && !out.contains("rootfs"), "fd {n}: host visible:\n{out}");
            }
            Err(other) => panic!("fd {n}: unexpected {other:?}"),
        }
    }
    for cwd in ["/proc/1/cwd", "/proc/1/root", "/proc/self/root/../../.."] {
        let mut spec = sh("ls; pwd");
        spec.cwd = cwd.into();
        let ran = sb.run(&ex, &spec);
        if let Ok(status) = ran.status {
            assert!(!ran.out().contains("canary"), "{cwd}: {status:?} host visible:\n{}", ran.out());
        }
    }
    canary.check(&sb);
}

/// D2: only stdio is open in the payload; init's descriptors are out of reach.
#[test]
fn d2_no_leaked_descriptors() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ran =
        sb.sh(&embedded(), "ls -l /proc/self/fd /proc/1/fd; readlink /proc/self/fd/* /proc/$$/fd/*; ls /proc/1/root");
    let (out, err) = (ran.out(), ran.err());
    for needle in ["socket:", "anon_inode", "slipway", "/work", "/tmp/", sb.ctx.path().to_str().unwrap()] {
        assert!(!out.contains(needle), "{needle:?} visible through a descriptor:\n{out}");
    }
    assert!(err.contains("/proc/1/fd") && err.contains("ermission denied"), "init's fds readable:\n{out}\n{err}");
    canary.check(&sb);
}

/// D3: `#!/proc/self/exe` and writes through `/proc/<pid>/exe` never reach the slipway
/// binary (CVE-2019-5736). Each run has a fresh pid namespace whose only slipway processes
/// are the non-dumpable init and the payload before its exec, so the attack needs a
/// second process inside that cannot exist; the test checks the sealing underneath: the
/// helper runs from a read-only bind of its binary, so even host root cannot reopen it
/// for writing through `/proc/<pid>/exe` once it has exited.
#[test]
fn d3_host_binary_not_writable() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let bin = Path::new(env!("CARGO_BIN_EXE_slipway"));
    let before = sha256(bin);
    let ex = embedded();
    let ran = sb.sh(&ex, "echo x >> /proc/1/exe && echo WROTE; cat /proc/1/exe > /dev/null && echo READ");
    assert!(!ran.out().contains("WROTE") && !ran.out().contains("READ"), "{}", ran.out());
    // Grab the exe of a running sandbox's init, end the run, then try to reopen it for
    // writing. A private copy of the binary, so that no other test's helper keeps it busy.
    let private = sb.ctx.path().join("slipway-copy");
    std::fs::copy(bin, &private).unwrap();
    let private_ex = slipway::exec::EmbeddedExecutor::new(&private);
    let cancel = CancelToken::new();
    let held = std::thread::scope(|s| {
        let run = s.spawn(|| sb.run_cancel(&private_ex, &sh("sleep 876500"), &cancel));
        let mut held = None;
        for _ in 0..500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let pids = procs_with(private.to_str().unwrap());
            if let Some(pid) = pids.first().and_then(|p| p.split(':').next())
                && let Ok(fd) = rustix::fs::open(
                    format!("/proc/{pid}/exe"),
                    rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
            {
                held = Some(fd);
                break;
            }
        }
        cancel.cancel();
        assert!(matches!(run.join().unwrap().status, Err(ExecError::Cancelled)));
        held.expect("no sandbox helper seen")
    });
    let reopen = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held)));
    let err = reopen.expect_err("the helper binary was reopened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // The image's /bin/sh becomes `#!/proc/self/exe`: a later step runs slipway's binary
    // (which rejects the arguments), read-only.
    let ran = sb.sh(&ex, "rm /bin/sh; printf '#!/proc/self/exe\\n' > /bin/sh; chmod +x /bin/sh");
    ran.ok();
    let ran = sb.sh(&ex, "echo hi");
    assert!(!ran.status.unwrap().success());
    assert_eq!(sha256(bin), before, "the slipway binary changed");
    canary.check(&sb);
}

/// D4: mount-point stubs replaced by symlinks to host paths; cleanup never follows them.
#[test]
fn d4_stub_cleanup_does_not_follow_symlinks() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ex = embedded();
    // Empty host files named like the stubs: a cleanup that followed /etc would delete them.
    let host_etc = sb.ctx.path().join("host-etc");
    std::fs::create_dir(&host_etc).unwrap();
    std::fs::write(host_etc.join("hosts"), "").unwrap();
    std::fs::write(host_etc.join("resolv.conf"), "").unwrap();
    std::fs::remove_file(sb.rootfs.join("etc/hosts")).ok();
    let script = format!("mv /etc /etc.old && ln -s {} /etc && echo swapped", host_etc.display());
    let ran = sb.run(&ex, &sh(&script));
    assert_eq!(ran.ok(), "swapped\n");
    assert!(host_etc.join("hosts").exists() && host_etc.join("resolv.conf").exists(), "cleanup followed /etc");
    // An image whose /etc/hosts is an absolute symlink to a host file: resolved inside
    // the rootfs (the stub is created there and removed again); the host file is untouched.
    std::fs::remove_file(sb.rootfs.join("etc")).unwrap();
    std::fs::rename(sb.rootfs.join("etc.old"), sb.rootfs.join("etc")).unwrap();
    std::fs::remove_file(sb.rootfs.join("etc/hosts")).ok();
    std::os::unix::fs::symlink(canary.dir.join("secret"), sb.rootfs.join("etc/hosts")).unwrap();
    let out = sb.sh(&ex, "cat /etc/hosts").ok();
    assert!(out.contains("localhost") && !out.contains("host secret"), "{out}");
    let inside = sb.rootfs.join(canary.dir.strip_prefix("/").unwrap());
    assert!(!inside.join("secret").exists(), "the stub outlived the run");
    canary.check(&sb);
}

/// D6: procfs and sysfs hardening, no mount or namespace games, inert device nodes.
#[test]
fn d6_proc_sys_and_privileged_operations() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ex = embedded();
    let probes = [
        ("kcore", "head -c 1 /proc/kcore | grep -q ."),
        ("sysctl", "echo 1 > /proc/sys/kernel/panic"),
        ("sysrq", "echo h > /proc/sysrq-trigger"),
        ("mount proc", "mkdir -p /mnt && mount -t proc p /mnt"),
        ("mount tmpfs", "mount -t tmpfs t /tmp"),
        ("unshare", "unshare -m true"),
        ("nsenter", "nsenter -t 1 -m true"),
        ("sysfs", "echo 1 > /sys/kernel/profiling"),
        ("timer_list", "grep -q . /proc/timer_list"),
    ];
    for (name, probe) in probes {
        let ran = sb.sh(&ex, probe);
        assert!(!ran.status.as_ref().unwrap().success(), "{name}: {probe:?} succeeded\n{}", ran.out());
    }
    let disk = std::fs::metadata("/").map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap();
    let (major, minor) = (libc::major(disk), libc::minor(disk));
    let ran =
        sb.sh(&ex, &format!("mknod /disk b {major} {minor} && echo made; head -c 1 /disk > /dev/null && echo READ"));
    assert!(ran.out().contains("made"), "CAP_MKNOD is in Docker's set: {}", ran.err());
    assert!(!ran.out().contains("READ"), "a host disk is readable through mknod:\n{}", ran.out());
    let ran = sb.sh(&ex, "grep -E '^CapInh' /proc/self/status");
    assert_eq!(ran.ok(), "CapInh:\t0000000000000000\n");
    // Mount points that are symlinks are refused, never followed.
    std::fs::remove_dir_all(sb.rootfs.join("proc")).ok();
    std::os::unix::fs::symlink("/etc", sb.rootfs.join("proc")).unwrap();
    assert!(matches!(sb.sh(&ex, "true").status, Err(ExecError::Setup { .. })));
    std::fs::remove_file(sb.rootfs.join("proc")).unwrap();
    // The sandbox removes the mount points it created when the run ends.
    std::fs::remove_dir(sb.rootfs.join("dev")).ok();
    std::os::unix::fs::symlink(canary.dir.join("sub"), sb.rootfs.join("dev")).unwrap();
    assert!(matches!(sb.sh(&ex, "true").status, Err(ExecError::Setup { .. })));
    std::fs::remove_file(sb.rootfs.join("dev")).unwrap();
    assert!(sb.sh(&ex, "true").status.unwrap().success());
    canary.check(&sb);
}

/// D7: the host's loopback is out of reach with `Network::None` and `Network::Default`, and a
/// host outside the machine is reached through slirp4netns; the same check runs for every
/// executor in the contract suite (`contract::network_reach`).
#[test]
fn d7_network_modes() {
    super::contract::network_reach(&embedded());
}

/// D8: background and detached processes end with the step.
#[test]
fn d8_nothing_outlives_the_step() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ex = embedded();
    let started = std::time::Instant::now();
    for script in ["(sleep 876541 &); exit 0", "setsid sleep 876542 & exit 0", "nohup sleep 876543 > /dev/null 2>&1 &"]
    {
        assert!(sb.sh(&ex, script).status.unwrap().success(), "{script}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_no_leaks(&sb, Some("sleep 87654"));
    canary.check(&sb);
}

/// D9: hostile user databases: never read from the host, never followed out of the
/// rootfs, never blocking, never loading rootfs code.
#[test]
fn d9_hostile_passwd_and_group() {
    let sb = Sandbox::new();
    let canary = Canary::plant(&sb);
    let ex = embedded();
    let lib = sb.rootfs.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("libnss_files.so.2"), b"not an ELF: loading this would crash").unwrap();
    let with_user = |user: &str| {
        let mut spec = sh("id -u");
        spec.user = user.into();
        sb.run(&ex, &spec)
    };
    assert_eq!(with_user("user").ok(), "1000\n");
    // /etc/passwd pointing at a host file: resolved inside the rootfs, where it dangles.
    // (Not in the canary's directory: writing there changes its mtime, which the check reads.)
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("passwd"), "hostonly:x:4444:4444::/:/bin/sh\n").unwrap();
    let etc = sb.rootfs.join("etc");
    std::fs::rename(etc.join("passwd"), etc.join("passwd.real")).unwrap();
    std::os::unix::fs::symlink(host.path().join("passwd"), etc.join("passwd")).unwrap();
    assert!(matches!(with_user("hostonly").status, Err(ExecError::UnknownUser { .. })));
    // /etc/passwd -> /dev/zero and /etc/group a FIFO: prompt, clear errors.
    std::fs::remove_file(etc.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", etc.join("passwd")).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(with_user("user").status, Err(ExecError::UserDb { .. })));
    std::fs::remove_file(etc.join("passwd")).unwrap();
    std::fs::rename(etc.join("passwd.real"), etc.join("passwd")).unwrap();
    std::fs::remove_file(etc.join("group")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, etc.join("group"), rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0)
        .unwrap();
    assert!(matches!(with_user("user").status, Err(ExecError::UserDb { .. })));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "a hostile user database blocked");
    canary.check(&sb);
}
