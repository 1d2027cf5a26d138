//! Sandbox overhead: create a sandbox, run `/bin/true` in it, tear it down.
//!
//! Root only (the rootless path is measured when run as another user). The helper is the
//! slipway binary of the same build, so `cargo bench --bench exec --profile dev` measures the
//! debug helper. Run quickly with `-- --quick`; prints the median of 100 runs as well.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use slipway::exec::{CancelToken, EmbeddedExecutor, ExecSpec, Executor, Output};

/// `/bin/busybox` with a `true` link and the user databases: all `/bin/true` needs.
fn rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", dir.join("bin/true")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn run_true(ex: &EmbeddedExecutor, spec: &ExecSpec, root: &Path, cancel: &CancelToken) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = ex.run(spec, root, Output::new(&mut stdout, &mut stderr), cancel).unwrap();
    assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&stderr));
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    rootfs(&root);
    let ex = EmbeddedExecutor::new(env!("CARGO_BIN_EXE_slipway"));
    let spec = ExecSpec::new(["/bin/true"]);
    let cancel = CancelToken::new();

    let mut times: Vec<Duration> = (0..100)
        .map(|_| {
            let start = Instant::now();
            run_true(&ex, &spec, &root, &cancel);
            start.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "exec /bin/true: median {:?} over {} runs (min {:?}, max {:?})",
        times[50],
        times.len(),
        times[0],
        times[99]
    );

    c.bench_function("exec_true", |b| b.iter(|| run_true(&ex, black_box(&spec), &root, &cancel)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
