//! `RUN`: the command, its environment and its cache key; executed by the [`Executor`] in a
//! fresh snapshot whose changes become the step's layer.
//!
//! [`Executor`]: crate::exec::Executor

use super::BuildError;
use super::layers::{self, LayerStep};
use super::logs::StepLog;
use super::stage::State;
use super::step::StepCtx;
use crate::cache::KeyInputs;
use crate::dockerfile::args::{Origin, SANDBOX_HOSTNAME_ARG};
use crate::dockerfile::{CommandLine, NetworkMode, RunInstruction, SecurityMode};
use crate::exec::{DEFAULT_HOSTNAME, ExecSpec, Network, Output, Security};
use crate::progress::LogStream;

/// What a RUN executes, resolved against the stage.
struct Command {
    argv: Vec<String>,
    /// A script written into the rootfs before the run and removed after (a heredoc with `#!`).
    script: Option<(String, String)>,
    /// How the instruction is shown (task name, cache key): as written.
    shown: String,
    /// The history's `created_by`.
    created_by: String,
}

/// Runs one `RUN` step (or takes it from the cache), with its `--mount`s set up for the run
/// only (`mounts`). `--device`, a foreign platform, an unallowed host network and an unallowed
/// `--security=insecure` were refused while planning.
pub(crate) fn run(sc: &StepCtx<'_>, state: &mut State, run: &RunInstruction) -> Result<(), BuildError> {
    let ctx = sc.build;
    let network = match run.network {
        None => ctx.options.network,
        Some(NetworkMode::None) => Network::None,
        Some(NetworkMode::Default) => super::default_network(),
        Some(NetworkMode::Host) => Network::Host,
    };
    let command = command(state, run);
    // `--build-arg BUILDKIT_SANDBOX_HOSTNAME=…` names the sandbox (BuildKit's frontend option).
    let hostname = ctx.options.build_args.get(SANDBOX_HOSTNAME_ARG).filter(|h| !h.is_empty());
    let mut spec = exec_spec(state, &command, network, hostname.map(String::as_str));
    spec.extra_hosts = ctx
        .options
        .extra_hosts
        .iter()
        .map(|(host, ip)| {
            let ip = match (ip, network) {
                (super::HostIp::Ip(ip), _) => *ip,
                (super::HostIp::Gateway, Network::Host) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                (super::HostIp::Gateway, _) => super::SLIRP_HOST_GATEWAY,
            };
            (host.clone(), ip)
        })
        .collect();
    spec.shm_size = ctx.options.shm_size;
    spec.ulimits.clone_from(&ctx.options.ulimits);
    if run.security == Some(SecurityMode::Insecure) {
        spec.security = Security::Insecure;
    }
    let mounts = super::mounts::plan(sc, state, run)?;
    let mut inputs = key_inputs(state, &command, &spec);
    let files = mounts.key(ctx, &mut inputs)?;
    let step = LayerStep {
        inputs,
        files,
        title: sc.title(state, &format!("RUN {}", one_line(&command.shown))),
        created_by: command.created_by.clone(),
        independent: false,
    };
    layers::layer_step(sc, state, step, |run, rootfs| {
        let log = StepLog::new(run.task, Some(run.log_file()?));
        if let Some((path, body)) = &command.script {
            write_script(rootfs, path, body)?;
        }
        let status = {
            let prepared = mounts.prepare(ctx)?;
            let mut spec = spec.clone();
            spec.mounts.clone_from(&prepared.mounts);
            spec.secret_env.clone_from(&prepared.secret_env);
            spec.env.extend(mounts.env.iter().cloned());
            let (mut out, mut err) = (log.writer(LogStream::Stdout), log.writer(LogStream::Stderr));
            ctx.builder.executor.run(&spec, rootfs, Output::new(&mut out, &mut err), ctx.builder.cancel)?
        };
        if let Some((path, _)) = &command.script {
            remove_script(rootfs, path)?;
        }
        if !status.success() {
            return Err(BuildError::RunFailed {
                span: sc.span(),
                // The process as it ran, as BuildKit names it (`/bin/sh -c …`).
                command: command.argv.join(" "),
                status,
                note: match super::owners::mapped_ids() {
                    1 => super::error::RUN_SINGLE_ID_NOTE,
                    _ => "",
                },
                last_lines: log.last_lines(),
            });
        }
        Ok(())
    })
}

/// What the sandbox runs: argv, the stage's ENV and ARGs then the proxy variables (both spellings,
/// as BuildKit appends them), user, workdir.
fn exec_spec(state: &State, command: &Command, network: Network, hostname: Option<&str>) -> ExecSpec {
    let mut env: Vec<String> = state.scope.vars().iter().map(|v| format!("{}={}", v.name, v.value)).collect();
    env.extend(state.scope.proxy_env().into_iter().map(|(k, v)| format!("{k}={v}")));
    let mut spec = ExecSpec::new(command.argv.clone());
    if let Some(hostname) = hostname {
        spec.hostname = hostname.to_string();
    }
    spec.env = env;
    spec.user = state.container_ref().user.unwrap_or_default();
    spec.cwd = state.workdir();
    spec.network = network;
    spec
}

/// The key: the parent, the command as written and run, the ARG values and ENV it sees, user,
/// workdir, network, platform. Proxy build-args are not part of it (BuildKit's rule).
fn key_inputs(state: &State, command: &Command, spec: &ExecSpec) -> KeyInputs {
    let mut inputs = KeyInputs::default();
    layers::add_parent(state, &mut inputs);
    inputs.add("instruction", format!("RUN {}", command.shown));
    inputs.add("argv", serde_json::to_string(&command.argv).unwrap_or_default());
    if let Some((path, body)) = &command.script {
        inputs.add("script", format!("{path}\n{body}"));
    }
    for var in state.scope.vars().iter().filter(|v| v.origin == Origin::Arg) {
        inputs.add(format!("arg:{}", var.name), var.value.clone());
    }
    inputs.add("env", state.container_ref().env.unwrap_or_default().join("\n"));
    inputs.add("user", spec.user.clone());
    inputs.add("workdir", spec.cwd.clone());
    inputs.add("network", format!("{:?}", spec.network).to_lowercase());
    // Only when insecure, so that the keys of every other step stay as they were.
    if spec.security == Security::Insecure {
        inputs.add("security", "insecure");
    }
    if spec.hostname != DEFAULT_HOSTNAME {
        inputs.add("hostname", spec.hostname.clone());
    }
    // Each only when given, so that the keys of every other step stay as they were.
    if !spec.extra_hosts.is_empty() {
        let hosts: Vec<String> = spec.extra_hosts.iter().map(|(h, ip)| format!("{h}={ip}")).collect();
        inputs.add("hosts", hosts.join(","));
    }
    if let Some(size) = spec.shm_size {
        inputs.add("shm-size", size.to_string());
    }
    if !spec.ulimits.is_empty() {
        let limits: Vec<String> = spec.ulimits.iter().map(|u| format!("{}={}:{}", u.name, u.soft, u.hard)).collect();
        inputs.add("ulimits", limits.join(","));
    }
    inputs.add("platform", state.platform.to_string());
    inputs
}

/// argv and display text of a RUN. Shell form runs `SHELL + [script]`, where the script is the
/// command line followed by its heredoc bodies and terminators (the shell reads them itself).
/// A command that is only a heredoc runs the body: with `#!`, as a script file; else as the
/// shell's script.
fn command(state: &State, run: &RunInstruction) -> Command {
    match &run.command {
        CommandLine::Exec(args) => Command {
            argv: args.clone(),
            script: None,
            shown: serde_json::to_string(args).unwrap_or_default(),
            created_by: format!("RUN {}", args.join(" ")),
        },
        CommandLine::Shell(text) => {
            let shell = state.shell.clone();
            if run.heredocs.len() == 1 && is_only_heredoc(text, &run.heredocs[0].name) {
                let body = run.heredocs[0].chomped_content();
                if body.starts_with("#!") {
                    let path = format!("/.slipway-heredoc-{}", std::process::id());
                    let shown = format!("{text}\n{body}{}", run.heredocs[0].name);
                    let created_by = format!("RUN {shown}");
                    return Command { argv: vec![path.clone()], script: Some((path, body)), shown, created_by };
                }
                let shown = format!("{text}\n{}{}", run.heredocs[0].content, run.heredocs[0].name);
                let created_by = format!("RUN {} {body}", shell.join(" "));
                let argv = shell.into_iter().chain(std::iter::once(body)).collect();
                return Command { argv, script: None, shown, created_by };
            }
            let mut script = text.clone();
            for doc in &run.heredocs {
                script.push('\n');
                script.push_str(&doc.content);
                script.push_str(&doc.name);
            }
            let created_by = format!("RUN {} {script}", shell.join(" "));
            let argv = shell.into_iter().chain(std::iter::once(script.clone())).collect();
            Command { argv, script: None, shown: script, created_by }
        }
    }
}

/// Whether the command line is nothing but `<<NAME` (any quoting, `<<-`).
fn is_only_heredoc(text: &str, name: &str) -> bool {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("<<") else { return false };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    rest.trim_matches(|c| c == '"' || c == '\'') == name
}

/// The first line, for a task name.
fn one_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{first} …"),
        None => text.to_string(),
    }
}

fn write_script(rootfs: &std::path::Path, path: &str, body: &str) -> Result<(), BuildError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A direct child of the rootfs, created exclusively: a link planted under this name by a
    // base layer makes the step fail instead of being followed out of the rootfs.
    let host = rootfs.join(path.trim_start_matches('/'));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&host)
        .map_err(|e| BuildError::io("write the heredoc script", &host, e))?;
    file.write_all(body.as_bytes()).map_err(|e| BuildError::io("write the heredoc script", &host, e))
}

fn remove_script(rootfs: &std::path::Path, path: &str) -> Result<(), BuildError> {
    let host = rootfs.join(path.trim_start_matches('/'));
    match std::fs::remove_file(&host) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io("remove the heredoc script", &host, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heredoc() {
        assert!(is_only_heredoc("<<EOF", "EOF"));
        assert!(is_only_heredoc(" <<-\"EOF\" ", "EOF"));
        assert!(!is_only_heredoc("cat <<EOF", "EOF"));
        assert!(!is_only_heredoc("<<EOF > x", "EOF"));
    }
}
