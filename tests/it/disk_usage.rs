//! `slipway df` and `slipway prune --keep-storage`: df's numbers equal an independent walk of the
//! store root (and `du`), the cap holds by that walk, tagged images survive without `--all`, the
//! report says what stayed and why, and a cap that cannot be met exits 1 saying so.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::build::BuildEnv;
use crate::support::describe;

/// What `du -s -B1 -x` counts, walked here: allocated bytes of every entry, each inode once,
/// no symlink followed, no other filesystem entered.
fn walk(path: &Path) -> u64 {
    fn visit(path: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let md = std::fs::symlink_metadata(path).unwrap();
        if md.dev() != dev || (!md.is_dir() && md.nlink() > 1 && !seen.insert((md.dev(), md.ino()))) {
            return 0;
        }
        let mut total = md.blocks() * 512;
        if md.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                total += visit(&entry.unwrap().path(), dev, seen);
            }
        }
        total
    }
    let dev = std::fs::symlink_metadata(path).unwrap().dev();
    visit(path, dev, &mut HashSet::new())
}

/// `du -s -B1 -x PATH`.
fn du(path: &Path) -> u64 {
    let out = std::process::Command::new("du").args(["-s", "-B1", "-x"]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// `slipway ARGS` with young layer snapshots prunable.
fn slipway(env: &BuildEnv, args: &[&str]) -> Output {
    env.tc.cmd().args(args).env("SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE", "0").output().unwrap()
}

/// `slipway ARGS`, which must succeed → stdout.
#[track_caller]
fn ok(env: &BuildEnv, args: &[&str]) -> String {
    let out = slipway(env, args);
    assert!(out.status.success(), "slipway {args:?}: {}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `slipway df --format json -v`.
fn df(env: &BuildEnv) -> Value {
    serde_json::from_str(&ok(env, &["df", "--format", "json", "-v"])).unwrap()
}

/// The row of `df` JSON for `kind`.
fn row<'a>(df: &'a Value, kind: &str) -> &'a Value {
    df["rows"].as_array().unwrap().iter().find(|r| r["type"] == kind).unwrap()
}

/// The image of `df -v` JSON named `name`.
fn image<'a>(df: &'a Value, name: &str) -> &'a Value {
    let full = format!("docker.io/library/{name}");
    df["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["names"].as_array().unwrap().contains(&full.clone().into()))
        .unwrap()
}

/// The image names the store lists.
fn tags(env: &BuildEnv) -> Vec<String> {
    let images: Value = serde_json::from_str(&ok(env, &["images", "--format", "json"])).unwrap();
    let mut names: Vec<String> = images
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["reference"].is_null())
        .map(|i| format!("{}:{}", i["repository"].as_str().unwrap(), i["tag"].as_str().unwrap()))
        .collect();
    names.sort();
    names
}

/// `bb`; `img:1` (100 kB of its own) and `img:2` (200 kB) on it; `gone:1` (300 kB) built and
/// untagged, so only the build cache holds its layer; a cache mount holding 50 kB; four builds'
/// logs.
fn store_with_everything() -> BuildEnv {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb\nARG N\nARG KB\nRUN --mount=type=cache,target=/c head -c ${KB}000 /dev/urandom > /data && \
         head -c 50000 /dev/urandom > /c/blob\n",
    );
    for (name, kb) in [("img:1", "100"), ("img:2", "200"), ("gone:1", "300")] {
        let n = format!("N={name}");
        let kb = format!("KB={kb}");
        env.build_ok(&["-t", name, "--build-arg", &n, "--build-arg", &kb]);
    }
    env.build_ok(&["-t", "img:2", "--build-arg", "N=img:2", "--build-arg", "KB=200"]);
    env.tc.ok(&["rmi", "gone:1"]);
    env
}

#[test]
fn df_adds_up_to_an_independent_walk_and_du() {
    let env = store_with_everything();
    let root = env.tc.root();
    // Open databases keep their `-wal` and `-shm` files (the last connection to close removes
    // them): held here, the files are there both while df measures and when this test walks.
    let _store = slipway::store::Store::open(&root).unwrap();
    let _snapshots = slipway::snapshot::open(&root, None).unwrap();
    let _cache = slipway::cache::CacheDb::open(&root.join("cache/cache.db")).unwrap();
    let df = df(&env);
    let total = df["total"].as_u64().unwrap();
    assert_eq!(total, walk(&root), "{df:#}");
    assert_eq!(total, du(&root));
    let rows = df["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["bytes"].as_u64().unwrap()).sum::<u64>(), total);
    assert_eq!(row(&df, "snapshots")["bytes"].as_u64().unwrap(), walk(&root.join("snapshots")));
    assert_eq!(row(&df, "cache_mounts")["bytes"].as_u64().unwrap(), walk(&root.join("cache/mounts")));
    assert_eq!(row(&df, "logs")["bytes"].as_u64().unwrap(), walk(&root.join("logs")));
    let blobs: u64 =
        ["images", "build_cache", "other_blobs"].iter().map(|k| row(&df, k)["bytes"].as_u64().unwrap()).sum();
    let blob_files = walk(&root.join("blobs/sha256")) - walk_dir_only(&root.join("blobs/sha256"));
    let cache_files = walk(&root.join("cache")) - walk(&root.join("cache/mounts"));
    assert_eq!(blobs, blob_files + cache_files, "blobs and the cache's databases");

    // Counts: 3 tagged images; 3 distinct RUN steps cached (the fourth build hit); 4 builds.
    assert_eq!((row(&df, "images")["count"].as_u64(), row(&df, "images")["active"].as_u64()), (Some(3), Some(3)));
    assert_eq!(row(&df, "build_cache")["count"].as_u64(), Some(3));
    assert_eq!(row(&df, "logs")["count"].as_u64(), Some(4));
    assert_eq!(row(&df, "cache_mounts")["count"].as_u64(), Some(1));
    // gone:1's 300 kB layer only the build cache holds, and nothing else is tagged.
    let cache = row(&df, "build_cache");
    assert!(cache["reclaimable"].as_u64().unwrap() >= 300_000, "{cache}");
    assert_eq!(row(&df, "images")["reclaimable"].as_u64(), Some(0));

    // Shared vs unique: img:1 and img:2 share bb's layers, nothing else.
    let (bb, one, two) = (image(&df, "bb:latest"), image(&df, "img:1"), image(&df, "img:2"));
    for i in [bb, one, two] {
        assert_eq!(i["shared"].as_u64().unwrap() + i["unique"].as_u64().unwrap(), i["bytes"].as_u64().unwrap());
        assert_eq!(i["kept"], "tagged");
    }
    assert!(bb["shared"].as_u64().unwrap() > 0);
    assert_eq!(one["shared"], bb["shared"]);
    assert_eq!(two["shared"], bb["shared"]);
    assert!(one["unique"].as_u64().unwrap() >= 100_000 && two["unique"].as_u64().unwrap() >= 200_000, "{df:#}");
    let table = ok(&env, &["df", "-v"]);
    for part in [
        "\nImages:\nNAME",
        "docker.io/library/img:1",
        "\nBuild cache:\nNAME",
        "kept: its blobs belong to something kept",
    ] {
        assert!(table.contains(part), "{part:?} missing:\n{table}");
    }
    assert!(table.contains("\nCache mounts:\nNAME") && table.contains("\n/c "), "{table}");
    let items = df["items"].as_array().unwrap();
    let mount = items.iter().find(|i| i["type"] == "cache_mounts").unwrap();
    assert_eq!(mount["name"], "/c");
    assert!(mount["bytes"].as_u64().unwrap() >= 50_000 && mount["kept"].is_null(), "{mount}");
}

/// The bytes of a directory entry itself (not what is in it).
fn walk_dir_only(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().blocks() * 512
}

#[test]
fn keep_storage_holds_the_cap_by_an_independent_walk_and_keeps_tagged_images() {
    let env = store_with_everything();
    let root = env.tc.root();
    let before = walk(&root);
    let reclaimable = df(&env)["reclaimable"].as_u64().unwrap();
    assert!(reclaimable > 300_000, "{reclaimable}");
    let cap = before - reclaimable / 2;
    let cap_text = cap.to_string();
    let json: Value =
        serde_json::from_str(&ok(&env, &["prune", "--keep-storage", &cap_text, "--format", "json"])).unwrap();
    let after = walk(&root);
    assert!(after <= cap, "{after} > {cap}: {json:#}");
    let keep = &json["keep_storage"];
    assert_eq!((keep["cap"].as_u64(), &keep["met"]), (Some(cap), &Value::Bool(true)));
    assert!(keep["after"].as_u64().unwrap() >= after, "measured while the process ran: its database sidecars too");
    // Least recently used first.
    let removed = keep["removed"].as_array().unwrap();
    assert!(!removed.is_empty());
    let used: Vec<&str> = removed.iter().map(|r| r["last_used"].as_str().unwrap()).collect();
    assert!(used.windows(2).all(|w| w[0] <= w[1]), "{removed:#?}");
    let kept = keep["kept"].as_array().unwrap();
    let newest_removed = used.last().unwrap();
    for k in kept.iter().filter(|k| k["kept"] == "not_needed" && !k["last_used"].is_null()) {
        assert!(k["last_used"].as_str().unwrap() >= *newest_removed, "{k} kept but older than what went");
    }
    let bb = kept.iter().find(|k| k["name"] == "docker.io/library/bb:latest").unwrap();
    assert_eq!((&bb["type"], &bb["kept"]), (&"images".into(), &"tagged".into()));
    assert_eq!(bb["why"], "tagged (only --all removes tagged images)");

    assert_eq!(tags(&env), ["bb:latest", "img:1", "img:2"]);
    ok(&env, &["fsck", "--strict"]);
    assert_eq!(env.run_stdout("img:1", &["sh", "-c", "wc -c < /data"]).trim(), "100000");
}

#[test]
fn a_cap_that_cannot_be_met_removes_what_it_may_says_why_and_exits_1() {
    let env = store_with_everything();
    let root = env.tc.root();
    let out = slipway(&env, &["prune", "--keep-storage", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let after = walk(&root);
    assert!(
        stderr.contains("error: the store still takes")
            && stderr.contains("over the --keep-storage cap of 0B (0 bytes)"),
        "{stderr}"
    );
    for line in [
        "kept image docker.io/library/bb:latest",
        ": tagged (only --all removes tagged images)\n",
        "kept image docker.io/library/img:1",
        "kept store files",
        ": the store's own files (tags, metadata, locks, directories)\n",
        "deleted build cache cache:sha256:",
        "deleted cache mount /c",
        "deleted build logs ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(stdout.contains(", over the 0B cap\n"), "{stdout}");
    assert_eq!(tags(&env).len(), 3);
    let df = df(&env);
    for (kind, count) in [("cache_mounts", 0), ("logs", 0), ("other_blobs", 0)] {
        assert_eq!(row(&df, kind)["count"].as_u64(), Some(count), "{kind}: {df:#}");
    }
    // The cache entries of img:1's and img:2's layers stay: removing them would free nothing.
    let cache = row(&df, "build_cache");
    assert_eq!(
        (cache["count"].as_u64(), cache["active"].as_u64(), cache["reclaimable"].as_u64()),
        (Some(2), Some(2), Some(0))
    );
    assert!(stdout.contains(": its blobs belong to something kept\n"), "{stdout}");
    assert_eq!(row(&df, "snapshots")["reclaimable"].as_u64(), Some(0));
    assert!(df["total"].as_u64().unwrap() >= after);
    ok(&env, &["fsck", "--strict"]);
    assert_eq!(env.run_stdout("img:2", &["sh", "-c", "wc -c < /data"]).trim(), "200000");
}

#[test]
fn all_lets_the_cap_take_tagged_images_least_recently_used_and_no_more() {
    let env = store_with_everything();
    let root = env.tc.root();
    // Without the cache, logs and mounts the store is its three images and its own files.
    assert_eq!(slipway(&env, &["prune", "--keep-storage", "0"]).status.code(), Some(1));
    let df = df(&env);
    // img:2 was used least recently, then img:1, bb most recently.
    for (name, at) in [("img:2", "@1000000000"), ("img:1", "@1100000000"), ("bb:latest", "@1200000000")] {
        let digest = image(&df, name)["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let blob = root.join("blobs/sha256").join(digest);
        let touched = std::process::Command::new("touch").args(["-h", "-d", at]).arg(&blob).status().unwrap();
        assert!(touched.success());
    }
    let cap = walk(&root) - 1;
    let out = ok(&env, &["prune", "--all", "--keep-storage", &cap.to_string(), "--format", "json"]);
    assert!(walk(&root) <= cap);
    let json: Value = serde_json::from_str(&out).unwrap();
    let keep = &json["keep_storage"];
    let removed: Vec<&Value> = keep["removed"].as_array().unwrap().iter().filter(|r| r["type"] == "images").collect();
    assert_eq!(removed.len(), 1, "{keep:#}");
    assert_eq!(removed[0]["name"], "docker.io/library/img:2");
    let kept = keep["kept"].as_array().unwrap();
    for name in ["docker.io/library/img:1", "docker.io/library/bb:latest"] {
        let image = kept.iter().find(|k| k["name"] == name).unwrap();
        assert_eq!(image["kept"], "not_needed", "{image}");
    }
    assert_eq!(tags(&env), ["bb:latest", "img:1"]);
    ok(&env, &["fsck", "--strict"]);
    assert_eq!(env.run_stdout("img:1", &["sh", "-c", "wc -c < /data"]).trim(), "100000");
}

/// Digests, sizes and times filtered.
const FILTERS: [(&str, &str); 6] = [
    (r"sha256:[0-9a-f]{64}", "[DIGEST]"),
    (r"\b[0-9a-f]{12}\b", "[SHORT]"),
    (r#""(bytes|total|reclaimable|shared|unique|before|after|cap)": \d+"#, r#""$1": [BYTES]"#),
    (r"\b\d+(\.\d+)?[kMG]?B\b", "[SIZE]"),
    (r"\(\d+ bytes\)", "([N] bytes)"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|Less than a minute ago", "[TIME]"),
];

/// `insta::assert_snapshot!` of `text` with the test's directory shown as `[TMP]` and [`FILTERS`]
/// applied; a table's `(12%)` shown as `[PERCENT]` and its column padding as two spaces.
macro_rules! assert_filtered {
    ($env:expr, $text:expr, table, @$snapshot:literal) => {{
        let text = $text.replace(&$env.tc.path().display().to_string(), "[TMP]");
        let text = mask_table(&text);
        insta::with_settings!({ filters => FILTERS.to_vec() }, { insta::assert_snapshot!(text, @$snapshot) });
    }};
    ($env:expr, $text:expr, json, @$snapshot:literal) => {{
        let text = $text.replace(&$env.tc.path().display().to_string(), "[TMP]");
        insta::with_settings!({ filters => FILTERS.to_vec() }, { insta::assert_snapshot!(text, @$snapshot) });
    }};
}

/// `12.5MB (40%)` → `12.5MB [PERCENT]` (percentages follow sizes); runs of spaces → two.
fn mask_table(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        while let Some(start) = l.find(" (").filter(|s| l[*s..].contains("%)")) {
            let end = l[start..].find("%)").unwrap() + start + 2;
            l.replace_range(start..end, " [PERCENT]");
        }
        let mut collapsed = String::new();
        for part in l.split("  ").filter(|p| !p.is_empty()) {
            if !collapsed.is_empty() {
                collapsed.push_str("  ");
            }
            collapsed.push_str(part.trim_start());
        }
        out.push_str(&collapsed);
        out.push('\n');
    }
    out
}

#[test]
fn df_and_keep_storage_outputs_are_stable() {
    let env = BuildEnv::new();
    assert_filtered!(env, ok(&env, &["df"]), table, @r#"
        TYPE  TOTAL  ACTIVE  SIZE  RECLAIMABLE
        images  1  1  [SIZE]  [SIZE] [PERCENT]
        build cache  0  0  [SIZE]  [SIZE] [PERCENT]
        other blobs  0  0  [SIZE]  [SIZE] [PERCENT]
        layer snapshots  0  0  [SIZE]  [SIZE] [PERCENT]
        cache mounts  0  0  [SIZE]  [SIZE] [PERCENT]
        build logs  0  0  [SIZE]  [SIZE] [PERCENT]
        other  -  -  [SIZE]  [SIZE] [PERCENT]
        total  [SIZE]  [SIZE] [PERCENT]
        "#);
    assert_filtered!(env, ok(&env, &["df", "-v"]), table, @r#"
        TYPE  TOTAL  ACTIVE  SIZE  RECLAIMABLE
        images  1  1  [SIZE]  [SIZE] [PERCENT]
        build cache  0  0  [SIZE]  [SIZE] [PERCENT]
        other blobs  0  0  [SIZE]  [SIZE] [PERCENT]
        layer snapshots  0  0  [SIZE]  [SIZE] [PERCENT]
        cache mounts  0  0  [SIZE]  [SIZE] [PERCENT]
        build logs  0  0  [SIZE]  [SIZE] [PERCENT]
        other  -  -  [SIZE]  [SIZE] [PERCENT]
        total  [SIZE]  [SIZE] [PERCENT]

        Images:
        NAME  DIGEST  SIZE  SHARED SIZE  UNIQUE SIZE  LAST USED
        docker.io/library/bb:latest  [SHORT]  [SIZE]  [SIZE]  [SIZE]  [TIME]

        Build cache:
        NAME  SIZE  LAST USED  STATUS

        Layer snapshots:
        NAME  SIZE  LAST USED  STATUS

        Cache mounts:
        NAME  SIZE  LAST USED  STATUS

        Builds:
        NAME  SIZE  LAST USED  STATUS
        "#);
    assert_filtered!(env, ok(&env, &["df", "--format", "json"]), json, @r#"
        {
          "reclaimable": [BYTES],
          "root": "[TMP]/root",
          "rows": [
            {
              "active": 1,
              "bytes": [BYTES],
              "count": 1,
              "reclaimable": [BYTES],
              "type": "images"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "build_cache"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "other_blobs"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "snapshots"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "cache_mounts"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "logs"
            },
            {
              "active": 0,
              "bytes": [BYTES],
              "count": 0,
              "reclaimable": [BYTES],
              "type": "other"
            }
          ],
          "total": [BYTES],
          "version": 1
        }
        "#);
    let out = slipway(&env, &["--progress", "quiet", "prune", "--keep-storage", "1KiB"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_filtered!(env, String::from_utf8(out.stdout).unwrap(), table, @r#"
        total: 0 blobs deleted, [SIZE] freed
        total: 0 layer snapshots deleted, 0 kept
        keep-storage: the store takes [SIZE], the cap is [SIZE]
        kept image docker.io/library/bb:latest [SIZE]: tagged (only --all removes tagged images)
        kept store files [SIZE]: the store's own files (tags, metadata, locks, directories)
        total: 0 removed, [SIZE] freed; the store takes [SIZE], over the [SIZE] cap
        "#);
    assert_filtered!(env, String::from_utf8(out.stderr).unwrap(), table, @r#"
        error: the store still takes [SIZE] ([N] bytes), over the --keep-storage cap of [SIZE] ([N] bytes): everything left is kept for the reasons above
        "#);
    let out = slipway(&env, &["prune", "--keep-storage", "1KiB", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_filtered!(env, String::from_utf8(out.stdout).unwrap(), json, @r#"
        {
          "blobs": {
            "bytes_freed": 0,
            "removed": [],
            "temp_bytes_freed": 0,
            "temp_removed": []
          },
          "cache_mounts": null,
          "keep_storage": {
            "after": [BYTES],
            "before": [BYTES],
            "cap": [BYTES],
            "kept": [
              {
                "bytes": [BYTES],
                "kept": "tagged",
                "last_used": "[TIME]",
                "name": "docker.io/library/bb:latest",
                "type": "images",
                "why": "tagged (only --all removes tagged images)"
              },
              {
                "bytes": [BYTES],
                "kept": "store",
                "last_used": null,
                "name": "store files",
                "type": "other",
                "why": "the store's own files (tags, metadata, locks, directories)"
              }
            ],
            "met": false,
            "removed": []
          },
          "snapshots": {
            "kept": 0,
            "removed": []
          },
          "version": 1
        }
        "#);
}
