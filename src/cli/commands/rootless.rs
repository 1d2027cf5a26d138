//! Before a command opens a store: one owner per store, and an unprivileged caller's command run
//! again as root of its own user namespace (`exec::userns`), where a build records the owners a
//! root build records.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::store_root;
use crate::cli::args::{Cli, Command};
use crate::exec::ExitStatus;
use crate::exec::userns;

/// Whether `command` opens the store (and so may need the user namespace).
fn opens_store(command: &Command) -> bool {
    !matches!(
        command,
        Command::Version
            | Command::Check(_)
            | Command::Context(_)
            | Command::ExecInit { .. }
            | Command::Login(_)
            | Command::Logout(_)
    )
}

/// Runs the command again in a user namespace when the caller is not root (its exit code),
/// or `None` when it runs here: as root, already in that namespace, or — for a command other
/// than `build` — where user namespaces cannot be made (it then works as an ordinary user).
pub fn reexec_if_unprivileged(cli: &Cli) -> Result<Option<u8>> {
    if !opens_store(&cli.command) {
        return Ok(None);
    }
    let root = store_root(&cli.global);
    check_store_owner(&root)?;
    if rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let is_build = matches!(cli.command, Command::Build(_));
    if let Err(why) = userns::user_namespaces_allowed() {
        if is_build {
            bail!(
                "a rootless build needs a user namespace, and this machine forbids them ({why}): allow them (sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1) or run slipway as root (--isolation chroot where namespaces are forbidden)"
            );
        }
        tracing::debug!(why, "no user namespace: running as an ordinary user");
        return Ok(None);
    }
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // The child is uid 0: it must not fall back to root's default store.
    let env = [("SLIPWAY_ROOT".to_string(), root.into_os_string())];
    match userns::run_as_root_in_user_namespace(&args, &env) {
        Ok(ExitStatus::Exited(code)) => Ok(Some(u8::try_from(code).unwrap_or(super::super::EXIT_USAGE))),
        Ok(ExitStatus::Signaled(signal)) => Ok(Some(128u8.saturating_add(signal as u8))),
        Err(err) if !is_build => {
            tracing::debug!(error = %err, "no user namespace: running as an ordinary user");
            Ok(None)
        }
        Err(err) => Err(err).context("starting the rootless build"),
    }
}

/// A store belongs to the user who made it: root's and a user's processes never share one (a
/// root process would leave files its user cannot change; a user cannot read root's).
fn check_store_owner(root: &Path) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    match std::fs::metadata(root) {
        Ok(meta) => {
            let owner = std::os::unix::fs::MetadataExt::uid(&meta);
            if owner != me {
                let who = |uid: u32| if uid == 0 { "root".to_string() } else { format!("uid {uid}") };
                bail!(
                    "the store at {} belongs to {}, and this is {}: a store is used by one user only; choose another with --root",
                    root.display(),
                    who(owner),
                    who(userns::host_uid().unwrap_or(me))
                );
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}
