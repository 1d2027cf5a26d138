//! Hostile input through the commands users run: malicious root filesystem archives through
//! `import` (catalogue C1, C3–C8, C10 — every case is also exercised on `layer::apply` itself in
//! `layer_adversarial`, the same code `import` runs, with a lower layer where the case needs
//! one: C2 and C9), and tampered archives through `load`
//! (C12: bytes that do not match their digest or diff id; C14: malformed digests).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::TestContext;
use crate::support::rawtar::{Hdr, RawTar};

/// A canary directory outside every rootfs, with one file.
fn canary(ctx: &TestContext) -> std::path::PathBuf {
    let dir = ctx.path().join("canary");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("file"), b"precious").unwrap();
    dir
}

#[track_caller]
fn assert_canary_intact(dir: &Path) {
    let names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("file")], "something was written next to the canary");
    assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"precious");
    let meta = std::fs::metadata(dir.join("file")).unwrap();
    assert_eq!(meta.nlink(), 1, "the canary got a hardlink");
    assert_eq!(meta.mode() & 0o7777, 0o644);
}

fn import_tar(ctx: &TestContext, bytes: &[u8]) -> std::process::Output {
    let path = ctx.path().join("rootfs.tar");
    std::fs::write(&path, bytes).unwrap();
    ctx.run(&["import", path.to_str().unwrap(), "hostile:1"])
}

#[test]
fn c1_symlink_escape_through_import_stays_inside() {
    let ctx = TestContext::new();
    let canary = canary(&ctx);
    let tar = RawTar::new()
        .dir("etc/")
        .symlink("localetc", "/etc")
        .file("localetc/unbroken", b"inside")
        .symlink("escape", canary.to_str().unwrap())
        .file("escape/pwned", b"outside?")
        .end();
    let out = import_tar(&ctx, &tar);
    assert_canary_intact(&canary);
    assert!(!Path::new("/etc/unbroken").exists());
    if out.status.success() {
        // Whatever landed, landed inside the image: the host is untouched (checked above).
        ctx.ok(&["fsck", "--strict"]);
    } else {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("escape/pwned"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn c3_hardlink_to_a_host_file_through_import_is_rejected() {
    let ctx = TestContext::new();
    let canary = canary(&ctx);
    let target = canary.join("file");
    let tar = RawTar::new().hardlink("stolen", target.to_str().unwrap()).end();
    let out = import_tar(&ctx, &tar);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stolen"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_canary_intact(&canary);
    assert_eq!(ctx.run(&["inspect", "hostile:1"]).status.code(), Some(2), "a rejected import was tagged");
    let fsck = ctx.run(&["fsck", "--strict"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn c8_invalid_whiteouts_through_import_are_rejected() {
    for name in [".wh..", ".wh...", "etc/.wh.."] {
        let ctx = TestContext::new();
        let tar = RawTar::new().dir("etc/").file(name, b"").end();
        let out = import_tar(&ctx, &tar);
        assert!(!out.status.success(), "{name} was accepted");
        assert_eq!(ctx.run(&["inspect", "hostile:1"]).status.code(), Some(2));
    }
}

/// Catalogue C4 through `import` (through a pulled base image: `catalogue_ac`).
#[test]
fn c4_directory_over_a_symlink_never_chmods_the_target_through_import() {
    let ctx = TestContext::new();
    let canary = canary(&ctx);
    let mut h = Hdr::new(b"foo/", b'5');
    h.mode = 0o777;
    let mut tar = RawTar::new();
    tar.symlink("foo", canary.to_str().unwrap()).raw(&h, &[]);
    let _ = import_tar(&ctx, &tar.end());
    assert_canary_intact(&canary);
    assert_eq!(std::fs::metadata(&canary).unwrap().mode() & 0o7777, 0o755, "the canary directory was chmodded");
}

#[test]
fn c5_dotdot_symlink_parents_never_reach_outside_through_import() {
    let ctx = TestContext::new();
    let canary = canary(&ctx);
    let tar = RawTar::new().symlink("s", "..").file("s/exploit/foo/bar", b"x").end();
    let _ = import_tar(&ctx, &tar);
    assert_canary_intact(&canary);
    for dir in [ctx.path(), &ctx.root(), &ctx.root().join("ingest")] {
        assert!(!dir.join("exploit").exists(), "exploit/ created in {}", dir.display());
    }
}

/// Catalogue C6 through `import` (through a pulled base image: `catalogue_ac`).
#[test]
fn c6_duplicate_paths_never_write_through_an_earlier_symlink_through_import() {
    let ctx = TestContext::new();
    let canary = canary(&ctx);
    let target = canary.join("file");
    let tar = RawTar::new().symlink("x", target.to_str().unwrap()).file("x", b"overwritten?").end();
    let out = import_tar(&ctx, &tar);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_canary_intact(&canary);
}

/// Catalogue C7 through `import` (through a pulled base image: `catalogue_ac`).
#[test]
fn c7_desynchronised_pax_headers_are_rejected_through_import() {
    let ctx = TestContext::new();
    let mut tar = RawTar::new();
    tar.pax(b'x', &[("size", b"0")]);
    let mut h = Hdr::new(b"file_a", b'0');
    h.size = 512;
    tar.raw(&h, &[b'A'; 512]);
    let out = import_tar(&ctx, &tar.end());
    assert!(!out.status.success(), "a ustar/PAX size conflict was accepted");
    assert_eq!(ctx.run(&["inspect", "hostile:1"]).status.code(), Some(2));
}

#[test]
fn c10_an_entry_claiming_100_gib_is_refused_through_import_from_its_header() {
    let ctx = TestContext::new();
    let mut h = Hdr::new(b"huge", b'0');
    h.size = 100 << 30;
    let mut tar = RawTar::new();
    tar.bytes.extend_from_slice(&h.encode());
    let out = import_tar(&ctx, &tar.bytes);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds"), "{}", String::from_utf8_lossy(&out.stderr));
    let fsck = ctx.run(&["fsck", "--strict"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

/// A saved OCI layout of a one-file image, and its manifest as JSON.
fn saved_layout(ctx: &TestContext) -> (std::path::PathBuf, serde_json::Value) {
    let rootfs = ctx.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), b"slipway\n").unwrap();
    ctx.ok(&["import", rootfs.to_str().unwrap(), "good:1"]);
    let layout = ctx.path().join("layout");
    ctx.ok(&["save", "good:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let hex = index["manifests"][0]["digest"].as_str().unwrap()["sha256:".len()..].to_string();
    let manifest = serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    (layout, manifest)
}

fn blob(layout: &Path, digest: &serde_json::Value) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(&digest.as_str().unwrap()["sha256:".len()..])
}

#[track_caller]
fn assert_load_fails_cleanly(layout: &Path, want: &str) {
    let other = TestContext::new();
    let out = other.run(&["load", "-i", layout.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(want), "expected {want:?} in: {stderr}");
    assert_eq!(other.run(&["inspect", "good:1"]).status.code(), Some(2), "a damaged image was named");
    let fsck = other.run(&["fsck", "--strict", "--format", "json"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(report["corrupt"].as_array().map_or(0, Vec::len), 0, "{report}");
}

#[test]
fn c12_blob_bytes_that_do_not_match_their_digest_are_never_stored() {
    let ctx = TestContext::new();
    let (layout, manifest) = saved_layout(&ctx);
    let layer = blob(&layout, &manifest["layers"][0]["digest"]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&layer).unwrap();
    std::fs::write(&layer, &bytes).unwrap();
    assert_load_fails_cleanly(&layout, "digest");
}

#[test]
fn c12_a_layer_whose_content_is_not_its_diff_id_is_rejected() {
    let ctx = TestContext::new();
    let (layout, manifest) = saved_layout(&ctx);
    // Replace the layer with another valid gzip layer and fix up the manifest to name it: only
    // the config's diff id still tells the truth.
    let other_tar = RawTar::new().file("evil", b"swapped").end();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &other_tar).unwrap();
    let gz = gz.finish().unwrap();
    let digest = slipway::oci::Digest::of(&gz);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &gz).unwrap();
    let mut manifest = manifest;
    manifest["layers"][0]["digest"] = serde_json::Value::String(digest.to_string());
    manifest["layers"][0]["size"] = serde_json::Value::from(gz.len());
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let mdigest = slipway::oci::Digest::of(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(mdigest.hex()), &bytes).unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = serde_json::Value::String(mdigest.to_string());
    index["manifests"][0]["size"] = serde_json::Value::from(bytes.len());
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    assert_load_fails_cleanly(&layout, "layer 0");
}

#[test]
fn c14_malformed_digests_are_rejected_before_any_path_is_built() {
    let ctx = TestContext::new();
    let (layout, _) = saved_layout(&ctx);
    let index_path = layout.join("index.json");
    let good = std::fs::read_to_string(&index_path).unwrap();
    let good_digest = serde_json::from_str::<serde_json::Value>(&good).unwrap()["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for bad in [
        "sha256:../../../../tmp/x".to_string(),
        good_digest.to_uppercase().replace("SHA256", "sha256"),
        good_digest[..good_digest.len() - 1].to_string(),
        format!("md5:{}", &good_digest[7..39]),
    ] {
        std::fs::write(&index_path, good.replace(&good_digest, &bad)).unwrap();
        assert_load_fails_cleanly(&layout, "invalid");
    }
    // A blob file under a name that is no digest.
    std::fs::write(&index_path, &good).unwrap();
    let tar = RawTar::new().file("blobs/sha256/ABCDEF", b"x").file("blobs/sha256/../../../escape", b"x").end();
    let archive = ctx.path().join("bad.tar");
    std::fs::write(&archive, tar).unwrap();
    let out = TestContext::new().run(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ABCDEF"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!ctx.path().join("escape").exists());
}
