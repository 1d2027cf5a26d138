//! Root filesystems for tests: a busybox tree from Debian's `busybox-static`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

/// Fills `dir` with a minimal busybox root filesystem: `/bin/busybox` and its applet links,
/// `/etc/passwd`, `/etc/group`, a sticky `/tmp`, a file owned by another user.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "/bin/busybox missing: scripts/install-deps installs busybox-static");
    let list = Command::new(busybox).arg("--list").output().expect("busybox --list");
    let applets: Vec<String> = String::from_utf8(list.stdout).unwrap().lines().take(40).map(str::to_string).collect();
    busybox_rootfs_of(dir, busybox, &applets);
}

/// [`busybox_rootfs`] made of the `busybox` binary at that path (of any architecture) with a
/// link in `/bin` for each of `applets`.
pub fn busybox_rootfs_of(dir: &Path, busybox: &Path, applets: &[String]) {
    for d in ["bin", "etc", "tmp", "root", "home/user"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for applet in applets {
        if applet != "busybox" {
            symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(dir.join("home/user/notes.txt"), "hello\n").unwrap();
    rustix::fs::chown(dir.join("home/user/notes.txt"), Some(uid(1000)), Some(gid(1000))).unwrap();
    rustix::fs::chown(dir.join("home/user"), Some(uid(1000)), Some(gid(1000))).unwrap();
    std::fs::set_permissions(dir.join("home/user/notes.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
}

fn uid(n: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(n)
}

fn gid(n: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(n)
}

/// [`busybox_rootfs`] with every applet linked in `/bin` (sh, ps, ip, hostname, …), for
/// tests that run shell scripts inside a sandbox.
pub fn busybox_rootfs_all_applets(dir: &Path) {
    busybox_rootfs(dir);
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let link = dir.join("bin").join(applet);
        if applet != "busybox" && std::fs::symlink_metadata(&link).is_err() {
            symlink("busybox", link).unwrap();
        }
    }
}
