//! Layer throughput: tar of a generated tree, gzip and zstd compression, sha256, and ingest of
//! the tar into a store (hash + write + fsync + rename).
//!
//! Tree size: `SLIPWAY_BENCH_TREE_MB` (default 64). With `SLIPWAY_BENCH_TREE_DIR` set the tree
//! is generated there (once) and kept, so `scripts/bench-layer` can run `sha256sum`,
//! `tar | pigz` and `tar | zstd -T0` on the same data. Run quickly with
//! `cargo bench --bench layer -- --quick`.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use std::io::Write;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use slipway::layer::{Compression, WriteOptions, compress, write_dir};
use slipway::oci::Digest;
use slipway::store::Store;

fn tree_mb() -> usize {
    std::env::var("SLIPWAY_BENCH_TREE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// Files of 4 KiB .. 1 MiB with moderately compressible content, spread over directories.
fn generate(root: &Path, total: usize) {
    let mut written = 0;
    let mut i: usize = 0;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while written < total {
        let size = 4096 << (i % 9); // 4 KiB .. 1 MiB
        let dir = root.join(format!("d{:02}/s{}", i % 16, i % 5));
        fs::create_dir_all(&dir).unwrap();
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Text-like: a small alphabet repeated, so compressors have work to do.
            let word = format!("w{} ", state % 512);
            data.extend_from_slice(word.as_bytes());
        }
        data.truncate(size);
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
        written += size;
        i += 1;
    }
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = match std::env::var_os("SLIPWAY_BENCH_TREE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => tmp.path().to_path_buf(),
    };
    fs::create_dir_all(&root).unwrap();
    if fs::read_dir(&root).unwrap().next().is_none() {
        generate(&root, tree_mb() << 20);
    }
    let dir = &root;
    let (tar, _, len) = write_dir(dir, &WriteOptions::default(), Vec::new()).unwrap();

    let mut g = c.benchmark_group("layer");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len));
    g.bench_function("tar_write_dir", |b| {
        b.iter(|| write_dir(dir, &WriteOptions::default(), std::io::sink()).unwrap())
    });
    g.bench_function("gzip", |b| b.iter(|| compress(&tar[..], Compression::Gzip, std::io::sink()).unwrap()));
    g.bench_function("zstd", |b| b.iter(|| compress(&tar[..], Compression::Zstd, std::io::sink()).unwrap()));
    g.bench_function("sha256", |b| b.iter(|| Digest::of(black_box(&tar))));
    g.bench_function("ingest_sha256", |b| {
        b.iter_batched(
            || {
                let store_dir = tempfile::tempdir_in(tmp.path()).unwrap();
                let store = Store::open(&store_dir.path().join("root")).unwrap();
                (store_dir, store)
            },
            |(_store_dir, store)| {
                let mut ingest = store.ingest().unwrap();
                ingest.write_all(&tar).unwrap();
                ingest.commit(None, None).unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(layer_benches, benches);
criterion_main!(layer_benches);
