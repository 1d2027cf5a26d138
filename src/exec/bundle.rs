//! The OCI runtime bundle's `config.json` for one [`ExecSpec`], built from `oci-spec`'s
//! runtime types: the same sandbox the embedded executor builds, described for runc or crun.
//!
//! Owns the translation only (namespaces, Docker's capabilities, masked and read-only paths,
//! rlimits, cgroup limits, user, environment, mounts; insecure mode as BuildKit's
//! `security.WithInsecureSpec`); the caller resolves the user, prepares the files it names
//! and says what insecure mode grants. Knows nothing of processes.

use std::path::{Path, PathBuf};

use std::collections::HashSet;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::caps;
use super::devices::DeviceNode;
use super::spec::{ExecSpec, MountSource, Network, Security, mount_order};
use super::user::ExecUser;
use super::{DOCKER_DEFAULT_CAPS, ExecError};

/// Where the init (tini) is bound inside the container: in the runtime's own `/dev` tmpfs,
/// so the rootfs gets no mount point.
pub const INIT_PATH: &str = "/dev/.slipway-init";

/// What the bundle refers to besides the spec.
pub struct BundleFiles<'a> {
    pub rootfs: &'a Path,
    pub hosts: &'a Path,
    pub resolv: &'a Path,
    /// A static init bound read-only at [`INIT_PATH`], pid 1 of the container.
    pub init: &'a Path,
    /// The network namespace to join (`Network::Default`: the one slirp4netns serves).
    pub netns: Option<PathBuf>,
    /// The cgroup path the runtime creates and removes.
    pub cgroup: String,
    /// Insecure mode: the capabilities granted (the caller's own effective set, a bit mask)
    /// and the device nodes made; unused in the sandbox.
    pub insecure_caps: u64,
    pub insecure_devices: &'a [DeviceNode],
}

fn build_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> ExecError {
    move |source| ExecError::OciSpec { what, source }
}

/// The process' limits: the caller's own `RLIMIT_NOFILE` (what the embedded executor's payload
/// inherits) unless the spec sets it, and the spec's `--ulimit`s.
fn rlimits(spec: &ExecSpec) -> Result<Vec<oci_spec::runtime::PosixRlimit>, ExecError> {
    let rlimit = |typ, soft, hard| {
        PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build().map_err(build_err("rlimits"))
    };
    let mut out = Vec::new();
    if !spec.ulimits.iter().any(|u| u.name == "nofile") {
        let (soft, hard) = nofile_limit();
        out.push(rlimit(PosixRlimitType::RlimitNofile, soft, hard)?);
    }
    for u in &spec.ulimits {
        let typ = match u.name.as_str() {
            "core" => PosixRlimitType::RlimitCore,
            "cpu" => PosixRlimitType::RlimitCpu,
            "data" => PosixRlimitType::RlimitData,
            "fsize" => PosixRlimitType::RlimitFsize,
            "locks" => PosixRlimitType::RlimitLocks,
            "memlock" => PosixRlimitType::RlimitMemlock,
            "msgqueue" => PosixRlimitType::RlimitMsgqueue,
            "nice" => PosixRlimitType::RlimitNice,
            "nofile" => PosixRlimitType::RlimitNofile,
            "nproc" => PosixRlimitType::RlimitNproc,
            "rss" => PosixRlimitType::RlimitRss,
            "rtprio" => PosixRlimitType::RlimitRtprio,
            "rttime" => PosixRlimitType::RlimitRttime,
            "sigpending" => PosixRlimitType::RlimitSigpending,
            "stack" => PosixRlimitType::RlimitStack,
            other => return Err(ExecError::InvalidSpec { reason: format!("unknown ulimit {other:?}") }),
        };
        out.push(rlimit(typ, u.soft, u.hard)?);
    }
    Ok(out)
}

/// The `config.json` for `spec` run as `user`.
pub fn config(spec: &ExecSpec, user: &ExecUser, files: &BundleFiles<'_>) -> Result<Spec, ExecError> {
    let env = spec.environment(&user.home);
    let capabilities = capabilities(spec.security, user, files.insecure_caps)?;
    let rlimits = rlimits(spec)?;
    // tini dies with its parent, the runtime process (which dies with slipway): a killed
    // slipway leaves no container running.
    let mut args = vec![INIT_PATH.to_string(), "-p".to_string(), "SIGKILL".to_string(), "--".to_string()];
    args.extend(spec.args.iter().cloned());
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.groups.clone())
                .build()
                .map_err(build_err("user"))?,
        )
        .args(args)
        .env(env)
        .cwd(PathBuf::from(&spec.cwd))
        .capabilities(capabilities)
        .rlimits(rlimits)
        // BuildKit never sets it; slipway's sandbox does, insecure mode (where it would guard
        // nothing) does not.
        .no_new_privileges(spec.security == Security::Sandbox)
        .build()
        .map_err(build_err("process"))?;

    let mut namespaces = Vec::new();
    let mut kinds = vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts];
    kinds.extend([LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup]);
    for kind in kinds {
        namespaces.push(LinuxNamespaceBuilder::default().typ(kind).build().map_err(build_err("namespaces"))?);
    }
    match (spec.network, &files.netns) {
        (Network::Host, _) => {}
        (_, Some(path)) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()
                .map_err(build_err("namespaces"))?,
        ),
        (_, None) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()
                .map_err(build_err("namespaces"))?,
        ),
    }

    let mut resources = LinuxResourcesBuilder::default().devices(device_cgroup(spec.security)?);
    if let Some(bytes) = spec.limits.memory {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        resources = resources
            .memory(LinuxMemoryBuilder::default().limit(bytes).swap(bytes).build().map_err(build_err("memory"))?);
    }
    if let Some(pids) = spec.limits.pids {
        let pids = i64::try_from(pids).unwrap_or(i64::MAX);
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build().map_err(build_err("pids"))?);
    }
    if let Some(cpus) = spec.limits.cpus {
        const PERIOD: u64 = 100_000;
        let quota = (cpus * PERIOD as f64).round().max(1000.0) as i64;
        resources =
            resources.cpu(LinuxCpuBuilder::default().quota(quota).period(PERIOD).build().map_err(build_err("cpu"))?);
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(spec.applied_masked_paths().to_vec())
        .readonly_paths(spec.applied_readonly_paths().to_vec())
        .devices(devices(spec.security, files.insecure_devices)?)
        .resources(resources.build().map_err(build_err("resources"))?)
        .cgroups_path(PathBuf::from(&files.cgroup))
        .build()
        .map_err(build_err("linux section"))?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(files.rootfs).readonly(false).build().map_err(build_err("root"))?)
        .hostname(spec.hostname.clone())
        .mounts(mounts(spec, files)?)
        .process(process)
        .linux(linux)
        .build()
        .map_err(build_err("config"))
}

/// Docker's set for root and none for other users (only the bounding set stays); insecure
/// mode: `insecure` (a bit mask) in all five sets, whatever the user.
fn capabilities(security: Security, user: &ExecUser, insecure: u64) -> Result<LinuxCapabilities, ExecError> {
    let parse = |name: &str| name.trim_start_matches("CAP_").parse::<Capability>().ok();
    let builder = LinuxCapabilitiesBuilder::default();
    let builder = match security {
        Security::Sandbox => {
            let caps: HashSet<Capability> = DOCKER_DEFAULT_CAPS.iter().filter_map(|(_, name)| parse(name)).collect();
            let granted = if user.uid == 0 { caps.clone() } else { HashSet::new() };
            builder
                .bounding(caps)
                .effective(granted.clone())
                .permitted(granted)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
        }
        Security::Insecure => {
            let all: HashSet<Capability> = caps::names(insecure).filter_map(parse).collect();
            builder
                .bounding(all.clone())
                .effective(all.clone())
                .permitted(all.clone())
                .inheritable(all.clone())
                .ambient(all)
        }
    };
    builder.build().map_err(build_err("capabilities"))
}

/// The devices cgroup: nothing beyond the runtime's standard devices in the sandbox; every
/// character and block device in insecure mode.
fn device_cgroup(security: Security) -> Result<Vec<LinuxDeviceCgroup>, ExecError> {
    let rule = |allow: bool, typ: Option<LinuxDeviceType>| {
        let mut rule = LinuxDeviceCgroupBuilder::default();
        rule = rule.allow(allow).access("rwm");
        if let Some(typ) = typ {
            rule = rule.typ(typ);
        }
        rule.build().map_err(build_err("devices"))
    };
    match security {
        Security::Sandbox => Ok(vec![rule(false, None)?]),
        Security::Insecure => Ok(vec![rule(true, Some(LinuxDeviceType::C))?, rule(true, Some(LinuxDeviceType::B))?]),
    }
}

/// Insecure mode's device nodes, mode 0666 (runc's default, made explicit for crun).
fn devices(security: Security, nodes: &[DeviceNode]) -> Result<Vec<LinuxDevice>, ExecError> {
    if security == Security::Sandbox {
        return Ok(Vec::new());
    }
    nodes
        .iter()
        .map(|node| {
            LinuxDeviceBuilder::default()
                .path(&node.path)
                .typ(if node.block { LinuxDeviceType::B } else { LinuxDeviceType::C })
                .major(i64::from(node.major))
                .minor(i64::from(node.minor))
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(build_err("devices"))
        })
        .collect()
}

fn mount(destination: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount, ExecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(build_err("mounts"))
}

/// runc's defaults (`/proc`, a tmpfs `/dev` with `/dev/pts`, `/dev/shm`, `/dev/mqueue`, a
/// read-only `/sys`, writable in insecure mode), the generated `/etc` files, the init and the spec's binds (the runtime
/// creates their targets beneath the rootfs).
fn mounts(spec: &ExecSpec, files: &BundleFiles<'_>) -> Result<Vec<Mount>, ExecError> {
    let p = Path::new;
    let shm = format!("size={}", spec.shm_size.unwrap_or(super::DEFAULT_SHM_SIZE));
    let mut mounts = vec![
        mount("/proc", "proc", p("proc"), &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", p("tmpfs"), &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            p("devpts"),
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/shm", "tmpfs", p("shm"), &["nosuid", "noexec", "nodev", "mode=1777", &shm])?,
        mount("/dev/mqueue", "mqueue", p("mqueue"), &["nosuid", "noexec", "nodev"])?,
    ];
    let sys_access = match spec.security {
        Security::Sandbox => "ro",
        Security::Insecure => "rw",
    };
    mounts.push(mount("/sys", "sysfs", p("sysfs"), &["nosuid", "noexec", "nodev", sys_access])?);
    mounts.push(mount("/etc/hosts", "bind", files.hosts, &["bind", "nosuid", "nodev", "noexec"])?);
    mounts.push(mount("/etc/resolv.conf", "bind", files.resolv, &["bind", "nosuid", "nodev", "noexec"])?);
    mounts.push(mount(INIT_PATH, "bind", files.init, &["bind", "ro", "nosuid", "nodev"])?);
    for m in mount_order(&spec.mounts) {
        match &m.source {
            MountSource::Host { path, readonly } => {
                let options: &[&str] = if *readonly { &["rbind", "ro"] } else { &["rbind"] };
                mounts.push(mount(&m.target, "bind", path, options)?);
            }
            MountSource::Tmpfs { size } => {
                let size = size.map(|s| format!("size={s}"));
                let options: Vec<&str> = ["nosuid", "nodev"].into_iter().chain(size.as_deref()).collect();
                mounts.push(mount(&m.target, "tmpfs", p("tmpfs"), &options)?);
            }
            MountSource::Secret(_) => {
                let reason = format!("the secret at {} was not bound before the bundle was written", m.target);
                return Err(ExecError::InvalidSpec { reason });
            }
        }
    }
    Ok(mounts)
}

/// The caller's own `RLIMIT_NOFILE` (what the embedded executor's payload inherits).
fn nofile_limit() -> (u64, u64) {
    match rustix::process::getrlimit(rustix::process::Resource::Nofile) {
        rustix::process::Rlimit { current: Some(soft), maximum: Some(hard) } => (soft, hard),
        rustix::process::Rlimit { current, maximum } => (current.unwrap_or(1 << 20), maximum.unwrap_or(1 << 20)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{DEFAULT_PATH, Limits, Mount};

    fn files(netns: Option<PathBuf>) -> BundleFiles<'static> {
        BundleFiles {
            rootfs: Path::new("/r"),
            hosts: Path::new("/run/hosts"),
            resolv: Path::new("/run/resolv.conf"),
            init: Path::new("/usr/bin/tini-static"),
            netns,
            cgroup: "slipway/1-2".to_string(),
            insecure_caps: 0,
            insecure_devices: &[],
        }
    }

    fn user(uid: u32) -> ExecUser {
        ExecUser { uid, gid: uid, groups: vec![uid], home: "/home".to_string() }
    }

    #[test]
    fn the_same_sandbox_as_the_embedded_executor() {
        let mut spec = ExecSpec::new(["sh", "-c", "true"]);
        spec.network = Network::Default;
        spec.limits = Limits { memory: Some(1 << 20), pids: Some(10), cpus: Some(0.5) };
        spec.mounts = vec![Mount::host("/src", "/dst", true)];
        let json = serde_json::to_value(config(&spec, &user(0), &files(Some("/proc/1/fd/9".into()))).unwrap()).unwrap();
        assert_eq!(json["process"]["args"], serde_json::json!([INIT_PATH, "-p", "SIGKILL", "--", "sh", "-c", "true"]));
        assert_eq!(json["process"]["noNewPrivileges"], true);
        let caps = json["process"]["capabilities"]["effective"].as_array().unwrap();
        assert_eq!(caps.len(), DOCKER_DEFAULT_CAPS.len());
        assert!(
            json["process"]["env"].as_array().unwrap().contains(&serde_json::json!(format!("PATH={DEFAULT_PATH}")))
        );
        let namespaces: Vec<&serde_json::Value> = json["linux"]["namespaces"].as_array().unwrap().iter().collect();
        let net = namespaces.iter().find(|n| n["type"] == "network").unwrap();
        assert_eq!(net["path"], "/proc/1/fd/9");
        assert_eq!(namespaces.len(), 6);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 10);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["maskedPaths"].as_array().unwrap().len(), spec.masked_paths.len());
        let mounts = json["mounts"].as_array().unwrap();
        let dst = mounts.iter().find(|m| m["destination"] == "/dst").unwrap();
        assert_eq!(dst["options"], serde_json::json!(["rbind", "ro"]));
        assert!(mounts.iter().any(|m| m["destination"] == INIT_PATH && m["source"] == "/usr/bin/tini-static"));
    }

    #[test]
    fn insecure_mode_is_buildkits() {
        let mut spec = ExecSpec::new(["true"]);
        spec.security = Security::Insecure;
        let nodes = [DeviceNode { path: "/dev/loop3".into(), block: true, major: 7, minor: 3 }];
        let files = BundleFiles { insecure_caps: 1 << 21 | 1, insecure_devices: &nodes, ..files(None) };
        let json = serde_json::to_value(config(&spec, &user(1000), &files).unwrap()).unwrap();
        for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
            let mut caps: Vec<&str> =
                json["process"]["capabilities"][set].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            caps.sort();
            assert_eq!(caps, ["CAP_CHOWN", "CAP_SYS_ADMIN"], "{set}, for any user");
        }
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(json["linux"]["readonlyPaths"], serde_json::json!([]));
        assert_eq!(
            json["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "type": "c", "access": "rwm"}, {"allow": true, "type": "b", "access": "rwm"}])
        );
        let device = &json["linux"]["devices"][0];
        assert_eq!(
            (&device["path"], &device["type"], &device["major"], &device["minor"]),
            (&"/dev/loop3".into(), &"b".into(), &7.into(), &3.into())
        );
        assert_eq!(device["fileMode"], 0o666);
        let sys = json["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap();
        assert_eq!(sys["options"], serde_json::json!(["nosuid", "noexec", "nodev", "rw"]));
        // The sandbox, for comparison: what the same files give without insecure mode.
        spec.security = Security::Sandbox;
        let json = serde_json::to_value(config(&spec, &user(0), &files).unwrap()).unwrap();
        assert_eq!(json["process"]["capabilities"]["bounding"].as_array().unwrap().len(), DOCKER_DEFAULT_CAPS.len());
        assert_eq!(json["process"]["capabilities"]["ambient"], serde_json::json!([]));
        assert_eq!(json["linux"]["resources"]["devices"], serde_json::json!([{"allow": false, "access": "rwm"}]));
        assert!(json["linux"].get("devices").is_none_or(|d| d == &serde_json::json!([])));
        assert_eq!(json["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn other_users_get_no_capabilities_and_host_network_no_namespace() {
        let mut spec = ExecSpec::new(["true"]);
        spec.network = Network::Host;
        let json = serde_json::to_value(config(&spec, &user(1000), &files(None)).unwrap()).unwrap();
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["capabilities"]["effective"], serde_json::json!([]));
        assert_eq!(json["process"]["capabilities"]["bounding"].as_array().unwrap().len(), DOCKER_DEFAULT_CAPS.len());
        assert!(!json["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
        assert!(json["linux"]["resources"].get("memory").is_none());
    }
}
