//! `build -o type=docker` read by the Docker engine itself: the archive (written to a file, and
//! streamed on stdout straight into the engine) is `docker load`ed by a private dockerd
//! ([`TestDockerd`]), which must then show the image slipway built — id, name, layer DiffIDs,
//! config — and run it: a container started from it (`--network none`, the daemon has no bridge)
//! sees the files, environment and working directory the Dockerfile made. The engine's own
//! unpacking of the layers (`docker export` of a container) is compared, file by file, with the
//! filesystem `-o type=local` writes for the same build.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::dockerd::TestDockerd;
use crate::support::tree::{assert_same, snapshot};

/// Three layers over the base's one (WORKDIR's directory, RUN, COPY), with ENV, a label, a
/// WORKDIR and a CMD the engine must keep; the RUN's layer has a file of another owner, a
/// hardlink, a symlink and a whiteout (`/bin/vi` of the base).
const DOCKERFILE: &str = "FROM bb\n\
    ENV GREETING=hello PATH=/usr/local/bin:/bin\n\
    WORKDIR /app\n\
    RUN echo \"$GREETING from slipway\" > greeting && chmod 640 greeting && chown 1000:1000 greeting \
    && ln greeting hard && ln -s greeting link && rm /bin/vi\n\
    COPY note.txt /app/\n\
    LABEL org.example.purpose=docker-load\n\
    CMD [\"cat\", \"greeting\", \"note.txt\"]\n";

/// What dockerd's init layer (moby `daemon/initlayer`) adds to every container's filesystem
/// when the image lacks it: empty mount points for what a started container gets mounted.
const INIT_LAYER: [&str; 11] = [
    ".dockerenv",
    "dev",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
];

/// The image as slipway's store has it: `(id, diff_ids, config)`.
fn slipway_image(env: &BuildEnv, name: &str) -> (String, Value, Value) {
    let out = env.tc.ok(&["inspect", name]);
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = &inspect[0]["Config"];
    let id = inspect[0]["Id"].as_str().unwrap_or_else(|| panic!("no Id in {inspect}")).to_string();
    (id, config["rootfs"]["diff_ids"].clone(), config["config"].clone())
}

/// The engine holds `name` as slipway built it, and a container from it runs as the Dockerfile says.
#[track_caller]
fn assert_loaded(env: &BuildEnv, docker: &TestDockerd, name: &str) {
    let (id, diff_ids, config) = slipway_image(env, name);
    assert_eq!(diff_ids.as_array().unwrap().len(), 4, "{diff_ids}");
    let loaded = docker.inspect_image(name);
    assert_eq!(loaded["Id"], id, "{loaded}");
    assert_eq!(loaded["RepoTags"], json!([name]), "{loaded}");
    assert_eq!(loaded["RootFS"]["Type"], "layers", "{loaded}");
    assert_eq!(loaded["RootFS"]["Layers"], diff_ids, "{loaded}");
    let engine = &loaded["Config"];
    for key in ["Env", "Cmd", "WorkingDir", "Labels"] {
        assert_eq!(engine[key], config[key], "{key}: engine {loaded}\nslipway {config}");
    }
    assert_eq!(engine["Env"], json!(["PATH=/usr/local/bin:/bin", "GREETING=hello"]), "{loaded}");
    assert_eq!(engine["Cmd"], json!(["cat", "greeting", "note.txt"]), "{loaded}");
    assert_eq!(engine["WorkingDir"], "/app", "{loaded}");
    assert_eq!(engine["Labels"], json!({"org.example.purpose": "docker-load"}), "{loaded}");

    // The CMD, run in the WORKDIR: both layers' files.
    let out = docker.ok(&["run", "--rm", "--network", "none", name]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from slipway\na note\n", "{}", describe(&out));
    // The environment, the working directory and the RUN's layer (owner, mode, link count,
    // symlink, whiteout) seen from inside.
    let probe = "echo \"$GREETING $PWD\" && stat -c '%a %u:%g %s %h' greeting /bin/busybox && readlink link \
        && if [ -e /bin/vi ]; then echo vi; else echo no vi; fi";
    let out = docker.ok(&["run", "--rm", "--network", "none", name, "sh", "-c", probe]);
    let busybox_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello /app\n640 1000:1000 19 2\n755 0:0 {busybox_size} 1\ngreeting\nno vi\n"),
        "{}",
        describe(&out)
    );
}

#[test]
fn docker_archives_are_loaded_and_run_by_the_docker_engine() {
    let env = BuildEnv::new();
    env.dockerfile(DOCKERFILE);
    env.write("note.txt", "a note\n");
    let docker = TestDockerd::start();

    // dest=FILE, then `docker load -i FILE`; type=local of the same build beside it.
    let archive = env.tc.path().join("img.docker");
    let local = env.tc.path().join("local");
    let docker_output = format!("type=docker,dest={}", archive.display());
    let local_output = format!("type=local,dest={}", local.display());
    env.build_ok(&["-t", "img:1", "-o", &docker_output, "-o", &local_output]);
    let out = docker.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: img:1\n", "{}", describe(&out));
    assert_loaded(&env, &docker, "img:1");

    // The engine's own unpacking of the layers, exported from a container (created, never
    // started), is the filesystem type=local wrote: owners, modes, links, mtimes, the whiteout.
    let created = docker.ok(&["create", "--network", "none", "img:1"]);
    let container = String::from_utf8(created.stdout).unwrap().trim().to_string();
    let exported = env.tc.path().join("exported.tar");
    docker.ok(&["export", "-o", exported.to_str().unwrap(), &container]);
    docker.ok(&["rm", &container]);
    let unpacked = env.tc.path().join("exported");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = Command::new("tar")
        .args(["--numeric-owner", "-xpf", exported.to_str().unwrap(), "-C", unpacked.to_str().unwrap()])
        .output()
        .expect("spawn tar");
    assert!(tar.status.success(), "tar: {}", describe(&tar));
    let (mut engine, ours) = (snapshot(&unpacked), snapshot(&local));
    // Less what the engine's init layer gives every container: mount points, and so a newer /etc.
    for path in INIT_LAYER {
        assert!(!ours.contains_key(path.as_bytes()), "/{path} is in the image itself");
        engine.remove(path.as_bytes()).unwrap_or_else(|| panic!("the engine added no /{path}"));
    }
    engine.get_mut(b"etc".as_slice()).unwrap().mtime = ours[b"etc".as_slice()].mtime;
    assert_same(&engine, &ours);

    // dest=- piped into `docker load` (no file between them), under another name, once the
    // engine has forgotten the image (the build is cached, so the layers are the same ones).
    docker.ok(&["rmi", "img:1"]);
    assert_eq!(docker.ok(&["image", "ls", "-q"]).stdout, b"", "the engine holds no image");
    let progress = env.tc.path().join("build.stderr");
    let mut build = env
        .build_cmd(&["-t", "img:2", "-o", "type=docker,dest=-"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&progress).unwrap())
        .spawn()
        .expect("spawn slipway");
    let archive = build.stdout.take().unwrap();
    let load = docker.cmd().arg("load").stdin(archive).output().expect("spawn docker load");
    let status = build.wait().unwrap();
    assert!(status.success(), "build: {status}\n{}", std::fs::read_to_string(&progress).unwrap());
    docker.check(&["load"], &load);
    assert_eq!(String::from_utf8_lossy(&load.stdout), "Loaded image: img:2\n", "{}", describe(&load));
    assert_loaded(&env, &docker, "img:2");
}
