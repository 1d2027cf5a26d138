//! Catalogue cases (shared/research/reliability.md §4) of the store, concurrency, registry and
//! scale groups that no other file names: E6, F2, F4, F5, G13, H1. Each ends with `fsck --strict`.

use std::path::Path;

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
    assert!(
        stderr.contains(&format!("cache miss: the recorded layer {first_run} is missing from the store")),
        "{stderr}"
    );
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

/// F5: SIGINT or SIGTERM at pseudo-random points of builds that pull their base, run, diff and
/// push (`SLIPWAY_TEST_F5_RUNS`, 6): the build exits 130/143 (or 0 when it was done first),
/// leaves no mount, no sandbox process, no temp dir and no stale lock — the next build of the
/// same store succeeds and fsck --strict is clean — and the pushed tag is absent or complete.
/// (kill -9 in the middle of a push: `registry_faults::push_killed_at_half_resumes_in_the_next_run`.)
#[test]
fn f5_signals_at_any_point_leave_nothing_behind() {
    use crate::support::registry::Registry;
    use crate::support::sandbox::procs_with;
    let runs: u64 = std::env::var("SLIPWAY_TEST_F5_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let registry = Registry::start();
    let base_env = BuildEnv::new();
    let base = format!("{}/f5/bb:1", registry.host());
    base_env.tc.ok(&["push", "bb", &base]);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // One whole build first: how long the window for a signal is.
    let ctx = base_env.tc.path().join("f5-ctx");
    std::fs::create_dir(&ctx).unwrap();
    let marker = format!("f5-marker-{seed}");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN sleep 0.3 && echo {marker} && head -c 2000000 /dev/urandom > /r\nRUN ls / > /list\n"),
    )
    .unwrap();
    let build = |store: &crate::support::TestContext, tmp: &Path, tag: &str| {
        let mut cmd = store.cmd();
        cmd.args(["build", "--no-cache", "--network", "none", "--progress", "plain", "--push", "-t", tag])
            .arg(&ctx)
            .env("TMPDIR", tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let started = std::time::Instant::now();
    let store = crate::support::TestContext::new();
    let tmp = store.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = build(&store, &tmp, &format!("{}/f5/whole:1", registry.host())).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let window = started.elapsed().as_millis() as u64;
    for run in 0..runs {
        let store = crate::support::TestContext::new();
        let tmp = store.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let tag = format!("{}/f5/run:{run}", registry.host());
        let (signal, expected) = if next() % 2 == 0 { (libc::SIGINT, 130) } else { (libc::SIGTERM, 143) };
        let delay = next() % window.max(1);
        let why = format!("seed {seed}, run {run}, signal {signal} after {delay} ms of {window}");
        let child = build(&store, &tmp, &tag).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        // SAFETY: kill(2) on the child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        // A signal that lands before the handlers are installed (the first milliseconds) kills
        // the process outright; nothing has started then, and the checks below hold all the same.
        let killed_early = std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(signal);
        assert!(code == Some(expected) || code == Some(0) || killed_early, "{why}: {}", describe(&out));
        assert!(procs_with(&marker).is_empty(), "{why}: a sandbox process survived");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(store.path().to_str().unwrap()), "{why}: a mount survived");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{why}: temp files survived");
        let out = store.run(&["fsck", "--strict"]);
        assert!(out.status.success(), "{why}: {}", describe(&out));
        // The tag: absent, or a complete image.
        let copy = store.path().join("copy");
        let inspect = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{tag}")])
            .output()
            .unwrap();
        if inspect.status.success() {
            let out = std::process::Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false", &format!("docker://{tag}")])
                .arg(format!("oci:{}", copy.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{why}: the tag names an incomplete image: {}", describe(&out));
        }
        // The store works on: the same build succeeds.
        let out = build(&store, &tmp, &tag).output().unwrap();
        assert!(out.status.success(), "{why}: the next build: {}", describe(&out));
    }
}

/// `slipway` (its arguments to add) in a mount namespace whose `/etc/hosts` also names 127.0.0.1
/// `g13.test` — a registry name that is not loopback to slipway (only `localhost` and loopback
/// addresses are) — with `config` as its `config.toml`.
fn slipway_with_g13_host(ctx: &crate::support::TestContext, config: &Path) -> std::process::Command {
    let hosts = ctx.path().join("hosts");
    let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    text.push_str("\n127.0.0.1 g13.test\n");
    std::fs::write(&hosts, text).unwrap();
    let script = r#"mount --bind "$0" /etc/hosts && exec "$@""#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", script]).arg(&hosts);
    cmd.arg(crate::support::slipway_bin()).arg("--root").arg(ctx.root());
    cmd.env_remove("SLIPWAY_ROOT").env("SLIPWAY_CONFIG", config).env("SLIPWAY_LOG", "warn").env_remove("SSL_CERT_FILE");
    cmd
}

/// G13: no silent downgrade and no credentials in cleartext. A plain-HTTP registry with Basic
/// auth reached by a name that is not loopback: `login` and `push` fail on HTTPS and never send
/// one request (so no password) over plain HTTP — until the registry is listed as insecure in
/// `config.toml`. An HTTPS registry whose Bearer realm is a plain-HTTP URL on such a name: the
/// token request is refused before it is made.
#[test]
fn g13_no_downgrade_and_no_cleartext_credentials() {
    use crate::support::registry::{Registry, RegistryConfig, busybox};
    use std::io::Write;
    let password = "g13-s3cret";
    let registry = Registry::start_with(RegistryConfig {
        htpasswd: Some(("tester".into(), password.into())),
        ..Default::default()
    });
    let (ctx, _) = busybox();
    let config = ctx.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let host = format!("g13.test:{}", registry.port);
    let authfile = ctx.path().join("auth.json");
    let login = |config: &Path| {
        let mut cmd = slipway_with_g13_host(&ctx, config);
        cmd.args(["login", "--authfile", authfile.to_str().unwrap(), "-u", "tester", "--password-stdin", &host]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("unshare (util-linux) is installed");
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let push = |config: &Path, dest: &str| {
        let mut cmd = slipway_with_g13_host(&ctx, config);
        cmd.args(["push", "--authfile", authfile.to_str().unwrap(), "example/busybox:1", dest]);
        cmd.output().unwrap()
    };
    registry.mark("g13-start");
    let out = login(&config);
    assert!(!out.status.success(), "login over a downgrade: {}", describe(&out));
    let dest = format!("{host}/g13/img:1");
    let out = push(&config, &dest);
    assert!(!out.status.success(), "push over a downgrade: {}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(password));
    let log = registry.log_since("g13-start");
    assert!(!log.contains("/v2/"), "a plain-HTTP request reached the registry:\n{log}");

    // Named insecure: plain HTTP is the user's explicit choice.
    std::fs::write(&config, format!("[registry]\ninsecure = [\"{host}\"]\n")).unwrap();
    let out = login(&config);
    assert!(out.status.success(), "{}", describe(&out));
    let out = push(&config, &dest);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(registry.log_since("g13-start").contains("/v2/"), "the log shows requests (so its silence above counts)");

    // An HTTPS registry (its CA trusted) whose token realm is plain HTTP on a non-loopback name.
    let realm = "http://g13.test:9/token";
    let tls = Registry::start_with(RegistryConfig { tls: true, silly_realm: Some(realm.into()), ..Default::default() });
    let certs = ctx.path().join("certs.d").join(tls.host());
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(tls.ca(), certs.join("ca.crt")).unwrap();
    std::fs::write(&config, "").unwrap();
    let out = push(&config, &format!("{}/g13/img:1", tls.host()));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing plain-http token realm"), "{}", describe(&out));
}

/// The largest resident set of any child this process has waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: an all-zero rusage is a valid out-buffer for getrusage(2).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// H1 (scaled; `scripts/stress` runs the full sizes): a chain of `SLIPWAY_TEST_H1_STEPS` (200)
/// RUN steps builds — the layer chain is not limited by overlay's mount options; past overlay's
/// 500 layers a step is refused at its line before anything runs — and a context
/// of `SLIPWAY_TEST_H1_FILES` (20,000; full 200,000) files beside a sparse file of
/// `SLIPWAY_TEST_H1_SPARSE_MIB` (256; full 4096) is copied streaming, with `.dockerignore`
/// exclusions and `!` re-inclusions honoured, in bounded memory (peak RSS of every process
/// under 512 MiB).
#[test]
fn h1_long_layer_chains_and_big_contexts_in_bounded_memory() {
    let steps = env_usize("SLIPWAY_TEST_H1_STEPS", 200);
    let files = env_usize("SLIPWAY_TEST_H1_FILES", 20_000);
    let sparse_mib = env_usize("SLIPWAY_TEST_H1_SPARSE_MIB", 256) as u64;
    let env = BuildEnv::new();
    let mut dockerfile = String::from("FROM bb\n");
    for i in 0..steps {
        dockerfile.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    dockerfile.push_str("RUN ls / | grep -c '^f[0-9]' > /count\n");
    env.dockerfile(&dockerfile);
    env.build_ok(&["--network", "none", "-t", "chain:1"]);
    assert_eq!(env.run_stdout("chain:1", &["cat", "/count"]), format!("{steps}\n"));
    // Past overlay's 500 lower layers: refused at the step's line before any step runs.
    let mut too_deep = String::from("FROM bb\n");
    for i in 0..501 {
        too_deep.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    env.dockerfile(&too_deep);
    let out = env.build(&["--network", "none", "--progress", "rawjson", "--snapshotter", "overlay"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:502") && stderr.contains("more than the 500 an overlay mount can stack"),
        "{stderr}"
    );
    assert_eq!(ran(&events(&out)), 0, "refused before any step");

    // The context: files in 100 directories, every tenth a .log (ignored, but those under keep/
    // come back), and one sparse file.
    let ctx = env.tc.path().join("big");
    let keep = ctx.join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    for i in 0..files {
        let dir = ctx.join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir(&dir).unwrap();
        }
        let name = if i % 10 == 0 { format!("f{i}.log") } else { format!("f{i}.txt") };
        std::fs::write(dir.join(name), format!("{i}\n")).unwrap();
    }
    std::fs::write(keep.join("kept.log"), "kept\n").unwrap();
    let sparse = std::fs::File::create(ctx.join("sparse.img")).unwrap();
    sparse.set_len(sparse_mib << 20).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "**/*.log\n!keep/*.log\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nCOPY . /ctx\nRUN find /ctx -name '*.txt' | wc -l > /n && find /ctx -name '*.log' > /logs && wc -c < /ctx/sparse.img > /size\n",
    )
    .unwrap();
    let out = env.tc.cmd().args(["build", "--network", "none", "-t", "big:1"]).arg(&ctx).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let txt = files - files.div_ceil(10);
    assert_eq!(env.run_stdout("big:1", &["cat", "/n"]).trim(), txt.to_string());
    assert_eq!(env.run_stdout("big:1", &["cat", "/logs"]), "/ctx/keep/kept.log\n");
    assert_eq!(env.run_stdout("big:1", &["cat", "/size"]).trim(), (sparse_mib << 20).to_string());
    let rss = children_max_rss_kib();
    assert!(rss < 512 * 1024, "peak RSS {rss} KiB");
    fsck_strict(&env);
}
