//! `build`: COPY and ADD — Docker's destination rules, ownership and modes, links, `--from` a
//! stage and an image, heredoc sources, `.dockerignore`, ADD's archives, and paths that try to
//! leave the context; every result read back with umoci or `slipway run`.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use crate::support::build::{BuildEnv, steps};
use crate::support::describe;

#[test]
fn copy_follows_dockers_destination_rules() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.write("b.txt", "b\n");
    env.write("dir/x/y.txt", "y\n");
    env.write("dir/top.txt", "top\n");
    env.dockerfile(
        "FROM bb\n\
         WORKDIR /app\n\
         COPY a.txt .\n\
         COPY a.txt /renamed.txt\n\
         COPY a.txt b.txt /many/\n\
         COPY dir /contents/\n\
         COPY dir/ relative/\n\
         COPY *.txt /glob/\n\
         COPY --chmod=751 a.txt /modes/a\n\
         COPY --chown=user:user dir /owned\n\
         COPY --chown=1234:5678 a.txt /numeric\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("app/a.txt"), "a\n");
    assert_eq!(read("renamed.txt"), "a\n");
    assert_eq!(read("many/a.txt") + &read("many/b.txt"), "a\nb\n");
    assert_eq!(read("contents/top.txt") + &read("contents/x/y.txt"), "top\ny\n");
    assert!(!root.join("contents/dir").exists(), "a directory source copies its contents");
    assert_eq!(read("app/relative/x/y.txt"), "y\n");
    assert_eq!(read("glob/a.txt") + &read("glob/b.txt"), "a\nb\n");
    let md = std::fs::metadata(root.join("modes/a")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o751);
    let owned = std::fs::metadata(root.join("owned/x/y.txt")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000), "names resolved in the image's /etc/passwd");
    let numeric = std::fs::metadata(root.join("numeric")).unwrap();
    assert_eq!((numeric.uid(), numeric.gid()), (1234, 5678));
    let plain = std::fs::metadata(root.join("renamed.txt")).unwrap();
    assert_eq!((plain.uid(), plain.gid()), (0, 0), "context files belong to root");
}

/// A symbolic `--chmod` reaches history as written and keys the step apart from the octal mode
/// it amounts to; an empty one is no chmod; a bad one fails at its line (BuildKit's rules).
#[test]
fn symbolic_chmod_is_shown_keyed_and_checked() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    std::fs::set_permissions(env.ctx().join("a.txt"), std::fs::Permissions::from_mode(0o666)).unwrap();
    env.dockerfile("FROM bb\nARG NONE\nCOPY --chmod=go-w a.txt /sym\nCOPY --chmod=$NONE a.txt /kept\n");
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("sym"), mode("kept")), (0o644, 0o666));
    let config = env.config("img:1");
    let shown: Vec<&str> =
        config["history"].as_array().unwrap().iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(shown.contains(&"COPY --chmod=go-w a.txt /sym"), "{shown:?}");
    assert!(shown.contains(&"COPY a.txt /kept"), "an empty --chmod is none: {shown:?}");

    env.dockerfile("FROM bb\nARG NONE\nCOPY --chmod=644 a.txt /sym\nCOPY --chmod=$NONE a.txt /kept\n");
    let events = env.build_events(&["-t", "img:2"]);
    let first = steps(&events).first().and_then(|s| s.cache.clone());
    assert_eq!(first.as_deref(), Some("miss"), "644 is another key than go-w, though it makes the same file");

    env.dockerfile("FROM bb\nCOPY --chmod=u+q a.txt /bad\n");
    let out = env.build(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr.contains("Dockerfile:2:1") && stderr.contains("invalid chmod parameter \"u+q\""), "{stderr}");
}

#[test]
fn copy_keeps_symlinks_and_a_multi_source_copy_needs_a_directory() {
    let env = BuildEnv::new();
    env.write("links/real.txt", "real\n");
    env.write("real.txt", "real\n");
    symlink("real.txt", env.ctx().join("links/link")).unwrap();
    symlink("/etc/passwd", env.ctx().join("links/abs")).unwrap();
    // Links inside a copied directory are copied as links, never followed (B2).
    env.dockerfile("FROM bb\nCOPY links /d/\n");
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    assert_eq!(std::fs::read_link(root.join("d/link")).unwrap().to_str().unwrap(), "real.txt");
    assert_eq!(std::fs::read_link(root.join("d/abs")).unwrap().to_str().unwrap(), "/etc/passwd");

    env.dockerfile("FROM bb\nCOPY real.txt links/real.txt /not-a-dir\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dockerfile:2:1"), "{}", describe(&out));
}

#[test]
fn copy_from_a_stage_an_index_and_an_image() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo from-image > /in-image\n");
    env.build_ok(&["-t", "other:1"]);
    env.dockerfile(
        "FROM bb AS builder\n\
         RUN mkdir -p /out && echo built > /out/bin && chown 1000:1000 /out/bin\n\
         FROM bb\n\
         COPY --from=builder /out/bin /usr/bin/tool\n\
         COPY --from=0 /out /out0\n\
         COPY --from=other:1 /in-image /copied\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(
        env.run_stdout("img:1", &["cat", "/usr/bin/tool", "/out0/bin", "/copied"]),
        "built\nbuilt\nfrom-image\n"
    );
    let root = env.umoci_unpack("img:1", env.tc.path());
    let md = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000), "files from a stage keep their owner");
}

#[test]
fn heredoc_sources_and_dockerignore() {
    let env = BuildEnv::new();
    env.write(".dockerignore", "secret.txt\n*.log\n!keep.log\n");
    env.write("secret.txt", "s3cr3t\n");
    env.write("a.log", "log\n");
    env.write("keep.log", "kept\n");
    env.write("ok.txt", "ok\n");
    env.dockerfile(
        "FROM bb\n\
         ARG WHO=world\n\
         COPY <<EOF /hello.txt\n\
         hello $WHO\n\
         EOF\n\
         COPY <<'EOF' /raw.txt\n\
         hello $WHO\n\
         EOF\n\
         COPY . /ctx/\n",
    );
    env.build_ok(&["-t", "img:1", "--build-arg", "WHO=slipway"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/hello.txt", "/raw.txt"]), "hello slipway\nhello $WHO\n");
    let ls = env.run_stdout("img:1", &["ls", "-a", "/ctx"]);
    let names: Vec<&str> = ls.lines().collect();
    assert!(names.contains(&"ok.txt") && names.contains(&"keep.log"), "{names:?}");
    assert!(!names.contains(&"secret.txt") && !names.contains(&"a.log"), "{names:?}");

    env.dockerfile("FROM bb\nCOPY secret.txt /s\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dockerfile:2:1"), "{}", describe(&out));
}

/// Without `-f`, `Dockerfile.dockerignore` in the context replaces `.dockerignore` (BuildKit's
/// testDockerignoreOverride) — also for the lower-case `dockerfile` fallback, where BuildKit
/// still looks for the name it was asked for, never `dockerfile.dockerignore` — and also for a
/// context given as a tar on stdin.
#[test]
fn dockerfile_dockerignore_beside_the_default_dockerfile() {
    let env = BuildEnv::new();
    env.write(".dockerignore", "foo\n");
    env.write("Dockerfile.dockerignore", "bar\n");
    env.write("dockerfile.dockerignore", "baz\n");
    for name in ["foo", "bar", "baz"] {
        env.write(name, name);
    }
    let check = "RUN [ -f foo ] && [ ! -f bar ] && [ -f baz ]\n";
    env.dockerfile(&format!("FROM bb\nCOPY . /c/\nWORKDIR /c\n{check}"));
    env.build_ok(&[]);

    std::fs::remove_file(env.ctx().join("Dockerfile")).unwrap();
    env.write("dockerfile", &format!("FROM bb\nCOPY . /c/\nWORKDIR /c\n{check}"));
    env.build_ok(&[]);

    let tar = std::process::Command::new("tar").arg("-C").arg(env.ctx()).args(["-cf", "-", "."]).output().unwrap();
    assert!(tar.status.success(), "{}", describe(&tar));
    let mut cmd = env.tc.cmd();
    cmd.args(["build", "-"]).stdin(std::process::Stdio::piped());
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a context on stdin: {}", describe(&out));
}

#[test]
fn add_unpacks_local_archives_and_copies_other_files() {
    let env = BuildEnv::new();
    let src = env.tc.path().join("tree");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    std::fs::write(src.join("inner/f.txt"), "in archive\n").unwrap();
    for (name, flag) in
        [("t.tar", None), ("t.tar.gz", Some("-z")), ("t.tar.xz", Some("-J")), ("t.tar.zst", Some("--zstd"))]
    {
        let mut cmd = std::process::Command::new("tar");
        cmd.arg("-C").arg(&src).arg("-c");
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let out = cmd.arg("-f").arg(env.ctx().join(name)).arg("inner").output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    env.write("plain.txt", "plain\n");
    env.dockerfile(
        "FROM bb\n\
         ADD t.tar /tar/\n\
         ADD t.tar.gz /gz/\n\
         ADD t.tar.xz /xz/\n\
         ADD t.tar.zst /zst/\n\
         ADD plain.txt /plain.txt\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(
        env.run_stdout(
            "img:1",
            &["cat", "/tar/inner/f.txt", "/gz/inner/f.txt", "/xz/inner/f.txt", "/zst/inner/f.txt", "/plain.txt"]
        ),
        "in archive\nin archive\nin archive\nin archive\nplain\n"
    );
}

#[test]
fn paths_outside_the_context_fail_at_their_line_and_read_nothing() {
    let env = BuildEnv::new();
    let outside = env.tc.path().join("outside-secret");
    std::fs::write(&outside, "do not read\n").unwrap();
    symlink("/etc", env.ctx().join("etc-link")).unwrap();
    for (line, needle) in [
        ("COPY ../outside-secret /x", "outside"),
        ("COPY etc-link/passwd /x", "etc-link/passwd"),
        ("ADD ../../x /", "outside"),
    ] {
        env.dockerfile(&format!("FROM bb\n{line}\n"));
        let out = env.build(&[]);
        assert_eq!(out.status.code(), Some(1), "{line}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Dockerfile:2:1"), "{line}: {stderr}");
        assert!(stderr.contains(needle), "{line}: {stderr}");
    }
    // An absolute source is relative to the context root.
    env.write("etc/passwd", "context passwd\n");
    env.dockerfile("FROM bb\nCOPY /etc/passwd /x\n");
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/x"]), "context passwd\n");
}

#[test]
fn unsupported_sources_fail_at_their_line() {
    let env = BuildEnv::new();
    env.write("local", "x");
    env.dockerfile("FROM bb\nADD https://127.0.0.1:9/file local /d/\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Dockerfile:2:1: error: ADD of a URL or git repository"),
        "{}",
        describe(&out)
    );
    // A URL nothing answers fails at its line too (the discard port).
    env.dockerfile("FROM bb\nADD https://127.0.0.1:9/file /f\n");
    let out = env.build(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("Dockerfile:2:1: error: ADD of a remote source failed"), "{}", describe(&out));
    assert!(err.contains("GET https://127.0.0.1:9/file failed"), "{}", describe(&out));
}

#[test]
fn the_readme_example_builds_runs_and_rebuilds_from_cache() {
    let env = BuildEnv::new();
    env.tc.ok(&["tag", "bb", "example/busybox:latest"]);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let build = |extra: &[&str]| {
        let mut args =
            vec!["--progress", "rawjson", "build", "-t", "example/hello:latest", "--build-arg", "GREETING=Hi"];
        args.extend_from_slice(extra);
        args.push(example.to_str().unwrap());
        env.tc.ok(&args)
    };
    let first = crate::support::build::events(&build(&[]));
    assert!(crate::support::build::ran(&first) >= 3);
    assert_eq!(env.run_stdout("example/hello:latest", &[]), "Hi, world!\nbuilt by slipway\n");
    assert_eq!(env.run_stdout("example/hello:latest", &["you"]), "Hi, you!\nbuilt by slipway\n");
    let second = crate::support::build::events(&build(&[]));
    assert_eq!(crate::support::build::ran(&second), 0, "a no-op rebuild runs nothing");
}

/// `(mode & 0o7777, uid, gid)` of `p` below `root`, not following a last symlink.
#[track_caller]
fn meta(root: &std::path::Path, p: &str) -> (u32, u32, u32) {
    let md = std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    (md.permissions().mode() & 0o7777, md.uid(), md.gid())
}

// BuildKit: testCopyChmod (parents take --chmod), testCopyChownCreateDest and
// testCopyChownExistingDir (a created destination belongs to --chown, else to root).
#[test]
fn directories_copy_creates_take_buildkits_mode_and_owner() {
    let env = BuildEnv::new();
    env.write("f", "f\n");
    env.write("dir/inner/g", "g\n");
    env.dockerfile(
        "FROM bb AS src\n\
         RUN mkdir -p /out/sub && echo s > /out/sub/f && chown -R 1000:1000 /out && chmod 700 /out\n\
         FROM bb\n\
         COPY --chmod=777 f /a/b/c/f\n\
         COPY --chmod=770 f /p/sub/f\n\
         COPY --chown=1234:5678 f /owned/x/f\n\
         COPY --chown=1234:5678 dir /owned-dir\n\
         COPY f /plain/x/f\n\
         COPY --from=src /out /from-stage\n\
         COPY --from=src --chown=300:400 /out /from-stage-chowned\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    for p in ["a", "a/b", "a/b/c"] {
        assert_eq!(meta(&root, p), (0o777, 0, 0), "{p}: --chmod reaches the created parents");
    }
    assert_eq!(meta(&root, "a/b/c/f"), (0o777, 0, 0));
    for p in ["p", "p/sub"] {
        assert_eq!(meta(&root, p), (0o770, 0, 0), "{p}");
    }
    for p in ["owned", "owned/x", "owned-dir"] {
        assert_eq!(meta(&root, p), (0o755, 1234, 5678), "{p}: --chown owns the created directories");
    }
    assert_eq!(meta(&root, "owned-dir/inner/g").1, 1234);
    assert_eq!(meta(&root, "plain/x"), (0o755, 0, 0));
    assert_eq!(meta(&root, "from-stage"), (0o755, 0, 0), "the created destination is root's, not the source's");
    assert_eq!(meta(&root, "from-stage/sub"), (0o755, 1000, 1000), "below it the source's owners stay");
    assert_eq!(meta(&root, "from-stage/sub/f").1, 1000);
    assert_eq!(meta(&root, "from-stage-chowned"), (0o755, 300, 400));
    assert_eq!(meta(&root, "from-stage-chowned/sub/f").1, 300);
}

// BuildKit: testSymlinkDestination (`COPY foo /symlink/`, `/symlink -> ../tmp/symlink-target`
// dangling, writes /tmp/symlink-target/foo).
#[test]
fn copy_to_a_dangling_symlink_creates_its_target_inside_the_rootfs() {
    let env = BuildEnv::new();
    env.write("foo", "content\n");
    let probe = format!("slipway-escape-probe-{}", std::process::id());
    env.dockerfile(&format!(
        "FROM bb\n\
         RUN ln -s ../made/here /link && ln -s /made/file /flink && ln -s /../../../{probe} /escape\n\
         COPY foo /link/\n\
         COPY foo /flink\n\
         COPY foo /escape/\n\
         RUN cat /made/here/foo /made/file /{probe}/foo\n"
    ));
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    assert_eq!(std::fs::read_to_string(root.join("made/here/foo")).unwrap(), "content\n");
    assert_eq!(std::fs::read_to_string(root.join("made/file")).unwrap(), "content\n");
    assert_eq!(std::fs::read_to_string(root.join(&probe).join("foo")).unwrap(), "content\n");
    assert_eq!(std::fs::read_link(root.join("link")).unwrap().to_str().unwrap(), "../made/here");
    assert_eq!(std::fs::read_link(root.join("flink")).unwrap().to_str().unwrap(), "/made/file");
    assert_eq!(meta(&root, "made"), (0o755, 0, 0));
    assert_eq!(meta(&root, "made/here"), (0o755, 0, 0));
    assert!(!std::path::Path::new("/").join(&probe).exists(), "nothing is written outside the rootfs");
}

// BuildKit: testEmptyDestDir (`ENV empty=""`, `COPY testfile $empty`, then RUN reads it).
#[test]
fn a_destination_that_expands_to_nothing_is_the_working_directory() {
    let env = BuildEnv::new();
    env.write("f", "f\n");
    env.write("g", "g\n");
    env.dockerfile(
        "FROM bb\n\
         WORKDIR /app\n\
         ARG D\n\
         COPY f $D\n\
         COPY f g ${D}\n\
         RUN cat f g > /seen\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "f\ng\n");
    let root = env.umoci_unpack("img:1", env.tc.path());
    assert!(root.join("app").is_dir(), "the working directory stays a directory");
}

// BuildKit: testExcludedFilesOnCopy (builder6: `ADD --exclude=* dir* /6` leaves /6 empty).
#[test]
fn excludes_that_hide_every_match_leave_an_empty_destination_directory() {
    let env = BuildEnv::new();
    env.write("dir1/a.txt", "a\n");
    env.write("dir2/b.txt", "b\n");
    env.dockerfile(
        "FROM bb AS src\n\
         RUN mkdir -p /s/dir1 && echo c > /s/dir1/c.txt\n\
         FROM bb\n\
         ADD --exclude=* dir* /6\n\
         COPY --exclude=dir* dir* /7/\n\
         COPY --from=src --exclude=* /s/dir* /8\n",
    );
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    for p in ["6", "7", "8"] {
        assert_eq!(meta(&root, p), (0o755, 0, 0), "{p}");
        assert_eq!(std::fs::read_dir(root.join(p)).unwrap().count(), 0, "{p} is empty");
    }
    // A literal source an exclude hides is still missing.
    env.dockerfile("FROM bb\nCOPY --exclude=dir1 dir1 /x\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

// BuildKit: testHeredocVarSubstitution and testCopyHeredocSpecialSymbols.
#[test]
fn heredoc_sources_expand_as_buildkit_does() {
    let env = BuildEnv::new();
    env.dockerfile(concat!(
        "FROM bb\n",
        "ARG name=world\n",
        "COPY <<EOF /dest/c1\nHello ${name}!\nEOF\n",
        "COPY <<'EOF' /dest/c2\nHello ${name}!\nEOF\n",
        "COPY <<\"EOF\" /dest/c3\nHello ${name}!\nEOF\n",
        "COPY <<EOF /dest/q1\nHello '${name}'!\nEOF\n",
        "COPY <<EOF /dest/q2\nHello \"${name}\"!\nEOF\n",
        "COPY <<'EOF' /dest/qsingle1\nHello '${name}'!\nEOF\n",
        "COPY <<'EOF' /dest/qsingle2\nHello \"${name}\"!\nEOF\n",
        "COPY <<\"EOF\" /dest/qdouble1\nHello '${name}'!\nEOF\n",
        "COPY <<\"EOF\" /dest/qdouble2\nHello \"${name}\"!\nEOF\n",
        "COPY <<EOF /dest/quotefile\n\"quotes in file\"\nEOF\n",
        "COPY <<EOF /dest/slash1\n\\\nEOF\n",
        "COPY <<EOF /dest/slash2\n\\\\\nEOF\n",
        "COPY <<EOF /dest/slash3\n\\$\nEOF\n",
        "COPY <<\"EOF\" /dest/rawslash1\n\\\nEOF\n",
        "COPY <<\"EOF\" /dest/rawslash2\n\\\\\nEOF\n",
        "COPY <<\"EOF\" /dest/rawslash3\n\\$\nEOF\n",
    ));
    env.build_ok(&["-t", "img:1"]);
    let root = env.umoci_unpack("img:1", env.tc.path());
    for (name, want) in [
        ("c1", "Hello world!\n"),
        ("c2", "Hello ${name}!\n"),
        ("c3", "Hello ${name}!\n"),
        ("q1", "Hello 'world'!\n"),
        ("q2", "Hello \"world\"!\n"),
        ("qsingle1", "Hello '${name}'!\n"),
        ("qsingle2", "Hello \"${name}\"!\n"),
        ("qdouble1", "Hello '${name}'!\n"),
        ("qdouble2", "Hello \"${name}\"!\n"),
        ("quotefile", "\"quotes in file\"\n"),
        ("slash1", "\n"),
        ("slash2", "\\\n"),
        ("slash3", "$\n"),
        ("rawslash1", "\\\n"),
        ("rawslash2", "\\\\\n"),
        ("rawslash3", "\\$\n"),
    ] {
        let got = std::fs::read_to_string(root.join("dest").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        assert_eq!(meta(&root, &format!("dest/{name}")), (0o644, 0, 0), "{name}");
    }
}
