//! The store under `--root`: blob contract, tags, crash and fault cases (reliability.md E1–E4,
//! E7, E8, F3). Crash cases re-run this binary as a child (`child_entry`) with
//! `SLIPWAY_FAILPOINT` set, then kill it or let the failpoint kill it, and check with the real
//! `slipway fsck --strict` that the store is whole.
//!
//! Sizes scale with `SLIPWAY_IT_BIG_MIB` (default 50) and `SLIPWAY_IT_F3_SECS` (default 3).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use slipway::oci::{Descriptor, Digest, Hasher, ImageManifest, MediaType, Reference, canonical};
use slipway::store::Store;

use crate::support::{TestContext, child_value, describe, killed_by, self_child, slipway_bin};

const CHILD: &str = "store::child_entry";
const CHILD_OP: &str = "SLIPWAY_IT_STORE_OP";
const CHILD_ROOT: &str = "SLIPWAY_IT_STORE_ROOT";
const CHILD_ARG: &str = "SLIPWAY_IT_STORE_ARG";

fn big_mib() -> u64 {
    std::env::var("SLIPWAY_IT_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

/// Deterministic 1 MiB chunks: chunk `i` of stream `seed`.
fn chunk(seed: u64, i: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for _ in 0..(1 << 17) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn stream_digest(seed: u64, mib: u64) -> Digest {
    let mut h = Hasher::new();
    for i in 0..mib {
        h.update(&chunk(seed, i));
    }
    h.finish()
}

/// Ingests `mib` MiB of stream `seed`; returns the commit result.
fn ingest_stream(store: &Store, seed: u64, mib: u64) -> Result<(Digest, u64), String> {
    let mut ingest = store.ingest().map_err(|e| format!("{e:#}"))?;
    for i in 0..mib {
        if let Err(e) = ingest.write_all(&chunk(seed, i)) {
            return Err(format!("write: {e} (errno {:?})", e.raw_os_error()));
        }
    }
    ingest.commit(None, None).map_err(|e| format!("commit: {e} (errno {:?})", e.raw_os_error()))
}

/// Writes a config and a manifest over `layers` (already in the store); returns the manifest.
fn write_image(store: &Store, name: &str, layers: &[Digest]) -> Descriptor {
    let config = format!("{{\"name\":\"{name}\"}}");
    let config_digest = store.write_blob(config.as_bytes(), None).expect("config");
    let layers = layers
        .iter()
        .map(|d| Descriptor::new(MediaType::OciLayer, *d, store.blob_size(d).expect("layer size")))
        .collect();
    let m = ImageManifest::oci(Descriptor::new(MediaType::OciConfig, config_digest, config.len() as u64), layers);
    let bytes = canonical::to_bytes(&m);
    let d = store.write_blob(&bytes, None).expect("manifest");
    Descriptor::new(MediaType::OciManifest, d, bytes.len() as u64)
}

fn child(ctx: &TestContext, op: &str, arg: &str, failpoint: Option<&str>) -> Command {
    let mut cmd = self_child(CHILD);
    cmd.env(CHILD_OP, op).env(CHILD_ROOT, ctx.root()).env(CHILD_ARG, arg);
    if let Some(fp) = failpoint {
        cmd.env("SLIPWAY_FAILPOINT", fp);
    }
    cmd
}

fn run_child(ctx: &TestContext, op: &str, arg: &str, failpoint: Option<&str>) -> Output {
    child(ctx, op, arg, failpoint).output().expect("spawn child test process")
}

fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn ingest_entries(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("ingest")).expect("ingest dir").map(|e| e.expect("entry").path()).collect()
}

/// Runs `slipway fsck --format json ARGS`; returns (exit code, report).
fn fsck(ctx: &TestContext, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["fsck", "--format", "json"];
    all.extend_from_slice(args);
    let out = ctx.run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("fsck json: {e}\n{}", describe(&out)));
    (out.status.code().unwrap_or(-1), report)
}

fn count(report: &serde_json::Value, key: &str) -> usize {
    report[key].as_array().map_or(0, Vec::len)
}

/// `fsck --strict` exits 0 and finds nothing but `orphans` orphans.
#[track_caller]
fn assert_fsck_clean(ctx: &TestContext, orphans: usize) {
    let (code, r) = fsck(ctx, &["--strict"]);
    assert_eq!(code, 0, "fsck --strict failed: {r:#}");
    for key in ["corrupt", "missing", "temp_residue", "perm_violations"] {
        assert_eq!(count(&r, key), 0, "{key} in {r:#}");
    }
    assert_eq!(count(&r, "orphans"), orphans, "orphans in {r:#}");
}

/// The child half of the crash tests: does nothing unless `SLIPWAY_IT_STORE_OP` is set.
#[test]
fn child_entry() {
    let Ok(op) = std::env::var(CHILD_OP) else { return };
    let root = PathBuf::from(std::env::var(CHILD_ROOT).expect("child root"));
    let arg = std::env::var(CHILD_ARG).unwrap_or_default();
    match op.as_str() {
        "ingest" => {
            let (seed, mib) = arg.split_once(',').expect("seed,mib");
            let store = Store::open(&root).expect("open store");
            let (d, _) = ingest_stream(&store, seed.parse().unwrap(), mib.parse().unwrap()).expect("ingest");
            println!("DIGEST={d}");
        }
        "ingest_fails" => {
            // arg: seed,mib,errno
            let parts: Vec<u64> = arg.split(',').map(|p| p.parse().unwrap()).collect();
            let store = Store::open(&root).expect("open store");
            let err = ingest_stream(&store, parts[0], parts[1]).expect_err("an injected error must surface");
            assert!(err.contains(&format!("errno Some({})", parts[2])), "{err}");
            println!("ERROR={err}");
        }
        "set_tag" => {
            // arg: reference,digest,size[,expected errno]
            let parts: Vec<&str> = arg.split(',').collect();
            let store = Store::open(&root).expect("open store");
            let desc = Descriptor::new(MediaType::OciManifest, parts[1].parse().unwrap(), parts[2].parse().unwrap());
            let res = store.set_tag(&Reference::parse(parts[0]).unwrap(), desc);
            match parts.get(3) {
                None => res.expect("set_tag"),
                Some(errno) => {
                    let err = res.expect_err("an injected error must surface");
                    assert_eq!(err.raw_os_error(), Some(errno.parse().unwrap()), "{err}");
                    println!("ERROR={err}");
                }
            }
        }
        "enospc" => enospc_child(&root),
        "lease_and_hang" => {
            let store = Store::open(&root).expect("open store");
            let lease = store.lease("hangs").expect("lease");
            let d = store.write_blob(b"pinned by a process about to die", Some(&lease)).expect("blob");
            println!("DIGEST={d}");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
            drop(lease);
        }
        "slow_leased_commit" => {
            let store = Store::open(&root).expect("open store");
            let lease = store.lease("slow").expect("lease");
            let mut ingest = store.ingest().expect("ingest");
            ingest.write_all(b"committed while prune waits").expect("write");
            let (d, _) = ingest.commit(None, Some(&lease)).expect("commit");
            // Give the parent's prune time to run after our critical section.
            std::thread::sleep(Duration::from_millis(1500));
            assert!(store.has_blob(&d), "leased blob {d} was swept");
            println!("DIGEST={d}");
        }
        "lease_writer" => lease_writer_child(&root, arg.parse().expect("seconds")),
        other => panic!("unknown child op {other}"),
    }
}

#[test]
fn failpoints_are_compiled_into_the_test_build() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let out = run_child(&ctx, "ingest", "1,1", Some("blob.before_rename:exit"));
    assert_eq!(out.status.code(), Some(86), "the failpoints feature is off in the library: {}", describe(&out));
}

/// Whether the slipway binary built for these tests honours failpoints (feature unification of
/// the self dev-dependency). Asserted, so a cargo change that breaks it is noticed.
#[test]
fn failpoints_are_compiled_into_the_cli_binary() {
    let ctx = TestContext::new();
    ctx.ok(&["prune"]);
    let out = ctx.cmd().args(["prune"]).env("SLIPWAY_FAILPOINT", "gc.before_sweep:exit").output().unwrap();
    assert_eq!(out.status.code(), Some(86), "the failpoints feature is off in the CLI binary: {}", describe(&out));
}

#[test]
fn blob_contract_through_two_processes() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    // Two processes ingest the same 8 MiB at once: both succeed, one blob, no temp.
    let spawn =
        || child(&ctx, "ingest", "7,8", None).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", describe(&a), describe(&b));
    let expected = stream_digest(7, 8).to_string();
    assert_eq!(child_value(&a, "DIGEST").as_deref(), Some(expected.as_str()));
    assert_eq!(child_value(&b, "DIGEST").as_deref(), Some(expected.as_str()));
    assert_eq!(blob_names(&ctx.root()), vec![expected.trim_start_matches("sha256:").to_string()]);
    assert!(ingest_entries(&ctx.root()).is_empty());
    assert_fsck_clean(&ctx, 1);

    // A mismatching commit leaves nothing under either digest; a dropped ingest leaves no temp.
    let store = Store::open(&ctx.root()).unwrap();
    let mut i = store.ingest().unwrap();
    i.write_all(b"abc").unwrap();
    let wrong = Digest::of(b"abd");
    assert!(i.commit(Some((wrong, 3)), None).is_err());
    assert!(!store.has_blob(&wrong) && !store.has_blob(&Digest::of(b"abc")));
    let mut i = store.ingest().unwrap();
    i.write_all(&[1; 4096]).unwrap();
    drop(i);
    assert!(ingest_entries(&ctx.root()).is_empty());
    // The root is an OCI layout skopeo can read.
    let m = write_image(&store, "skopeo", &[expected.parse().unwrap()]);
    store.set_tag(&Reference::parse("example.com/app:1").unwrap(), m).unwrap();
    if Path::new("/usr/bin/skopeo").exists() {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:example.com/app:1", ctx.root().display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo could not read the store: {}", describe(&out));
    }
    assert_fsck_clean(&ctx, 0);
}

/// E1: kill -9 at `blob.write` after 1 MiB of a big layer; also at `blob.before_rename`.
#[test]
fn e1_kill_during_blob_write_leaves_only_reapable_temp() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let mib = big_mib();
    let arg = format!("11,{mib}");
    for site in ["blob.write", "blob.before_rename"] {
        let out = run_child(&ctx, "ingest", &arg, Some(&format!("{site}:kill9")));
        assert_eq!(killed_by(&out.status), Some(9), "{site}: {}", describe(&out));
        assert!(blob_names(&ctx.root()).is_empty(), "{site}: a blob appeared");
        assert_eq!(ingest_entries(&ctx.root()).len(), 1, "{site}: expected one temp file");
        let (code, r) = fsck(&ctx, &[]);
        assert_eq!((code, count(&r, "temp_residue")), (0, 1), "{site}: residue is not damage by default: {r:#}");
        let (code, _) = fsck(&ctx, &["--strict"]);
        assert_eq!(code, 1, "{site}: --strict counts residue");
        let (code, r) = fsck(&ctx, &["--strict", "--repair"]);
        assert_eq!(code, 0, "{site}: repaired residue no longer counts: {r:#}");
        assert!(ingest_entries(&ctx.root()).is_empty());
        assert_fsck_clean(&ctx, 0);
    }
    // A rerun converges on the same digest.
    let out = run_child(&ctx, "ingest", &arg, None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(child_value(&out, "DIGEST"), Some(stream_digest(11, mib).to_string()));
    assert_fsck_clean(&ctx, 1);
    // prune also reaps temp residue.
    let out = run_child(&ctx, "ingest", &arg, Some("blob.write:kill9"));
    assert_eq!(killed_by(&out.status), Some(9));
    let out = ctx.ok(&["prune", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total: 1 blob deleted"), "{}", describe(&out));
    assert!(ingest_entries(&ctx.root()).is_empty() && blob_names(&ctx.root()).is_empty());
    assert_fsck_clean(&ctx, 0);
}

/// ENOSPC/EIO injected at each blob site: the error surfaces; no temp is left; a blob appears
/// only when the failure came after its rename (an orphan, which prune removes).
#[test]
fn e1_injected_errors_at_blob_sites_surface_and_leave_no_temp() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    for site in ["blob.write", "blob.before_rename", "blob.after_rename"] {
        for (action, errno) in [("enospc", libc::ENOSPC), ("eio", libc::EIO)] {
            let out = run_child(&ctx, "ingest_fails", &format!("12,3,{errno}"), Some(&format!("{site}:{action}")));
            assert!(out.status.success(), "{site}:{action}: {}", describe(&out));
            assert!(ingest_entries(&ctx.root()).is_empty(), "{site}:{action}: temp left");
            let orphans = usize::from(site == "blob.after_rename");
            assert_eq!(blob_names(&ctx.root()).len(), orphans, "{site}:{action}");
            assert_fsck_clean(&ctx, orphans);
            ctx.ok(&["prune"]);
        }
    }
}

/// E2: kill -9 right after the rename: an unreferenced blob only; reuse and prune both work.
#[test]
fn e2_kill_after_rename_leaves_one_orphan() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let out = run_child(&ctx, "ingest", "21,2", Some("blob.after_rename:kill9"));
    assert_eq!(killed_by(&out.status), Some(9), "{}", describe(&out));
    let digest = stream_digest(21, 2);
    assert_eq!(blob_names(&ctx.root()), vec![digest.hex()]);
    assert_fsck_clean(&ctx, 1);
    // The rebuild reuses it (already exists = success).
    let out = run_child(&ctx, "ingest", "21,2", None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(child_value(&out, "DIGEST"), Some(digest.to_string()));
    assert!(ingest_entries(&ctx.root()).is_empty());
    let out = ctx.ok(&["prune"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("deleted {digest}")) && stdout.contains("total: 1 blob deleted"), "{stdout}");
    assert!(blob_names(&ctx.root()).is_empty());
    assert_fsck_clean(&ctx, 0);
}

/// E3: kill -9 and ENOSPC/EIO at each index site: index.json is old or new, never torn.
#[test]
fn e3_index_write_faults_never_tear_the_index() {
    let ctx = TestContext::new();
    let store = Store::open(&ctx.root()).unwrap();
    let layer = store.write_blob(b"e3 layer", None).unwrap();
    let old = write_image(&store, "old", &[layer]);
    let new = write_image(&store, "new", &[layer]);
    let reference = Reference::parse("e3/app:1").unwrap();
    let arg = |errno: Option<i32>| {
        let base = format!("{reference},{},{}", new.digest, new.size);
        errno.map_or(base.clone(), |e| format!("{base},{e}"))
    };
    let sites = ["index.write", "index.before_rename", "index.before_dir_fsync"];
    for site in sites {
        for action in ["kill9", "enospc", "eio"] {
            store.set_tag(&reference, old.clone()).unwrap();
            let errno = match action {
                "enospc" => Some(libc::ENOSPC),
                "eio" => Some(libc::EIO),
                _ => None,
            };
            let out = run_child(&ctx, "set_tag", &arg(errno), Some(&format!("{site}:{action}")));
            if errno.is_some() {
                assert!(out.status.success(), "{site}:{action}: error not surfaced: {}", describe(&out));
            } else {
                assert_eq!(killed_by(&out.status), Some(9), "{site}:{action}: {}", describe(&out));
            }
            // The index decodes and names the old or the new manifest, whose blobs all exist.
            let tag = store.get_tag(&reference).unwrap_or_else(|e| panic!("{site}:{action}: {e}"));
            let tag = tag.unwrap_or_else(|| panic!("{site}:{action}: tag lost"));
            let before_rename = site != "index.before_dir_fsync";
            let expected = if before_rename { &old } else { &new };
            assert_eq!(&tag, expected, "{site}:{action}");
            let (code, r) = fsck(&ctx, &[]);
            assert_eq!((code, count(&r, "missing")), (0, 0), "{site}:{action}: {r:#}");
            fsck(&ctx, &["--repair"]);
            assert_fsck_clean(&ctx, 2); // the other image's config and manifest
            // Retry works.
            store.set_tag(&reference, new.clone()).unwrap();
            assert_eq!(store.get_tag(&reference).unwrap(), Some(new.clone()));
        }
    }
}

/// E4: real ENOSPC from a 16 MiB tmpfs (mounted in a private mount namespace).
#[test]
fn e4_enospc_on_a_small_tmpfs_leaves_nothing_behind() {
    let ctx = TestContext::new();
    let mnt = ctx.path().join("tmpfs");
    fs::create_dir(&mnt).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = r#"mount -t tmpfs -o size=16m slipway-e4 "$1" && shift && exec "$@""#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&mnt)
        .arg(&exe)
        .args(["--exact", CHILD, "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_OP, "enospc")
        .env(CHILD_ROOT, mnt.join("root"))
        .env_remove("SLIPWAY_FAILPOINT")
        .output()
        .expect("unshare must exist (util-linux) and this test runs as root");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(child_value(&out, "ENOSPC").is_some(), "{}", describe(&out));
    // The mount lived only in the child's namespace.
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains("slipway-e4"));
}

fn enospc_child(root: &Path) {
    let store = Store::open(root).expect("open store on tmpfs");
    let err = ingest_stream(&store, 41, big_mib().max(20)).expect_err("a layer bigger than the disk must fail");
    assert!(err.contains(&format!("errno Some({})", libc::ENOSPC)), "not ENOSPC: {err}");
    println!("ENOSPC={err}");
    assert!(blob_names(root).is_empty(), "a blob appeared");
    assert!(ingest_entries(root).is_empty(), "temp left behind");
    // After the failure, space is back: a small blob commits.
    let (d, _) = ingest_stream(&store, 42, 2).expect("small blob after ENOSPC");
    assert!(store.has_blob(&d));
    let out = Command::new(slipway_bin()).arg("--root").arg(root).args(["fsck", "--strict"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 orphans"), "{}", describe(&out));
}

/// E5 (store side): a flipped byte, a truncated blob and a symlink to a canary are each named by
/// digest; reads refuse them; `--repair` quarantines them without touching the canary.
#[test]
fn e5_fsck_names_each_damaged_blob() {
    let ctx = TestContext::new();
    let store = Store::open(&ctx.root()).unwrap();
    let canary = ctx.path().join("canary");
    fs::write(&canary, b"canary").unwrap();
    let blobs: Vec<Digest> =
        ["flipped", "truncated", "symlinked"].iter().map(|s| store.write_blob(s.as_bytes(), None).unwrap()).collect();
    let m = write_image(&store, "e5", &blobs);
    store.set_tag(&Reference::parse("e5/app:1").unwrap(), m).unwrap();
    let replace = |d: &Digest, f: &dyn Fn(&Path)| {
        let p = store.blob_path(d);
        fs::remove_file(&p).unwrap();
        f(&p);
    };
    replace(&blobs[0], &|p| fs::write(p, b"flipPed").unwrap());
    replace(&blobs[1], &|p| fs::write(p, b"trunc").unwrap());
    replace(&blobs[2], &|p| std::os::unix::fs::symlink(&canary, p).unwrap());
    let (code, r) = fsck(&ctx, &[]);
    assert_eq!(code, 1, "{r:#}");
    let named: Vec<String> = r["corrupt"].as_array().unwrap().iter().map(|c| c["digest"].to_string()).collect();
    for d in &blobs {
        assert!(named.iter().any(|n| n.contains(&d.to_string())), "{d} not named in {r:#}");
        let err = store.read_blob(d, 1 << 20).unwrap_err();
        assert!(err.to_string().contains(&d.to_string()), "{err}");
    }
    let (code, r) = fsck(&ctx, &["--repair"]);
    assert_eq!(code, 1, "referenced blobs are now missing: {r:#}");
    assert_eq!(count(&r, "missing"), 3, "{r:#}");
    assert_eq!(fs::read(&canary).unwrap(), b"canary");
    assert_eq!(fs::read_dir(ctx.root().join("quarantine")).unwrap().count(), 3);
    // Writing the right content again heals the store.
    for s in ["flipped", "truncated", "symlinked"] {
        store.write_blob(s.as_bytes(), None).unwrap();
    }
    assert_fsck_clean(&ctx, 0);
}

/// E7: a metadata DB of random bytes or zero length is moved aside once; tags survive.
#[test]
fn e7_corrupt_metadata_db_is_moved_aside_and_tags_survive() {
    let ctx = TestContext::new();
    let reference = Reference::parse("e7/app:1").unwrap();
    let manifest = {
        let store = Store::open(&ctx.root()).unwrap();
        let layer = store.write_blob(b"e7 layer", None).unwrap();
        let m = write_image(&store, "e7", &[layer]);
        store.set_tag(&reference, m.clone()).unwrap();
        store.add_root("cache:k", &layer).unwrap();
        m
    };
    let db = ctx.root().join("metadata.db");
    let garbage: Vec<u8> = chunk(7, 0)[..12288].to_vec();
    for (i, content) in [garbage, Vec::new()].into_iter().enumerate() {
        for suffix in ["-wal", "-shm"] {
            let _ = fs::remove_file(ctx.root().join(format!("metadata.db{suffix}")));
        }
        fs::write(&db, &content).unwrap();
        let out = ctx.run(&["fsck", "--strict"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("moved it aside").count(), 1, "warn once: {stderr}");
        let aside = fs::read_dir(ctx.root())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("metadata.db.corrupt-"))
            .count();
        assert_eq!(aside, i + 1);
        // Starts cleanly the next time, without another warning.
        let out = ctx.ok(&["fsck", "--strict"]);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("moved it aside"));
        let store = Store::open(&ctx.root()).unwrap();
        assert_eq!(store.get_tag(&reference).unwrap(), Some(manifest.clone()));
    }
    // The cache root went with the database: its layer is still referenced by the tag.
    assert_fsck_clean(&ctx, 0);
}

/// E8: kill -9 while holding the store lock; TMPDIR elsewhere; read-only store.
#[test]
fn e8_killed_lock_holder_does_not_block_the_next_run() {
    let ctx = TestContext::new();
    let store = Store::open(&ctx.root()).unwrap();
    let layer = store.write_blob(b"e8 layer", None).unwrap();
    let m = write_image(&store, "e8", &[layer]);
    // The child sleeps inside the exclusive lock (tag write, before the rename).
    let mut holder =
        child(&ctx, "set_tag", &format!("e8/app:1,{},{}", m.digest, m.size), Some("index.before_rename:sleep(60000)"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ingest_entries(&ctx.root()).iter().any(|p| p.to_string_lossy().contains("index-")) {
        assert!(Instant::now() < deadline, "child never reached the failpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lock = fs::File::open(ctx.root().join("lock")).unwrap();
    assert!(
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared).is_err(),
        "the child should hold the exclusive lock"
    );
    drop(lock);
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let started = Instant::now();
    let out = ctx.ok(&["prune"]);
    assert!(started.elapsed() < Duration::from_secs(10), "prune waited {:?}", started.elapsed());
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted temp"), "{}", describe(&out));
    assert!(store.get_tag(&Reference::parse("e8/app:1").unwrap()).unwrap().is_none());
    assert_fsck_clean(&ctx, 0);

    // The CLI killed inside prune's exclusive lock: the next run proceeds at once.
    let out = ctx.cmd().args(["prune"]).env("SLIPWAY_FAILPOINT", "gc.before_sweep:kill9").output().unwrap();
    assert_eq!(killed_by(&out.status), Some(9), "{}", describe(&out));
    let started = Instant::now();
    ctx.ok(&["prune"]);
    assert!(started.elapsed() < Duration::from_secs(10));

    // TMPDIR on another filesystem never matters: temp files live in <root>/ingest.
    let tmpdir = Path::new("/dev/shm").join(format!("slipway-e8-{}", std::process::id()));
    fs::create_dir_all(&tmpdir).unwrap();
    let out = child(&ctx, "ingest", "81,2", None).env("TMPDIR", &tmpdir).output().unwrap();
    let _ = fs::remove_dir_all(&tmpdir);
    assert!(out.status.success(), "{}", describe(&out));
    assert_fsck_clean(&ctx, 1);

    // A read-only store is refused before any work.
    let root = ctx.root();
    let before = blob_names(&root);
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            r#"mount --bind -o ro "$1" "$1" && shift && exec "$@""#,
            "sh",
        ])
        .arg(&root)
        .arg(slipway_bin())
        .arg("--root")
        .arg(&root)
        .args(["prune", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"), "{}", describe(&out));
    assert_eq!(blob_names(&root), before);
}

/// F3: a process with a lease keeps committing while another prunes in a loop.
#[test]
fn f3_prune_in_a_loop_never_sweeps_leased_blobs() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let secs: u64 = std::env::var("SLIPWAY_IT_F3_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let writer = child(&ctx, "lease_writer", &secs.to_string(), None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let prunes = std::thread::scope(|scope| {
        let pruner = scope.spawn(|| {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ctx.ok(&["prune", "--all"]);
                n += 1;
            }
            n
        });
        let out = writer.wait_with_output().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(out.status.success(), "lease writer: {}", describe(&out));
        let committed: usize = child_value(&out, "COMMITTED").unwrap().parse().unwrap();
        assert!(committed > 10, "writer committed only {committed} blobs");
        pruner.join().unwrap()
    });
    assert!(prunes >= 2, "prune ran only {prunes} times");
    // With the lease gone, prune leaves exactly the tagged closure: manifest, config, 3 layers.
    ctx.ok(&["prune", "--all"]);
    assert_eq!(blob_names(&ctx.root()).len(), 5);
    assert_fsck_clean(&ctx, 0);
    // Untag + prune --all: the store is empty (N10).
    let store = Store::open(&ctx.root()).unwrap();
    store.remove_tag(&Reference::parse("f3/app:1").unwrap()).unwrap().expect("tag set by the writer");
    ctx.ok(&["prune", "--all"]);
    assert!(blob_names(&ctx.root()).is_empty());
    assert!(ingest_entries(&ctx.root()).is_empty());
    assert!(store.leases().unwrap().is_empty());
    assert_fsck_clean(&ctx, 0);
}

/// N5, deterministically: a prune that starts while a leased commit sits between its rename and
/// its lease record waits for the commit, then keeps the blob.
#[test]
fn f3_prune_waits_for_a_commit_between_rename_and_lease_record() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let committer = child(&ctx, "slow_leased_commit", "", Some("blob.after_rename:sleep(1500)"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_names(&ctx.root()).is_empty() {
        assert!(Instant::now() < deadline, "child never renamed its blob");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The blob is visible but not yet leased, and the commit holds the shared lock, so prune
    // (exclusive) must wait for the lease record.
    let lock = fs::File::open(ctx.root().join("lock")).unwrap();
    let free = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
    drop(lock);
    assert!(!free, "the commit should be inside its critical section");
    let out = ctx.ok(&["prune", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total: 0 blobs deleted"), "{}", describe(&out));
    let out = committer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    ctx.ok(&["prune", "--all"]);
    assert!(blob_names(&ctx.root()).is_empty());
    assert_fsck_clean(&ctx, 0);
}

/// A lease whose holder was killed pins nothing: the next prune removes the lease and its blobs
/// (N10 after a crash), without waiting for the 24 h expiry.
#[test]
fn f3_a_killed_lease_holder_pins_nothing() {
    let ctx = TestContext::new();
    Store::open(&ctx.root()).unwrap();
    let mut holder =
        child(&ctx, "lease_and_hang", "", None).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(holder.stdout.take().unwrap());
    while !line.starts_with("DIGEST=") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "child ended early");
    }
    // While it lives, its blob survives prune --all.
    ctx.ok(&["prune", "--all"]);
    assert_eq!(blob_names(&ctx.root()).len(), 1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let as_is = Store::open_as_is(&ctx.root()).unwrap();
    assert_eq!(as_is.leases().unwrap().iter().map(|l| l.alive).collect::<Vec<_>>(), vec![false]);
    // The next open reclaims the dead lease; prune then frees its blob.
    let store = Store::open(&ctx.root()).unwrap();
    assert_eq!(store.reclaimed().leases_expired, 1);
    assert!(store.leases().unwrap().is_empty());
    let out = ctx.ok(&["prune", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total: 1 blob deleted"), "{}", describe(&out));
    assert!(blob_names(&ctx.root()).is_empty());
    assert!(store.leases().unwrap().is_empty());
    assert_fsck_clean(&ctx, 0);
}

fn lease_writer_child(root: &Path, secs: u64) {
    let store = Store::open(root).expect("open store");
    let lease = store.lease("f3 writer").expect("lease");
    let mut committed: Vec<Digest> = Vec::new();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    while Instant::now() < until {
        let mut ingest = store.ingest().expect("ingest");
        ingest.write_all(&chunk(1000 + i, 0)[..64 << 10]).expect("write");
        let (d, _) = ingest.commit(None, Some(&lease)).expect("commit");
        committed.push(d);
        i += 1;
        if i % 16 == 0 {
            for d in &committed {
                assert!(store.has_blob(d), "leased blob {d} was swept");
            }
        }
    }
    for d in &committed {
        assert!(store.has_blob(d), "leased blob {d} was swept");
    }
    // The image record is written while the lease still pins its parts (children first).
    let layers = &committed[committed.len() - 3..];
    let config = store.write_blob(b"{\"f3\":true}", Some(&lease)).expect("config");
    let m = ImageManifest::oci(
        Descriptor::new(MediaType::OciConfig, config, 11),
        layers.iter().map(|d| Descriptor::new(MediaType::OciLayer, *d, 64 << 10)).collect(),
    );
    let bytes = canonical::to_bytes(&m);
    let md = store.write_blob(&bytes, Some(&lease)).expect("manifest");
    store
        .set_tag(
            &Reference::parse("f3/app:1").unwrap(),
            Descriptor::new(MediaType::OciManifest, md, bytes.len() as u64),
        )
        .expect("tag");
    drop(lease);
    println!("COMMITTED={}", committed.len());
}
