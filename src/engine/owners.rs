//! The owners a step gives files, checked against the ids this process' user namespace maps: a
//! rootless build refuses an owner it cannot represent before writing anything with another one.

use std::path::Path;
use std::sync::OnceLock;

use super::BuildError;
use crate::context;
use crate::dockerfile::Span;

/// How many ids from 0 up this process can give files (`u32::MAX` outside a user namespace).
pub(crate) fn mapped_ids() -> u32 {
    static MAPPED: OnceLock<u32> = OnceLock::new();
    *MAPPED.get_or_init(crate::exec::userns::mapped_ids)
}

/// `--chown`/`USER` `spec` resolved against the rootfs' `/etc/passwd` and `/etc/group`, refused
/// when the user namespace lacks either id. `what` names the flag in the error.
pub(crate) fn resolve(rootfs: &Path, spec: &str, span: Span, what: &str) -> Result<(u32, u32), BuildError> {
    let (uid, gid) = context::resolve_chown(rootfs, spec)?;
    check(uid, gid, span, || what.to_string())?;
    Ok((uid, gid))
}

/// Refuses `uid`/`gid` when this user namespace does not map them.
pub(crate) fn check(uid: u32, gid: u32, span: Span, what: impl FnOnce() -> String) -> Result<(), BuildError> {
    let mapped = mapped_ids();
    match uid < mapped && gid < mapped {
        true => Ok(()),
        false => Err(BuildError::UnmappedIds { span, what: what(), uid, gid, mapped }),
    }
}
