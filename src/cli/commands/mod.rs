//! One function per subcommand.

use std::path::PathBuf;

use anyhow::{Context, Result};

mod archive;
mod build;
mod build_platforms;
mod builds;
mod check;
mod context;
mod df;
mod exec_init;
mod fsck;
mod images;
mod info;
mod inspect;
mod prune;
mod registry;
mod rootless;
mod run;

use super::args::{Cli, Command, GlobalArgs, SnapshotterArg};

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    if let Some(code) = rootless::reexec_if_unprivileged(&cli)? {
        return Ok(code);
    }
    let progress = super::progress::reporter(cli.global.progress);
    match cli.command {
        Command::Version => {
            println!("slipway {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Info(args) => info::info(&cli.global, &args),
        Command::Import(args) => images::import(&cli.global, &args, &progress),
        Command::Images(args) => images::images(&cli.global, &args),
        Command::Tag(args) => images::tag(&cli.global, &args),
        Command::Rmi(args) => images::rmi(&cli.global, &args),
        Command::Inspect(args) => images::inspect(&cli.global, &args, &progress),
        Command::History(args) => inspect::history(&cli.global, &args, &progress),
        Command::Diff(args) => inspect::diff(&cli.global, &args, &progress),
        Command::Layers(args) => inspect::layers(&cli.global, &args, &progress),
        Command::Save(args) => archive::save(&cli.global, &args, &progress),
        Command::Load(args) => archive::load(&cli.global, &args, &progress),
        Command::Prune(args) => prune::prune(&cli.global, &args, &progress),
        Command::Fsck(args) => fsck::fsck(&cli.global, &args),
        Command::Df(args) => df::df(&cli.global, &args),
        Command::Build(args) => build::build(&cli.global, &args, &progress),
        Command::Builds(args) => builds::builds(&cli.global, &args),
        Command::Check(args) => check::check(&args),
        Command::Context(args) => context::context(&args),
        Command::Run(args) => run::run(&cli.global, &args),
        Command::ExecInit { report_fd } => Ok(exec_init::exec_init(report_fd)),
        Command::Pull(args) => registry::pull(&cli.global, &args, &progress),
        Command::Push(args) => registry::push(&cli.global, &args, &progress),
        Command::Login(args) => registry::login(&args),
        Command::Logout(args) => registry::logout(&args),
    }
}

/// `--build-arg` values: `KEY=VALUE` as given, `KEY` alone takes the caller's environment
/// (and is dropped when the caller has no such variable), as Docker does.
pub fn build_args(args: &[(String, Option<String>)]) -> std::collections::BTreeMap<String, String> {
    args.iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k.clone(), v.clone())),
            None => std::env::var(k).ok().map(|v| (k.clone(), v)),
        })
        .collect()
}

/// Writes a small output file the user asked for (`--iidfile`, `--digestfile`, ...) through a
/// temp file + rename, so a reader never sees half of it.
pub fn write_output_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The store root: `--root`, `SLIPWAY_ROOT`, or the per-user default.
pub fn store_root(global: &GlobalArgs) -> PathBuf {
    if let Some(root) = &global.root {
        return root.clone();
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/slipway");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("slipway")
}

/// Opens the store at the configured root.
pub fn open_store(global: &GlobalArgs) -> Result<crate::store::Store> {
    let root = store_root(global);
    crate::store::Store::open(&root).with_context(|| format!("opening the store at {}", root.display()))
}

/// A cache mount id as printed: as given, or quoted with escapes when it is empty or holds control
/// characters (an id is any text a Dockerfile wrote).
pub fn shown_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.is_empty() || id.chars().any(char::is_control) { format!("{id:?}").into() } else { id.into() }
}

/// Opens the snapshotter of the configured root (`--snapshotter` forces one; else probed).
pub fn open_snapshotter(global: &GlobalArgs) -> Result<Box<dyn crate::snapshot::Snapshotter>> {
    let root = store_root(global);
    let backend = global.snapshotter.map(|arg| match arg {
        SnapshotterArg::Overlay => crate::snapshot::Backend::Overlay,
        SnapshotterArg::Copy => crate::snapshot::Backend::Copy,
    });
    crate::snapshot::open(&root, backend).with_context(|| format!("opening the snapshotter at {}", root.display()))
}

/// The executor `--runtime` (or `SLIPWAY_RUNTIME`) names: the embedded one (default; its
/// helper is this very binary) or the oci-runtime executor driving runc, crun or a path; with
/// `--isolation chroot` the chroot executor (the embedded helper, chrooted without namespaces).
pub fn open_executor(global: &GlobalArgs) -> Result<Box<dyn crate::exec::Executor>> {
    if isolation(global) == "chroot" {
        let helper = std::env::current_exe().context("finding the slipway binary")?;
        return Ok(Box::new(crate::exec::ChrootExecutor::new(helper)));
    }
    match global.runtime.as_deref() {
        None | Some("") | Some("embedded") => {
            let helper = std::env::current_exe().context("finding the slipway binary")?;
            Ok(Box::new(crate::exec::EmbeddedExecutor::new(helper)))
        }
        Some(runtime) => Ok(Box::new(oci_executor(runtime)?)),
    }
}

fn oci_executor(runtime: &str) -> Result<crate::exec::OciRuntimeExecutor> {
    crate::exec::OciRuntimeExecutor::new(runtime).with_context(|| format!("opening the oci runtime {runtime}"))
}

/// The isolation `--isolation` (or `SLIPWAY_ISOLATION`) chose: `default` or `chroot` (the
/// chroot executor, weaker: see SECURITY.md).
pub fn isolation(global: &GlobalArgs) -> &'static str {
    match global.isolation {
        Some(crate::cli::args::IsolationArg::Chroot) => "chroot",
        None | Some(crate::cli::args::IsolationArg::Default) => "default",
    }
}

/// What `info` shows for the executor: `embedded`, or `oci-runtime <path>` (checked usable).
pub fn executor_description(global: &GlobalArgs) -> Result<String> {
    match global.runtime.as_deref() {
        None | Some("") | Some("embedded") => Ok("embedded".to_string()),
        Some(runtime) => Ok(format!("oci-runtime {}", oci_executor(runtime)?.runtime().display())),
    }
}

/// Layer snapshots younger than this are kept by `prune` and `df` counts them as not
/// reclaimable (a running build may be about to use them): 10 minutes, or
/// `SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE` seconds.
pub fn snapshot_min_age() -> Result<std::time::Duration> {
    const ENV: &str = "SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE";
    match std::env::var(ENV) {
        Ok(v) => Ok(std::time::Duration::from_secs(v.parse().with_context(|| format!("{ENV}={v:?} is not seconds"))?)),
        Err(_) => Ok(std::time::Duration::from_secs(600)),
    }
}
