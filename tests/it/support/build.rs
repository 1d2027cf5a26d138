//! Helpers for `slipway build` tests: a store holding the busybox image `bb`, a context
//! directory, and readers for the image config and rawjson progress.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::rootfs::busybox_rootfs_all_applets;
use super::sshd::ssh_client_rootfs;
use super::{TestContext, describe};

/// A store with the busybox image `bb` and an empty context directory `ctx/`.
pub struct BuildEnv {
    pub tc: TestContext,
}

impl BuildEnv {
    pub fn new() -> BuildEnv {
        BuildEnv::with_import_args(&[])
    }

    /// Like [`BuildEnv::new`], the base imported with `--source-date-epoch EPOCH` (the same
    /// base image id in every store).
    pub fn with_epoch(epoch: &str) -> BuildEnv {
        BuildEnv::with_import_args(&["--source-date-epoch", epoch])
    }

    /// Like [`BuildEnv::new`], `bb` also holding the host's `ssh` client and the libraries it
    /// loads ([`ssh_client_rootfs`]), for steps that log in to a [`super::sshd::TestSshd`].
    pub fn with_ssh_client() -> BuildEnv {
        BuildEnv::with_rootfs(ssh_client_rootfs, &[])
    }

    /// A store whose `bb` was pulled from a local registry (a process-wide one, started once):
    /// the base the way users get theirs. The registry lives as long as the test process.
    pub fn served() -> BuildEnv {
        BuildEnv::served_from(BuildEnv::new())
    }

    /// [`BuildEnv::with_ssh_client`], its `bb` pulled from the local registry like [`BuildEnv::served`].
    pub fn served_with_ssh_client() -> BuildEnv {
        BuildEnv::served_from(BuildEnv::with_ssh_client())
    }

    /// Pushes `local`'s `bb` to the process' registry, then gives a fresh store that pulled it.
    fn served_from(local: BuildEnv) -> BuildEnv {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static REGISTRY: std::sync::OnceLock<super::registry::Registry> = std::sync::OnceLock::new();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let registry = REGISTRY.get_or_init(super::registry::Registry::for_the_process);
        let reference = format!("{}/served/bb:{}", registry.host(), NEXT.fetch_add(1, Ordering::SeqCst));
        local.tc.ok(&["push", "bb", &reference]);
        let tc = TestContext::new();
        tc.ok(&["pull", &reference]);
        tc.ok(&["tag", &reference, "bb"]);
        std::fs::create_dir(tc.path().join("ctx")).unwrap();
        BuildEnv { tc }
    }

    fn with_import_args(extra: &[&str]) -> BuildEnv {
        BuildEnv::with_rootfs(|_| {}, extra)
    }

    /// `bb` imported from a busybox rootfs (all applets) that `extend` adds to.
    pub fn with_rootfs(extend: impl FnOnce(&Path), extra: &[&str]) -> BuildEnv {
        let tc = TestContext::new();
        let rootfs = tc.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        busybox_rootfs_all_applets(&rootfs);
        extend(&rootfs);
        let mut args = vec!["import", rootfs.to_str().unwrap(), "bb"];
        args.extend_from_slice(extra);
        tc.ok(&args);
        std::fs::create_dir(tc.path().join("ctx")).unwrap();
        BuildEnv { tc }
    }

    /// The context directory.
    pub fn ctx(&self) -> PathBuf {
        self.tc.path().join("ctx")
    }

    /// Writes `rel` under the context (parents created).
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.ctx().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Writes the context's `Dockerfile`.
    pub fn dockerfile(&self, text: &str) {
        self.write("Dockerfile", text);
    }

    /// `slipway build ARGS CTX`.
    pub fn build_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.tc.cmd();
        cmd.arg("build").args(args).arg(self.ctx());
        cmd
    }

    /// `slipway build ARGS CTX`, whatever the outcome.
    pub fn build(&self, args: &[&str]) -> Output {
        self.build_cmd(args).output().expect("spawn slipway")
    }

    /// `slipway build ARGS CTX`, which must succeed.
    #[track_caller]
    pub fn build_ok(&self, args: &[&str]) -> Output {
        let out = self.build(args);
        assert!(out.status.success(), "build failed: {}", describe(&out));
        out
    }

    /// `slipway --progress rawjson build ARGS CTX` (must succeed) → its events.
    #[track_caller]
    pub fn build_events(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--progress", "rawjson"];
        all.extend_from_slice(args);
        events(&self.build_ok(&all))
    }

    /// The image config of `image` (`slipway inspect`).
    #[track_caller]
    pub fn config(&self, image: &str) -> Value {
        let out = self.tc.ok(&["inspect", image]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["Config"].clone()
    }

    /// `slipway run IMAGE CMD...` → stdout (must exit 0).
    #[track_caller]
    pub fn run_stdout(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", image];
        args.extend_from_slice(cmd);
        let out = self.tc.ok(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Unpacks `image` with umoci (an independent reader) into `dir`/rootfs.
    #[track_caller]
    pub fn umoci_unpack(&self, image: &str, dir: &Path) -> PathBuf {
        let layout = dir.join("oci");
        self.tc.ok(&["save", image, "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
        let bundle = dir.join("bundle");
        let image_ref = format!("{}:{}", layout.display(), image.rsplit_once(':').map_or("latest", |(_, t)| t));
        let out = Command::new("umoci")
            .args(["unpack", "--image", &image_ref, bundle.to_str().unwrap()])
            .output()
            .expect("run umoci");
        assert!(out.status.success(), "umoci unpack: {}", describe(&out));
        bundle.join("rootfs")
    }
}

/// Spawns `cmd` (stderr piped, stdout to null) and returns once its stderr showed `needle` (a
/// step's first output line, say); the rest of stderr is drained so the child never blocks.
#[track_caller]
pub fn spawn_until(mut cmd: Command, needle: &str) -> std::process::Child {
    use std::process::Stdio;
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn slipway");
    let mut stderr = child.stderr.take().expect("piped");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(std::time::Instant::now() < deadline, "{needle:?} never came: {}", String::from_utf8_lossy(&seen));
        let mut buf = [0u8; 4096];
        let n = std::io::Read::read(&mut stderr, &mut buf).expect("read stderr");
        assert!(n > 0, "stderr closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

/// The JSON lines of a rawjson stderr.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("rawjson line"))
        .collect()
}

/// One step's story in rawjson: name, cache status/reason, start and end timestamps.
#[derive(Debug, Clone)]
pub struct StepEvents {
    pub id: u64,
    pub name: String,
    pub cache: Option<String>,
    pub reason: Option<String>,
    pub started: u64,
    pub ended: Option<u64>,
}

/// Every task that has a cache outcome (the layer steps), in start order.
pub fn steps(events: &[Value]) -> Vec<StepEvents> {
    let mut out: Vec<StepEvents> = Vec::new();
    for e in events {
        let id = e["id"].as_u64().unwrap_or(0);
        match e["type"].as_str().unwrap_or("") {
            "task_started" => out.push(StepEvents {
                id,
                name: e["name"].as_str().unwrap_or("").to_string(),
                cache: None,
                reason: None,
                started: e["ts"].as_u64().unwrap_or(0),
                ended: None,
            }),
            "task_cache" => {
                if let Some(s) = out.iter_mut().find(|s| s.id == id) {
                    s.cache = e["hit"].as_bool().map(|h| if h { "hit" } else { "miss" }.to_string());
                    s.reason = e["reason"].as_str().map(str::to_string);
                }
            }
            "task_done" | "task_failed" => {
                if let Some(s) = out.iter_mut().find(|s| s.id == id) {
                    s.ended = e["ts"].as_u64();
                }
            }
            _ => {}
        }
    }
    out.retain(|s| s.cache.is_some());
    out
}

/// How many steps ran (missed the cache).
pub fn ran(events: &[Value]) -> usize {
    steps(events).iter().filter(|s| s.cache.as_deref() == Some("miss")).count()
}
