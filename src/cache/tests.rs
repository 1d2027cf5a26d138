//! Unit tests of the cache: records, remembered slots, every miss reason and its text.

use std::sync::Arc;

use super::*;
use crate::oci::{Descriptor, DiffId, Digest, MediaType};

fn db() -> (tempfile::TempDir, CacheDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = CacheDb::open(&dir.path().join("cache").join("cache.db")).unwrap();
    (dir, db)
}

fn inputs(pairs: &[(&str, &str)]) -> KeyInputs {
    let mut k = KeyInputs::default();
    for (n, v) in pairs {
        k.add(*n, *v);
    }
    k
}

fn step(parent: &str, instruction: &str) -> KeyInputs {
    inputs(&[("parent", parent), ("instruction", instruction), ("arg:VERSION", "1.2"), ("platform", "linux/amd64")])
}

fn layer(n: u8) -> Record {
    Record {
        layer: Some(LayerRecord {
            diff_id: DiffId(Digest::of(&[n])),
            blob: Descriptor::new(MediaType::OciLayerGzip, Digest::of(&[n, n]), 100 + u64::from(n)),
        }),
        created: 1_700_000_000 + i64::from(n),
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(String, Digest)> {
    list.iter().map(|(p, c)| (p.to_string(), Digest::of(c.as_bytes()))).collect()
}

#[test]
fn records_round_trip_and_first_writer_wins() {
    let (_d, db) = db();
    let (a, b) = (step("scratch", "RUN a").key(), step("scratch", "RUN b").key());
    assert_eq!(db.lookup(&a).unwrap(), None);
    db.insert(&a, &layer(1)).unwrap();
    let empty = Record { layer: None, created: 5 };
    db.insert(&b, &empty).unwrap();
    db.insert(&a, &layer(2)).unwrap();
    assert_eq!(db.lookup(&a).unwrap(), Some(layer(1)));
    assert_eq!(db.lookup(&b).unwrap(), Some(empty));
    let blobs = db.layer_blobs().unwrap();
    assert_eq!(blobs, vec![(a, layer(1).layer.unwrap().blob)]);
    db.forget(&a).unwrap();
    db.forget(&a).unwrap();
    assert_eq!(db.lookup(&a).unwrap(), None);
    assert!(db.layer_blobs().unwrap().is_empty());
}

#[test]
fn malformed_record_is_a_miss_and_is_dropped() {
    let (d, db) = db();
    let key = step("scratch", "RUN a").key();
    db.insert(&key, &layer(1)).unwrap();
    let raw = rusqlite::Connection::open(d.path().join("cache/cache.db")).unwrap();
    raw.execute("UPDATE records SET diff_id = 'sha256:nothex'", []).unwrap();
    assert_eq!(db.lookup(&key).unwrap(), None);
    let left: i64 = raw.query_row("SELECT count(*) FROM records", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
}

#[test]
fn records_survive_reopening_and_a_garbage_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let key = step("scratch", "RUN a").key();
    CacheDb::open(&path).unwrap().insert(&key, &layer(3)).unwrap();
    assert_eq!(CacheDb::open(&path).unwrap().lookup(&key).unwrap(), Some(layer(3)));
    for f in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    std::fs::write(&path, [0x5a; 8192]).unwrap();
    let db = CacheDb::open(&path).unwrap();
    assert_eq!(db.lookup(&key).unwrap(), None);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("cache.db.corrupt-"));
    assert!(aside);
}

#[test]
fn a_hit_is_a_use() {
    let (_d, db) = db();
    let (a, b) = (step("scratch", "RUN a").key(), step("scratch", "RUN b").key());
    db.insert(&a, &layer(1)).unwrap();
    db.insert(&b, &layer(2)).unwrap();
    let mut before = db.last_used().unwrap();
    before.sort_by_key(|(k, _)| k.to_string());
    let mut expected = vec![(a, layer(1).created), (b, layer(2).created)];
    expected.sort_by_key(|(k, _)| k.to_string());
    assert_eq!(before, expected, "a new record was used when written");
    db.lookup(&a).unwrap();
    let after: std::collections::BTreeMap<String, i64> =
        db.last_used().unwrap().into_iter().map(|(k, t)| (k.to_string(), t)).collect();
    assert!(after[&a.to_string()] > layer(1).created + 1_000_000, "{after:?}");
    assert_eq!(after[&b.to_string()], layer(2).created);
}

#[test]
fn a_version_1_database_is_migrated_and_its_records_were_used_when_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(&format!("{} PRAGMA user_version = 1;", super::db::SCHEMA_V1_FOR_TESTS)).unwrap();
    let key = step("scratch", "RUN a").key();
    raw.execute(
        "INSERT INTO records (key, diff_id, media_type, digest, size, created) VALUES (?1, NULL, NULL, NULL, NULL, 7)",
        [key.to_string()],
    )
    .unwrap();
    drop(raw);
    let db = CacheDb::open(&path).unwrap();
    assert_eq!(db.last_used().unwrap(), vec![(key, 7)]);
    assert_eq!(db.lookup(&key).unwrap(), Some(Record { layer: None, created: 7 }));
}

#[test]
fn a_version_2_database_gains_the_remote_sources_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    let v2 = format!(
        "{} ALTER TABLE records ADD COLUMN used INTEGER; PRAGMA user_version = 2;",
        super::db::SCHEMA_V1_FOR_TESTS
    );
    raw.execute_batch(&v2).unwrap();
    drop(raw);
    let db = CacheDb::open(&path).unwrap();
    let version = super::RemoteVersion { digest: Digest::of(b"x"), etag: None, last_modified: None, name: None };
    db.remember_remote("https://h/x", &version).unwrap();
    assert_eq!(db.remote_version("https://h/x").unwrap(), Some(version));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    drop(CacheDb::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = CacheDb::open(&path).unwrap_err();
    assert!(matches!(err, CacheError::SchemaTooNew { found: 99, supported: 3, .. }), "{err}");
}

/// Two connections (as two processes sharing a store have) writing at once, each seeing the
/// other's records; WAL and the busy timeout make the writers wait instead of failing.
#[test]
fn two_connections_write_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache/cache.db");
    let dbs = [Arc::new(CacheDb::open(&path).unwrap()), Arc::new(CacheDb::open(&path).unwrap())];
    let n = 200u32;
    let threads: Vec<_> = dbs
        .iter()
        .enumerate()
        .map(|(w, db)| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..n {
                    let key = step("scratch", &format!("RUN {w} {i}")).key();
                    db.insert(&key, &layer((i % 200) as u8)).unwrap();
                    let slot = Slot::new(&format!("ctx\0Dockerfile\0build\0{i}"));
                    db.remember(&slot, &step("scratch", &format!("RUN {w} {i}")), None).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (w, db) in dbs.iter().enumerate() {
        let other = 1 - w;
        for i in [0, n / 2, n - 1] {
            let key = step("scratch", &format!("RUN {other} {i}")).key();
            assert_eq!(db.lookup(&key).unwrap(), Some(layer((i % 200) as u8)));
        }
    }
    assert_eq!(dbs[0].layer_blobs().unwrap().len(), 2 * n as usize);
}

#[test]
fn explain_names_the_first_differing_component() {
    let (_d, db) = db();
    let slot = Slot::new("/ctx\0Dockerfile\0build\0step-3");
    let old = step("sha256:aaaa", "RUN make");
    assert_eq!(db.explain(&slot, &old, None).unwrap(), MissReason::NoRecord);
    db.remember(&slot, &old, None).unwrap();
    // Nothing differs: the record must have been pruned.
    assert_eq!(db.explain(&slot, &old, None).unwrap(), MissReason::NoRecord);
    // The parent comes first, so it wins over an instruction change.
    let both = step("sha256:bbbb", "RUN make all");
    assert_eq!(db.explain(&slot, &both, None).unwrap(), MissReason::ParentChanged);
    let instr = step("sha256:aaaa", "RUN make all");
    assert_eq!(
        db.explain(&slot, &instr, None).unwrap(),
        MissReason::Changed { component: "instruction".into(), old: "RUN make".into(), new: "RUN make all".into() }
    );
    let mut arg = inputs(&[("parent", "sha256:aaaa"), ("instruction", "RUN make"), ("arg:VERSION", "1.3")]);
    arg.add("platform", "linux/amd64");
    assert_eq!(
        db.explain(&slot, &arg, None).unwrap(),
        MissReason::ArgChanged { name: "VERSION".into(), old: Some("1.2".into()), new: Some("1.3".into()) }
    );
    // A component that disappeared.
    let fewer = inputs(&[("parent", "sha256:aaaa"), ("instruction", "RUN make"), ("platform", "linux/amd64")]);
    assert_eq!(
        db.explain(&slot, &fewer, None).unwrap(),
        MissReason::ArgChanged { name: "VERSION".into(), old: Some("1.2".into()), new: None }
    );
    let mut forced = old.clone();
    forced.add("no-cache", "1763829609");
    assert_eq!(db.explain(&slot, &forced, None).unwrap(), MissReason::NoCache);
    // Another slot knows nothing.
    assert_eq!(db.explain(&Slot::new("other"), &instr, None).unwrap(), MissReason::NoRecord);
    // remember replaces what the slot was built from.
    db.remember(&slot, &instr, None).unwrap();
    assert_eq!(db.explain(&slot, &instr, None).unwrap(), MissReason::NoRecord);
}

#[test]
fn explain_base_env_and_key_version() {
    let (d, db) = db();
    let slot = Slot::new("s");
    let base = |b: &str, env: &str| inputs(&[("base", b), ("instruction", "RUN true"), ("env", env)]);
    let old_base = Digest::of(b"old").to_string();
    let new_base = Digest::of(b"new").to_string();
    db.remember(&slot, &base(&old_base, "PATH=/bin\nA=1"), None).unwrap();
    let why = db.explain(&slot, &base(&new_base, "PATH=/bin\nA=1"), None).unwrap();
    assert_eq!(why, MissReason::BaseChanged { old: old_base.clone(), new: new_base });
    let why = db.explain(&slot, &base(&old_base, "PATH=/bin\nA=2"), None).unwrap();
    assert_eq!(why, MissReason::EnvChanged { name: "A".into(), old: Some("1".into()), new: Some("2".into()) });
    let why = db.explain(&slot, &base(&old_base, "PATH=/bin"), None).unwrap();
    assert_eq!(why, MissReason::EnvChanged { name: "A".into(), old: Some("1".into()), new: None });
    let why = db.explain(&slot, &base(&old_base, "PATH=/bin\nA=1\nB=x"), None).unwrap();
    assert_eq!(why, MissReason::EnvChanged { name: "B".into(), old: None, new: Some("x".into()) });
    // Not NAME=VALUE entries: the whole component.
    let why = db.explain(&slot, &base(&old_base, "garbage"), None).unwrap();
    assert!(matches!(why, MissReason::Changed { ref component, .. } if component == "env"), "{why:?}");
    let raw = rusqlite::Connection::open(d.path().join("cache/cache.db")).unwrap();
    raw.execute("UPDATE slots SET key_version = 0", []).unwrap();
    let why = db.explain(&slot, &base(&new_base_again(), "PATH=/bin\nA=1"), None).unwrap();
    assert_eq!(why, MissReason::KeyVersionChanged { old: 0, new: KEY_VERSION });
}

fn new_base_again() -> String {
    Digest::of(b"new").to_string()
}

#[test]
fn explain_files_walks_the_two_lists() {
    let (_d, db) = db();
    let slot = Slot::new("copy");
    let with_sources = |s: &str| inputs(&[("instruction", "COPY src/ /app"), ("sources", s)]);
    let old = files(&[("src/a.rs", "a"), ("src/main.rs", "main"), ("src/old.rs", "old")]);
    db.remember(&slot, &with_sources("sha256:1"), Some(&old)).unwrap();
    // Given unsorted: the list is sorted before comparing.
    let new = files(&[("src/new.rs", "new"), ("src/main.rs", "main2"), ("src/a.rs", "a")]);
    let why = db.explain(&slot, &with_sources("sha256:2"), Some(&new)).unwrap();
    let MissReason::FilesChanged { changes, more } = &why else { panic!("{why:?}") };
    assert_eq!(*more, 0);
    assert_eq!(
        changes,
        &[
            FileChange::Modified { path: "src/main.rs".into(), old: Digest::of(b"main"), new: Digest::of(b"main2") },
            FileChange::Added { path: "src/new.rs".into() },
            FileChange::Removed { path: "src/old.rs".into() },
        ]
    );
    // Same files but another sources digest (a mode changed): the component itself.
    let why = db.explain(&slot, &with_sources("sha256:2"), Some(&old)).unwrap();
    assert!(matches!(why, MissReason::Changed { ref component, .. } if component == "sources"), "{why:?}");
    // No file list today: the component itself.
    let why = db.explain(&slot, &with_sources("sha256:2"), None).unwrap();
    assert!(matches!(why, MissReason::Changed { ref component, .. } if component == "sources"), "{why:?}");
}

/// A big file list is remembered once and rewritten only when it changes; explaining walks it.
/// `SLIPWAY_TEST_CACHE_FILES` scales it (200000 for the figure in the report).
#[test]
fn big_file_lists_stay_cheap() {
    let n: usize = std::env::var("SLIPWAY_TEST_CACHE_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let (d, db) = db();
    let slot = Slot::new("big");
    let list: Vec<(String, Digest)> =
        (0..n).map(|i| (format!("src/module{:03}/file{i:07}.rs", i % 500), Digest::of(&i.to_le_bytes()))).collect();
    let k = inputs(&[("sources", "sha256:1")]);
    let t = std::time::Instant::now();
    db.remember(&slot, &k, Some(&list)).unwrap();
    let first = t.elapsed();
    let raw = rusqlite::Connection::open(d.path().join("cache/cache.db")).unwrap();
    let size: i64 = raw.query_row("SELECT length(files) FROM slots", [], |r| r.get(0)).unwrap();
    let t = std::time::Instant::now();
    db.remember(&slot, &k, Some(&list)).unwrap();
    let again = t.elapsed();
    let mut changed = list.clone();
    changed[n / 2].1 = Digest::of(b"changed");
    let t = std::time::Instant::now();
    let why = db.explain(&slot, &inputs(&[("sources", "sha256:2")]), Some(&changed)).unwrap();
    let explain = t.elapsed();
    assert_eq!(
        why,
        MissReason::FilesChanged {
            changes: vec![FileChange::Modified {
                path: changed[n / 2].0.clone(),
                old: list[n / 2].1,
                new: Digest::of(b"changed")
            }],
            more: 0
        }
    );
    eprintln!("{n} files: remember {first:?} ({size} bytes stored), again {again:?}, explain {explain:?}");
    // Compact: the (incompressible) digests and little more; the paths, ~30 bytes each, compress.
    assert!(size < (n as i64) * 40 + (64 << 10), "{size} bytes for {n} files");
}

#[test]
fn miss_reason_texts() {
    let d = |s: &str| Digest::of(s.as_bytes());
    let texts: Vec<String> = [
        MissReason::NoCache,
        MissReason::NoCacheFilter { stage: "build".into() },
        MissReason::NoRecord,
        MissReason::KeyVersionChanged { old: 1, new: 2 },
        MissReason::BaseChanged { old: d("a").to_string(), new: d("b").to_string() },
        MissReason::BaseChanged { old: "scratch".into(), new: "stage:builder".into() },
        MissReason::ParentChanged,
        MissReason::ArgChanged { name: "VERSION".into(), old: Some("1.2".into()), new: Some("1.3".into()) },
        MissReason::ArgChanged { name: "VERSION".into(), old: None, new: Some("1.3".into()) },
        MissReason::ArgChanged { name: "VERSION".into(), old: Some("1.2".into()), new: None },
        MissReason::EnvChanged { name: "PATH".into(), old: Some("/bin".into()), new: Some("/usr/bin:/bin".into()) },
        MissReason::FilesChanged {
            changes: vec![FileChange::Modified { path: "src/main.rs".into(), old: d("a"), new: d("b") }],
            more: 0,
        },
        MissReason::FilesChanged {
            changes: vec![
                FileChange::Modified { path: "src/main.rs".into(), old: d("a"), new: d("b") },
                FileChange::Added { path: "src/new.rs".into() },
                FileChange::Removed { path: "a.txt".into() },
            ],
            more: 3,
        },
        MissReason::FilesChanged { changes: vec![], more: 7 },
        MissReason::Changed { component: "instruction".into(), old: "RUN make".into(), new: "RUN make all".into() },
        MissReason::Changed { component: "user".into(), old: "".into(), new: "app".into() },
        MissReason::Changed {
            component: "instruction".into(),
            old: "RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates".into(),
            new: "RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates git".into(),
        },
        MissReason::Changed { component: "sources".into(), old: d("a").to_string(), new: d("b").to_string() },
        MissReason::Changed {
            component: "mounts".into(),
            old: "type=cache,target=/root/.cache/a-very-long-directory-name-indeed".into(),
            new: "type=bind,target=/src".into(),
        },
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    insta::assert_snapshot!(texts.join("\n"), @r"
    --no-cache
    --no-cache-filter build
    no cache record
    cache key format changed (v1 → v2)
    base image changed (sha256:ca978112ca1b → sha256:3e23e8160039)
    base image changed (scratch → stage:builder)
    previous step changed
    ARG VERSION changed (1.2 → 1.3)
    ARG VERSION set (1.3)
    ARG VERSION unset (was 1.2)
    ENV PATH changed (/bin → /usr/bin:/bin)
    src/main.rs changed (sha256:ca97… → 3e23…)
    src/main.rs changed (sha256:ca97… → 3e23…), src/new.rs added, a.txt removed, +3 more
    7 files changed
    instruction changed (RUN make → RUN make all)
    user changed (none → app)
    instruction changed (…curl ca-certificates → …curl ca-certificates git)
    sources changed (sha256:ca978112ca1b → sha256:3e23e8160039)
    mounts changed (type=cache,target=/root/.cache/a-very-lo… → type=bind,target=/src)
    ");
}

/// Reliability F6: every input that changes what a step makes changes its key.
#[test]
fn every_output_affecting_input_changes_the_key() {
    let names = [
        "parent",
        "base",
        "instruction",
        "arg:VERSION",
        "env",
        "user",
        "workdir",
        "shell",
        "platform",
        "network",
        "mounts",
        "sources",
        "from",
        "chown",
        "chmod",
        "healthcheck",
        "onbuild",
    ];
    let all = |changed: Option<&str>| {
        let mut k = KeyInputs::default();
        for n in names {
            k.add(n, if Some(n) == changed { "other" } else { "value" });
        }
        k.key()
    };
    let mut keys: Vec<CacheKey> = names.iter().map(|n| all(Some(n))).collect();
    keys.push(all(None));
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count);
}

#[test]
fn an_unchanged_file_list_is_not_rewritten() {
    let (d, db) = db();
    let slot = Slot::new("copy");
    let list = files(&[("a", "1"), ("b", "2")]);
    db.remember(&slot, &inputs(&[("sources", "sha256:1")]), Some(&list)).unwrap();
    let raw = rusqlite::Connection::open(d.path().join("cache/cache.db")).unwrap();
    raw.execute("UPDATE slots SET files = x'00'", []).unwrap();
    // Same list (in another order), new inputs: only the inputs are written.
    let reversed: Vec<_> = list.iter().rev().cloned().collect();
    db.remember(&slot, &inputs(&[("sources", "sha256:2")]), Some(&reversed)).unwrap();
    let (files_blob, inputs_blob): (Vec<u8>, Vec<u8>) =
        raw.query_row("SELECT files, inputs FROM slots", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(files_blob, [0]);
    assert_eq!(KeyInputs::decode(&inputs_blob), Some(inputs(&[("sources", "sha256:2")])));
    // A changed list is written again, and explains the next miss.
    db.remember(&slot, &inputs(&[("sources", "sha256:3")]), Some(&files(&[("a", "1")]))).unwrap();
    let why = db.explain(&slot, &inputs(&[("sources", "sha256:4")]), Some(&list)).unwrap();
    assert_eq!(why, MissReason::FilesChanged { changes: vec![FileChange::Added { path: "b".into() }], more: 0 });
    // A list that no longer decodes explains by the component.
    raw.execute("UPDATE slots SET files = x'00'", []).unwrap();
    let why = db.explain(&slot, &inputs(&[("sources", "sha256:4")]), Some(&list)).unwrap();
    assert!(matches!(why, MissReason::Changed { ref component, .. } if component == "sources"), "{why:?}");
}

#[test]
fn miss_reasons_without_values_keep_names_and_drop_values() {
    let texts: Vec<String> = [
        MissReason::ArgChanged { name: "TOKEN".into(), old: Some("old-value".into()), new: Some("new-value".into()) },
        MissReason::ArgChanged { name: "TOKEN".into(), old: None, new: Some("new-value".into()) },
        MissReason::ArgChanged { name: "TOKEN".into(), old: Some("old-value".into()), new: None },
        MissReason::EnvChanged { name: "URL".into(), old: Some("old-value".into()), new: Some("new-value".into()) },
        MissReason::Changed { component: "instruction".into(), old: "COPY old-value /".into(), new: "COPY x /".into() },
        MissReason::ParentChanged,
        MissReason::NoCacheFilter { stage: "build".into() },
    ]
    .iter()
    .map(MissReason::without_values)
    .collect();
    insta::assert_snapshot!(texts.join("\n"), @r"
    ARG TOKEN changed
    ARG TOKEN set
    ARG TOKEN unset
    ENV URL changed
    instruction changed
    previous step changed
    --no-cache-filter build
    ");
}

/// `fsck`'s check: no database and a whole one are fine; one with damaged pages is found and
/// left in place, and a repair moves it aside so that the next open starts an empty one.
#[test]
fn check_finds_a_damaged_database_and_repair_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    assert_eq!(CacheDb::check(&path, false).unwrap(), None);
    let key = step("scratch", "RUN 0").key();
    {
        let db = CacheDb::open(&path).unwrap();
        for n in 0..=255u8 {
            db.insert(&step("scratch", &format!("RUN {n}")).key(), &layer(n)).unwrap();
        }
    }
    assert_eq!(CacheDb::check(&path, false).unwrap(), None);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4 * 4096, "several pages: {}", bytes.len());
    bytes[4096..3 * 4096].fill(0x5a);
    std::fs::write(&path, &bytes).unwrap();
    let found = CacheDb::check(&path, false).unwrap().expect("the damage is found");
    assert!(found.moved_to.is_none() && path.exists(), "{found:?}");
    let repaired = CacheDb::check(&path, true).unwrap().expect("the damage is found");
    assert!(repaired.moved_to.as_ref().is_some_and(|p| p.exists()) && !path.exists(), "{repaired:?}");
    assert_eq!(CacheDb::open(&path).unwrap().lookup(&key).unwrap(), None);
}
