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

/// What insecure mode grants: the caller's own effective set (BuildKit's `cap.Current`).
pub fn insecure_mask() -> io::Result<u64> {
    sys::effective_caps()
}

/// Removes every capability outside the default set from the bounding set. Needs
/// `CAP_SETPCAP`, so it runs before the user switch.
pub fn drop_bounding() -> io::Result<()> {
    drop_bounding_except(default_mask())
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

/// Sets effective and permitted to the default set for root (empty for any other user, whose
/// `setuid` already cleared them), inheritable and ambient to empty.
pub fn apply(uid: u32) -> io::Result<()> {
    let mask = if uid == 0 { default_mask() } else { 0 };
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
}
