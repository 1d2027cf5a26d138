//! Capabilities: Docker's default set, and dropping everything else before exec.
//!
//! Inheritable and ambient sets are left empty (CVE-2022-24769 / CVE-2022-27650: a non-empty
//! inheritable set lets file capabilities regain what was dropped).

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

/// Removes every capability outside the default set from the bounding set. Needs
/// `CAP_SETPCAP`, so it runs before the user switch.
pub fn drop_bounding() -> io::Result<()> {
    let keep = default_mask();
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

/// Sets effective and permitted to the default set for root (empty for any other user, whose
/// `setuid` already cleared them), inheritable and ambient to empty.
pub fn apply(uid: u32) -> io::Result<()> {
    let mask = if uid == 0 { default_mask() } else { 0 };
    sys::capset(mask, mask, 0)?;
    sys::clear_ambient_caps()
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_mask_matches_docker() {
        assert_eq!(super::default_mask(), 0xa804_25fb);
    }
}
