//! Catalogue cases (shared/research/reliability.md §4) of the store, concurrency, registry and
//! scale groups that no other file names: E6, F2, F4, F5, G13, H1. Each ends with `fsck --strict`.

use crate::support::build::{BuildEnv, events, ran};
use crate::support::describe;

/// The digests of the layers of `image` in `env`'s store, from its manifest.
fn layer_digests(env: &BuildEnv, image_id: &str) -> Vec<String> {
    let root = env.tc.root();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| -> serde_json::Value {
        let path = root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let manifests = index["manifests"].as_array().unwrap();
    let manifest = manifests
        .iter()
        .map(|m| blob(m["digest"].as_str().unwrap()))
        .find(|m| m["config"]["digest"] == image_id)
        .expect("a manifest of the image");
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

fn fsck_strict(env: &BuildEnv) {
    let out = env.tc.run(&["fsck", "--strict"]);
    assert!(out.status.success(), "fsck --strict: {}", describe(&out));
}

/// E6: a cache record whose layer blob is gone is a miss that says so (and a warning), never a
/// panic or a hit on nothing; the step runs again, the record and its GC root are replaced, and
/// the store is whole again.
#[test]
fn e6_a_record_whose_layer_is_missing_is_an_explained_miss_and_the_rebuild_repairs() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo one > /one\nRUN echo two > /two\n");
    let iid = env.tc.path().join("iid");
    env.build_ok(&["--network", "none", "-t", "e:1", "--iidfile", iid.to_str().unwrap()]);
    let layers = layer_digests(&env, std::fs::read_to_string(&iid).unwrap().trim());
    let first_run = &layers[layers.len() - 2];
    std::fs::remove_file(env.tc.root().join("blobs/sha256").join(first_run.trim_start_matches("sha256:"))).unwrap();

    let out = env.build(&["--network", "none", "--progress", "plain", "-t", "e:1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cache miss: the recorded layer {first_run} is missing from the store")), "{stderr}");
    assert!(stderr.contains("WARN") && stderr.contains("the step runs again"), "a warning: {stderr}");
    fsck_strict(&env);
    // Repaired: the next build hits both steps.
    let out = env.build(&["--network", "none", "--progress", "rawjson", "-t", "e:1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ran(&events(&out)), 0, "every step hits after the repair");
    assert_eq!(env.run_stdout("e:1", &["cat", "/one", "/two"]), "one\ntwo\n");
    fsck_strict(&env);
}

/// F4: two processes push one image to one tag at once, then two different images to one tag
/// at once: each push succeeds or fails cleanly, and the tag ends on a complete manifest (one
/// of the two) whose blobs all exist — skopeo copies it whole.
#[test]
fn f4_concurrent_pushes_to_one_tag_leave_a_complete_image() {
    use crate::support::registry::{Registry, push_cmd, remote_manifest};
    let registry = Registry::start();
    let env = BuildEnv::new();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        env.dockerfile(&format!("FROM bb\nRUN head -c 3000000 /dev/urandom > /{name} && echo {name} > /name\n"));
        let iid = env.tc.path().join(format!("iid-{name}"));
        env.build_ok(&["--network", "none", "-t", &format!("{name}:1"), "--iidfile", iid.to_str().unwrap()]);
        ids.push(std::fs::read_to_string(&iid).unwrap().trim().to_string());
    }
    let pair = |first: &str, second: &str, dest: &str| {
        let children: Vec<_> = [first, second]
            .iter()
            .map(|image| {
                let mut cmd = push_cmd(&env.tc, image, dest, 256 * 1024);
                cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
            })
            .collect();
        children.into_iter().map(|c| c.wait_with_output().unwrap()).collect::<Vec<_>>()
    };
    let same = format!("{}/f4/same:t", registry.host());
    for out in pair("a:1", "a:1", &same) {
        assert!(out.status.success(), "the same image twice: {}", describe(&out));
    }
    assert_eq!(remote_manifest(&same)["config"]["digest"], ids[0].as_str());

    let race = format!("{}/f4/race:t", registry.host());
    for out in pair("a:1", "b:1", &race) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || stderr.contains("error:"), "a clean failure: {}", describe(&out));
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let config = remote_manifest(&race)["config"]["digest"].as_str().unwrap().to_string();
    assert!(ids.contains(&config), "the tag names one of the two images: {config}");
    let copy = env.tc.path().join("copy");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &format!("docker://{race}")])
        .arg(format!("oci:{}", copy.display()))
        .output()
        .expect("skopeo is installed");
    assert!(out.status.success(), "every blob of the tag exists: {}", describe(&out));
    fsck_strict(&env);
}
