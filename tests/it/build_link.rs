//! `COPY --link` / `ADD --link`: the copied files become a layer made on nothing, keyed without
//! the layers below, so a new base (or an earlier step's change) keeps it, byte for byte.

use crate::support::build::{BuildEnv, steps};
use crate::support::describe;
use crate::support::registry::Registry;

fn config_of(env: &BuildEnv, image: &str) -> serde_json::Value {
    let out = env.tc.ok(&["inspect", image]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

#[test]
fn a_link_step_is_a_hit_on_a_new_base_and_its_layer_is_the_same_blob() {
    let env = BuildEnv::served();
    let registry = Registry::start();
    let base1 = format!("{}/link/base:1", registry.host());
    let base2 = format!("{}/link/base:2", registry.host());
    env.tc.ok(&["push", "bb", &base1]);
    // A second base: bb with one more layer, pushed under another tag of the same repository.
    env.dockerfile("FROM bb\nRUN echo two > /base-marker\n");
    env.build_ok(&["-t", "bb2"]);
    env.tc.ok(&["push", "bb2", &base2]);

    env.write("app/bin/tool", "#!/bin/sh\necho linked tool\n");
    env.write("app/data.txt", "data\n");
    env.dockerfile(
        "ARG BASE\nFROM $BASE\nRUN echo before > /before\nCOPY --link --chmod=755 app/ /opt/app/\n\
         ADD --link app/data.txt /opt/data/\nRUN /opt/app/bin/tool > /ran\n",
    );
    let first = env.build_events(&["-t", "out:1", "--build-arg", &format!("BASE={base1}")]);
    assert!(steps(&first).iter().all(|s| s.cache.as_deref() == Some("miss")));
    let second = env.build_events(&["-t", "out:2", "--build-arg", &format!("BASE={base2}")]);
    let cache: Vec<(String, String)> =
        steps(&second).iter().map(|s| (s.name.clone(), s.cache.clone().unwrap_or_default())).collect();
    let status = |needle: &str| cache.iter().find(|(n, _)| n.contains(needle)).map(|(_, c)| c.clone());
    assert_eq!(status("RUN echo before").as_deref(), Some("miss"), "{cache:?}");
    assert_eq!(status("COPY --link").as_deref(), Some("hit"), "{cache:?}");
    assert_eq!(status("ADD --link").as_deref(), Some("hit"), "{cache:?}");
    assert_eq!(status("RUN /opt/app/bin/tool").as_deref(), Some("miss"), "{cache:?}");

    let layers = |image: &str| -> Vec<String> {
        config_of(&env, image)["Manifest"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (one, two) = (layers("out:1"), layers("out:2"));
    assert_eq!(two.len(), one.len() + 1, "base 2 has one more layer");
    // [base..., RUN before, COPY --link, ADD --link, RUN tool]: the two linked layers are the
    // same blobs on both bases.
    assert_eq!(one[one.len() - 3..one.len() - 1], two[two.len() - 3..two.len() - 1]);
    assert_eq!(
        env.run_stdout("out:2", &["cat", "/ran", "/base-marker", "/opt/data/data.txt"]),
        "linked tool\ntwo\ndata\n"
    );
    assert_eq!(env.run_stdout("out:1", &["cat", "/ran", "/before"]), "linked tool\nbefore\n");
}

#[test]
fn a_link_layer_holds_only_what_it_copies() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.dockerfile("FROM bb\nWORKDIR /work\nCOPY --link --chown=1234:root a.txt ./\n");
    env.build_ok(&["-t", "img:1"]);
    let out = env.tc.ok(&["diff", "--format", "json", "--layer", "2", "img:1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes: Vec<String> = v["layers"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["kind"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    // /work exists below (WORKDIR made it, root's): the linked layer, made on nothing, creates it
    // again on the way to the file, owned as --chown says — BuildKit's --link does the same to
    // the destination's parents. Nothing of the base is in the layer.
    assert_eq!(changes, ["C /work", "A /work/a.txt"], "{v:#}");
    assert_eq!(v["layers"][0]["changes"][0]["owner"], serde_json::json!({ "old": "0:0", "new": "1234:0" }));
    let root = env.umoci_unpack("img:1", env.tc.path());
    let md = std::fs::metadata(root.join("work/a.txt")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.uid(), md.gid()), (1234, 0));
    assert!(root.join("bin/busybox").exists(), "the base is still under it");
}

#[test]
fn a_link_copy_refuses_owner_names_it_cannot_resolve() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.dockerfile("FROM bb\nCOPY --link --chown=user a.txt /a\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("--link --chown=user") && err.contains("numeric ids"), "{err}");
}
