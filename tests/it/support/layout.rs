//! Hand-made OCI image layouts for the inspection tests: layers written entry by entry with the
//! `tar` crate (fixed times, so every digest is the same on every run), configs with history,
//! several images tagged in one `index.json`. No slipway code writes them.

use std::path::Path;

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// One layer entry.
#[derive(Clone)]
pub enum Ent {
    Dir(&'static str, u32),
    File(&'static str, Vec<u8>, u32, u64),
    Symlink(&'static str, &'static str),
    /// `.wh.NAME` for the path.
    Whiteout(&'static str),
    /// `.wh..wh..opq` in the directory.
    Opaque(&'static str),
}

pub fn file(path: &'static str, content: &str) -> Ent {
    Ent::File(path, content.as_bytes().to_vec(), 0o644, 0)
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The bytes of an uncompressed layer.
pub fn layer_tar(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Ent::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
            }
            Ent::File(path, data, mode, owner) => {
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Ent::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Ent::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').map_or(("", *path), |(d, n)| (d, n));
                let wh = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, wh, &[][..]).unwrap();
            }
            Ent::Opaque(dir) => {
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// An image of the layout: its tag, its layers, and one history line per layer (plus an
/// empty-layer entry after the first).
pub struct FixtureImage<'a> {
    pub tag: &'a str,
    pub layers: Vec<Vec<u8>>,
    pub commands: Vec<&'a str>,
}

fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha(bytes);
    let path = dir.join("blobs/sha256").join(&digest[7..]);
    std::fs::write(path, bytes).unwrap();
    digest
}

/// Writes an OCI layout holding `images` into `dir`; returns each image's manifest digest.
pub fn write_layout(dir: &Path, images: &[FixtureImage]) -> Vec<String> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    let mut digests = Vec::new();
    for image in images {
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for (i, layer) in image.layers.iter().enumerate() {
            let digest = put_blob(dir, layer);
            diff_ids.push(digest.clone());
            layer_descs.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": layer.len(),
            }));
            history.push(json!({ "created": "2026-01-01T00:00:00Z", "created_by": image.commands[i] }));
            if i == 0 {
                history
                    .push(json!({ "created": "2026-01-01T00:00:00Z", "created_by": "ENV X=1", "empty_layer": true }));
            }
        }
        let config = serde_json::to_vec(&json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        }))
        .unwrap();
        let config_digest = put_blob(dir, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": layer_descs,
        }))
        .unwrap();
        let manifest_digest = put_blob(dir, &manifest);
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": image.tag },
        }));
        digests.push(manifest_digest);
    }
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digests
}
