//! A no-op `slipway build`: the binary of the same build rebuilds a Dockerfile whose every step is
//! cached (`FROM` a busybox image, `COPY . /app` of a generated context, a `RUN`), so the time is
//! the fixed cost of a build — parsing, resolving the base, hashing the context through the warm
//! stat cache, cache lookups, writing the config and the tag. The context has N files
//! (`SLIPWAY_BENCH_BUILD_FILES`; default 5000, 200 when the test suite runs it once; 1–8 KiB each). `scripts/bench` compares whole
//! builds with buildah and BuildKit; this bench tracks the no-op path alone.
//!
//! Root only, like the `exec` bench (the one cold build runs a RUN step). Run quickly with
//! `cargo bench --bench build -- --quick`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// `SLIPWAY_BENCH_BUILD_FILES`, else 5000 under `cargo bench` and 200 when the suite runs the
/// bench once as a test (no `--bench` argument), which only checks that it works.
fn files() -> usize {
    let default = if std::env::args().any(|a| a == "--bench") { 5_000 } else { 200 };
    std::env::var("SLIPWAY_BENCH_BUILD_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A busybox root filesystem with the applets the Dockerfile's RUN uses.
fn rootfs(dir: &Path) {
    for sub in ["bin", "etc", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "find", "wc"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// `n` files of 1..8 KiB in `d<i % 64>/f<i>`, each different.
fn context(root: &Path, n: usize) {
    let chunk: Vec<u8> = (0..8192usize).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for i in 0..n {
        let dir = root.join(format!("d{:02}", i % 64));
        fs::create_dir_all(&dir).unwrap();
        let mut data = chunk[..1024 * (1 + i % 8)].to_vec();
        data[..8].copy_from_slice(&i.to_le_bytes());
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
    }
}

/// Runs the slipway binary on the store `root`; returns stderr (rawjson progress) on success.
fn slipway(root: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("--root")
        .arg(root)
        .args(["--progress", "rawjson"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "slipway {args:?} failed: {stderr}");
    stderr
}

/// How many layer steps were cache hits and misses in a build's rawjson progress.
fn hits_and_misses(progress: &str) -> (usize, usize) {
    (progress.matches(r#""status":"hit""#).count(), progress.matches(r#""status":"miss""#).count())
}

fn bench(c: &mut Criterion) {
    let n = files();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = tmp.path().join("rootfs");
    rootfs(&base);
    slipway(&store, &["import", base.to_str().unwrap(), "bench/busybox:latest"]);
    let ctx = tmp.path().join("ctx");
    context(&ctx, n);
    let dockerfile = tmp.path().join("Dockerfile");
    fs::write(&dockerfile, "FROM bench/busybox:latest\nCOPY . /app\nRUN find /app -type f | wc -l > /app-files\n")
        .unwrap();
    let (dockerfile, ctx) = (dockerfile.to_str().unwrap(), ctx.to_str().unwrap());
    let build = ["build", "--network", "none", "-t", "bench/noop:latest", "-f", dockerfile, ctx];
    assert_eq!(hits_and_misses(&slipway(&store, &build)), (0, 2), "the first build runs every step");
    // Let the stat cache's racy window pass so the rebuilds trust every row.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hits_and_misses(&slipway(&store, &build)), (2, 0), "a rebuild is all cache hits");

    let mut g = c.benchmark_group(format!("build_noop_{n}_files"));
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    g.bench_function("rebuild", |b| b.iter(|| slipway(&store, &build)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
