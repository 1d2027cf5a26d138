//! `build -o type=docker` read by the Docker engine itself: the archive (written to a file, and
//! streamed on stdout straight into the engine) is `docker load`ed by a private dockerd
//! ([`TestDockerd`]), which must then show the image slipway built — id, name, layer DiffIDs,
//! config — and run it: a container started from it (`--network none`, the daemon has no bridge)
//! sees the files, environment and working directory the Dockerfile made.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::dockerd::TestDockerd;

/// Three layers over the base's one (WORKDIR's directory, RUN, COPY), with ENV, a label, a
/// WORKDIR and a CMD the engine must keep.
const DOCKERFILE: &str = "FROM bb\n\
    ENV GREETING=hello PATH=/usr/local/bin:/bin\n\
    WORKDIR /app\n\
    RUN echo \"$GREETING from slipway\" > greeting && chmod 640 greeting\n\
    COPY note.txt /app/\n\
    LABEL org.example.purpose=docker-load\n\
    CMD [\"cat\", \"greeting\", \"note.txt\"]\n";

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
    // The environment, the working directory and the RUN's file mode, seen from inside.
    let probe = "echo \"$GREETING $PWD\" && stat -c '%a %u:%g %s' greeting /bin/busybox";
    let out = docker.ok(&["run", "--rm", "--network", "none", name, "sh", "-c", probe]);
    let busybox_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello /app\n640 0:0 19\n755 0:0 {busybox_size}\n"),
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

    // dest=FILE, then `docker load -i FILE`.
    let archive = env.tc.path().join("img.docker");
    env.build_ok(&["-t", "img:1", "-o", &format!("type=docker,dest={}", archive.display())]);
    let out = docker.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: img:1\n", "{}", describe(&out));
    assert_loaded(&env, &docker, "img:1");

    // dest=- piped into `docker load` (no file between them), under another name; the engine
    // first forgets the image (the build is cached: it is the same one).
    docker.ok(&["rmi", "img:1"]);
    assert_eq!(docker.ok(&["image", "ls", "-q"]).stdout, b"", "the engine holds no image");
    let mut build = env.build_cmd(&["-t", "img:2", "-o", "type=docker,dest=-"]);
    let mut build = build.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn slipway");
    let stdout = build.stdout.take().unwrap();
    let load: &mut Command = &mut docker.cmd();
    let load = load.arg("load").stdin(stdout).output().expect("spawn docker load");
    let build = build.wait_with_output().unwrap();
    assert!(build.status.success(), "build: {}", describe(&build));
    docker.check(&["load"], &load);
    assert_eq!(String::from_utf8_lossy(&load.stdout), "Loaded image: img:2\n", "{}", describe(&load));
    assert_loaded(&env, &docker, "img:2");
}
