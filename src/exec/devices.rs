//! The device nodes a [`Security::Insecure`](super::Security::Insecure) sandbox gets besides
//! the standard ones: BuildKit's list (`util/entitlements/security/security_linux.go`), made
//! by the embedded executor's init in the sandbox's `/dev` and given to an OCI runtime as
//! `linux.devices`. Knows nothing of how they are made.

use serde::{Deserialize, Serialize};

use super::sys;

/// Loop devices made past the first free one (BuildKit's `loopID+7`).
const SPARE_LOOP_DEVICES: u32 = 7;

/// One device node in the sandbox's `/dev`, owned by root, mode 0666 (runc's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Absolute path in the sandbox, below `/dev`.
    pub path: String,
    /// A block device (else a character device).
    pub block: bool,
    pub major: u32,
    pub minor: u32,
}

impl DeviceNode {
    fn char(path: &str, major: u32, minor: u32) -> DeviceNode {
        DeviceNode { path: path.to_string(), block: false, major, minor }
    }
}

/// The nodes of insecure mode: `/dev/kmsg`, `/dev/cuse`, `/dev/fuse`, `/dev/kvm`,
/// `/dev/net/tun`, `/dev/loop-control` and `/dev/loop0` to seven past the host's first free
/// loop device (`/dev/loop7` when it cannot be asked). None when the sandbox is in a user
/// namespace (`rootless`, or slipway itself in one), where the kernel refuses device nodes;
/// BuildKit skips them there too.
pub fn insecure(rootless: bool) -> Vec<DeviceNode> {
    if rootless || in_user_namespace() {
        return Vec::new();
    }
    let free = sys::free_loop_device()
        .inspect_err(|error| tracing::debug!(%error, "no free loop device number; making /dev/loop0-7"))
        .unwrap_or(0);
    nodes(free)
}

fn nodes(free_loop: u32) -> Vec<DeviceNode> {
    let mut nodes = vec![
        DeviceNode::char("/dev/kmsg", 1, 11),
        DeviceNode::char("/dev/cuse", 10, 203),
        DeviceNode::char("/dev/fuse", 10, 229),
        DeviceNode::char("/dev/kvm", 10, 232),
        DeviceNode::char("/dev/net/tun", 10, 200),
        DeviceNode::char("/dev/loop-control", 10, 237),
    ];
    let last = free_loop.saturating_add(SPARE_LOOP_DEVICES);
    nodes.extend((0..=last).map(|i| DeviceNode { path: format!("/dev/loop{i}"), block: true, major: 7, minor: i }));
    nodes
}

/// Whether this process runs in a user namespace other than the initial one (whose uid map
/// is the whole range, `0 0 4294967295`), as moby's `userns.RunningInUserNS`.
pub(super) fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkits_nodes_and_loop_devices_up_to_seven_past_the_free_one() {
        let list = nodes(2);
        let paths: Vec<&str> = list.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            &paths[..6],
            ["/dev/kmsg", "/dev/cuse", "/dev/fuse", "/dev/kvm", "/dev/net/tun", "/dev/loop-control"]
        );
        assert_eq!(&paths[6..], (0..=9).map(|i| format!("/dev/loop{i}")).collect::<Vec<_>>());
        assert_eq!(list[2], DeviceNode { path: "/dev/fuse".into(), block: false, major: 10, minor: 229 });
        assert_eq!(list[15], DeviceNode { path: "/dev/loop9".into(), block: true, major: 7, minor: 9 });
        assert_eq!(nodes(0).len(), 6 + 8);
    }

    #[test]
    fn none_in_a_user_namespace() {
        assert!(insecure(true).is_empty());
    }
}
