//! `COPY --parents`: sources keep their path below the destination, from the pattern's first
//! `/./` pivot on (BuildKit's frontend tests testCopyParents, testCopyRelativeParents and
//! testCopyParentsMissingDirectory, as Dockerfiles here).

use crate::support::build::BuildEnv;
use crate::support::describe;

#[test]
fn parents_keep_the_source_paths_from_the_context() {
    let env = BuildEnv::new();
    env.write("foo1/foo2/bar", "testing");
    env.write("foo1/foo2/baz", "testing2");
    env.write("packages/a/package.json", "{\"name\":\"a\"}");
    env.write("packages/b/package.json", "{\"name\":\"b\"}");
    env.write("packages/b/src/index.js", "b");
    env.write("apps/web/package.json", "{\"name\":\"web\"}");
    env.dockerfile(
        "FROM bb\nCOPY --parents foo1/foo2/bar /\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n\
         COPY --parents packages/*/package.json apps/*/package.json /mono/\n\
         COPY --parents ./packages/./b/src /pivot/\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("foo1/foo2/bar"), "testing");
    assert_eq!(read("test/foo1/foo2/bar") + &read("test/foo1/foo2/baz"), "testingtesting2");
    assert_eq!(read("mono/packages/a/package.json"), "{\"name\":\"a\"}");
    assert_eq!(read("mono/packages/b/package.json"), "{\"name\":\"b\"}");
    assert_eq!(read("mono/apps/web/package.json"), "{\"name\":\"web\"}");
    assert!(!root.join("mono/packages/b/src").exists(), "only what the patterns select");
    assert_eq!(read("pivot/b/src/index.js"), "b", "the path after the pivot, the directory itself kept");
}

#[test]
fn parents_from_a_stage_with_pivots() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb AS base\nWORKDIR /test\n\
         RUN mkdir -p a/b/c/d/e a/b2/c/d/e a/b/c2/d/e && touch a/b/c/d/foo a/b/c/d/e/bay a/b2/c/d/e/bar\n\
         FROM bb\n\
         COPY --from=base --parents /test/a/b/./c/d /middle/\n\
         COPY --from=base --parents /test/a/b/c/d/. /end/\n\
         COPY --from=base --parents ./test/a/b/c/d /start/\n\
         COPY --from=base --parents /test/a/./b/./c /double/\n\
         COPY --from=base --parents /test/a/./*/c /wildcard/\n\
         COPY --from=base --parents /test/a/b2*/c /none/\n\
         COPY --from=base --parents /test/a/b/./c2* /after/\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    let is_dir = |p: &str| root.join(p).is_dir();
    let is_file = |p: &str| root.join(p).is_file();
    assert!(is_dir("middle/c/d/e") && is_file("middle/c/d/foo") && !root.join("middle/a").exists());
    assert!(is_dir("end/test/a/b/c/d/e") && is_file("end/test/a/b/c/d/foo"));
    assert!(is_dir("start/test/a/b/c/d/e") && is_file("start/test/a/b/c/d/foo"));
    assert!(is_dir("double/b/c/d/e") && is_file("double/b/c/d/foo"));
    assert!(is_dir("wildcard/b/c/d/e") && is_file("wildcard/b2/c/d/e/bar"));
    // `b2*/c` matches test/a/b2/c: kept whole (no pivot).
    assert!(is_file("none/test/a/b2/c/d/e/bar"));
    assert!(is_dir("after/c2/d/e") && !root.join("after/a").exists());
}

#[test]
fn parents_of_a_missing_file_fail_and_of_a_wildcard_matching_nothing_do_not() {
    let env = BuildEnv::new();
    env.write("present", "x");
    env.dockerfile("FROM bb\nCOPY --parents nothing*/here /empty/\nRUN test -d /empty\n");
    env.build_ok(&["-t", "img:1"]);
    env.dockerfile("FROM bb\nCOPY --parents missing/file /out/\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2") && err.contains("missing/file"), "{err}");
}

/// `**` with `--parents` is any number of directories (none included), as the monorepo idiom
/// `COPY --parents **/package.json ./` needs; without `--parents` it is `*`, one level (Go's
/// `filepath.Match`).
#[test]
fn a_globstar_with_parents_matches_at_every_depth() {
    let env = BuildEnv::new();
    env.write("package.json", "root");
    env.write("packages/a/package.json", "a");
    env.write("packages/b/sub/package.json", "b");
    env.write("packages/b/sub/index.js", "js");
    env.write("apps/web/package.json", "web");
    env.dockerfile(
        "FROM bb\n\
         COPY --parents **/package.json /all/\n\
         COPY --parents ./packages/./**/package.json /pivot/\n\
         COPY --parents packages/** /tree/\n\
         COPY packages/**/package.json /flat/\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    let files = |dir: &str| {
        let mut found: Vec<String> = walkdir::WalkDir::new(root.join(dir))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(root.join(dir)).unwrap().display().to_string())
            .collect();
        found.sort();
        found
    };
    assert_eq!(
        files("all"),
        ["apps/web/package.json", "package.json", "packages/a/package.json", "packages/b/sub/package.json"]
    );
    assert_eq!(files("pivot"), ["a/package.json", "b/sub/package.json"]);
    assert_eq!(files("tree"), ["packages/a/package.json", "packages/b/sub/index.js", "packages/b/sub/package.json"]);
    // Without --parents: `**` is `*`, so only packages/a/package.json (one level) is copied.
    assert_eq!(files("flat"), ["package.json"]);
    assert_eq!(std::fs::read_to_string(root.join("flat/package.json")).unwrap(), "a", "{}", describe_tree(&root));
}

fn describe_tree(root: &std::path::Path) -> String {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
