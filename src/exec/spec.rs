//! What to run: [`ExecSpec`], a plain description of one process in one sandbox.
//!
//! Owns the defaults (Docker's masked and read-only paths, the default `PATH`, the hostname)
//! and the validation every executor applies before starting anything. Knows nothing of how a
//! sandbox is built.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ExecError;

/// The `PATH` a process gets when its environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname a sandbox gets unless the spec names one.
pub const DEFAULT_HOSTNAME: &str = "slipway";

/// runc's default masked paths: files get `/dev/null` bound over them, directories an empty
/// read-only tmpfs. Paths missing in the sandbox are skipped.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The network a sandbox sees (BuildKit's modes).
///
/// The `Default` trait gives [`Network::None`], the safe choice for a library caller; the
/// CLI's default is [`Network::Default`], as in Docker and BuildKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A private network namespace with only a loopback interface (up).
    #[default]
    None,
    /// A private network namespace with outbound access through `slirp4netns` (user-mode NAT,
    /// host loopback disabled, DNS at 10.0.2.3): the process can fetch from the network but not
    /// reach services listening on the host's 127.0.0.1.
    Default,
    /// The host's network namespace.
    Host,
}

/// How much of the sandbox a process gets: BuildKit's `RUN --security` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Docker's default capabilities (none for a user other than root), `no_new_privs`, the
    /// masked and read-only paths, a read-only `/sys`, only the standard devices.
    #[default]
    Sandbox,
    /// BuildKit's insecure mode (its `security.insecure` entitlement), a privileged container
    /// in the same namespaces: every capability the executor itself has (its effective set) in
    /// all five sets, for any user; no `no_new_privs`; no masked nor read-only path (whatever
    /// [`ExecSpec::masked_paths`] and [`ExecSpec::readonly_paths`] say); a writable `/sys`;
    /// every device allowed, with BuildKit's device nodes (`/dev/fuse`, `/dev/kvm`,
    /// `/dev/net/tun`, `/dev/loop*`, …) created unless the sandbox is in a user namespace.
    Insecure,
}

/// A mount beyond the sandbox's own: a host path (`-v`, `RUN --mount=type=bind|cache`), a fresh
/// tmpfs or a secret file. Mounted in order of depth (a parent before what lies below it), then
/// in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox, resolved within the rootfs (symlinks never leave it);
    /// created when missing and removed after the run when still empty (BuildKit's mount
    /// stubs).
    pub target: String,
    pub source: MountSource,
}

/// What a [`Mount`] shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A host path (a directory, a file or a socket); it must exist and have no symbolic link
    /// on its way (give a canonical path): the executor opens it without following links and
    /// mounts what it opened, so a path swapped for a link meanwhile fails the run.
    Host { path: std::path::PathBuf, readonly: bool },
    /// A fresh tmpfs, gone with the sandbox; `size` in bytes (the kernel's default: half the RAM).
    Tmpfs { size: Option<u64> },
    /// A read-only file holding a secret, served from a tmpfs outside the rootfs that is
    /// unmounted when the run ends.
    Secret(SecretFile),
}

/// A secret file's bytes and attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    pub data: Secret,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Secret bytes, never shown: `Debug` gives their length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Mount {
    /// A host path bound at `target`.
    pub fn host(path: impl Into<std::path::PathBuf>, target: impl Into<String>, readonly: bool) -> Mount {
        Mount { target: target.into(), source: MountSource::Host { path: path.into(), readonly } }
    }

    /// Whether the target is a directory (else a file: a host file or socket, a secret).
    pub fn target_is_dir(&self) -> bool {
        match &self.source {
            MountSource::Host { path, .. } => std::fs::metadata(path).is_ok_and(|m| m.is_dir()),
            MountSource::Tmpfs { .. } => true,
            MountSource::Secret(_) => false,
        }
    }

    /// Components of the target, for ordering by depth.
    fn depth(&self) -> usize {
        self.target.split('/').filter(|c| !c.is_empty() && *c != ".").count()
    }
}

/// `mounts` in the order they are mounted: by depth, then as given.
pub fn mount_order(mounts: &[Mount]) -> Vec<&Mount> {
    let mut ordered: Vec<&Mount> = mounts.iter().collect();
    ordered.sort_by_key(|m| m.depth());
    ordered
}

/// Resource limits, applied through cgroups. `None` means "no limit"; asking for a limit that
/// cannot be applied is an error, never a silent no-op.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Memory (and memory + swap where the kernel accounts it) in bytes.
    pub memory: Option<u64>,
    /// Number of processes (tasks) in the sandbox, its init and the helper outside included.
    pub pids: Option<u64>,
    /// CPU bandwidth in CPUs (1.5 = one and a half CPUs' worth of time per period).
    pub cpus: Option<f64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// Size of `/dev/shm` unless the spec says another (Docker's 64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// A resource limit of the process (`--ulimit NAME=SOFT[:HARD]`, Docker's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `nofile`, `nproc`, `core`, … (`RLIMIT_` + upper case).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's `--ulimit` names and their resources.
pub const ULIMIT_NAMES: &[(&str, libc::c_int)] = &[
    ("core", libc::RLIMIT_CORE as libc::c_int),
    ("cpu", libc::RLIMIT_CPU as libc::c_int),
    ("data", libc::RLIMIT_DATA as libc::c_int),
    ("fsize", libc::RLIMIT_FSIZE as libc::c_int),
    ("locks", libc::RLIMIT_LOCKS as libc::c_int),
    ("memlock", libc::RLIMIT_MEMLOCK as libc::c_int),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as libc::c_int),
    ("nice", libc::RLIMIT_NICE as libc::c_int),
    ("nofile", libc::RLIMIT_NOFILE as libc::c_int),
    ("nproc", libc::RLIMIT_NPROC as libc::c_int),
    ("rss", libc::RLIMIT_RSS as libc::c_int),
    ("rtprio", libc::RLIMIT_RTPRIO as libc::c_int),
    ("rttime", libc::RLIMIT_RTTIME as libc::c_int),
    ("sigpending", libc::RLIMIT_SIGPENDING as libc::c_int),
    ("stack", libc::RLIMIT_STACK as libc::c_int),
];

impl Ulimit {
    /// The resource this limit sets, if the name is one Docker knows.
    pub fn resource(&self) -> Option<libc::c_int> {
        ULIMIT_NAMES.iter().find(|(n, _)| *n == self.name).map(|(_, r)| *r)
    }
}

/// One process to run in a fresh sandbox.
///
/// Serialisable because it crosses the process boundary to the sandbox helper as JSON; it is
/// an IPC format, not an on-disk one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// argv; `args[0]` without a `/` is looked up in the sandbox's `PATH`.
    pub args: Vec<String>,
    /// `KEY=value` entries; `PATH` defaults to [`DEFAULT_PATH`] and `HOME` to the user's home.
    pub env: Vec<String>,
    /// Absolute working directory inside the sandbox, created (owned by the user) when missing.
    pub cwd: String,
    /// As Dockerfile `USER`: `name`, `uid`, `name:group`, `uid:gid`; empty means root.
    pub user: String,
    pub hostname: String,
    pub network: Network,
    /// Extra `/etc/hosts` entries (`--add-host`).
    pub extra_hosts: Vec<(String, IpAddr)>,
    pub limits: Limits,
    /// Paths hidden from the process (see [`DEFAULT_MASKED_PATHS`]).
    pub masked_paths: Vec<String>,
    /// Paths mounted read-only (see [`DEFAULT_READONLY_PATHS`]).
    pub readonly_paths: Vec<String>,
    /// [`Security::Sandbox`] unless the process is to run privileged.
    pub security: Security,
    /// Kill the sandbox after this long; the run then fails with [`ExecError::TimedOut`].
    pub timeout: Option<Duration>,
    /// Mounts after the sandbox's own (see [`mount_order`]).
    pub mounts: Vec<Mount>,
    /// Environment entries holding a secret (`RUN --mount=type=secret,env=NAME`), added after
    /// `env`; kept apart so that nothing shows them.
    pub secret_env: Vec<(String, Secret)>,
    /// Size of `/dev/shm` in bytes ([`DEFAULT_SHM_SIZE`] when none).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Resource limits of the process (`--ulimit`); others are inherited.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
}

impl ExecSpec {
    /// A spec with Docker's defaults: root, `/`, no network, default masks, no limits.
    pub fn new<I, S>(args: I) -> ExecSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecSpec {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/".to_string(),
            user: String::new(),
            hostname: DEFAULT_HOSTNAME.to_string(),
            network: Network::None,
            extra_hosts: Vec::new(),
            limits: Limits::default(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
            security: Security::Sandbox,
            timeout: None,
            mounts: Vec::new(),
            secret_env: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
        }
    }

    /// Checks what can be checked before starting anything.
    pub fn validate(&self) -> Result<(), ExecError> {
        let invalid = |reason: String| Err(ExecError::InvalidSpec { reason });
        if self.args.is_empty() || self.args[0].is_empty() {
            return invalid("no command given".to_string());
        }
        if self.args.iter().chain(&self.env).any(|a| a.contains('\0')) {
            return invalid("arguments and environment must not contain NUL bytes".to_string());
        }
        if let Some(bad) = self.env.iter().find(|e| e.find('=').is_none_or(|i| i == 0)) {
            return invalid(format!("environment entry {bad:?} is not KEY=value"));
        }
        if !self.cwd.starts_with('/') || self.cwd.contains('\0') {
            return invalid(format!("working directory {:?} is not an absolute path", self.cwd));
        }
        if self.user.contains(['\0', '\n']) || self.user.matches(':').count() > 1 {
            return invalid(format!("user {:?} is not name[:group]", self.user));
        }
        let host_ok = |h: &str| {
            !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        if !host_ok(&self.hostname) {
            return invalid(format!("hostname {:?} is not a valid host name", self.hostname));
        }
        if let Some((bad, _)) = self.extra_hosts.iter().find(|(h, _)| !host_ok(h)) {
            return invalid(format!("extra host {bad:?} is not a valid host name"));
        }
        if self.shm_size == Some(0) {
            return invalid("the size of /dev/shm must not be 0".to_string());
        }
        for u in &self.ulimits {
            if u.resource().is_none() {
                return invalid(format!("unknown ulimit {:?}", u.name));
            }
            if u.soft > u.hard {
                return invalid(format!("ulimit {}: soft limit {} is above hard limit {}", u.name, u.soft, u.hard));
            }
        }
        for path in self.masked_paths.iter().chain(&self.readonly_paths) {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\0') {
                return invalid(format!("masked or read-only path {path:?} is not a clean absolute path"));
            }
        }
        let clean = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..") && !p.contains('\0');
        for mount in &self.mounts {
            if let MountSource::Host { path, .. } = &mount.source
                && !clean(&path.to_string_lossy())
            {
                return invalid(format!("mount source {} is not a clean absolute path", path.display()));
            }
            if !clean(&mount.target) || mount.target.trim_matches('/').is_empty() {
                return invalid(format!("mount target {:?} is not a clean absolute path below /", mount.target));
            }
        }
        if let Some((bad, _)) = self.secret_env.iter().find(|(name, _)| name.is_empty() || name.contains(['=', '\0'])) {
            return invalid(format!("secret environment name {bad:?} is not a variable name"));
        }
        if let Some((name, _)) = self.secret_env.iter().find(|(_, value)| value.bytes().contains(&0)) {
            return invalid(format!("secret for environment variable {name} contains a NUL byte"));
        }
        if self.limits.pids == Some(0) || self.limits.memory == Some(0) {
            return invalid("a limit of 0 allows nothing to run".to_string());
        }
        if let Some(cpus) = self.limits.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return invalid(format!("cpu limit {cpus} is not a positive number"));
        }
        Ok(())
    }

    /// The process' environment: `env`, then `secret_env`, with `PATH` and `HOME` defaulted (as
    /// runc does; nothing else is added, so RUN steps see only what the build gave them).
    pub fn environment(&self, home: &str) -> Vec<String> {
        let mut env = self.env.clone();
        for (name, value) in &self.secret_env {
            env.push(format!("{name}={}", String::from_utf8_lossy(value.bytes())));
        }
        let set = |key: &str| self.env_var(key).is_some() || self.secret_env.iter().any(|(n, _)| n == key);
        if !set("PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !set("HOME") {
            env.push(format!("HOME={home}"));
        }
        env
    }

    /// Whether a mount is a secret file.
    pub fn has_secret_files(&self) -> bool {
        self.mounts.iter().any(|m| matches!(m.source, MountSource::Secret(_)))
    }

    /// The masked paths the sandbox applies: none in [`Security::Insecure`].
    pub fn applied_masked_paths(&self) -> &[String] {
        match self.security {
            Security::Sandbox => &self.masked_paths,
            Security::Insecure => &[],
        }
    }

    /// The read-only paths the sandbox applies: none in [`Security::Insecure`].
    pub fn applied_readonly_paths(&self) -> &[String] {
        match self.security {
            Security::Sandbox => &self.readonly_paths,
            Security::Insecure => &[],
        }
    }

    /// The value of `key` in the environment, if set.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        ExecSpec::new(["true"]).validate().unwrap();
    }

    #[test]
    fn rejects_bad_specs() {
        let cases: [fn(&mut ExecSpec); 9] = [
            |s| s.args.clear(),
            |s| s.cwd = "rel".into(),
            |s| s.env = vec!["NOEQUALS".into()],
            |s| s.env = vec!["=x".into()],
            |s| s.user = "a:b:c".into(),
            |s| s.hostname = "bad host".into(),
            |s| s.masked_paths.push("/proc/../etc".into()),
            |s| s.limits.pids = Some(0),
            |s| s.limits.cpus = Some(f64::NAN),
        ];
        for (i, edit) in cases.iter().enumerate() {
            let mut spec = ExecSpec::new(["true"]);
            edit(&mut spec);
            assert!(matches!(spec.validate(), Err(ExecError::InvalidSpec { .. })), "case {i} accepted");
        }
    }

    #[test]
    fn insecure_applies_no_masked_nor_read_only_path() {
        let mut spec = ExecSpec::new(["true"]);
        assert_eq!(spec.applied_masked_paths(), spec.masked_paths.as_slice());
        assert_eq!(spec.applied_readonly_paths(), spec.readonly_paths.as_slice());
        assert!(!spec.applied_masked_paths().is_empty() && !spec.applied_readonly_paths().is_empty());
        spec.security = Security::Insecure;
        assert!(spec.applied_masked_paths().is_empty() && spec.applied_readonly_paths().is_empty());
    }

    #[test]
    fn env_var_takes_the_last_entry() {
        let mut spec = ExecSpec::new(["true"]);
        spec.env = vec!["A=1".into(), "AB=2".into(), "A=3".into()];
        assert_eq!(spec.env_var("A"), Some("3"));
        assert_eq!(spec.env_var("B"), None);
    }
}
