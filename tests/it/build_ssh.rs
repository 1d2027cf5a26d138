//! SSH for builds: `RUN --mount=type=ssh` and `build --ssh`, against the test host
//! (`support/sshd.rs`, OpenSSH's sshd on 127.0.0.1) that a build step logs in to through a
//! forwarded agent; and the fixture's own check.

use std::path::Path;
use std::process::Command;

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::sshd::{DESTINATION, SSH_BIN, SshAgent, TestSshd};

/// `--ssh default=KEY`: the key is served by an ssh-agent started for the build; the step logs
/// in to the test host through the forwarded agent. The key's bytes are nowhere in the store
/// or the output, and nothing of the agent stays behind.
#[test]
fn a_run_step_fetches_through_an_agent_serving_a_key_file() {
    let sshd = TestSshd::start();
    let served = sshd.serve_file("greeting.txt", b"hello over ssh\n");
    let env = BuildEnv::served_with_ssh_client();
    env.dockerfile(&format!(
        "FROM bb\n\
         RUN --mount=type=ssh ssh {} {DESTINATION} cat {} > /fetched && echo \"$SSH_AUTH_SOCK\" > /sock\n",
        sshd.client_options().join(" "),
        served.display()
    ));
    let key = format!("default={}", sshd.client_key().display());
    let out = env.build(&[
        "--progress",
        "rawjson",
        "-t",
        "img:1",
        "--network",
        "host",
        "--allow",
        "network.host",
        "--ssh",
        &key,
    ]);
    assert!(out.status.success(), "{}\nsshd:\n{}", describe(&out), sshd.log());
    assert_eq!(env.run_stdout("img:1", &["cat", "/fetched", "/sock"]), "hello over ssh\n/run/buildkit/ssh_agent.0\n");
    assert!(sshd.log().contains("Accepted publickey for root from 127.0.0.1"), "{}", sshd.log());
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(!rootfs.join("run/buildkit").exists(), "the socket's mount point is not in the image");
    let key_bytes = std::fs::read(sshd.client_key()).unwrap();
    let body: Vec<u8> = key_bytes.split(|b| *b == b'\n').nth(1).unwrap().to_vec();
    crate::build_mounts::assert_nowhere(&env, &[&out], &body);
    crate::build_stages::assert_clean(&env);
}

/// `--ssh default` forwards the caller's `SSH_AUTH_SOCK`; each step sees a socket of its own
/// with the mount's owner and mode; `id` names other agents; `required` fails before any step
/// when the agent is not given, an optional mount is left out.
#[test]
fn ssh_mounts_forward_the_callers_agent_with_their_owner_mode_and_target() {
    let sshd = TestSshd::start();
    let served = sshd.serve_file("agent.txt", b"through the caller's agent\n");
    let agent = SshAgent::start();
    agent.add(sshd.client_key());
    let env = BuildEnv::served_with_ssh_client();
    let opts = sshd.client_options().join(" ");
    env.dockerfile(&format!(
        "FROM bb\n\
         RUN --mount=type=ssh,uid=1000,mode=0660 stat -c '%a %u' \"$SSH_AUTH_SOCK\" > /stat && \
             ssh {opts} {DESTINATION} cat {} > /fetched\n\
         RUN --mount=type=ssh,id=other,target=/run/other.sock SSH_AUTH_SOCK=/run/other.sock ssh {opts} {DESTINATION} cat {} > /other\n\
         RUN --mount=type=ssh,id=absent (test -e /run/buildkit/ssh_agent.0 && echo mounted || echo left-out) > /optional\n",
        served.display(),
        served.display()
    ));
    let other = format!("other={}", agent.socket().display());
    let mut cmd = env.build_cmd(&[
        "-t",
        "img:1",
        "--network",
        "host",
        "--allow",
        "network.host",
        "--ssh",
        "default",
        "--ssh",
        &other,
    ]);
    let out = cmd.env("SSH_AUTH_SOCK", agent.socket()).output().unwrap();
    assert!(out.status.success(), "{}\nsshd:\n{}", describe(&out), sshd.log());
    assert_eq!(
        env.run_stdout("img:1", &["cat", "/stat", "/fetched", "/other", "/optional"]),
        "660 1000\nthrough the caller's agent\nthrough the caller's agent\nleft-out\n"
    );
    env.dockerfile("FROM bb\nRUN echo first\nRUN --mount=type=ssh,id=deploy,required=true true\n");
    let out = env.build(&["--progress", "rawjson"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3:1: error: ssh agent deploy is required but was not given"), "{stderr}");
    assert!(crate::support::build::steps(&crate::support::build::events(&out)).is_empty(), "{stderr}");
    let out = env.build_cmd(&["--ssh", "default"]).env_remove("SSH_AUTH_SOCK").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSH_AUTH_SOCK is not set"), "{}", describe(&out));
    crate::build_stages::assert_clean(&env);
}

#[test]
fn the_host_client_logs_in_with_the_client_key_held_by_ssh_agent() {
    let sshd = TestSshd::start();
    let served = sshd.serve_file("agent.txt", b"through the agent\n");
    let ssh = |agent_socket: Option<&Path>| {
        let mut cmd = Command::new(SSH_BIN);
        cmd.args(sshd.client_options()).args(["-o", "IdentitiesOnly=no", DESTINATION, "cat"]).arg(&served);
        cmd.env_remove("SSH_AUTH_SOCK").env_remove("SSH_AGENT_PID");
        if let Some(socket) = agent_socket {
            cmd.env("SSH_AUTH_SOCK", socket);
        }
        cmd.output().expect("spawn ssh")
    };

    // Without the agent no key the client has is authorized.
    let out = ssh(None);
    assert!(!out.status.success(), "logged in without the agent: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{}", describe(&out));

    let agent = SshAgent::start();
    agent.add(sshd.client_key());
    let out = ssh(Some(agent.socket()));
    assert!(out.status.success(), "ssh through the agent: {}\nsshd:\n{}", describe(&out), sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the agent\n");
    let socket = agent.socket().to_path_buf();

    // Dropped, the agent is gone with its socket, and so is the login.
    drop(agent);
    assert!(!socket.exists());
    let out = ssh(Some(&socket));
    assert!(!out.status.success(), "logged in after the agent was killed: {}", describe(&out));
}
