//! `slipway run`: one command in a throwaway container of an image.
//!
//! Unpacks the image into committed layer snapshots (`image::unpack`, reused across runs),
//! prepares an active snapshot on top under a unique key, mounts it, runs the command there
//! with the executor `--runtime` chose (`open_executor`), then unmounts and removes the
//! snapshot whatever happened (an error, SIGINT, SIGTERM). Docker's rules decide the argv,
//! environment, user and directory.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{open_snapshotter, open_store};
use crate::cli::Failure;
use crate::cli::args::{GlobalArgs, NetworkArg, RunArgs};
use crate::exec::{CancelToken, ExecError, ExecSpec, Executor, ExitStatus, Limits, Mount, Network, Output};
use crate::oci::ImageConfig;
use crate::snapshot::{Mounts, Snapshotter};

/// Exit status when slipway itself fails (Docker's convention).
pub const EXIT_RUN_FAILED: u8 = 125;

/// Runs the container; returns the command's exit status (128 + signal when a signal killed it).
pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<u8> {
    let cancel = CancelToken::new();
    let failed = |err: anyhow::Error| {
        err.context(Failure { code: EXIT_RUN_FAILED, message: format!("cannot run {}", args.image) })
    };
    let signals = crate::exec::cancel_on_signals(&cancel).context("watching for signals").map_err(failed)?;
    let result = run_container(global, args, &cancel);
    // A terminal's Ctrl-C also reaches the sandbox helper (same process group), which kills the
    // sandbox: whichever side noticed first, the run ends as interrupted.
    let interrupted = signals.received().map(|signal| 128u8.saturating_add(u8::try_from(signal).unwrap_or(0)));
    match (result, interrupted) {
        (Ok(_), Some(code)) => Ok(code),
        (Ok(status), None) => Ok(exit_code(status)),
        (Err(err), Some(code)) if is_cancelled(&err) => Ok(code),
        (Err(err), _) => Err(failed(err)),
    }
}

fn is_cancelled(err: &anyhow::Error) -> bool {
    err.chain().any(|c| matches!(c.downcast_ref::<ExecError>(), Some(ExecError::Cancelled)))
}

/// The shell's convention: the code itself, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    match status {
        ExitStatus::Exited(code) => u8::try_from(code).unwrap_or(EXIT_RUN_FAILED),
        ExitStatus::Signaled(signal) => u8::try_from(128 + signal).unwrap_or(EXIT_RUN_FAILED),
    }
}

fn run_container(global: &GlobalArgs, args: &RunArgs, cancel: &CancelToken) -> Result<ExitStatus> {
    let store = open_store(global)?;
    let image =
        crate::image::resolve(&store, &args.image).with_context(|| format!("resolving image {}", args.image))?;
    let spec = container_spec(&image.config, args)?;
    spec.validate()?;
    let sn = open_snapshotter(global)?;
    let unpacked =
        crate::image::unpack(&store, sn.as_ref(), &image).with_context(|| format!("unpacking image {}", args.image))?;
    tracing::debug!(extracted = unpacked.extracted, reused = unpacked.reused, "layers unpacked");
    let executor = super::open_executor(global)?;

    let key = format!("run-{}-{}", std::process::id(), unique_nanos());
    let mounts = sn.prepare(&key, unpacked.top.as_deref()).context("preparing the container's snapshot")?;
    let result = run_on(sn.as_ref(), &mounts, executor.as_ref(), &spec, args.interactive, cancel);
    let removed = sn.remove(&key).with_context(|| format!("removing the container's snapshot {key}"));
    match (result, removed) {
        (Ok(status), Ok(())) => Ok(status),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(also)) => {
            tracing::warn!(error = format!("{also:#}"), "cleanup after a failed run");
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
    }
}

/// Mounts the snapshot (unless it is a plain directory), runs, unmounts.
fn run_on(
    sn: &dyn Snapshotter,
    mounts: &Mounts,
    executor: &dyn Executor,
    spec: &ExecSpec,
    interactive: bool,
    cancel: &CancelToken,
) -> Result<ExitStatus> {
    let run = |rootfs: &Path| -> Result<ExitStatus> {
        let (mut stdout, mut stderr) = (Unbuffered(io::stdout()), Unbuffered(io::stderr()));
        let mut output = Output::new(&mut stdout, &mut stderr);
        if interactive {
            output = output.with_stdin(Box::new(io::stdin()));
        }
        Ok(executor.run(spec, rootfs, output, cancel)?)
    };
    if let Some(dir) = mounts.plain_dir() {
        return run(dir);
    }
    let target = crate::snapshot::temp_dir(sn.dir(), "run")
        .with_context(|| format!("creating a mount point in {}", sn.dir().display()))?;
    let mounted = mounts.mount(target.path()).context("mounting the container's snapshot")?;
    let result = run(target.path());
    let unmounted = mounted.unmount().context("unmounting the container's snapshot");
    match (result, unmounted) {
        (Ok(status), Ok(())) => Ok(status),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(also)) => {
            tracing::warn!(error = format!("{also:#}"), "unmount after a failed run");
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
    }
}

/// Docker's rules: `--entrypoint` replaces ENTRYPOINT and drops the image's CMD; a command
/// after the image replaces CMD; env is the image's `Env` then `-e`; `-u` else `User`; `-w`
/// else `WorkingDir` else `/`.
fn container_spec(config: &ImageConfig, args: &RunArgs) -> Result<ExecSpec> {
    let image = config.config.clone().unwrap_or_default();
    let (entrypoint, cmd) = match &args.entrypoint {
        Some(entrypoint) if entrypoint.is_empty() => (Vec::new(), args.command.clone()),
        Some(entrypoint) => (vec![entrypoint.clone()], args.command.clone()),
        None if args.command.is_empty() => (image.entrypoint.unwrap_or_default(), image.cmd.unwrap_or_default()),
        None => (image.entrypoint.unwrap_or_default(), args.command.clone()),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command: the image has no ENTRYPOINT or CMD, give one after the image name");
    }
    let mut spec = ExecSpec::new(argv);
    spec.env = image.env.unwrap_or_default();
    for entry in &args.env {
        let entry = match entry.split_once('=') {
            Some(_) => entry.clone(),
            None => match std::env::var(entry) {
                Ok(value) => format!("{entry}={value}"),
                // Docker leaves a variable the caller does not have unset.
                Err(_) => continue,
            },
        };
        set_env(&mut spec.env, entry);
    }
    spec.user = args.user.clone().or(image.user).unwrap_or_default();
    spec.cwd = args.workdir.clone().or(image.working_dir).filter(|d| !d.is_empty()).unwrap_or_else(|| "/".to_string());
    spec.network = match args.network {
        NetworkArg::Default => Network::Default,
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    };
    spec.limits = Limits { memory: args.memory, pids: args.pids_limit, cpus: args.cpus };
    spec.mounts = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<_>>()?;
    Ok(spec)
}

/// `HOST:CTR[:ro|rw]` with absolute paths and no `..`; the host path must exist.
fn parse_volume(volume: &str) -> Result<Mount> {
    let parts: Vec<&str> = volume.split(':').collect();
    let (host, target, readonly) = match parts[..] {
        [host, target] => (host, target, false),
        [host, target, "ro"] => (host, target, true),
        [host, target, "rw"] => (host, target, false),
        _ => bail!("volume {volume:?} is not HOST:CONTAINER[:ro|rw]"),
    };
    for path in [host, target] {
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            bail!("volume {volume:?}: {path:?} is not an absolute path without ..");
        }
    }
    if !Path::new(host).exists() {
        bail!("volume {volume:?}: {host} does not exist");
    }
    // Canonical: the executor binds a source without following links.
    let host = std::fs::canonicalize(host).with_context(|| format!("volume {volume:?}: resolving {host}"))?;
    Ok(Mount::host(host, target, readonly))
}

/// Sets `KEY=value` in `env`, replacing an entry with the same key in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
    match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

fn unique_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Passes every write through at once, so output streams as the command makes it.
struct Unbuffered<W: Write>(W);

impl<W: Write> Write for Unbuffered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ContainerConfig;

    fn args(command: &[&str]) -> RunArgs {
        RunArgs {
            interactive: false,
            volumes: Vec::new(),
            env: Vec::new(),
            user: None,
            workdir: None,
            entrypoint: None,
            network: NetworkArg::None,
            memory: None,
            pids_limit: None,
            cpus: None,
            image: "img".to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn config(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).filter(|v| !v.is_empty());
        ImageConfig {
            config: Some(ContainerConfig {
                entrypoint: list(entrypoint),
                cmd: list(cmd),
                env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
                user: Some("nobody".into()),
                working_dir: Some("/srv".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_dockers_rules() {
        let argv = |cfg: &ImageConfig, a: &RunArgs| container_spec(cfg, a).unwrap().args;
        let cfg = config(&["/ep", "x"], &["c1", "c2"]);
        assert_eq!(argv(&cfg, &args(&[])), ["/ep", "x", "c1", "c2"]);
        assert_eq!(argv(&cfg, &args(&["y"])), ["/ep", "x", "y"]);
        let mut a = args(&[]);
        a.entrypoint = Some("/other".into());
        assert_eq!(argv(&cfg, &a), ["/other"]);
        let mut a = args(&["z"]);
        a.entrypoint = Some(String::new());
        assert_eq!(argv(&cfg, &a), ["z"]);
        assert!(container_spec(&config(&[], &[]), &args(&[])).is_err());
    }

    #[test]
    fn env_user_and_workdir() {
        let cfg = config(&[], &["sh"]);
        let spec = container_spec(&cfg, &args(&[])).unwrap();
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("nobody", "/srv"));
        let mut a = args(&[]);
        a.env = vec!["A=2".into(), "B=3".into(), "SLIPWAY_SURELY_UNSET_VAR".into()];
        a.user = Some("1000".into());
        a.workdir = Some("/tmp".into());
        let spec = container_spec(&cfg, &a).unwrap();
        assert_eq!(spec.env, ["A=2", "PATH=/bin", "B=3"]);
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("1000", "/tmp"));
        let spec = container_spec(&ImageConfig::default(), &args(&["sh"])).unwrap();
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("", "/"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::Exited(3)), 3);
        assert_eq!(exit_code(ExitStatus::Signaled(9)), 137);
    }
}
