//! Rootless builds (#16): `slipway build` run by uid 65534 enters a user namespace of its own
//! (the caller as root, its subordinate range as 1..=N) and gives the image a root build gives,
//! byte for byte; without a range it stops at the first step that needs another id, saying how
//! to add one. Each run sees the `/etc/subuid` and `/etc/subgid` the test writes (its own mount
//! namespace), whatever the machine's hold.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::rootless::{NOBODY, slipway_as_nobody};

const EPOCH: &str = "1700000000";
const RANGE: &str = "65534:400000:65536\n";

/// A named user for COPY --chown, a RUN making files of three owners (one beyond 0xffff), a
/// USER switch and a whiteout of a base file.
const DOCKERFILE: &str = "FROM bb
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
COPY --chown=app:app f /home/app/f
RUN touch /a /b /c && chown 1000:1000 /a && chown 2000:3000 /b && chown 60000:60001 /c && rm /home/user/notes.txt
USER app
RUN touch /home/app/g && id -u > /home/app/uid
";

/// The root side (a store with `bb`, the context) and the unprivileged user's home.
struct Setup {
    root: BuildEnv,
    home: PathBuf,
    base: PathBuf,
}

impl Setup {
    /// The busybox base of the other tests (it holds a file of uid 1000).
    fn new(dockerfile: &str) -> Setup {
        Setup::with(BuildEnv::with_epoch(EPOCH), dockerfile)
    }

    /// A base whose files all belong to root.
    fn root_only_base(dockerfile: &str) -> Setup {
        let chown_root = |rootfs: &Path| {
            for entry in walkdir::WalkDir::new(rootfs) {
                std::os::unix::fs::lchown(entry.unwrap().path(), Some(0), Some(0)).unwrap();
            }
        };
        Setup::with(BuildEnv::with_rootfs(chown_root, &["--source-date-epoch", EPOCH]), dockerfile)
    }

    fn with(root: BuildEnv, dockerfile: &str) -> Setup {
        root.write("f", "hello\n");
        root.dockerfile(dockerfile);
        // The user reads the context and the saved base in place (world-readable, as root made them).
        std::fs::set_permissions(root.tc.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = root.tc.path().join("bb.tar");
        root.tc.ok(&["save", "bb", "-o", base.to_str().unwrap()]);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o644)).unwrap();
        let home = root.tc.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
        Setup { root, home, base }
    }

    /// `slipway ARGS` as uid 65534 with `subids` and its store `name` under its home.
    fn user(&self, subids: &str, store: &str, args: &[&str]) -> Output {
        self.user_at(subids, &self.home.join(store), args)
    }

    /// `slipway --root ROOT ARGS` as uid 65534 with `subids`.
    fn user_at(&self, subids: &str, root: &Path, args: &[&str]) -> Output {
        let etc = self.root.tc.path().join(format!("etc-{}", subids.len()));
        let mut cmd: Command = slipway_as_nobody(&etc, subids, &self.home);
        cmd.arg("--root").arg(root).args(args);
        cmd.output().expect("unshare and setpriv (util-linux) are installed")
    }

    fn user_ok(&self, subids: &str, store: &str, args: &[&str]) -> Output {
        let out = self.user(subids, store, args);
        assert!(out.status.success(), "as uid 65534: slipway {args:?}: {}", describe(&out));
        out
    }

    /// The user's build of the context: the manifest digest from `--metadata-file`.
    fn user_build(&self, subids: &str, store: &str, snapshotter: &str) -> String {
        self.user_ok(subids, store, &["load", "-i", self.base.to_str().unwrap()]);
        let meta = self.home.join(format!("{store}.json"));
        let ctx = self.root.ctx();
        let args = build_args(snapshotter, &meta, &ctx);
        self.user_ok(subids, store, &args.iter().map(String::as_str).collect::<Vec<_>>());
        manifest_digest(&meta)
    }

    /// The same build as root, in a fresh store beside the setup's own.
    fn root_build(&self, snapshotter: &str) -> String {
        let tc = crate::support::TestContext::new();
        tc.ok(&["load", "-i", self.base.to_str().unwrap()]);
        let meta = tc.path().join("meta.json");
        let args = build_args(snapshotter, &meta, &self.root.ctx());
        let out = tc.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "root build: {}", describe(&out));
        manifest_digest(&meta)
    }
}

fn build_args(snapshotter: &str, meta: &Path, ctx: &Path) -> Vec<String> {
    let mut args = vec!["--snapshotter", snapshotter, "build", "--network", "none", "--source-date-epoch", EPOCH];
    args.extend(["--progress", "plain", "-t", "app:1", "--metadata-file"]);
    let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
    args.push(meta.to_str().unwrap().to_string());
    args.push(ctx.to_str().unwrap().to_string());
    args
}

fn manifest_digest(meta: &Path) -> String {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    meta["containerimage.digest"].as_str().expect("a manifest digest").to_string()
}

/// The acceptance: root and uid 65534 with a subordinate range build the same manifest, with
/// overlay (userxattr inside the user namespace) and with the copy snapshotter.
#[test]
fn a_rootless_build_with_a_range_gives_root_s_manifest() {
    let setup = Setup::new(DOCKERFILE);
    for snapshotter in ["overlay", "copy"] {
        let store = format!("store-{snapshotter}");
        let user = setup.user_build(RANGE, &store, snapshotter);
        assert_eq!(user, setup.root_build(snapshotter), "{snapshotter}: the same manifest digest");
        // The files the build made belong to the subordinate range on the host: uid 1000 is
        // 400000 + 999 there.
        let sn = ["--snapshotter", snapshotter];
        let info = setup.user_ok(RANGE, &store, &[&sn[..], &["info", "--format", "json"]].concat());
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["snapshotter"], snapshotter, "{info}");
        let owners = host_owners(&setup.home.join(&store).join("snapshots"));
        assert!(owners.contains(&400_999), "{snapshotter}: {owners:?}");
        assert!(owners.iter().all(|&o| o == NOBODY || (400_000..465_536).contains(&o)), "{owners:?}");
        let run = ["run", "--network", "none", "app:1", "cat", "/home/app/uid"];
        let out = setup.user_ok(RANGE, &store, &[&sn[..], &run].concat());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n");
        setup.user_ok(RANGE, &store, &[&sn[..], &["fsck", "--strict"]].concat());
    }
}

/// Host uids of everything under `dir` (read as root).
fn host_owners(dir: &Path) -> std::collections::BTreeSet<u32> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.path().symlink_metadata().ok())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .collect()
}

/// Without a range, only root exists: the build stops at the COPY --chown (the first step that
/// needs another id), naming it and the fix, with nothing written for that step; a Dockerfile
/// that needs no other id builds and runs.
#[test]
fn without_a_range_the_first_step_needing_another_id_fails_saying_how_to_add_one() {
    // A base with a file of uid 1000 stops the first step that unpacks it, naming the file.
    let setup = Setup::new("FROM bb\nRUN true\n");
    setup.user_ok("", "store", &["load", "-i", setup.base.to_str().unwrap()]);
    let ctx = setup.root.ctx();
    let out = setup.user("", "store", &["build", "--network", "none", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layer entry home/user/ is owned by 1000:1000"), "{stderr}");
    assert!(stderr.contains("usermod --add-subuids"), "{stderr}");

    let setup = Setup::root_only_base(DOCKERFILE);
    setup.user_ok("", "store", &["load", "-i", setup.base.to_str().unwrap()]);
    let ctx = setup.root.ctx();
    let out = setup.user("", "store", &["build", "--network", "none", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.contains("--chown=app:app needs uid 1000 and gid 1000"), "{stderr}");
    assert!(stderr.contains("usermod --add-subuids"), "{stderr}");
    // A RUN that chowns to another id fails, and says why it may have.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nRUN touch /x && chown 1000 /x\n").unwrap();
    let out = setup.user("", "store", &["build", "--network", "none", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("maps only root") && stderr.contains("usermod --add-subuids"), "{stderr}");
    // A USER that is not root is refused by the sandbox.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nUSER 1000\nRUN id\n").unwrap();
    let out = setup.user("", "store", &["build", "--network", "none", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/etc/subuid"), "{}", describe(&out));
    // Root alone builds.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nCOPY f /f\nRUN cat /f > /g && id -u >> /g\n").unwrap();
    let args = ["build", "--network", "none", "--progress", "plain", "-t", "ok:1", ctx.to_str().unwrap()];
    setup.user_ok("", "store", &args);
    let out = setup.user_ok("", "store", &["run", "--network", "none", "ok:1", "cat", "/g"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n0\n");
    setup.user_ok("", "store", &["fsck", "--strict"]);
}

/// One store, one user: root refuses a user's store and the user refuses root's, before
/// anything is written.
#[test]
fn a_store_is_never_shared_between_root_and_a_user() {
    let setup = Setup::new(DOCKERFILE);
    setup.user_ok(RANGE, "store", &["images"]);
    let user_store = setup.home.join("store");
    let mut cmd = Command::new(crate::support::slipway_bin());
    let out = cmd.arg("--root").arg(&user_store).arg("images").env_remove("SLIPWAY_ROOT").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("belongs to uid 65534, and this is root"),
        "{}",
        describe(&out)
    );
    // The root store is the TestContext's: make it reachable so only ownership stops the user.
    let root_store = setup.root.tc.root();
    let out = setup.user_at(RANGE, &root_store, &["images"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("belongs to root, and this is uid 65534"),
        "{}",
        describe(&out)
    );
}

/// `slipway info` says, per situation, what a build will use and, where something is missing,
/// the fix: root; a user with a range and a usable /dev/net/tun; a user without a range whose
/// /dev/net/tun is 0600 (both tun nodes made by the test, bound over the machine's for its runs).
#[test]
fn info_says_what_a_build_will_use_and_why() {
    let setup = Setup::new("FROM bb\n");
    // (The platforms section depends on the machine's binfmt_misc: `build_emulation` covers it.)
    let filters = vec![
        (r"/tmp/slipway-it-[^/\s]+", "[TMP]"),
        (r"version:( +)\S+", "version:$1[VERSION]"),
        (r"(?s)platforms:\n.*", "[PLATFORMS]"),
    ];
    let show = |out: Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let root = show(setup.root.tc.ok(&["info"]));
    for (subids, mode) in [(RANGE, 0o666), ("", 0o600)] {
        let etc = setup.root.tc.path().join(format!("etc-{}", subids.len()));
        std::fs::create_dir_all(&etc).unwrap();
        let tun = etc.join("tun");
        let _ = std::fs::remove_file(&tun);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &tun,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(mode),
            rustix::fs::makedev(10, 200),
        )
        .unwrap();
        std::fs::set_permissions(&tun, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let with_range = show(setup.user_ok(RANGE, "store", &["info"]));
    let without = show(setup.user_ok("", "store2", &["info"]));
    // A RUN on the default network where the user cannot open /dev/net/tun fails saying so, and
    // how to fix it (slirp4netns alone would only say it ended early).
    let tun = setup.root.tc.path().join(format!("etc-{}", RANGE.len())).join("tun");
    std::fs::set_permissions(&tun, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(setup.root.ctx().join("Dockerfile"), "FROM bb\nRUN true\n").unwrap();
    setup.user_ok(RANGE, "store", &["load", "-i", setup.base.to_str().unwrap()]);
    let out = setup.user(RANGE, "store", &["build", "--progress", "plain", setup.root.ctx().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs /dev/net/tun for slirp4netns, and this user cannot open it"), "{stderr}");
    assert!(stderr.contains("chmod 0666 /dev/net/tun") && stderr.contains("Permission denied"), "{stderr}");
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!(root, @r"
        version:         [VERSION]
        root:            [TMP]/root
        rootless:        false
        snapshotter:     overlay
        executor:        embedded
        isolation:       default
        user namespaces: not needed (root)
        subordinate ids: not needed (root)
        overlay:         yes
        slirp4netns:     /usr/bin/slirp4netns
        /dev/net/tun:    usable
        cache mounts: none
        [PLATFORMS]
        ");
        insta::assert_snapshot!(with_range, @r"
        version:         [VERSION]
        root:            [TMP]/home/store
        rootless:        true
        snapshotter:     overlay
        executor:        embedded
        isolation:       default
        user namespaces: allowed: slipway runs as root of one of its own
        subordinate ids: 400000-465535 on the host are ids 1-65536 in a build
        overlay:         yes, in the user namespace (userxattr)
        slirp4netns:     /usr/bin/slirp4netns
        /dev/net/tun:    usable
        cache mounts: none
        [PLATFORMS]
        ");
        insta::assert_snapshot!(without, @r"
        version:         [VERSION]
        root:            [TMP]/home/store2
        rootless:        true
        snapshotter:     overlay
        executor:        embedded
        isolation:       default
        user namespaces: allowed: slipway runs as root of one of its own
        subordinate ids: none: only root exists in a build, a step that needs another id fails; add a range: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER (and apt-get install uidmap)
        overlay:         yes, in the user namespace (userxattr)
        slirp4netns:     /usr/bin/slirp4netns
        /dev/net/tun:    not usable (Permission denied (os error 13)): --network default fails; make it usable (chmod 0666 /dev/net/tun) or use --network none or host
        cache mounts: none
        [PLATFORMS]
        ");
    });
}
