//! The adversarial catalogue (`shared/research/reliability.md` §4), parts A (bad Dockerfile
//! input) and C (malicious base-image layers): the cases no other file names by id. Each test is
//! named after its id. Every case ends with `slipway fsck --strict` on the store and a check of
//! canary files outside it; a failing build exits non-zero with an error naming `Dockerfile:<line>`.
//!
//! Cases covered elsewhere carry their id in that test's doc comment instead (`grep -rw A6 tests/`).
//!
//! Sizes scale with environment variables where a case is big: `SLIPWAY_TEST_PARSE_MIB` (A4's
//! long line, default 1) and `SLIPWAY_TEST_PARSE_CONTINUATIONS` (A4, default 100000).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::build::BuildEnv;
use crate::support::files::FileServer;
use crate::support::registry::Registry;
use crate::support::sandbox::Canary;
use crate::support::{TestContext, describe, scaled};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `text` names `Dockerfile:<line>` (not a longer number starting with the same digits).
fn names_line(text: &str, line: u32) -> bool {
    let needle = format!("Dockerfile:{line}");
    text.match_indices(&needle).any(|(i, _)| !text[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The build failed (a non-zero exit, no panic) with an error naming `Dockerfile:<line>` and
/// every one of `needles`; returns its stderr.
#[track_caller]
fn assert_fails_at(out: &Output, line: u32, needles: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "the build succeeded: {}", describe(out));
    assert_ne!(out.status.code(), Some(101), "slipway panicked: {err}");
    assert!(names_line(&err, line), "the error does not name Dockerfile:{line}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "the error does not say {needle:?}: {err}");
    }
    err
}

/// What every case ends with: the store passes `fsck --strict`, the canaries are untouched.
#[track_caller]
fn assert_store_and_canary(tc: &TestContext, canary: &Canary) {
    tc.ok(&["fsck", "--strict"]);
    canary.check_files();
}

/// Files under the store's blobs.
fn blob_count(tc: &TestContext) -> usize {
    std::fs::read_dir(tc.root().join("blobs/sha256")).map_or(0, |d| d.count())
}

/// A1: an unknown instruction, a stage used before it is defined (the `FROM b AS a` / `FROM a AS
/// b` cycle: a stage may only name earlier ones), a stage naming itself, and a stage index that
/// is not an earlier stage fail before any image is pulled or any step runs, naming the line; the
/// store gains no blob. The images named live on a local server that logs every request: it must
/// see none.
#[test]
fn a1_dockerfile_errors_fail_before_any_pull_or_run_naming_the_line() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let server = FileServer::start();
    let image = format!("{}/never/pulled:1", server.host());
    let marker = env.tc.path().join("ran");
    let run = format!("RUN touch {}", marker.display());
    let cases: Vec<(String, u32, &str)> = vec![
        (format!("FROM {image}\n{run}\nFROMM x\n"), 3, "unknown instruction: FROMM"),
        (format!("FROM {image} AS b0\nFROM b AS a\n{run}\nFROM a AS b\n"), 2, "used before it is defined"),
        (format!("FROM {image} AS a\n{run}\nCOPY --from=a /x /x\n"), 3, "refers to itself"),
        (format!("FROM {image}\n{run}\nCOPY --from=1 /x /x\n"), 3, "stage index 1 is not an earlier stage"),
        (format!("FROM {image}\nCOPY --from=0 /x /x\n"), 2, "stage index 0 is not an earlier stage"),
    ];
    let before = blob_count(&env.tc);
    for (dockerfile, line, message) in cases {
        env.dockerfile(&dockerfile);
        let out = env.build(&["-t", "never"]);
        assert_fails_at(&out, line, &[message]);
        assert!(server.log().is_empty(), "{dockerfile}: an image was asked for: {:?}", server.log());
        assert!(!marker.exists(), "{dockerfile}: a step ran");
        assert_eq!(blob_count(&env.tc), before, "{dockerfile}: the store gained a blob");
        assert!(!env.tc.run(&["inspect", "never"]).status.success());
    }
    assert_store_and_canary(&env.tc, &canary);
}

/// A1, `COPY --from=nope`: a name that is no stage is an image (Docker's rule), so it is looked
/// up — here on a local registry that has no such image — and the failure names the line and the
/// image; no step after it ran and nothing was tagged.
#[test]
fn a1_copy_from_an_unknown_name_fails_at_its_line_naming_the_image() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let server = FileServer::start();
    let nope = format!("{}/nope:1", server.host());
    env.dockerfile(&format!("FROM bb\nRUN echo hi > /hi\nCOPY --from={nope} /x /x\nRUN touch /after\n"));
    let out = env.build(&["-t", "never"]);
    assert_fails_at(&out, 3, &[&nope]);
    assert!(!env.tc.run(&["inspect", "never"]).status.success());
    assert_store_and_canary(&env.tc, &canary);
}

/// Peak resident memory of the children this test process waited for, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage(2) fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an owned rusage.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(ret, 0, "getrusage: {}", std::io::Error::last_os_error());
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

/// A3: `ARG A=<64 KiB>` and twenty `ENV Bi=$B(i-1)$B(i-1)` lines would ask for 64 GiB; the
/// expansion stops at 1 MiB (`dockerfile::expand::MAX_EXPANDED`) with "expansion exceeds" at the
/// first line past it, quickly and in bounded memory (the time is only a generous sanity bound).
#[test]
fn a3_a_doubling_expansion_chain_stops_at_the_bound_naming_its_line() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    // The longest ARG line the parser takes (65535 bytes): the value is 64 KiB less a little.
    let value = "a".repeat(65_535 - "ARG A=".len());
    let mut dockerfile = format!("FROM bb\nARG A={value}\nENV B0=$A\n");
    for i in 1..=20 {
        dockerfile.push_str(&format!("ENV B{i}=$B{}$B{}\n", i - 1, i - 1));
    }
    dockerfile.push_str("RUN touch /never\n");
    env.dockerfile(&dockerfile);
    let started = Instant::now();
    let out = env.build(&["-t", "bomb"]);
    let took = started.elapsed();
    // B4 is 16 × 65529 bytes (< 1 MiB), B5 twice that: ENV B5 is line 3 + 5.
    assert_fails_at(&out, 8, &["expansion exceeds 1048576 bytes"]);
    assert!(took < scaled(Duration::from_secs(30)), "the build took {took:?}");
    let rss = children_max_rss();
    assert!(rss < 256 << 20, "a child used {} MiB", rss >> 20);
    assert!(!env.tc.run(&["inspect", "bomb"]).status.success());
    assert_store_and_canary(&env.tc, &canary);
}

/// Runs one input through everything `fuzz/fuzz_targets/parse.rs` runs (parse, lower, graph,
/// lint, diagnostics rendered); returns the lines of the errors it reported (empty when none).
fn parse_everything(src: &str) -> Vec<u32> {
    use slipway::dockerfile::{lower, parse};
    use slipway::graph::lint::{CheckConfig, LintInput, lint};
    use slipway::graph::{GraphOptions, build};

    let lines = src.split('\n').count() as u32;
    let check_lines = |d: &slipway::dockerfile::Diagnostics| -> Vec<u32> {
        let rendered = d.render("Dockerfile", src);
        assert!(rendered.contains("Dockerfile:"), "a rendered error has no line: {rendered:.300}");
        d.errors()
            .iter()
            .map(|e| {
                let line = e.span().start_line;
                assert!((1..=lines).contains(&line), "error {e} at line {line} of {lines}");
                line
            })
            .collect()
    };
    let ast = match parse(src) {
        Ok(ast) => ast,
        Err(d) => return check_lines(&d),
    };
    let (dockerfile, lines_of_errors) = match lower(&ast) {
        Ok(d) => (Some(d), Vec::new()),
        Err(d) => (None, check_lines(&d)),
    };
    let options = GraphOptions { escape: ast.escape, ..GraphOptions::default() };
    let graph = dockerfile.as_ref().and_then(|d| build(d, &options).ok());
    let build_args = std::collections::BTreeMap::new();
    let input = LintInput {
        ast: &ast,
        dockerfile: dockerfile.as_ref(),
        graph: graph.as_ref(),
        build_args: &build_args,
        ignored: None,
    };
    let _ = lint(&input, &CheckConfig::from_ast(&ast));
    lines_of_errors
}

/// A4: the fuzz target `fuzz/fuzz_targets/parse.rs` exists, and the inputs the catalogue lists —
/// NUL, CRLF, a BOM, invalid UTF-8, a 1 MiB line, 100k `\` continuations, an unterminated
/// heredoc, bad `# escape=`/`# syntax=` directives, broken JSON exec forms — go through the
/// parser, lowering, graph and lint without a panic; an error names a line inside the file.
/// Through `slipway check` the raw bytes (invalid UTF-8, NUL) end in an exit code, never a panic.
/// The time bound is a generous sanity limit.
#[test]
fn a4_nasty_dockerfile_bytes_never_panic_and_errors_have_lines() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets/parse.rs");
    assert!(fuzz.is_file(), "{} is missing", fuzz.display());
    let mib = env_usize("SLIPWAY_TEST_PARSE_MIB", 1);
    let continuations = env_usize("SLIPWAY_TEST_PARSE_CONTINUATIONS", 100_000);
    let long_line = format!("FROM scratch\nLABEL x={}\n", "a".repeat(mib << 20));
    let inputs: Vec<(&str, Vec<u8>, Option<u32>)> = vec![
        ("nul", b"FROM scratch\nRUN a\0b\nLABEL \0=\0\n".to_vec(), None),
        ("crlf", b"FROM scratch\r\nRUN echo hi \\\r\n  there\r\nCMD [\"a\"]\r\n".to_vec(), None),
        ("bom", "\u{feff}# syntax=docker/dockerfile:1\nFROM scratch\n".as_bytes().to_vec(), None),
        ("invalid utf-8", b"FROM scratch\nLABEL x=\xff\xfe\xc3\x28\nRUN \x80\n".to_vec(), None),
        ("1 MiB line", long_line.into_bytes(), Some(2)),
        ("continuations", format!("FROM scratch\nRUN a{}\n", " \\\n".repeat(continuations)).into_bytes(), None),
        ("unterminated heredoc", b"FROM scratch\nRUN <<EOF\necho hi\n".to_vec(), None),
        ("unterminated heredoc at end", b"FROM scratch\nCOPY <<EOF /x".to_vec(), None),
        ("bad escape", b"# escape=xx\nFROM scratch\n".to_vec(), None),
        ("escape twice", b"# escape=`\n# escape=\\\nFROM scratch\n".to_vec(), None),
        ("bad syntax", b"# syntax=\n# syntax=\xff\nFROM scratch\n".to_vec(), None),
        ("broken json", b"FROM scratch\nCMD [\"a\", \nENTRYPOINT [\"a\" \"b\"]\nRUN [\"\\u12\"]\n".to_vec(), None),
        ("json with NUL", b"FROM scratch\nCMD [\"a\\u0000b\"]\nSHELL [\nHEALTHCHECK CMD [\n".to_vec(), None),
        ("only continuations", "\\\n".repeat(1000).into_bytes(), None),
    ];
    let started = Instant::now();
    for (name, bytes, error_line) in &inputs {
        let src = String::from_utf8_lossy(bytes);
        let lines = parse_everything(&src);
        if let Some(line) = error_line {
            assert!(lines.contains(line), "{name}: expected an error at line {line}, got {lines:?}");
        }
    }
    let took = started.elapsed();
    assert!(took < scaled(Duration::from_secs(30)), "parsing took {took:?}");

    let tc = TestContext::new();
    let canary = Canary::plant_in(tc.path());
    for (name, bytes, error_line) in &inputs {
        let file = tc.path().join("Dockerfile");
        std::fs::write(&file, bytes).unwrap();
        let out = tc.run(&["check", "-f", file.to_str().unwrap(), tc.path().to_str().unwrap()]);
        assert!(matches!(out.status.code(), Some(0..=2)), "{name}: {}", describe(&out));
        // `check` prints its findings on stdout, errors on stderr.
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        if let Some(line) = error_line {
            assert!(names_line(&text, *line), "{name}: no Dockerfile:{line}: {text:.400}");
        }
        if !out.status.success() {
            assert!(text.contains("Dockerfile"), "{name}: the error names no file: {}", describe(&out));
        }
    }
    assert!(!tc.root().join("blobs").exists() || blob_count(&tc) == 0);
    canary.check_files();
}

/// A5: `ADD <url>` where the server redirects to `file://`, to `ftp://`, or in a loop; a body
/// larger than the limit, announced by `Content-Length` or streamed endlessly without one; a
/// body that does not match `--checksum`. Non-http(s) targets are refused, at most 10 redirects
/// are followed, the size limit holds (set low with `SLIPWAY_ADD_MAX_BYTES`), the checksum is
/// enforced — each a failure at the ADD's line that writes no blob.
#[test]
fn a5_add_url_redirects_sizes_and_checksums_are_bounded() {
    use crate::support::proxy::{Action, Proxy, Rule};

    let server = FileServer::start();
    server.redirect("/to-file", 302, "file:///etc/passwd");
    server.redirect("/to-ftp", 302, &format!("ftp://{}/x", server.host()));
    server.redirect("/loop", 302, "/loop");
    server.file("/big", &[b'x'; 4096], &[]);
    server.file("/small", b"small\n", &[]);
    let proxy = Proxy::start(server.port());
    proxy.rule(Rule::new("GET", "/endless", Action::Endless { status: 200, headers: Vec::new() }));
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let endless = format!("http://{}/endless", proxy.host());
    let wrong = slipway::oci::Digest::of(b"something else").to_string();
    let cases = [
        (format!("ADD {} /x", server.url("/to-file")), "not http or https".to_string()),
        (format!("ADD {} /x", server.url("/to-ftp")), "not http or https".to_string()),
        (format!("ADD {} /x", server.url("/loop")), "more than 10 redirects".to_string()),
        (format!("ADD {} /x", server.url("/big")), format!("{} is larger than 2048 bytes", server.url("/big"))),
        (format!("ADD {endless} /x"), format!("{endless} is larger than 2048 bytes")),
        (format!("ADD --checksum={wrong} {} /x", server.url("/small")), "checksum mismatch".to_string()),
    ];
    let before = blob_count(&env.tc);
    for (add, message) in &cases {
        env.dockerfile(&format!("FROM bb\n{add}\nRUN touch /after\n"));
        let started = Instant::now();
        let out = env.build_cmd(&["-t", "never"]).env("SLIPWAY_ADD_MAX_BYTES", "2048").output().unwrap();
        assert_fails_at(&out, 2, &[message]);
        assert!(started.elapsed() < scaled(Duration::from_secs(60)), "{add}: took {:?}", started.elapsed());
        assert_eq!(blob_count(&env.tc), before, "{add}: a blob was written");
    }
    assert_eq!(server.statuses("/loop").len(), 11, "at most 10 redirects are followed");
    assert!(server.log().iter().all(|s| !s.target.contains("passwd")));
    // Within the limit the same download works.
    env.dockerfile(&format!("FROM bb\nADD {} /x\n", server.url("/small")));
    let out = env.build_cmd(&["-t", "ok"]).env("SLIPWAY_ADD_MAX_BYTES", "2048").output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!env.tc.run(&["inspect", "never"]).status.success());
    assert_store_and_canary(&env.tc, &canary);
}

/// A7: `--mount` values that are wrong — unknown keys (`bind-propagation=`, `relabel=`, any
/// other), `uid=-1`, a target over `/proc` — fail at their line before anything runs; a bind
/// `source=../..` stays inside the context (resolved like a COPY source: it names the context's
/// root, never its parent); a cache `id=../../../../etc` is hashed into an opaque directory name
/// under `cache/mounts`, never joined to a path.
#[test]
fn a7_mount_options_are_validated_and_cache_ids_never_become_paths() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    env.write("inside", "context file\n");
    let marker = env.tc.path().join("ran");
    let rejected = [
        ("type=bind,target=/x,bind-propagation=rshared", "bind-propagation"),
        ("type=bind,target=/x,relabel=shared", "relabel"),
        ("type=cache,target=/x,nosuchkey=1", "nosuchkey"),
        ("type=cache,target=/x,uid=-1", "uid"),
        ("type=tmpfs,target=/proc", "/proc"),
        ("type=bind,target=/proc/sys", "/proc"),
    ];
    let before = blob_count(&env.tc);
    for (mount, message) in rejected {
        env.dockerfile(&format!("FROM bb\nRUN true\nRUN --mount={mount} touch {}\n", marker.display()));
        let out = env.build(&["-t", "never"]);
        assert_fails_at(&out, 3, &[message]);
        assert!(!marker.exists(), "{mount}: the step ran");
    }
    assert_eq!(blob_count(&env.tc), before, "a rejected mount wrote a blob");

    // source=../.. names the context's root: the step sees the context, nothing above it.
    env.dockerfile("FROM bb\nRUN --mount=type=bind,source=../..,target=/m ls -a /m > /seen\n");
    env.build_ok(&["-t", "up"]);
    let seen = env.run_stdout("up", &["cat", "/seen"]);
    assert!(seen.lines().any(|l| l == "inside"), "{seen}");
    assert!(!seen.lines().any(|l| l == "canary" || l == "ctx" || l == "root"), "a parent was bound: {seen}");

    // A cache id that looks like a path is only a name.
    let escape = "../../../../etc";
    env.dockerfile(&format!("FROM bb\nRUN --mount=type=cache,id={escape},target=/c echo planted > /c/planted-by-a7\n"));
    env.build_ok(&["-t", "cache"]);
    let mounts = env.tc.root().join("cache/mounts");
    let found: Vec<_> = walk(&env.tc.root()).into_iter().filter(|p| p.ends_with("planted-by-a7")).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let rel = found[0].strip_prefix(&mounts).expect("the cache lives under cache/mounts");
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    assert!(first.len() >= 64 && first.bytes().all(|b| b.is_ascii_hexdigit()), "not a hashed name: {rel:?}");
    assert!(!std::path::Path::new("/etc/planted-by-a7").exists());
    assert!(!env.tc.path().join("etc").exists() && !env.tc.root().join("etc").exists());
    assert_store_and_canary(&env.tc, &canary);
}

/// Every path under `dir` (no link followed).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A8 (CVE-2024-1753 class): `RUN --mount=type=bind,from=<stage>,source=/rootdir,...,rw` and
/// `source=/` variants (from a stage and from an image) write into the mount; the writes are
/// visible to that step only: nothing appears on the host, in the stage or image the mount came
/// from, in any snapshot of the store, or in a later step's view of the same source.
#[test]
fn a8_rw_binds_from_stages_and_images_never_write_through() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    env.dockerfile(
        "FROM bb AS base\n\
         RUN mkdir /rootdir && echo base > /rootdir/keep\n\
         FROM bb\n\
         RUN --mount=type=bind,from=base,source=/rootdir,target=/x,rw touch /x/BREAKOUT_A8 && ls /x > /seen1\n\
         RUN --mount=type=bind,from=base,source=/,target=/x,rw touch /x/BREAKOUT_A8 /x/rootdir/BREAKOUT_A8 && ls /x/rootdir > /seen2\n\
         RUN --mount=type=bind,from=bb,source=/,target=/x,rw touch /x/BREAKOUT_A8 /x/bin/BREAKOUT_A8\n\
         RUN --mount=type=bind,from=base,source=/rootdir,target=/x ls /x > /seen3 && ! ls / /bin | grep BREAKOUT\n",
    );
    env.build_ok(&["-t", "img"]);
    let seen = env.run_stdout("img", &["cat", "/seen1", "/seen2", "/seen3"]);
    assert_eq!(seen, "BREAKOUT_A8\nkeep\nBREAKOUT_A8\nkeep\nkeep\n", "the writes were visible in their step only");
    env.build_ok(&["--target", "base", "-t", "base"]);
    assert_eq!(env.run_stdout("base", &["ls", "/rootdir"]), "keep\n", "the stage was written through");
    assert_eq!(env.run_stdout("bb", &["sh", "-c", "ls / /bin | grep -c BREAKOUT || true"]), "0\n");
    let leaked: Vec<_> =
        walk(env.tc.path()).into_iter().filter(|p| p.file_name().is_some_and(|n| n == "BREAKOUT_A8")).collect();
    assert!(leaked.is_empty(), "rw writes kept in the store: {leaked:?}");
    for host in ["/BREAKOUT_A8", "/x", "/rootdir", "/bin/BREAKOUT_A8"] {
        assert!(!std::path::Path::new(host).exists(), "{host} appeared on the host");
    }
    assert_store_and_canary(&env.tc, &canary);
}

/// A9 (CVE-2023-25173, BuildKit testUserAdditionalGids): `USER 1234`, `USER 1234:1234`, `USER
/// daemon`, `USER app` resolve against the stage's own `/etc/passwd` and `/etc/group` (written
/// by an earlier step, so the host's files cannot be what answers): a bare uid gets gid 0, a name
/// its passwd gid, and the primary gid is among the supplementary groups with every group that
/// lists the user. An unknown name in `COPY --chown` fails naming its line; one in `USER` fails
/// the first RUN that runs as it, naming that RUN's line (BuildKit's rule, not the catalogue's
/// "at that line": `USER` itself only writes the config).
#[test]
fn a9_users_and_groups_come_from_the_stage_and_unknown_names_fail_at_their_line() {
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    env.write("f", "file\n");
    env.dockerfile(
        "FROM bb\n\
         RUN echo 'app:x:1500:1600::/home/app:/bin/sh' >> /etc/passwd && \
             echo 'daemon:x:2:3::/:/bin/false' >> /etc/passwd && \
             echo 'appgrp:x:1600:' >> /etc/group && echo 'extra:x:1700:user,app' >> /etc/group && \
             echo 'daemon:x:3:' >> /etc/group\n\
         USER 1234\n\
         RUN echo $(id -u):$(id -g) > /tmp/1\n\
         USER 1234:1234\n\
         RUN echo $(id -u):$(id -g) > /tmp/2\n\
         USER daemon\n\
         RUN echo $(id -u):$(id -g) > /tmp/3\n\
         USER app\n\
         RUN echo $(id -u):$(id -g):$(id -G) > /tmp/4\n\
         USER root\n\
         COPY --chown=app:extra f /owned\n\
         RUN cat /tmp/1 /tmp/2 /tmp/3 /tmp/4 > /ids && stat -c %u:%g /owned >> /ids\n",
    );
    env.build_ok(&["-t", "users"]);
    assert_eq!(env.run_stdout("users", &["cat", "/ids"]), "1234:0\n1234:1234\n2:3\n1500:1600:1600 1700\n1500:1700\n");

    // `USER` only records the user (BuildKit): the RUN that needs it fails, naming its own line.
    // An image whose last instruction is `USER nosuch` stays valid, as with Docker.
    env.dockerfile("FROM bb\nRUN true\nUSER nosuch\nRUN touch /never\n");
    let out = env.build(&["-t", "never"]);
    assert_fails_at(&out, 4, &["unable to find user nosuch"]);
    let before = blob_count(&env.tc);
    env.dockerfile("FROM bb\nRUN true\nCOPY --chown=nosuch f /f\n");
    assert_fails_at(&env.build(&["-t", "never"]), 3, &["nosuch"]);
    env.dockerfile("FROM bb\nRUN true\nCOPY --chown=user:nosuchgroup f /f\n");
    assert_fails_at(&env.build(&["-t", "never"]), 3, &["nosuchgroup"]);
    assert_eq!(blob_count(&env.tc), before, "a refused COPY wrote a blob");
    assert_store_and_canary(&env.tc, &canary);
}

/// Part C's base images: `bb` with one more layer, `tar` (uncompressed, byte for byte as given),
/// pushed by skopeo (an independent client, which copies blobs as they are) to `registry` as
/// `hostile/NAME:1`. Returns the reference a Dockerfile's `FROM` names.
fn serve_hostile(env: &BuildEnv, registry: &crate::support::registry::Registry, name: &str, tar: &[u8]) -> String {
    use serde_json::{Value, json};
    let dir = env.tc.path().join(format!("layout-{name}"));
    env.tc.ok(&["save", "bb", "--format", "oci-dir", "-o", dir.to_str().unwrap()]);
    let blobs = dir.join("blobs/sha256");
    let read =
        |digest: &str| -> Value { serde_json::from_slice(&std::fs::read(blobs.join(&digest[7..])).unwrap()).unwrap() };
    let write = |bytes: &[u8]| -> String {
        let digest = slipway::oci::Digest::of(bytes).to_string();
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    let layer = write(tar);
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(json!(layer));
    if let Some(history) = config["history"].as_array_mut() {
        history.push(json!({ "created_by": format!("hostile layer {name}") }));
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(write(&config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    manifest["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer,
        "size": tar.len(),
    }));
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = json!(write(&manifest_bytes));
    index["manifests"][0]["size"] = json!(manifest_bytes.len());
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let reference = format!("{}/hostile/{name}:1", registry.host());
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .arg(format!("oci:{}", dir.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("spawn skopeo");
    assert!(out.status.success(), "skopeo copy: {}", describe(&out));
    reference
}

/// Builds `FROM <hostile image>` + `run` (a RUN line checking the rootfs, as line 2). Returns the
/// build's output; the caller asserts success or a failure naming line 1.
fn build_on_hostile(env: &BuildEnv, reference: &str, run: &str) -> Output {
    env.dockerfile(&format!("FROM {reference}\nRUN {run}\n"));
    // A tag from an earlier case would hide that this one tagged nothing.
    let _ = env.tc.run(&["rmi", "hostile-built"]);
    env.build(&["-t", "hostile-built"])
}

/// A rejected hostile layer: pulling verifies digests only, the layer is read when the first step
/// needs the rootfs, so the build fails naming that step's line (2) and `what`; nothing is tagged.
#[track_caller]
fn assert_layer_refused(env: &BuildEnv, out: &Output, what: &str) {
    assert_fails_at(out, 2, &[what]);
    assert!(!env.tc.run(&["inspect", "hostile-built"]).status.success());
}

/// C4 (CVE-2026-33056, CVE-2021-32760) through a pulled base image: a symlink `foo -> <canary
/// dir>` then a directory entry `foo/` (and `bar -> <canary dir>`, `bar/.`) with mode 0777, and a
/// symlink + hardlink + chmod: the canary's mode and owner never change; `foo` ends as a
/// directory inside the rootfs.
#[test]
fn c4_a_directory_over_a_symlink_in_a_pulled_layer_never_chmods_the_target() {
    use crate::support::rawtar::{Hdr, RawTar};
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let registry = crate::support::registry::Registry::start();
    let target = canary.dir.to_str().unwrap().to_string();
    let mut dir = Hdr::new(b"foo/", b'5');
    dir.mode = 0o777;
    let mut dot = Hdr::new(b"bar/.", b'5');
    dot.mode = 0o777;
    let mut chmod = Hdr::new(b"link", b'0');
    chmod.mode = 0o4777;
    let mut tar = RawTar::new();
    tar.symlink("foo", &target).raw(&dir, &[]).symlink("bar", &target).raw(&dot, &[]);
    tar.symlink("sym", &format!("{target}/secret")).hardlink("link", "sym").raw(&chmod, &[]);
    let reference = serve_hostile(&env, &registry, "c4", &tar.end());
    let out = build_on_hostile(&env, &reference, "test -d /foo && ! test -L /foo && ls -ld /foo > /seen");
    if out.status.success() {
        let seen = env.run_stdout("hostile-built", &["cat", "/seen"]);
        assert!(seen.starts_with("drwxrwxrwx"), "{seen}");
    } else {
        assert_layer_refused(&env, &out, "bar");
    }
    assert_store_and_canary(&env.tc, &canary);
}

/// C6 (RUSTSEC-2018-0002) through a pulled base image: a symlink `x -> <canary file>`, then a
/// regular file `x` with data. Decided once (`layer` module docs): the later entry replaces the
/// link (unlink, then create inside the rootfs); the canary is intact.
#[test]
fn c6_a_duplicate_path_in_a_pulled_layer_replaces_instead_of_writing_through() {
    use crate::support::rawtar::RawTar;
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let registry = crate::support::registry::Registry::start();
    let target = canary.dir.join("secret");
    let tar = RawTar::new().symlink("x", target.to_str().unwrap()).file("x", b"overwritten?").end();
    let reference = serve_hostile(&env, &registry, "c6", &tar);
    let out = build_on_hostile(&env, &reference, "! test -L /x && cat /x > /seen");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(env.run_stdout("hostile-built", &["cat", "/seen"]), "overwritten?");
    assert_store_and_canary(&env.tc, &canary);
}

/// GNU tar's entry names for `bytes`, or None when it refuses the archive.
fn gnu_names(bytes: &[u8]) -> Option<Vec<String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("tar")
        .args(["-t", "--quoting-style=literal", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU tar");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// C7 (CVE-2025-62518, CVE-2026-33055) through a pulled base image, the cases of
/// `layer_adversarial::c7_pax_desync_is_parsed_like_gnu_tar_or_rejected`: where the format
/// defines the reading (a PAX `size` overriding the ustar one, also before a GNU `L` name) the
/// rootfs holds exactly the entries GNU tar lists; where parsers could disagree (ustar 512 vs PAX
/// 0, two `x` in a row, a `g` with `path=`) the layer is refused and the build fails at the line
/// that needs it (the RUN's).
#[test]
fn c7_desynchronised_headers_in_a_pulled_layer_are_read_like_gnu_tar_or_refused() {
    use crate::support::rawtar::{Hdr, RawTar};
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let registry = crate::support::registry::Registry::start();
    let candidates = ["long_a", "file_a", "file_b", "zero_ustar", "smuggler", "hidden", "first", "second", "plain"];
    let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"2048")]).gnu_long(b'L', b"long_a").raw(&Hdr::new(b"file_a", b'0'), &[]);
    t.file("file_b", b"bbbb").data(&[b'z'; 1024]);
    cases.push(("x-size-then-l", t.end(), true));
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"1024")]).raw(&Hdr::new(b"zero_ustar", b'0'), &[b'q'; 1024]);
    cases.push(("ustar-0-pax-1024", t.end(), true));
    let mut h = Hdr::new(b"smuggler", b'0');
    h.size = 512;
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"0")]).raw(&h, &Hdr::new(b"hidden", b'0').encode());
    cases.push(("ustar-512-pax-0", t.end(), false));
    let mut t = RawTar::new();
    t.pax(b'x', &[("path", b"first")]).pax(b'x', &[("path", b"second")]).file("plain", b"p");
    cases.push(("two-x", t.end(), false));
    let mut t = RawTar::new();
    t.pax(b'g', &[("path", b"global")]).file("after_global", b"g");
    cases.push(("g-with-path", t.end(), false));
    for (name, tar, accepted) in cases {
        let reference = serve_hostile(&env, &registry, name, &tar);
        let out = build_on_hostile(&env, &reference, "ls -a / > /seen");
        if !accepted {
            assert_layer_refused(&env, &out, "malformed tar archive");
            continue;
        }
        assert!(out.status.success(), "{name}: {}", describe(&out));
        let seen = env.run_stdout("hostile-built", &["cat", "/seen"]);
        let ours: Vec<&str> = seen.lines().filter(|l| candidates.contains(l)).collect();
        let gnu = gnu_names(&tar).unwrap_or_else(|| panic!("{name}: GNU tar refuses it"));
        let gnu: Vec<&str> = candidates.iter().copied().filter(|c| gnu.iter().any(|g| g == c)).collect();
        let mut ours_sorted = ours.clone();
        ours_sorted.sort_unstable();
        let mut gnu_sorted = gnu.clone();
        gnu_sorted.sort_unstable();
        assert_eq!(ours_sorted, gnu_sorted, "{name}: the rootfs differs from GNU tar's reading");
    }
    assert_store_and_canary(&env.tc, &canary);
}

/// C13 (CVE-2021-41190) through a proxy in front of the local registry that answers the manifest
/// request itself: a document with both `manifests` and `layers`/`config`, a body whose
/// `mediaType` differs from the `Content-Type` it is served with, and a schema 1 manifest are
/// each refused explicitly, by `pull` and by a build's `FROM` (naming line 1); the store gains no
/// blob and no tag.
#[test]
fn c13_ambiguous_mismatched_and_schema1_manifests_are_refused() {
    use crate::support::proxy::{Proxy, Rule, respond};
    use crate::support::registry::{Registry, remote_manifest};
    let registry = Registry::start();
    let env = BuildEnv::new();
    env.tc.ok(&["push", "bb", &format!("{}/c13/bb:1", registry.host())]);
    let manifest = remote_manifest(&format!("{}/c13/bb:1", registry.host()));
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let mut ambiguous = manifest.clone();
    ambiguous["manifests"] = serde_json::json!([]);
    let schema1 = serde_json::json!({"schemaVersion": 1, "name": "c13/bb", "tag": "1", "architecture": "amd64", "fsLayers": [], "history": []});
    let cases = [
        ("ambiguous", ambiguous, oci_manifest, "is ambiguous"),
        ("mismatch", manifest.clone(), "application/vnd.oci.image.index.v1+json", "but was served as"),
        ("schema1", schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    ];
    for (name, body, content_type, message) in cases {
        let proxy = Proxy::start(registry.port);
        let body = serde_json::to_vec(&body).unwrap();
        proxy.rule(
            Rule::new("GET", "/v2/c13/bb/manifests/", respond(200, &[("Content-Type", content_type)], &body))
                .times(100),
        );
        let tc = TestContext::new();
        let canary = Canary::plant_in(tc.path());
        let reference = format!("{}/c13/bb:1", proxy.host());
        let out = tc.run(&["pull", &reference]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: pulled: {}", describe(&out));
        assert_ne!(out.status.code(), Some(101), "{name}: {err}");
        assert!(err.contains(message) && err.contains(&proxy.host()), "{name}: {err}");
        assert_eq!(blob_count(&tc), 0, "{name}: a blob was kept");
        assert!(!tc.run(&["inspect", &reference]).status.success());
        assert_store_and_canary(&tc, &canary);

        let build = BuildEnv::new();
        build.dockerfile(&format!("FROM {reference}\nRUN true\n"));
        assert_fails_at(&build.build(&["-t", "never"]), 1, &[message]);
        build.tc.ok(&["fsck", "--strict"]);
    }
}

/// C11 (CVE-2021-41103, CVE-2024-25621), rootful, through a pulled base image: a block device
/// `hostdev/sda` (b 8 0), a character device `hostdev/mem` (c 1 1), a FIFO, a setuid-root
/// `bin/su` and a file with a `security.capability` xattr land only inside the rootfs, as what
/// they are; the setuid bit and the capability survive into a layer the build writes (COPY); the
/// store root is 0700, so no other host user reaches the extracted `bin/su`; a RUN cannot read
/// the host's disk (or memory) through a planted node of its numbers. (Rootless: devices
/// skipped, `layer::unprivileged_apply_skips_devices_and_keeps_going`.)
#[test]
fn c11_devices_setuid_and_capabilities_stay_inside_the_rootfs() {
    use crate::support::rawtar::{Hdr, RawTar};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let registry = Registry::start();
    let device = |name: &[u8], kind: u8, major: u32, minor: u32| {
        let mut h = Hdr::new(name, kind);
        (h.devmajor, h.devminor, h.mode) = (major, minor, 0o660);
        h
    };
    // vfs_cap_data v2, effective, permitted = CAP_NET_RAW.
    let cap: &[u8] = &[0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut tar = RawTar::new();
    let (disk_major, disk_minor) = host_disk();
    tar.dir("hostdev/").raw(&device(b"hostdev/sda", b'4', 8, 0), &[]).raw(&device(b"hostdev/mem", b'3', 1, 1), &[]);
    tar.raw(&device(b"hostdev/disk", b'4', disk_major, disk_minor), &[]);
    tar.raw(&Hdr::new(b"hostdev/fifo", b'6'), &[]).dir("bin/").file_mode("bin/su", 0o4755, b"#!/bin/sh\nid\n");
    tar.pax(b'x', &[("SCHILY.xattr.security.capability", cap)]).file_mode("bin/ping", 0o755, b"ping");
    let reference = serve_hostile(&env, &registry, "c11", &tar.end());
    env.dockerfile(&format!(
        "FROM {reference} AS hostile\n\
         RUN ! head -c 1 /hostdev/disk > /dev/null && ! head -c 1 /hostdev/mem > /dev/null && \
             stat -c '%n %F %t:%T' /hostdev/sda /hostdev/mem /hostdev/fifo > /seen && stat -c '%n %a %u' /bin/su >> /seen\n\
         FROM bb\n\
         COPY --from=hostile /bin/su /bin/ping /seen /copied/\n"
    ));
    env.build_ok(&["-t", "c11"]);
    let seen = env.run_stdout("c11", &["cat", "/copied/seen"]);
    assert_eq!(
        seen,
        "/hostdev/sda block special file 8:0\n/hostdev/mem character special file 1:1\n\
         /hostdev/fifo fifo 0:0\n/bin/su 4755 0\n"
    );
    let rootfs = env.umoci_unpack("c11", env.tc.path());
    let su = std::fs::metadata(rootfs.join("copied/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "the setuid bit was lost in our layer");
    let caps = xattr(&rootfs.join("copied/ping"), "security.capability");
    assert_eq!(caps.as_deref(), Some(cap), "the capability was lost in our layer");
    // The devices exist only in the store's snapshots, as devices.
    let devices: Vec<_> = walk(env.tc.path()).into_iter().filter(|p| p.ends_with("hostdev/sda")).collect();
    assert!(!devices.is_empty());
    for p in &devices {
        assert!(p.starts_with(env.tc.root()), "{} is outside the store", p.display());
        assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_block_device());
    }
    assert_eq!(std::fs::metadata(env.tc.root()).unwrap().mode() & 0o777, 0o700, "the store root is not 0700");
    assert_store_and_canary(&env.tc, &canary);
}

/// Major and minor numbers of the host's first disk (`/proc/partitions`), or 8:0.
fn host_disk() -> (u32, u32) {
    let partitions = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    partitions
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| Some((f[0].parse().ok()?, f[1].parse().ok()?))).flatten()
        })
        .next()
        .unwrap_or((8, 0))
}

/// The value of xattr `name` of `path` (no link followed), if set.
fn xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// C15 (containerd pkg/archive/tar.go), rootful, through a pulled base image: overlayfs' own
/// xattrs (`trusted.overlay.opaque`, `trusted.overlay.redirect`) and the host's SELinux label
/// (`security.selinux`) in layer data are never applied, a `user.*` xattr is; mtimes −1, 2^34 and
/// a fractional PAX time are read without a failure; uid/gid 2^32−2 and a `uname` that names
/// another user than the uid are honoured numerically; `--source-date-epoch` clamps the mtimes
/// of the layers the build writes.
#[test]
fn c15_metadata_edges_numeric_ids_filtered_xattrs_and_clamped_times() {
    use crate::support::rawtar::{Hdr, RawTar};
    use std::os::unix::fs::MetadataExt;
    let env = BuildEnv::new();
    let canary = Canary::plant_in(env.tc.path());
    let registry = Registry::start();
    let mut tar = RawTar::new();
    tar.dir("c15/");
    tar.pax(
        b'x',
        &[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.security.selinux", b"system_u:object_r:shadow_t:s0"),
            ("SCHILY.xattr.user.keep", b"kept"),
        ],
    );
    tar.file("c15/xattrs", b"x");
    tar.pax(b'x', &[("mtime", b"-1")]).file("c15/negative", b"n");
    tar.pax(b'x', &[("mtime", b"17179869184")]).file("c15/future", b"f");
    tar.pax(b'x', &[("mtime", b"1700000000.123456789")]).file("c15/fraction", b"f");
    tar.pax(b'x', &[("uid", b"4294967294"), ("gid", b"4294967294")]).file("c15/bigids", b"i");
    let mut named = Hdr::new(b"c15/uname", b'0');
    (named.uid, named.gid, named.size) = (1234, 1234, 1);
    tar.pax(b'x', &[("uname", b"root"), ("gname", b"root")]).raw(&named, b"u");
    let reference = serve_hostile(&env, &registry, "c15", &tar.end());
    env.dockerfile(&format!(
        "FROM {reference} AS hostile\n\
         RUN stat -c '%n %u:%g %Y' /c15/bigids /c15/uname /c15/future /c15/fraction > /seen\n\
         FROM bb\n\
         COPY --from=hostile /c15/ /seen /c15/\n"
    ));
    env.build_ok(&["-t", "c15", "--source-date-epoch", "1000000000"]);
    let seen = env.run_stdout("c15", &["cat", "/c15/seen"]);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..2],
        ["/c15/bigids 4294967294:4294967294 1600000000", "/c15/uname 1234:1234 1600000000"],
        "{seen}"
    );
    // 2^34 s, or the filesystem's latest time (ext4: 0x37fffffff, in 2446).
    let future: i64 = lines[2].strip_prefix("/c15/future 0:0 ").and_then(|t| t.parse().ok()).expect(&seen);
    assert!((15_032_385_535..=17_179_869_184).contains(&future), "{seen}");
    assert_eq!(lines[3], "/c15/fraction 0:0 1700000000", "{seen}");
    // The extracted base layer in the store: only the user xattr was applied.
    let extracted: Vec<_> = walk(&env.tc.root()).into_iter().filter(|p| p.ends_with("c15/xattrs")).collect();
    assert!(!extracted.is_empty());
    for p in &extracted {
        for name in ["trusted.overlay.opaque", "trusted.overlay.redirect", "security.selinux"] {
            assert_eq!(xattr(p, name), None, "{name} applied on {}", p.display());
        }
        assert_eq!(xattr(p, "user.keep").as_deref(), Some(&b"kept"[..]), "{}", p.display());
    }
    // Our layers: times clamped to the epoch, ids as they were.
    let rootfs = env.umoci_unpack("c15", env.tc.path());
    for name in ["xattrs", "negative", "future", "fraction", "bigids", "uname", "seen"] {
        let md = std::fs::symlink_metadata(rootfs.join("c15").join(name)).unwrap();
        assert!(md.mtime() <= 1_000_000_000, "{name}: mtime {} not clamped", md.mtime());
    }
    let md = std::fs::metadata(rootfs.join("c15/bigids")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4_294_967_294, 4_294_967_294));
    let md = std::fs::metadata(rootfs.join("c15/uname")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 1234));
    assert_store_and_canary(&env.tc, &canary);
}
