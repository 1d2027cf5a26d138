//! Sandbox overhead: create a sandbox, run `/bin/true` in it, tear it down (host network).
//!
//! Prints medians of `SLIPWAY_BENCH_RUNS` runs (default 100) side by side:
//! - the embedded executor, on a plain directory and on an overlay snapshot (prepare + mount +
//!   run + unmount + remove; the snapshot part alone is reported too);
//! - the oci-runtime executor driving crun and runc (bundle writing included);
//! - `crun run` and `runc run` started by hand on an equivalent, pre-written bundle (the
//!   runtime's own cost, what the embedded executor is measured against).
//!
//! Root only. The helper is the slipway binary of the same build, so `cargo bench --bench exec
//! --profile dev` measures the debug helper. Run quickly with `-- --quick`.

use std::hint::black_box;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use slipway::exec::{CancelToken, EmbeddedExecutor, ExecSpec, Executor, Network, OciRuntimeExecutor, Output};
use slipway::snapshot::Backend;

/// `/bin/busybox` with a `true` link and the user databases: all `/bin/true` needs.
fn rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", dir.join("bin/true")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn run_true(ex: &dyn Executor, spec: &ExecSpec, root: &Path, cancel: &CancelToken) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = ex.run(spec, root, Output::new(&mut stdout, &mut stderr), cancel).unwrap();
    assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&stderr));
}

/// Timings per measurement: 100 (or `SLIPWAY_BENCH_RUNS`) when benchmarking; 3 when the test
/// suite runs the bench once as a test (no `--bench` argument), which only checks it works.
fn runs() -> usize {
    let benching = std::env::args().any(|a| a == "--bench");
    let default = if benching { 100 } else { 3 };
    std::env::var("SLIPWAY_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Median (and min, max) of `runs()` timings of `f`, printed under `name`.
fn median(name: &str, mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs()).map(|_| f()).collect();
    times.sort();
    let mid = times[times.len() / 2];
    eprintln!("{name:<44} median {mid:>10.2?}  (min {:.2?}, max {:.2?})", times[0], times[times.len() - 1]);
    mid
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// A `config.json` equivalent to the sandbox the executors build (namespaces, /proc, /dev,
/// /sys, Docker's capabilities, masked paths), made by the runtime's own `spec` command.
fn raw_bundle(runtime: &str, dir: &Path, rootfs: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new(runtime).args(["spec", "--bundle"]).arg(dir).status().unwrap().success();
    assert!(ok, "{runtime} spec");
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["root"]["path"] = serde_json::json!(rootfs);
    config["root"]["readonly"] = serde_json::json!(false);
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    // Host network, as the embedded runs measured here.
    let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
    namespaces.retain(|ns| ns["type"] != "network");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

fn raw_run(runtime: &Path, bundle: &Path, state: &Path, n: usize, hide_unified: bool) {
    let mut command = Command::new(runtime);
    command.arg("--root").arg(state).args(["run", "--bundle"]).arg(bundle).arg(format!("bench-{n}"));
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    if hide_unified {
        // The executor's workaround for crun on a hybrid cgroup host, done the same way.
        // SAFETY: only unshare(2), mount(2) and umount2(2) on static strings before exec.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn bench(c: &mut Criterion) {
    if std::env::args().any(|a| a == "--list") {
        // Listing (nextest does it before running): name the benchmark, measure nothing.
        c.bench_function("exec_true", |b| b.iter(|| ()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    rootfs(&root);
    let embedded = EmbeddedExecutor::new(env!("CARGO_BIN_EXE_slipway"));
    let mut spec = ExecSpec::new(["/bin/true"]);
    spec.network = Network::Host;
    let cancel = CancelToken::new();
    eprintln!("create sandbox + /bin/true + tear down, host network, {} runs each:", runs());

    let embedded_median = median("embedded executor", || timed(|| run_true(&embedded, &spec, &root, &cancel)));

    // The overlay snapshot around the run, reported alone and with the run.
    let sn = slipway::snapshot::open(&dir.path().join("store"), Some(Backend::Overlay)).unwrap();
    let base = sn.prepare("base", None).unwrap();
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let mounted = base.mount(&target).unwrap();
    rootfs(&target);
    mounted.unmount().unwrap();
    sn.commit("base-committed", "base", None).unwrap();
    let mut n = 0;
    let mut snapshot_cycle = |run: bool| {
        n += 1;
        let key = format!("run-{n}");
        timed(|| {
            let mounts = sn.prepare(&key, Some("base-committed")).unwrap();
            let mounted = mounts.mount(&target).unwrap();
            if run {
                run_true(&embedded, &spec, &target, &cancel);
            }
            mounted.unmount().unwrap();
            sn.remove(&key).unwrap();
        })
    };
    median("overlay snapshot prepare+mount+umount+remove", || snapshot_cycle(false));
    median("embedded executor on an overlay snapshot", || snapshot_cycle(true));

    let mut raw = Vec::new();
    for runtime in ["crun", "runc"] {
        let Ok(ex) = OciRuntimeExecutor::new(runtime) else {
            eprintln!("{runtime}: not installed, skipped (scripts/install-deps installs it)");
            continue;
        };
        median(&format!("oci-runtime executor ({runtime})"), || timed(|| run_true(&ex, &spec, &root, &cancel)));
        let bundle = dir.path().join(format!("bundle-{runtime}"));
        raw_bundle(runtime, &bundle, &root);
        let state = dir.path().join(format!("state-{runtime}"));
        let hybrid = runtime == "crun"
            && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").is_ok_and(|c| !c.trim().is_empty());
        let mut k = 0;
        let label = format!("{runtime} run (bundle by hand)");
        let m = median(&label, || {
            k += 1;
            timed(|| raw_run(ex.runtime(), &bundle, &state, k, hybrid))
        });
        raw.push((runtime, m));
    }
    for (runtime, m) in raw {
        let verdict = if embedded_median < m { "faster" } else { "slower" };
        eprintln!("embedded ({embedded_median:.2?}) is {verdict} than {runtime} run ({m:.2?})");
    }

    c.bench_function("exec_true", |b| b.iter(|| run_true(&embedded, black_box(&spec), &root, &cancel)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
