//! Dockerfile `USER` → uid, gid, supplementary groups and home, from the sandbox's own
//! `/etc/passwd` and `/etc/group`.
//!
//! The files are read from inside the sandbox (after `pivot_root`), so their symlinks resolve
//! within the rootfs; reads are non-blocking (a FIFO cannot hang us), regular files only and
//! size-capped. The host's NSS is never involved: no rootfs code is ever loaded.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use super::protocol::Failure;

/// Largest `/etc/passwd` or `/etc/group` read.
pub const MAX_DB_BYTES: u64 = 4 << 20;

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group included, as Docker does).
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some(GroupEntry { name: f[0], gid: f[2].parse().ok()?, members })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …) against the file texts.
/// A numeric user need not exist (gid 0, home `/`); a name must.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, Failure> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let (uid, mut gid, home, name) = match (entry, numeric) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => return Err(Failure::UnknownUser { user: user_part.to_string() }),
    };
    let mut groups = Vec::new();
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => match group_entries(group).find(|e| e.name == g) {
                    Some(e) => e.gid,
                    None => return Err(Failure::UnknownGroup { group: g.to_string() }),
                },
            };
            groups.push(gid);
        }
        None => {
            groups.push(gid);
            if let Some(name) = name {
                for e in group_entries(group).filter(|e| e.members.contains(&name)) {
                    if !groups.contains(&e.gid) {
                        groups.push(e.gid);
                    }
                }
            }
        }
    }
    let home = if home.is_empty() { "/".to_string() } else { home };
    Ok(ExecUser { uid, gid, groups, home })
}

/// Reads `path` inside the sandbox: missing → empty; not a regular file or too large → error.
pub fn read_db(path: &str) -> Result<String, Failure> {
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path);
    read_opened(path, opened)
}

/// [`read_db`] from the host side: `path` resolved beneath `root` as if it were `/` (symlinks
/// and `..` never leave it), for executors whose sandbox is built by another program.
pub fn read_db_beneath(root: &impl std::os::fd::AsFd, path: &str) -> Result<String, Failure> {
    read_opened(path, super::sys::open_read_beneath(root, path).map(std::fs::File::from))
}

fn read_opened(path: &str, opened: std::io::Result<std::fs::File>) -> Result<String, Failure> {
    let bad = |reason: String| Failure::UserDb { path: path.to_string(), reason };
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".to_string()));
    }
    if meta.len() > MAX_DB_BYTES {
        return Err(bad(format!("larger than {MAX_DB_BYTES} bytes")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_DB_BYTES + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_DB_BYTES {
        return Err(bad(format!("larger than {MAX_DB_BYTES} bytes")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nuser:x:1000:1000::/home/user:/bin/sh\nbroken\n\
                          nohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\naudio:x:29: user \n";

    fn check(spec: &str) -> Result<(u32, u32, Vec<u32>, String), Failure> {
        resolve(spec, PASSWD, GROUP).map(|u| (u.uid, u.gid, u.groups, u.home))
    }

    #[test]
    fn forms_of_user() {
        assert_eq!(check("").unwrap(), (0, 0, vec![0], "/root".into()));
        assert_eq!(check("root").unwrap(), (0, 0, vec![0], "/root".into()));
        assert_eq!(check("user").unwrap(), (1000, 1000, vec![1000, 10, 29], "/home/user".into()));
        assert_eq!(check("1000").unwrap(), (1000, 1000, vec![1000, 10, 29], "/home/user".into()));
        assert_eq!(check("user:root").unwrap(), (1000, 0, vec![0], "/home/user".into()));
        assert_eq!(check("1000:10").unwrap(), (1000, 10, vec![10], "/home/user".into()));
        assert_eq!(check("4242").unwrap(), (4242, 0, vec![0], "/".into()));
        assert_eq!(check("4242:4243").unwrap(), (4242, 4243, vec![4243], "/".into()));
        assert_eq!(check("nohome").unwrap(), (1001, 1001, vec![1001], "/".into()));
        assert_eq!(check(":wheel").unwrap(), (0, 10, vec![10], "/root".into()));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(check("app"), Err(Failure::UnknownUser { user: "app".into() }));
        assert_eq!(check("user:nogroup"), Err(Failure::UnknownGroup { group: "nogroup".into() }));
        assert!(matches!(resolve("user", "", ""), Err(Failure::UnknownUser { .. })));
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }

    #[test]
    fn read_db_refuses_special_files_and_caps_size() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(read_db(missing.to_str().unwrap()).unwrap(), "");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0).unwrap();
        assert!(matches!(read_db(fifo.to_str().unwrap()), Err(Failure::UserDb { .. })));
        assert!(matches!(read_db("/dev/zero"), Err(Failure::UserDb { .. })));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_DB_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_db(big.to_str().unwrap()), Err(Failure::UserDb { .. })));
    }
}
