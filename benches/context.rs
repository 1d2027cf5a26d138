//! Hashing a build context for COPY cache keys: a generated tree of N small files (N from
//! `SLIPWAY_BENCH_CONTEXT_FILES`, default 20000, 1–8 KiB each over 2 directory levels),
//! `context::digest` cold (no stat cache: every file read and hashed) against a warm stat cache
//! (only `lstat` + one SQLite lookup per file), and the `copy` of the same tree into a rootfs.
//!
//! Run quickly with `cargo bench --bench context -- --quick`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipway::context::{CopyOptions, SourceRoot, StatCache, copy, digest, select};

fn files() -> usize {
    std::env::var("SLIPWAY_BENCH_CONTEXT_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// `n` files of 1..8 KiB in `d<i % 64>/s<i % 8>/f<i>`, each different.
fn generate(root: &Path, n: usize) -> u64 {
    let chunk: Vec<u8> = (0..8192usize).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut total = 0;
    for i in 0..n {
        let dir = root.join(format!("d{:02}/s{}", i % 64, i % 8));
        fs::create_dir_all(&dir).unwrap();
        let size = 1024 * (1 + i % 8);
        let mut data = chunk[..size].to_vec();
        data[..8].copy_from_slice(&i.to_le_bytes());
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
        total += size as u64;
    }
    total
}

fn bench(c: &mut Criterion) {
    let n = files();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let bytes = generate(&ctx, n);
    // Let the racy window pass so the warm cache can trust every row.
    std::thread::sleep(Duration::from_millis(200));
    let src = SourceRoot::dir(&ctx);
    let sel = select(&src, &[".".to_owned()], &[]).unwrap();
    let cache = StatCache::open(&tmp.path().join("stat.db")).unwrap();
    let first = digest(&src, &sel, &[], Some(&cache)).unwrap();
    assert_eq!(first.files_read, n as u64);
    assert_eq!(digest(&src, &sel, &[], Some(&cache)).unwrap().files_read, 0, "the cache is warm");

    let mut g = c.benchmark_group(format!("context_digest_{n}_files"));
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    g.bench_function("cold", |b| b.iter(|| digest(&src, &sel, &[], None).unwrap()));
    g.bench_function("warm_stat_cache", |b| b.iter(|| digest(&src, &sel, &[], Some(&cache)).unwrap()));
    g.finish();

    let mut g = c.benchmark_group(format!("context_copy_{n}_files"));
    g.sample_size(10).throughput(Throughput::Bytes(bytes));
    let opts = CopyOptions { from_context: true, ..Default::default() };
    g.bench_function("copy", |b| {
        b.iter_with_setup(
            || tempfile::tempdir_in(tmp.path()).unwrap(),
            |dest| {
                copy(&src, &sel, dest.path(), "/app", &opts).unwrap();
                dest
            },
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
