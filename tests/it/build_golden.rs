//! The layers a fixed build makes, pinned: the DiffIDs and the gzip blob digests of every layer
//! the Dockerfile adds (COPY of a tree with links, modes and a big file; COPY --chmod/--chown;
//! COPY --link; ADD of a local tar; a RUN that adds, deletes and links; COPY --from), built
//! with `--source-date-epoch` on both snapshotters. Any change to how layers are made (lazy
//! COPY, parallel hashing and tarring, a different diff) must keep these bytes (#18): when this
//! test fails, the output of the same inputs changed.
//!
//! The base image's own layer is left out: it is made from the host's busybox-static, whose
//! bytes are the machine's, not slipway's.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use serde_json::Value;

use crate::support::build::BuildEnv;

const DOCKERFILE: &str = "\
FROM bb AS gen
RUN mkdir -p /out/sub && echo generated > /out/sub/g && chmod 0750 /out/sub
FROM bb
COPY tree/ /app/
COPY --chmod=0640 --chown=1000:1000 one.txt /opt/one
COPY --link big.bin /big/
ADD pack.tar /x/
RUN echo hello > /app/new && rm /app/d1/remove-me && ln -s new /app/link-to-new
COPY --from=gen /out/ /gen/
";

/// Each layer after the base: its DiffID and the digest of its gzip blob, as slipway made them
/// at `ef59b5d` (before any further #18 change to how layers are written).
const GOLDEN: &str = "\
sha256:edeb6c8e7261d6fc814fef2166629e9ed083962d19f12d9b6527bd56f7abb1f8 sha256:0774df3480d04b1bf006d8e4c418f675317d06917797770cf57d50fd03c9d49d
sha256:78344205aac6304cfbac4c1ae3f6398999bb76a72be6432087793a0933456768 sha256:c3b27b202360abd84ae489523393dd646406025a9bd234a7aff1f77e4b98e034
sha256:4aeb98783a38e5295e1c0b34dae1cb113ce4f50ddae277e420168397167f860c sha256:765f5526748f3a851b7cc37c49d4b372b8cc6d8dcdaa91c0c45e34ec5710e085
sha256:cd313db4a716d8516d0a0d9b65aca978afccdaecb588fb598f753364822a0b2e sha256:36b9350d7777a843e59d4bfa2ae22deaeb8c7b21fc2c0849b9cd1619bb30c817
sha256:8f57cd4f7b45208e4848bfe709d4dee58fec4bfe4ca10e9dd7da9bdb5b98622b sha256:a6216322ac2499a749d1aa9e9b2f2aa7d9601f7c58305e0e0bd2161e8d5a3b42
sha256:fb1f1fb55559d8a7e49ce6d8d614808d970a83366387cd561aec387eddc4cc57 sha256:2e5175f64fcca4996af20575639c028e9d40b503a1d55c1652d7612958d5f49e
";

/// Bytes from a fixed seed (xorshift), so the context is the same on every machine.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn file(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The context: `tree/` (3 directories of 40 files from 0 to ~4 KiB, one executable, one
/// directory 0700, a symlink, a hard link, a name with a space and UTF-8), a 3 MiB
/// `big.bin`, `one.txt` and `pack.tar`.
fn context(ctx: &Path) {
    for d in 0..3u64 {
        for f in 0..40u64 {
            let len = ((d * 40 + f) * 97 % 4096) as usize;
            let mode = if f == 7 { 0o755 } else { 0o644 };
            file(&ctx.join(format!("tree/d{d}/f{f:02}")), &bytes(d * 1000 + f, len), mode);
        }
        fs::set_permissions(ctx.join(format!("tree/d{d}")), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(ctx.join("tree/d2"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(ctx.join("tree"), fs::Permissions::from_mode(0o755)).unwrap();
    file(&ctx.join("tree/d1/remove-me"), b"gone in the RUN\n", 0o644);
    file(&ctx.join("tree/d0/with space é.txt"), b"utf-8 name\n", 0o600);
    symlink("../d1/f01", ctx.join("tree/d0/to-f01")).unwrap();
    fs::hard_link(ctx.join("tree/d1/f02"), ctx.join("tree/d1/f02-again")).unwrap();
    file(&ctx.join("big.bin"), &bytes(42, 3 << 20), 0o644);
    file(&ctx.join("one.txt"), b"one\n", 0o644);

    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in [("p/a.txt", &b"from the archive\n"[..]), ("p/q/b.bin", &bytes(7, 5000)[..])] {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_500_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, content).unwrap();
    }
    file(&ctx.join("pack.tar"), &tar.into_inner().unwrap(), 0o644);
}

/// The image's layers after the base, one `DIFFID GZIP-BLOB` line each: the DiffIDs from the
/// store's config, the blobs from the OCI layout written by `-o type=oci,tar=false` (gzip).
fn layers(env: &BuildEnv, image: &str, layout: &Path) -> String {
    let inspect: Value = serde_json::from_slice(&env.tc.ok(&["inspect", image]).stdout).unwrap();
    let diff_ids = inspect[0]["Config"]["rootfs"]["diff_ids"].as_array().unwrap();
    let read = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let blobs = manifest["layers"].as_array().unwrap();
    assert_eq!(diff_ids.len(), blobs.len(), "one DiffID per layer: {inspect:#}\n{manifest:#}");
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(&config["rootfs"]["diff_ids"], &inspect[0]["Config"]["rootfs"]["diff_ids"], "layout and store agree");
    diff_ids
        .iter()
        .zip(blobs)
        .skip(1)
        .map(|(d, b)| {
            assert_eq!(b["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
            format!("{} {}\n", d.as_str().unwrap(), b["digest"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn a_fixed_build_makes_the_same_layers_on_both_snapshotters() {
    let mut seen = Vec::new();
    // The COPYs from the context are written straight into their layers unless
    // SLIPWAY_COPY_IN_SNAPSHOT=1 makes them in a snapshot (the path the golden bytes came from).
    for (snapshotter, in_snapshot) in [("overlay", false), ("copy", false), ("overlay", true)] {
        let env = BuildEnv::with_epoch("1600000000");
        context(&env.ctx());
        env.dockerfile(DOCKERFILE);
        let layout = env.tc.path().join("layout");
        let output = format!("type=oci,dest={},tar=false", layout.display());
        let mut cmd = env.tc.cmd();
        cmd.env("SLIPWAY_LOG", "slipway::engine::layers=debug");
        if in_snapshot {
            cmd.env("SLIPWAY_COPY_IN_SNAPSHOT", "1");
        }
        cmd.args(["--snapshotter", snapshotter, "build", "-t", "golden", "--source-date-epoch", "1700000000"]);
        let out = cmd.args(["-o", &output]).arg(env.ctx()).output().unwrap();
        let label = format!("{snapshotter}, in a snapshot: {in_snapshot}");
        assert!(out.status.success(), "{label}: {}", crate::support::describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let direct = stderr.matches("written straight from the sources").count();
        // COPY tree/, COPY --chmod/--chown one.txt, COPY --link big.bin and COPY --from=gen;
        // not ADD pack.tar (an archive).
        assert_eq!(direct, if in_snapshot { 0 } else { 4 }, "{label}: direct layers\n{stderr}");
        let got = layers(&env, "golden", &layout);
        assert_eq!(got.lines().count(), 6, "{label}: six layers after the base:\n{got}");
        seen.push((label, got));
    }
    for (label, got) in &seen {
        assert_eq!(got, GOLDEN, "{label}: the layers of the fixed build changed");
    }
}

/// COPYs whose destinations meet what the lower tree has: directories it has (changed or not),
/// a symlink on the way, a WORKDIR, created parents with `--chown`/`--chmod`, `--exclude`,
/// `--parents`, several sources, hard links, an ADD of a plain file; and ones that replace what is there or copy into
/// the root, which are made in a snapshot. The lower directories are older than the epoch, so a
/// wrong mtime on one shows.
const SHAPES: &str = "\
FROM bb AS src
RUN mkdir -p /opt/a/b && echo x > /opt/a/b/f && chown 5:6 /opt/a/b/f && chmod 4755 /opt/a/b/f \\
 && ln -s f /opt/a/b/l && ln /opt/a/b/f /opt/a/b/hard && chmod 0751 /opt/a \\
 && touch -t 201501010000 /opt/a/b/f /opt/a/b /opt/a
FROM bb
RUN mkdir -p /usr/local/bin /srv/data && echo old > /srv/data/old && ln -s /srv/data /lnk \\
 && touch -t 201701010000 /usr /usr/local /usr/local/bin /srv /srv/data
COPY one.txt /usr/local/bin/tool
COPY tree /srv/data/tree
COPY one.txt two.txt /srv/new/deep/
COPY one.txt /lnk/via-link
COPY --chmod=u+x,g-r tree/d0 /sym/
COPY --chmod=0700 --chown=7:8 tree/d1/ /oct/a/b/
COPY --exclude=*.txt --exclude=f1* tree /ex/
COPY --parents tree/d0/f01 tree/d1/f02 /par/
WORKDIR /w
COPY one.txt ./
COPY tree/d1/f02 tree/d1/f02-again /links/
COPY one.txt /srv/data/old
COPY tree/d2 /
COPY two.txt /usr/local/bin/tool
COPY --link --chown=3:4 tree /linked/
ADD two.txt /added/
COPY --from=src /opt/a /froma/
COPY --from=src /opt/a/b/f /opt/a/b/l /fromfiles/
COPY --from=src --chown=9:9 /opt /fromopt
COPY --from=src --parents /opt/a/b/hard /frompar/
RUN cat /srv/data/old /usr/local/bin/tool /w/one.txt > /check
";

#[test]
fn copies_written_straight_into_layers_equal_copies_in_snapshots() {
    let mut seen = Vec::new();
    for in_snapshot in [false, true] {
        let env = BuildEnv::with_epoch("1600000000");
        context(&env.ctx());
        file(&env.ctx().join("two.txt"), b"two\n", 0o640);
        env.dockerfile(SHAPES);
        let mut cmd = env.tc.cmd();
        cmd.env("SLIPWAY_LOG", "slipway::engine::layers=debug");
        if in_snapshot {
            cmd.env("SLIPWAY_COPY_IN_SNAPSHOT", "1");
        }
        let out =
            cmd.args(["build", "-t", "shapes", "--source-date-epoch", "1700000000"]).arg(env.ctx()).output().unwrap();
        assert!(out.status.success(), "in a snapshot: {in_snapshot}: {}", crate::support::describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let direct = stderr.matches("written straight from the sources").count();
        // Every COPY (from the context or a stage) and the ADD of a plain file, but the three that
        // replace or write into the root.
        assert_eq!(direct, if in_snapshot { 0 } else { 16 }, "in a snapshot: {in_snapshot}: direct layers\n{stderr}");
        let inspect: Value = serde_json::from_slice(&env.tc.ok(&["inspect", "shapes"]).stdout).unwrap();
        seen.push(inspect[0]["Config"]["rootfs"]["diff_ids"].clone());
    }
    assert_eq!(seen[0], seen[1], "the same layers, written straight or diffed from a snapshot");
}
