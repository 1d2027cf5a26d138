//! `slipway fsck [--strict] [--repair] [--format table|json]`.

use anyhow::{Context, Result};

use super::store_root;
use crate::cli::EXIT_FAILURE;
use crate::cli::args::{Format, FsckArgs, GlobalArgs};
use crate::store::{FsckReport, MetadataDamage, Store, TempResidue};

/// Checks the store, prints the report; exit 1 on damage (see `FsckArgs` help for the rule).
pub fn fsck(global: &GlobalArgs, args: &FsckArgs) -> Result<u8> {
    let root = store_root(global);
    let store = Store::open_as_is(&root).with_context(|| format!("opening store {}", root.display()))?;
    let mut report = store.fsck(args.repair).with_context(|| format!("checking store {}", root.display()))?;
    check_derived(&root, args.repair, &mut report)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print_table(&report),
    }
    Ok(if report.is_damaged(args.strict) { EXIT_FAILURE } else { 0 })
}

/// What lives beside the blobs and can be rebuilt from them: the snapshotters' residue (a dead
/// process's snapshots, mounts and temporary directories; removed by `repair` as the next open of
/// the snapshotter would) and the cache and snapshot databases (a damaged cache database is moved
/// aside by `repair`: its records cost only rebuilds).
fn check_derived(root: &std::path::Path, repair: bool, report: &mut FsckReport) -> Result<()> {
    let snapshots = crate::snapshot::check(root, repair)
        .with_context(|| format!("checking the snapshots in {}", root.display()))?;
    for (residue, removed) in snapshots.residue {
        let (path, what) = (residue.path().to_path_buf(), residue.what());
        report.temp_residue.push(TempResidue { path, what, removed });
    }
    for (path, reason) in snapshots.damaged {
        report.metadata.push(MetadataDamage { path, reason, moved_to: None, salvaged: Vec::new() });
    }
    let cache_db = root.join("cache").join("cache.db");
    let damage = crate::cache::CacheDb::check(&cache_db, repair)
        .with_context(|| format!("checking the cache database {}", cache_db.display()))?;
    if let Some(d) = damage {
        let (reason, moved_to) = (d.reason, d.moved_to);
        report.metadata.push(MetadataDamage { path: cache_db, reason, moved_to, salvaged: Vec::new() });
    }
    Ok(())
}

fn print_table(r: &FsckReport) {
    for c in &r.corrupt {
        let what = c.digest.map_or_else(|| c.path.display().to_string(), |d| d.to_string());
        match &c.quarantined_to {
            Some(q) => println!("corrupt    {what}: {} (quarantined to {})", c.reason, q.display()),
            None => println!("corrupt    {what}: {}", c.reason),
        }
    }
    for m in &r.missing {
        println!("missing    {} (referenced by {})", m.digest, m.referenced_by);
    }
    for o in &r.orphans {
        println!("orphan     {} {}", o.digest, crate::cli::units::size(o.size));
    }
    for t in &r.temp_residue {
        let state = if t.removed { " (removed)" } else { "" };
        println!("residue    {}: {}{state}", t.path.display(), t.what);
    }
    for p in &r.perm_violations {
        let state = if p.repaired { " (repaired)" } else { "" };
        println!("permission {}: mode {:04o}, expected {:04o}{state}", p.path.display(), p.mode, p.expected);
    }
    for l in &r.stale_leases {
        let state = if l.removed { " (removed)" } else { "" };
        println!("lease      {} {:?} of pid {}: holder gone or expired{state}", l.id, l.label, l.pid);
    }
    for c in &r.broken_cache_roots {
        let state = if c.dropped { " (dropped: the step builds again)" } else { " (--repair drops it)" };
        println!("cache root {} → {}: its closure is not whole{state}", c.owner, c.digest);
    }
    for m in &r.metadata {
        match &m.moved_to {
            Some(to) if m.salvaged.is_empty() => {
                println!("metadata   {}: {} (moved to {}, rebuilt empty)", m.path.display(), m.reason, to.display())
            }
            Some(to) => println!(
                "metadata   {}: {} (moved to {}; rebuilt naming the store's {} images {})",
                m.path.display(),
                m.reason,
                to.display(),
                m.salvaged.len(),
                m.salvaged.join(", ")
            ),
            None => println!("metadata   {}: {}", m.path.display(), m.reason),
        }
    }
    println!(
        "checked {} blobs: {} corrupt, {} missing, {} orphans, {} temp residue, {} permission violations",
        r.blobs_checked,
        r.corrupt.len(),
        r.missing.len(),
        r.orphans.len(),
        r.temp_residue.len(),
        r.perm_violations.len()
    );
}
