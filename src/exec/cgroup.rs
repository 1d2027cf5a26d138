//! Resource limits through cgroups: one cgroup per run, created before the helper starts (the
//! helper joins it before unsharing) and removed after the sandbox is gone.
//!
//! v1 (one hierarchy per controller: memory, pids, cpu) and v2 (the unified hierarchy) are
//! both supported; the new cgroups nest under the caller's own, so enclosing limits still
//! apply. A run without limits gets no cgroup at all. Knows nothing of namespaces or mounts.

use std::io;
use std::path::{Path, PathBuf};

use super::{ExecError, Limits};

const ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup(s) of one run.
#[derive(Debug)]
pub struct RunCgroup {
    /// Created directories, one per hierarchy.
    dirs: Vec<PathBuf>,
}

fn cgroup_err(path: &Path) -> impl FnOnce(io::Error) -> ExecError + '_ {
    move |source| ExecError::Cgroup { path: path.to_path_buf(), source }
}

/// The caller's own cgroup path in the hierarchy whose `/proc/self/cgroup` line matches.
fn own_path(matches: impl Fn(&str, &str) -> bool) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .find(|(id, ctrls, _)| matches(id, ctrls))
        .map_or_else(PathBuf::new, |(_, _, path)| PathBuf::from(path.trim_start_matches('/')))
}

fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl RunCgroup {
    /// Creates the cgroup `slipway/<id>` under the caller's own and writes the limits. Any
    /// limit that cannot be written is an error naming it; what was created is removed again.
    pub fn create(id: &str, limits: &Limits) -> Result<RunCgroup, ExecError> {
        let mut cgroup = RunCgroup { dirs: Vec::new() };
        let result = if is_v2() { cgroup.create_v2(id, limits) } else { cgroup.create_v1(id, limits) };
        match result {
            Ok(()) => Ok(cgroup),
            Err(err) => {
                let _ = cgroup.remove();
                Err(err)
            }
        }
    }

    fn make_dir(&mut self, parent: &Path, id: &str, limit: &'static str) -> Result<PathBuf, ExecError> {
        let unavailable = |e: io::Error| ExecError::LimitUnavailable {
            limit,
            reason: format!("cannot create a cgroup under {}: {e}", parent.display()),
        };
        std::fs::create_dir_all(parent).map_err(unavailable)?;
        let dir = parent.join(id);
        std::fs::create_dir(&dir).map_err(unavailable)?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    fn create_v1(&mut self, id: &str, limits: &Limits) -> Result<(), ExecError> {
        let mut wanted: Vec<(&'static str, Vec<(&'static str, String)>)> = Vec::new();
        if let Some(bytes) = limits.memory {
            wanted.push(("memory", vec![("memory.limit_in_bytes", bytes.to_string())]));
        }
        if let Some(pids) = limits.pids {
            wanted.push(("pids", vec![("pids.max", pids.to_string())]));
        }
        if let Some(cpus) = limits.cpus {
            let quota = ((cpus * CPU_PERIOD_US as f64) as u64).max(1000);
            wanted.push((
                "cpu",
                vec![("cpu.cfs_period_us", CPU_PERIOD_US.to_string()), ("cpu.cfs_quota_us", quota.to_string())],
            ));
        }
        for (controller, files) in wanted {
            let mount = Path::new(ROOT).join(controller);
            if !mount.join("cgroup.procs").exists() {
                return Err(ExecError::LimitUnavailable {
                    limit: controller,
                    reason: format!("the {controller} controller is not mounted at {}", mount.display()),
                });
            }
            let own = own_path(|_, ctrls| ctrls.split(',').any(|c| c == controller));
            let dir = self.make_dir(&mount.join(own).join("slipway"), id, controller)?;
            for (file, value) in files {
                let path = dir.join(file);
                std::fs::write(&path, &value).map_err(cgroup_err(&path))?;
            }
            if controller == "memory" {
                // Swap counts too where the kernel accounts it; absent without swap accounting.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    let value = limits.memory.map(|m| m.to_string()).unwrap_or_default();
                    std::fs::write(&memsw, value).map_err(cgroup_err(&memsw))?;
                }
            }
        }
        Ok(())
    }

    fn create_v2(&mut self, id: &str, limits: &Limits) -> Result<(), ExecError> {
        let parent = Path::new(ROOT).join(own_path(|id, _| id == "0")).join("slipway");
        let needed: Vec<&'static str> =
            [limits.memory.map(|_| "memory"), limits.pids.map(|_| "pids"), limits.cpus.map(|_| "cpu")]
                .into_iter()
                .flatten()
                .collect();
        let first = needed.first().copied().unwrap_or("memory");
        std::fs::create_dir_all(&parent).map_err(|e| ExecError::LimitUnavailable {
            limit: first,
            reason: format!("cannot create {}: {e}", parent.display()),
        })?;
        let control = parent.join("cgroup.subtree_control");
        for controller in &needed {
            if std::fs::write(&control, format!("+{controller}")).is_err() {
                return Err(ExecError::LimitUnavailable {
                    limit: controller,
                    reason: format!("cannot enable the {controller} controller in {}", control.display()),
                });
            }
        }
        let dir = self.make_dir(&parent, id, first)?;
        let mut files: Vec<(&str, String)> = Vec::new();
        if let Some(bytes) = limits.memory {
            files.push(("memory.max", bytes.to_string()));
            files.push(("memory.swap.max", "0".to_string()));
        }
        if let Some(pids) = limits.pids {
            files.push(("pids.max", pids.to_string()));
        }
        if let Some(cpus) = limits.cpus {
            let quota = ((cpus * CPU_PERIOD_US as f64) as u64).max(1000);
            files.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
        }
        for (file, value) in files {
            let path = dir.join(file);
            if file == "memory.swap.max" && !path.exists() {
                continue;
            }
            std::fs::write(&path, &value).map_err(cgroup_err(&path))?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files the helper writes its pid into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Removes the cgroups (retrying briefly while the kernel finishes tearing down the last
    /// processes).
    pub fn remove(&mut self) -> Result<(), ExecError> {
        let mut first_err = None;
        for dir in self.dirs.drain(..) {
            let mut attempt = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 200 => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => {
                        first_err.get_or_insert(ExecError::Cleanup {
                            what: format!("removing cgroup {}", dir.display()),
                            source: e,
                        });
                        break;
                    }
                }
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
