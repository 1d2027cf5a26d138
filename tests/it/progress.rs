//! `--progress`: what each mode writes on stderr for real commands, and that stdout keeps only
//! the command's own output.

use std::process::Output;

use serde_json::Value;

use crate::support::rootfs::busybox_rootfs;
use crate::support::{TestContext, describe};

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// A context with a busybox root filesystem at `<ctx>/rootfs`.
fn with_rootfs() -> (TestContext, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let path = rootfs.to_str().unwrap().to_string();
    (ctx, path)
}

/// Every stderr line parsed as a rawjson event, checking the fields every event has.
fn parse_events(out: &Output) -> Vec<Value> {
    stderr(out)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert_eq!(v["v"], 1, "{line}");
            assert!(v["ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000), "ts is not unix ms: {line}");
            assert!(v["id"].as_u64().is_some_and(|id| id >= 1), "{line}");
            assert!(v["type"].is_string(), "{line}");
            v
        })
        .collect()
}

/// The events of the task whose `task_started` name starts with `prefix` (the first such task).
fn task<'a>(events: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    let id = events
        .iter()
        .find(|e| e["type"] == "task_started" && e["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no task named {prefix}* in {events:#?}"))["id"]
        .clone();
    events.iter().filter(|e| e["id"] == id).collect()
}

/// Checks a task's life: started first, one end last (done), counts never going back; returns
/// the last count.
fn finished_task(events: &[Value], prefix: &str) -> Option<u64> {
    let task = task(events, prefix);
    assert_eq!(task.first().unwrap()["type"], "task_started");
    assert_eq!(task.last().unwrap()["type"], "task_done", "{task:#?}");
    assert!(task.last().unwrap()["duration_ms"].is_u64());
    assert_eq!(task.iter().filter(|e| e["type"] == "task_done" || e["type"] == "task_failed").count(), 1);
    let counts: Vec<u64> =
        task.iter().filter(|e| e["type"] == "task_progress").map(|e| e["current"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    counts.last().copied()
}

fn layer_size(ctx: &TestContext, image: &str) -> u64 {
    let inspect: Value = serde_json::from_slice(&ctx.ok(&["inspect", image]).stdout).unwrap();
    inspect[0]["Manifest"]["layers"][0]["size"].as_u64().unwrap()
}

#[test]
fn rawjson_import_reports_the_layer_bytes_up_to_its_size() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.ok(&["--progress", "rawjson", "import", &rootfs, "example/busybox:1"]);
    let id = stdout(&out);
    assert!(id.starts_with("sha256:") && id.lines().count() == 1, "stdout is only the id: {id:?}");
    let events = parse_events(&out);
    let last = finished_task(&events, "write layer").expect("write layer reported its bytes");
    assert_eq!(last, layer_size(&ctx, "example/busybox:1"), "{events:#?}");
    let progress = task(&events, "write layer").into_iter().find(|e| e["type"] == "task_progress").unwrap();
    assert_eq!(progress["unit"], "bytes");
}

#[test]
fn rawjson_save_load_and_prune_report_their_blobs() {
    let (ctx, rootfs) = with_rootfs();
    ctx.ok(&["import", &rootfs, "example/busybox:1", "--progress", "quiet"]);
    let archive = ctx.path().join("out.tar");
    let archive = archive.to_str().unwrap();

    // The flag also works after the subcommand.
    let out = ctx.ok(&["save", "example/busybox:1", "--format", "oci-archive", "-o", archive, "--progress", "rawjson"]);
    assert_eq!(stdout(&out), "");
    let events = parse_events(&out);
    let uncompressed = layer_size(&ctx, "example/busybox:1");
    assert_eq!(finished_task(&events, "compress layer"), Some(uncompressed));
    let copies: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "task_started" && e["name"].as_str().unwrap().starts_with("copy blob"))
        .collect();
    assert_eq!(copies.len(), 2, "the layer and the config: {events:#?}");
    for copy in copies {
        let name = copy["name"].as_str().unwrap();
        let total = task(&events, name).iter().find_map(|e| e["total"].as_u64()).unwrap();
        assert_eq!(finished_task(&events, name), Some(total), "{name} ends at its size");
    }

    let other = TestContext::new();
    let out = other.ok(&["--progress", "rawjson", "load", "-i", archive]);
    assert_eq!(stdout(&out), "Loaded image: example/busybox:1\n");
    let events = parse_events(&out);
    let ingests =
        events.iter().filter(|e| e["type"] == "task_started" && e["name"].as_str().unwrap().starts_with("ingest "));
    assert!(ingests.count() >= 3, "manifest, config and layer: {events:#?}");
    let verified = finished_task(&events, "verify layer").unwrap();
    let compressed: Value = serde_json::from_slice(&other.ok(&["inspect", "example/busybox:1"]).stdout).unwrap();
    assert_eq!(verified, compressed[0]["Manifest"]["layers"][0]["size"].as_u64().unwrap());

    other.ok(&["rmi", "example/busybox:1"]);
    let out = other.ok(&["prune", "--progress", "rawjson"]);
    let deleted = stdout(&out).lines().filter(|l| l.starts_with("deleted sha256:")).count() as u64;
    assert!(deleted >= 3, "{}", describe(&out));
    let events = parse_events(&out);
    finished_task(&events, "find referenced blobs");
    assert_eq!(finished_task(&events, "remove unreferenced blobs"), Some(deleted));
    let unit = task(&events, "remove unreferenced blobs").into_iter().find_map(|e| e["unit"].as_str()).unwrap();
    assert_eq!(unit, "items");
}

#[test]
fn plain_prints_readable_lines_on_stderr_only() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.ok(&["import", "--progress", "plain", &rootfs, "example/busybox:1"]);
    let id = stdout(&out);
    assert!(id.starts_with("sha256:") && id.lines().count() == 1, "stdout is only the id: {id:?}");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.first(), Some(&"#1 write layer"), "{err}");
    assert!(lines.last().unwrap().starts_with("#1 DONE ") && lines.last().unwrap().ends_with('s'), "{err}");
    assert!(lines.iter().all(|l| l.starts_with("#1 ")), "{err}");
    assert!(lines.iter().any(|l| l.contains("MB") || l.contains("kB")), "a byte count: {err}");
}

#[test]
fn plain_folds_each_task_into_a_github_group() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.cmd().env("GITHUB_ACTIONS", "true").args(["--progress", "plain", "import", &rootfs, "a:1"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "::group::#1 write layer", "{err}");
    let end = lines.iter().position(|l| *l == "::endgroup::").expect("the group is closed");
    assert!(lines[1..end].iter().all(|l| l.starts_with("#1 ")), "{err}");
    assert!(lines[end + 1].starts_with("#1 DONE "), "the end line follows the group: {err}");
    assert_eq!(lines.len(), end + 2, "{err}");
}

#[test]
fn plain_folds_each_task_into_a_gitlab_section() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.cmd().env("GITLAB_CI", "true").args(["--progress", "plain", "import", &rootfs, "a:1"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let start = lines[0].strip_prefix("\x1b[0Ksection_start:").expect("a section starts");
    let (ts, rest) = start.split_once(':').unwrap();
    assert!(ts.parse::<u64>().is_ok_and(|t| t > 1_600_000_000), "unix seconds: {err:?}");
    assert_eq!(rest, "slipway_1[collapsed=true]\r\x1b[0K#1 write layer", "{err:?}");
    let end = lines.iter().position(|l| l.starts_with("\x1b[0Ksection_end:")).expect("the section ends");
    assert!(lines[end].ends_with(":slipway_1\r\x1b[0K"), "{err:?}");
    assert!(lines[1..end].iter().all(|l| l.starts_with("#1 ")), "{err:?}");
    assert!(lines[end + 1].starts_with("#1 DONE "), "{err:?}");
}

#[test]
fn quiet_prints_nothing_on_stderr_on_success() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.ok(&["--progress", "quiet", "import", &rootfs, "example/busybox:1"]);
    assert!(stdout(&out).starts_with("sha256:"));
    assert_eq!(stderr(&out), "");
    let out = ctx.ok(&["--progress", "quiet", "prune"]);
    assert_eq!(stderr(&out), "");
}

#[test]
fn quiet_build_prints_nothing_on_stderr_and_q_still_prints_the_id() {
    let ctx = TestContext::new();
    let dir = ctx.path().join("ctx");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(dir.join("a"), "a\n").unwrap();
    let dir = dir.to_str().unwrap();
    let out = ctx.ok(&["--progress", "quiet", "build", "-t", "a:1", dir]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""), "no `built …`, no `named …`");
    let out = ctx.ok(&["--progress", "quiet", "build", "-q", "-t", "a:2", dir]);
    assert!(stdout(&out).starts_with("sha256:") && stdout(&out).lines().count() == 1, "{}", describe(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn quiet_still_prints_errors() {
    let ctx = TestContext::new();
    let out = ctx.run(&["--progress", "quiet", "import", "/nonexistent/rootfs", "example/busybox:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", describe(&out));
}

#[test]
fn auto_is_plain_in_ci_and_off_a_terminal() {
    let (ctx, rootfs) = with_rootfs();
    let out = ctx.cmd().env("CI", "true").args(["--progress", "auto", "import", &rootfs, "a:1"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).starts_with("#1 write layer\n"), "{}", describe(&out));
    // The default is auto; stderr here is a pipe, so plain even outside CI.
    let out = ctx.cmd().env_remove("CI").args(["import", &rootfs, "b:1"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).starts_with("#1 write layer\n"), "{}", describe(&out));
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let ctx = TestContext::new();
    let out = ctx.run(&["--progress", "fancy", "images"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("fancy"), "{}", describe(&out));
}

#[test]
fn rawjson_reports_a_failed_task_before_the_error() {
    let (ctx, rootfs) = with_rootfs();
    ctx.ok(&["--progress", "quiet", "import", &rootfs, "example/busybox:1"]);
    let layout = ctx.path().join("layout");
    ctx.ok(&[
        "--progress",
        "quiet",
        "save",
        "example/busybox:1",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
    ]);
    // Truncate the layer blob: its ingest must fail the digest check.
    let layer = layer_size(&ctx, "example/busybox:1");
    let blobs = layout.join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 10_000)
        .expect("the layer blob");
    assert!(layer > 10_000);
    std::fs::write(&victim, b"not the layer").unwrap();

    let other = TestContext::new();
    let out = other.run(&["--progress", "rawjson", "load", "-i", layout.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    let (json, report): (Vec<&str>, Vec<&str>) = err.lines().partition(|l| l.starts_with('{'));
    assert!(report.first().is_some_and(|l| l.starts_with("error: ")), "{err}");
    let events: Vec<Value> = json.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let failed = events.iter().find(|e| e["type"] == "task_failed").unwrap_or_else(|| panic!("{err}"));
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    let started = events.iter().find(|e| e["type"] == "task_started" && e["id"] == failed["id"]).unwrap();
    assert!(started["name"].as_str().unwrap().starts_with("ingest blobs/sha256/"), "{started}");
}

#[test]
fn rawjson_import_of_a_tar_reports_the_unpack_then_the_layer() {
    let (ctx, rootfs) = with_rootfs();
    let tar = ctx.path().join("rootfs.tar");
    let status = std::process::Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&rootfs).arg(".").status();
    assert!(status.expect("GNU tar").success());
    let out = ctx.ok(&["--progress", "rawjson", "import", tar.to_str().unwrap(), "example/busybox:1"]);
    let events = parse_events(&out);
    let read = finished_task(&events, "unpack rootfs.tar").expect("unpack reported its bytes");
    let tar_size = std::fs::metadata(&tar).unwrap().len();
    // The reader stops at the end-of-archive blocks; GNU tar pads the file past them.
    assert!(read > tar_size / 2 && read <= tar_size, "read {read} of {tar_size}");
    assert_eq!(finished_task(&events, "write layer"), Some(layer_size(&ctx, "example/busybox:1")));
    let order: Vec<&str> =
        events.iter().filter(|e| e["type"] == "task_started").map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["unpack rootfs.tar", "write layer"]);
}
