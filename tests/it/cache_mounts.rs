//! `RUN --mount=type=cache` directories as the CLI sees them: `slipway info` lists them, `prune
//! --cache-mounts` and `prune --all` remove those no process holds. The mounts are made through
//! the library (`slipway::cache::CacheMounts`), and one is held by this process while the CLI
//! runs, so the CLI must see another process's flock.

use slipway::cache::{CacheMountLease, CacheMountRequest, CacheMounts, Sharing};

use crate::support::TestContext;

fn acquire(mounts: &CacheMounts, id: &str) -> CacheMountLease {
    let req = CacheMountRequest { id, sharing: Sharing::Shared, mode: 0o755, uid: 0, gid: 0 };
    mounts.acquire(&req, &|| panic!("cache mount {id} is held elsewhere")).unwrap()
}

fn stdout(ctx: &TestContext, args: &[&str]) -> String {
    String::from_utf8(ctx.ok(args).stdout).unwrap()
}

#[test]
fn info_lists_cache_mounts_and_prune_removes_only_unheld_ones() {
    let ctx = TestContext::new();
    assert!(stdout(&ctx, &["info"]).contains("\ncache mounts: none\n"));
    let mounts = CacheMounts::open(&ctx.root()).unwrap();
    for (id, bytes) in [("/root/.cache/go-build", 1000), ("apt", 20)] {
        let lease = acquire(&mounts, id);
        assert!(lease.is_new());
        std::fs::write(lease.path().join("data"), vec![0u8; bytes]).unwrap();
        lease.release().unwrap();
    }
    let held = acquire(&mounts, "apt");
    assert!(!held.is_new());

    let info = stdout(&ctx, &["info"]);
    // Sizes count the id text beside the files: 1000 + 21 and 20 + 3 bytes.
    assert!(info.contains("\ncache mounts: 2, 1.044kB\n"), "{info}");
    assert!(info.contains("\n  /root/.cache/go-build  1.021kB  1 instance\n"), "{info}");
    assert!(info.contains(&format!("\n  {:<21}  {:>7}  1 instance\n", "apt", "23B")), "{info}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&ctx, &["info", "--format", "json"])).unwrap();
    let listed = json["cache_mounts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (&listed[1]["id"], &listed[1]["instances"], &listed[1]["bytes"]),
        (&"apt".into(), &1.into(), &23.into())
    );
    assert!(listed[0]["last_used"].as_str().unwrap().ends_with('Z'));

    let out = stdout(&ctx, &["prune", "--cache-mounts"]);
    assert_eq!(
        out,
        "deleted cache mount /root/.cache/go-build 1.021kB\nkept cache mount apt (in use)\n\
         total: 1 cache mount deleted, 1 in use, 1.021kB freed\n"
    );
    assert!(held.path().join("data").exists());

    drop(held);
    let out = stdout(&ctx, &["prune", "--all"]);
    assert!(out.contains("total: 0 blobs deleted"), "--all prunes blobs too: {out}");
    assert!(out.ends_with("deleted cache mount apt 23B\ntotal: 1 cache mount deleted, 0 in use, 23B freed\n"), "{out}");
    assert!(stdout(&ctx, &["info"]).contains("\ncache mounts: none\n"));
    assert!(mounts.list().unwrap().is_empty());
}

#[test]
fn prune_cache_mounts_and_all_are_exclusive_and_plain_prune_keeps_cache_mounts() {
    let ctx = TestContext::new();
    let out = ctx.run(&["prune", "--all", "--cache-mounts"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    ctx.ok(&["info"]);
    let mounts = CacheMounts::open(&ctx.root()).unwrap();
    acquire(&mounts, "kept").release().unwrap();
    let out = stdout(&ctx, &["prune"]);
    assert!(!out.contains("cache mount"), "{out}");
    assert_eq!(mounts.list().unwrap().len(), 1);
}
