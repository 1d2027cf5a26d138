//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, with
//! its storage in a temp dir; optionally TLS (a self-signed cert made with `openssl`) and
//! htpasswd Basic auth, or `silly` auth with tokens from a test proxy. The process is killed when the handle drops.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestContext;
use crate::support::proxy::Proxy;

/// The registry binary the tests run.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How a test registry is set up.
#[derive(Default)]
pub struct RegistryConfig {
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1.
    pub tls: bool,
    /// Basic auth with this (user, password) in an htpasswd file (bcrypt).
    pub htpasswd: Option<(String, String)>,
    /// `auth: silly` with this token realm: any `Authorization` is accepted, a request without
    /// one is challenged with `Bearer realm=…` (the test's proxy issues and checks the tokens).
    pub silly_realm: Option<String>,
    /// `http.relativeurls: true`: `Location` headers are path-only.
    pub relative_urls: bool,
    /// SIGKILL the registry when the thread that started it exits (`PR_SET_PDEATHSIG`): see
    /// [`Registry::for_the_process`].
    pub die_with_thread: bool,
}

/// A running registry.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(RegistryConfig::default())
    }

    /// A registry for a `static`, shared by the tests of one process: a static is never dropped,
    /// so nothing would stop the registry when the test binary exits. It is started from a
    /// thread that never ends, with a parent-death signal (the kernel sends it when the thread
    /// that forked the child exits, which for this one is when the process does).
    pub fn for_the_process() -> Registry {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("registry-owner".into())
            .spawn(move || {
                let config = RegistryConfig { die_with_thread: true, ..RegistryConfig::default() };
                tx.send(Registry::start_with(config)).expect("the starting test waits");
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the registry's owner thread");
        rx.recv().expect("the registry started (see the panic above)")
    }

    pub fn start_with(config: RegistryConfig) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} missing: scripts/install-deps installs docker-registry"
        );
        let dir = tempfile::Builder::new().prefix("slipway-registry-").tempdir().expect("temp dir");
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if config.tls {
            // A CA and a leaf it signs: webpki refuses a self-signed CA as a server certificate.
            let d = dir.path();
            let p = |name: &str| d.join(name).to_str().unwrap().to_string();
            let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
            // EC keys: RSA key generation costs seconds.
            run(Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-nodes", "-days", "1"])
                .args(["-subj", "/CN=slipway test ca", "-keyout", &p("ca-key.pem"), "-out", &p("ca.pem")]));
            run(Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .args(["-keyout", &p("key.pem"), "-out", &p("leaf.csr")]));
            std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
            run(Command::new("openssl").args(["x509", "-req", "-days", "1", "-CAcreateserial"]).args([
                "-in",
                &p("leaf.csr"),
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca-key.pem"),
                "-extfile",
                &p("ext.cnf"),
                "-out",
                &p("cert.pem"),
            ]));
            yaml.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        // Still under `http:` (before any top-level `auth:`).
        if config.relative_urls {
            yaml.push_str("  relativeurls: true\n");
        }
        if let Some((user, password)) = &config.htpasswd {
            let out = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                ])
                .arg(password)
                .output()
                .expect("python3 for a bcrypt hash");
            assert!(out.status.success(), "bcrypt hash: {}", String::from_utf8_lossy(&out.stderr));
            let hash = String::from_utf8(out.stdout).unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
            yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n", file.display()));
        }
        if let Some(realm) = &config.silly_realm {
            yaml.push_str(&format!("auth:\n  silly:\n    realm: {realm}\n    service: slipway-test\n"));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let log = dir.path().join("registry.log");
        // Append mode, so that `mark` lines and the registry's own lines interleave.
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&cfg).stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file);
        if config.die_with_thread {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches only the child being set up.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn docker-registry");
        let mut registry = Registry { child, port, dir, log };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {} within 20 s:\n{}", self.port, self.log());
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate that signed a TLS registry's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Everything the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests with `method` whose path contains `path_part` in the access log after the last
    /// `mark(since)`.
    pub fn count_since(&self, since: &str, method: &str, path_part: &str) -> usize {
        let needle = format!("\"{method} ");
        self.log_since(since).lines().filter(|l| l.contains(&needle) && l.contains(path_part)).count()
    }

    /// Writes a line to the log (to mark phases of a test).
    pub fn mark(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        writeln!(f, "=== {text}").unwrap();
    }

    /// The log after the last `mark(text)`.
    pub fn log_since(&self, text: &str) -> String {
        let log = self.log();
        let marker = format!("=== {text}");
        match log.rfind(&marker) {
            Some(i) => log[i..].to_string(),
            None => log,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, panicking with its stderr unless it exits 0.
pub fn ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn slipway");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", stderr(&out));
    out
}

/// A fresh store with busybox imported as `example/busybox:1`; returns it and the image id.
pub fn busybox() -> (TestContext, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    crate::support::rootfs::busybox_rootfs(&rootfs);
    let out = ctx.ok(&["import", rootfs.to_str().unwrap(), "example/busybox:1"]);
    (ctx, stdout(&out).trim().to_string())
}

/// `slipway push IMAGE DEST` with `chunk` as the chunk size (and single-`PUT` limit).
pub fn push_cmd(ctx: &TestContext, image: &str, dest: &str, chunk: u64) -> Command {
    let mut cmd = ctx.cmd();
    cmd.args(["push", image, dest]).env("SLIPWAY_PUSH_CHUNK_SIZE", chunk.to_string());
    cmd
}

/// The manifest of `reference` (on a plain-HTTP registry) as skopeo reads it.
pub fn remote_manifest(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("spawn skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain-HTTP registry with `auth: silly` behind a proxy that issues its Bearer tokens
/// (valid for `ttl`, when given).
pub fn token_registry(ttl: Option<Duration>) -> (Registry, Proxy) {
    let proxy = Proxy::start_on("127.0.0.1");
    proxy.issue_tokens(ttl);
    let registry =
        Registry::start_with(RegistryConfig { silly_realm: Some(proxy.realm()), ..RegistryConfig::default() });
    proxy.set_upstream(registry.port);
    (registry, proxy)
}
