//! `build -o/--output` (buildx's outputs): OCI and docker archives read by skopeo and umoci, the
//! final filesystem as a directory (compared file by file with `umoci unpack` of the same image)
//! and as a tar, several outputs at once, stdout, pushes with `name=` and `compression=`,
//! `rewrite-timestamp=true` making two stores agree, and values refused before anything runs.

use std::path::Path;
use std::process::Command;

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::registry::Registry;
use crate::support::tree::{assert_same, snapshot};

/// A RUN that adds files (one owned by another user, a symlink, a hardlink) and deletes one of
/// the base's (a whiteout in its layer).
const DOCKERFILE: &str = "FROM bb\n\
    RUN mkdir -p /app/sub && echo hello > /app/hello && chown 1000:1000 /app/hello && chmod 640 /app/hello \
    && ln -s hello /app/link && ln /app/hello /app/sub/hard && rm /bin/vi\n\
    CMD [\"cat\", \"/app/hello\"]\n";

#[track_caller]
fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    out
}

fn skopeo_inspect(transport: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo").args(["inspect", transport]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `umoci unpack` of the image tagged `tag` in the OCI layout `layout` → its rootfs.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> std::path::PathBuf {
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["unpack", "--image", &image, bundle.to_str().unwrap()]));
    bundle.join("rootfs")
}

#[test]
fn several_outputs_at_once_are_read_by_independent_tools() {
    let env = BuildEnv::new();
    env.dockerfile(DOCKERFILE);
    let out = env.tc.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = |spec: &str| spec.replace("OUT", out.to_str().unwrap());
    let specs = [
        o("type=oci,dest=OUT/img.oci"),
        o("type=docker,dest=OUT/img.docker"),
        o("type=local,dest=OUT/rootfs"),
        o("type=tar,dest=OUT/rootfs.tar"),
        o("type=oci,dest=OUT/layout,tar=false"),
    ];
    let mut args = vec!["-t", "img:1"];
    for spec in &specs {
        args.extend(["-o", spec.as_str()]);
    }
    env.build_ok(&args);
    // The store has the image too (the default output), under its -t name.
    let diff_ids = env.config("img:1")["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(diff_ids, 2);

    // skopeo reads both archives: two layers, the CMD, the name in the docker archive.
    let oci = skopeo_inspect(&format!("oci-archive:{}/img.oci:1", out.display()));
    assert_eq!(oci["Layers"].as_array().unwrap().len(), 2, "{oci}");
    let docker = skopeo_inspect(&format!("docker-archive:{}/img.docker", out.display()));
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 2, "{docker}");
    let config = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        &format!("docker-archive:{}/img.docker", out.display()),
    ]));
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/app/hello"]), "{config}");
    let listing = run(Command::new("tar").args(["-xOf", out.join("img.docker").to_str().unwrap(), "manifest.json"]));
    assert!(String::from_utf8_lossy(&listing.stdout).contains("\"img:1\""), "{}", describe(&listing));

    // umoci unpacks the OCI archive (extracted) and the OCI directory; type=local is the same
    // tree file by file (owner, mode, content, links, mtimes), and so is type=tar once extracted.
    let extracted = env.tc.path().join("oci-extracted");
    std::fs::create_dir(&extracted).unwrap();
    run(Command::new("tar").args(["-xf", out.join("img.oci").to_str().unwrap(), "-C", extracted.to_str().unwrap()]));
    let from_archive = umoci_unpack(&extracted, "1", &env.tc.path().join("bundle-archive"));
    let from_dir = umoci_unpack(&out.join("layout"), "1", &env.tc.path().join("bundle-dir"));
    let local = snapshot(&out.join("rootfs"));
    assert_same(&snapshot(&from_archive), &local);
    assert_same(&snapshot(&from_dir), &local);
    assert!(local.contains_key(b"app/hello".as_slice()) && !local.contains_key(b"bin/vi".as_slice()));
    let hello = &local[b"app/hello".as_slice()];
    assert_eq!((hello.uid, hello.gid, hello.mode & 0o7777), (1000, 1000, 0o640));
    assert_eq!(hello.link_group.as_deref(), Some(b"app/hello".as_slice()), "a hardlink pair");
    assert_eq!(local[b"app/sub/hard".as_slice()].link_group, hello.link_group);

    let untarred = env.tc.path().join("untarred");
    std::fs::create_dir(&untarred).unwrap();
    run(Command::new("tar").args(["-xpf", out.join("rootfs.tar").to_str().unwrap(), "-C", untarred.to_str().unwrap()]));
    assert_same(&snapshot(&untarred), &local);

    // Nothing else was left in the output directory (no temporary files).
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["img.docker", "img.oci", "layout", "rootfs", "rootfs.tar"]);

    // `-o -` is type=tar on stdout: the same bytes as the file.
    let piped = env.build_ok(&["-o", "-", "--progress", "plain"]);
    assert!(piped.stdout == std::fs::read(out.join("rootfs.tar")).unwrap(), "stdout is the tar");
    // dest=- of an archive: what skopeo reads from a file.
    let piped = env.build_ok(&["-t", "img:1", "-o", "type=docker,dest=-"]);
    let copy = env.tc.path().join("piped.docker");
    std::fs::write(&copy, &piped.stdout).unwrap();
    let docker = skopeo_inspect(&format!("docker-archive:{}", copy.display()));
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 2, "{docker}");
}

/// The end-to-end case buildx users know: a binary built in one stage, copied into a scratch
/// stage, written straight to a directory with `-o DIR`, which keeps what it held.
#[test]
fn an_output_straight_to_a_local_directory() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb AS build\nRUN mkdir /out && printf '#!/bin/sh\\necho built\\n' > /out/app && chmod 755 /out/app \
         && chown 1000:1000 /out/app\nFROM scratch\nCOPY --from=build /out/app /bin/app\n",
    );
    let dest = env.tc.path().join("dist");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("README"), "mine\n").unwrap();
    // A link in the directory that points outside it is never written through.
    let outside = env.tc.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("bin")).unwrap();
    let out = env.build_ok(&["-o", dest.to_str().unwrap(), "--progress", "plain"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote "), "{}", describe(&out));
    let tree = snapshot(&dest);
    let names: Vec<String> = tree.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(names, ["README", "bin", "bin/app"]);
    let app = &tree[b"bin/app".as_slice()];
    assert_eq!((app.uid, app.gid, app.mode & 0o7777), (1000, 1000, 0o755), "ownership kept as root");
    assert_eq!(std::fs::read_to_string(dest.join("bin/app")).unwrap(), "#!/bin/sh\necho built\n");
    assert_eq!(std::fs::read_to_string(dest.join("README")).unwrap(), "mine\n");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside the directory");
    assert!(std::fs::symlink_metadata(dest.join("bin")).unwrap().is_dir(), "the image's directory replaced the link");
}

/// Two stores whose base was imported at different times, a RUN that writes files: with
/// SOURCE_DATE_EPOCH and rewrite-timestamp=true the manifests are the same; without
/// rewrite-timestamp they differ (the base's files carry their import time).
#[test]
fn rewrite_timestamp_makes_two_stores_give_the_same_manifest() {
    let first = BuildEnv::new();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = BuildEnv::new();
    // Files written now and one dated after the epoch; their content is the same in both builds.
    let dockerfile = "FROM bb\nRUN echo built > /built && touch /tmp/stamp && touch -d '2030-01-01 00:00:00' /future\n";
    let digest = |env: &BuildEnv, rewrite: bool| {
        env.dockerfile(dockerfile);
        let meta = env.tc.path().join("meta.json");
        let output = format!("type=image,name=img:1,rewrite-timestamp={rewrite}");
        let args = ["--source-date-epoch", "1700000000", "--no-cache", "-o", &output, "--metadata-file"];
        let mut all = args.to_vec();
        all.push(meta.to_str().unwrap());
        env.build_ok(&all);
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        meta["containerimage.digest"].as_str().unwrap().to_string()
    };
    let (a, b) = (digest(&first, true), digest(&second, true));
    assert_eq!(a, b, "rewrite-timestamp=true gives the same manifest in both stores");
    // Every history time is the epoch, every file's mtime at most the epoch (umoci's view).
    let config = first.config("img:1");
    for h in config["history"].as_array().unwrap() {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
    let root = first.umoci_unpack("img:1", first.tc.path());
    for (path, node) in snapshot(&root) {
        assert!(node.mtime <= 1_700_000_000, "{} has mtime {}", String::from_utf8_lossy(&path), node.mtime);
    }
    // The control: without the rewrite the base's times tell the stores apart.
    let (a, b) = (digest(&first, false), digest(&second, false));
    assert_ne!(a, b, "without rewrite-timestamp the two bases differ");
}

#[test]
fn image_outputs_push_their_names_with_their_compression() {
    let registry = Registry::start();
    let host = registry.host();
    let env = BuildEnv::new();
    env.dockerfile(DOCKERFILE);
    let (a, b) = (format!("{host}/out/a:1"), format!("{host}/out/b:1"));
    let output = format!("type=image,\"name={a},{b}\",push=true,compression=zstd");
    let out = env.build_ok(&["-o", &output, "--progress", "plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("pushed {host}/out/a@sha256:")), "{stderr}");
    assert!(stderr.contains(&format!("named {b}")), "{stderr}");
    for name in [&a, &b] {
        let raw =
            run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")]));
        let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd", "{manifest}");
        }
        // The names are tags in the store as well.
        env.config(name);
    }
    // oci-mediatypes=false: a Docker schema2 manifest; force-compression=true with a level makes
    // every layer again at that level (other blobs than the default gzip level's).
    let docker = format!("{host}/out/docker:1");
    let default = format!("{host}/out/default:1");
    env.build_ok(&["-o", &format!("type=image,name={default},push=true")]);
    let spec =
        format!("type=image,name={docker},push=true,oci-mediatypes=false,compression-level=1,force-compression=true");
    env.build_ok(&["-o", &spec]);
    let manifest = |name: &str| {
        let raw =
            run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")]));
        serde_json::from_slice::<serde_json::Value>(&raw.stdout).unwrap()
    };
    let (docker, default) = (manifest(&docker), manifest(&default));
    assert_eq!(docker["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{docker}");
    assert_eq!(docker["config"]["mediaType"], "application/vnd.docker.container.image.v1+json", "{docker}");
    assert_eq!(default["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{default}");
    for (d, o) in docker["layers"].as_array().unwrap().iter().zip(default["layers"].as_array().unwrap()) {
        assert_eq!(d["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip", "{docker}");
        assert_ne!(d["digest"], o["digest"], "level 1 is not the default level 6");
    }
    // --push is type=image,push=true to the -t names (gzip).
    let c = format!("{host}/out/c:1");
    env.build_ok(&["--push", "--load", "-t", &c]);
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{c}")]));
    assert!(String::from_utf8_lossy(&raw.stdout).contains("tar+gzip"), "{}", describe(&raw));
}

/// Bad values are refused when the command line is read: exit 2 naming the value, no build
/// started (no record), nothing written.
#[test]
fn unknown_types_keys_and_conflicts_are_refused_before_anything_runs() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN touch /x\n");
    let dest = env.tc.path().join("never");
    let dest_spec = format!("type=local,dest={},color=blue", dest.display());
    let cases: [(&[&str], &str); 6] = [
        (&["-o", &dest_spec], "does not take the key \"color\""),
        (&["-o", "type=floppy,dest=x"], "unknown output type \"floppy\""),
        (&["-o", "type=oci"], "type=oci needs dest="),
        (&["-o", "type=image,rewrite-timestamp=true"], "rewrite-timestamp=true needs SOURCE_DATE_EPOCH"),
        (&["-o", "-", "-q"], "-q prints the image id on stdout"),
        (&["-o", "type=image,compression-level=99"], "compression-level=99 is out of range"),
    ];
    for (args, message) in cases {
        let out = env.build(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{args:?}: {}", describe(&out));
    }
    assert!(!dest.exists());
    let records = env.tc.ok(&["builds", "ls", "--format", "json"]);
    let records: serde_json::Value = serde_json::from_slice(&records.stdout).unwrap();
    assert_eq!(records.as_array().map(Vec::len), Some(0), "no build started: {records}");
    // The control: a good output does start one.
    env.build_ok(&["-o", &format!("type=local,dest={}", dest.display())]);
    assert!(dest.join("x").exists());
}

/// An output that cannot be written fails the command after the build and leaves nothing under
/// its name nor a temporary file beside it.
#[test]
fn a_failed_output_leaves_no_partial_file() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN touch /x\n");
    let out = env.tc.path().join("out");
    std::fs::create_dir_all(out.join("taken/inside")).unwrap();
    let spec = format!("type=oci,dest={}", out.join("taken").display());
    let result = env.build(&["-o", &spec]);
    assert_eq!(result.status.code(), Some(2), "{}", describe(&result));
    assert!(String::from_utf8_lossy(&result.stderr).contains("writing the output type=oci"), "{}", describe(&result));
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["taken"], "no temporary file is left");
    assert!(out.join("taken/inside").is_dir());
    // The control: the same output to a free name is written.
    let spec = format!("type=oci,dest={}", out.join("img.oci").display());
    env.build_ok(&["-o", &spec]);
    assert!(out.join("img.oci").is_file());
}
