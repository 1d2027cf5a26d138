//! Where credentials go (catalogue G6, G7, G8, G12, I2): the real registry with `silly` Bearer
//! auth (tokens issued by the test proxy) or htpasswd, "other hosts" played by proxies on
//! 127.0.0.2/.3/.5, and credentials files and helpers written by the test.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::TestContext;
use crate::support::proxy::{Action, Proxy, Rule, respond};
use crate::support::registry::{Registry, RegistryConfig, busybox, ok, push_cmd, stderr, stdout, token_registry};

/// A proxy on `ip` standing for blob storage: it signs requests itself (the registry's `silly`
/// auth wants some `Authorization`) and forwards them to the registry.
fn storage(ip: &str, registry: &Registry) -> Proxy {
    let proxy = Proxy::start_on(ip);
    proxy.set_upstream(registry.port);
    proxy.inject_header("Authorization", "Bearer signed-by-storage");
    proxy
}

/// G6: an upload `Location` on another host gets the blob bytes without `Authorization`.
#[test]
fn upload_location_on_another_host_gets_no_credentials() {
    let (registry, proxy) = token_registry(None);
    let other = storage("127.0.0.2", &registry);
    proxy.rule(Rule::new("POST", "/blobs/uploads/", Action::RelocateTo { host: other.host() }).times(100));
    let (ctx, id) = busybox();
    let dest = format!("{}/example/elsewhere:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 256 << 10));
    assert!(other.count("PATCH", "/blobs/uploads/") >= 1, "{}", other.dump());
    assert!(other.log().iter().all(|e| e.authorization.is_none()), "credentials reached 127.0.0.2:\n{}", other.dump());
    assert!(proxy.log().iter().any(|e| e.method == "PUT" && e.authorization.is_some()), "{}", proxy.dump());
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);
}

/// G7: a blob `GET` redirected (307) to storage on another host is followed without
/// `Authorization` or cookies; a redirect loop ends after 10.
#[test]
fn blob_redirect_to_another_host_carries_no_credentials() {
    let (registry, proxy) = token_registry(None);
    let (ctx, id) = busybox();
    let dest = format!("{}/example/redirected:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));
    let layer = first_layer(&registry, "example/redirected", "1")["digest"].as_str().unwrap().to_string();
    let cdn = storage("127.0.0.3", &registry);
    let target = format!("http://{}/v2/example/redirected/blobs/{layer}?X-Amz-Signature=abc", cdn.host());
    proxy.rule(Rule::new("GET", &format!("/blobs/{layer}"), respond(307, &[("Location", &target)], b"")));
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &dest])).trim(), id);
    assert_eq!(cdn.count("GET", &layer), 1, "{}", cdn.dump());
    assert!(cdn.log().iter().all(|e| e.authorization.is_none() && !e.cookie), "{}", cdn.dump());

    let own = format!("http://{}/v2/example/redirected/manifests/1", proxy.host());
    proxy.rule(Rule::new("GET", "/manifests/1", respond(307, &[("Location", &own)], b"")).times(50));
    let out = TestContext::new().run(&["pull", &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("redirects"), "{}", stderr(&out));
}

/// The first layer descriptor of `repo:tag` read straight from the registry (skopeo cannot:
/// the `silly` registry wants some `Authorization`, which it accepts whatever it is).
fn first_layer(registry: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}/v2/{repo}/manifests/{tag}", registry.host()))
        .header("Authorization", "Bearer test")
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
    manifest["layers"][0].clone()
}

/// G8: tokens that expire during a slow push are fetched again on the 401 (mid-`PATCH` and on
/// the manifest `PUT`) and the failed request is sent again.
#[test]
fn token_expiring_mid_push_is_refreshed() {
    let (registry, proxy) = token_registry(Some(Duration::from_secs(1)));
    proxy.rule(Rule::new("PATCH", "/blobs/uploads/", Action::Delay(Duration::from_millis(150))).times(1000));
    proxy.rule(Rule::new("PUT", "/blobs/uploads/", Action::Delay(Duration::from_millis(1200))).times(2));
    let (ctx, id) = busybox();
    let dest = format!("{}/example/slow:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 64 << 10));
    let log = proxy.log();
    let refused = |method: &str, path: &str| {
        log.iter().filter(|e| e.method == method && e.target.contains(path) && e.status == 401).count()
    };
    assert!(refused("PATCH", "/blobs/uploads/") >= 1, "no token expired mid-upload:\n{}", proxy.dump());
    assert!(refused("PUT", "/manifests/") >= 1, "the manifest token did not expire:\n{}", proxy.dump());
    assert!(proxy.count("GET", "/token") >= 3, "{}", proxy.dump());
    assert_eq!(stdout(&TestContext::new().ok(&["pull", &format!("{}/example/slow:1", registry.host())])).trim(), id);
}

/// G12: a layer with foreign `urls` is fetched from the registry, never from the URLs (whose
/// host would ask for credentials).
#[test]
fn foreign_layer_urls_are_never_fetched() {
    let (registry, proxy) = token_registry(None);
    let (ctx, id) = busybox();
    let dest = format!("{}/example/foreign:1", proxy.host());
    ok(push_cmd(&ctx, "example/busybox:1", &dest, 16 << 20));
    let foreign = Proxy::start_on("127.0.0.5");
    let realm = format!("Bearer realm=\"http://{}/token\",service=\"foreign\"", foreign.host());
    foreign.rule(Rule::new("", "/", respond(401, &[("WWW-Authenticate", &realm)], b"")).times(100));
    let inspect = ctx.ok(&["inspect", "example/busybox:1"]);
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let mut manifest = json[0]["Manifest"].clone();
    let pushed = first_layer(&registry, "example/foreign", "1");
    manifest["layers"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": pushed["digest"],
        "size": pushed["size"],
        "urls": [format!("http://{}/layer.tar.gz", foreign.host())],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let media = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    proxy.rule(Rule::new("GET", "/manifests/foreign", respond(200, &media, &body)).times(10));
    let out = TestContext::new().run(&["pull", &format!("{}/example/foreign:foreign", proxy.host())]);
    assert!(foreign.log().is_empty(), "a foreign URL was fetched:\n{}", foreign.dump());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
}

/// `slipway login` with the password on stdin.
fn login(
    ctx: &TestContext,
    authfile: &Path,
    registry: &str,
    password: &str,
    path: Option<&str>,
) -> std::process::Output {
    let mut cmd = ctx.cmd();
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let mut child = cmd
        .args(["login", "--authfile", authfile.to_str().unwrap(), "-u", "tester", "--password-stdin", registry])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// I2: the credentials file is written 0600 by temp file + rename in a 0700 directory; a file
/// others could read gets a warning (and is rewritten 0600).
#[test]
fn credentials_file_is_private() {
    let registry = Registry::start_with(RegistryConfig {
        htpasswd: Some(("tester".into(), "s3cret".into())),
        ..Default::default()
    });
    let ctx = TestContext::new();
    let authfile = ctx.path().join("fresh/config.json");
    let out = login(&ctx, &authfile, &registry.host(), "s3cret", None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((mode(&authfile), mode(authfile.parent().unwrap())), (0o600, 0o700));
    let names: Vec<String> = std::fs::read_dir(authfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config.json"], "a temp file was left behind");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    let loose = ctx.path().join("loose/config.json");
    std::fs::create_dir_all(loose.parent().unwrap()).unwrap();
    std::fs::write(&loose, "{\"auths\":{}}").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = login(&ctx, &loose, &registry.host(), "s3cret", None);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains("0644") && err.contains(loose.to_str().unwrap()), "{err}");
    assert_eq!(mode(&loose), 0o600);
}

/// A `docker-credential-<name>` helper in `dir`: a shell script keeping each server's JSON in a
/// file beside it (`broken` makes every action fail).
fn write_helper(dir: &Path, name: &str, broken: bool) {
    let script = if broken {
        "#!/bin/sh\necho 'keychain locked' >&2\necho 'keychain locked'\nexit 1\n".to_string()
    } else {
        r#"#!/bin/sh
store="$(dirname "$0")/store"
mkdir -p "$store"
case "$1" in
store) json=$(cat)
       url=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ServerURL"])')
       printf '%s' "$json" > "$store/$(printf '%s' "$url" | tr '/:' '__')" ;;
get)   url=$(cat); f="$store/$(printf '%s' "$url" | tr '/:' '__')"
       [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }
       cat "$f" ;;
erase) url=$(cat); rm -f "$store/$(printf '%s' "$url" | tr '/:' '__')" ;;
*)     exit 1 ;;
esac
"#
        .to_string()
    };
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// I2 and the helper protocol: `login` stores into the configured helper (nothing secret in the
/// file), `push` reads from it, `logout` erases; a broken helper is an error, and nothing is sent
/// to the registry instead.
#[test]
fn credential_helpers_store_and_a_broken_one_is_an_error() {
    let registry = Registry::start_with(RegistryConfig {
        htpasswd: Some(("tester".into(), "s3cret".into())),
        ..Default::default()
    });
    let proxy = Proxy::start(registry.port);
    let (ctx, _) = busybox();
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_helper(&bin, "test", false);
    write_helper(&bin, "broken", true);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let authfile = ctx.path().join("docker/config.json");
    std::fs::create_dir_all(authfile.parent().unwrap()).unwrap();
    std::fs::write(&authfile, "{\"credsStore\":\"test\"}").unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o600)).unwrap();

    let host = proxy.host();
    let out = login(&ctx, &authfile, &host, "s3cret", Some(&path));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!std::fs::read_to_string(&authfile).unwrap().contains("auth\""), "a secret went into the file");
    let push = |authfile: &Path| {
        let mut cmd = push_cmd(&ctx, "example/busybox:1", &format!("{host}/private/helped:1"), 16 << 20);
        cmd.args(["--authfile", authfile.to_str().unwrap()]).env("PATH", &path);
        cmd.output().unwrap()
    };
    let out = push(&authfile);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut cmd = ctx.cmd();
    let out =
        cmd.args(["logout", "--authfile", authfile.to_str().unwrap(), &host]).env("PATH", &path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = push(&authfile);
    assert!(!out.status.success(), "the push worked after logout");

    let broken = ctx.path().join("broken/config.json");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    let with_auth = format!(
        "{{\"credHelpers\":{{\"{host}\":\"broken\"}},\"auths\":{{\"{host}\":{{\"auth\":\"dGVzdGVyOnMzY3JldA==\"}}}}}}"
    );
    std::fs::write(&broken, &with_auth).unwrap();
    let before = proxy.log().len();
    let out = push(&broken);
    assert!(!out.status.success(), "a broken helper was passed over");
    let err = stderr(&out);
    assert!(err.contains("docker-credential-broken") && err.contains("keychain locked"), "{err}");
    assert_eq!(proxy.log().len(), before, "requests went out despite the broken helper:\n{}", proxy.dump());
    let out = login(&ctx, &broken, &host, "s3cret", Some(&path));
    assert!(!out.status.success(), "login fell back from the broken helper");
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), with_auth, "the file was written instead");
}
