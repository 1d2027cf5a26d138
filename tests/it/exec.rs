//! The `Executor` contract suite, run over the embedded executor, runc and crun on a busybox
//! rootfs; the escape catalogue (`escape`) and the rootless subset (`rootless`) in submodules.

use std::path::Path;

use slipway::exec::{CancelToken, ExecError, ExecSpec, Executor, ExitStatus};

use crate::support::sandbox::{Canary, Sandbox, TestHost, assert_no_leaks, crun, embedded, procs_with, runc, sh};

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
        // Nothing of the host's environment leaks in; PATH and HOME are defaulted.
        let out = sb.run(ex, &ExecSpec::new(["env"])).ok();
        let mut keys: Vec<&str> = out.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["HOME", "PATH"], "{out}");
        assert!(out.contains(&format!("PATH={}\n", slipway::exec::DEFAULT_PATH)), "{out}");
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
        let mut spec = sh("pwd");
        spec.cwd = "/etc/passwd".into();
        assert!(matches!(sb.run(ex, &spec).status, Err(ExecError::Workdir { .. })));
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
        // A failing sink fails the run once the process is done, without blocking it.
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("sink full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut stderr = Vec::new();
        let mut broken = Broken;
        let output = slipway::exec::Output::new(&mut broken, &mut stderr);
        let script = sh("yes | head -c 1048576; echo done >&2");
        let status = ex.run(&script, &sb.rootfs, output, &CancelToken::new());
        assert!(matches!(status, Err(ExecError::Output { .. })), "{status:?}");
        assert_eq!(stderr, b"done\n");
    }

    pub fn stdin(ex: &dyn Executor) {
        let sb = Sandbox::new();
        assert_eq!(sb.sh(ex, "cat; echo end").ok(), "end\n", "stdin is empty by default");
        let input: Vec<u8> = (0..300_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let expected = format!("{}\n", input.len());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let output =
            slipway::exec::Output::new(&mut stdout, &mut stderr).with_stdin(Box::new(std::io::Cursor::new(input)));
        let status = ex.run(&sh("wc -c"), &sb.rootfs, output, &CancelToken::new()).unwrap();
        assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&stderr));
        assert_eq!(String::from_utf8_lossy(&stdout).trim_start(), expected);
        // A source that never ends does not hold the run up once the process is done.
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (_keep, endless) = std::os::unix::net::UnixStream::pair().unwrap();
        let output = slipway::exec::Output::new(&mut stdout, &mut stderr).with_stdin(Box::new(endless));
        let started = std::time::Instant::now();
        let status = ex.run(&sh("head -c 0; echo done"), &sb.rootfs, output, &CancelToken::new()).unwrap();
        assert!(status.success() && stdout == b"done\n", "{status}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_no_leaks(&sb, None);
    }

    pub fn binds(ex: &dyn Executor) {
        use slipway::exec::Mount;
        let sb = Sandbox::new();
        let host = sb.ctx.path().join("host");
        std::fs::create_dir_all(host.join("rw")).unwrap();
        std::fs::create_dir_all(host.join("ro")).unwrap();
        std::fs::write(host.join("ro/in.txt"), "from the host\n").unwrap();
        std::fs::write(host.join("single"), "one file\n").unwrap();
        // A target through a symlink that leaves the rootfs on the host resolves inside it.
        std::os::unix::fs::symlink("/../../tmp", sb.rootfs.join("escape")).unwrap();
        let name = format!("slipway-bind-{}", sb.ctx.path().file_name().unwrap().to_string_lossy());
        let bind = |source: &Path, target: &str, readonly| Mount::host(source, target, readonly);
        let script = format!(
            "echo made > /data/new/out.txt && cat /ro/in.txt /etc/single.conf /escape/{name}/in.txt; \
             echo x > /ro/no 2>/dev/null || echo ro"
        );
        let mut spec = sh(&script);
        spec.mounts = vec![
            bind(&host.join("rw"), "/data/new", false),
            bind(&host.join("ro"), "/ro", true),
            bind(&host.join("single"), "/etc/single.conf", false),
            bind(&host.join("ro"), &format!("/escape/{name}"), true),
        ];
        let ran = sb.run(ex, &spec);
        assert_eq!(ran.ok(), "from the host\none file\nfrom the host\nro\n", "{}", ran.err());
        assert_eq!(std::fs::read_to_string(host.join("rw/out.txt")).unwrap(), "made\n");
        assert!(!host.join("ro/no").exists());
        assert!(!Path::new("/tmp").join(&name).exists(), "a mount point was made outside the rootfs");
        // Mount points the run made and left empty are gone (BuildKit's mount stubs).
        assert!(!sb.rootfs.join("tmp").join(&name).exists() && !sb.rootfs.join("data").exists());
        assert!(!sb.rootfs.join("etc/single.conf").exists());
        let mut spec = sh("true");
        spec.mounts = vec![bind(&host.join("rw"), "/a/../../b", false)];
        assert!(matches!(sb.run(ex, &spec).status, Err(ExecError::InvalidSpec { .. })));
        spec.mounts = vec![bind(Path::new("relative"), "/b", false)];
        assert!(matches!(sb.run(ex, &spec).status, Err(ExecError::InvalidSpec { .. })));
        // A source with a link on its way is never followed (a cache subdirectory swapped for a
        // link to a host directory after it was resolved, D5): the run fails.
        std::os::unix::fs::symlink(host.join("ro"), host.join("link")).unwrap();
        for source in [host.join("link"), host.join("link/in.txt")] {
            spec.mounts = vec![bind(&source, "/b", true)];
            let status = sb.run(ex, &spec).status;
            let refused = matches!(
                status,
                Err(ExecError::Setup { .. } | ExecError::Prepare { .. } | ExecError::RuntimeFailed { .. })
            );
            assert!(refused, "{} was followed: {status:?}", source.display());
        }
        // A directory over a file: the sandbox cannot be built, which is an error, not an exit status.
        spec.mounts = vec![bind(&host.join("rw"), "/etc/passwd", false)];
        let status = sb.run(ex, &spec).status;
        assert!(matches!(status, Err(ExecError::Setup { .. } | ExecError::RuntimeFailed { .. })), "{status:?}");
        assert_no_leaks(&sb, None);
    }

    /// Tmpfs and secret mounts, nested under a bind and ordered by depth; secrets in files and
    /// in the environment; nothing of them left in the rootfs or the host's mount table.
    pub fn mounts(ex: &dyn Executor) {
        use slipway::exec::{Mount, MountSource, Secret, SecretFile};
        let sb = Sandbox::new();
        let host = sb.ctx.path().join("host");
        std::fs::create_dir_all(host.join("tree")).unwrap();
        let secret = |bytes: &[u8], mode| SecretFile { data: Secret::new(bytes.to_vec()), mode, uid: 1000, gid: 0 };
        let script = "echo t > /scratch/x && cat /scratch/x && grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4; \
                      cat /run/secrets/tok; stat -c '%a %u %g' /run/secrets/tok; echo \"$TOKEN\"; \
                      ls /tree/inner; echo y > /run/secrets/tok 2>/dev/null || echo ro";
        let mut spec = sh(script);
        // Given deepest first: mounted parents first.
        spec.mounts = vec![
            Mount { target: "/tree/inner".into(), source: MountSource::Tmpfs { size: None } },
            Mount { target: "/run/secrets/tok".into(), source: MountSource::Secret(secret(b"s3cr3t\n", 0o440)) },
            Mount { target: "/scratch".into(), source: MountSource::Tmpfs { size: Some(1 << 20) } },
            Mount::host(host.join("tree"), "/tree", true),
        ];
        spec.secret_env = vec![("TOKEN".into(), Secret::new(b"envtoken".to_vec()))];
        let ran = sb.run(ex, &spec);
        let out = ran.ok();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("t"), "{out}{}", ran.err());
        let fs = lines.next().unwrap_or_default();
        assert!(fs.starts_with("tmpfs ") && fs.contains("size=1024k") && fs.contains("nosuid"), "{out}");
        assert_eq!(lines.collect::<Vec<_>>(), ["s3cr3t", "440 1000 0", "envtoken", "ro"], "{out}");
        assert!(
            !sb.rootfs.join("scratch").exists() && !sb.rootfs.join("run").exists() && !sb.rootfs.join("tree").exists()
        );
        assert!(std::fs::read_dir(host.join("tree")).unwrap().next().is_none(), "the read-only bind stayed empty");
        assert_no_leaks(&sb, None);
        // The secret's bytes are nowhere in the rootfs or the run directories.
        let rootfs_has = |needle: &[u8]| {
            walkdir::WalkDir::new(&sb.rootfs)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .any(|e| std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        };
        assert!(!rootfs_has(b"s3cr3t") && !rootfs_has(b"envtoken"));
    }

    /// D7 for every executor: the host's loopback is out of reach with `Network::None` and
    /// `Network::Default` (slirp4netns, host loopback disabled), reachable with `Host`;
    /// `Default` reaches a host outside the machine (a test host in its own network namespace)
    /// through slirp's NAT, and no slirp4netns outlives the run.
    pub fn network_reach(ex: &dyn Executor) {
        use slipway::exec::Network;
        use std::io::{Read, Write};
        let sb = Sandbox::new();
        let canary = Canary::plant(&sb);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            conn.write_all(b"host-secret").unwrap();
        });
        let with_network = |network: Network, script: &str| {
            let mut spec = sh(script);
            spec.network = network;
            sb.run(ex, &spec)
        };
        // (busybox wget crashes in static builds; nc is enough for a TCP connect.)
        for (network, target) in
            [(Network::None, "127.0.0.1"), (Network::Default, "127.0.0.1"), (Network::Default, "10.0.2.2")]
        {
            let ran = with_network(network, &format!("echo hello | nc -w 2 {target} {port}"));
            let reached = ran.status.as_ref().unwrap().success() || ran.out().contains("host-secret");
            assert!(!reached, "{network:?} reached the host's {target}:{port}: {}", ran.out());
        }
        let ran = with_network(Network::Host, &format!("echo hello | nc -w 2 127.0.0.1 {port}"));
        assert_eq!(ran.ok(), "host-secret");
        server.join().unwrap();

        let outside = TestHost::create();
        let (port, server) = outside.serve_once("outside-hello");
        let fetch = format!("echo hello | nc -w 5 {} {port}", outside.addr);
        let ran = with_network(Network::None, &fetch);
        assert!(!ran.status.as_ref().unwrap().success(), "network none reached the test host: {}", ran.out());
        let script = format!("cat /etc/resolv.conf; ls /sys/class/net | tr '\\n' ' '; echo; {fetch}");
        let out = with_network(Network::Default, &script).ok();
        assert_eq!(out, "nameserver 10.0.2.3\nlo tap0 \noutside-hello", "{out}");
        server.join().unwrap();
        canary.check(&sb);
    }

    pub fn pid_namespace(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let out = sb.sh(ex, "echo $PPID; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline | tr '\\0' ' '").ok();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1", "the payload is a child of the sandbox's init");
        let pids: Vec<u32> = lines[1].split_whitespace().map(|p| p.parse().expect(&out)).collect();
        assert!(pids[0] == 1 && pids.iter().all(|&p| p < 16), "foreign processes visible: {pids:?}");
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
        assert_ne!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(), "buildbox", "host renamed");
        // A dangling symlink (systemd images): its target is stubbed for the run, then removed.
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", sb.rootfs.join("etc/resolv.conf"))
            .unwrap();
        let out = sb.run(ex, &sh("ls -l /etc/resolv.conf; cat /etc/resolv.conf > /dev/null && echo readable")).ok();
        assert!(out.contains("readable"), "{out}");
        assert!(!sb.rootfs.join("run").exists(), "the stubbed symlink target outlived the run");
        assert!(std::fs::symlink_metadata(sb.rootfs.join("etc/resolv.conf")).unwrap().file_type().is_symlink());
    }

    pub fn network(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let out = sb
            .sh(ex, "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ip link show lo")
            .ok();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], &["lo", "lo"], "network none has only lo:\n{out}");
        assert!(out.contains("UP"), "lo is up:\n{out}");
        let mut spec = sh("ls /sys/class/net");
        spec.network = slipway::exec::Network::Host;
        let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        host.sort();
        let mut seen: Vec<String> = sb.run(ex, &spec).ok().lines().map(str::to_string).collect();
        seen.sort();
        assert_eq!(seen, host, "network host sees the host's interfaces");
        let mut spec = sh("ls /sys/class/net | tr '\\n' ' '; cat /etc/resolv.conf; ip route | grep default");
        spec.network = slipway::exec::Network::Default;
        let out = sb.run(ex, &spec).ok();
        assert!(out.starts_with("lo tap0 nameserver 10.0.2.3\ndefault via 10.0.2.2"), "network default:\n{out}");
        assert_no_leaks(&sb, None);
    }

    pub fn capabilities(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let status = |user: &str| {
            let mut spec = sh("grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
            spec.user = user.into();
            sb.run(ex, &spec).ok()
        };
        let root = status("");
        for line in [
            "CapInh:\t0000000000000000",
            "CapPrm:\t00000000a80425fb",
            "CapEff:\t00000000a80425fb",
            "CapBnd:\t00000000a80425fb",
            "CapAmb:\t0000000000000000",
            "NoNewPrivs:\t1",
        ] {
            assert!(root.lines().any(|l| l == line), "missing {line:?} in\n{root}");
        }
        let user = status("user");
        for line in [
            "CapInh:\t0000000000000000",
            "CapPrm:\t0000000000000000",
            "CapEff:\t0000000000000000",
            "CapBnd:\t00000000a80425fb",
            "NoNewPrivs:\t1",
        ] {
            assert!(user.lines().any(|l| l == line), "missing {line:?} in\n{user}");
        }
    }

    /// `Security::Insecure` (BuildKit's `security.insecure`): the executor's own capabilities
    /// in all five sets for any user, no no_new_privs, no masked or read-only path, a writable
    /// `/sys`, BuildKit's device nodes, every device allowed; the namespaces stay. The same
    /// script achieves nothing in the sandbox.
    pub fn insecure(ex: &dyn Executor) {
        use slipway::exec::Security;
        let sb = Sandbox::new();
        let run = |security, user: &str, script: &str| {
            let mut spec = sh(script);
            spec.security = security;
            spec.user = user.into();
            sb.run(ex, &spec)
        };
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let own_caps = own.lines().find_map(|l| l.strip_prefix("CapEff:\t")).unwrap();
        assert!(u64::from_str_radix(own_caps, 16).unwrap() & 1 << 21 != 0, "the tests run without CAP_SYS_ADMIN");
        for user in ["", "user"] {
            let out = run(Security::Insecure, user, "id -u; grep -E '^(Cap|NoNewPrivs)' /proc/self/status").ok();
            for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                let line = format!("{set}:\t{own_caps}");
                assert!(out.lines().any(|l| l == line), "user {user:?}: missing {line:?} in\n{out}");
            }
            assert!(out.lines().any(|l| l == "NoNewPrivs:\t0"), "{out}");
        }
        let privileged = "(echo insecure-box 2>/dev/null >/proc/sys/kernel/hostname) && echo proc-sys-writable; \
             [ -e /proc/keys ] && [ ! -c /proc/keys ] && echo unmasked; \
             mkdir -p /mnt/t && mount -t tmpfs none /mnt/t 2>/dev/null && echo mounted; \
             grep -q ' /sys sysfs rw' /proc/mounts && echo sys-writable; \
             test -c /dev/fuse && test -c /dev/net/tun && test -b /dev/loop0 && (: </dev/net/tun) && echo devices; \
             rm -f /tmp/lc; mknod /tmp/lc c 10 237 && (: 2>/dev/null </tmp/lc) && echo node-opens; rm -f /tmp/lc; \
             echo \"$(hostname) $PPID\"";
        let ran = run(Security::Insecure, "", privileged);
        assert_eq!(
            ran.ok(),
            "proc-sys-writable\nunmasked\nmounted\nsys-writable\ndevices\nnode-opens\ninsecure-box 1\n",
            "{}",
            ran.err()
        );
        assert_ne!(
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
            "insecure-box",
            "host renamed"
        );
        assert_eq!(run(Security::Sandbox, "", privileged).ok(), "slipway 1\n", "the sandbox allowed it");
        assert!(!sb.rootfs.join("tmp/lc").exists());
        assert_no_leaks(&sb, None);
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
        assert!(
            fds.iter().filter(|(n, _)| *n > 2).all(|(_, t)| t.starts_with("/proc/") && t.ends_with("/fd")),
            "{out}"
        );
    }

    pub fn limits(ex: &dyn Executor) {
        let sb = Sandbox::new();
        let own = format!("{}-", std::process::id());
        let mut spec = sh("i=0; while [ $i -lt 200 ]; do sleep 987630 & i=$((i+1)); done; wait");
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
        assert_no_leaks(&sb, Some("sleep 987630"));
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

    pub fn concurrent_runs(ex: &dyn Executor) {
        let sandboxes: Vec<Sandbox> = (0..4).map(|_| Sandbox::new()).collect();
        std::thread::scope(|s| {
            for (i, sb) in sandboxes.iter().enumerate() {
                s.spawn(move || {
                    for j in 0..5 {
                        let mut spec = sh("echo $(hostname) $PPID");
                        spec.hostname = format!("box{i}");
                        assert_eq!(sb.run(ex, &spec).ok(), format!("box{i} 1\n"), "run {j}");
                    }
                });
            }
        });
        for sb in &sandboxes {
            assert_no_leaks(sb, None);
        }
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
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "cancel took {:?}", started.elapsed());
        assert_no_leaks(&sb, Some("sleep 987654"));

        let started = std::time::Instant::now();
        assert!(matches!(sb.run_cancel(ex, &sh("sleep 987656"), &cancel).status, Err(ExecError::Cancelled)));
        assert!(started.elapsed() < std::time::Duration::from_millis(500), "an already cancelled token still ran");

        let mut spec = sh("sleep 987655");
        spec.timeout = Some(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let ran = sb.run(ex, &spec);
        assert!(matches!(ran.status, Err(ExecError::TimedOut { .. })), "{:?}", ran.status);
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "timeout took {:?}", started.elapsed());
        assert_no_leaks(&sb, Some("sleep 987655"));
    }
}

macro_rules! executor_contract {
    // The cases named, each run through `$within(test path, case)` (which may run it in another
    // process, chroot isolation's restricted namespaces).
    ($name:ident, $make:expr, within $within:path, [$($case:ident),* $(,)?]) => {
        mod $name {
            use super::contract;
            $(
                #[test]
                fn $case() {
                    $within(concat!(module_path!(), "::", stringify!($case)), || contract::$case(&$make()));
                }
            )*
        }
    };
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
            fn stdin() {
                contract::stdin(&$make());
            }
            #[test]
            fn binds() {
                contract::binds(&$make());
            }
            #[test]
            fn mounts() {
                contract::mounts(&$make());
            }
            #[test]
            fn network_reach() {
                contract::network_reach(&$make());
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
            fn insecure() {
                contract::insecure(&$make());
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
            fn concurrent_runs() {
                contract::concurrent_runs(&$make());
            }
            #[test]
            fn cancellation() {
                contract::cancellation(&$make());
            }
        }
    };
}

executor_contract!(embedded_executor, super::embedded);
executor_contract!(runc_executor, super::runc);
executor_contract!(crun_executor, super::crun);
// Chroot isolation where no user namespace may be made, with a mount namespace to spare and with
// no namespace at all (`chroot`). Left out, as chroot isolation has no pid, uts or network
// namespace: pid_namespace, hostname_and_hosts, network, network_reach, concurrent_runs (all
// assert a pid 1, a hostname of the spec's or a network of their own), capabilities (a smaller
// set, `chroot`), insecure (device nodes and hostname); limits (cgroups, which the restricted
// namespace cannot write). Without a mount namespace also binds, mounts (refused: `chroot`), fds
// (no /proc) and output (its background job needs /dev/null, a device node the test's user
// namespace may not make).
executor_contract!(
    chroot_mount_ns,
    super::chroot::chroot_for_contract,
    within super::chroot::with_mount_ns,
    [exit_codes, signals, env, cwd, user, output, stdin, binds, mounts, fds, cancellation]
);
executor_contract!(
    chroot_no_ns,
    super::chroot::chroot_for_contract,
    within super::chroot::without_namespaces,
    [exit_codes, signals, env, cwd, user, stdin, cancellation]
);

/// Catalogue D (reliability.md §4.D): sandbox escape attempts, each followed by the canary
/// and mount-table checks. D5 (cache mounts) is a build test (`build_mounts`).
mod escape;

/// Chroot isolation in namespaces that forbid user namespaces (and, one tier, any namespace).
mod chroot;

/// The rootless subset: the same executor run by uid 65534 (a user namespace mapping the caller
/// to root, nothing else mapped, no cgroups).
mod rootless;

/// A slipway process killed by SIGTERM, SIGINT (default action) or SIGKILL takes its sandboxes
/// with it: the helper (or the OCI runtime) and the sandbox's init die by their parent-death
/// signals.
mod killed_runner {
    use super::*;

    const RUNNER_ENV: &str = "SLIPWAY_TEST_EXEC_RUNNER_DIR";

    #[test]
    fn sigterm_and_sigint_kill_the_sandbox() {
        let cases = [
            ("embedded", libc::SIGTERM, "876901"),
            ("embedded", libc::SIGINT, "876902"),
            ("runc", libc::SIGKILL, "876903"),
            ("crun", libc::SIGKILL, "876904"),
        ];
        for (executor, signal, marker) in cases {
            let sb = Sandbox::new();
            let mut child = crate::support::self_child("exec::killed_runner::runner_child")
                .env(RUNNER_ENV, &sb.rootfs)
                .env("SLIPWAY_TEST_EXEC_MARKER", marker)
                .env("SLIPWAY_TEST_EXEC_EXECUTOR", executor)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pattern = format!("sleep {marker}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while procs_with(&pattern).is_empty() {
                assert!(std::time::Instant::now() < deadline, "the sandbox never started");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
                rustix::process::Signal::from_named_raw(signal).unwrap(),
            )
            .unwrap();
            let status = child.wait().unwrap();
            assert_eq!(crate::support::killed_by(&status), Some(signal));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !procs_with(&pattern).is_empty() {
                assert!(std::time::Instant::now() < deadline, "left behind: {:?}", procs_with(&pattern));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_no_leaks(&sb, Some(&pattern));
            // A SIGKILLed runner cannot remove the container's (now empty) cgroups: this test does.
            for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
                for leftover in std::fs::read_dir(ctrl.path().join("slipway")).into_iter().flatten().flatten() {
                    if leftover.file_name().to_string_lossy().starts_with(&format!("{}-", child.id())) {
                        remove_cgroup(&leftover.path());
                    }
                }
            }
        }
    }

    /// Removes an emptied cgroup; the kernel answers EBUSY until the last process of a killed
    /// sandbox is fully gone (reaped), which may take a moment after it left the process table.
    fn remove_cgroup(path: &std::path::Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("removing {}: {e}", path.display()),
            }
        }
    }

    /// Runs a long sandbox until killed; does nothing unless started by the test above.
    #[test]
    fn runner_child() {
        let Some(rootfs) = std::env::var_os(RUNNER_ENV).map(std::path::PathBuf::from) else {
            return;
        };
        let marker = std::env::var("SLIPWAY_TEST_EXEC_MARKER").unwrap();
        let sb = Sandbox { ctx: crate::support::TestContext::new(), rootfs };
        let executor: Box<dyn Executor> = match std::env::var("SLIPWAY_TEST_EXEC_EXECUTOR").as_deref() {
            // The run directory in the parent test's, which removes it.
            Ok("runc") => Box::new(runc().with_run_dir(sb.rootfs.parent().unwrap())),
            Ok("crun") => Box::new(crun().with_run_dir(sb.rootfs.parent().unwrap())),
            _ => Box::new(embedded()),
        };
        let _ = sb.sh(executor.as_ref(), &format!("sleep {marker}"));
        panic!("the sandbox ended before the runner was killed");
    }
}

/// The helper subcommand exists but is not advertised.
#[test]
fn helper_subcommand_is_hidden() {
    let ctx = crate::support::TestContext::new();
    let help = ctx.ok(&["--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("exec-init"));
    let out = ctx.run(&["__exec-init", "--help"]);
    assert!(out.status.success(), "{}", crate::support::describe(&out));
}

/// The embedded executor takes the secrets tmpfs out of the host's mount table as soon as its
/// helper holds a copy: a builder killed with kill -9 while the step runs leaves no tmpfs with
/// secrets behind (it dies with the sandbox's mount namespace).
#[test]
fn embedded_secrets_leave_the_host_mount_table_while_the_step_runs() {
    use slipway::exec::{Mount, MountSource, Secret, SecretFile};
    let sb = Sandbox::new();
    let (signal, run_dir) = (sb.ctx.path().join("signal"), sb.ctx.path().join("run"));
    std::fs::create_dir(&signal).unwrap();
    std::fs::create_dir(&run_dir).unwrap();
    let secret = SecretFile { data: Secret::new(b"s3cr3t".to_vec()), mode: 0o400, uid: 0, gid: 0 };
    let mut spec = sh("cat /run/secrets/tok && touch /signal/ready && sleep 2");
    spec.mounts = vec![
        Mount { target: "/run/secrets/tok".into(), source: MountSource::Secret(secret) },
        Mount::host(&signal, "/signal", false),
    ];
    let ex = embedded().with_run_dir(&run_dir);
    let ran = std::thread::scope(|s| {
        let run = s.spawn(|| sb.run(&ex, &spec));
        let deadline = std::time::Instant::now() + crate::support::scaled(std::time::Duration::from_secs(30));
        while !signal.join("ready").exists() {
            assert!(std::time::Instant::now() < deadline && !run.is_finished(), "the step never got ready");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let run_dir = run_dir.to_string_lossy().into_owned();
        assert!(!mountinfo.contains(&run_dir), "the secrets tmpfs is in the host's mount table:\n{mountinfo}");
        run.join().unwrap()
    });
    assert_eq!(ran.ok(), "s3cr3t");
    assert_no_leaks(&sb, None);
    assert!(std::fs::read_dir(&run_dir).unwrap().next().is_none(), "the run directory is left empty");
}
