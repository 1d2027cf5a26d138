//! `slipway context`: the golden listing of a fixture with `!` exceptions and `**` patterns
//! (each excluded path names its `.dockerignore` line), what no COPY/ADD/bind selects (globs,
//! bind mounts, `--exclude`, `--target`, build args), `-f` with its own ignore file, sources
//! that cannot be resolved without the base image, and the JSON schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{TestContext, describe};

fn fixture() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/context/ignore-rules");
    std::fs::canonicalize(dir).expect("the fixture exists")
}

/// `text` as a regular expression matching itself.
fn literal(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Runs `slipway context ARGS`; returns `exit: N`, stdout and stderr.
fn context_output(ctx: &TestContext, args: &[&str]) -> String {
    let out = ctx.cmd().arg("context").args(args).output().expect("spawn slipway");
    format!(
        "exit: {}\n{}{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `slipway context --format json ARGS` and parses its output.
fn context_json(ctx: &TestContext, args: &[&str]) -> Value {
    let out = ctx.cmd().args(["context", "--format", "json"]).args(args).output().expect("spawn slipway");
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Each entry's path → status (`excluded:LINE` for an excluded one).
fn statuses(report: &Value) -> BTreeMap<String, String> {
    let entries = report["entries"].as_array().expect("entries");
    entries
        .iter()
        .map(|e| {
            let status = e["status"].as_str().unwrap().to_owned();
            let status = match e["excluded_by"]["line"].as_u64() {
                Some(line) => format!("{status}:{line}"),
                None => status,
            };
            (e["path"].as_str().unwrap().to_owned(), status)
        })
        .collect()
}

/// The paths with `status`.
fn with_status(report: &Value, status: &str) -> Vec<String> {
    statuses(report).into_iter().filter(|(_, s)| s == status).map(|(p, _)| p).collect()
}

/// A context directory of files (path, content) in a fresh test context.
fn write_context(ctx: &TestContext, files: &[(&str, &str)]) -> PathBuf {
    let dir = ctx.path().join("ctx");
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn golden_listing_names_the_ignore_line_of_each_excluded_path() {
    let ctx = TestContext::new();
    let dir = fixture();
    let out = context_output(&ctx, &[arg(&dir)]);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&literal(arg(&dir)), "[CONTEXT]");
    let _filters = settings.bind_to_scope();
    insta::assert_snapshot!(out, @r"
exit: 0
context      [CONTEXT]
dockerfile   Dockerfile
ignore file  [CONTEXT]/.dockerignore (9 rules)

    SIZE  STATUS    PATH
    216B  builder   .dockerignore  read by the builder
    222B  builder   Dockerfile  read by the builder
      8B  excluded  build.tmp  by .dockerignore:13 *.tmp
     29B  used      cmd/app/main.go  by Dockerfile:3
     63B  unused    cmd/app/main_test.go
     13B  used      cmd/tool/tool.go  by Dockerfile:3
      6B  used      docs/README.md  by Dockerfile:8; brought back by .dockerignore:11 !docs/README.md over .dockerignore:10 docs/**
     19B  excluded  docs/guide.md  by .dockerignore:10 docs/**
     42B  excluded  docs/img/  by .dockerignore:10 docs/** (1 file)
      8B  unused    important.tmp  brought back by .dockerignore:14 !important.tmp over .dockerignore:13 *.tmp
      9B  used      logs/keep/release.log  by Dockerfile:8; brought back by .dockerignore:7 !logs/keep/*.log over .dockerignore:6 **/*.log
      6B  excluded  logs/other.log  by .dockerignore:6 **/*.log
     83B  excluded  node_modules/  by .dockerignore:2 node_modules (2 files)
     18B  unused    notes.txt
     20B  excluded  secrets/  by .dockerignore:15 secrets/ (1 file)
     10B  excluded  src/__pycache__/  by .dockerignore:3 **/__pycache__ (1 file)
     13B  excluded  src/debug.log  by .dockerignore:6 **/*.log
     36B  used      src/main.go  by Dockerfile:2
     28B  used      src/util.go  by Dockerfile:2
     25B  used      tools/gen.sh  by Dockerfile:4

LARGEST DIRECTORIES
    SIZE   FILES      SENT    UNUSED  EXCLUDED  PATH
    105B       3      105B       63B        0B  cmd/
     92B       2       92B       63B        0B  cmd/app/
     87B       4       64B        0B       23B  src/
     83B       2        0B        0B       83B  node_modules/
     67B       3        6B        0B       61B  docs/
     42B       1        0B        0B       42B  docs/img/
     25B       1       25B        0B        0B  tools/
     20B       1        0B        0B       20B  secrets/
     15B       2        9B        0B        6B  logs/
     13B       1       13B        0B        0B  cmd/tool/

READ BY
LOCATION      INSTRUCTION                                       SELECTS
Dockerfile:2  COPY src/                                         2 files, 64B
Dockerfile:3  COPY --exclude=**/*_test.go cmd/*/                2 files, 42B
Dockerfile:4  RUN --mount=type=bind,source=tools,target=/tools  1 file, 25B
Dockerfile:8  COPY docs/ logs/keep/*.log                        2 files, 15B

sent      12 files, 673B
  used    7 files, 146B
  unused  3 files, 89B
  builder 2 files, 438B
excluded  9 files, 201B
");
}

/// The golden fixture checked the other way round: every rule the JSON names is the line of the
/// ignore file at that number, and the paths it excludes are the ones expected.
#[test]
fn each_named_rule_is_that_line_of_the_ignore_file() {
    let ctx = TestContext::new();
    let report = context_json(&ctx, &[arg(&fixture())]);
    let ignore = std::fs::read_to_string(fixture().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = ignore.lines().collect();
    let mut named = 0;
    for entry in report["entries"].as_array().unwrap() {
        for key in ["excluded_by", "reincluded_by", "reincluded_over"] {
            let rule = &entry[key];
            if rule.is_null() {
                continue;
            }
            named += 1;
            let line = rule["line"].as_u64().unwrap() as usize;
            assert_eq!(rule["file"], ".dockerignore");
            assert_eq!(lines[line - 1].trim(), rule["text"], "{entry}");
            assert_eq!(rule["exception"], key == "reincluded_by", "{entry}");
        }
    }
    assert_eq!(named, 14);
    let excluded: BTreeMap<String, String> = statuses(&report).into_iter().filter(|(_, s)| s != "used").collect();
    let want = [
        (".dockerignore", "builder"),
        ("Dockerfile", "builder"),
        ("build.tmp", "excluded:13"),
        ("cmd/app/main_test.go", "unused"),
        ("docs/guide.md", "excluded:10"),
        ("docs/img", "excluded:10"),
        ("important.tmp", "unused"),
        ("logs/other.log", "excluded:6"),
        ("node_modules", "excluded:2"),
        ("notes.txt", "unused"),
        ("secrets", "excluded:15"),
        ("src/__pycache__", "excluded:3"),
        ("src/debug.log", "excluded:6"),
    ];
    assert_eq!(excluded, want.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect());
}

#[test]
fn json_schema() {
    let ctx = TestContext::new();
    let report = context_json(&ctx, &[arg(&fixture())]);
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    let want = [
        "complete",
        "context",
        "dockerfile",
        "entries",
        "ignore_file",
        "largest_directories",
        "notes",
        "sources",
        "totals",
        "version",
    ];
    assert_eq!(keys, want);
    assert_eq!(report["version"], 1);
    assert_eq!(report["context"], arg(&fixture()));
    assert_eq!(report["dockerfile"], "Dockerfile");
    assert_eq!(report["ignore_file"], arg(&fixture().join(".dockerignore")));
    assert_eq!(report["complete"], true);
    assert_eq!(report["notes"], serde_json::json!([]));

    let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in report["entries"].as_array().unwrap() {
        let status = e["status"].as_str().unwrap();
        assert!(["used", "unused", "builder", "excluded"].contains(&status), "{e}");
        assert!(["file", "symlink", "fifo", "socket", "device", "dir"].contains(&e["type"].as_str().unwrap()));
        assert_eq!(e["used_by"].is_array(), status == "used", "{e}");
        assert_eq!(e["excluded_by"].is_object(), status == "excluded", "{e}");
        assert_eq!(e["files"].is_u64(), e["type"] == "dir", "{e}");
        let files = e["files"].as_u64().unwrap_or(1);
        let sum = sums.entry(status.to_owned()).or_default();
        *sum = (sum.0 + files, sum.1 + e["size"].as_u64().unwrap());
    }
    for (status, (files, bytes)) in &sums {
        assert_eq!(report["totals"][status], serde_json::json!({ "files": files, "bytes": bytes }), "{status}");
    }
    let sent = &report["totals"]["sent"];
    let parts = ["used", "unused", "builder"].map(|s| report["totals"][s]["bytes"].as_u64().unwrap());
    assert_eq!(sent["bytes"].as_u64().unwrap(), parts.iter().sum::<u64>());

    let source = &report["sources"][1];
    assert_eq!(source["line"], 3);
    assert_eq!(source["stage"], "build");
    assert_eq!(source["instruction"], "COPY");
    assert_eq!(source["text"], "COPY --exclude=**/*_test.go cmd/*/ /cmd/");
    assert_eq!(source["onbuild"], Value::Null);
    assert_eq!(source["sources"], serde_json::json!([{ "written": "cmd/*/", "value": "cmd/*/" }]));
    assert_eq!(source["excludes"], serde_json::json!([{ "written": "**/*_test.go", "value": "**/*_test.go" }]));
    assert_eq!((&source["resolved"], &source["error"]), (&Value::Bool(true), &Value::Null));
    assert_eq!(source["selected"], serde_json::json!({ "files": 2, "bytes": 42 }));
    assert_eq!(report["sources"][2]["instruction"], "RUN --mount=type=bind");

    let largest = &report["largest_directories"][0];
    assert_eq!(largest["path"], "cmd");
    assert_eq!((&largest["files"], &largest["bytes"]), (&serde_json::json!(3), &serde_json::json!(105)));
    assert_eq!(largest["unused"], serde_json::json!({ "files": 1, "bytes": 63 }));
    assert_eq!(report["largest_directories"].as_array().unwrap().len(), 10);
}

#[test]
fn sent_for_nothing_with_globs_bind_mounts_excludes_and_targets() {
    let ctx = TestContext::new();
    let dir = write_context(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch AS tools\nCOPY tools/ /tools/\n\
                 FROM scratch AS build\nARG FLAVOUR=dev\nCOPY go.* *.go /src/\nCOPY config/$FLAVOUR.yaml /etc/\n\
                 RUN --mount=type=bind,source=vendor,target=/src/vendor --mount=type=cache,target=/c go build\n\
                 COPY --exclude=*.md --exclude=assets/raw assets /assets\n\
                 FROM build\nADD https://example.com/x.tar.gz local.tar /\n",
            ),
            ("go.mod", "module x"),
            ("go.sum", ""),
            ("main.go", "package main"),
            ("main_test.go", "package main"),
            ("README.md", "# x"),
            ("config/dev.yaml", "dev"),
            ("config/prod.yaml", "prod"),
            ("vendor/a/a.go", "package a"),
            ("assets/logo.png", "png"),
            ("assets/notes.md", "md"),
            ("assets/raw/big.psd", "psd"),
            ("local.tar", "tar"),
            ("tools/lint", "#!/bin/sh"),
        ],
    );
    let report = context_json(&ctx, &[arg(&dir)]);
    assert_eq!(
        with_status(&report, "unused"),
        ["README.md", "assets/notes.md", "assets/raw/big.psd", "config/prod.yaml", "tools/lint"],
        "*.go selects main_test.go; the tools stage is not needed; --exclude hides two assets"
    );
    assert_eq!(with_status(&report, "builder"), ["Dockerfile"]);
    let used_by = |path: &str| -> Vec<u64> {
        let entries = report["entries"].as_array().unwrap();
        let entry = entries.iter().find(|e| e["path"] == path).unwrap();
        entry["used_by"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    };
    assert_eq!(used_by("vendor/a/a.go"), [2], "the bind mount");
    assert_eq!(used_by("local.tar"), [4], "ADD's URL is no context source");
    assert_eq!(report["sources"].as_array().unwrap().len(), 5);

    let report = context_json(&ctx, &["--target", "tools", "--build-arg", "FLAVOUR=prod", arg(&dir)]);
    assert_eq!(with_status(&report, "used"), ["tools/lint"]);
    let report = context_json(&ctx, &["--build-arg", "FLAVOUR=prod", arg(&dir)]);
    assert_eq!(report["sources"][1]["sources"][0]["value"], "config/prod.yaml");
    assert!(with_status(&report, "unused").contains(&"config/dev.yaml".to_owned()));
}

#[test]
fn file_flag_reads_its_own_ignore_file() {
    let ctx = TestContext::new();
    let dir = write_context(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /\n"),
            (".dockerignore", "a\n"),
            ("Dockerfile.dockerignore", "b\n"),
            ("build/app.Dockerfile", "FROM scratch\nCOPY . /\n"),
            ("build/app.Dockerfile.dockerignore", "c\n"),
            ("a", "a"),
            ("b", "b"),
            ("c", "c"),
        ],
    );
    let dockerfile = dir.join("build/app.Dockerfile");
    let report = context_json(&ctx, &["-f", arg(&dockerfile), arg(&dir)]);
    assert_eq!(report["ignore_file"], arg(&dir.join("build/app.Dockerfile.dockerignore")));
    assert_eq!(report["dockerfile"], arg(&dockerfile));
    assert_eq!(with_status(&report, "excluded:1"), ["c"]);
    let rule = &report["entries"].as_array().unwrap().iter().find(|e| e["path"] == "c").unwrap()["excluded_by"];
    assert_eq!(rule["file"], "app.Dockerfile.dockerignore");
    assert!(statuses(&report).values().all(|s| s == "used" || s == "excluded:1"), "COPY . uses the rest");

    // Without -f: `Dockerfile.dockerignore` replaces `.dockerignore`, as for build.
    let report = context_json(&ctx, &[arg(&dir)]);
    assert_eq!(with_status(&report, "excluded:1"), ["b"]);
    std::fs::remove_file(dir.join("Dockerfile.dockerignore")).unwrap();
    assert_eq!(with_status(&context_json(&ctx, &[arg(&dir)]), "excluded:1"), ["a"]);
}

#[test]
fn sources_that_need_the_base_image_are_said_unresolved() {
    let ctx = TestContext::new();
    let dir = write_context(
        &ctx,
        &[("Dockerfile", "FROM alpine\nCOPY $HOME/app known.txt /x/\nCOPY missing /y\n"), ("known.txt", "k")],
    );
    let report = context_json(&ctx, &[arg(&dir)]);
    let source = &report["sources"][0];
    assert_eq!(source["resolved"], false);
    assert_eq!(
        source["sources"][0],
        serde_json::json!({ "written": "$HOME/app", "value": null, "unresolved": ["HOME"] })
    );
    assert_eq!(source["selected"]["files"], 1, "the resolved source still selects");
    assert_eq!(report["sources"][1]["error"], "missing: not found in build context");
    let notes = report["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{notes:?}");

    let out = context_output(&ctx, &[arg(&dir)]);
    assert!(out.contains("1 file, 1B (not resolved: $HOME may come from the base image)"), "{out}");
    assert!(out.contains("error: missing: not found in build context"), "{out}");
    assert!(out.contains("note: images are not read: ONBUILD triggers of base images are not counted"), "{out}");
}

#[test]
fn a_dockerfile_error_is_shown_at_its_line() {
    let ctx = TestContext::new();
    let dir = write_context(&ctx, &[("Dockerfile", "FROM scratch\nCOPY onlyone\n")]);
    let out = context_output(&ctx, &[arg(&dir)]);
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(out.contains("Dockerfile:2:1: error:"), "{out}");
    let out = context_output(&ctx, &[arg(&ctx.path().join("nope"))]);
    assert!(out.starts_with("exit: 2\n") && out.contains("is not a directory"), "{out}");
}

/// A large context: an excluded dependency tree is one entry, the rest one line per file.
#[test]
fn a_large_context_lists_an_excluded_tree_as_one_entry() {
    let ctx = TestContext::new();
    let dir = write_context(&ctx, &[("Dockerfile", "FROM scratch\nCOPY src /src\n"), (".dockerignore", "deps\n")]);
    for d in 0..40 {
        let deps = dir.join(format!("deps/pkg{d}"));
        let src = dir.join(format!("src/mod{d}"));
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::create_dir_all(&src).unwrap();
        for f in 0..100 {
            std::fs::write(deps.join(format!("f{f}.js")), "x".repeat(10)).unwrap();
        }
        for f in 0..25 {
            std::fs::write(src.join(format!("f{f}.rs")), "y").unwrap();
        }
    }
    let report = context_json(&ctx, &[arg(&dir)]);
    let entries = report["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2 + 1 + 1000);
    let deps = entries.iter().find(|e| e["path"] == "deps").unwrap();
    assert_eq!((&deps["files"], &deps["size"]), (&serde_json::json!(4000), &serde_json::json!(40_000)));
    assert_eq!(report["totals"]["used"], serde_json::json!({ "files": 1000, "bytes": 1000 }));
    assert_eq!(report["largest_directories"][0]["path"], "deps");
}
