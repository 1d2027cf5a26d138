//! Rootless slipway: the whole process in one user namespace.
//!
//! An unprivileged `slipway build` (and every command that opens its store) runs again as a
//! child in a new user namespace where the caller is root and, with `newuidmap`/`newgidmap`
//! and a range in `/etc/subuid` and `/etc/subgid`, ids 1..=N are that range — as rootless
//! Podman and BuildKit map it. There the store, the snapshotter (overlay with `userxattr`, or
//! copies), COPY's owners and every RUN sandbox see the ids a root build sees, so the layers
//! record the same owners. The child also has a private mount namespace (overlay mounts need
//! one owned by its user namespace). The parent forwards SIGINT, SIGTERM and SIGHUP and exits
//! as the child did.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use super::{ExecError, ExitStatus, idmap, sys};

/// Set in the child: the caller's uid on the host (the child itself is uid 0).
pub const HOST_UID_ENV: &str = "SLIPWAY_ROOTLESS_UID";

/// How the child's user namespace maps ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Only the caller, as root: every other id is refused.
    Single,
    /// The caller as root and `count` subordinate ids from `first` on the host as 1..=count.
    Range { first: u32, count: u32 },
}

impl Mapping {
    /// The mapping an unprivileged caller gets (a range when one is configured and the
    /// helpers are installed).
    pub fn probe() -> Mapping {
        match idmap::probe(sys::getuid()) {
            Some(ids) => Mapping::Range { first: ids.uids.0, count: ids.mapped() - 1 },
            None => Mapping::Single,
        }
    }
}

/// How this process' own user namespace maps ids (`None` in the initial one): from its
/// `uid_map`, the range being whatever maps id 1.
pub fn current_mapping() -> Option<Mapping> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    let lines: Vec<Vec<u64>> =
        map.lines().map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()).collect()).collect();
    if lines.iter().any(|f| f[..] == [0, 0, u64::from(u32::MAX)]) {
        return None;
    }
    match lines.iter().find(|f| f.len() == 3 && f[0] == 1) {
        Some(f) => Some(Mapping::Range { first: f[1] as u32, count: f[2] as u32 }),
        None => Some(Mapping::Single),
    }
}

/// Whether this process was started by [`run_as_root_in_user_namespace`] (then the caller's
/// host uid).
pub fn host_uid() -> Option<u32> {
    std::env::var(HOST_UID_ENV).ok()?.parse().ok()
}

/// How many ids from 0 up exist in this process' user namespace (`u32::MAX` in the initial one).
pub fn mapped_ids() -> u32 {
    idmap::mapped_here()
}

/// Runs this very program again with `args` (and `env` added) in a new user and mount
/// namespace, mapped as [`Mapping::probe`] says, and waits for it. Signals the parent
/// receives (SIGINT, SIGTERM, SIGHUP) go to the child; the child dies if the parent does.
pub fn run_as_root_in_user_namespace(args: &[OsString], env: &[(String, OsString)]) -> Result<ExitStatus, ExecError> {
    const FORWARDED: [libc::c_int; 3] = [sys::SIGINT, sys::SIGTERM, sys::SIGHUP];
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|source| ExecError::Prepare { what: "the path of the running slipway binary".to_string(), source })?;
    let spawn_err = |source| ExecError::Spawn { helper: binary.clone(), source };
    let mut command = Command::new(&binary);
    command.args(args).env(HOST_UID_ENV, sys::getuid().to_string());
    for (key, value) in env {
        command.env(key, value);
    }
    let subids = idmap::probe(sys::getuid());
    let (userns, pending) = idmap::user_namespace(subids.as_ref()).map_err(spawn_err)?;
    let seal = sys::HelperSeal::new(&binary, Some(userns), true).map_err(spawn_err)?;
    // Blocked before the spawn, so none is lost in between; the child unblocks them.
    sys::block_signals(&FORWARDED).map_err(spawn_err)?;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls on data prepared before the fork (no allocation, no locks).
    unsafe {
        command.pre_exec(move || sys::prepare_userns_child(&seal));
    }
    let spawned = command.spawn();
    if let Some(pending) = pending {
        pending.finish(spawned.is_ok())?;
    }
    let mut child = spawned.map_err(|source| ExecError::UserNamespace { source })?;
    let pid = child.id() as libc::pid_t;
    std::thread::Builder::new()
        .name("forward-signals".to_string())
        .spawn(move || {
            while let Ok((signal, _)) = sys::sigwait(&FORWARDED) {
                let _ = sys::kill(pid, signal);
            }
        })
        .map_err(spawn_err)?;
    let status = child.wait().map_err(|source| ExecError::Wait { source })?;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(ExitStatus::Exited(code)),
        (None, Some(signal)) => Ok(ExitStatus::Signaled(signal)),
        (None, None) => Err(ExecError::Wait { source: io::Error::other(format!("child ended with {status}")) }),
    }
}

/// Whether the kernel lets this user create a user namespace at all, and why not.
pub fn user_namespaces_allowed() -> Result<(), String> {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user.max_user_namespaces is 0".to_string());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("kernel.unprivileged_userns_clone is 0".to_string());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err("AppArmor restricts unprivileged user namespaces".to_string());
    }
    Ok(())
}
