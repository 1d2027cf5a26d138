//! `slipway info`.

use anyhow::{Context, Result};

use super::{open_snapshotter, open_store, shown_id, store_root};
use crate::cache::{CacheMountInfo, CacheMounts};
use crate::cli::args::{Format, GlobalArgs, InfoArgs};
use crate::cli::units::size;
use crate::exec::emulation::{PlatformSupport, Support};

/// Prints the store root, the parts in use and the cache mounts.
pub fn info(global: &GlobalArgs, args: &InfoArgs) -> Result<u8> {
    let root = store_root(global);
    // Root inside a user namespace is still rootless on the host.
    let rootless = !rustix::process::geteuid().is_root() || crate::snapshot::in_user_namespace();
    // The snapshotter lives in the store root: open the store first so the root is created
    // with its owner-only mode, then probe.
    open_store(global)?;
    let snapshotter = open_snapshotter(global)?.backend().to_string();
    let executor = super::executor_description(global)?;
    let checks = host_checks(global, &snapshotter);
    let isolation = super::isolation(global);
    let platforms = crate::exec::emulation::Emulation::probe().platforms();
    let mounts = CacheMounts::open(&root)?;
    let cache_mounts =
        mounts.list().with_context(|| format!("listing the cache mounts in {}", mounts.dir().display()))?;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "root": root,
                "rootless": rootless,
                "snapshotter": snapshotter,
                "executor": executor,
                "isolation": isolation,
                "checks": checks.iter().map(|(k, v)| (k.replace(' ', "_").replace("/dev/net/", ""), v.as_str().into())).collect::<serde_json::Map<_, _>>(),
                "cache_mounts": cache_mounts.iter().map(|m| serde_json::json!({
                    "id": m.id,
                    "instances": m.instances,
                    "bytes": m.bytes,
                    "last_used": crate::oci::time::rfc3339(m.last_used),
                })).collect::<Vec<_>>(),
                "platforms": platforms.iter().map(platform_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let mut lines = vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("root", root.display().to_string()),
                ("rootless", rootless.to_string()),
                ("snapshotter", snapshotter),
                ("executor", executor),
                ("isolation", isolation.to_string()),
            ];
            lines.extend(checks);
            for (key, value) in lines {
                println!("{:<17}{value}", format!("{key}:"));
            }
            print_cache_mounts(&cache_mounts);
            print_platforms(&platforms);
        }
    }
    Ok(0)
}

/// What decides how a build runs for this user on this machine, each with its reason and, where
/// something is missing, the fix: user namespaces, subordinate ids, overlay, the default network.
fn host_checks(global: &GlobalArgs, snapshotter: &str) -> Vec<(&'static str, String)> {
    use crate::exec::userns::{self, Mapping};
    let host_root = rustix::process::geteuid().is_root() && userns::host_uid().is_none();
    let in_child = userns::host_uid().is_some();
    let namespaces = match (host_root, in_child, userns::user_namespaces_allowed()) {
        (true, _, _) => "not needed (root)".to_string(),
        (_, true, _) => "allowed: slipway runs as root of one of its own".to_string(),
        (_, _, Ok(())) => "allowed, but slipway could not enter one: builds fail".to_string(),
        (_, _, Err(why)) => format!("not allowed ({why}): builds need one, or root"),
    };
    let mapping = if in_child { userns::current_mapping() } else { Some(Mapping::probe()) };
    let subids = match (host_root, mapping) {
        (true, _) => "not needed (root)".to_string(),
        (_, Some(Mapping::Range { first, count })) => {
            format!("{first}-{} on the host are ids 1-{count} in a build", u64::from(first) + u64::from(count) - 1)
        }
        (_, _) => "none: only root exists in a build, a step that needs another id fails; add a range: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER (and apt-get install uidmap)".to_string(),
    };
    let overlay = match (snapshotter, global.snapshotter.is_some()) {
        ("overlay", _) if crate::snapshot::in_user_namespace() => "yes, in the user namespace (userxattr)".to_string(),
        ("overlay", _) => "yes".to_string(),
        (_, true) => "not tried (--snapshotter copy)".to_string(),
        (_, false) => match crate::snapshot::probe_overlay(&store_root(global)) {
            Ok(()) => "yes".to_string(),
            Err(e) => format!("no ({}): files are copied into each snapshot", crate::engine::records::error_chain(&e)),
        },
    };
    let slirp = match crate::exec::slirp_binary() {
        Ok(path) => path.display().to_string(),
        Err(_) => "not installed: RUN and run with --network default need it (apt-get install slirp4netns)".to_string(),
    };
    let tun = match crate::exec::tun_usable() {
        Ok(()) => "usable".to_string(),
        Err(crate::exec::ExecError::TunUnavailable { source }) => format!(
            "not usable ({source}): --network default fails; make it usable (chmod 0666 /dev/net/tun) or use --network none or host"
        ),
        Err(e) => e.to_string(),
    };
    vec![
        ("user namespaces", namespaces),
        ("subordinate ids", subids),
        ("overlay", overlay),
        ("slirp4netns", slirp),
        ("/dev/net/tun", tun),
    ]
}

/// `platforms:` and one line per platform: native, emulated by which binfmt_misc entry, or not
/// available with why, then on the next line the commands that would make it available.
fn print_platforms(platforms: &[PlatformSupport]) {
    println!("platforms:");
    let width = platforms.iter().map(|p| p.platform.to_string().len()).max().unwrap_or(0);
    for p in platforms {
        let name = p.platform.to_string();
        match &p.support {
            Support::Native => println!("  {name:<width$}  native"),
            Support::Emulated { entry, interpreter } => {
                println!("  {name:<width$}  emulated by binfmt_misc entry {entry} ({})", interpreter.display())
            }
            Support::Unavailable(e) => {
                println!("  {name:<width$}  not available: {}", e.reason);
                println!("  {:<width$}  {}", "", e.fix);
            }
        }
    }
}

/// One platform in `info --format json`: `support` is `native`, `emulated` (with `entry` and
/// `interpreter`) or `unavailable` (with `reason` and the `fix` commands, in order).
fn platform_json(p: &PlatformSupport) -> serde_json::Value {
    let platform = p.platform.to_string();
    match &p.support {
        Support::Native => serde_json::json!({ "platform": platform, "support": "native" }),
        Support::Emulated { entry, interpreter } => serde_json::json!({
            "platform": platform, "support": "emulated", "entry": entry, "interpreter": interpreter,
        }),
        Support::Unavailable(e) => serde_json::json!({
            "platform": platform, "support": "unavailable", "reason": e.reason.to_string(), "fix": e.fix.commands,
        }),
    }
}

/// `cache mounts: N, SIZE` and one line per mount: id, size, instances.
fn print_cache_mounts(mounts: &[CacheMountInfo]) {
    if mounts.is_empty() {
        println!("cache mounts: none");
        return;
    }
    let total: u64 = mounts.iter().map(|m| m.bytes).sum();
    println!("cache mounts: {}, {}", mounts.len(), size(total));
    let rows: Vec<_> = mounts.iter().map(|m| (shown_id(&m.id), size(m.bytes), m.instances)).collect();
    let id_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let size_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (id, bytes, instances) in rows {
        let plural = if instances == 1 { "" } else { "s" };
        println!("  {id:<id_width$}  {bytes:>size_width$}  {instances} instance{plural}");
    }
}
