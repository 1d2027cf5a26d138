//! `--build-context NAME=DIR|docker-image://REF`: named contexts read by `FROM`, `COPY --from`
//! and `RUN --mount=from`, overriding a stage or image of the same name.

use crate::support::build::{BuildEnv, steps};
use crate::support::describe;
use crate::support::registry::Registry;

#[test]
fn an_image_context_replaces_a_base_image_and_a_stage_of_that_name() {
    let env = BuildEnv::served();
    let registry = Registry::start();
    let pinned = format!("{}/ctx/base:pinned", registry.host());
    env.dockerfile("FROM bb\nRUN echo pinned > /which\n");
    env.build_ok(&["-t", "pinned"]);
    env.tc.ok(&["push", "pinned", &pinned]);
    env.dockerfile(
        "FROM bb AS base\nRUN echo stage > /which\n\
         FROM base\nCOPY --from=alpine:3 /which /copied\nRUN cat /which /copied > /both\n",
    );
    env.build_ok(&[
        "-t",
        "img:1",
        "--build-context",
        &format!("base=docker-image://{pinned}"),
        "--build-context",
        &format!("alpine:3=docker-image://{pinned}"),
    ]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/both"]), "pinned\npinned\n");
    // Without it the stage is built.
    env.dockerfile("FROM bb AS base\nRUN echo stage > /which\nFROM base\nRUN cat /which > /both\n");
    env.build_ok(&["-t", "img:2"]);
    assert_eq!(env.run_stdout("img:2", &["cat", "/both"]), "stage\n");
}

#[test]
fn a_directory_context_is_read_by_copy_from_and_bind_mounts_and_keyed_by_content() {
    let env = BuildEnv::new();
    let docs = env.tc.path().join("docs");
    std::fs::create_dir_all(docs.join("guide")).unwrap();
    std::fs::write(docs.join("guide/intro.md"), "# intro\n").unwrap();
    env.dockerfile(
        "FROM bb\nCOPY --from=docs guide /docs/\n\
         RUN --mount=from=docs,target=/mnt/docs cat /mnt/docs/guide/intro.md > /mounted\n",
    );
    let ctx_arg = format!("docs={}", docs.display());
    env.build_ok(&["-t", "img:1", "--build-context", &ctx_arg]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/docs/intro.md", "/mounted"]), "# intro\n# intro\n");
    let again = env.build_events(&["-t", "img:1", "--build-context", &ctx_arg]);
    assert!(steps(&again).iter().all(|s| s.cache.as_deref() == Some("hit")), "{:?}", steps(&again));
    std::fs::write(docs.join("guide/intro.md"), "# changed\n").unwrap();
    let changed = env.build_events(&["-t", "img:1", "--build-context", &ctx_arg]);
    let first = &steps(&changed)[0];
    assert_eq!(first.cache.as_deref(), Some("miss"));
    assert!(first.reason.as_deref().unwrap_or_default().contains("guide/intro.md changed"), "{first:?}");
    assert_eq!(env.run_stdout("img:1", &["cat", "/mounted"]), "# changed\n");
}

#[test]
fn a_directory_context_as_a_base_is_its_files_on_nothing() {
    let env = BuildEnv::new();
    let rootfs = env.tc.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/release"), "from a directory\n").unwrap();
    env.dockerfile("FROM bb AS tools\nFROM local\nCOPY --from=tools /bin/busybox /bin/busybox\n");
    env.build_ok(&["-t", "img:1", "--build-context", &format!("local={}", rootfs.display())]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    assert_eq!(std::fs::read_to_string(root.join("etc/release")).unwrap(), "from a directory\n");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(root.join("etc/release")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0), "owned by root, as the build context's files are");
    let out = env.tc.ok(&["run", "img:1", "/bin/busybox", "cat", "/etc/release"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from a directory\n");
}

#[test]
fn what_cannot_be_a_named_context_is_refused_before_any_work() {
    let env = BuildEnv::new();
    for bad in [
        "nothing",
        "x=/nonexistent/dir",
        "x=oci-layout:///tmp/l",
        "x=https://example.invalid/archive.tar",
        "x=docker-image://UPPER",
    ] {
        let out = env.build(&["--build-context", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", describe(&out));
    }
}

#[test]
fn an_oci_layout_context_is_a_base_by_tag_or_digest() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo from-layout > /which\n");
    env.build_ok(&["-t", "laid:v1"]);
    let layout = env.tc.path().join("layout");
    env.tc.ok(&["save", "laid:v1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    // The layout's image is not in the store under any name the Dockerfile uses.
    env.dockerfile("FROM base\nRUN cat /which > /seen\n");
    env.build_ok(&["-t", "img:1", "--build-context", &format!("base=oci-layout://{}:v1", layout.display())]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "from-layout\n");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    env.build_ok(&["-t", "img:2", "--build-context", &format!("base=oci-layout://{}@{digest}", layout.display())]);
    assert_eq!(env.run_stdout("img:2", &["cat", "/seen"]), "from-layout\n");
    let wrong = env.build(&["--build-context", &format!("base=oci-layout://{}:v9", layout.display())]);
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no image tagged \"v9\""), "{}", describe(&wrong));
    env.tc.ok(&["fsck", "--strict"]);
}

#[test]
fn a_git_context_is_checked_out_once_and_read_as_files() {
    let env = BuildEnv::new();
    let repo = crate::support::git::Repo::new(env.tc.path(), "docs");
    repo.commit(&[("site/index.md", "# v1\n"), ("other.txt", "x\n")], "first");
    repo.tag("v1");
    repo.commit(&[("site/index.md", "# v2\n")], "second");
    env.dockerfile(
        "FROM bb\nCOPY --from=docs . /docs/\nRUN --mount=from=docs,target=/mnt cat /mnt/index.md > /mounted\n",
    );
    let ctx = format!("docs={}#v1:site", repo.file_url());
    env.build_ok(&["-t", "img:1", "--build-context", &ctx]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/docs/index.md", "/mounted"]), "# v1\n# v1\n");
    assert!(env.run_stdout("img:1", &["ls", "/docs"]).trim() == "index.md", "only the subdir");
    let again = env.build_events(&["-t", "img:1", "--build-context", &ctx]);
    assert!(steps(&again).iter().all(|s| s.cache.as_deref() == Some("hit")), "{:?}", steps(&again));
    let head = format!("docs={}#:site", repo.file_url());
    env.build_ok(&["-t", "img:2", "--build-context", &head]);
    assert_eq!(env.run_stdout("img:2", &["cat", "/docs/index.md"]), "# v2\n");
    let escape = format!("docs={}#v1:../..", repo.file_url());
    let out = env.build(&["--build-context", &escape]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
}
