//! `--cache-to` / `--cache-from`: two stores stand in for two CI runners with the local registry
//! (behind the counting proxy) between them. Runner A builds and exports; runner B, with an
//! empty store and its own checkout of the same files, runs no step and downloads no layer the
//! final image does not hold; after a source change a third runner runs only the steps after
//! the COPY that reads it and names the record it missed. The same through `type=local` and
//! `type=inline`; no build-arg value reaches an exported cache.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::build::{BuildEnv, events, ran, steps};
use crate::support::describe;
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;

/// Files in the context besides the sources (`SLIPWAY_TEST_CACHE_FILES`, default 300).
fn context_files() -> usize {
    std::env::var("SLIPWAY_TEST_CACHE_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS deps\n\
         RUN mkdir /deps && echo deps > /deps/list && echo 1 > /deps-built\n\
         FROM {base} AS build\n\
         COPY --from=deps /deps /deps\n\
         COPY src/ /src/\n\
         RUN cat /deps/list /src/a.txt /src/b.txt > /out.txt && ls /src/many | wc -l >> /out.txt && echo 1 > /build-built\n\
         FROM {base}\n\
         COPY --from=build /out.txt /out.txt\n\
         RUN echo final >> /out.txt\n\
         CMD [\"cat\", \"/out.txt\"]\n"
    )
}

/// A runner's checkout: the Dockerfile and the sources, written anew (other mtimes, other path).
fn checkout(env: &BuildEnv, base: &str, a: &str) {
    env.dockerfile(&dockerfile(base));
    env.write("src/a.txt", a);
    env.write("src/b.txt", "b\n");
    for i in 0..context_files() {
        env.write(&format!("src/many/d{}/f{i}.txt", i % 20), &format!("file {i}\n"));
    }
}

/// The runners' registry, behind a proxy that counts, with the base image pushed to it.
fn registry_with_base() -> (Registry, Proxy, String) {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port);
    let base = format!("{}/base/bb:1", proxy.host());
    BuildEnv::new().tc.ok(&["push", "bb", &base]);
    (registry, proxy, base)
}

fn skopeo_raw(reference: &str, what: &[&str]) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--raw"]).args(what).arg(format!("docker://{reference}"));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_registry_cache_lets_an_empty_runner_run_nothing_and_fetch_only_the_final_layers() {
    let (_registry, proxy, base) = registry_with_base();
    let cache = format!("{}/app/cache", proxy.host());
    let a = BuildEnv::new();
    checkout(&a, &base, "a\n");
    let out = a.build_ok(&["--cache-to", &format!("type=registry,ref={cache},mode=max"), "-t", "app:1"]);
    assert!(stderr(&out).contains("exported the cache (6 records, 6 layers)"), "{}", describe(&out));

    // The cache is a plain OCI image: skopeo reads it, its config lists every layer.
    let manifest = skopeo_raw(&cache, &[]);
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{manifest}");
    let config = skopeo_raw(&cache, &["--config"]);
    assert_eq!(config["slipway.cache.v1"]["records"].as_array().unwrap().len(), 6, "{config}");

    // Runner B: an empty store, its own checkout of the same commit.
    let b = BuildEnv::new();
    checkout(&b, &base, "a\n");
    let mark = proxy.log().len();
    let out = b.build_ok(&["--progress", "rawjson", "--cache-from", &cache, "-t", "app:1"]);
    let ev = events(&out);
    assert_eq!(ran(&ev), 0, "runner B ran steps: {:#?}", steps(&ev));
    let hits: Vec<&Value> = ev.iter().filter(|e| e["type"] == "task_cache").collect();
    assert!(hits.iter().all(|e| e["from"] == format!("{cache}:latest")), "{hits:#?}");
    assert_eq!(b.config("app:1"), a.config("app:1"), "the same image as runner A");
    assert_eq!(b.run_stdout("app:1", &[]), format!("deps\na\nb\n{}\nfinal\n", 20));

    // No blob of a layer the final image does not hold was downloaded.
    let image_diff_ids: BTreeSet<String> = b.config("app:1")["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let cache_diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let not_in_image: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cache_diff_ids)
        .filter(|(_, d)| !image_diff_ids.contains(d.as_str().unwrap()))
        .map(|(l, _)| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(not_in_image.len(), 4, "deps RUN, build COPYs and RUN: {manifest}");
    let fetched: Vec<String> =
        proxy.log()[mark..].iter().filter(|e| e.method == "GET").map(|e| e.target.clone()).collect();
    for digest in &not_in_image {
        assert!(!fetched.iter().any(|p| p.ends_with(digest)), "{digest} was fetched:\n{fetched:#?}");
    }
    // What the image holds was fetched from the cache (the check above looks at real downloads).
    let from_cache = fetched.iter().filter(|p| p.contains("/app/cache/blobs/")).count();
    assert_eq!(from_cache, 2 + 1, "the image's two cached layers and the cache config:\n{fetched:#?}");
    b.tc.ok(&["fsck", "--strict"]);

    // Runner D only pushes (and exports again, as a CI job does): the cached layers go from the
    // cache's repository to the image's by cross-repository mounts, never through runner D.
    let d = BuildEnv::new();
    checkout(&d, &base, "a\n");
    let pushed = format!("{}/app/pushed:1", proxy.host());
    let mark = proxy.log().len();
    let to = format!("type=registry,ref={cache},mode=max");
    let out = d.build_ok(&["--cache-from", &cache, "--cache-to", &to, "--push", "-t", &pushed]);
    assert!(stderr(&out).contains("not kept in the store"), "{}", describe(&out));
    let log: Vec<(String, String)> = proxy.log()[mark..].iter().map(|e| (e.method.clone(), e.target.clone())).collect();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let got = log.iter().filter(|(m, t)| m == "GET" && t.ends_with(digest)).count();
        assert_eq!(got, 0, "runner D downloaded {digest}:\n{log:#?}");
    }
    assert!(log.iter().any(|(m, t)| m == "POST" && t.contains("mount=")), "{log:#?}");
    let copy = d.tc.path().join("pulled");
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &format!("docker://{pushed}"), &format!("oci:{}:x", copy.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "the pushed image is whole: {}", describe(&out));
    d.tc.ok(&["fsck", "--strict"]);
    let images = String::from_utf8_lossy(&d.tc.ok(&["images"]).stdout).into_owned();
    assert!(!images.contains("app/pushed"), "{images}");

    // Runner C: one source changed. Only the steps after the COPY that reads it run, and the miss
    // names the record.
    let c = BuildEnv::new();
    checkout(&c, &base, "changed\n");
    let out = c.build_ok(&["--progress", "rawjson", "--cache-from", &cache, "-t", "app:2"]);
    let all = steps(&events(&out));
    let ran_names: Vec<&str> =
        all.iter().filter(|s| s.cache.as_deref() == Some("miss")).map(|s| s.name.as_str()).collect();
    assert_eq!(ran_names.len(), 4, "{all:#?}");
    assert!(ran_names[0].contains("COPY src/ /src/"), "{all:#?}");
    let reason = all.iter().find(|s| s.name.contains("COPY src/")).unwrap().reason.clone().unwrap();
    assert!(
        reason.starts_with("no record: src/a.txt changed (sha256:") && reason.contains(&format!(" from {cache}")),
        "{reason}"
    );
    assert_eq!(c.run_stdout("app:2", &[]), format!("deps\nchanged\nb\n{}\nfinal\n", 20));
}

#[test]
fn a_local_cache_directory_carries_the_records_and_no_build_arg_value() {
    let (_registry, _proxy, base) = registry_with_base();
    let a = BuildEnv::new();
    checkout(&a, &base, "a\n");
    let dockerfile = dockerfile(&base) + "ARG TOKEN\nRUN test -n \"$TOKEN\" && echo used > /token-used\n";
    a.dockerfile(&dockerfile);
    let dir = a.tc.path().join("cache-dir");
    let to = format!("type=local,dest={},mode=max", dir.display());
    a.build_ok(&["--build-arg", "TOKEN=s3cr3t-build-arg-value", "--cache-to", &to, "-t", "app:1"]);
    // skopeo reads the layout; no file of it holds the build argument's value.
    let out = Command::new("skopeo").args(["inspect", &format!("oci:{}:latest", dir.display())]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(grep_tree(&dir, b"s3cr3t-build-arg-value"), Vec::<String>::new());

    let b = BuildEnv::new();
    checkout(&b, &base, "a\n");
    b.dockerfile(&dockerfile);
    let from = format!("type=local,src={}", dir.display());
    let ev = b.build_events(&["--build-arg", "TOKEN=s3cr3t-build-arg-value", "--cache-from", &from, "-t", "app:1"]);
    assert_eq!(ran(&ev), 0, "{:#?}", steps(&ev));
    // Another value of the argument, on a fresh runner: one step misses, and says which input
    // differs without showing either value.
    let c = BuildEnv::new();
    checkout(&c, &base, "a\n");
    c.dockerfile(&dockerfile);
    let ev = c.build_events(&["--build-arg", "TOKEN=other", "--cache-from", &from, "-t", "app:2"]);
    let missed: Vec<_> = steps(&ev).into_iter().filter(|s| s.cache.as_deref() == Some("miss")).collect();
    assert_eq!(missed.len(), 1, "{missed:#?}");
    let reason = missed[0].reason.clone().unwrap();
    assert!(reason.starts_with("no record: ") && reason.contains("TOKEN"), "{reason}");
    assert!(!reason.contains("s3cr3t") && !reason.contains("other"), "{reason}");
}

#[test]
fn an_inline_cache_rides_in_the_pushed_image() {
    let (_registry, proxy, base) = registry_with_base();
    let image = format!("{}/app/inline:1", proxy.host());
    let a = BuildEnv::new();
    a.dockerfile(&format!("FROM {base}\nCOPY a.txt /a.txt\nRUN cp /a.txt /b.txt\nCMD [\"cat\", \"/b.txt\"]\n"));
    a.write("a.txt", "inline\n");
    a.build_ok(&["--cache-to", "type=inline", "--push", "-t", &image]);
    let config = skopeo_raw(&image, &["--config"]);
    assert_eq!(config["slipway.cache.v1"]["records"].as_array().unwrap().len(), 2, "{config}");

    let b = BuildEnv::new();
    b.dockerfile(&format!("FROM {base}\nCOPY a.txt /a.txt\nRUN cp /a.txt /b.txt\nCMD [\"cat\", \"/b.txt\"]\n"));
    b.write("a.txt", "inline\n");
    let ev = b.build_events(&["--cache-from", &image, "-t", "app:1"]);
    assert_eq!(ran(&ev), 0, "{:#?}", steps(&ev));
    assert_eq!(b.run_stdout("app:1", &[]), "inline\n");

    // A cache that is not there yet (a first CI run) is a warning, and the build goes on.
    let out = b.build_ok(&["--cache-from", &format!("{}/app/none:1", proxy.host()), "-t", "app:2"]);
    assert!(stderr(&out).contains("warning: importing the cache from"), "{}", describe(&out));
    // inline is min only; rewrite-timestamp would make its records name other layers.
    let out = b.build(&["--cache-to", "type=inline,mode=max"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// Files under `dir` whose bytes contain `needle`.
fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn cache_mount_contents_travel_with_mounts_true() {
    let (_registry, proxy, base) = registry_with_base();
    let dockerfile = format!(
        "FROM {base}\nARG N\n\
         RUN --mount=type=cache,target=/var/cache/app,id=appcache ls /var/cache/app > /seen && echo $N > /var/cache/app/from-$N\n\
         CMD [\"cat\", \"/seen\"]\n"
    );
    let with = format!("{}/app/mounts:1", proxy.host());
    let without = format!("{}/app/nomounts:1", proxy.host());
    let a = BuildEnv::new();
    a.dockerfile(&dockerfile);
    let out = a.build_ok(&["--build-arg", "N=a", "--cache-to", &format!("type=registry,ref={with},mounts=true")]);
    assert!(stderr(&out).contains("1 cache mounts)"), "{}", describe(&out));
    a.build_ok(&["--build-arg", "N=a", "--cache-to", &format!("type=registry,ref={without}")]);
    let out = a.build_ok(&[
        "--build-arg",
        "N=a",
        "--cache-to",
        &format!("type=local,dest={}/c,mounts=true,mounts-max-size=1", a.tc.path().display()),
    ]);
    assert!(stderr(&out).contains("warning: cache mount \"appcache\" left out of the cache"), "{}", describe(&out));

    // Runner B's first RUN (another argument: it runs) sees what runner A left in the cache.
    let b = BuildEnv::new();
    b.dockerfile(&dockerfile);
    b.build_ok(&["--build-arg", "N=b", "--cache-from", &with, "-t", "app:1"]);
    assert_eq!(b.run_stdout("app:1", &[]), "from-a\n");
    // Without mounts=true the cache carries no mount: runner C starts with an empty one.
    let c = BuildEnv::new();
    c.dockerfile(&dockerfile);
    c.build_ok(&["--build-arg", "N=c", "--cache-from", &without, "-t", "app:1"]);
    assert_eq!(c.run_stdout("app:1", &[]), "");
}
