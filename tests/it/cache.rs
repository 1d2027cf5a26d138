//! The build cache database shared by several slipway processes (CI runners sharing a store):
//! real processes writing one `cache.db` at once, and one killed in the middle of its writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use slipway::cache::{CacheDb, KeyInputs, LayerRecord, MissReason, Record, Slot};
use slipway::oci::{Descriptor, DiffId, Digest, MediaType};

use crate::support::{TestContext, describe, killed_by, self_child};

const CHILD: &str = "cache::child_entry";
const CHILD_DB: &str = "SLIPWAY_IT_CACHE_DB";
const CHILD_WRITER: &str = "SLIPWAY_IT_CACHE_WRITER";
const CHILD_COUNT: &str = "SLIPWAY_IT_CACHE_COUNT";

/// Records each writer makes (`SLIPWAY_TEST_CACHE_RECORDS` scales it).
fn count() -> u32 {
    std::env::var("SLIPWAY_TEST_CACHE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn inputs(writer: &str, i: u32) -> KeyInputs {
    let mut k = KeyInputs::default();
    k.add("parent", "scratch").add("instruction", format!("RUN step {i}")).add("arg:WRITER", writer);
    k
}

fn record(i: u32) -> Record {
    let n = i.to_le_bytes();
    Record {
        layer: Some(LayerRecord {
            diff_id: DiffId(Digest::of(&n)),
            blob: Descriptor::new(MediaType::OciLayerGzip, Digest::of(&[&n[..], b"gz"].concat()), u64::from(i)),
        }),
        created: 1_700_000_000,
    }
}

/// The slot every writer shares for step `i`: writers race on the same rows.
fn slot(i: u32) -> Slot {
    Slot::new(&format!("/ctx\0Dockerfile\0build\0{}", i % 50))
}

/// The child half: writes `count` records and remembered slots as writer `writer` (forever when
/// the count is 0), then exits. Does nothing unless `SLIPWAY_IT_CACHE_DB` is set.
#[test]
fn child_entry() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let writer = std::env::var(CHILD_WRITER).expect("writer name");
    let count: u32 = std::env::var(CHILD_COUNT).expect("count").parse().expect("a number");
    let db = CacheDb::open(Path::new(&path)).expect("open the cache database");
    let mut i = 0;
    while count == 0 || i < count {
        let k = inputs(&writer, i);
        db.insert(&k.key(), &record(i)).expect("insert");
        db.remember(&slot(i), &k, None).expect("remember");
        i += 1;
    }
}

fn spawn(db: &Path, writer: &str, count: u32) -> Child {
    self_child(CHILD)
        .env(CHILD_DB, db)
        .env(CHILD_WRITER, writer)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a writer process")
}

fn db_path(ctx: &TestContext) -> PathBuf {
    ctx.root().join("cache").join("cache.db")
}

#[test]
fn processes_share_one_cache_database() {
    let ctx = TestContext::new();
    let path = db_path(&ctx);
    let n = count();
    let writers = ["a", "b", "c"];
    let children: Vec<Child> = writers.iter().map(|w| spawn(&path, w, n)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a writer failed: {}", describe(&out));
    }
    let db = CacheDb::open(&path).unwrap();
    for w in writers {
        for i in 0..n {
            assert_eq!(db.lookup(&inputs(w, i).key()).unwrap(), Some(record(i)), "writer {w} record {i}");
        }
    }
    assert_eq!(db.layer_blobs().unwrap().len(), writers.len() * n as usize);
    // Each shared slot remembers one writer's last inputs, whole: it explains one writer's step
    // as not differing, and another writer's as its ARG.
    for i in n - 50..n {
        let whys: Vec<MissReason> =
            writers.iter().map(|w| db.explain(&slot(i), &inputs(w, i), None).unwrap()).collect();
        assert!(whys.contains(&MissReason::NoRecord), "slot {i}: {whys:?}");
        assert!(
            whys.iter()
                .all(|w| *w == MissReason::NoRecord
                    || matches!(w, MissReason::ArgChanged { name, .. } if name == "WRITER")),
            "slot {i}: {whys:?}"
        );
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_a_usable_database() {
    let ctx = TestContext::new();
    let path = db_path(&ctx);
    let mut child = spawn(&path, "killed", 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait until it has written a few hundred records, then kill it mid-stream.
    let seen = loop {
        assert!(Instant::now() < deadline, "the writer wrote nothing");
        if let Ok(db) = CacheDb::open(&path) {
            let n = db.layer_blobs().unwrap().len();
            if n >= 200 {
                break n;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(killed_by(&status), Some(libc::SIGKILL));
    let db = CacheDb::open(&path).unwrap();
    let left = db.layer_blobs().unwrap().len();
    assert!(left >= seen, "records lost: {left} < {seen}");
    for i in 0..seen as u32 {
        assert_eq!(db.lookup(&inputs("killed", i).key()).unwrap(), Some(record(i)));
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    // Still writable.
    let k = inputs("after", 0);
    db.insert(&k.key(), &record(0)).unwrap();
    assert_eq!(db.lookup(&k.key()).unwrap(), Some(record(0)));
}
