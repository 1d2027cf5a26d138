//! `import`, `images`, `tag`, `rmi`, `inspect`, `save`, `load`, checked with skopeo, umoci and
//! GNU tar as oracles.

use std::process::Command;

use crate::support::TestContext;
use crate::support::rootfs::busybox_rootfs;
use crate::support::tree::{assert_same, snapshot};

fn oracle(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// An imported busybox image in a fresh store; returns (context, rootfs dir, image id).
fn imported() -> (TestContext, std::path::PathBuf, String) {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let out = ctx.ok(&["import", rootfs.to_str().unwrap(), "example/busybox:1"]);
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("sha256:"), "import printed {id}");
    (ctx, rootfs, id)
}

#[test]
fn oci_dir_is_read_by_skopeo_and_unpacked_by_umoci_into_the_same_tree() {
    let (ctx, rootfs, id) = imported();
    let layout = ctx.path().join("layout");
    ctx.ok(&["save", "example/busybox:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);

    let inspect = oracle(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:1", layout.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let config = oracle(
        Command::new("skopeo").arg("inspect").arg("--raw").arg("--config").arg(format!("oci:{}:1", layout.display())),
    );
    let config_digest = format!("sha256:{}", sha256_hex(config.as_bytes()));
    assert_eq!(config_digest, id, "skopeo's config is not the image id");

    let bundle = ctx.path().join("bundle");
    oracle(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:1", layout.display())).arg(&bundle));
    assert_same(&snapshot(&bundle.join("rootfs")), &snapshot(&rootfs));
}

#[test]
fn zstd_save_is_copied_by_skopeo_and_read_by_gnu_tar() {
    let (ctx, rootfs, _) = imported();
    let layout = ctx.path().join("layout");
    ctx.ok(&[
        "save",
        "example/busybox:1",
        "--format",
        "oci-dir",
        "--compression",
        "zstd",
        "-o",
        layout.to_str().unwrap(),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest =
        index["manifests"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&manifest_digest)).unwrap()).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");

    let copy = ctx.path().join("copy");
    oracle(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("oci:{}:1", copy.display())),
    );

    let blob = layout.join("blobs/sha256").join(layer["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap());
    let out = ctx.path().join("untar");
    std::fs::create_dir(&out).unwrap();
    oracle(Command::new("tar").arg("--zstd").arg("--same-owner").arg("-xpf").arg(&blob).arg("-C").arg(&out));
    assert_same(&snapshot(&out), &snapshot(&rootfs));
}

#[test]
fn docker_archive_is_read_by_skopeo() {
    let (ctx, _, id) = imported();
    let archive = ctx.path().join("img.tar");
    ctx.ok(&["save", "example/busybox:1", "--format", "docker-archive", "-o", archive.to_str().unwrap()]);
    let inspect = oracle(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg("--config")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    assert_eq!(format!("sha256:{}", sha256_hex(inspect.as_bytes())), id);
    let listing = oracle(Command::new("tar").arg("-tf").arg(&archive));
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
}

#[test]
fn load_round_trips_every_format_to_the_same_image_id() {
    let (ctx, _, id) = imported();
    for (format, compression) in
        [("oci-dir", "gzip"), ("oci-archive", "gzip"), ("oci-archive", "zstd"), ("docker-archive", "gzip")]
    {
        let out = ctx.path().join(format!("{format}-{compression}"));
        ctx.ok(&[
            "save",
            "example/busybox:1",
            "--format",
            format,
            "--compression",
            compression,
            "-o",
            out.to_str().unwrap(),
        ]);
        let other = TestContext::new();
        let loaded = other.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(stdout(&loaded).contains("example/busybox:1"), "{format}: {}", stdout(&loaded));
        let inspect: serde_json::Value =
            serde_json::from_slice(&other.ok(&["inspect", "example/busybox:1"]).stdout).unwrap();
        assert_eq!(inspect[0]["Id"], id.as_str(), "{format}/{compression}");
        other.ok(&["fsck", "--strict"]);
    }
}

#[test]
fn load_reads_an_archive_on_stdin_and_a_gzip_compressed_archive() {
    let (ctx, _, id) = imported();
    let archive = ctx.path().join("img.tar");
    ctx.ok(&["save", "example/busybox:1", "--format", "oci-archive", "-o", archive.to_str().unwrap()]);
    oracle(Command::new("gzip").arg("-k").arg(&archive));
    let other = TestContext::new();
    let file = std::fs::File::open(ctx.path().join("img.tar.gz")).unwrap();
    let out = other.cmd().args(["load", "-q"]).stdin(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out).trim(), id);
}

#[test]
fn skopeo_written_layout_loads() {
    let (ctx, _, id) = imported();
    let layout = ctx.path().join("layout");
    ctx.ok(&["save", "example/busybox:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    let archive = ctx.path().join("skopeo.tar");
    oracle(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("docker-archive:{}:example/other:2", archive.display())),
    );
    let other = TestContext::new();
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    let inspect: serde_json::Value = serde_json::from_slice(&other.ok(&["inspect", "example/other:2"]).stdout).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
}

#[test]
fn tag_images_rmi_and_inspect() {
    let (ctx, _, id) = imported();
    ctx.ok(&["tag", "example/busybox:1", "localhost:5000/copy:latest"]);
    let short = &id["sha256:".len().."sha256:".len() + 12];
    let table = stdout(&ctx.ok(&["images"]));
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(table.contains("example/busybox") && table.contains("localhost:5000/copy"), "{table}");
    assert!(table.contains(short), "{table}");
    let json: serde_json::Value = serde_json::from_slice(&ctx.ok(&["images", "--format", "json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    let inspect: serde_json::Value = serde_json::from_slice(&ctx.ok(&["inspect", short]).stdout).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["RepoTags"].as_array().unwrap().len(), 2);
    assert_eq!(inspect[0]["Config"]["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

    ctx.ok(&["rmi", "localhost:5000/copy"]);
    let missing = ctx.run(&["inspect", "localhost:5000/copy"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    ctx.ok(&["rmi", short]);
    assert_eq!(stdout(&ctx.ok(&["images", "-q"])), "");
    ctx.ok(&["prune", "--all"]);
    assert_eq!(std::fs::read_dir(ctx.root().join("blobs/sha256")).unwrap().count(), 0);
}

#[test]
fn import_is_reproducible_with_source_date_epoch() {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let a = ctx
        .cmd()
        .args(["import", rootfs.to_str().unwrap(), "a:1"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    // Touch every file: clamping must hide the new mtimes.
    oracle(Command::new("find").arg(&rootfs).args(["-exec", "touch", "-h", "{}", "+"]));
    let other = TestContext::new();
    let b = other
        .cmd()
        .args(["import", rootfs.to_str().unwrap(), "a:1"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(a.status.success() && b.status.success());
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn import_of_a_tar_archive_goes_through_the_safe_apply() {
    let ctx = TestContext::new();
    let rootfs = ctx.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let tarball = ctx.path().join("rootfs.tar.gz");
    oracle(Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&rootfs).arg("."));
    let out = ctx.ok(&["import", tarball.to_str().unwrap(), "fromtar:1"]);
    let from_dir = TestContext::new();
    let out_dir = from_dir.ok(&["import", rootfs.to_str().unwrap(), "fromtar:1"]);
    // Same tree, different mtimes of the root entries are not in the layer: only the ids may
    // differ by `created`; compare the layer DiffIDs instead.
    let diff = |c: &TestContext| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&c.ok(&["inspect", "fromtar:1"]).stdout).unwrap();
        v[0]["Config"]["rootfs"]["diff_ids"].clone()
    };
    assert_eq!(diff(&ctx), diff(&from_dir), "{} vs {}", stdout(&out), stdout(&out_dir));
}

#[test]
fn bad_names_and_missing_images_are_clear_errors() {
    let ctx = TestContext::new();
    let out = ctx.run(&["import", "/nonexistent/rootfs", "a:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rootfs"));
    let dir = ctx.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    let out = ctx.run(&["import", dir.to_str().unwrap(), "Bad/Name"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be lowercase"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctx.run(&["save", "nothere:1", "-o", ctx.path().join("x.tar").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    assert!(!ctx.path().join("x.tar").exists(), "a failed save left its output behind");
}

fn sha256_hex(bytes: &[u8]) -> String {
    slipway::oci::Digest::of(bytes).hex()
}
