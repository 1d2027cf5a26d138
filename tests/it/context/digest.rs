//! The content digest of a selection and its persistent stat cache.

use super::*;

#[test]
fn digest_ignores_mtime_and_location_but_not_content_mode_owner_or_links() {
    let t = TestContext::new();
    let make = |name: &str| {
        let dir = t.path().join(name);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(dir.join("README"), "hi").unwrap();
        symlink("src/main.rs", dir.join("link")).unwrap();
        dir
    };
    let a = make("a");
    let b = make("deeper/b");
    let base = digest_of(&a, &["."], None);
    assert_eq!(base.digest, digest_of(&b, &["."], None).digest, "the absolute path does not matter");
    assert_eq!(base.files.len(), 5, "{:?}", base.files);

    set_mtime(&a.join("src/main.rs"), 1, 0);
    set_mtime(&a.join("src"), 2, 0);
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest, "touch does not change the digest");

    fs::write(a.join("src/main.rs"), "fn main() { x }").unwrap();
    let changed = digest_of(&a, &["."], None);
    assert_ne!(changed.digest, base.digest);
    let diff: Vec<&str> =
        base.files.iter().zip(&changed.files).filter(|(x, y)| x != y).map(|(x, _)| x.0.as_str()).collect();
    assert_eq!(diff, ["src/main.rs"], "the listing names exactly the changed file");
    fs::write(a.join("src/main.rs"), "fn main() {}").unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    fs::set_permissions(a.join("README"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "mode");
    fs::set_permissions(a.join("README"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    lchown(a.join("README"), Some(7), None).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "uid");
    lchown(a.join("README"), Some(0), None).unwrap();

    fs::remove_file(a.join("link")).unwrap();
    symlink("README", a.join("link")).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "link target");
    fs::remove_file(a.join("link")).unwrap();
    symlink("src/main.rs", a.join("link")).unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    fs::rename(a.join("README"), a.join("README2")).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "a rename");
    fs::rename(a.join("README2"), a.join("README")).unwrap();

    // What is selected matters, not only what is in the directory.
    assert_ne!(digest_of(&a, &["src"], None).digest, digest_of(&a, &["."], None).digest);
    assert_eq!(digest_of(&a, &["src"], None).digest, digest_of(&b, &["src"], None).digest);
}

#[test]
fn stat_cache_avoids_reading_unchanged_files() {
    let t = TestContext::new();
    let dir = t.path().join("ctx");
    for i in 0..50 {
        fs::create_dir_all(dir.join(format!("d{}", i % 5))).unwrap();
        fs::write(dir.join(format!("d{}/f{i}", i % 5)), format!("content {i}")).unwrap();
    }
    let cache = StatCache::open(&t.path().join("stat.db")).unwrap();
    // Rows are only trusted once the file's ctime is older than the read by the racy window.
    std::thread::sleep(Duration::from_millis(120));
    let cold = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(cold.files_read, 50);
    assert_eq!(cache.len().unwrap(), 50);
    let warm = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(warm.files_read, 0, "nothing read with a warm cache");
    assert_eq!(warm.digest, cold.digest);

    // In place, same size, mtime restored: ctime still tells.
    let path = dir.join("d3/f3");
    let before = fs::metadata(&path).unwrap();
    fs::write(&path, "CONTENT 3").unwrap();
    set_mtime(&path, before.mtime(), before.mtime_nsec());
    let after = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(after.files_read, 1);
    assert_ne!(after.digest, cold.digest);
    assert_eq!(after.digest, digest_of(&dir, &["."], None).digest, "the cache never changes the answer");

    // A copy of the tree elsewhere is a different root: read again, same digest.
    let other = t.path().join("other");
    fs::rename(&dir, &other).unwrap();
    let moved = digest_of(&other, &["."], Some(&cache));
    assert_eq!((moved.files_read, moved.digest), (50, after.digest));

    // Prune drops rows not used lately.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cache.prune(Duration::from_millis(10)).unwrap(), 100);
    assert!(cache.is_empty().unwrap());
}

#[test]
fn stat_cache_is_shared_by_concurrent_users() {
    let t = TestContext::new();
    let dir = t.path().join("ctx");
    for i in 0..20 {
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let db = t.path().join("stat.db");
    let want = digest_of(&dir, &["."], None).digest;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let cache = StatCache::open(&db).unwrap();
                for _ in 0..5 {
                    assert_eq!(digest_of(&dir, &["."], Some(&cache)).digest, want);
                }
            });
        }
    });
}
