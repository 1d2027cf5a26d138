//! `slipway history`, `diff` and `layers` on every source kind: images made by hand (the
//! `support::layout` fixture, read back through `umoci` and `skopeo`) and images slipway built.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::build::BuildEnv;
use crate::support::layout::{Ent, FixtureImage, file, layer_tar, write_layout};
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;
use crate::support::{TestContext, describe};

/// The base layer: files that the change layer modifies in every way a path can change.
fn base_layer() -> Vec<u8> {
    layer_tar(&[
        Ent::Dir("etc", 0o755),
        file("etc/motd", "hello\n"),
        Ent::Dir("data", 0o755),
        file("data/run.sh", "#!/bin/sh\n"),
        file("data/owned", "mine\n"),
        Ent::Symlink("data/link", "../etc/motd"),
        file("gone.txt", "bye\n"),
        Ent::Dir("opq", 0o755),
        file("opq/a", "a\n"),
        file("opq/b", "b\n"),
        Ent::Dir("olddir", 0o755),
        file("olddir/x", "x\n"),
        file("dup1", "duplicate content\n"),
    ])
}

/// Content change, mode change, owner change, symlink retarget, whiteouts of a file and a
/// directory, an opaque directory, an added file, a second copy of existing content.
fn change_layer() -> Vec<u8> {
    layer_tar(&[
        Ent::Dir("etc", 0o755),
        file("etc/motd", "changed\n"),
        Ent::Dir("data", 0o755),
        Ent::File("data/run.sh", b"#!/bin/sh\n".to_vec(), 0o755, 0),
        Ent::File("data/owned", b"mine\n".to_vec(), 0o644, 1000),
        Ent::Symlink("data/link", "owned"),
        Ent::Whiteout("gone.txt"),
        Ent::Dir("opq", 0o755),
        Ent::Opaque("opq"),
        file("opq/c", "c\n"),
        Ent::Whiteout("olddir"),
        file("new.txt", "new\n"),
        Ent::Dir("copies", 0o755),
        file("copies/dup2", "duplicate content\n"),
    ])
}

/// A layout with `a` = [base] and `b` = [base, change].
fn fixture(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    write_layout(
        &layout,
        &[
            FixtureImage { tag: "a", layers: vec![base_layer()], commands: vec!["fixture base"] },
            FixtureImage {
                tag: "b",
                layers: vec![base_layer(), change_layer()],
                commands: vec!["fixture base", "fixture change"],
            },
        ],
    );
    layout
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(out)))
}

#[test]
fn golden_diff_history_and_layers_of_a_hand_made_layout() {
    let tc = TestContext::new();
    let layout = fixture(tc.path());
    let l = layout.display().to_string();
    let diff = tc.ok(&["diff", &format!("oci:{l}:a"), &format!("oci:{l}:b")]);
    insta::assert_snapshot!(text(&diff), @r"
A /copies
A /copies/dup2
C /data/link   (target ../etc/motd → owned)
C /data/owned   (owner 0:0 → 1000:1000)
C /data/run.sh   (mode 0644 → 0755)
C /etc/motd   (content 5891b5b522d5 → 7f8b1dfc466b, size 6 → 8)
D /gone.txt
A /new.txt
D /olddir
D /olddir/x
D /opq/a
D /opq/b
A /opq/c
");
    let one = tc.ok(&["diff", &format!("oci:{l}:b"), "--layer", "1"]);
    insta::assert_snapshot!(text(&one), @r"
layer 1 1d4bd319c56d fixture change
A /copies
A /copies/dup2
C /data/link   (target ../etc/motd → owned)
C /data/owned   (owner 0:0 → 1000:1000)
C /data/run.sh   (mode 0644 → 0755)
C /etc/motd   (content 5891b5b522d5 → 7f8b1dfc466b, size 6 → 8)
D /gone.txt
A /new.txt
D /olddir
D /olddir/x
D /opq/a
D /opq/b
A /opq/c
");
    let history = tc.ok(&["history", "-H=false", &format!("oci:{l}:b")]);
    insta::assert_snapshot!(text(&history), @r"
LAYER          CREATED                CREATED BY       SIZE   FILES (+A ~C -D)   COMMENT
1d4bd319c56d   2026-01-01T00:00:00Z   fixture change   47     +4 ~4 -5
<missing>      2026-01-01T00:00:00Z   ENV X=1          0
84894b36b520   2026-01-01T00:00:00Z   fixture base     49     +13 ~0 -0
");
    let layers = tc.ok(&["layers", &format!("oci:{l}:b")]);
    insta::assert_snapshot!(text(&layers), @r"
LAYER   SIZE   ENTRIES   WASTED   CREATED BY
0       49B    13        31B      fixture base
1       47B    11        0B       fixture change

efficiency 49.0%: 49B of 96B wasted (31B overwritten or deleted by a later layer, 18B duplicate content)

overwritten or deleted later (7 files):
       10B  /data/run.sh  (layer 0, overwritten by layer 1)
        6B  /etc/motd  (layer 0, overwritten by layer 1)
        5B  /data/owned  (layer 0, overwritten by layer 1)
        4B  /gone.txt  (layer 0, deleted by layer 1)
        2B  /olddir/x  (layer 0, deleted by layer 1)
        2B  /opq/a  (layer 0, deleted by layer 1)
        2B  /opq/b  (layer 0, deleted by layer 1)

identical content at several paths (1 group):
       18B × 2  /copies/dup2 (layer 1), /dup1 (layer 0)
");
}

/// The state of every path of an unpacked root filesystem, computed here without slipway.
fn walk_state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let rel = format!("/{}", entry.path().strip_prefix(root).unwrap().display());
        let mode = meta.permissions().mode() & 0o7777;
        let owner = format!("{}:{}", meta.uid(), meta.gid());
        let what = if meta.file_type().is_symlink() {
            format!("symlink -> {}", std::fs::read_link(entry.path()).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            let bytes = std::fs::read(entry.path()).unwrap();
            format!("file {} sha256:{}", bytes.len(), hex::encode(Sha256::digest(&bytes)))
        };
        // A symlink's own mode is not a property Linux keeps.
        let mode = if meta.file_type().is_symlink() { String::new() } else { format!(" {mode:04o}") };
        out.insert(rel, format!("{what}{mode} {owner}"));
    }
    out
}

/// `A`/`C`/`D` lines from two path → state maps.
fn independent_diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, state) in old {
        match new.get(path) {
            None => out.push(format!("D {path}")),
            Some(s) if s != state => out.push(format!("C {path}")),
            Some(_) => {}
        }
    }
    for path in new.keys().filter(|p| !old.contains_key(*p)) {
        out.push(format!("A {path}"));
    }
    out.sort_by(|a, b| a[2..].cmp(&b[2..]));
    out
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", layout.display()), bundle.to_str().unwrap()])
        .output()
        .expect("run umoci");
    assert!(out.status.success(), "umoci unpack: {}", describe(&out));
    bundle.join("rootfs")
}

fn change_lines(changes: &Value) -> Vec<String> {
    changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["kind"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect()
}

#[test]
fn diff_equals_a_listing_computed_from_umoci_unpack_of_both_images() {
    let tc = TestContext::new();
    let layout = fixture(tc.path());
    let old = walk_state(&umoci_unpack(&layout, "a", &tc.path().join("bundle-a")));
    let new = walk_state(&umoci_unpack(&layout, "b", &tc.path().join("bundle-b")));
    let expected = independent_diff(&old, &new);
    assert!(expected.len() >= 10, "the fixture changes paths in every way: {expected:?}");

    let l = layout.display().to_string();
    let two = json(&tc.ok(&["diff", "--format", "json", &format!("oci:{l}:a"), &format!("oci:{l}:b")]));
    assert_eq!(change_lines(&two["diff"]["changes"]), expected);
    // One image, its top layer against the one below: the same answer.
    let one = json(&tc.ok(&["diff", "--format", "json", "--layer", "1", &format!("oci:{l}:b")]));
    assert_eq!(change_lines(&one["layers"][0]["changes"]), expected);

    // What changed is what the independent listing says changed.
    let by_path: BTreeMap<String, &Value> = two["diff"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap().to_string(), c))
        .collect();
    assert_eq!(by_path["/data/run.sh"]["mode"], serde_json::json!({ "old": "0644", "new": "0755" }));
    assert!(by_path["/data/run.sh"].get("content").is_none());
    assert_eq!(by_path["/data/owned"]["owner"], serde_json::json!({ "old": "0:0", "new": "1000:1000" }));
    assert_eq!(by_path["/data/link"]["target"], serde_json::json!({ "old": "../etc/motd", "new": "owned" }));
    let motd = |s: &str| format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())));
    assert_eq!(
        by_path["/etc/motd"]["content"],
        serde_json::json!({ "old": motd("hello\n"), "new": motd("changed\n") })
    );
    assert_eq!(by_path["/opq/a"]["kind"], "D", "the opaque directory hides the base's files");
    assert_eq!(by_path["/olddir/x"]["kind"], "D", "below a whited-out directory");

    // --path keeps one subtree.
    let data =
        json(&tc.ok(&["diff", "--format", "json", "--path", "/data", &format!("oci:{l}:a"), &format!("oci:{l}:b")]));
    assert_eq!(change_lines(&data["diff"]["changes"]), ["C /data/link", "C /data/owned", "C /data/run.sh"]);
}

/// The same image through every source kind gives the same answers.
#[test]
fn every_source_kind_gives_the_same_history_and_diff() {
    let tc = TestContext::new();
    let layout = fixture(tc.path());
    let l = layout.display().to_string();
    let registry = Registry::start();
    let remote = format!("{}/fixture/b:1", registry.host());
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().expect("run skopeo");
        assert!(out.status.success(), "skopeo {args:?}: {}", describe(&out));
    };
    skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{l}:b"), &format!("docker://{remote}")]);
    let docker_archive = tc.path().join("b-docker.tar");
    skopeo(&["copy", &format!("oci:{l}:b"), &format!("docker-archive:{}:fixture/b:1", docker_archive.display())]);
    let oci_archive = tc.path().join("b-oci.tar");
    let tar = Command::new("tar").args(["-C", &l, "-cf", oci_archive.to_str().unwrap(), "."]).output().unwrap();
    assert!(tar.status.success());
    let gz = tc.path().join("b-oci.tar.gz");
    let gzip = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", oci_archive.display(), gz.display()))
        .output()
        .unwrap();
    assert!(gzip.status.success());
    tc.ok(&["pull", &remote]);

    let sources = [
        format!("oci:{l}:b"),
        format!("oci-archive:{}:b", oci_archive.display()),
        format!("oci-archive:{}:b", gz.display()),
        format!("docker-archive:{}", docker_archive.display()),
        format!("docker://{remote}"),
        remote.clone(),
    ];
    let strip = |mut v: Value| {
        for row in v["history"].as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("digest");
            row.as_object_mut().unwrap().remove("stored_size");
        }
        v["history"].take()
    };
    let first_history = strip(json(&tc.ok(&["history", "--format", "json", &sources[0]])));
    let first_diff = json(&tc.ok(&["diff", "--format", "json", &sources[0]]))["layers"].take();
    for source in &sources[1..] {
        let history = json(&tc.ok(&["history", "--format", "json", source]));
        assert_eq!(history["version"], 1);
        assert_eq!(strip(history), first_history, "history of {source}");
        let diff = json(&tc.ok(&["diff", "--format", "json", source]))["layers"].take();
        assert_eq!(diff, first_diff, "diff of {source}");
    }
    let kinds: Vec<String> = sources
        .iter()
        .map(|s| json(&tc.ok(&["history", "--format", "json", s]))["image"]["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["oci", "oci-archive", "oci-archive", "docker-archive", "registry", "local"]);
}

/// A 2 MiB base layer shared by two images whose small top layers differ in one file.
fn shared_base_layout(dir: &Path) -> (PathBuf, String) {
    let mut big = Vec::with_capacity(2 << 20);
    let mut x: u32 = 12345;
    while big.len() < 2 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    let base = layer_tar(&[Ent::Dir("big", 0o755), Ent::File("big/blob", big, 0o644, 0)]);
    let base_digest = format!("sha256:{}", hex::encode(Sha256::digest(&base)));
    let top = |v: &str| layer_tar(&[Ent::Dir("app", 0o755), Ent::File("app/version", v.as_bytes().to_vec(), 0o644, 0)]);
    let layout = dir.join("shared");
    write_layout(
        &layout,
        &[
            FixtureImage { tag: "x", layers: vec![base.clone(), top("1\n")], commands: vec!["base", "v1"] },
            FixtureImage { tag: "y", layers: vec![base, top("2\n")], commands: vec!["base", "v2"] },
        ],
    );
    (layout, base_digest)
}

#[test]
fn diff_of_two_registry_images_reads_only_the_layer_that_differs() {
    let tc = TestContext::new();
    let (layout, base_digest) = shared_base_layout(tc.path());
    let registry = Registry::start();
    for tag in ["x", "y"] {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{}/shared/app:{tag}", registry.host()),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", describe(&out));
    }
    let proxy = Proxy::start(registry.port);
    let x = format!("docker://{}/shared/app:x", proxy.host());
    let y = format!("docker://{}/shared/app:y", proxy.host());
    let out = json(&tc.ok(&["diff", "--format", "json", &x, &y]));
    assert_eq!(change_lines(&out["diff"]["changes"]), ["C /app/version"]);
    assert_eq!(out["diff"]["shared_layers"], 1);
    assert_eq!(out["diff"]["read_a"], serde_json::json!([1]));
    assert_eq!(out["diff"]["read_b"], serde_json::json!([1]));
    assert_eq!(proxy.count("GET", &format!("/blobs/{base_digest}")), 0, "{}", proxy.dump());
    let served = proxy.response_bytes("GET", "/blobs/");
    assert!(served > 0 && served < 64 << 10, "{served} blob bytes served (the base is 2 MiB):\n{}", proxy.dump());

    // Asked again: the layers and configs are in the store, only the manifests are read.
    let before = proxy.count("GET", "/blobs/");
    tc.ok(&["diff", &x, &y]);
    assert_eq!(proxy.count("GET", "/blobs/"), before, "{}", proxy.dump());
}

#[test]
fn layers_reports_duplicates_and_gates_the_exit_code() {
    let tc = TestContext::new();
    let layout = fixture(tc.path());
    let image = format!("oci:{}:b", layout.display());
    let report = json(&tc.ok(&["layers", "--format", "json", &image]));
    let dups = report["report"]["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1, "{report:#}");
    assert_eq!(dups[0]["copies"], serde_json::json!([["/copies/dup2", 1], ["/dup1", 0]]));
    assert_eq!(dups[0]["wasted"], 18);
    let efficiency = report["report"]["efficiency"].as_f64().unwrap();
    assert!(efficiency < 100.0);
    let passed = tc.run(&["layers", "--fail-under", "0", &image]);
    assert_eq!(passed.status.code(), Some(0), "{}", describe(&passed));
    let failed = tc.run(&["layers", "--fail-under", "99.9", &image]);
    assert_eq!(failed.status.code(), Some(1), "{}", describe(&failed));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("gate failed: efficiency"), "{}", describe(&failed));
    assert!(text(&failed).contains("identical content at several paths"), "the report is printed all the same");
    assert_eq!(tc.run(&["layers", "--max-wasted", "0", &image]).status.code(), Some(1));
    assert_eq!(tc.run(&["layers", "--max-wasted", "1m", &image]).status.code(), Some(0));
    let missing = tc.run(&["layers", "oci:/nonexistent/layout"]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
}

#[test]
fn history_diff_and_layers_of_an_image_slipway_built() {
    let env = BuildEnv::served();
    env.write("f.txt", "copied\n");
    env.dockerfile(
        "FROM bb\nRUN echo one > /a && mkdir /d && echo x > /d/x\nCOPY f.txt /copy/f.txt\nENV K=v\n\
         RUN rm -r /d && chmod 700 /a && cp /copy/f.txt /again.txt\n",
    );
    env.build_ok(&["-t", "built"]);
    let tc = &env.tc;
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"\d+(\.\d+)?(kB|MB|B)\b", "[SIZE]");
    let _guard = settings.bind_to_scope();
    insta::assert_snapshot!(text(&tc.ok(&["diff", "bb", "built"])), @r"
A /a
A /again.txt
A /copy
A /copy/f.txt
");
    insta::assert_snapshot!(text(&tc.ok(&["diff", "built", "--layer", "3"])), @r"
layer 3 [ID] RUN /bin/sh -c rm -r /d && chmod 700 /a && cp /copy/f.txt /again.txt
C /a   (mode 0644 → 0700)
A /again.txt
D /d
D /d/x
");
    let history = text(&tc.ok(&["history", "-H=false", "built"]));
    let without_base: String = history.lines().take(5).map(|l| format!("{}\n", l.trim_end())).collect();
    insta::assert_snapshot!(without_base, @r"
LAYER          CREATED                CREATED BY                                      SIZE      FILES (+A ~C -D)   COMMENT
[ID]   [TIME]   RUN /bin/sh -c rm -r /d && chmod 700 /a && c…   11        +1 ~1 -2           slipway.dockerfile.v0
<missing>      [TIME]   ENV K=v                                         0                            slipway.dockerfile.v0
[ID]   [TIME]   COPY f.txt /copy/f.txt                          7         +2 ~0 -0           slipway.dockerfile.v0
[ID]   [TIME]   RUN /bin/sh -c echo one > /a && mkdir /d && …   6         +3 ~0 -0           slipway.dockerfile.v0
");
    let layers = json(&tc.ok(&["layers", "--format", "json", "built"]));
    let dups = &layers["report"]["duplicates"];
    assert!(
        dups.as_array()
            .unwrap()
            .iter()
            .any(|d| d["copies"] == serde_json::json!([["/again.txt", 3], ["/copy/f.txt", 2]])),
        "{layers:#}"
    );
    let wasted: Vec<&str> =
        layers["report"]["wasted_files"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap()).collect();
    assert!(wasted.contains(&"/d/x") && wasted.contains(&"/a"), "{wasted:?}");

    // The image saved in each format and pushed reads the same from every source.
    let dir = tc.path().join("saved");
    let oci_dir = dir.join("oci");
    let oci_archive = dir.join("oci.tar");
    let docker_archive = dir.join("docker.tar");
    std::fs::create_dir(&dir).unwrap();
    tc.ok(&["save", "built", "--format", "oci-dir", "-o", oci_dir.to_str().unwrap()]);
    tc.ok(&["save", "built", "--format", "oci-archive", "-o", oci_archive.to_str().unwrap()]);
    tc.ok(&["save", "built", "--format", "docker-archive", "-o", docker_archive.to_str().unwrap()]);
    let registry = Registry::start();
    let remote = format!("{}/built/app:1", registry.host());
    tc.ok(&["push", "built", &remote]);
    let layer_diffs = |source: &str| json(&tc.ok(&["diff", "--format", "json", source]))["layers"].take();
    let local = layer_diffs("built");
    for source in [
        format!("oci:{}", oci_dir.display()),
        format!("oci-archive:{}", oci_archive.display()),
        format!("docker-archive:{}", docker_archive.display()),
        format!("docker://{remote}"),
    ] {
        assert_eq!(layer_diffs(&source), local, "diff of {source}");
    }
}

/// An image umoci made (its own gzip layers, its own whiteouts), read back by slipway and
/// checked against umoci's own unpack.
#[test]
fn an_image_umoci_made_is_read_as_umoci_unpacks_it() {
    let tc = TestContext::new();
    let layout = tc.path().join("umoci");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("run umoci");
        assert!(out.status.success(), "umoci {args:?}: {}", describe(&out));
    };
    let l = layout.to_str().unwrap();
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &format!("{l}:v1")]);
    let bundle = tc.path().join("bundle");
    umoci(&["unpack", "--image", &format!("{l}:v1"), bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("srv/old")).unwrap();
    std::fs::write(rootfs.join("srv/old/a"), "a\n").unwrap();
    std::fs::write(rootfs.join("srv/keep"), "keep\n").unwrap();
    std::fs::write(rootfs.join("srv/script"), "echo\n").unwrap();
    std::os::unix::fs::symlink("keep", rootfs.join("srv/link")).unwrap();
    umoci(&["repack", "--image", &format!("{l}:v1"), bundle.to_str().unwrap()]);
    let bundle = tc.path().join("bundle-2");
    umoci(&["unpack", "--image", &format!("{l}:v1"), bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    std::fs::remove_dir_all(rootfs.join("srv/old")).unwrap();
    std::fs::write(rootfs.join("srv/keep"), "kept, changed\n").unwrap();
    std::fs::set_permissions(rootfs.join("srv/script"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(rootfs.join("srv/script"), Some(7), Some(8)).unwrap();
    std::fs::remove_file(rootfs.join("srv/link")).unwrap();
    std::os::unix::fs::symlink("script", rootfs.join("srv/link")).unwrap();
    umoci(&["repack", "--image", &format!("{l}:v2"), bundle.to_str().unwrap()]);

    let old = walk_state(&umoci_unpack(&layout, "v1", &tc.path().join("unpack-1")));
    let new = walk_state(&umoci_unpack(&layout, "v2", &tc.path().join("unpack-2")));
    let expected = independent_diff(&old, &new);
    assert_eq!(expected, ["C /srv/keep", "C /srv/link", "D /srv/old", "D /srv/old/a", "C /srv/script"]);
    let out = json(&tc.ok(&["diff", "--format", "json", &format!("oci:{l}:v1"), &format!("oci:{l}:v2")]));
    assert_eq!(change_lines(&out["diff"]["changes"]), expected);
    let history = json(&tc.ok(&["history", "--format", "json", &format!("oci:{l}:v2")]));
    let files: Vec<&Value> = history["history"].as_array().unwrap().iter().map(|r| &r["files"]).collect();
    assert_eq!(files.len(), 2, "{history:#}");
    assert_eq!(files[0], &serde_json::json!({ "added": 0, "changed": 3, "deleted": 2 }), "{history:#}");
    assert_eq!(files[1], &serde_json::json!({ "added": 6, "changed": 0, "deleted": 0 }), "{history:#}");
}

#[test]
fn inspect_reads_every_source_kind() {
    let tc = TestContext::new();
    let layout = fixture(tc.path());
    let out = json(&tc.ok(&["inspect", &format!("oci:{}:b", layout.display())]));
    assert_eq!(out[0]["Source"], "oci");
    assert_eq!(out[0]["Manifest"]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(out[0]["Config"]["history"][1]["created_by"], "ENV X=1");
    let missing = tc.run(&["inspect", "oci:/nonexistent/layout"]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
}
