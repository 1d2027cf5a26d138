//! `--chown=user[:group]` → numeric ids, with names looked up in the destination rootfs' own
//! `/etc/passwd` and `/etc/group` — read as data, confined to the rootfs (a symlinked
//! `/etc/passwd` is resolved inside it), capped in size, never through the host's NSS.
//!
//! Docker's rules: a number is taken as it is; a user without a group gets the user's primary
//! gid when it is a name, gid = uid when it is a number; an unknown name is an error naming it.

use std::os::fd::AsFd;
use std::path::Path;

use super::ContextError;
use crate::dirfd;

/// Largest `/etc/passwd` or `/etc/group` read (4 MiB).
const MAX_DB: u64 = 4 << 20;

/// `--chown=user[:group]` → ids: numbers as they are; names looked up in the rootfs' own `/etc/passwd`
/// and `/etc/group` (read confined to `rootfs`, size-capped, never via the host's NSS); user without
/// group → the user's primary gid for a name, gid = uid for a number (Docker's rule). Unknown name →
/// error naming it.
pub fn resolve_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), ContextError> {
    let bad = |reason| ContextError::BadChown { spec: spec.to_owned(), reason };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(bad("empty user or group"));
    }
    let db = |name: &str| read_db(rootfs, name);
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let passwd = db("passwd")?;
            lookup_user(&passwd, user).ok_or_else(|| ContextError::UnknownUser { name: user.to_owned() })?
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                lookup_group(&db("group")?, g).ok_or_else(|| ContextError::UnknownGroup { name: g.to_owned() })?
            }
        },
    };
    Ok((uid, gid))
}

/// `/etc/<name>` of the rootfs as text; empty when missing.
fn read_db(rootfs: &Path, name: &str) -> Result<String, ContextError> {
    let root =
        dirfd::open_root(rootfs).map_err(|e| ContextError::Open { path: rootfs.to_path_buf(), source: e.into() })?;
    let rel = format!("etc/{name}");
    match dirfd::read_in_root(root.as_fd(), rel.as_bytes(), MAX_DB) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()),
        Err(dirfd::ReadError::Io(source)) => Err(ContextError::Read { path: format!("/{rel}"), source }),
        Err(dirfd::ReadError::NotAFile) => Err(ContextError::NotAFile { path: format!("/{rel}") }),
        Err(dirfd::ReadError::TooLarge) => Err(ContextError::TooLarge { path: format!("/{rel}"), max: MAX_DB }),
    }
}

/// `name:x:uid:gid:...` → (uid, gid) of the first line naming `user`.
fn lookup_user(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != user {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.trim().parse().ok()?;
        let gid = f.next()?.trim().parse().ok()?;
        Some((uid, gid))
    })
}

/// `name:x:gid:members` → gid of the first line naming `group`.
fn lookup_group(group_db: &str, group: &str) -> Option<u32> {
    group_db.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != group {
            return None;
        }
        let _password = f.next()?;
        f.next()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\napp:x:1000:1001::/home/app:/bin/sh\nbad:x:notanumber:1::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\nbad:x:\n";

    #[test]
    fn parses_passwd_and_group_lines() {
        assert_eq!(lookup_user(PASSWD, "app"), Some((1000, 1001)));
        assert_eq!(lookup_user(PASSWD, "root"), Some((0, 0)));
        assert_eq!(lookup_user(PASSWD, "bad"), None, "a non-numeric uid is not a match");
        assert_eq!(lookup_user(PASSWD, "broken"), None);
        assert_eq!(lookup_user(PASSWD, "nobody"), None);
        assert_eq!(lookup_group(GROUP, "staff"), Some(50));
        assert_eq!(lookup_group(GROUP, "bad"), None);
    }

    #[test]
    fn chown_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let table: &[(&str, (u32, u32))] = &[
            ("10", (10, 10)),
            ("10:20", (10, 20)),
            ("app", (1000, 1001)),
            ("app:staff", (1000, 50)),
            ("app:7", (1000, 7)),
            ("7:staff", (7, 50)),
        ];
        for (spec, want) in table {
            assert_eq!(resolve_chown(dir.path(), spec).unwrap(), *want, "{spec}");
        }
        let err = resolve_chown(dir.path(), "nosuch").unwrap_err();
        assert_eq!(err.to_string(), "unknown user nosuch: not found in /etc/passwd of the destination");
        assert!(matches!(resolve_chown(dir.path(), "app:nogroup"), Err(ContextError::UnknownGroup { .. })));
        assert!(matches!(resolve_chown(dir.path(), ":5"), Err(ContextError::BadChown { .. })));
        assert!(matches!(resolve_chown(dir.path(), "5:"), Err(ContextError::BadChown { .. })));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(resolve_chown(empty.path(), "app"), Err(ContextError::UnknownUser { .. })));
        assert_eq!(resolve_chown(empty.path(), "5").unwrap(), (5, 5), "numbers need no database");
    }
}
