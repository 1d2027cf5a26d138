//! `slipway build --platform P1,P2,…`: one index for several platforms — in the store, pushed to
//! a registry, written as an OCI layout and as a directory per platform — read back by skopeo;
//! a `FROM --platform=$BUILDPLATFORM` stage built once and shared; a failure on one platform
//! stopping the others; what a multi-platform build refuses before it starts. These cases run no
//! RUN step of a foreign platform (the emulated ones are in `build_emulation`).

use std::process::Command;

use serde_json::Value;

use crate::support::build::{BuildEnv, events, steps};
use crate::support::describe;
use crate::support::registry::Registry;

const TWO: &str = "linux/amd64,linux/arm64";

/// A Dockerfile whose builder stage runs on the build platform (a RUN that does not depend on
/// the target: the same step for both) and whose final stage, on scratch, only copies and labels.
const CROSS: &str = "FROM --platform=$BUILDPLATFORM bb AS build\n\
                     RUN echo built > /out\n\
                     FROM scratch\n\
                     ARG TARGETPLATFORM\n\
                     COPY --from=build /out /out\n\
                     COPY a /a\n\
                     LABEL p=$TARGETPLATFORM\n";

fn skopeo_raw(target: &str) -> Value {
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw", target]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn platforms_of(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests: {index}"))
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn several_platforms_make_one_index_in_the_store_a_registry_and_every_output() {
    let registry = Registry::start();
    let env = BuildEnv::new();
    env.write("a", "from the context\n");
    env.dockerfile(CROSS);
    let dir = env.tc.path();
    let (oci, local, iid, meta) = (dir.join("m.tar"), dir.join("local"), dir.join("iid"), dir.join("meta.json"));
    let name = format!("{}/multi/app:1", registry.host());
    let evs = env.build_events(&[
        "--platform",
        TWO,
        "-t",
        &name,
        "--push",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=local,dest={}", local.display()),
        "--iidfile",
        iid.to_str().unwrap(),
        "--metadata-file",
        meta.to_str().unwrap(),
    ]);
    // The builder stage's RUN is one step for both targets: built once, taken by the other.
    let runs: Vec<_> = steps(&evs).into_iter().filter(|s| s.name.contains("RUN echo built")).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let mut outcomes: Vec<_> = runs.iter().map(|s| s.cache.clone().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["hit", "miss"], "{runs:?}");
    assert!(runs.iter().any(|s| s.name.starts_with("[linux/amd64->arm64 build 2/2]")), "{runs:?}");
    let copies: Vec<String> =
        steps(&evs).into_iter().filter(|s| s.name.contains("COPY a /a")).map(|s| s.name).collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(copies.iter().any(|n| n.starts_with("[linux/arm64 stage-1 ")), "{copies:?}");

    // The store: one name, the index, both platforms.
    let images: Value = serde_json::from_slice(&env.tc.ok(&["images", "--format", "json"]).stdout).unwrap();
    let row = images.as_array().unwrap().iter().find(|r| r["reference"] == name.as_str()).expect("the name");
    assert_eq!(row["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    let digest = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(row["manifest_digest"].as_str(), Some(digest.as_str()), "--iidfile is the index");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"].as_str(), Some(digest.as_str()));
    assert_eq!(meta["containerimage.descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json");
    for (platform, label) in [("linux/arm64", "linux/arm64"), ("linux/amd64", "linux/amd64")] {
        let out = env.tc.ok(&["inspect", "--platform", platform, &name]);
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config[0]["Config"]["config"]["Labels"]["p"], label);
        assert_eq!(config[0]["Config"]["architecture"], platform.trim_start_matches("linux/"));
    }
    let history =
        String::from_utf8_lossy(&env.tc.ok(&["history", "--platform", "linux/arm64", &name]).stdout).into_owned();
    assert!(history.contains("LABEL p=linux/arm64"), "{history}");

    // The registry and the OCI archive: an index of both, each manifest its platform's.
    let pushed = skopeo_raw(&format!("docker://{name}"));
    assert_eq!(pushed["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(platforms_of(&pushed), ["linux/amd64", "linux/arm64"]);
    let arm = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--override-arch", "arm64", &format!("docker://{name}")])
        .output()
        .unwrap();
    let arm: Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!((arm["Architecture"].as_str(), arm["Labels"]["p"].as_str()), (Some("arm64"), Some("linux/arm64")));
    let archived = skopeo_raw(&format!("oci-archive:{}", oci.display()));
    assert_eq!(platforms_of(&archived), ["linux/amd64", "linux/arm64"]);

    // type=local: a directory per platform.
    for platform in ["linux_amd64", "linux_arm64"] {
        assert_eq!(std::fs::read_to_string(local.join(platform).join("out")).unwrap(), "built\n");
        assert_eq!(std::fs::read_to_string(local.join(platform).join("a")).unwrap(), "from the context\n");
    }

    // Another store pulls either platform of what was pushed.
    let fresh = crate::support::TestContext::new();
    fresh.ok(&["pull", "--platform", "linux/arm64", &name]);
    let out = fresh.ok(&["inspect", &name]);
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled[0]["Config"]["config"]["Labels"]["p"], "linux/arm64");

    let fsck = env.tc.run(&["fsck", "--strict"]);
    assert!(fsck.status.success(), "{}", describe(&fsck));
}

#[test]
fn a_second_build_with_one_more_platform_reuses_every_step_of_the_first() {
    let env = BuildEnv::new();
    env.write("a", "a\n");
    env.dockerfile(CROSS);
    let first = env.build_events(&["--platform", TWO, "-t", "app:1"]);
    assert!(steps(&first).iter().any(|s| s.cache.as_deref() == Some("miss")));
    let second = env.build_events(&["--platform", "linux/amd64,linux/arm64,linux/arm/v7", "-t", "app:1"]);
    let by_platform = |prefix: &str| -> Vec<_> {
        steps(&second).into_iter().filter(|s| s.name.starts_with(&format!("[{prefix}"))).collect()
    };
    for platform in ["linux/amd64 ", "linux/arm64 ", "linux/amd64->arm64 "] {
        let reused = by_platform(platform);
        assert!(!reused.is_empty(), "{platform}: {:?}", steps(&second));
        assert!(reused.iter().all(|s| s.cache.as_deref() == Some("hit")), "{platform}: {reused:?}");
    }
    // The new platform's final stage is new; its builder stage is the shared one, a hit.
    let new: Vec<_> = by_platform("linux/arm/v7 ");
    assert!(!new.is_empty() && new.iter().all(|s| s.cache.as_deref() == Some("miss")), "{new:?}");
    let shared = by_platform("linux/amd64->arm/v7 ");
    assert!(shared.iter().all(|s| s.cache.as_deref() == Some("hit")) && !shared.is_empty(), "{:?}", steps(&second));
    let images: Value = serde_json::from_slice(&env.tc.ok(&["images", "--format", "json"]).stdout).unwrap();
    assert_eq!(images[0]["platforms"], serde_json::json!(["linux/amd64", "linux/arm64", "linux/arm/v7"]));
}

#[test]
fn a_failure_on_one_platform_stops_the_others_and_names_its_platform() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM --platform=$BUILDPLATFORM bb AS build\n\
         ARG TARGETARCH\n\
         RUN echo started; if [ \"$TARGETARCH\" = arm64 ]; then exit 3; fi; sleep 30\n\
         FROM scratch\n\
         COPY --from=build /bin/busybox /busybox\n",
    );
    let started = std::time::Instant::now();
    let out = env.build(&["--progress", "rawjson", "--platform", TWO, "-t", "app:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "the amd64 step was not stopped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.contains("building for linux/arm64: process"), "{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
    let failed: Vec<Value> = events(&out).into_iter().filter(|e| e["type"] == "task_failed").collect();
    assert_eq!(failed.len(), 2, "both RUN steps ended: {failed:?}");
    assert!(!env.tc.run(&["inspect", "app:1"]).status.success(), "nothing is named");
    let fsck = env.tc.run(&["fsck", "--strict"]);
    assert!(fsck.status.success(), "{}", describe(&fsck));
}

#[test]
fn what_several_platforms_cannot_do_is_refused_before_anything_runs() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN touch /ran\n");
    let dest = env.tc.path().join("out.tar");
    let dest = dest.to_str().unwrap();
    for (args, says) in [
        (vec!["-o", &format!("type=docker,dest={dest}")] as Vec<&str>, "type=docker holds one platform"),
        (vec!["-o", &format!("type=tar,dest={dest}")], "type=tar"),
        (vec!["--cache-to", "type=inline"], "--cache-to is not supported with several platforms yet"),
        (vec![], "empty platform"),
    ] {
        let platforms = if args.is_empty() { "linux/amd64," } else { TWO };
        let mut all = vec!["--platform", platforms];
        all.extend(args);
        let out = env.build(&all);
        assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(!stderr.contains("RUN touch"), "no step started: {stderr}");
    }
    assert!(!std::path::Path::new(dest).exists());
    let builds: Value = serde_json::from_slice(&env.tc.ok(&["builds", "ls", "--format", "json"]).stdout).unwrap();
    assert_eq!(builds.as_array().map(Vec::len), Some(0), "no build started: {builds}");
}

/// buildx's annotation types: `manifest` (each platform's manifest, or one platform's with
/// `[PLATFORM]`), `index`, `manifest-descriptor` (an entry of the index) and `index-descriptor`
/// (the index's entry in an OCI layout's `index.json`) — in the store, the registry and the
/// layout; `push` of the stored index keeps them; a single platform refuses the index types.
#[test]
fn annotations_of_each_type_land_where_buildx_puts_them() {
    let registry = Registry::start();
    let env = BuildEnv::new();
    env.write("a", "a\n");
    env.dockerfile("FROM scratch\nCOPY a /a\n");
    let name = format!("{}/multi/annotated:1", registry.host());
    let oci = env.tc.path().join("m.tar");
    env.build_ok(&[
        "--platform",
        TWO,
        "-t",
        &name,
        "--push",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "--annotation",
        "all=1",
        "--annotation",
        "manifest[linux/arm64]:arm=1",
        "--annotation",
        "index:idx=1",
        "--annotation",
        "manifest-descriptor[linux/amd64]:desc=amd",
        "--annotation",
        "index-descriptor:outer=1",
    ]);
    let check_index = |index: &Value| {
        assert_eq!(index["annotations"], serde_json::json!({"idx": "1"}), "{index}");
        assert_eq!(index["manifests"][0]["annotations"], serde_json::json!({"desc": "amd"}), "{index}");
        assert!(index["manifests"][1].get("annotations").is_none(), "{index}");
    };
    let pushed = skopeo_raw(&format!("docker://{name}"));
    check_index(&pushed);
    for (i, expected) in [(0, serde_json::json!({"all": "1"})), (1, serde_json::json!({"all": "1", "arm": "1"}))] {
        let digest = pushed["manifests"][i]["digest"].as_str().unwrap();
        let manifest = skopeo_raw(&format!("docker://{}/multi/annotated@{digest}", registry.host()));
        assert_eq!(manifest["annotations"], expected, "{manifest}");
    }
    // The OCI layout: the same index, and index.json's entry with the index-descriptor one.
    check_index(&skopeo_raw(&format!("oci-archive:{}", oci.display())));
    let out = Command::new("tar").args(["-xOf", oci.to_str().unwrap(), "index.json"]).output().unwrap();
    let outer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outer["manifests"][0]["annotations"]["outer"], "1", "{outer}");
    // The store's arm64 manifest, and a push of the stored index elsewhere.
    let inspected: Value =
        serde_json::from_slice(&env.tc.ok(&["inspect", "--platform", "linux/arm64", &name]).stdout).unwrap();
    assert_eq!(inspected[0]["Manifest"]["annotations"], serde_json::json!({"all": "1", "arm": "1"}), "{inspected}");
    let again = format!("{}/multi/again:1", registry.host());
    env.tc.ok(&["push", &name, &again]);
    check_index(&skopeo_raw(&format!("docker://{again}")));

    let out = env.build(&["--annotation", "index:idx=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need several platforms"), "{}", describe(&out));
}
