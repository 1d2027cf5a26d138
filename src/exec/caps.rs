//! Capabilities: Docker's default set, and dropping everything else before exec; or, in
//! insecure mode, keeping everything.
//!
//! In the sandbox, inheritable and ambient sets are left empty (CVE-2022-24769 /
//! CVE-2022-27650: a non-empty inheritable set lets file capabilities regain what was
//! dropped). Insecure mode fills all five sets, as BuildKit's (`security.WithInsecureSpec`).

use std::io;

use super::sys;

/// Docker's default capabilities, by number (linux/capability.h).
pub const DOCKER_DEFAULT_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// [`DOCKER_DEFAULT_CAPS`] as a bit mask (`CapEff` of a root process: `00000000a80425fb`).
pub fn default_mask() -> u64 {
    DOCKER_DEFAULT_CAPS.iter().fold(0, |mask, (cap, _)| mask | (1u64 << cap))
}

/// Docker's defaults that chroot isolation drops as well, with why: without namespaces of its
/// own a step shares the host's processes and network, and without a mount namespace a plain
/// chroot is all that confines it.
pub const CHROOT_DROPPED: &[(u32, &str, &str)] = &[
    (5, "CAP_KILL", "signals any process of the host, whatever its user"),
    (10, "CAP_NET_BIND_SERVICE", "binds the host's ports below 1024"),
    (13, "CAP_NET_RAW", "raw sockets on the host's interfaces"),
    (18, "CAP_SYS_CHROOT", "a second chroot walks out of the first"),
    (27, "CAP_MKNOD", "device nodes of the host's disks where the rootfs is not nodev"),
];

/// The capabilities a root step keeps under chroot isolation: [`DOCKER_DEFAULT_CAPS`] without
/// [`CHROOT_DROPPED`] (`CapEff` `00000000a00001db`).
pub fn chroot_mask() -> u64 {
    CHROOT_DROPPED.iter().fold(default_mask(), |mask, (cap, _, _)| mask & !(1u64 << cap))
}

/// Every capability by number (linux/capability.h, up to Linux 6.x), as OCI names them.
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities in `mask`; numbers without a name (newer than this list)
/// are left out, as BuildKit's `cap.FromBitmap` leaves them.
pub fn names(mask: u64) -> impl Iterator<Item = &'static str> {
    CAP_NAMES.iter().enumerate().filter(move |(cap, _)| mask & (1u64 << cap) != 0).map(|(_, name)| *name)
}

/// What insecure mode grants: the caller's own effective set (BuildKit's `cap.Current`).
pub fn insecure_mask() -> io::Result<u64> {
    sys::effective_caps()
}

/// Removes every capability outside `keep` ([`default_mask`] or [`chroot_mask`]) from the
/// bounding set. Needs `CAP_SETPCAP`, so it runs before the user switch.
pub fn drop_bounding(keep: u64) -> io::Result<()> {
    drop_bounding_except(keep)
}

/// Removes every capability outside `keep` from the bounding set.
fn drop_bounding_except(keep: u64) -> io::Result<()> {
    for cap in 0..64 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        if !sys::drop_bounding_cap(cap)? {
            break;
        }
    }
    Ok(())
}

/// Sets effective and permitted to `keep` for root (empty for any other user, whose `setuid`
/// already cleared them), inheritable and ambient to empty.
pub fn apply(uid: u32, keep: u64) -> io::Result<()> {
    let mask = if uid == 0 { keep } else { 0 };
    sys::capset(mask, mask, 0)?;
    sys::clear_ambient_caps()
}

/// Insecure mode, before the user switch: bounds the process to `mask` (the caller's own
/// capabilities, see [`insecure_mask`]) and keeps the permitted set through the switch to
/// another user.
pub fn keep_insecure(mask: u64) -> io::Result<()> {
    drop_bounding_except(mask)?;
    sys::set_keep_caps(true)
}

/// Insecure mode, after the user switch: `mask` in the effective, permitted, inheritable and
/// ambient sets, so that the program keeps them across execve whatever its user.
pub fn apply_insecure(mask: u64) -> io::Result<()> {
    sys::capset(mask, mask, mask)?;
    for cap in (0..64).filter(|cap| mask & (1u64 << cap) != 0) {
        sys::raise_ambient_cap(cap)?;
    }
    sys::set_keep_caps(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_docker() {
        assert_eq!(default_mask(), 0xa804_25fb);
    }

    #[test]
    fn chroot_mask_is_the_default_without_the_dropped_five() {
        assert_eq!(chroot_mask(), 0xa000_01db);
        assert_eq!(chroot_mask() & !default_mask(), 0, "never more than Docker's");
        for (cap, name, _) in CHROOT_DROPPED {
            assert_eq!(CAP_NAMES[*cap as usize], *name);
            assert_eq!(chroot_mask() & (1u64 << cap), 0);
        }
    }

    #[test]
    fn names_follow_the_kernels_numbers() {
        for (cap, name) in DOCKER_DEFAULT_CAPS {
            assert_eq!(CAP_NAMES[*cap as usize], *name);
        }
        assert_eq!(CAP_NAMES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAP_NAMES[40], "CAP_CHECKPOINT_RESTORE");
        assert_eq!(
            names(default_mask()).collect::<Vec<_>>(),
            DOCKER_DEFAULT_CAPS.iter().map(|(_, n)| *n).collect::<Vec<_>>()
        );
        assert_eq!(names(1 << 21 | 1 << 63).collect::<Vec<_>>(), ["CAP_SYS_ADMIN"], "unknown numbers are left out");
    }
}
