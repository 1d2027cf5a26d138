//! `build`: RUN --mount (bind from the context, a stage or an image; tmpfs; secrets in files and
//! variables), each result checked by running or unpacking the built image; secrets searched
//! for in every blob (decompressed), the cache databases, the step logs, rawjson and stderr.

use crate::build_stages::assert_clean;
use crate::support::build::{BuildEnv, events, steps};
use crate::support::describe;

const SECRET: &str = "s3cr3t-0f-the-test";

#[test]
fn bind_from_the_context_is_read_only_ignores_what_dockerignore_hides_and_leaves_no_trace() {
    let env = BuildEnv::served();
    env.write("src/a.txt", "alpha\n");
    env.write("src/hidden.txt", "hidden\n");
    env.write(".dockerignore", "src/hidden.txt\n");
    env.dockerfile(
        "FROM bb\n\
         WORKDIR /app\n\
         RUN --mount=target=src,source=src cat src/a.txt > /out; \
             (test -e src/hidden.txt && echo visible || echo ignored) >> /out; \
             (touch src/new 2>/dev/null && echo rw || echo ro) >> /out\n",
    );
    let first = steps(&env.build_events(&["-t", "img:1"]));
    assert_eq!(env.run_stdout("img:1", &["cat", "/out"]), "alpha\nignored\nro\n");
    assert_eq!(env.run_stdout("img:1", &["ls", "-A", "/app"]), "", "the mount point is not in the image");
    assert_eq!(first.last().unwrap().cache.as_deref(), Some("miss"));
    let again = steps(&env.build_events(&["-t", "img:1"]));
    assert_eq!(again.last().unwrap().cache.as_deref(), Some("hit"));
    env.write("src/hidden.txt", "changed but ignored\n");
    let ignored = steps(&env.build_events(&["-t", "img:1"]));
    assert_eq!(ignored.last().unwrap().cache.as_deref(), Some("hit"), "an ignored file is not in the key");
    env.write("src/a.txt", "beta\n");
    let changed = steps(&env.build_events(&["-t", "img:1"]));
    let last = changed.last().unwrap();
    assert_eq!(last.cache.as_deref(), Some("miss"));
    let reason = last.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("bound file src/a.txt changed (sha256:"), "{reason}");
    assert_eq!(env.run_stdout("img:1", &["head", "-n1", "/out"]), "beta\n");
    assert_clean(&env);
}

#[test]
fn a_rw_bind_discards_its_writes() {
    let env = BuildEnv::served();
    env.write("data/f", "context\n");
    env.dockerfile(
        "FROM bb\nRUN --mount=type=bind,source=data,target=/data,rw echo more >> /data/f && cat /data/f > /seen\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "context\nmore\n");
    assert_eq!(std::fs::read_to_string(env.ctx().join("data/f")).unwrap(), "context\n", "the context is untouched");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(!rootfs.join("data").exists(), "nothing of the mount is in the layer");
    assert_clean(&env);
}

#[test]
fn bind_from_a_stage_and_from_an_image_copies_nothing_into_the_layer() {
    let env = BuildEnv::served();
    let dockerfile = |made: &str| {
        format!(
            "FROM bb AS build\n\
             RUN mkdir /out && echo {made} > /out/app\n\
             FROM bb\n\
             RUN --mount=type=bind,from=build,source=/out,target=/mnt/build \
                 --mount=from=bb,source=/bin/busybox,target=/mnt/bb \
                 cp /mnt/build/app /app && test -x /mnt/bb && echo ok > /bb-ok\n"
        )
    };
    env.dockerfile(&dockerfile("built"));
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/app", "/bb-ok"]), "built\nok\n");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(!rootfs.join("mnt").exists(), "mount points are not in the image");
    // The stage's result is part of the key: a change there is a miss.
    env.dockerfile(&dockerfile("rebuilt"));
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/app"]), "rebuilt\n");
    assert_clean(&env);
}

#[test]
fn tmpfs_is_empty_sized_and_never_in_the_layer() {
    let env = BuildEnv::served();
    env.dockerfile(
        "FROM bb\n\
         RUN --mount=type=tmpfs,target=/scratch,size=2m \
             echo x > /scratch/f && grep ' /scratch ' /proc/mounts | grep -o 'size=[0-9]*k' > /size\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/size"]), "size=2048k\n");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(!rootfs.join("scratch").exists());
    assert_clean(&env);
}

/// Every byte the store holds (blobs decompressed), its databases and logs, and what the build
/// printed: none holds `needle`.
pub(crate) fn assert_nowhere(env: &BuildEnv, outputs: &[&std::process::Output], needle: &[u8]) {
    let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for out in outputs {
        assert!(!has(&out.stdout) && !has(&out.stderr), "the build printed the secret: {}", describe(out));
    }
    for entry in walkdir::WalkDir::new(env.tc.root()).into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let mut plain = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let _ = std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut plain);
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            plain = zstd::decode_all(&bytes[..]).unwrap_or_default();
        }
        assert!(!has(&bytes) && !has(&plain), "the secret is in {}", entry.path().display());
    }
}

#[test]
fn secrets_as_files_and_variables_reach_the_step_and_nothing_else() {
    let env = BuildEnv::served();
    let file = env.tc.path().join("token");
    std::fs::write(&file, SECRET).unwrap();
    // The Dockerfile compares digests: the secret itself appears nowhere but in the secret file.
    let sum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(SECRET.as_bytes()))
    };
    let check = |path: &str| format!("test \"$(sha256sum {path} | cut -c1-64)\" = {sum}");
    let (default, custom) = (check("/run/secrets/tok"), check("/etc/app/tok"));
    let env_check = format!("test \"$(printf %s \"$TOKEN\" | sha256sum | cut -c1-64)\" = {sum}");
    env.dockerfile(&format!(
        "FROM bb\n\
         RUN --mount=type=secret,id=tok {default} && stat -c '%a %u %g' /run/secrets/tok > /default\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/tok,mode=0440,uid=1000,gid=1000 \
             {custom} && stat -c '%a %u %g' /etc/app/tok > /custom\n\
         RUN --mount=type=secret,id=tok,env=TOKEN {env_check} && \
             (test -e /run/secrets/tok && echo file || echo env-only) > /env\n\
         RUN --mount=type=secret,id=absent (test -e /run/secrets/absent && echo mounted || echo left-out) > /optional\n"
    ));
    let path = file.display().to_string();
    let secret_arg = format!("id=tok,src={path}");
    let out = env.build(&["--progress", "rawjson", "-t", "img:1", "--secret", &secret_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        env.run_stdout("img:1", &["cat", "/default", "/custom", "/env", "/optional"]),
        "400 0 0\n440 1000 1000\nenv-only\nleft-out\n"
    );
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    for gone in ["run/secrets", "etc/app"] {
        assert!(!rootfs.join(gone).exists(), "{gone} is in the image");
    }
    // The value is not part of the key: another value is a hit (BuildKit's rule).
    std::fs::write(&file, "another value").unwrap();
    let again = env.build(&["--progress", "rawjson", "-t", "img:1", "--secret", &secret_arg]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(steps(&events(&again)).iter().all(|s| s.cache.as_deref() == Some("hit")));
    // Through a variable, and with --no-cache so every step runs again.
    let mut cmd = env.build_cmd(&[
        "--progress",
        "rawjson",
        "--no-cache",
        "-t",
        "img:2",
        "--secret",
        "id=tok,env=SLIPWAY_TEST_TOKEN",
    ]);
    let third = cmd.env("SLIPWAY_TEST_TOKEN", SECRET).output().unwrap();
    assert!(third.status.success(), "{}", describe(&third));
    assert_nowhere(&env, &[&out, &again, &third], SECRET.as_bytes());
    assert_clean(&env);
}

#[test]
fn a_required_secret_that_is_missing_stops_the_build_before_any_step() {
    let env = BuildEnv::served();
    env.dockerfile(
        "FROM bb\nRUN echo first > /first\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n",
    );
    let out = env.build(&["--progress", "rawjson", "-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3:1: error: secret npmrc is required but was not given"), "{stderr}");
    assert!(steps(&events(&out)).is_empty(), "no step ran: {stderr}");
    assert_clean(&env);
}

#[test]
fn mount_values_expand_and_bad_targets_fail_at_their_line() {
    let env = BuildEnv::served();
    env.write("dir/f", "from the context\n");
    env.dockerfile("FROM bb\nARG SRC=dir\nRUN --mount=source=$SRC,target=/m cat /m/f > /seen\n");
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "from the context\n");
    env.dockerfile("FROM bb\nRUN --mount=type=tmpfs,target=/ true\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:2:1: error: invalid mount target \"/\""), "{stderr}");
    assert_clean(&env);
}

#[test]
fn every_mount_type_works_under_an_oci_runtime() {
    for runtime in ["runc", "crun"] {
        let env = BuildEnv::served();
        env.write("src/a", "ctx\n");
        let file = env.tc.path().join("token");
        std::fs::write(&file, SECRET).unwrap();
        env.dockerfile(
            "FROM bb\n\
             RUN --mount=source=src,target=/src --mount=type=tmpfs,target=/t \
                 --mount=type=secret,id=tok,target=/s,uid=1000 --mount=type=secret,id=tok,env=TOK \
                 --mount=type=cache,target=/c --mount=type=ssh,uid=1000 \
                 cat /src/a > /out && echo x > /t/x && stat -c %u /s >> /out && test -n \"$TOK\" && echo env >> /out && \
                 echo cached >> /c/runs && cat /c/runs >> /out && stat -c '%F %u' \"$SSH_AUTH_SOCK\" >> /out\n",
        );
        let agent = crate::support::sshd::SshAgent::start();
        let secret = format!("id=tok,src={}", file.display());
        let args =
            ["--progress", "rawjson", "-t", "img:1", "--network", "none", "--secret", &secret, "--ssh", "default"];
        let mut cmd = env.build_cmd(&args);
        let out = cmd.env("SLIPWAY_RUNTIME", runtime).env("SSH_AUTH_SOCK", agent.socket()).output().unwrap();
        assert!(out.status.success(), "{runtime}: {}", describe(&out));
        assert_eq!(env.run_stdout("img:1", &["cat", "/out"]), "ctx\n1000\nenv\ncached\nsocket 1000\n", "{runtime}");
        let rootfs = env.umoci_unpack("img:1", env.tc.path());
        for gone in ["src", "t", "s", "c", "run/buildkit"] {
            assert!(!rootfs.join(gone).exists(), "{runtime}: {gone} is in the image");
        }
        assert_nowhere(&env, &[&out], SECRET.as_bytes());
        assert_clean(&env);
    }
}

#[test]
fn a_cache_mount_keeps_its_contents_across_builds_and_no_cache_and_prune_all_empties_it() {
    let env = BuildEnv::served();
    let df = |n: u32| {
        format!(
            "FROM bb\nRUN --mount=type=cache,target=/root/.cache echo {n} >> /root/.cache/runs && cat /root/.cache/runs > /seen\n"
        )
    };
    env.dockerfile(&df(1));
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "1\n");
    env.dockerfile(&df(2));
    env.build_ok(&["-t", "img:1", "--no-cache"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "1\n2\n", "the cache survives --no-cache");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert_eq!(std::fs::read_dir(rootfs.join("root")).unwrap().count(), 0, "the cache is not in the layer");
    let info = String::from_utf8_lossy(&env.tc.ok(&["info"]).stdout).into_owned();
    assert!(info.contains("/root/.cache"), "info lists the cache mount by id: {info}");
    env.tc.ok(&["prune", "--all"]);
    env.dockerfile(&df(3));
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/seen"]), "3\n", "prune --all emptied it");
    assert_clean(&env);
}

#[test]
fn cache_mount_options_seed_owner_mode_subdirectory_and_read_only() {
    let env = BuildEnv::served();
    env.dockerfile(
        "FROM bb AS seed\n\
         RUN mkdir -p /s && echo seeded > /s/f\n\
         FROM bb\n\
         RUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/s cat /c/f > /from\n\
         RUN --mount=type=cache,target=/o,id=owned,mode=0700,uid=1000,gid=1000 stat -c '%a %u %g' /o > /owner\n\
         RUN --mount=type=cache,target=/w,id=sub echo in-sub > /w/f\n\
         RUN --mount=type=cache,target=/sub,id=sub2,source=deep/dir touch /sub/x && echo made > /sub2-ok\n\
         RUN --mount=type=cache,target=/r,id=sub,ro (touch /r/new 2>/dev/null && echo rw || echo ro) > /ro; cat /r/f >> /ro\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(
        env.run_stdout("img:1", &["cat", "/from", "/owner", "/sub2-ok", "/ro"]),
        "seeded\n700 1000 1000\nmade\nro\nin-sub\n"
    );
    assert_clean(&env);
}

/// Catalogue D5 (BuildKit's testCacheMountSourceEscape, CVE-2024-23651): a stage turns a cache
/// subdirectory into a link to a host directory and another mounts that subdirectory. The link
/// resolves inside the cache, never on the host: the victim's read fails and no host file is
/// read, also when the link appears between the source's resolution and its mount (the bind
/// source is opened without following links). Stages run in parallel; `SLIPWAY_TEST_D5_RUNS`
/// repeats it (default 10; the catalogue asks for 20 in `scripts/`).
#[test]
fn d5_a_cache_mount_source_never_leads_out_of_the_cache() {
    let env = BuildEnv::served();
    let host = env.tc.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("canary"), "host secret\n").unwrap();
    env.dockerfile(&format!(
        "FROM bb AS link\n\
         RUN --mount=type=cache,target=/mnt,id=d5 mkdir -p /mnt/sel && rm -rf /mnt/sel && ln -s {} /mnt/sel\n\
         FROM bb AS victim\n\
         RUN --mount=type=cache,target=/mnt,id=d5,source=sel cat /mnt/canary > /stolen\n\
         FROM bb\n\
         COPY --from=link /etc/passwd /1\n\
         COPY --from=victim /stolen /stolen\n",
        host.display()
    ));
    let runs: usize = std::env::var("SLIPWAY_TEST_D5_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    for _ in 0..runs {
        let out = env.build(&["--progress", "rawjson", "--no-cache", "-t", "img:1"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("host secret"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(host.join("canary")).unwrap(), "host secret\n");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1, "nothing was written on the host");
    assert_clean(&env);
}

/// Catalogue F2: two `slipway build` processes on one store, each running a step that holds the
/// cache mount for a while and appends `SLIPWAY_TEST_F2_LINES` (10,000) lines to one file in it:
/// with `sharing=locked` their steps never overlap, with `shared` they do, and both keep every
/// line; with `private` each sees only what it wrote itself. The store stays whole (fsck
/// --strict). Each line is one `write` (the shell's `echo`) to a file opened with O_APPEND, so
/// lines of the two builds never split one another (a pipe through `sed` writes 4 KiB blocks that
/// end mid-line, and two of those interleaved would merge two lines). Nested cache targets racing on one mount point: conformance `mount/cache-parallel-nested`.
#[test]
fn cache_sharing_across_concurrent_builds_on_one_store() {
    let hold_ms: u64 = std::env::var("SLIPWAY_TEST_HOLD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let lines: usize = std::env::var("SLIPWAY_TEST_F2_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let secs = format!("{}.{:03}", hold_ms / 1000, hold_ms % 1000);
    let run_pair = |sharing: &str| {
        let env = BuildEnv::served();
        let mut builds = Vec::new();
        for name in ["a", "b"] {
            let ctx = env.tc.path().join(format!("ctx-{name}"));
            std::fs::create_dir(&ctx).unwrap();
            std::fs::write(
                ctx.join("Dockerfile"),
                format!(
                    "FROM bb\nRUN --mount=type=cache,target=/c,id=shared-{sharing},sharing={sharing} \
                     echo holding && echo {name} > /c/{name} && for i in $(seq 1 {lines}); do echo \"{name} $i\"; done >> /c/log && \
                     sleep {secs} && ls /c | grep -v log > /seen && echo letting-go\n"
                ),
            )
            .unwrap();
            builds.push(ctx);
        }
        // The cache exists before the pair starts (a new one is exclusive until first released).
        let warm = env.tc.path().join("ctx-warm");
        std::fs::create_dir(&warm).unwrap();
        std::fs::write(
            warm.join("Dockerfile"),
            format!("FROM bb\nRUN --mount=type=cache,target=/c,id=shared-{sharing},sharing={sharing} true\n"),
        )
        .unwrap();
        env.tc.ok(&["build", "--no-cache", warm.to_str().unwrap()]);
        let children: Vec<_> = builds
            .iter()
            .enumerate()
            .map(|(i, ctx)| {
                let mut cmd = env.tc.cmd();
                cmd.args(["--progress", "rawjson", "build", "--no-cache", "-t", &format!("img:{i}")]).arg(ctx);
                cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
            })
            .collect();
        let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let mut intervals = Vec::new();
        for out in &outs {
            assert!(out.status.success(), "{}", describe(out));
            // From the step's first output line to its last: it holds the cache all along (the
            // task itself starts before it waits for the cache and ends after the lock is gone).
            let evs = events(out);
            let run = steps(&evs).into_iter().find(|s| s.name.contains("RUN")).expect("the RUN step");
            let line_ts = |line: &str| {
                evs.iter()
                    .find(|e| e["type"] == "task_log" && e["id"].as_u64() == Some(run.id) && e["line"] == line)
                    .and_then(|e| e["ts"].as_u64())
                    .unwrap_or_else(|| panic!("no line {line:?}: {}", describe(out)))
            };
            intervals.push((line_ts("holding"), line_ts("letting-go")));
        }
        let seen: Vec<String> = (0..2).map(|i| env.run_stdout(&format!("img:{i}"), &["cat", "/seen"])).collect();
        // What a later holder finds in the log: every line of both (one instance), or its own.
        let count = env.tc.path().join("ctx-count");
        std::fs::create_dir(&count).unwrap();
        std::fs::write(
            count.join("Dockerfile"),
            format!(
                "FROM bb\nRUN --mount=type=cache,target=/c,id=shared-{sharing},sharing={sharing} \
                 grep -c '^a ' /c/log > /count; grep -c '^b ' /c/log >> /count; true\n"
            ),
        )
        .unwrap();
        env.tc.ok(&["build", "--no-cache", "-t", "count:1", count.to_str().unwrap()]);
        let counted = env.run_stdout("count:1", &["cat", "/count"]);
        let out = env.tc.run(&["fsck", "--strict"]);
        assert!(out.status.success(), "{sharing}: {}", describe(&out));
        (intervals, seen, counted)
    };
    let both = format!("{lines}\n{lines}\n");
    let overlap = |v: &[(u64, u64)]| v[0].0 < v[1].1 && v[1].0 < v[0].1;
    let (locked, _, counted) = run_pair("locked");
    assert!(!overlap(&locked), "locked steps overlapped: {locked:?}");
    assert_eq!(counted, both, "locked: every line of both builds");
    let (shared, _, counted) = run_pair("shared");
    assert!(overlap(&shared), "shared steps did not overlap: {shared:?}");
    assert_eq!(counted, both, "shared: every line of both builds");
    let (private, seen, counted) = run_pair("private");
    assert!(overlap(&private), "private steps did not overlap: {private:?}");
    assert!(seen.iter().all(|s| s.lines().count() == 1), "each private holder sees only its own file: {seen:?}");
    let own = [format!("{lines}\n0\n"), format!("0\n{lines}\n")];
    assert!(own.contains(&counted), "private: one build's lines only: {counted:?}");
}

/// Catalogue I1 (the parts slipway has: build-args and secret mounts; URL credentials come with
/// remote sources): a secret-looking build-arg a RUN uses and a secret a RUN reads are in no
/// blob (layers, config, history decompressed), no cache database, no log and no output. A
/// changed value still explains the miss, by digest.
#[test]
fn i1_build_arg_and_secret_values_are_nowhere_in_the_store() {
    let env = BuildEnv::served();
    let file = env.tc.path().join("tok");
    std::fs::write(&file, SECRET).unwrap();
    env.dockerfile(
        "FROM bb\n\
         ARG TOKEN\n\
         RUN --mount=type=secret,id=tok test -n \"$TOKEN\" && cat /run/secrets/tok > /dev/null && echo done > /done\n",
    );
    let secret = format!("id=tok,src={}", file.display());
    let arg_value = "argument-value-of-the-token-1234";
    let first = env.build(&[
        "--progress",
        "rawjson",
        "-t",
        "img:1",
        "--secret",
        &secret,
        "--build-arg",
        &format!("TOKEN={arg_value}"),
    ]);
    assert!(first.status.success(), "{}", describe(&first));
    let other = "another-argument-value-5678";
    let second = env.build(&[
        "--progress",
        "rawjson",
        "-t",
        "img:1",
        "--secret",
        &secret,
        "--build-arg",
        &format!("TOKEN={other}"),
    ]);
    assert!(second.status.success(), "{}", describe(&second));
    let run = steps(&events(&second)).into_iter().last().unwrap();
    let reason = run.reason.unwrap_or_default();
    assert!(reason.starts_with("ARG TOKEN changed (sha256:"), "{reason}");
    for needle in [SECRET, arg_value, other] {
        assert_nowhere(&env, &[&first, &second], needle.as_bytes());
    }
    assert_clean(&env);
}

/// A store with a served `bb` whose context is `fixtures/mounts/NAME` (Dockerfiles written the
/// way real projects use mounts).
fn fixture(name: &str, env: BuildEnv) -> BuildEnv {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mounts").join(name);
    let out =
        std::process::Command::new("cp").arg("-a").arg(format!("{}/.", dir.display())).arg(env.ctx()).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    env
}

/// The lines a build's RUN steps printed (rawjson).
fn logged(out: &std::process::Output) -> Vec<String> {
    events(out)
        .iter()
        .filter(|e| e["type"] == "task_log")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn realistic_package_manager_cache() {
    let env = fixture("package-cache", BuildEnv::served());
    let first = env.build_ok(&["--progress", "rawjson", "-t", "app:1"]);
    assert!(logged(&first).contains(&"pm: downloading hello".to_string()), "{:?}", logged(&first));
    let second = env.build_ok(&["--progress", "rawjson", "--no-cache", "-t", "app:1"]);
    assert!(logged(&second).contains(&"pm: hello from the cache".to_string()), "{:?}", logged(&second));
    assert_eq!(env.run_stdout("app:1", &[]), "hello from a cached package\n");
    let rootfs = env.umoci_unpack("app:1", env.tc.path());
    assert!(!rootfs.join("var/cache/pm").exists() && !rootfs.join("mirror").exists());
    assert_clean(&env);
}

#[test]
fn realistic_bind_sources_and_take_the_binary_from_the_build_stage() {
    let env = fixture("bind-from-build", BuildEnv::served());
    env.build_ok(&["-t", "app:1"]);
    assert_eq!(env.run_stdout("app:1", &[]), "built with a bound context\n");
    let rootfs = env.umoci_unpack("app:1", env.tc.path());
    assert!(!rootfs.join("src").exists() && !rootfs.join("tmp/out").exists() && !rootfs.join("root/.cache").exists());
    assert_eq!(env.config("app:1")["rootfs"]["diff_ids"].as_array().unwrap().len(), 2, "base + the binary");
    assert_clean(&env);
}

#[test]
fn realistic_secret_file_and_secret_env() {
    let env = fixture("secret-file", BuildEnv::served());
    let npmrc = env.tc.path().join("npmrc");
    std::fs::write(&npmrc, format!("//registry.example/:_authToken={SECRET}\n")).unwrap();
    let out = env.build_ok(&[
        "--progress",
        "rawjson",
        "-t",
        "app:1",
        "--secret",
        &format!("id=npmrc,src={}", npmrc.display()),
    ]);
    assert_eq!(env.run_stdout("app:1", &[]), "configured\n");
    assert_nowhere(&env, &[&out], SECRET.as_bytes());

    let env = fixture("secret-env", BuildEnv::served());
    let mut cmd = env.build_cmd(&["--progress", "rawjson", "-t", "app:1", "--secret", "id=GITHUB_TOKEN"]);
    let out = cmd.env("GITHUB_TOKEN", SECRET).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(env.run_stdout("app:1", &[]), "authenticated\n");
    assert_nowhere(&env, &[&out], SECRET.as_bytes());
    assert_clean(&env);
}

#[test]
fn realistic_ssh_agent_fetch_from_a_test_host() {
    use crate::support::sshd::{SshAgent, TestSshd};
    let sshd = TestSshd::start();
    let served = sshd.serve_file("vendored.txt", b"private dependency\n");
    let agent = SshAgent::start();
    agent.add(sshd.client_key());
    let env = fixture("ssh-fetch", BuildEnv::served_with_ssh_client());
    let opts = format!("SSH_OPTS={}", sshd.client_options().join(" "));
    let source = format!("SOURCE={}", served.display());
    let args = ["-t", "app:1", "--network", "host", "--allow", "network.host", "--ssh", "default"];
    let mut cmd = env.build_cmd(&args);
    cmd.args(["--build-arg", &opts, "--build-arg", &source]).env("SSH_AUTH_SOCK", agent.socket());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}\nsshd:\n{}", describe(&out), sshd.log());
    assert_eq!(env.run_stdout("app:1", &[]), "private dependency\n");
    assert_clean(&env);
}

#[test]
fn realistic_tmpfs_scratch_directory() {
    let env = fixture("tmpfs-scratch", BuildEnv::served());
    env.build_ok(&["-t", "app:1"]);
    assert_eq!(env.run_stdout("app:1", &[]), "1000\n");
    let rootfs = env.umoci_unpack("app:1", env.tc.path());
    assert!(!rootfs.join("tmp/work").exists());
    assert_clean(&env);
}
