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
fn own_path(self_cgroup: &str, matches: impl Fn(&str, &str) -> bool) -> PathBuf {
    self_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .find(|(id, ctrls, _)| matches(id, ctrls))
        .map_or_else(PathBuf::new, |(_, _, path)| PathBuf::from(path.trim_start_matches('/')))
}

impl RunCgroup {
    /// Creates the cgroup `slipway/<id>` under the caller's own and writes the limits. Any
    /// limit that cannot be written is an error naming it; what was created is removed again.
    pub fn create(id: &str, limits: &Limits) -> Result<RunCgroup, ExecError> {
        let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        RunCgroup::create_in(Path::new(ROOT), &self_cgroup, id, limits)
    }

    /// [`create`](Self::create) with the cgroup mount point and the `/proc/self/cgroup` text given.
    fn create_in(root: &Path, self_cgroup: &str, id: &str, limits: &Limits) -> Result<RunCgroup, ExecError> {
        let mut cgroup = RunCgroup { dirs: Vec::new() };
        let result = if root.join("cgroup.controllers").exists() {
            cgroup.create_v2(root, self_cgroup, id, limits)
        } else {
            cgroup.create_v1(root, self_cgroup, id, limits)
        };
        match result {
            Ok(()) => Ok(cgroup),
            Err(err) => {
                let _ = cgroup.remove();
                Err(err)
            }
        }
    }

    fn make_dir(&mut self, parent: &Path, id: &str, limit: &'static str) -> Result<PathBuf, ExecError> {
        let unavailable = |path: PathBuf| {
            move |source: io::Error| ExecError::LimitUnavailable {
                limit,
                reason: format!("cannot create {}", path.display()),
                source: Some(source),
            }
        };
        std::fs::create_dir_all(parent).map_err(unavailable(parent.to_path_buf()))?;
        let dir = parent.join(id);
        std::fs::create_dir(&dir).map_err(unavailable(dir.clone()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    fn create_v1(&mut self, root: &Path, self_cgroup: &str, id: &str, limits: &Limits) -> Result<(), ExecError> {
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
            let mount = root.join(controller);
            if !mount.join("cgroup.procs").exists() {
                return Err(ExecError::LimitUnavailable {
                    limit: controller,
                    reason: format!("the {controller} controller is not mounted at {}", mount.display()),
                    source: None,
                });
            }
            let own = own_path(self_cgroup, |_, ctrls| ctrls.split(',').any(|c| c == controller));
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

    fn create_v2(&mut self, root: &Path, self_cgroup: &str, id: &str, limits: &Limits) -> Result<(), ExecError> {
        let parent = root.join(own_path(self_cgroup, |id, _| id == "0")).join("slipway");
        let needed: Vec<&'static str> =
            [limits.memory.map(|_| "memory"), limits.pids.map(|_| "pids"), limits.cpus.map(|_| "cpu")]
                .into_iter()
                .flatten()
                .collect();
        let first = needed.first().copied().unwrap_or("memory");
        std::fs::create_dir_all(&parent).map_err(|source| ExecError::LimitUnavailable {
            limit: first,
            reason: format!("cannot create {}", parent.display()),
            source: Some(source),
        })?;
        let control = parent.join("cgroup.subtree_control");
        for controller in &needed {
            if std::fs::write(&control, format!("+{controller}")).is_err() {
                return Err(ExecError::LimitUnavailable {
                    limit: controller,
                    reason: format!("cannot enable the {controller} controller in {}", control.display()),
                    source: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn v1_limits_nest_under_the_callers_cgroups() {
        let root = tempfile::tempdir().unwrap();
        for ctrl in ["memory", "pids", "cpu"] {
            std::fs::create_dir_all(root.path().join(ctrl)).unwrap();
            std::fs::write(root.path().join(ctrl).join("cgroup.procs"), "").unwrap();
        }
        let self_cgroup = "5:pids:/\n4:memory:/jobs/42\n2:cpu,cpuacct:/\n0::/\n";
        let limits = Limits { memory: Some(64 << 20), pids: Some(32), cpus: Some(1.5) };
        let mut cgroup = RunCgroup::create_in(root.path(), self_cgroup, "run1", &limits).unwrap();
        let memory = root.path().join("memory/jobs/42/slipway/run1");
        assert_eq!(read(&memory.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
        assert_eq!(read(&root.path().join("pids/slipway/run1/pids.max")), "32");
        assert_eq!(read(&root.path().join("cpu/slipway/run1/cpu.cfs_quota_us")), "150000");
        assert_eq!(read(&root.path().join("cpu/slipway/run1/cpu.cfs_period_us")), "100000");
        assert_eq!(cgroup.procs_files().len(), 3);
        // Plain files cannot be rmdir'ed: clean them, then check the directories go.
        for dir in &cgroup.dirs {
            for entry in std::fs::read_dir(dir).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
        cgroup.remove().unwrap();
        assert!(!memory.exists());
    }

    #[test]
    fn v1_missing_controller_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let limits = Limits { pids: Some(32), ..Limits::default() };
        let err = RunCgroup::create_in(root.path(), "", "run1", &limits).unwrap_err();
        assert!(matches!(err, ExecError::LimitUnavailable { limit: "pids", .. }), "{err:?}");
    }

    #[test]
    fn v2_limits_enable_controllers_and_write_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let limits = Limits { memory: Some(1 << 30), pids: Some(100), cpus: Some(0.5) };
        let mut cgroup = RunCgroup::create_in(root.path(), "0::/user.slice\n", "run2", &limits).unwrap();
        let parent = root.path().join("user.slice/slipway");
        // A plain file keeps only the last write; the kernel file accumulates them.
        assert_eq!(read(&parent.join("cgroup.subtree_control")), "+cpu");
        let dir = parent.join("run2");
        assert_eq!(read(&dir.join("memory.max")), (1u64 << 30).to_string());
        assert_eq!(read(&dir.join("pids.max")), "100");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(cgroup.procs_files(), vec![dir.join("cgroup.procs")]);
        cgroup.dirs.clear();
    }
}
