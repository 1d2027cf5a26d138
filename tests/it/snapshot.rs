//! Snapshotters: one contract suite run for overlay and copy, as root and as an unprivileged
//! user (overlay inside a user namespace); diff round trips; deep chains; C9.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::fs::XattrFlags;
use slipway::layer::{self, ApplyOptions, TarWriter, WriteOptions};
use slipway::snapshot::{self, Backend, Kind, SnapshotError, Snapshotter, diff};

use crate::support::snapshot::{
    assert_no_mounts_under, child_work_dir, open, prepare_and_run, unprivileged_child, view_and_run, with_mounts,
};
use crate::support::{TestContext, child_value, describe, killed_by, self_child, tree};

const BACKENDS: [Backend; 2] = [Backend::Overlay, Backend::Copy];

/// The contract every snapshotter passes. `can_mount`: mounts can be made (root, or a user
/// namespace); otherwise bind mounts are used in place.
fn contract(sn: &dyn Snapshotter, scratch: &Path, can_mount: bool) {
    let name = sn.backend();
    // prepare without parent: an empty writable tree.
    prepare_and_run(sn, "a1", None, scratch, can_mount, |root| {
        assert_eq!(fs::read_dir(root).unwrap().count(), 0, "{name}: a fresh snapshot is empty");
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    });
    let info = sn.stat("a1").unwrap();
    assert_eq!((info.kind, info.parent.as_deref()), (Kind::Active, None));
    let base = sn.commit("base", "a1", None).unwrap();
    assert_eq!((base.key.as_str(), base.kind), ("base", Kind::Committed));
    assert!(matches!(sn.stat("a1"), Err(SnapshotError::NotFound { .. })), "{name}: the key is gone after commit");

    // Misuse.
    assert!(matches!(sn.commit("x", "base", None), Err(SnapshotError::NotActive { kind: Kind::Committed, .. })));
    assert!(matches!(sn.mounts("base"), Err(SnapshotError::Committed { .. })), "{name}: committed has no mounts");
    assert!(matches!(sn.prepare("base", None), Err(SnapshotError::AlreadyExists { .. })), "{name}: one key space");
    assert!(matches!(sn.prepare("p", Some("missing")), Err(SnapshotError::NotFound { .. })));
    assert!(matches!(sn.remove("missing"), Err(SnapshotError::NotFound { .. })));
    assert!(matches!(sn.prepare("", None), Err(SnapshotError::InvalidKey { .. })));

    // An active child: changes through its mounts never reach the committed parent.
    let a2 = sn.prepare("a2", Some("base")).unwrap();
    assert_eq!(sn.mounts("a2").unwrap(), a2, "{name}: mounts() repeats prepare()");
    with_mounts(&a2, scratch, can_mount, |root| {
        assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n");
        fs::write(root.join("etc/hosts"), b"changed\n").unwrap();
        fs::write(root.join("big"), vec![7u8; 1 << 20]).unwrap();
    });
    assert!(matches!(sn.prepare("a3", Some("a2")), Err(SnapshotError::ParentNotCommitted { kind: Kind::Active, .. })));
    assert!(matches!(sn.view("a2", Some("base")), Err(SnapshotError::AlreadyExists { .. })));
    let v1 = sn.view("v1", Some("base")).unwrap();
    assert!(v1.readonly(), "{name}: views are read-only");
    assert_eq!(sn.stat("v1").unwrap().kind, Kind::View);
    with_mounts(&v1, scratch, can_mount, |root| {
        assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n", "{name}: parent unchanged");
        assert!(!root.join("big").exists());
        if can_mount {
            assert!(fs::write(root.join("etc/hosts"), b"no").is_err(), "{name}: a view cannot be written");
        }
    });
    assert!(matches!(sn.prepare("a4", Some("v1")), Err(SnapshotError::ParentNotCommitted { kind: Kind::View, .. })));
    assert!(matches!(sn.commit("x", "v1", None), Err(SnapshotError::NotActive { kind: Kind::View, .. })));

    // Usage: an active snapshot's own data only.
    let usage = sn.usage("a2").unwrap();
    assert!(usage.size >= 1 << 20 && usage.inodes >= 2, "{name}: usage of a2 {usage:?}");
    assert!(sn.usage("base").unwrap().inodes >= 3, "{name}: usage of base");

    // Parents with children cannot go.
    assert!(matches!(sn.remove("base"), Err(SnapshotError::HasChildren { children: 2, .. })));
    sn.commit("second", "a2", None).unwrap();
    assert!(matches!(sn.commit("second", "second", None), Err(SnapshotError::NotActive { .. })));
    view_and_run(sn, "second", scratch, can_mount, |root| {
        assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"changed\n");
        assert_eq!(fs::metadata(root.join("big")).unwrap().len(), 1 << 20);
    });
    let keys: Vec<String> = sn.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["base", "second", "v1"], "{name}: list sorted by key");
    assert_eq!(sn.stat("second").unwrap().parent.as_deref(), Some("base"));
    let mut walked = 0;
    sn.walk(&mut |_| {
        walked += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(walked, 3);

    // Remove in dependency order; nothing stays behind.
    sn.remove("v1").unwrap();
    assert!(matches!(sn.remove("base"), Err(SnapshotError::HasChildren { children: 1, .. })));
    sn.remove("second").unwrap();
    sn.remove("base").unwrap();
    assert!(sn.list().unwrap().is_empty());
    let leftovers: Vec<_> = fs::read_dir(sn.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "metadata.db" | "metadata.db-wal" | "metadata.db-shm" | "lock" | "owners"))
        .collect();
    assert!(leftovers.is_empty(), "{name}: left in {}: {leftovers:?}", sn.dir().display());
    assert_no_mounts_under(scratch);
}

#[test]
fn contract_as_root() {
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        assert_eq!(sn.backend(), backend);
        contract(sn.as_ref(), ctx.path(), true);
    }
}

#[test]
fn probe_picks_overlay_as_root_and_backends_keep_apart() {
    let ctx = TestContext::new();
    let auto = snapshot::open(&ctx.root(), None).unwrap();
    assert_eq!(auto.backend(), Backend::Overlay);
    prepare_and_run(auto.as_ref(), "k", None, ctx.path(), true, |_| ());
    let copy = open(&ctx.root(), Backend::Copy);
    assert!(copy.list().unwrap().is_empty(), "switching backends starts from layers again");
    assert_ne!(copy.dir(), auto.dir());
    let out = ctx.ok(&["--snapshotter", "copy", "info"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nsnapshotter:     copy\n"));
    let out = ctx.ok(&["info", "--format", "json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"snapshotter\": \"overlay\""));
}

#[test]
fn records_are_shared_and_orphans_swept() {
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let (a, b) = (open(&ctx.root(), backend), open(&ctx.root(), backend));
        // Two handles (separate flocks, as two processes have) racing for the same keys.
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = [&a, &b]
                .into_iter()
                .flat_map(|sn| (0..4).map(move |i| s.spawn(move || sn.prepare(&format!("k{i}"), None).is_ok())))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|ok| **ok).count(), 4, "{backend}: each key created once");
        assert_eq!(b.list().unwrap().len(), 4);
        // A directory without a record (crash between mkdir and commit) goes at the next open.
        fs::create_dir_all(a.dir().join("999999/fs")).unwrap();
        fs::create_dir_all(a.dir().join("trash-7/fs")).unwrap();
        let c = open(&ctx.root(), backend);
        assert!(!c.dir().join("999999").exists() && !c.dir().join("trash-7").exists());
        assert_eq!(c.list().unwrap().len(), 4);
    }
}

/// A base tree: files, nested dirs, a symlink, a hardlink pair, xattrs, a FIFO; as root also a
/// foreign owner and a device.
fn base_tar(as_root: bool) -> Vec<u8> {
    let stage = tempfile::tempdir().unwrap();
    let s = stage.path();
    for d in ["etc", "bin", "usr/share/doc", "var/lib", "opt/app/conf", "keep/deep/er"] {
        fs::create_dir_all(s.join(d)).unwrap();
    }
    fs::write(s.join("etc/conf"), b"a=1\n").unwrap();
    fs::write(s.join("bin/busybox"), vec![0x7fu8; 40_000]).unwrap();
    fs::write(s.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(s.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("busybox", s.join("bin/sh")).unwrap();
    fs::hard_link(s.join("bin/busybox"), s.join("bin/ls")).unwrap();
    fs::write(s.join("usr/share/doc/readme"), b"read me\n").unwrap();
    fs::write(s.join("var/lib/old1"), b"1").unwrap();
    fs::write(s.join("var/lib/old2"), b"2").unwrap();
    fs::write(s.join("opt/app/conf/app.toml"), b"x = 1\n").unwrap();
    fs::write(s.join("keep/deep/er/file"), b"deep\n").unwrap();
    rustix::fs::lsetxattr(s.join("etc/conf"), "user.k", b"v1", XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(s.join("usr/share/doc/readme"), "user.gone", b"x", XattrFlags::empty()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.join("var/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    if as_root {
        fs::create_dir_all(s.join("dev")).unwrap();
        let dev = rustix::fs::FileType::CharacterDevice;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            s.join("dev/null"),
            dev,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::chown(s.join("opt/app/conf/app.toml"), Some(uid(1000)), Some(gid(1000))).unwrap();
    }
    layer::write_dir(s, &WriteOptions::default(), Vec::new()).unwrap().0
}

fn uid(n: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(n)
}

fn gid(n: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(n)
}

/// A change script: name, the change, needs real root, gives the same layer on both backends.
type Script = (&'static str, fn(&Path), bool, bool);

fn scripts() -> Vec<Script> {
    vec![
        (
            "create",
            |r| {
                fs::write(r.join("new.txt"), b"new").unwrap();
                fs::create_dir_all(r.join("newdir/sub")).unwrap();
                fs::write(r.join("newdir/sub/f"), b"f").unwrap();
            },
            false,
            true,
        ),
        ("modify", |r| fs::write(r.join("etc/conf"), b"a=2\n").unwrap(), false, true),
        (
            "chmod",
            |r| {
                fs::set_permissions(r.join("etc/conf"), fs::Permissions::from_mode(0o600)).unwrap();
                fs::set_permissions(r.join("usr/share"), fs::Permissions::from_mode(0o700)).unwrap();
            },
            false,
            true,
        ),
        ("chown", |r| rustix::fs::chown(r.join("etc/conf"), Some(uid(1000)), Some(gid(1000))).unwrap(), true, true),
        ("delete file", |r| fs::remove_file(r.join("usr/share/doc/readme")).unwrap(), false, true),
        ("delete dir", |r| fs::remove_dir_all(r.join("usr/share/doc")).unwrap(), false, true),
        (
            "delete and recreate dir",
            |r| {
                fs::remove_dir_all(r.join("var/lib")).unwrap();
                fs::create_dir(r.join("var/lib")).unwrap();
                fs::write(r.join("var/lib/fresh"), b"fresh").unwrap();
            },
            false,
            true,
        ),
        (
            "rename",
            |r| {
                fs::rename(r.join("etc/conf"), r.join("etc/conf.new")).unwrap();
                // Overlay without redirect_dir answers EXDEV for lower directories: mv copies.
                let st = Command::new("mv").arg(r.join("opt/app")).arg(r.join("opt/app2")).status().unwrap();
                assert!(st.success());
            },
            false,
            true,
        ),
        ("hardlink", |r| fs::hard_link(r.join("bin/tool"), r.join("bin/tool-link")).unwrap(), false, true),
        (
            "symlink retarget",
            |r| {
                fs::remove_file(r.join("bin/sh")).unwrap();
                symlink("tool", r.join("bin/sh")).unwrap();
            },
            false,
            true,
        ),
        (
            "xattr change",
            |r| {
                rustix::fs::lsetxattr(r.join("etc/conf"), "user.k", b"v2", XattrFlags::empty()).unwrap();
                rustix::fs::lremovexattr(r.join("usr/share/doc/readme"), "user.gone").unwrap();
            },
            false,
            true,
        ),
        (
            "open for write, no change",
            |r| drop(fs::OpenOptions::new().write(true).open(r.join("bin/tool")).unwrap()),
            false,
            true,
        ),
    ]
}

/// Runs `script` in a fresh active snapshot on `base`, diffs it, and checks that the layer
/// applied onto a copy of the parent gives exactly the active tree, and that committing keeps
/// that tree without extracting. Returns the layer with mtimes clamped (for comparisons).
fn round_trip(sn: &dyn Snapshotter, scratch: &Path, can_mount: bool, base: &[u8], script: &Script) -> Vec<u8> {
    let (name, change, ..) = script;
    let key = format!("rt-{}", name.replace(' ', "-"));
    prepare_and_run(sn, &key, Some("base"), scratch, can_mount, change);
    let active = with_mounts(&sn.mounts(&key).unwrap(), scratch, can_mount, tree::snapshot);
    let mut tar = Vec::new();
    let out = sn.diff(&key, &WriteOptions::default(), &mut tar).unwrap();
    assert_eq!(out.size, tar.len() as u64);
    let mut clamped = Vec::new();
    sn.diff(&key, &WriteOptions { source_date_epoch: Some(1) }, &mut clamped).unwrap();

    let target = tempfile::Builder::new().prefix("apply-").tempdir_in(scratch).unwrap();
    layer::apply(base, target.path(), &ApplyOptions::default()).unwrap();
    layer::apply(&tar[..], target.path(), &ApplyOptions::default()).unwrap();
    let applied = tree::snapshot(target.path());
    if applied != active {
        let entries: Vec<String> =
            layer::list(&tar[..]).unwrap().iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
        eprintln!("{}: layer of {name:?}: {entries:?}", sn.backend());
    }
    tree::assert_same(&applied, &active);

    let done = format!("{key}-done");
    diff::diff_and_commit(sn, &done, &key, &WriteOptions::default(), &mut std::io::sink()).unwrap();
    assert_eq!(sn.stat(&done).unwrap().diff_id, Some(out.diff_id));
    view_and_run(sn, &done, scratch, can_mount, |root| tree::assert_same(&tree::snapshot(root), &active));
    sn.remove(&done).unwrap();
    clamped
}

/// Every script on both backends as root; same-layer scripts must give the same DiffID.
#[test]
fn diff_round_trips_and_backends_agree() {
    let base = base_tar(true);
    let mut layers: BTreeMap<&str, Vec<(Backend, Vec<u8>)>> = BTreeMap::new();
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        let info = snapshot::apply_layer(sn.as_ref(), "base", None, &base[..], &ApplyOptions::default()).unwrap();
        assert_eq!(info.diff_id, Some(slipway::oci::DiffId(slipway::oci::Digest::of(&base))));
        for script in scripts() {
            let clamped = round_trip(sn.as_ref(), ctx.path(), true, &base, &script);
            layers.entry(script.0).or_default().push((backend, clamped));
        }
        sn.remove("base").unwrap();
        assert_no_mounts_under(ctx.path());
    }
    for script in scripts().iter().filter(|s| s.3) {
        let [(_, overlay), (_, copy)] = &layers[script.0][..] else { panic!("two backends") };
        let (lo, lc) = (layer::list(&overlay[..]).unwrap(), layer::list(&copy[..]).unwrap());
        assert_eq!(lo, lc, "overlay and copy layers differ for {:?}", script.0);
        assert_eq!(overlay, copy, "same entries, different bytes for {:?}", script.0);
    }
    // The no-op copy-up left nothing (both backends) but must still be a valid empty layer.
    let noop = &layers["open for write, no change"][0].1;
    assert!(layer::list(&noop[..]).unwrap().is_empty());
}

/// Catalogue C9 on snapshots: a directory deleted in one layer and re-created in the next, or
/// made opaque by a marker written last, never brings lower files back.
#[test]
fn c9_deleted_then_recreated_dirs_stay_deleted() {
    let stage = tempfile::tempdir().unwrap();
    fs::create_dir_all(stage.path().join("l1/a/b/c")).unwrap();
    fs::write(stage.path().join("l1/a/b/c/bar"), b"bar").unwrap();
    fs::create_dir_all(stage.path().join("l3/a")).unwrap();
    fs::write(stage.path().join("l3/a/new"), b"new").unwrap();
    let l1 = layer::write_dir(&stage.path().join("l1"), &WriteOptions::default(), Vec::new()).unwrap().0;
    let l3 = layer::write_dir(&stage.path().join("l3"), &WriteOptions::default(), Vec::new()).unwrap().0;
    let mut tw = TarWriter::new(Vec::new(), &WriteOptions::default());
    tw.add_whiteout(Path::new("a")).unwrap();
    let l2 = tw.finish().unwrap();
    // L2' = a/, a/b/, a/b/c/, a/b/c/foo, then the opaque marker of a LAST.
    let mut tw = TarWriter::new(Vec::new(), &WriteOptions::default());
    for p in ["a", "a/b", "a/b/c"] {
        tw.add_path(Path::new(p), &stage.path().join("l1").join(p)).unwrap();
    }
    fs::write(stage.path().join("foo"), b"foo").unwrap();
    tw.add_path(Path::new("a/b/c/foo"), &stage.path().join("foo")).unwrap();
    tw.add_opaque(Path::new("a")).unwrap();
    let l2_opaque = tw.finish().unwrap();
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        let opts = ApplyOptions::default();
        snapshot::apply_layer(sn.as_ref(), "l1", None, &l1[..], &opts).unwrap();
        snapshot::apply_layer(sn.as_ref(), "l2", Some("l1"), &l2[..], &opts).unwrap();
        snapshot::apply_layer(sn.as_ref(), "l3", Some("l2"), &l3[..], &opts).unwrap();
        snapshot::apply_layer(sn.as_ref(), "l2-opaque", Some("l1"), &l2_opaque[..], &opts).unwrap();
        view_and_run(sn.as_ref(), "l3", ctx.path(), true, |root| {
            let t = tree::snapshot(root);
            let paths: Vec<_> = t.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
            assert_eq!(paths, ["a", "a/new"], "{backend}");
        });
        view_and_run(sn.as_ref(), "l2-opaque", ctx.path(), true, |root| {
            assert!(root.join("a/b/c/foo").exists() && !root.join("a/b/c/bar").exists(), "{backend}");
        });
        // Re-create the directory once more on top, through the diff this time.
        prepare_and_run(sn.as_ref(), "k", Some("l3"), ctx.path(), true, |root| {
            fs::remove_dir_all(root.join("a")).unwrap();
            fs::create_dir(root.join("a")).unwrap();
            fs::write(root.join("a/last"), b"last").unwrap();
        });
        diff::diff_and_commit(sn.as_ref(), "l4", "k", &WriteOptions::default(), &mut std::io::sink()).unwrap();
        view_and_run(sn.as_ref(), "l4", ctx.path(), true, |root| {
            let names: Vec<_> = fs::read_dir(root.join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["last"], "{backend}");
        });
        assert_no_mounts_under(ctx.path());
    }
}

/// A chain deeper than one page of absolute lowerdir paths (from ~60 layers here) and of
/// `/proc/self/fd/N` names (from ~210), and a diff on top of it.
#[test]
fn overlay_chain_of_260_layers() {
    let ctx = TestContext::new();
    let sn = open(&ctx.root(), Backend::Overlay);
    let mut parent: Option<String> = None;
    for i in 0..260 {
        let key = format!("step-{i}");
        prepare_and_run(sn.as_ref(), &key, parent.as_deref(), ctx.path(), true, |root| {
            fs::write(root.join(format!("f{i:03}")), i.to_string()).unwrap();
            if i > 0 {
                fs::remove_file(root.join(format!("f{:03}", i - 1))).unwrap();
                fs::write(root.join(format!("kept{i:03}")), b"k").unwrap();
            }
        });
        let name = format!("layer-{i}");
        let out =
            diff::diff_and_commit(sn.as_ref(), &name, &key, &WriteOptions::default(), &mut std::io::sink()).unwrap();
        assert_eq!(out.entries, if i == 0 { 1 } else { 3 }, "layer {i} holds only its own changes");
        parent = Some(name);
    }
    let top = parent.unwrap();
    let mounts = sn.prepare("top", Some(&top)).unwrap();
    let snapshot::Mounts::Overlay { lowerdirs, .. } = &mounts else { panic!("{mounts:?}") };
    let joined: usize = lowerdirs.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(joined > 4096, "the chain must not fit one page of absolute paths ({joined} bytes)");
    with_mounts(&mounts, ctx.path(), true, |root| {
        let n = fs::read_dir(root).unwrap().count();
        assert_eq!(n, 1 + 259, "only the last f and every kept file");
        assert_eq!(fs::read_to_string(root.join("f259")).unwrap(), "259");
        fs::write(root.join("kept050"), b"changed").unwrap();
    });
    let mut tar = Vec::new();
    sn.diff("top", &WriteOptions::default(), &mut tar).unwrap();
    let entries: Vec<_> = layer::list(&tar[..]).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(entries, [b"kept050".to_vec()]);
    assert_no_mounts_under(ctx.path());
}

/// The contract (and round trips) as uid 65534: overlay inside a user namespace, and the copy
/// fallback with no namespace at all (where overlay must be refused, not faked).
#[test]
fn contract_unprivileged() {
    let ctx = TestContext::new();
    for userns in [true, false] {
        let work = ctx.path().join(if userns { "userns" } else { "plain" });
        fs::create_dir_all(&work).unwrap();
        rustix::fs::chown(&work, Some(uid(65534)), Some(gid(65534))).unwrap();
        let out = unprivileged_child("snapshot::unprivileged_snapshot_child", ctx.path(), &work, userns);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("1 passed"), "userns={userns}: {}", describe(&out));
        let report = fs::read_to_string(work.join("report")).unwrap();
        let expected = if userns { "auto=overlay tested=overlay,copy" } else { "auto=copy tested=copy" };
        assert_eq!(report, expected);
    }
}

/// The unprivileged half of the test above; does nothing unless started by it.
#[test]
fn unprivileged_snapshot_child() {
    let Some(work) = child_work_dir() else {
        return;
    };
    let userns = snapshot::in_user_namespace();
    let root = work.join("root");
    let auto = snapshot::open(&root, None).unwrap().backend();
    let tested: Vec<Backend> = if userns {
        BACKENDS.to_vec()
    } else {
        assert!(!rustix::process::geteuid().is_root());
        let forced = snapshot::open(&root, Some(Backend::Overlay));
        assert!(matches!(forced, Err(SnapshotError::OverlayUnsupported { .. })), "{:?}", forced.err());
        vec![Backend::Copy]
    };
    let base = base_tar(false);
    for backend in &tested {
        let scratch = work.join(format!("scratch-{backend}"));
        fs::create_dir_all(&scratch).unwrap();
        let sn = open(&root, *backend);
        contract(sn.as_ref(), &scratch, userns);
        snapshot::apply_layer(sn.as_ref(), "base", None, &base[..], &ApplyOptions::default()).unwrap();
        for script in scripts().iter().filter(|s| !s.2) {
            round_trip(sn.as_ref(), &scratch, userns, &base, script);
        }
        sn.remove("base").unwrap();
        assert_no_mounts_under(&scratch);
    }
    let tested: Vec<String> = tested.iter().map(ToString::to_string).collect();
    fs::write(work.join("report"), format!("auto={auto} tested={}", tested.join(","))).unwrap();
}

/// Catalogue B6: a name with the reserved `.wh.` prefix cannot become a layer entry.
#[test]
fn reserved_whiteout_names_fail_the_diff() {
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        prepare_and_run(sn.as_ref(), "k", None, ctx.path(), true, |root| {
            fs::create_dir_all(root.join("x/.wh..wh..opq")).unwrap();
        });
        let err = sn.diff("k", &WriteOptions::default(), &mut std::io::sink()).unwrap_err();
        assert!(matches!(err, SnapshotError::ReservedName { .. }), "{backend}: {err:?}");
        assert!(err.to_string().contains("reserved prefix .wh."), "{err}");
        sn.remove("k").unwrap();
    }
}

const CHILD_OP: &str = "SLIPWAY_SNAPSHOT_OP";
const CHILD_ROOT: &str = "SLIPWAY_SNAPSHOT_ROOT";
const CHILD_BACKEND: &str = "SLIPWAY_SNAPSHOT_BACKEND";

fn op_child(root: &Path, backend: Backend, op: &str, failpoint: Option<&str>) -> Command {
    let mut cmd = self_child("snapshot::snapshot_op_child");
    cmd.env(CHILD_OP, op).env(CHILD_ROOT, root).env(CHILD_BACKEND, backend.to_string());
    if let Some(fp) = failpoint {
        cmd.env("SLIPWAY_FAILPOINT", fp);
    }
    cmd
}

/// kill -9 between a snapshot's directory work and its record (catalogue E, N4): the next open
/// leaves neither a record nor a directory, and the key can be used again.
#[test]
fn crash_mid_prepare_or_remove_leaves_nothing() {
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        prepare_and_run(sn.as_ref(), "a", None, ctx.path(), true, |r| fs::write(r.join("f"), b"f").unwrap());
        sn.commit("c", "a", None).unwrap();
        let dir = sn.dir().to_path_buf();
        drop(sn);
        for (op, site) in [("prepare", "snapshot.prepare.before_record"), ("remove", "snapshot.remove.before_delete")] {
            let out = op_child(&ctx.root(), backend, op, Some(&format!("{site}:kill9"))).output().unwrap();
            assert_eq!(killed_by(&out.status), Some(9), "{backend} {op}: {}", describe(&out));
        }
        let sn = open(&ctx.root(), backend);
        assert!(sn.list().unwrap().is_empty(), "{backend}: {:?}", sn.list());
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("metadata.db") && n != "lock" && n != "owners")
            .collect();
        assert!(left.is_empty(), "{backend}: {left:?}");
        prepare_and_run(sn.as_ref(), "crashed", None, ctx.path(), true, |_| ());
    }
}

/// What a process killed with kill -9 left (an active snapshot mounted on its temporary mount
/// point, a view, a temporary copy) is gone after the next open, mounts included; the same things
/// of a live process, seen by another process's open, all stay.
#[test]
fn a_dead_process_leaves_nothing_a_live_one_keeps_everything() {
    let can_mount = rustix::process::geteuid().is_root();
    for backend in BACKENDS {
        let ctx = TestContext::new();
        let sn = open(&ctx.root(), backend);
        prepare_and_run(sn.as_ref(), "a", None, ctx.path(), can_mount, |r| fs::write(r.join("f"), b"f").unwrap());
        sn.commit("c", "a", None).unwrap();
        let dir = sn.dir().to_path_buf();
        drop(sn);

        let out = op_child(&ctx.root(), backend, "leave", None).output().unwrap();
        assert_eq!(killed_by(&out.status), Some(9), "{backend}: {}", describe(&out));
        let dead = op_child(&ctx.root(), backend, "leave", None).output().unwrap();
        assert_eq!(killed_by(&dead.status), Some(9), "{backend}: {}", describe(&dead));
        let left = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("metadata.db") && !["lock", "owners"].contains(&n.as_str()))
                .collect();
            names.sort();
            names
        };
        assert!(left(&dir).iter().any(|n| n.starts_with("mnt-")), "{backend}: {:?} {}", left(&dir), describe(&dead));

        // A live holder: its snapshot, view and temporary directory survive another open.
        let mut live = op_child(&ctx.root(), backend, "hold", None)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ready = std::io::BufRead::lines(std::io::BufReader::new(live.stdout.as_mut().unwrap()))
            .map_while(Result::ok)
            .any(|l| l == "ready");
        assert!(ready, "{backend}: the live child never got ready");

        let sn = open(&ctx.root(), backend);
        let keys: Vec<(String, Kind)> = sn.list().unwrap().into_iter().map(|i| (i.key, i.kind)).collect();
        let live_keys =
            [("c".to_string(), Kind::Committed), ("live".into(), Kind::Active), ("live-view".into(), Kind::View)];
        assert_eq!(keys, live_keys, "{backend}: the dead children's snapshots are gone, the live one's stay");
        let names = left(&dir);
        let temps: Vec<&String> = names.iter().filter(|n| !n.bytes().all(|b| b.is_ascii_digit())).collect();
        assert_eq!(temps.len(), 1, "{backend}: only the live child's temporary directory is left: {names:?}");
        assert_eq!(names.len(), 4, "{backend}: c, live, live-view and the live temporary directory: {names:?}");
        assert_no_mounts_under_except(&dir, &dir.join(temps[0]));
        let owners = fs::read_dir(dir.join("owners")).unwrap().count();
        assert_eq!(owners, 2, "{backend}: the dead owners' files are gone, ours and the live child's stay");
        drop(sn);

        // The live child carries on and finishes its work.
        drop(live.stdin.take());
        let out = live.wait_with_output().unwrap();
        assert!(out.status.success(), "{backend}: {}", describe(&out));
        let sn = open(&ctx.root(), backend);
        let keys: Vec<String> = sn.list().unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["c", "live-done"], "{backend}");
        assert_no_mounts_under(&dir);
    }
}

/// No mount under `dir` but at or below `allowed`.
#[track_caller]
fn assert_no_mounts_under_except(dir: &Path, allowed: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = info
        .lines()
        .filter(|l| {
            l.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(dir) && !Path::new(m).starts_with(allowed))
        })
        .collect();
    assert!(left.is_empty(), "mounts left under {}:\n{}", dir.display(), left.join("\n"));
}

/// Two processes preparing the same keys, and committing different keys to the same names, on
/// one root: every key and every name is taken exactly once, losers get `AlreadyExists`.
#[test]
fn two_processes_share_a_root() {
    for backend in BACKENDS {
        let ctx = TestContext::new();
        open(&ctx.root(), backend);
        let children: Vec<_> = (0..2)
            .map(|_| {
                op_child(&ctx.root(), backend, "race", None)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn child")
            })
            .collect();
        let (mut created, mut committed) = (0, 0);
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{backend}: {}", describe(&out));
            let value = |k| child_value(&out, k).unwrap_or_else(|| panic!("{backend}: {}", describe(&out)));
            created += value("created").parse::<usize>().unwrap();
            committed += value("committed").parse::<usize>().unwrap();
        }
        assert_eq!((created, committed), (20, 20), "{backend}: each key and name taken by exactly one process");
        // The children are gone: their active snapshots went with them, the committed ones stay.
        let sn = open(&ctx.root(), backend);
        let all = sn.list().unwrap();
        let kinds = |k: Kind, p: char| all.iter().filter(|i| i.kind == k && i.key.starts_with(p)).count();
        assert_eq!((all.len(), kinds(Kind::Active, 'a'), kinds(Kind::Committed, 'c')), (20, 0, 20), "{all:?}");
    }
}

/// Prepares `key` on `c` and mounts it on a temporary directory (when this process may mount),
/// writes into it, and takes the view `<key>-view` of `c`.
fn leave_or_hold(sn: &dyn Snapshotter, key: &str) -> (tempfile::TempDir, Option<snapshot::Mounted>) {
    let mounts = sn.prepare(key, Some("c")).unwrap();
    let target = snapshot::temp_dir(sn.dir(), "mnt").unwrap();
    let (root, mounted) = match mounts.plain_dir() {
        Some(dir) => (dir.to_path_buf(), None),
        None => (target.path().to_path_buf(), Some(mounts.mount(target.path()).unwrap())),
    };
    fs::write(root.join("big"), vec![1u8; 1 << 20]).unwrap();
    sn.view(&format!("{key}-view"), Some("c")).unwrap();
    (target, mounted)
}

/// The child half of the tests above; does nothing unless started by them.
#[test]
fn snapshot_op_child() {
    let (Ok(op), Some(root)) = (std::env::var(CHILD_OP), std::env::var_os(CHILD_ROOT)) else {
        return;
    };
    let backend = match std::env::var(CHILD_BACKEND).as_deref() {
        Ok("overlay") => Backend::Overlay,
        _ => Backend::Copy,
    };
    let sn = open(Path::new(&root), backend);
    match op.as_str() {
        "prepare" => drop(sn.prepare("crashed", Some("c"))),
        // An active snapshot mounted on a temporary mount point, a view and a temporary copy,
        // then kill -9: nothing is cleaned up by this process.
        "leave" => {
            let key = format!("left-{}", std::process::id());
            let _kept = leave_or_hold(sn.as_ref(), &key);
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            std::process::abort();
        }
        // The same, kept until stdin closes; then everything is undone and committed.
        "hold" => {
            let (mount_point, mounted) = leave_or_hold(sn.as_ref(), "live");
            println!("ready");
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new()).unwrap();
            if let Some(mounted) = mounted {
                mounted.unmount().unwrap();
            }
            drop(mount_point);
            sn.remove("live-view").unwrap();
            sn.commit("live-done", "live", None).unwrap();
        }
        "remove" => drop(sn.remove("c")),
        "race" => {
            // Both children open the snapshotter before either races: a child that had already
            // ended would be a dead owner whose active snapshots the other's open reclaims.
            let root = std::path::PathBuf::from(std::env::var(CHILD_ROOT).unwrap());
            let root = root.parent().unwrap().to_path_buf();
            fs::write(root.join(format!("race-ready-{}", std::process::id())), b"").unwrap();
            let deadline = std::time::Instant::now() + crate::support::scaled(std::time::Duration::from_secs(20));
            let ready = || {
                fs::read_dir(&root)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("race-ready-"))
                    .count()
            };
            while ready() < 2 {
                assert!(std::time::Instant::now() < deadline, "the other child never opened the snapshotter");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // Same keys (stay active), and different keys racing for the same committed names.
            let (mut created, mut committed) = (0, 0);
            for i in 0..20 {
                if sn.prepare(&format!("a{i}"), None).is_ok() {
                    created += 1;
                }
                let key = format!("k{i}-{}", std::process::id());
                sn.prepare(&key, None).unwrap();
                match sn.commit(&format!("c{i}"), &key, None) {
                    Ok(_) => committed += 1,
                    Err(SnapshotError::AlreadyExists { .. }) => sn.remove(&key).unwrap(),
                    Err(e) => panic!("commit c{i}: {e:?}"),
                }
            }
            println!("created={created}");
            println!("committed={committed}");
        }
        other => panic!("unknown op {other}"),
    }
}
