//! `push`, `pull`, `login`, `logout` against the real `docker-registry` (distribution 2.8) on
//! 127.0.0.1, cross-checked with skopeo.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::TestContext;
use crate::support::proxy::{Action, Proxy, Rule};
use crate::support::registry::{Registry, RegistryConfig};
use crate::support::rootfs::busybox_rootfs;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A fresh store with busybox imported as `name`; returns the context and the image id.
fn imported(name: &str) -> (TestContext, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let out = ctx.ok(&["import", rootfs.to_str().unwrap(), name]);
    (ctx, stdout(&out).trim().to_string())
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let out = Command::new("skopeo").args(args).output().expect("spawn skopeo");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The digest `push` printed (`name@sha256:…`).
fn pushed_digest(out: &std::process::Output) -> String {
    let text = stdout(out);
    let line = text.lines().last().unwrap_or_default();
    line.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_else(|| panic!("push printed {text:?}"))
}

#[test]
fn push_is_seen_by_skopeo_and_pulls_back_to_the_same_image() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    let dest = format!("{}/example/busybox:1", registry.host());
    let digestfile = ctx.path().join("digest");
    let out = ctx.ok(&["push", "--digestfile", digestfile.to_str().unwrap(), "example/busybox:1", &dest]);
    let digest = pushed_digest(&out);
    assert_eq!(std::fs::read_to_string(&digestfile).unwrap(), digest);

    let inspect = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{dest}")]);
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(json["Digest"], digest.as_str(), "{json}");

    let layout = ctx.path().join("copied");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:copied", layout.display()),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{index}");

    let other = TestContext::new();
    let pulled = other.ok(&["pull", &dest]);
    assert_eq!(stdout(&pulled).trim(), id);
    let images = other.ok(&["images", "--format", "json"]);
    assert!(stdout(&images).contains(&id), "{}", stdout(&images));
    // Pulling again fetches nothing and answers the same.
    registry.mark("second pull");
    assert_eq!(stdout(&other.ok(&["pull", &dest])).trim(), id);
    assert_eq!(registry.count_since("second pull", "GET", "/blobs/"), 0, "{}", registry.log_since("second pull"));
    // A pinned pull checks the manifest digest.
    let pinned = format!("{}/example/busybox@{digest}", registry.host());
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &pinned])).trim(), id);
}

#[test]
fn second_push_of_an_unchanged_image_uploads_no_blob() {
    let registry = Registry::start();
    let (ctx, _) = imported("example/busybox:1");
    let dest = format!("{}/example/again:1", registry.host());
    let third = format!("{}/example/third:2", registry.host());
    // Two destinations in one run.
    let first = pushed_digest(&ctx.ok(&["push", "example/busybox:1", &dest, &third]));
    // The second destination gets the blobs by cross-repository mount from the first.
    assert!(registry.count_since("", "PUT", "/blobs/uploads/") >= 2, "{}", registry.log());
    assert_eq!(registry.count_since("", "POST", "/example/third/blobs/uploads/?mount="), 2, "{}", registry.log());
    assert_eq!(registry.count_since("", "PUT", "/example/third/blobs/uploads/"), 0, "{}", registry.log());
    registry.mark("second push");
    let second = pushed_digest(&ctx.ok(&["push", "example/busybox:1", &dest]));
    assert_eq!(first, second);
    let log = registry.log_since("second push");
    assert_eq!(registry.count_since("second push", "PUT", "/blobs/"), 0, "{log}");
    assert_eq!(registry.count_since("second push", "PATCH", "/blobs/"), 0, "{log}");
    assert_eq!(registry.count_since("second push", "POST", "/blobs/"), 0, "{log}");
    assert_eq!(registry.count_since("second push", "PUT", "/manifests/"), 1, "{log}");
    let inspect = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{third}")]);
    assert!(stdout(&inspect).contains(&first), "{}", stdout(&inspect));
}

#[test]
fn chunked_push_with_small_chunks_round_trips() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    let dest = format!("{}/example/chunked:1", registry.host());
    let out =
        ctx.cmd().args(["push", "example/busybox:1", &dest]).env("SLIPWAY_PUSH_CHUNK_SIZE", "65536").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(registry.count_since("", "PATCH", "/blobs/uploads/") > 2, "{}", registry.log());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &dest])).trim(), id);
}

#[test]
fn image_pushed_by_skopeo_is_pulled() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    let layout = ctx.path().join("layout");
    ctx.ok(&["save", "example/busybox:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    let dest = format!("{}/from/skopeo:latest", registry.host());
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
    ]);
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &dest])).trim(), id);
    // And it runs.
    let out = other.ok(&["run", &dest, "/bin/busybox", "echo", "pulled from skopeo"]);
    assert_eq!(stdout(&out), "pulled from skopeo\n");
}

#[test]
fn missing_tag_names_registry_and_repository() {
    let registry = Registry::start();
    let ctx = TestContext::new();
    let dest = format!("{}/nothing/here:1", registry.host());
    let out = ctx.run(&["pull", &dest]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&registry.host()) && err.contains("nothing/here") && err.contains("404"), "{err}");
}

#[test]
fn basic_auth_over_tls_with_login_and_logout() {
    let registry = Registry::start_with(RegistryConfig {
        tls: true,
        htpasswd: Some(("tester".into(), "s3cret".into())),
        ..RegistryConfig::default()
    });
    let (ctx, id) = imported("example/busybox:1");
    let authfile = ctx.path().join("auth/config.json");
    let cert = registry.ca();
    let dest = format!("{}/private/busybox:1", registry.host());
    let with_env = |cmd: &mut Command| {
        cmd.env("SSL_CERT_FILE", &cert)
            .env_remove("REGISTRY_AUTH_FILE")
            .env("DOCKER_CONFIG", ctx.path().join("nodocker"));
    };

    // Without credentials the push is refused.
    let mut cmd = ctx.cmd();
    with_env(&mut cmd);
    let out =
        cmd.args(["push", "--authfile", authfile.to_str().unwrap(), "example/busybox:1", &dest]).output().unwrap();
    assert!(!out.status.success(), "anonymous push succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));

    // A wrong password is refused by login and nothing is written.
    let login = |password: &str| {
        let mut cmd = ctx.cmd();
        with_env(&mut cmd);
        let mut child = cmd
            .args([
                "login",
                "--authfile",
                authfile.to_str().unwrap(),
                "-u",
                "tester",
                "--password-stdin",
                &registry.host(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!login("wrong").status.success());
    assert!(!authfile.exists());
    let out = login("s3cret");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777, 0o600);

    let mut cmd = ctx.cmd();
    with_env(&mut cmd);
    let out =
        cmd.args(["push", "--authfile", authfile.to_str().unwrap(), "example/busybox:1", &dest]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let other = TestContext::new();
    let mut cmd = other.cmd();
    with_env(&mut cmd);
    let out = cmd.args(["pull", "--authfile", authfile.to_str().unwrap(), &dest]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out).trim(), id);

    let mut cmd = ctx.cmd();
    with_env(&mut cmd);
    let out = cmd.args(["logout", "--authfile", authfile.to_str().unwrap(), &registry.host()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&authfile).unwrap();
    assert!(!text.contains(&registry.host()), "{text}");
}

#[test]
fn push_resumes_a_chunk_cut_by_a_dropped_connection() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: 700_000, hook: None }));
    let (ctx, id) = imported("example/busybox:1");
    // The gzip layer made beforehand (by `save`, which keeps it): the push uploads it from the
    // store, not while compressing it.
    let layout = ctx.path().join("layout");
    ctx.ok(&["save", "example/busybox:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    let dest = format!("{}/example/cut:1", proxy.host());
    let out =
        ctx.cmd().args(["push", "example/busybox:1", &dest]).env("SLIPWAY_PUSH_CHUNK_SIZE", "524288").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(proxy.rules_left(), 0, "the proxy cut nothing");
    // The registry saw the upload status request of the resume, and no second session.
    assert!(registry.count_since("", "GET", "/blobs/uploads/") >= 1, "{}", registry.log());
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), proxy.count("HEAD", "/blobs/"), "{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/cut:1", registry.host())])).trim(), id);
}

/// `push ARGS` in 64 KiB chunks with the registry module's debug log; returns its stderr.
fn push_in_64k_chunks(ctx: &TestContext, args: &[&str]) -> String {
    let out = ctx
        .cmd()
        .arg("push")
        .args(args)
        .env("SLIPWAY_PUSH_CHUNK_SIZE", "65536")
        .env("SLIPWAY_LOG", "slipway::registry=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// A layer compressed during the push goes up while it is compressed, each chunk as it is made,
/// and is uploaded once.
#[test]
fn layers_compressed_by_a_push_are_uploaded_while_compressed() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    let dest = format!("{}/example/ahead:1", registry.host());
    let stderr = push_in_64k_chunks(&ctx, &["--compression", "zstd", "example/busybox:1", &dest]);
    assert!(stderr.contains("uploaded while compressing"), "{stderr}");
    let log = registry.log();
    // The layer (about 1 MiB of zstd) in 64 KiB PATCHes, one session per blob, each closed once.
    assert!(registry.count_since("", "PATCH", "/blobs/uploads/") > 2, "{log}");
    assert_eq!(registry.count_since("", "POST", "/blobs/uploads/"), 2, "{log}");
    assert_eq!(registry.count_since("", "PUT", "/blobs/uploads/"), 2, "{log}");
    assert_eq!(registry.count_since("", "DELETE", "/blobs/uploads/"), 0, "{log}");
    let layout = ctx.path().join("copied");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{dest}"), &format!("oci:{}:c", layout.display())]);
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);
}

/// An upload made while compressing that breaks off is dropped, and the layer goes up from the
/// store after it is made.
#[test]
fn a_broken_upload_while_compressing_falls_back_to_uploading_from_the_store() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::CutRequest { after_total: 200_000, hook: None }));
    let (ctx, id) = imported("example/busybox:1");
    let dest = format!("{}/example/broken:1", proxy.host());
    let stderr = push_in_64k_chunks(&ctx, &["example/busybox:1", &dest]);
    assert_eq!(proxy.rules_left(), 0, "the proxy cut nothing");
    assert!(stderr.contains("uploading while compressing failed"), "{stderr}");
    assert!(!stderr.contains("uploaded while compressing"), "{stderr}");
    // The broken session and a new one for the layer, one for the config.
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 3, "{}", proxy.dump());
    let other = TestContext::new();
    assert_eq!(stdout(&other.ok(&["pull", &format!("{}/example/broken:1", registry.host())])).trim(), id);
}

#[test]
fn pull_resumes_a_blob_cut_by_a_dropped_connection() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    ctx.ok(&["push", "example/busybox:1", &format!("{}/example/cut:1", registry.host())]);
    let proxy = Proxy::start(registry.port);
    // The config comes first; the layer is cut.
    proxy.rule(Rule::new("GET", "/blobs/sha256:", Action::CutResponse { after: 300_000 }).skip(1));
    registry.mark("pull");
    let other = TestContext::new();
    let out = other.ok(&["pull", &format!("{}/example/cut:1", proxy.host())]);
    assert_eq!(stdout(&out).trim(), id);
    assert_eq!(proxy.rules_left(), 0, "the proxy cut nothing");
    // Config, layer, and the layer again from where the cut left it.
    assert_eq!(registry.count_since("pull", "GET", "/blobs/sha256:"), 3, "{}", registry.log_since("pull"));
    assert!(registry.log_since("pull").contains("\" 206 "), "no partial answer: {}", registry.log_since("pull"));
}

/// A tag naming a multi-platform index (made here by `load` of a layout whose index nests one):
/// every platform's blobs and manifest go first, then the index; skopeo copies all of it and a
/// pull picks the asked platform.
#[test]
fn multi_platform_index_is_pushed_whole() {
    let registry = Registry::start();
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let mut ids = Vec::new();
    for platform in ["linux/amd64", "linux/arm64"] {
        let tag = format!("example/multi:{}", platform.replace('/', "-"));
        let out = ctx.ok(&["import", "--platform", platform, rootfs.to_str().unwrap(), &tag]);
        ids.push(stdout(&out).trim().to_string());
    }
    let layout = ctx.path().join("layout");
    ctx.ok(&[
        "save",
        "example/multi:linux-amd64",
        "example/multi:linux-arm64",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
    ]);
    let top: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifests = Vec::new();
    for entry in top["manifests"].as_array().unwrap() {
        let name = entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or_default().to_string();
        let arch = if name.ends_with("arm64") { "arm64" } else { "amd64" };
        manifests.push(serde_json::json!({
            "mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    assert_eq!(manifests.len(), 2, "{top}");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .unwrap();
    let hex = format!("{:x}", sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&index)));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": "example/multi:1"},
    }]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let loaded = TestContext::new();
    loaded.ok(&["load", "-i", layout.to_str().unwrap()]);

    let dest = format!("{}/example/multi:1", registry.host());
    let digest = pushed_digest(&loaded.ok(&["push", "example/multi:1", &dest]));
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{dest}")]);
    let hex = format!("{:x}", sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&raw.stdout)));
    assert_eq!(digest, format!("sha256:{hex}"));
    let pushed: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(pushed["mediaType"], "application/vnd.oci.image.index.v1+json", "{pushed}");
    assert_eq!(pushed["manifests"].as_array().unwrap().len(), 2, "{pushed}");
    let copied = ctx.path().join("copied");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:all", copied.display()),
    ]);
    let arm = TestContext::new();
    assert_eq!(stdout(&arm.ok(&["pull", "--platform", "linux/arm64", &dest])).trim(), ids[1]);
}

/// `--compression zstd` pushes zstd layers, which pull back to the same image.
#[test]
fn zstd_layers_are_pushed_and_pulled_back() {
    let registry = Registry::start();
    let (ctx, id) = imported("example/busybox:1");
    let dest = format!("{}/example/zstd:1", registry.host());
    ctx.ok(&["push", "--compression", "zstd", "example/busybox:1", &dest]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{dest}")]);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd", "{manifest}");
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);
}
