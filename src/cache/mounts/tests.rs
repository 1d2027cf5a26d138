//! Unit tests of cache mounts: sharing rules across separately opened lock files, clear, creation,
//! ids, cancellation and crash residue.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::*;

fn mounts() -> (tempfile::TempDir, CacheMounts) {
    let root = tempfile::tempdir().unwrap();
    let mounts = CacheMounts::open(root.path()).unwrap();
    (root, mounts)
}

fn req(id: &str, sharing: Sharing) -> CacheMountRequest<'_> {
    CacheMountRequest { id, sharing, mode: 0o755, uid: 0, gid: 0 }
}

fn never() -> bool {
    false
}

/// Takes `id` once and releases it, so that instance 0 exists.
fn warm(m: &CacheMounts, id: &str) {
    let lease = m.acquire(&req(id, Sharing::Shared), &never).unwrap();
    assert!(lease.is_new());
    lease.release().unwrap();
}

/// Acquires `waiter` on a thread from a second `CacheMounts` (its own lock files, as another
/// process has) while `held` is held, and checks that it got the mount only after `held` was
/// released: it must have polled (been excluded) first.
fn assert_waits(held: CacheMountLease, waiter: Sharing) {
    let root = held.path().ancestors().nth(4).unwrap().to_path_buf();
    let other = CacheMounts::open(&root).unwrap();
    let (polled, released) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let lease = other.acquire(&req("x", waiter), &|| {
                polled.store(true, Ordering::SeqCst);
                false
            });
            assert!(released.load(Ordering::SeqCst), "{waiter:?} got the mount while it was held");
            lease.unwrap()
        });
        let started = Instant::now();
        while !polled.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(10), "{waiter:?} never waited");
            std::thread::sleep(Duration::from_millis(5));
        }
        released.store(true, Ordering::SeqCst);
        drop(held);
        assert!(!t.join().unwrap().is_new());
    });
}

#[test]
fn shared_holders_overlap_in_one_directory() {
    let (_root, m) = mounts();
    warm(&m, "x");
    let a = m.acquire(&req("x", Sharing::Shared), &never).unwrap();
    let b = CacheMounts::open(_root.path()).unwrap().acquire(&req("x", Sharing::Shared), &|| panic!("waited")).unwrap();
    assert_eq!(a.path(), b.path());
    assert!(!a.is_new() && !b.is_new());
    assert_eq!(a.path(), m.id_dir("x").join("0"));
}

#[test]
fn locked_holders_exclude_each_other_across_lock_files() {
    let (_root, m) = mounts();
    warm(&m, "x");
    assert_waits(m.acquire(&req("x", Sharing::Locked), &never).unwrap(), Sharing::Locked);
}

#[test]
fn shared_and_locked_holders_exclude_each_other() {
    let (_root, m) = mounts();
    warm(&m, "x");
    assert_waits(m.acquire(&req("x", Sharing::Shared), &never).unwrap(), Sharing::Locked);
    assert_waits(m.acquire(&req("x", Sharing::Locked), &never).unwrap(), Sharing::Shared);
}

#[test]
fn a_new_instance_is_shared_only_once_its_creator_released_it() {
    let (_root, m) = mounts();
    let creator = m.acquire(&req("x", Sharing::Shared), &never).unwrap();
    assert!(creator.is_new());
    assert!(creator.path().file_name().unwrap().to_string_lossy().starts_with("tmp-0-"));
    fs::write(creator.path().join("seed"), b"seeded").unwrap();
    assert_waits(creator, Sharing::Shared);
    let lease = m.acquire(&req("x", Sharing::Shared), &never).unwrap();
    assert_eq!(fs::read(lease.path().join("seed")).unwrap(), b"seeded");
}

#[test]
fn private_holders_get_distinct_instances_and_instance_0_again_when_free() {
    let (_root, m) = mounts();
    let a = m.acquire(&req("x", Sharing::Private), &never).unwrap();
    let b = m.acquire(&req("x", Sharing::Private), &never).unwrap();
    assert!(a.is_new() && b.is_new());
    assert_ne!(a.path(), b.path());
    fs::write(a.path().join("mark"), b"0").unwrap();
    drop(b);
    a.release().unwrap();
    let c = m.acquire(&req("x", Sharing::Private), &never).unwrap();
    assert!(!c.is_new());
    assert_eq!(c.path(), m.id_dir("x").join("0"));
    assert_eq!(fs::read(c.path().join("mark")).unwrap(), b"0");
    let d = m.acquire(&req("x", Sharing::Private), &never).unwrap();
    assert!(!d.is_new(), "instance 1 was kept and is reused");
    assert_eq!(d.path(), m.id_dir("x").join("1"));
    assert_eq!(m.list().unwrap()[0].instances, 2);
}

#[test]
fn clear_removes_only_what_no_one_holds() {
    let (_root, m) = mounts();
    for id in ["held", "free", "private"] {
        warm(&m, id);
    }
    let free = m.id_dir("free").join("0");
    fs::write(free.join("f"), vec![1u8; 1000]).unwrap();
    fs::create_dir(free.join("sub")).unwrap();
    fs::write(free.join("sub/g"), vec![1u8; 234]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", free.join("link")).unwrap();
    let held = m.acquire(&req("held", Sharing::Shared), &never).unwrap();
    fs::write(held.path().join("kept"), b"k").unwrap();
    // private: instance 1 held, instance 0 free (with 10 bytes)
    let p0 = m.acquire(&req("private", Sharing::Private), &never).unwrap();
    let p1 = m.acquire(&req("private", Sharing::Private), &never).unwrap();
    fs::write(p0.path().join("f"), vec![0u8; 10]).unwrap();
    drop(p0);
    let id_bytes = "free".len() as u64;
    let cleared = m.clear().unwrap();
    assert_eq!(cleared.removed, vec![("free".to_string(), 1234 + id_bytes)]);
    assert_eq!(cleared.skipped, vec!["held".to_string(), "private".to_string()]);
    assert_eq!(cleared.bytes_freed, 1234 + id_bytes + 10);
    assert!(!m.id_dir("free").exists());
    assert_eq!(fs::read(held.path().join("kept")).unwrap(), b"k");
    assert!(!m.id_dir("private").join("0").exists() && p1.path().exists());
    let listed: Vec<_> = m.list().unwrap().into_iter().map(|i| (i.id, i.instances)).collect();
    assert_eq!(listed, vec![("held".to_string(), 1), ("private".to_string(), 0)]);
    drop((held, p1));
    let cleared = m.clear().unwrap();
    assert_eq!(cleared.removed.len(), 2);
    assert!(cleared.skipped.is_empty());
    assert!(m.list().unwrap().is_empty());
    assert_eq!(entries(m.dir()).unwrap().len(), 1, "only mounts/lock stays");
    assert!(m.acquire(&req("held", Sharing::Shared), &never).unwrap().is_new());
}

#[test]
fn remove_takes_one_id_unless_held() {
    let (_root, m) = mounts();
    for id in ["a", "b"] {
        warm(&m, id);
    }
    assert!(!m.is_held("a").unwrap());
    let held = m.acquire(&req("a", Sharing::Shared), &never).unwrap();
    assert!(m.is_held("a").unwrap());
    assert!(!m.is_held("b").unwrap() && !m.is_held("never seen").unwrap());
    assert_eq!(m.remove("a").unwrap(), RemovedMount::Held);
    assert!(held.path().exists());
    assert_eq!(m.remove("b").unwrap(), RemovedMount::Removed);
    assert!(!m.id_dir("b").exists());
    assert_eq!(m.remove("b").unwrap(), RemovedMount::Absent);
    drop(held);
    assert_eq!(m.list().unwrap().iter().map(|i| i.dir.clone()).collect::<Vec<_>>(), vec![m.id_dir("a")]);
    assert_eq!(m.remove("a").unwrap(), RemovedMount::Removed);
    assert!(m.list().unwrap().is_empty());
}

#[test]
fn mode_and_owner_are_set_only_on_creation() {
    let (_root, m) = mounts();
    let r = CacheMountRequest { id: "x", sharing: Sharing::Locked, mode: 0o1750, uid: 1234, gid: 5678 };
    let lease = m.acquire(&r, &never).unwrap();
    let meta = fs::metadata(lease.path()).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o1750, 1234, 5678));
    lease.release().unwrap();
    let other = CacheMountRequest { id: "x", sharing: Sharing::Locked, mode: 0o700, uid: 1, gid: 2 };
    let lease = m.acquire(&other, &never).unwrap();
    let meta = fs::metadata(lease.path()).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o1750, 1234, 5678));
}

#[test]
fn ids_never_escape_the_mounts_directory() {
    let (root, m) = mounts();
    let ids = ["../../etc", "/abs/path", "a/../../b", "..", ".", "", "x\ny\0z", "lock", "0"];
    for id in ids {
        let lease = m.acquire(&req(id, Sharing::Private), &never).unwrap();
        let dir = lease.path().parent().unwrap();
        assert_eq!(dir.parent().unwrap(), m.dir(), "{id:?}");
        assert_eq!(dir.file_name().unwrap().len(), 64, "{id:?}");
        lease.release().unwrap();
    }
    let mut listed: Vec<_> = m.list().unwrap().into_iter().map(|i| i.id).collect();
    let mut expected: Vec<_> = ids.iter().map(|s| s.to_string()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    let mut top: Vec<_> = entries(root.path()).unwrap().into_iter().map(|(n, _)| n).collect();
    top.sort();
    assert_eq!(top, ["cache"]);
    assert_eq!(entries(&root.path().join("cache")).unwrap().len(), 1);
}

#[test]
fn cancellation_while_waiting_returns_promptly() {
    let (_root, m) = mounts();
    let _held = m.acquire(&req("x", Sharing::Locked), &never).unwrap();
    let started = Instant::now();
    let err = m.acquire(&req("x", Sharing::Locked), &|| started.elapsed() > Duration::from_millis(100)).unwrap_err();
    assert!(matches!(&err, CacheError::MountCancelled { id } if id == "x"), "{err:?}");
    assert_eq!(err.to_string(), "waiting for cache mount \"x\" was cancelled");
    assert!(started.elapsed() < Duration::from_millis(100) + 4 * POLL, "took {:?}", started.elapsed());
}

#[test]
fn a_killed_creators_half_made_instance_is_never_taken_for_a_seeded_one() {
    let (_root, m) = mounts();
    let dir = m.id_dir("x");
    // What a creator killed while seeding leaves: its temp instance, its lock free.
    let lease = m.acquire(&req("x", Sharing::Locked), &never).unwrap();
    fs::write(lease.path().join("half"), b"h").unwrap();
    fs::rename(lease.path(), dir.join("tmp-0-killed")).unwrap();
    drop(lease); // its rename fails (logged): nothing is published
    assert!(!dir.join("0").exists());
    let lease = m.acquire(&req("x", Sharing::Shared), &never).unwrap();
    assert!(lease.is_new());
    assert!(!dir.join("tmp-0-killed").exists(), "residue removed");
    assert!(fs::read_dir(lease.path()).unwrap().next().is_none());
    drop(lease); // dropping publishes, as release does
    let lease = m.acquire(&req("x", Sharing::Shared), &never).unwrap();
    assert!(!lease.is_new());
    assert_eq!(lease.path(), dir.join("0"));
}

/// Threads with their own `CacheMounts` (their own lock files) take two ids in every mode
/// while another clears in a loop: an exclusive holder never overlaps another holder of its
/// instance, and nothing held disappears.
#[test]
fn mixed_holders_and_clears_keep_the_rules() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let root = tempfile::tempdir().unwrap();
    let holders: Mutex<HashMap<PathBuf, (u32, u32)>> = Mutex::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let clearer = s.spawn(|| {
            let m = CacheMounts::open(root.path()).unwrap();
            let mut clears = 0;
            while !stop.load(Ordering::SeqCst) {
                m.clear().unwrap();
                clears += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            clears
        });
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let holders = &holders;
                let root = root.path();
                s.spawn(move || {
                    let m = CacheMounts::open(root).unwrap();
                    let mut x = t * 7919 + 1;
                    for _ in 0..30 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let sharing = [Sharing::Shared, Sharing::Locked, Sharing::Private][(x % 3) as usize];
                        let id = ["a", "b"][(x / 3 % 2) as usize];
                        let lease = m.acquire(&req(id, sharing), &never).unwrap();
                        let key = lease.publish_to.clone().unwrap_or_else(|| lease.path().to_path_buf());
                        let exclusive = sharing != Sharing::Shared || lease.is_new();
                        {
                            let mut h = holders.lock().unwrap();
                            let (shared, excl) = h.entry(key.clone()).or_default();
                            assert!(*excl == 0 && (!exclusive || *shared == 0), "{sharing:?} overlaps at {key:?}");
                            *if exclusive { excl } else { shared } += 1;
                        }
                        fs::write(lease.path().join(format!("t{t}")), b"x").unwrap();
                        std::thread::sleep(Duration::from_millis(x % 3));
                        assert!(lease.path().join(format!("t{t}")).exists(), "a held instance was cleared");
                        let mut h = holders.lock().unwrap();
                        let (shared, excl) = h.get_mut(&key).unwrap();
                        *if exclusive { excl } else { shared } -= 1;
                        drop(lease); // under the mutex: the next holder is counted after
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        assert!(clearer.join().unwrap() > 0);
    });
    let m = CacheMounts::open(root.path()).unwrap();
    m.clear().unwrap();
    assert!(m.list().unwrap().is_empty());
}

#[test]
fn list_shows_id_instances_bytes_and_last_use() {
    let (_root, m) = mounts();
    assert!(m.list().unwrap().is_empty());
    let before = unix_secs(SystemTime::now());
    let lease = m.acquire(&req("/root/.cache/go-build", Sharing::Shared), &never).unwrap();
    fs::write(lease.path().join("obj"), vec![7u8; 4096]).unwrap();
    let listed = m.list().unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!((info.id.as_str(), info.instances), ("/root/.cache/go-build", 0), "not yet published");
    assert_eq!(info.bytes, 4096 + info.id.len() as u64);
    assert!(info.last_used >= before && info.last_used <= unix_secs(SystemTime::now()));
    lease.release().unwrap();
    assert_eq!(m.list().unwrap()[0].instances, 1);
}
