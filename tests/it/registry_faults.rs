//! The registry client against faults (catalogue G1–G12, I2): the real `docker-registry` behind
//! the fault-injecting proxy of `support::proxy`, which cuts, corrupts, delays, redirects and
//! rate-limits, issues Bearer tokens, and counts what reaches it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::TestContext;
use crate::support::proxy::{Action, Proxy, Rule, respond};
use crate::support::registry::{Registry, RegistryConfig};
use crate::support::rootfs::busybox_rootfs;

/// Size of the big layer of the resume tests (`SLIPWAY_TEST_RESUME_SIZE`, bytes; the acceptance
/// run uses 500 MiB).
fn resume_size() -> u64 {
    std::env::var("SLIPWAY_TEST_RESUME_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(24 << 20)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh store with busybox imported as `example/busybox:1`; returns it and the image id.
fn busybox() -> (TestContext, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let out = ctx.ok(&["import", rootfs.to_str().unwrap(), "example/busybox:1"]);
    (ctx, stdout(&out).trim().to_string())
}

/// A fresh store with an image `example/big:1` of one file of `size` incompressible bytes.
fn big_image(size: u64) -> (TestContext, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(rootfs.join("big")).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut left = size;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = left.min(8) as usize;
        std::io::Write::write_all(&mut file, &x.to_le_bytes()[..n]).unwrap();
        left -= n as u64;
    }
    drop(file);
    let out = ctx.ok(&["import", rootfs.to_str().unwrap(), "example/big:1"]);
    (ctx, stdout(&out).trim().to_string())
}

/// The manifest of `reference` (on a plain-HTTP registry) as skopeo reads it.
fn remote_manifest(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("spawn skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `slipway push` with `chunk` as the chunk size.
fn push_cmd(ctx: &TestContext, image: &str, dest: &str, chunk: u64) -> Command {
    let mut cmd = ctx.cmd();
    cmd.args(["push", image, dest]).env("SLIPWAY_PUSH_CHUNK_SIZE", chunk.to_string());
    cmd
}

fn ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn slipway");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", stderr(&out));
    out
}

/// G1: a `PATCH` cut at half of a big layer is resumed at the registry's offset in the same
/// run: one upload session, and at most one chunk sent twice.
#[test]
fn push_cut_at_half_resumes_in_the_same_run() {
    let size = resume_size();
    let chunk = (size / 8).max(256 << 10);
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: size / 2, hook: None }));
    let (ctx, id) = big_image(size);
    let dest = format!("{}/example/big:1", proxy.host());
    ok(push_cmd(&ctx, "example/big:1", &dest, chunk));
    assert_eq!(proxy.rules_left(), 0, "the proxy cut nothing");
    let manifest = remote_manifest(&format!("{}/example/big:1", registry.host()));
    let layer = manifest["layers"][0]["size"].as_u64().unwrap();
    let sent = proxy.body_bytes("PATCH", "/blobs/uploads/");
    assert!(sent >= layer && sent - layer <= chunk, "sent {sent} for a {layer}-byte layer (chunk {chunk})");
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2, "an upload started over:\n{}", proxy.dump());
    assert!(proxy.count("GET", "/blobs/uploads/") >= 1, "no upload status asked:\n{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/big:1", registry.host())])).trim(), id);
}

/// G1 after kill -9: the client is killed once half the layer reached the proxy; the next run
/// finds the session in the store, asks the registry where it stands and sends the rest.
#[test]
fn push_killed_at_half_resumes_in_the_next_run() {
    let size = resume_size();
    let chunk = (size / 8).max(256 << 10);
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let pid = Arc::new(AtomicU32::new(0));
    let victim = pid.clone();
    let kill: crate::support::proxy::Hook = Arc::new(move || {
        let pid = victim.load(Ordering::SeqCst);
        assert!(pid > 0, "no pid to kill");
        // SAFETY: kill(2) on a child this test spawned.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    });
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: size / 2, hook: Some(kill) }));
    let (ctx, id) = big_image(size);
    let dest = format!("{}/example/big:1", proxy.host());
    let mut child =
        push_cmd(&ctx, "example/big:1", &dest, chunk).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    pid.store(child.id(), Ordering::SeqCst);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the push was not killed: {status:?}");
    let before = proxy.log().len();

    ok(push_cmd(&ctx, "example/big:1", &dest, chunk));
    let rerun = &proxy.log()[before..];
    let posts = rerun.iter().filter(|e| e.method == "POST").count();
    assert_eq!(posts, 0, "the rerun started a new upload:\n{}", proxy.dump());
    assert!(rerun.iter().any(|e| e.method == "GET" && e.target.contains("/blobs/uploads/")), "{}", proxy.dump());
    let manifest = remote_manifest(&format!("{}/example/big:1", registry.host()));
    let layer = manifest["layers"][0]["size"].as_u64().unwrap();
    let sent = proxy.body_bytes("PATCH", "/blobs/uploads/");
    assert!(sent >= layer && sent - layer <= chunk, "sent {sent} for a {layer}-byte layer (chunk {chunk})");
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/big:1", registry.host())])).trim(), id);
}

/// G1: a `PATCH` answered 416 and three dropped `PATCH`es are survived by asking the registry
/// for its offset.
#[test]
fn push_survives_a_416_and_repeated_drops() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", respond(416, &[], b"")).skip(1));
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: 300_000, hook: None }).times(3));
    let (ctx, id) = busybox();
    let dest = format!("{}/example/drops:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 128 << 10));
    assert_eq!(proxy.rules_left(), 0, "{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/drops:1", registry.host())])).trim(), id);
}

/// Cross-repository mount: a second repository of the same registry gets every blob by mount,
/// from a repository pushed to or pulled from; a refused mount (404) or a registry that opens a
/// plain session instead (202) falls back to an upload (G9).
#[test]
fn second_repository_gets_blobs_by_mount() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, id) = busybox();
    let host = proxy.host();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{host}/team/a:1"), 16 << 20));
    let before = proxy.log().len();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{host}/team/b:1"), 16 << 20));
    let log = &proxy.log()[before..];
    let uploaded: u64 = log.iter().filter(|e| e.method == "PUT" || e.method == "PATCH").map(|e| e.body_bytes).sum();
    let manifest_bytes: u64 = log.iter().filter(|e| e.target.contains("/manifests/")).map(|e| e.body_bytes).sum();
    assert_eq!(uploaded, manifest_bytes, "blob bytes were uploaded:\n{}", proxy.dump());
    assert_eq!(log.iter().filter(|e| e.target.contains("mount=") && e.status == 201).count(), 2, "{}", proxy.dump());

    // A store that pulled from team/a mounts from there too.
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{host}/team/a:1")])).trim(), id);
    let before = proxy.log().len();
    ok(push_cmd(&other, &format!("{host}/team/a:1"), &format!("{host}/team/c:1"), 16 << 20));
    let log = &proxy.log()[before..];
    assert_eq!(log.iter().filter(|e| e.target.contains("from=team%2Fa") && e.status == 201).count(), 2);
}

/// G9: a registry that cannot mount opens a plain session (202), which is used; a refused mount
/// (404) falls back to a plain upload; sources that failed are forgotten.
#[test]
fn refused_mounts_fall_back_to_uploads() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, id) = busybox();
    let host = proxy.host();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{host}/solo/x:1"), 16 << 20));
    // solo/x loses its layer: the registry cannot mount it from there any more.
    let layer =
        remote_manifest(&format!("{}/solo/x:1", registry.host()))["layers"][0]["digest"].as_str().unwrap().to_string();
    let delete = reqwest::blocking::Client::new()
        .delete(format!("http://{}/v2/solo/x/blobs/{layer}", registry.host()))
        .send()
        .unwrap();
    assert_eq!(delete.status().as_u16(), 202);
    let before = proxy.log().len();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{host}/solo/y:1"), 16 << 20));
    let log = &proxy.log()[before..];
    let mount = |status: u16| log.iter().filter(|e| e.target.contains("mount=") && e.status == status).count();
    assert_eq!((mount(201), mount(202)), (1, 1), "{}", proxy.dump());
    assert!(log.iter().any(|e| e.method == "PUT" && e.target.contains(&layer.replace(':', "%3A"))), "{}", proxy.dump());

    proxy.rule(Rule::new("POST", "mount=", respond(404, &[], b"")).times(10));
    let before = proxy.log().len();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{host}/solo/z:1"), 16 << 20));
    let log = &proxy.log()[before..];
    let plain = log.iter().filter(|e| e.method == "POST" && !e.target.contains("mount=")).count();
    assert_eq!(plain, 2, "{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/solo/z:1", registry.host())])).trim(), id);
}
