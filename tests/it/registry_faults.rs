//! The registry client against faults (catalogue G1–G12, I2): the real `docker-registry` behind
//! the fault-injecting proxy of `support::proxy`, which cuts, corrupts, delays, redirects and
//! rate-limits, issues Bearer tokens, and counts what reaches it.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::TestContext;
use crate::support::proxy::{Action, Proxy, Rule, respond};
use crate::support::registry::{Registry, RegistryConfig, busybox, ok, push_cmd, remote_manifest, stderr, stdout};

/// Size of the big layer of the resume tests (`SLIPWAY_TEST_RESUME_SIZE`, bytes; the acceptance
/// run uses 500 MiB).
fn resume_size() -> u64 {
    std::env::var("SLIPWAY_TEST_RESUME_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(24 << 20)
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
    compress_beforehand(&ctx, "example/big:1");
    (ctx, stdout(&out).trim().to_string())
}

/// Makes the gzip layers of `image` now (`save` keeps them in the store), so that a push
/// uploads them from the store, in chunks it can resume — not while compressing them (an upload
/// made while compressing is not resumed: it is dropped and done again from the store).
fn compress_beforehand(ctx: &TestContext, image: &str) {
    let layout = ctx.path().join("compressed-beforehand");
    ctx.ok(&["save", image, "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    std::fs::remove_dir_all(layout).unwrap();
}

/// G1: a `PATCH` cut at half of a big layer is resumed at the registry's offset in the same
/// run: one upload session, and at most one chunk sent twice.
#[test]
fn push_cut_at_half_resumes_in_the_same_run() {
    let size = resume_size();
    let chunk = (size / 8).max(256 << 10);
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        Action::CutRequest { after_total: size / 2 + chunk / 2, hook: None },
    ));
    let (ctx, id) = big_image(size);
    let dest = format!("{}/example/big:1", proxy.host());
    ok(push_cmd(&ctx, "example/big:1", &dest, chunk));
    assert_eq!(proxy.rules_left(), 0, "the proxy cut nothing");
    let manifest = remote_manifest(&format!("{}/example/big:1", registry.host()));
    let layer = manifest["layers"][0]["size"].as_u64().unwrap();
    let sent = proxy.body_bytes("PATCH", "/blobs/uploads/");
    eprintln!("sent {sent} bytes for a {layer}-byte layer: {} again (chunk {chunk})", sent - layer.min(sent));
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
    proxy.rule(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        Action::CutRequest { after_total: size / 2 + chunk / 2, hook: Some(kill) },
    ));
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
    eprintln!("sent {sent} bytes for a {layer}-byte layer: {} again (chunk {chunk})", sent - layer.min(sent));
    assert!(sent >= layer && sent - layer <= chunk, "sent {sent} for a {layer}-byte layer (chunk {chunk})");
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/big:1", registry.host())])).trim(), id);
}

/// G1: a `PATCH` answered 416 and three dropped `PATCH`es are survived by asking the registry
/// for its offset; an upload status that is garbage starts the upload over.
#[test]
fn push_survives_a_416_and_repeated_drops() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", respond(416, &[], b"")).skip(1));
    // The first upload status is garbage: that upload starts over.
    proxy.rule(Rule::new("GET", "/blobs/uploads/", respond(204, &[("Range", "bytes=lots")], b"")));
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: 300_000, hook: None }).times(3));
    let (ctx, id) = busybox();
    compress_beforehand(&ctx, "example/busybox:1");
    let dest = format!("{}/example/drops:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 128 << 10));
    assert_eq!(proxy.rules_left(), 0, "{}", proxy.dump());
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 3, "config, layer, layer again:\n{}", proxy.dump());
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

/// G2: one 5xx on each kind of request (HEAD, POST, PATCH, closing PUT, manifest PUT, token GET)
/// is retried and the push completes; a persistent 503 fails after the policy's attempts.
#[test]
fn server_errors_once_on_every_request_are_retried() {
    let (_registry, proxy) = crate::support::registry::token_registry(None);
    for (method, path, status) in [
        ("GET", "/token", 503),
        ("HEAD", "/blobs/", 500),
        ("POST", "/blobs/uploads/", 502),
        ("PATCH", "/blobs/uploads/", 503),
        ("PUT", "/blobs/uploads/", 503),
        ("PUT", "/manifests/", 502),
    ] {
        proxy.rule(Rule::new(method, path, respond(status, &[], b"{\"errors\":[]}")));
    }
    let (ctx, id) = busybox();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{}/example/flaky:1", proxy.host()), 256 << 10));
    assert_eq!(proxy.rules_left(), 0, "{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/flaky:1", proxy.host())])).trim(), id);

    proxy.rule(
        Rule::new("PUT", "/manifests/", respond(503, &[], b"{\"errors\":[{\"code\":\"UNAVAILABLE\"}]}")).times(100),
    );
    let before = proxy.count("PUT", "/manifests/");
    let out =
        push_cmd(&ctx, "example/busybox:1", &format!("{}/example/down:1", proxy.host()), 256 << 10).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("503") && err.contains("example/down"), "{err}");
    assert_eq!(proxy.count("PUT", "/manifests/") - before, 4, "{}", proxy.dump());
}

/// An HTTP date `secs` from now (IMF-fixdate).
fn http_date_in(secs: u64) -> String {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + secs;
    let out =
        Command::new("date").args(["-u", "-d", &format!("@{at}"), "+%a, %d %b %Y %H:%M:%S GMT"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// G3: 429 with `Retry-After` in seconds and as an HTTP date is waited for; one far in the
/// future fails at once, saying so.
#[test]
fn rate_limits_are_waited_for_or_fail_fast() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, _) = busybox();
    let body = b"{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow down\"}]}";
    // The date is made now and read at the first request, a fraction of a second later.
    proxy.rule(Rule::new("HEAD", "/blobs/", respond(429, &[("Retry-After", &http_date_in(4))], body)));
    proxy.rule(Rule::new("PUT", "/manifests/", respond(429, &[("Retry-After", "2")], body)));
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{}/example/limited:1", proxy.host()), 16 << 20));
    assert_eq!(proxy.rules_left(), 0);
    let log = proxy.log();
    let gap = |method: &str, path: &str| {
        let first = log.iter().find(|e| e.method == method && e.target.contains(path)).unwrap();
        let again = log.iter().filter(|e| e.method == method && e.target == first.target).nth(1).unwrap();
        again.at.duration_since(first.at)
    };
    // The date has whole seconds: at least 2 of the 4 seconds are left when it is read.
    assert!(gap("HEAD", "/blobs/") >= Duration::from_millis(1900), "{:?}", gap("HEAD", "/blobs/"));
    assert!(gap("PUT", "/manifests/") >= Duration::from_millis(1900), "{:?}", gap("PUT", "/manifests/"));

    proxy.rule(Rule::new("HEAD", "/blobs/", respond(429, &[("Retry-After", "3600")], body)).times(10));
    let started = Instant::now();
    let out =
        push_cmd(&ctx, "example/busybox:1", &format!("{}/example/limited:2", proxy.host()), 16 << 20).output().unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let err = stderr(&out);
    assert!(err.contains("rate limited") && err.contains("3600"), "{err}");
}

/// G4: a flipped byte in a blob, or a registry claiming another manifest digest, fails the pull
/// or push with a digest mismatch and stores nothing.
#[test]
fn corrupted_blobs_and_wrong_digest_headers_are_refused() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, _) = busybox();
    let dest = format!("{}/example/corrupt:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));
    let layer = remote_manifest(&format!("{}/example/corrupt:1", registry.host()))["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    proxy.rule(Rule::new("GET", &format!("/blobs/{layer}"), Action::FlipResponseByte { at: 1000 }).times(10));
    let other = TestContext::new();
    let out = other.run(&["pull", &dest]);
    assert!(!out.status.success(), "a corrupt layer was accepted");
    let err = stderr(&out);
    assert!(err.contains("mismatch") && err.contains(&layer), "{err}");
    assert_eq!(stdout(&other.ok(&["images", "-q"])).trim(), "", "an image was named");
    let blob = other.root().join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "the corrupt blob was stored");

    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    proxy.rule(Rule::new(
        "GET",
        "/manifests/1",
        Action::SetResponseHeader("Docker-Content-Digest".into(), wrong.into()),
    ));
    let third = TestContext::new();
    let out = third.run(&["pull", &dest]);
    assert!(!out.status.success(), "a manifest with a wrong Docker-Content-Digest was accepted");
    assert!(stderr(&out).contains(wrong), "{}", stderr(&out));

    proxy.rule(Rule::new(
        "PUT",
        "/manifests/",
        Action::SetResponseHeader("Docker-Content-Digest".into(), wrong.into()),
    ));
    let out =
        push_cmd(&ctx, "example/busybox:1", &format!("{}/example/claimed:1", proxy.host()), 16 << 20).output().unwrap();
    assert!(!out.status.success(), "a push confirmed with another digest succeeded");
    assert!(stderr(&out).contains("mismatch"), "{}", stderr(&out));
}

/// G11: a manifest, an error body or a token answer beyond the caps is refused without reading
/// it all.
#[test]
fn oversized_answers_are_capped() {
    let (_registry, proxy) = crate::support::registry::token_registry(None);
    let (ctx, _) = busybox();
    let dest = format!("{}/example/big:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));

    let huge = vec![b' '; 5 << 20];
    let manifest_type = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    proxy.rule(Rule::new("GET", "/manifests/1", respond(200, &manifest_type, &huge)));
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));

    let error_body = vec![b'e'; 1 << 20];
    proxy.rule(Rule::new("GET", "/manifests/1", respond(404, &[], &error_body)));
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success());
    assert!(out.stderr.len() < 70 << 10, "{} bytes of error", out.stderr.len());

    // An answer that never ends: a manifest is refused at its cap, a blob at its declared size.
    let endless = |path: &str| {
        Rule::new(
            "GET",
            path,
            Action::Endless { status: 200, headers: vec![("Content-Type".into(), manifest_type[0].1.into())] },
        )
    };
    proxy.rule(endless("/manifests/1"));
    let started = Instant::now();
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "an endless manifest read for {:?}", started.elapsed());
    proxy.rule(endless("/blobs/sha256:").times(10));
    let started = Instant::now();
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success(), "an endless blob was accepted");
    assert!(started.elapsed() < Duration::from_secs(30), "an endless blob read for {:?}", started.elapsed());

    let token = format!("{{\"token\":\"{}\"}}", "t".repeat(1 << 20));
    proxy.rule(Rule::new("GET", "/token", respond(200, &[], token.as_bytes())).times(10));
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
}

/// G10: response headers held back, or a body that stops coming, hit the idle timeout (short
/// here, by `SLIPWAY_REGISTRY_IDLE_TIMEOUT_MS`): the request is sent again, the download resumed.
#[test]
fn slow_answers_hit_the_idle_timeout_and_are_retried() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, id) = busybox();
    let dest = format!("{}/example/slow:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));
    let stall = Duration::from_secs(10);
    proxy.rule(Rule::new("GET", "/manifests/1", Action::Delay(stall)));
    // The config comes first; the layer stops after 100 kB.
    proxy.rule(Rule::new("GET", "/blobs/sha256:", Action::StallResponse { after: 100_000, stall }).skip(1));
    registry.mark("pull");
    let other = TestContext::new();
    let started = Instant::now();
    let mut cmd = other.cmd();
    cmd.args(["pull", &dest]).env("SLIPWAY_REGISTRY_IDLE_TIMEOUT_MS", "700");
    assert_eq!(stdout(&ok(cmd)).trim(), id);
    // Both stalls were given up long before they ended (the held-back answer is logged by the
    // proxy only when it ends, so the log cannot count it yet).
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert_eq!(proxy.rules_left(), 0, "{}", proxy.dump());
    assert!(registry.log_since("pull").contains("\" 206 "), "no resumed download: {}", registry.log_since("pull"));
}

/// G5: path-only `Location`s (`relativeurls`), and a `202` without a `Location`, which is a clear
/// error.
#[test]
fn relative_and_missing_locations() {
    let registry = Registry::start_with(RegistryConfig { relative_urls: true, ..RegistryConfig::default() });
    let (ctx, id) = busybox();
    let dest = format!("{}/example/relative:1", registry.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 256 << 10));
    assert!(registry.count_since("", "PATCH", "/blobs/uploads/") > 1, "{}", registry.log());
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);

    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("POST", "/blobs/uploads/", respond(202, &[], b"")).times(100));
    let out = push_cmd(&ctx, "example/busybox:1", &format!("{}/example/nowhere:1", proxy.host()), 256 << 10)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("without a Location header") && err.contains("example/nowhere"), "{err}");
}

/// G9: a `HEAD` that lies (200 for a blob the repository lacks) makes the manifest `PUT` fail
/// with `MANIFEST_BLOB_UNKNOWN`; the blobs are uploaded again, once, and the manifest goes.
#[test]
fn a_lying_head_is_caught_by_the_manifest_put() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let (ctx, id) = busybox();
    proxy.rule(Rule::new("HEAD", "/blobs/sha256:", respond(200, &[], b"")).times(2));
    let dest = format!("{}/example/lied:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));
    let puts: Vec<u16> = proxy.log().iter().filter(|e| e.target.contains("/manifests/")).map(|e| e.status).collect();
    assert_eq!(puts, [400, 201], "{}", proxy.dump());
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);

    // A registry that keeps refusing gets one more try, not a loop.
    proxy.rule(
        Rule::new("PUT", "/manifests/", respond(400, &[], b"{\"errors\":[{\"code\":\"MANIFEST_BLOB_UNKNOWN\"}]}"))
            .times(10),
    );
    let out =
        push_cmd(&ctx, "example/busybox:1", &format!("{}/example/lied:2", proxy.host()), 16 << 20).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("MANIFEST_BLOB_UNKNOWN"), "{}", stderr(&out));
    assert_eq!(proxy.count("PUT", "/example/lied/manifests/2"), 2, "{}", proxy.dump());
}
