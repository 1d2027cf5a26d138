//! Crash residue cleans itself (issue #19, reliability N4/N5): a build killed with kill -9 at any
//! failpoint, or in the middle of a big COPY, leaves temp files, snapshots, mounts and leases
//! that the next command opening the store reclaims, so after one more successful build
//! `fsck --strict` is clean without `prune`; `prune` counts the bytes it frees; and a live
//! concurrent build never loses what it is using.
//!
//! The big file is `SLIPWAY_IT_RESIDUE_MIB` MiB (default 32).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::build::BuildEnv;
use crate::support::{describe, killed_by, scaled};

/// Every failpoint a build passes through, with whether this Dockerfile's build must reach it.
const SITES: [&str; 9] = [
    "blob.write",
    "blob.before_rename",
    "blob.after_rename",
    "snapshot.prepare.before_record",
    "snapshot.remove.before_delete",
    "record.before_rename",
    "index.write",
    "index.before_rename",
    "index.before_dir_fsync",
];

/// COPY of the big file, a RUN (a mounted snapshot), a view of another image's layers and a
/// bind mount's copy of the context: every kind of thing a step leaves when it is killed.
const DOCKERFILE: &str = "FROM bb
COPY big /big
RUN echo made > /made
COPY --from=bb /bin/busybox /copied
RUN --mount=type=bind,source=small,target=/s cat /s > /s-copy
";

fn big_mib() -> usize {
    std::env::var("SLIPWAY_IT_RESIDUE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

/// A store with `bb` and a context holding `big` (not compressible) and `small`.
fn env_with_big_file() -> BuildEnv {
    let env = BuildEnv::new();
    env.dockerfile(DOCKERFILE);
    env.write("small", "small\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..big_mib() << 17)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    fs::write(env.ctx().join("big"), bytes).unwrap();
    env
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The snapshotter directories in use under the root (`snapshots/<kind>`).
fn snapshot_dirs(root: &Path) -> Vec<PathBuf> {
    entries(&root.join("snapshots"))
        .into_iter()
        .map(|n| root.join("snapshots").join(n))
        .filter(|p| p.is_dir())
        .collect()
}

/// Temporary directories (`mnt-`, `from-`, `bind-`, `run-`) in the snapshotter directories.
fn temp_dirs(root: &Path) -> Vec<String> {
    snapshot_dirs(root)
        .iter()
        .flat_map(|d| entries(d))
        .filter(|n| n.split_once('-').is_some_and(|(p, _)| ["mnt", "from", "bind", "run"].contains(&p)))
        .collect()
}

/// The mount points under `root` in this mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(root))
        .map(String::from)
        .collect()
}

/// Active snapshots and views, read from each snapshotter's database.
fn unfinished_snapshots(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in snapshot_dirs(root) {
        let Ok(db) = rusqlite::Connection::open(dir.join("metadata.db")) else { continue };
        let Ok(mut stmt) = db.prepare("SELECT key FROM snapshots WHERE kind != 'committed'") else { continue };
        out.extend(stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
    }
    out
}

/// `fsck --strict --format json` must exit 0 with nothing but orphans.
#[track_caller]
fn assert_fsck_strict_clean(env: &BuildEnv, what: &str) {
    let out = env.tc.run(&["fsck", "--strict", "--format", "json"]);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", describe(&out)));
    assert_eq!(out.status.code(), Some(0), "{what}: {report:#}");
    for key in ["corrupt", "missing", "temp_residue", "perm_violations"] {
        assert_eq!(report[key].as_array().map_or(0, Vec::len), 0, "{what}: {key} in {report:#}");
    }
}

/// Nothing of a dead build is left: no temp file, no unfinished snapshot, no temporary
/// directory, no mount, no lease.
#[track_caller]
fn assert_no_residue(env: &BuildEnv, what: &str) {
    let root = env.tc.root();
    assert_eq!(entries(&root.join("ingest")), Vec::<String>::new(), "{what}: ingest/");
    assert_eq!(unfinished_snapshots(&root), Vec::<String>::new(), "{what}: active snapshots or views");
    assert_eq!(temp_dirs(&root), Vec::<String>::new(), "{what}: temporary directories");
    assert_eq!(mounts_under(&root), Vec::<String>::new(), "{what}: mounts");
    let db = rusqlite::Connection::open(root.join("metadata.db")).unwrap();
    let leases: i64 = db.query_row("SELECT count(*) FROM leases", [], |r| r.get(0)).unwrap();
    assert_eq!(leases, 0, "{what}: leases");
}

/// Acceptance: kill -9 at each failpoint of a build, then one successful build, then
/// `fsck --strict` is clean, and nothing of the killed build is left anywhere — without `prune`.
#[test]
fn kill9_at_each_build_failpoint_then_one_build_leaves_fsck_strict_clean_without_prune() {
    let env = env_with_big_file();
    for site in SITES {
        // A label of its own: the config is a new blob, so every blob site is reached.
        let label = format!("site={site}");
        let out = env
            .build_cmd(&["--no-cache", "-t", "img", "--label", &label])
            .env("SLIPWAY_FAILPOINT", format!("{site}:kill9"))
            .output()
            .unwrap();
        assert_eq!(killed_by(&out.status), Some(libc::SIGKILL), "{site} was not reached: {}", describe(&out));
        if site == "blob.write" {
            let root = env.tc.root();
            let left = (entries(&root.join("ingest")).len(), unfinished_snapshots(&root).len());
            // The first layer written is `COPY big /big`'s, straight from the context: the kill
            // leaves the layer's temp file and the read-only view of the tree under the step
            // (a snapshot and its mount point).
            assert_eq!(left, (1, 1), "a kill in a layer write leaves its temp file and its step's view");
            // fsck sees both and, without --repair, leaves them to the next command.
            let out = env.tc.run(&["fsck", "--strict", "--format", "json"]);
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut whats: Vec<String> = report["temp_residue"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["what"].as_str().unwrap().split(' ').next().unwrap().to_string())
                .collect();
            whats.sort();
            assert_eq!(whats, ["snapshot", "temporary", "temporary"], "{report:#}");
            let still = (entries(&root.join("ingest")).len(), unfinished_snapshots(&root).len());
            assert_eq!(still, (1, 1), "fsck only looked");
        }
        env.build_ok(&["-t", "img"]);
        assert_no_residue(&env, site);
        assert_fsck_strict_clean(&env, site);
    }
}

/// Acceptance: kill -9 from outside while a big COPY is being written into the store (the
/// moment the issue describes: a big file in `ingest/`), then one build: clean, and the next
/// build's image holds the whole file.
#[test]
fn kill9_in_the_middle_of_a_big_copy_then_one_build_leaves_fsck_strict_clean_without_prune() {
    let env = env_with_big_file();
    let root = env.tc.root();
    let mut child = spawn_quiet(env.build_cmd(&["--no-cache", "-t", "img"]));
    let grown = wait_for(&mut child, || ingest_bytes(&root) >= 1 << 20);
    assert!(grown, "the COPY never reached ingest/");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(killed_by(&out.status), Some(libc::SIGKILL), "{}", describe(&out));
    assert!(ingest_bytes(&root) > 0, "the kill left nothing to reclaim");
    env.build_ok(&["-t", "img"]);
    assert_no_residue(&env, "mid-COPY kill");
    assert_fsck_strict_clean(&env, "mid-COPY kill");
    let size = env.tc.ok(&["run", "img", "wc", "-c", "/big"]);
    let expected = format!("{} /big", big_mib() << 20);
    assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), expected);
}

/// `prune` counts what it frees, temp files too — also those its own opening of the store
/// reclaimed before it ran (the issue's `0B freed` after deleting a big temp file).
#[test]
fn prune_reports_the_bytes_of_the_residue_it_frees() {
    let env = env_with_big_file();
    let out = env.build_cmd(&["--no-cache"]).env("SLIPWAY_FAILPOINT", "blob.before_rename:kill9").output().unwrap();
    assert_eq!(killed_by(&out.status), Some(libc::SIGKILL), "{}", describe(&out));
    let residue = ingest_bytes(&env.tc.root());
    assert!(residue >= (big_mib() as u64) << 20, "the killed build left {residue} bytes");
    let out = env.tc.ok(&["prune", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let blobs = &report["blobs"];
    assert_eq!(blobs["temp_bytes_freed"].as_u64(), Some(residue), "{report:#}");
    assert!(blobs["bytes_freed"].as_u64().unwrap() >= residue, "{report:#}");
    assert_eq!(blobs["temp_removed"].as_array().map(Vec::len), Some(1), "{report:#}");
    assert_no_residue(&env, "prune");

    let out = env.build_cmd(&["--no-cache"]).env("SLIPWAY_FAILPOINT", "blob.before_rename:kill9").output().unwrap();
    assert_eq!(killed_by(&out.status), Some(libc::SIGKILL), "{}", describe(&out));
    let out = env.tc.ok(&["prune"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total = stdout.lines().find(|l| l.starts_with("total:") && l.contains("blob")).unwrap_or_default();
    assert!(total.contains("1 temp file deleted") && !total.ends_with(" 0B freed"), "{stdout}");
}

/// Another process opening the store (a build, `df`, `prune`) while a build is paused with a
/// temp file in `ingest/`, an active snapshot and, later, a mounted RUN step, takes none of them:
/// the paused build finishes and its image is whole.
#[test]
fn a_live_builds_ingest_snapshot_and_mount_survive_another_process_cleanup_and_prune() {
    let env = env_with_big_file();
    let root = env.tc.root();
    env.write("slow/Dockerfile", "FROM bb\nCOPY big /big\nRUN sleep 6 && cat /big > /dev/null\n");
    fs::copy(env.ctx().join("big"), env.ctx().join("slow/big")).unwrap();
    let mut slow = env.tc.cmd();
    slow.args(["build", "--no-cache", "-t", "slow"]).arg(env.ctx().join("slow"));
    slow.env("SLIPWAY_FAILPOINT", format!("blob.write:sleep({})", PAUSE.as_millis()));
    let mut child = spawn_quiet(slow);
    // Another build that shares no step with it (a shared step would wait for the slow one).
    env.write("other/Dockerfile", "FROM bb\nRUN echo other > /o\n");
    let other = || {
        let mut cmd = env.tc.cmd();
        cmd.args(["build", "--no-cache", "-t", "other"]).arg(env.ctx().join("other"));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    };

    // Paused in the COPY's layer write: its temp file and its active snapshot exist.
    assert!(wait_for(&mut child, || ingest_bytes(&root) > 0), "the slow build never wrote its layer");
    let paused = Instant::now();
    let ingest = entries(&root.join("ingest"));
    let active = unfinished_snapshots(&root);
    assert!(!active.is_empty(), "no active snapshot while the layer is written");
    other();
    env.tc.ok(&["df"]);
    env.tc.ok(&["prune"]);
    // The pause began before `paused`: while less than it has passed, the build is still there.
    assert!(paused.elapsed() < PAUSE, "too slow to check the paused build (raise PAUSE)");
    for name in &ingest {
        assert!(root.join("ingest").join(name).exists(), "the live build's {name} was removed");
    }
    assert_eq!(unfinished_snapshots(&root), active, "the live build's snapshot was removed");

    // In its RUN step: a mounted snapshot (overlay) or a plain one (copy) in use.
    // Overlay: its snapshot mounted on a temporary directory (the directory comes before the
    // mount, so wait for the mount); copy: a plain directory, the step's snapshot is enough.
    let copy = root.join("snapshots/copy").exists();
    let running = wait_for(&mut child, || match copy {
        true => unfinished_snapshots(&root).iter().any(|k| !active.contains(k)),
        false => !mounts_under(&root).is_empty(),
    });
    assert!(running, "the slow build never reached its RUN step");
    let mounts = mounts_under(&root);
    let temps = temp_dirs(&root);
    let snapshots = unfinished_snapshots(&root);
    env.tc.ok(&["df"]);
    other();
    env.tc.ok(&["prune"]);
    assert!(child.try_wait().unwrap().is_none(), "the RUN step ended before the check (raise its sleep)");
    assert_eq!(temp_dirs(&root), temps, "the live build's temporary directories were removed");
    assert_eq!(mounts_under(&root), mounts, "the live build's mounts were taken down");
    assert_eq!(unfinished_snapshots(&root), snapshots, "the live build's snapshots were removed");

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the live build failed: {}", describe(&out));
    let size = env.tc.ok(&["run", "slow", "wc", "-c", "/big"]);
    assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), format!("{} /big", big_mib() << 20));
    assert_no_residue(&env, "after the live build");
    assert_fsck_strict_clean(&env, "after the live build");
}

/// How long the slow build waits in its layer write for the others to run.
const PAUSE: Duration = Duration::from_secs(8);

fn spawn_quiet(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Bytes of the files in `ingest/` (scratch directories not counted).
fn ingest_bytes(root: &Path) -> u64 {
    entries(&root.join("ingest"))
        .iter()
        .filter_map(|n| fs::metadata(root.join("ingest").join(n)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Polls `cond` until it holds (true) or the child exits or a minute passes (false).
fn wait_for(child: &mut Child, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + scaled(Duration::from_secs(60));
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// N7, the cache is derivable: a cache database with damaged pages makes `fsck --strict` fail
/// naming it; `--repair` moves it aside; the next build runs its steps again and gives the same
/// image, and no image was lost.
#[test]
fn a_damaged_cache_database_is_found_and_repair_loses_only_speed() {
    let env = BuildEnv::with_epoch("1700000000");
    env.write("a", "a\n");
    env.dockerfile("FROM bb\nCOPY a /a\nRUN echo ran > /ran\n");
    env.build_ok(&["-t", "img", "--source-date-epoch", "1700000000"]);
    let id = String::from_utf8(env.tc.ok(&["images", "-q"]).stdout).unwrap();
    let db = env.tc.root().join("cache/cache.db");
    let mut bytes = fs::read(&db).unwrap();
    assert!(bytes.len() >= 3 * 4096, "{}", bytes.len());
    bytes[4096..].fill(0x5a);
    fs::write(&db, &bytes).unwrap();
    let out = env.tc.run(&["fsck", "--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("metadata   {}: ", db.display())), "{stdout}");
    let out = env.tc.run(&["fsck", "--repair"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt empty"), "{}", describe(&out));
    assert_fsck_strict_clean(&env, "after the repair");
    let rebuilt = env.build_ok(&["-t", "img", "--source-date-epoch", "1700000000", "--progress", "plain"]);
    let stderr = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(stderr.contains("cache miss: no cache record"), "{stderr}");
    assert_eq!(String::from_utf8(env.tc.ok(&["images", "-q"]).stdout).unwrap(), id, "the same images");
    assert_fsck_strict_clean(&env, "after the rebuild");
}
