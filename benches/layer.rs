//! Layer throughput: tar of a generated tree, gzip and zstd compression, sha256.
//!
//! Tree size: `SLIPWAY_BENCH_TREE_MB` (default 64). Run quickly with
//! `cargo bench --bench layer -- --quick`.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipway::layer::{Compression, WriteOptions, compress, write_dir};
use slipway::oci::Digest;

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
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), tree_mb() << 20);
    let (tar, _, len) = write_dir(dir.path(), &WriteOptions::default(), Vec::new()).unwrap();

    let mut g = c.benchmark_group("layer");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len));
    g.bench_function("tar_write_dir", |b| {
        b.iter(|| write_dir(dir.path(), &WriteOptions::default(), std::io::sink()).unwrap())
    });
    g.bench_function("gzip", |b| b.iter(|| compress(&tar[..], Compression::Gzip, std::io::sink()).unwrap()));
    g.bench_function("zstd", |b| b.iter(|| compress(&tar[..], Compression::Zstd, std::io::sink()).unwrap()));
    g.bench_function("sha256", |b| b.iter(|| Digest::of(black_box(&tar))));
    g.finish();
}

criterion_group!(layer_benches, benches);
criterion_main!(layer_benches);
