//! SSH for builds: the test host (`support/sshd.rs`, OpenSSH's sshd on 127.0.0.1) that a build
//! step logs in to, with a key file for now and through an agent once `RUN --mount=type=ssh`
//! forwards one.

use std::path::Path;
use std::process::Command;

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::sshd::{DESTINATION, SSH_BIN, SshAgent, TestSshd};

#[test]
fn a_run_step_fetches_a_file_from_the_test_host_with_the_client_key() {
    let sshd = TestSshd::start();
    let served = sshd.serve_file("greeting.txt", b"hello over ssh\n");
    let env = BuildEnv::with_ssh_client();
    std::fs::copy(sshd.client_key(), env.ctx().join("id_ed25519")).unwrap();
    env.dockerfile(&format!(
        "FROM bb\n\
         COPY id_ed25519 /id_ed25519\n\
         RUN chmod 600 /id_ed25519 && ssh -i /id_ed25519 {} {DESTINATION} cat {} > /fetched\n",
        sshd.client_options().join(" "),
        served.display()
    ));
    env.build_ok(&["-t", "img:1", "--network", "host", "--allow", "network.host"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/fetched"]), "hello over ssh\n");
    assert!(sshd.log().contains("Accepted publickey for root from 127.0.0.1"), "{}", sshd.log());
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
