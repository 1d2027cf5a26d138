//! Parsing throughput over the 140 real-world Dockerfiles of the shared corpus: the line
//! parser alone, parse + lower, and parse + lower + build graph. Reported per file and per
//! byte.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipway::dockerfile::{parse, parse_dockerfile};
use slipway::graph::{GraphOptions, build};

/// The real-world Dockerfiles (`shared/corpus` beside the repository or further up).
fn corpus() -> Vec<String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest
        .ancestors()
        .map(|d| d.join("shared/corpus/real-world"))
        .find(|p| p.is_dir())
        .expect("shared/corpus/real-world beside the repository");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus")
        .map(|e| e.expect("dir entry").path().join("Dockerfile"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| String::from_utf8_lossy(&std::fs::read(p).expect("read")).into_owned()).collect()
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
    let mut group = c.benchmark_group("real-world");
    for (unit, throughput) in [("files", Throughput::Elements(files.len() as u64)), ("bytes", Throughput::Bytes(bytes))]
    {
        group.throughput(throughput);
        group.bench_function(format!("parse/{unit}"), |b| {
            b.iter(|| files.iter().map(|f| parse(black_box(f)).is_ok() as usize).sum::<usize>())
        });
        group.bench_function(format!("parse+lower+graph/{unit}"), |b| {
            b.iter(|| {
                files
                    .iter()
                    .filter_map(|f| parse_dockerfile(black_box(f)).ok())
                    .map(|d| build(&d, &GraphOptions::default()).is_ok() as usize)
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
