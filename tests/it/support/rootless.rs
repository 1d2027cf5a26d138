//! Running as an unprivileged user with the subordinate ids a test chooses.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A command that runs the rest of its arguments in a private mount namespace whose
/// `/etc/subuid` and `/etc/subgid` hold exactly `subids` (this test's precondition, set up for
/// its own processes only: the machine's files are neither read nor changed). The files are
/// bound over the machine's; where the machine has none, a copy of `/etc` holding them is bound
/// over `/etc` instead. `dir` is created for the files. A device node `dir/tun`, when the
/// caller made one, is bound over `/dev/net/tun` (its mode decides whether the user can open it).
pub fn with_subids(dir: &std::path::Path, subids: &str) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["subuid", "subgid"] {
        std::fs::write(dir.join(name), subids).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let script = r#"set -e
if [ -f /etc/subuid ] && [ -f /etc/subgid ]; then
    mount --bind "$1/subuid" /etc/subuid
    mount --bind "$1/subgid" /etc/subgid
else
    mkdir "$1/etc" && cp -a /etc/. "$1/etc/" && cp "$1/subuid" "$1/subgid" "$1/etc/"
    mount --rbind "$1/etc" /etc
fi
if [ -e "$1/tun" ]; then mount --bind "$1/tun" /dev/net/tun; fi
shift
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]).arg(dir);
    cmd
}

/// The unprivileged user the rootless tests run as.
pub const NOBODY: u32 = 65534;

/// `slipway` run as uid/gid 65534 with `home` as its HOME and no SLIPWAY_ROOT, in a mount
/// namespace whose `/etc/subuid` and `/etc/subgid` hold exactly `subids` ([`with_subids`], the
/// files written under `etc`); the caller adds the arguments.
pub fn slipway_as_nobody(etc: &std::path::Path, subids: &str, home: &std::path::Path) -> Command {
    let mut cmd = with_subids(etc, subids);
    cmd.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(super::slipway_bin())
        .env("HOME", home)
        .env_remove("SLIPWAY_ROOT")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("SLIPWAY_LOG", "warn");
    cmd
}
