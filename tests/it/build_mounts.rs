//! `build`: RUN --mount (bind from the context, a stage or an image; tmpfs; secrets in files and
//! variables), each result checked by running or unpacking the built image; secrets searched
//! for in every blob (decompressed), the cache databases, the step logs, rawjson and stderr.

use crate::build_stages::assert_clean;
use crate::support::build::{BuildEnv, events, steps};
use crate::support::describe;

const SECRET: &str = "s3cr3t-0f-the-test";

#[test]
fn bind_from_the_context_is_read_only_ignores_what_dockerignore_hides_and_leaves_no_trace() {
    let env = BuildEnv::new();
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
    let env = BuildEnv::new();
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
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb AS build\n\
         RUN mkdir /out && echo built > /out/app\n\
         FROM bb\n\
         RUN --mount=type=bind,from=build,source=/out,target=/mnt/build \
             --mount=from=bb,source=/bin/busybox,target=/mnt/bb \
             cp /mnt/build/app /app && test -x /mnt/bb && echo ok > /bb-ok\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/app", "/bb-ok"]), "built\nok\n");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(!rootfs.join("mnt").exists(), "mount points are not in the image");
    // The stage's result is part of the key: a change there is a miss.
    env.dockerfile(
        "FROM bb AS build\n\
         RUN mkdir /out && echo rebuilt > /out/app\n\
         FROM bb\n\
         RUN --mount=type=bind,from=build,source=/out,target=/mnt/build \
             --mount=from=bb,source=/bin/busybox,target=/mnt/bb \
             cp /mnt/build/app /app && test -x /mnt/bb && echo ok > /bb-ok\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/app"]), "rebuilt\n");
    assert_clean(&env);
}

#[test]
fn tmpfs_is_empty_sized_and_never_in_the_layer() {
    let env = BuildEnv::new();
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
fn assert_nowhere(env: &BuildEnv, outputs: &[&std::process::Output], needle: &[u8]) {
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
    let env = BuildEnv::new();
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
    let env = BuildEnv::new();
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
    let env = BuildEnv::new();
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
        let env = BuildEnv::new();
        env.write("src/a", "ctx\n");
        let file = env.tc.path().join("token");
        std::fs::write(&file, SECRET).unwrap();
        env.dockerfile(
            "FROM bb\n\
             RUN --mount=source=src,target=/src --mount=type=tmpfs,target=/t \
                 --mount=type=secret,id=tok,target=/s,uid=1000 --mount=type=secret,id=tok,env=TOK \
                 cat /src/a > /out && echo x > /t/x && stat -c %u /s >> /out && test -n \"$TOK\" && echo env >> /out\n",
        );
        let secret = format!("id=tok,src={}", file.display());
        let mut cmd =
            env.build_cmd(&["--progress", "rawjson", "-t", "img:1", "--network", "none", "--secret", &secret]);
        let out = cmd.env("SLIPWAY_RUNTIME", runtime).output().unwrap();
        assert!(out.status.success(), "{runtime}: {}", describe(&out));
        assert_eq!(env.run_stdout("img:1", &["cat", "/out"]), "ctx\n1000\nenv\n", "{runtime}");
        let rootfs = env.umoci_unpack("img:1", env.tc.path());
        assert!(!rootfs.join("src").exists() && !rootfs.join("t").exists() && !rootfs.join("s").exists());
        assert_nowhere(&env, &[&out], SECRET.as_bytes());
        assert_clean(&env);
    }
}
