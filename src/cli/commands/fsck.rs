//! `slipway fsck [--strict] [--repair] [--format table|json]`.

use anyhow::{Context, Result};

use super::store_root;
use crate::cli::EXIT_FAILURE;
use crate::cli::args::{Format, FsckArgs, GlobalArgs};
use crate::store::{FsckReport, Store};

/// Checks the store, prints the report; exit 1 on damage (see `FsckArgs` help for the rule).
pub fn fsck(global: &GlobalArgs, args: &FsckArgs) -> Result<u8> {
    let root = store_root(global);
    let store = Store::open_as_is(&root).with_context(|| format!("opening store {}", root.display()))?;
    let report = store.fsck(args.repair).with_context(|| format!("checking store {}", root.display()))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print_table(&report),
    }
    Ok(if report.is_damaged(args.strict) { EXIT_FAILURE } else { 0 })
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
        println!("residue    {}{state}", t.path.display());
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
        println!("metadata   {}: {}", m.path.display(), m.reason);
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
