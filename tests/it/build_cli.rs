//! `build`: one test per flag of the command line that other modules do not already cover
//! (`-f`, `-f -`, a context tar on stdin, several `-t`, `--platform` for RUN, `-q`,
//! `SOURCE_DATE_EPOCH` from the environment, `--network`, `--progress` modes).

use std::io::Write;
use std::process::Stdio;

use crate::support::build::{BuildEnv, events};
use crate::support::describe;

#[test]
fn file_flag_reads_another_dockerfile_and_stdin() {
    let env = BuildEnv::new();
    env.write("other/app.Dockerfile", "FROM bb\nRUN echo other > /which\n");
    let file = env.ctx().join("other/app.Dockerfile");
    env.build_ok(&["-f", file.to_str().unwrap(), "-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/which"]), "other\n");

    let mut child =
        env.build_cmd(&["-f", "-", "-t", "img:2"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"FROM bb\nRUN echo stdin > /which\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(env.run_stdout("img:2", &["cat", "/which"]), "stdin\n");

    let out = env.build(&["-f", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/Dockerfile"));
}

/// Without `-f`, BuildKit reads `Dockerfile`, else `dockerfile`; errors name the file it read.
#[test]
fn a_lower_case_dockerfile_is_the_fallback() {
    let env = BuildEnv::new();
    env.write("dockerfile", "FROM bb\nRUN echo lower > /which\n");
    env.build_ok(&["-t", "l:1"]);
    assert_eq!(env.run_stdout("l:1", &["cat", "/which"]), "lower\n");
    env.write("Dockerfile", "FROM bb\nRUN echo upper > /which\n");
    env.build_ok(&["-t", "u:1"]);
    assert_eq!(env.run_stdout("u:1", &["cat", "/which"]), "upper\n", "Dockerfile wins when both exist");
    std::fs::remove_file(env.ctx().join("Dockerfile")).unwrap();
    env.write("dockerfile", "FROM bb\nRUN exit 3\n");
    let out = env.build(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("dockerfile:2:1"), "{}", describe(&out));
    std::fs::remove_file(env.ctx().join("dockerfile")).unwrap();
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no dockerfile either"), "{}", describe(&out));
}

#[test]
fn context_tar_on_stdin() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nCOPY hello.txt /hello.txt\n");
    env.write("hello.txt", "from a tar\n");
    let tar =
        std::process::Command::new("tar").args(["-C", env.ctx().to_str().unwrap(), "-cf", "-", "."]).output().unwrap();
    assert!(tar.status.success());
    let mut child =
        env.tc.cmd().args(["build", "-t", "img:1", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(env.run_stdout("img:1", &["cat", "/hello.txt"]), "from a tar\n");
}

#[test]
fn several_tags_quiet_and_env_epoch() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo x > /x\n");
    let out = env.build_cmd(&["-q", "-t", "a:1", "-t", "b:2"]).env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "-q prints the id: {id:?}");
    assert!(out.stderr.is_empty(), "-q prints no progress: {}", describe(&out));
    for name in ["a:1", "b:2"] {
        let inspect: serde_json::Value = serde_json::from_slice(&env.tc.ok(&["inspect", name]).stdout).unwrap();
        assert_eq!(inspect[0]["Id"], id.as_str());
        assert_eq!(inspect[0]["Config"]["created"], "2023-11-14T22:13:20Z");
    }
}

/// Runs where `binfmt_misc` registers no emulator.
#[test]
fn run_for_a_foreign_platform_fails_clearly() {
    use crate::support::emulation::{Binfmt, delegated};
    if delegated(Binfmt::Empty, "build_cli::run_for_a_foreign_platform_fails_clearly") {
        return;
    }
    let env = BuildEnv::new();
    let foreign = if std::env::consts::ARCH == "x86_64" { "linux/arm64" } else { "linux/amd64" };
    env.dockerfile("FROM bb\nRUN true\n");
    let out = env.build(&["--platform", foreign]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:2:1") && stderr.contains(foreign), "{stderr}");
}

#[test]
fn network_flag_sets_the_default_of_run() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN ls /sys/class/net | sort > /ifaces\n");
    env.build_ok(&["-t", "none:1", "--network", "none"]);
    assert_eq!(env.run_stdout("none:1", &["cat", "/ifaces"]), "lo\n");
    env.build_ok(&["-t", "host:1", "--network", "host", "--allow", "network.host", "--no-cache"]);
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(env.run_stdout("host:1", &["cat", "/ifaces"]).lines().count(), host_ifaces);
    let out = env.build(&["--network", "host"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow network.host"));
}

#[test]
fn progress_modes() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo visible-line\n");
    let plain = env.build_ok(&["--progress", "plain", "--no-cache"]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("[2/2] RUN echo visible-line") && stderr.contains("visible-line\n"), "{stderr}");
    assert!(stderr.contains("built sha256:"), "closing summary: {stderr}");
    let json = env.build_ok(&["--progress", "rawjson", "--no-cache"]);
    let ev = events(&json);
    assert!(ev.iter().any(|e| e["type"] == "task_log" && e["line"] == "visible-line"), "{ev:?}");
    let quiet = env.build_ok(&["--progress", "quiet", "--no-cache"]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("visible-line"));
}
