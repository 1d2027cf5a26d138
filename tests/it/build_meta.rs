//! `build`: the metadata instructions (ENV, ARG, LABEL, EXPOSE, USER, WORKDIR, CMD, ENTRYPOINT,
//! VOLUME, SHELL, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD) as the image config and history
//! show them, and as `slipway run` uses them.

use serde_json::json;

use crate::support::build::BuildEnv;

#[test]
fn metadata_instructions_set_the_config_and_history() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb\n\
         MAINTAINER someone <a@b.c>\n\
         ENV A=1 B=\"two words\"\n\
         ENV A=3\n\
         LABEL org.example.x=\"y z\" other=1\n\
         EXPOSE 80 53/udp 8000-8001\n\
         VOLUME /data /cache\n\
         WORKDIR /app\n\
         WORKDIR sub\n\
         USER user:user\n\
         STOPSIGNAL SIGINT\n\
         HEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost || exit 1\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         ENTRYPOINT [\"/bin/echo\"]\n\
         CMD [\"hello\"]\n",
    );
    env.build_ok(&["-t", "img:1", "--label", "from.cli=yes"]);
    let config = env.config("img:1");
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=3", "B=two words"])
    );
    assert_eq!(c["Labels"], json!({"org.example.x": "y z", "other": "1", "from.cli": "yes"}));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}, "/cache": {}}));
    assert_eq!(c["WorkingDir"], "/app/sub");
    assert_eq!(c["User"], "user:user");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Healthcheck"]["Test"], json!(["CMD-SHELL", "wget -q localhost || exit 1"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Retries"], 3);
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/echo"]));
    assert_eq!(c["Cmd"], json!(["hello"]));
    assert_eq!(config["author"], "someone <a@b.c>");
    let history: Vec<(String, bool)> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|h| (h["created_by"].as_str().unwrap().to_string(), h["empty_layer"].as_bool().unwrap_or(false)))
        .collect();
    let by: Vec<&str> = history.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        by,
        [
            "MAINTAINER someone <a@b.c>",
            "ENV A=1 B=two words",
            "ENV A=3",
            "LABEL org.example.x=y z other=1",
            "EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]",
            "VOLUME [/data /cache]",
            "WORKDIR /app",
            "WORKDIR /app/sub",
            "USER user:user",
            "STOPSIGNAL SIGINT",
            "HEALTHCHECK &{[\"CMD-SHELL\" \"wget -q localhost || exit 1\"] \"30s\" \"0s\" \"0s\" \"0s\" '\\x03'}",
            "SHELL [/bin/sh -ec]",
            "ENTRYPOINT [\"/bin/echo\"]",
            "CMD [\"hello\"]",
        ]
    );
    for (by, empty) in &history {
        // WORKDIR creates its directory as a layer of its own, as BuildKit does.
        assert_eq!(*empty, !by.starts_with("WORKDIR"), "{by}: only WORKDIR makes a layer");
    }
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "the base, /app, /app/sub");
    assert_eq!(env.run_stdout("img:1", &[]), "hello\n");
    assert_eq!(env.run_stdout("img:1", &["other"]), "other\n");
}

#[test]
fn shell_form_cmd_uses_the_shell_and_entrypoint_clears_an_inherited_cmd() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nCMD echo from base\n");
    env.build_ok(&["-t", "base:1"]);
    assert_eq!(env.config("base:1")["config"]["Cmd"], json!(["/bin/sh", "-c", "echo from base"]));
    assert_eq!(env.run_stdout("base:1", &[]), "from base\n");

    env.dockerfile("FROM base:1\nENTRYPOINT [\"/bin/echo\", \"ep\"]\n");
    env.build_ok(&["-t", "child:1"]);
    let c = env.config("child:1")["config"].clone();
    assert_eq!(c["Entrypoint"], json!(["/bin/echo", "ep"]));
    assert!(c["Cmd"].is_null(), "inherited CMD cleared: {c}");

    env.dockerfile("FROM base:1\nCMD [\"x\"]\nENTRYPOINT [\"/bin/echo\"]\n");
    env.build_ok(&["-t", "child:2"]);
    assert_eq!(env.run_stdout("child:2", &[]), "x\n", "a CMD of the same stage stays");
}

#[test]
fn shell_instruction_changes_how_run_runs() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb\nSHELL [\"/bin/sh\", \"-c\", \"echo shell-was-used > /marker; eval \\\"$0\\\"\"]\nRUN true\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/marker"]), "shell-was-used\n");
}

/// The built-in arguments of Dockerfile syntax 1.11+: `TARGETSTAGE` is the `--target` stage
/// (`default` without one), `BUILDPLATFORM` this machine's platform even when the target is
/// another one, and the build-arg `BUILDKIT_SANDBOX_HOSTNAME` names RUN's sandbox.
#[test]
fn built_in_arguments_are_buildkits() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb AS first\n\
         ARG TARGETSTAGE\n\
         RUN echo \"$TARGETSTAGE $(hostname)\" > /t\n\
         FROM first\n\
         RUN true\n",
    );
    env.build_ok(&["-t", "t:1"]);
    assert_eq!(env.run_stdout("t:1", &["cat", "/t"]), "default slipway\n");
    env.build_ok(&["-t", "t:2", "--target", "first", "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=box-1"]);
    assert_eq!(env.run_stdout("t:2", &["cat", "/t"]), "first box-1\n");

    let (host, foreign) = match slipway::oci::Platform::host().architecture.as_str() {
        "arm64" => ("linux/arm64", "linux/amd64"),
        _ => ("linux/amd64", "linux/arm64"),
    };
    env.dockerfile(
        "FROM --platform=$BUILDPLATFORM bb AS build\n\
         ARG BUILDPLATFORM\n\
         ARG TARGETPLATFORM\n\
         RUN echo \"$BUILDPLATFORM $TARGETPLATFORM\" > /p\n\
         FROM scratch\n\
         COPY --from=build /p /p\n",
    );
    env.build_ok(&["-t", "cross:1", "--platform", foreign]);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = env.umoci_unpack("cross:1", dir.path());
    assert_eq!(std::fs::read_to_string(rootfs.join("p")).unwrap(), format!("{host} {foreign}\n"));
    assert_eq!(env.config("cross:1")["architecture"], foreign.rsplit('/').next().unwrap());
}

/// WORKDIR creates its directory and missing parents (0755, owned by the stage's USER) as a
/// layer of its own, also on `FROM scratch`; an existing directory is left alone and makes no
/// layer (BuildKit: testWorkdirCreatesDir, testWorkdirUser, testWorkdirExists; fsutil's
/// MkdirAll chowns every directory it creates).
#[test]
fn workdir_creates_its_directory_owned_by_the_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nUSER user\nWORKDIR /a/b\nUSER root\nWORKDIR /tmp\n");
    env.build_ok(&["-t", "w:1"]);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = env.umoci_unpack("w:1", dir.path());
    for path in ["a", "a/b"] {
        let meta = std::fs::metadata(rootfs.join(path)).unwrap();
        assert!(meta.is_dir(), "{path}");
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (1000, 1000, 0o755), "{path}");
    }
    let history = env.config("w:1")["history"].as_array().unwrap().clone();
    let empty =
        |by: &str| history.iter().find(|h| h["created_by"] == by).unwrap()["empty_layer"].as_bool().unwrap_or(false);
    assert!(!empty("WORKDIR /a/b"), "a new directory is a layer");
    assert!(empty("WORKDIR /tmp"), "an existing directory makes no layer");
    assert_eq!(env.config("w:1")["config"]["WorkingDir"], "/tmp");

    env.dockerfile("FROM scratch\nWORKDIR /srv/app\n");
    env.build_ok(&["-t", "w:2"]);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = env.umoci_unpack("w:2", dir.path());
    let meta = std::fs::metadata(rootfs.join("srv/app")).unwrap();
    assert_eq!((meta.is_dir(), meta.uid(), meta.permissions().mode() & 0o7777), (true, 0, 0o755));
}

#[test]
fn arg_scoping_follows_docker() {
    let env = BuildEnv::new();
    env.dockerfile(
        "ARG TAG=bb\n\
         ARG GLOBAL=g\n\
         FROM $TAG\n\
         ARG GLOBAL\n\
         ARG LOCAL=l\n\
         RUN echo \"$GLOBAL $LOCAL $TAG.\" > /args\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/args"]), "g l .\n");
    env.build_ok(&["-t", "img:2", "--build-arg", "LOCAL=over", "--build-arg", "GLOBAL=G"]);
    assert_eq!(env.run_stdout("img:2", &["cat", "/args"]), "G over .\n");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nONBUILD RUN echo triggered > /onbuild\nONBUILD ENV FROM_TRIGGER=1\n");
    env.build_ok(&["-t", "parent:1"]);
    let c = env.config("parent:1")["config"].clone();
    assert_eq!(c["OnBuild"], json!(["RUN echo triggered > /onbuild", "ENV FROM_TRIGGER=1"]));
    let out = env.tc.run(&["run", "parent:1", "cat", "/onbuild"]);
    assert!(!out.status.success(), "triggers do not run in the image that declares them");

    env.dockerfile("FROM parent:1\nRUN echo $FROM_TRIGGER > /seen\n");
    env.build_ok(&["-t", "child:1"]);
    assert_eq!(env.run_stdout("child:1", &["cat", "/onbuild", "/seen"]), "triggered\n1\n");
    assert!(env.config("child:1")["config"]["OnBuild"].is_null(), "triggers are consumed");
}

#[test]
fn from_scratch_gets_a_path_and_the_platform() {
    let env = BuildEnv::new();
    env.dockerfile("FROM scratch\nENV X=1\n");
    env.build_ok(&["-t", "s:1", "--platform", "linux/arm64"]);
    let config = env.config("s:1");
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["rootfs"]["diff_ids"], json!([]));
    assert_eq!(
        config["config"]["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "X=1"])
    );
}

/// `FROM --platform=P` sets the stage's platform (its config, and what a RUN in it would need);
/// `$BUILDPLATFORM` is this build's. Runs where `binfmt_misc` registers no emulator.
#[test]
fn from_platform_sets_the_stages_platform() {
    use crate::support::emulation::{Binfmt, delegated};
    if delegated(Binfmt::Empty, "build_meta::from_platform_sets_the_stages_platform") {
        return;
    }
    let (arch, foreign) = match slipway::oci::Platform::host().architecture.as_str() {
        "arm64" => ("amd64", "linux/amd64"),
        _ => ("arm64", "linux/arm64"),
    };
    let env = BuildEnv::new();
    env.write("a", "a\n");
    env.dockerfile(&format!("FROM --platform={foreign} scratch\nCOPY a /a\n"));
    env.build_ok(&["-t", "s:1"]);
    assert_eq!(env.config("s:1")["architecture"], arch);
    env.dockerfile(&format!("FROM --platform={foreign} scratch\nCOPY a /a\nRUN true\n"));
    let out = env.build(&["-t", "s:2"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::support::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Refused at its line: no emulator is registered.
    let host = slipway::oci::Platform::host();
    let says =
        format!("Dockerfile:3:1: error: RUN for a foreign platform: this {host} machine cannot run {foreign} programs");
    assert!(stderr.contains(&says), "{stderr}");
    env.dockerfile("FROM --platform=$BUILDPLATFORM bb\nRUN true\n");
    env.build_ok(&["-t", "s:3"]);
}

#[test]
fn bad_metadata_fails_at_its_line() {
    let env = BuildEnv::new();
    for (file, line, needle) in [
        ("FROM bb\nEXPOSE 80/foo\n", 2, "invalid proto"),
        ("FROM bb\nENV A=1\nSTOPSIGNAL SIGNOPE\n", 3, "invalid signal"),
        ("FROM 127.0.0.1:9/nosuchimage\n", 1, "nosuchimage"),
        ("FROM bb\nFROMM x\n", 2, "unknown instruction"),
    ] {
        env.dockerfile(file);
        let out = env.build(&[]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("Dockerfile:{line}:")), "{file}: {stderr}");
        assert!(stderr.to_lowercase().contains(needle), "{file}: {stderr}");
    }
}

#[test]
fn from_a_digest_pin_and_from_an_earlier_stage() {
    let env = BuildEnv::new();
    let inspect: serde_json::Value = serde_json::from_slice(&env.tc.ok(&["inspect", "bb"]).stdout).unwrap();
    let digest = inspect[0]["Descriptor"]["digest"].as_str().unwrap().to_string();
    env.dockerfile(&format!("FROM bb@{digest} AS base\nRUN echo pinned > /p\nFROM base\nRUN cat /p > /q\n"));
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/q"]), "pinned\n");
    let wrong = format!("sha256:{}", "0".repeat(64));
    env.dockerfile(&format!("FROM 127.0.0.1:9/bb@{wrong}\n"));
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dockerfile:1:1"));
}
