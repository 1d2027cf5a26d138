//! `build` with the real registry: `FROM` an image that is only in a registry (pulled into the
//! store), `--push` of the result to every `-t` name, checked by skopeo and by a fresh store
//! that pulls and runs it.

use std::process::Command;

use crate::support::build::BuildEnv;
use crate::support::registry::Registry;
use crate::support::{TestContext, describe};

#[test]
fn from_pulls_a_remote_base_and_push_publishes_the_result() {
    let registry = Registry::start();
    let host = registry.host();
    // Publish the base: import busybox in one store, push it.
    let env = BuildEnv::new();
    let base = format!("{host}/base/busybox:1");
    env.tc.ok(&["push", "bb", &base]);

    // A second store that has never seen the base builds FROM it and pushes two names.
    let builder = BuildEnv::new();
    builder.dockerfile(&format!("FROM {base}\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n"));
    let app = format!("{host}/apps/hello:1");
    let also = format!("{host}/apps/hello:latest");
    let out = builder.build_ok(&["--push", "-t", &app, "-t", &also, "--progress", "plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("pushed {host}/apps/hello@sha256:")), "{stderr}");

    let inspect =
        Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{app}")]).output().unwrap();
    assert!(inspect.status.success(), "{}", describe(&inspect));
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let local: serde_json::Value = serde_json::from_slice(&builder.tc.ok(&["inspect", &app]).stdout).unwrap();
    assert_eq!(json["Layers"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(local[0]["Config"]["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

    let fresh = TestContext::new();
    fresh.ok(&["pull", &also]);
    let run = fresh.ok(&["run", &also]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "built\n");

    // `--progress quiet`: errors only, also when pushing.
    let out = builder.build_ok(&["--push", "-t", &app, "--progress", "quiet"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{}", describe(&out));

    // --push without a name says what is missing.
    let out = builder.build(&["--push"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--push needs"), "{}", describe(&out));
}

/// A refused feature fails at its line before any image is resolved: the `FROM` image is only
/// in an (unused) registry, and not one request reaches it.
#[test]
fn a_refused_flag_fails_before_the_base_image_is_pulled() {
    let registry = Registry::start();
    let host = registry.host();
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {host}/never/pulled:1\nRUN --security=insecure true\n"));
    registry.mark("build");
    let out = env.build(&["-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:2:1: error: RUN --security=insecure is not allowed"), "{stderr}");
    let requests: usize = ["GET", "HEAD", "POST", "PUT"].iter().map(|m| registry.count_since("build", m, "/v2/")).sum();
    assert_eq!(requests, 0, "no request may reach the registry:\n{}", registry.log_since("build"));
    // The same build without the flag does reach it (the check above can fail).
    env.dockerfile(&format!("FROM {host}/never/pulled:1\nRUN true\n"));
    registry.mark("control");
    let out = env.build(&["-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(registry.count_since("control", "GET", "/v2/") > 0, "{}", registry.log_since("control"));
}
