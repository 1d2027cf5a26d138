//! slipway's registry settings (`config.toml`): a `certs.d` CA directory, insecure registries,
//! mirrors tried first on pull. Real registries on 127.0.0.1, one of them over TLS with a CA the
//! test makes.

use std::path::Path;

use crate::support::TestContext;
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryConfig, busybox, ok, push_cmd, stderr, stdout};

/// `slipway push` with `SLIPWAY_CONFIG` pointing at `config`.
fn push_with(ctx: &TestContext, config: &Path, dest: &str) -> std::process::Output {
    let mut cmd = push_cmd(ctx, "example/busybox:1", dest, 16 << 20);
    cmd.env("SLIPWAY_CONFIG", config).env_remove("SSL_CERT_FILE");
    cmd.output().unwrap()
}

#[test]
fn tls_registry_is_trusted_through_certs_d_or_the_insecure_list() {
    let registry = Registry::start_with(RegistryConfig { tls: true, ..RegistryConfig::default() });
    let (ctx, _) = busybox();
    let host = registry.host();
    let dest = format!("{host}/example/tls:1");
    let config = ctx.path().join("etc/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();

    let out = push_with(&ctx, &config, &dest);
    assert!(!out.status.success(), "a certificate from an unknown CA was accepted");

    let certs = ctx.path().join("etc/certs.d").join(&host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(registry.ca(), certs.join("ca.crt")).unwrap();
    let out = push_with(&ctx, &config, &dest);
    assert!(out.status.success(), "certs.d was not used: {}", stderr(&out));
    std::fs::remove_dir_all(ctx.path().join("etc/certs.d")).unwrap();

    std::fs::write(&config, format!("[registry]\ninsecure = [\"{host}\"]\n")).unwrap();
    let out = push_with(&ctx, &config, &format!("{host}/example/tls:2"));
    assert!(out.status.success(), "the insecure list was not used: {}", stderr(&out));

    std::fs::write(&config, "[registry]\ninsecure = \"not a list\"\n").unwrap();
    let out = push_with(&ctx, &config, &dest);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
}

#[test]
fn mirrors_are_tried_first_on_pull() {
    let mirror = Registry::start();
    let upstream = Registry::start();
    let front = Proxy::start(upstream.port);
    let (ctx, id) = busybox();
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{}/example/busybox:1", mirror.host()), 16 << 20));
    ok(push_cmd(&ctx, "example/busybox:1", &format!("{}/example/only-upstream:1", front.host()), 16 << 20));
    let config = ctx.path().join("mirrors.toml");
    std::fs::write(&config, format!("[registry.mirrors]\n\"{}\" = [\"{}\"]\n", front.host(), mirror.host())).unwrap();
    let before = front.log().len();

    let other = TestContext::new();
    let pull = |name: &str| {
        let mut cmd = other.cmd();
        cmd.args(["pull", &format!("{}/{name}", front.host())]).env("SLIPWAY_CONFIG", &config);
        ok(cmd)
    };
    assert_eq!(stdout(&pull("example/busybox:1")).trim(), id);
    assert_eq!(
        front.log().len(),
        before,
        "the registry was asked although its mirror had the image:\n{}",
        front.dump()
    );
    // Not on the mirror: the registry serves it.
    assert_eq!(stdout(&pull("example/only-upstream:1")).trim(), id);
    assert!(front.count("GET", "/manifests/1") >= 1, "{}", front.dump());
    let images = stdout(&other.ok(&["images", "--format", "json"]));
    assert!(images.contains(&format!("{}/example/busybox:1", front.host())), "{images}");
}
