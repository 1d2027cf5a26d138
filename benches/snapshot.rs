//! A step that changes 10 MiB, on top of a big base and on top of a 10 MiB base: how long
//! `prepare` and the diff take with each snapshotter. With overlay the diff reads only the
//! upper directory, so its time must not depend on the base (the two differ by < 20%).
//!
//! Big base size: `SLIPWAY_BENCH_BASE_MB` (default 256; the figure is 1024). Needs root
//! (overlay mounts). Run quickly with `cargo bench --bench snapshot -- --quick`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipway::layer::WriteOptions;
use slipway::snapshot::{self, Backend, Snapshotter};

const STEP_MB: usize = 10;

fn base_mb() -> usize {
    std::env::var("SLIPWAY_BENCH_BASE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// Files of 4 KiB .. 1 MiB spread over directories, `total` bytes; each file's bytes differ.
fn generate(root: &Path, total: usize, prefix: &str) {
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (mut written, mut i) = (0, 0usize);
    while written < total {
        let size = (4096 << (i % 9)).min(total - written).max(1);
        let dir = root.join(format!("{prefix}{:02}/s{}", i % 16, i % 5));
        fs::create_dir_all(&dir).unwrap();
        let mut data = chunk[..size].to_vec();
        data[..8.min(size)].copy_from_slice(&i.to_le_bytes()[..8.min(size)]);
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
        written += size;
        i += 1;
    }
}

/// A snapshotter with the committed `base` (`mb` MiB) and the active `step` on it (10 MiB
/// written). Returns the time `prepare` took (the copy backend copies the base there).
fn setup(root: &Path, backend: Backend, mb: usize) -> (Box<dyn Snapshotter>, Duration) {
    let sn = snapshot::open(root, Some(backend)).expect("open snapshotter (overlay needs root)");
    let mounts = sn.prepare("base-active", None).unwrap();
    generate(mounts.plain_dir().expect("a parentless snapshot is a plain directory"), mb << 20, "d");
    sn.commit("base", "base-active", None).unwrap();
    let started = Instant::now();
    let mounts = sn.prepare("step", Some("base")).unwrap();
    let prepared = started.elapsed();
    let write = |dir: &Path| generate(&dir.join("step"), STEP_MB << 20, "n");
    match mounts.plain_dir() {
        Some(dir) => write(dir),
        None => {
            let target = tempfile::tempdir_in(sn.dir()).unwrap();
            let mounted = mounts.mount(target.path()).unwrap();
            write(target.path());
            mounted.unmount().unwrap();
        }
    }
    // Flush the gigabyte just written, so writeback does not run during the measurements.
    rustix::fs::sync();
    (sn, prepared)
}

fn diff_once(sn: &dyn Snapshotter) -> Duration {
    let started = Instant::now();
    sn.diff("step", &WriteOptions::default(), &mut std::io::sink()).unwrap();
    started.elapsed()
}

/// Best of `runs`: the diff's own cost, without the noise of a shared machine.
fn best(sn: &dyn Snapshotter, runs: usize) -> Duration {
    (0..runs).map(|_| diff_once(sn)).min().unwrap_or_default()
}

fn benches(c: &mut Criterion) {
    let big = base_mb();
    let mut g = c.benchmark_group("snapshot_diff");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((STEP_MB << 20) as u64));
    let mut summary = Vec::new();
    for backend in [Backend::Overlay, Backend::Copy] {
        let mut medians = Vec::new();
        for mb in [big, STEP_MB] {
            let dir = tempfile::tempdir().unwrap();
            let (sn, prepared) = setup(&dir.path().join("root"), backend, mb);
            g.bench_function(format!("{backend}/base_{mb}MiB"), |b| b.iter(|| diff_once(sn.as_ref())));
            let m = best(sn.as_ref(), 15);
            summary
                .push(format!("{backend:7} base {mb:5} MiB: prepare {prepared:>10.2?}  diff (best of 15) {m:>10.2?}"));
            medians.push(m);
        }
        let ratio = medians[0].as_secs_f64() / medians[1].as_secs_f64();
        summary.push(format!("{backend:7} diff time big/small base: {ratio:.2}"));
    }
    g.finish();
    eprintln!("\nsnapshot summary (step = {STEP_MB} MiB of new files):");
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(snapshot_benches, benches);
criterion_main!(snapshot_benches);
