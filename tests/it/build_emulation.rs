//! RUN steps of another architecture, through qemu registered in a `binfmt_misc` of the test's
//! own (`support::emulation`): a busybox base for linux/amd64 and linux/arm64 made from Debian's
//! packages and pushed as an index to a local registry; a build for both whose arm64 RUN ran the
//! arm64 busybox, under both executors; a `FROM --platform=$BUILDPLATFORM` stage shared by both;
//! a second build with one more platform reusing the first; and, without an emulator (or with one
//! lacking the `F` flag), the refusal before any step with the fix — `slipway info` in each state.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::build::{BuildEnv, events, ran, steps};
use crate::support::describe;
use crate::support::emulation::{self, Binfmt};
use crate::support::registry::Registry;
use crate::support::rootfs::busybox_rootfs_all_applets;

/// Builds and pushes `REGISTRY/base/bb:1`, an index of an amd64 busybox (the host's) and an
/// arm64 one (Debian's arm64 package): each platform's rootfs copied onto scratch. Returns its name.
fn push_busybox_index(env: &BuildEnv, registry: &Registry) -> String {
    let dir = env.tc.path().join("base");
    busybox_rootfs_all_applets(&dir.join("rootfs-amd64"));
    emulation::arm64_busybox_rootfs(&dir.join("rootfs-arm64"));
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nARG TARGETARCH\nCOPY rootfs-$TARGETARCH/ /\n").unwrap();
    let name = format!("{}/base/bb:1", registry.host());
    env.tc.ok(&["build", "--platform", "linux/amd64,linux/arm64", "--push", "-t", &name, dir.to_str().unwrap()]);
    let index = skopeo_raw(&format!("docker://{name}"));
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"], "{index}");
    name
}

fn skopeo_raw(target: &str) -> Value {
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw", target]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn platforms_of(index: &Value) -> Vec<String> {
    let manifests = index["manifests"].as_array().unwrap_or_else(|| panic!("no manifests: {index}"));
    manifests
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect()
}

/// A tools stage on the build platform whose output both targets copy, and a RUN of the target's
/// own busybox.
fn app(base: &str) -> String {
    format!(
        "FROM --platform=$BUILDPLATFORM {base} AS tools\n\
         RUN echo \"tools built on $(uname -m)\" > /tool\n\
         FROM {base}\n\
         RUN uname -m > /arch\n\
         COPY --from=tools /tool /tool\n"
    )
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

/// The `platforms:` section of `slipway info`.
fn info_platforms(env: &BuildEnv) -> String {
    let info = String::from_utf8_lossy(&env.tc.ok(&["info"]).stdout).into_owned();
    let start = info.find("platforms:\n").unwrap_or_else(|| panic!("no platforms section: {info}"));
    info[start..].to_string()
}

/// The command that registers an emulator shown one way, whichever form this host's files call
/// for (`update-binfmts` or a `register` line: both are unit-tested in `exec::emulation`).
const REGISTER: &[(&str, &str)] = &[
    (r"echo ':qemu-([^:]+):M::\S+:F' > /proc/sys/fs/binfmt_misc/register", "[REGISTER qemu-$1]"),
    (r"update-binfmts --enable qemu-(\S+)", "[REGISTER qemu-$1]"),
];

#[test]
fn foreign_run_steps_run_under_qemu_in_both_executors_and_reuse_what_was_built() {
    if emulation::delegated(
        Binfmt::Aarch64,
        "build_emulation::foreign_run_steps_run_under_qemu_in_both_executors_and_reuse_what_was_built",
    ) {
        return;
    }
    let registry = Registry::start();
    let env = BuildEnv::new();
    let base = push_busybox_index(&env, &registry);
    env.dockerfile(&app(&base));

    // arm64 alone: its RUN is emulated, the tools stage runs natively.
    let first = env.build_events(&["--platform", "linux/arm64", "-t", "app:arm64"]);
    assert!(steps(&first).iter().all(|s| s.cache.as_deref() == Some("miss")), "{:?}", steps(&first));

    // Both platforms: every step of the first build is reused (the arm64 stage and the shared
    // tools stage), amd64's own RUN is the only step that runs.
    let name = format!("{}/app:1", registry.host());
    let out = env.tc.path().join("out");
    let second = env.build_events(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &name,
        "--push",
        "-o",
        &format!("type=local,dest={}", out.display()),
    ]);
    let all = steps(&second);
    let reused: Vec<_> =
        all.iter().filter(|s| s.name.starts_with("[linux/arm64 ") || s.name.contains("->arm64 ")).collect();
    assert_eq!(reused.len(), 3, "{all:?}");
    assert!(reused.iter().all(|s| s.cache.as_deref() == Some("hit")), "{reused:?}");
    let missed: Vec<_> = all.iter().filter(|s| s.cache.as_deref() == Some("miss")).map(|s| s.name.as_str()).collect();
    assert_eq!(
        missed,
        ["[linux/amd64 stage-1 2/3] RUN uname -m > /arch", "[linux/amd64 stage-1 3/3] COPY --from=tools /tool /tool"],
        "{all:?}"
    );

    // The arm64 image's RUN ran the arm64 busybox; both copied the tools built on the host.
    assert_eq!(read(&out.join("linux_arm64"), "arch"), "aarch64\n");
    assert_eq!(read(&out.join("linux_amd64"), "arch"), "x86_64\n");
    for platform in ["linux_amd64", "linux_arm64"] {
        assert_eq!(read(&out.join(platform), "tool"), "tools built on x86_64\n");
    }
    let pushed = skopeo_raw(&format!("docker://{name}"));
    assert_eq!(pushed["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(platforms_of(&pushed), ["linux/amd64", "linux/arm64"]);

    // The OCI runtime executor runs the emulated step too.
    let runc = env.tc.path().join("runc");
    let out = env.tc.ok(&[
        "--runtime",
        "runc",
        "build",
        "--no-cache",
        "--platform",
        "linux/arm64",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", runc.display()),
        env.ctx().to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUN uname -m"), "{}", describe(&out));
    assert_eq!(read(&runc, "arch"), "aarch64\n");

    let info: Value = serde_json::from_slice(&env.tc.ok(&["info", "--format", "json"]).stdout).unwrap();
    let arm64 = info["platforms"].as_array().unwrap().iter().find(|p| p["platform"] == "linux/arm64").unwrap();
    let interpreter = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P";
    let emulated = serde_json::json!({"platform": "linux/arm64", "support": "emulated", "entry": "qemu-aarch64", "interpreter": interpreter});
    assert_eq!(arm64, &emulated);
    insta::with_settings!({ filters => REGISTER.to_vec() }, {
        insta::assert_snapshot!(info_platforms(&env), @r"
        platforms:
          linux/amd64     native
          linux/386       native
          linux/arm64     emulated by binfmt_misc entry qemu-aarch64 (/usr/libexec/qemu-binfmt/aarch64-binfmt-P)
          linux/arm/v7    not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-arm]
          linux/arm/v6    not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-arm]
          linux/ppc64le   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-ppc64le]
          linux/s390x     not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-s390x]
          linux/riscv64   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-riscv64]
          linux/mips64le  not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-mips64el]
          linux/loong64   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-loongarch64]
        ");
    });
    let fsck = env.tc.run(&["fsck", "--strict"]);
    assert!(fsck.status.success(), "{}", describe(&fsck));
}

#[test]
fn without_an_emulator_a_foreign_run_fails_before_any_step_with_the_fix() {
    if emulation::delegated(
        Binfmt::Empty,
        "build_emulation::without_an_emulator_a_foreign_run_fails_before_any_step_with_the_fix",
    ) {
        return;
    }
    let registry = Registry::start();
    let env = BuildEnv::new();
    let base = push_busybox_index(&env, &registry);
    env.dockerfile(&app(&base));
    let out = env.build(&["--progress", "rawjson", "--platform", "linux/amd64,linux/arm64", "-t", "app:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(ran(&events(&out)), 0, "no step ran: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let says = "Dockerfile:4:1: error: building for linux/arm64: RUN for a foreign platform: this linux/amd64 machine \
                cannot run linux/arm64 programs: no emulator for them is registered in binfmt_misc; to emulate them, \
                run as root: ";
    assert!(stderr.contains(says), "{stderr}");
    assert!(stderr.contains("qemu-aarch64"), "{stderr}");
    assert!(!env.tc.run(&["inspect", "app:1"]).status.success(), "nothing is named");
    insta::with_settings!({ filters => REGISTER.to_vec() }, {
        insta::assert_snapshot!(info_platforms(&env), @r"
        platforms:
          linux/amd64     native
          linux/386       native
          linux/arm64     not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-aarch64]
          linux/arm/v7    not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-arm]
          linux/arm/v6    not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-arm]
          linux/ppc64le   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-ppc64le]
          linux/s390x     not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-s390x]
          linux/riscv64   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-riscv64]
          linux/mips64le  not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-mips64el]
          linux/loong64   not available: no emulator for them is registered in binfmt_misc
                          to emulate them, run as root: [REGISTER qemu-loongarch64]
        ");
    });
}

#[test]
fn an_emulator_without_the_fix_binary_flag_is_refused_with_why() {
    if emulation::delegated(
        Binfmt::Aarch64NoFix,
        "build_emulation::an_emulator_without_the_fix_binary_flag_is_refused_with_why",
    ) {
        return;
    }
    let env = BuildEnv::new();
    let rootfs = env.tc.path().join("rootfs64");
    emulation::arm64_busybox_rootfs(&rootfs);
    env.tc.ok(&["import", "--platform", "linux/arm64", rootfs.to_str().unwrap(), "bb64"]);
    env.dockerfile("FROM bb64\nRUN uname -m > /arch\n");
    let out = env.build(&["--platform", "linux/arm64"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:2:1: error: RUN for a foreign platform"), "{stderr}");
    assert!(stderr.contains("binfmt_misc entry qemu-aarch64 lacks the F (fix-binary) flag"), "{stderr}");
    assert!(stderr.contains("echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64 && "), "{stderr}");
    let arm64 =
        info_platforms(&env).lines().skip_while(|l| !l.contains("linux/arm64")).take(2).collect::<Vec<_>>().join("\n");
    insta::with_settings!({ filters => REGISTER.to_vec() }, {
        insta::assert_snapshot!(arm64, @r"
        linux/arm64     not available: binfmt_misc entry qemu-aarch64 lacks the F (fix-binary) flag, so the kernel looks for its interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P inside the build's root filesystem, where it is not
                        to emulate them, run as root: echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64 && [REGISTER qemu-aarch64]
        ");
    });
}
