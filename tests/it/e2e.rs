//! End-to-end Dockerfiles in the style of the real-world corpus (`fixtures/e2e/NAME`): each
//! builds and its image runs.

use crate::support::build::{BuildEnv, steps};
use crate::support::describe;
use crate::support::registry::Registry;

/// A store with a served `bb` whose context is a copy of `fixtures/e2e/NAME`.
fn fixture(name: &str) -> BuildEnv {
    let env = BuildEnv::served();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/e2e").join(name);
    let out =
        std::process::Command::new("cp").arg("-a").arg(format!("{}/.", dir.display())).arg(env.ctx()).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    env
}

#[test]
fn link_multistage_builds_runs_and_keeps_its_linked_layers_on_a_new_runtime_base() {
    let env = fixture("link-multistage");
    env.build_ok(&["-t", "app:1"]);
    assert_eq!(env.run_stdout("app:1", &[]), "app 1.4.2 says hello (color=blue)\n");
    // Another runtime base: the linked layers are hits.
    let base = BuildEnv::served();
    base.dockerfile("FROM bb\nRUN echo other > /etc/other-base\n");
    base.build_ok(&["-t", "bb-other"]);
    let registry = Registry::start();
    let other = format!("{}/e2e/runtime:2", registry.host());
    base.tc.ok(&["push", "bb-other", &other]);
    let events = env.build_events(&["-t", "app:2", "--build-arg", &format!("RUNTIME={other}")]);
    let linked: Vec<_> = steps(&events).into_iter().filter(|s| s.name.contains("--link")).collect();
    assert_eq!(linked.len(), 3);
    assert!(linked.iter().all(|s| s.cache.as_deref() == Some("hit")), "{linked:?}");
    assert_eq!(env.run_stdout("app:2", &["--greet"]), "app 1.4.2 says hello (color=blue)\n");
    let out = env.tc.ok(&["run", "--entrypoint", "cat", "app:2", "/etc/other-base"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "other\n");
}

#[test]
fn monorepo_parents_keeps_the_package_layout() {
    let env = fixture("monorepo-parents");
    env.build_ok(&["-t", "api:1", "--target", "api"]);
    assert_eq!(
        env.run_stdout("api:1", &[]),
        "installed for api\nmodule.exports = \"shared util\"\nconsole.log(\"api\")\n"
    );
    // Editing a source of another package keeps the dependency layer.
    std::fs::write(env.ctx().join("packages/web/src/index.js"), "console.log(\"web v2\")\n").unwrap();
    let events = env.build_events(&["-t", "api:1", "--target", "api"]);
    assert!(steps(&events).iter().all(|s| s.cache.as_deref() == Some("hit")), "{:?}", steps(&events));
}

#[test]
fn named_contexts_replace_the_base_and_the_docs() {
    let env = fixture("named-context-base");
    env.build_ok(&["-t", "app:1"]);
    assert_eq!(env.run_stdout("app:1", &[]), "base: unpinned\ndocs: \n");
    let pinned = BuildEnv::served();
    pinned.dockerfile("FROM bb\nRUN echo 'pinned 12.4' > /etc/base-release\n");
    pinned.build_ok(&["-t", "pinned"]);
    let registry = Registry::start();
    let base = format!("{}/e2e/base:12.4", registry.host());
    pinned.tc.ok(&["push", "pinned", &base]);
    let docs = env.tc.path().join("docs-checkout");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("README.md"), "# app\n").unwrap();
    std::fs::write(docs.join("CHANGES.md"), "- 1.0\n").unwrap();
    env.build_ok(&[
        "-t",
        "app:2",
        "--build-context",
        &format!("base=docker-image://{base}"),
        "--build-context",
        &format!("docs={}", docs.display()),
    ]);
    assert_eq!(env.run_stdout("app:2", &[]), "base: pinned 12.4\ndocs: CHANGES.md README.md \n");
    assert_eq!(env.run_stdout("app:2", &["cat", "/usr/share/doc/app/README.md"]), "# app\n");
}

#[test]
fn export_artifacts_go_straight_to_a_local_directory() {
    let env = fixture("export-artifacts");
    let dist = env.tc.path().join("dist");
    env.build_ok(&["-o", dist.to_str().unwrap()]);
    let read = |p: &str| std::fs::read_to_string(dist.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("notes.upper"), "HELLO RELEASE\n");
    assert_eq!(read("more.upper"), "SECOND ARTIFACT\n");
    let sums = read("SHA256SUMS");
    assert_eq!(sums.lines().count(), 2, "{sums}");
    // The checksums the build wrote hold for the files on the host.
    let check =
        std::process::Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&dist).output().unwrap();
    assert!(check.status.success(), "{}", describe(&check));
    let mut names: Vec<String> =
        std::fs::read_dir(&dist).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["SHA256SUMS", "more.upper", "notes.upper"], "only the export stage's files");
}
