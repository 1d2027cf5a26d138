//! Metadata instructions (ENV, ARG, LABEL, EXPOSE, USER, CMD, ENTRYPOINT, VOLUME,
//! SHELL, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD): each changes only the image config and
//! writes one history entry, with Docker's (BuildKit's) rules. One function per instruction.

use std::collections::BTreeMap;

use super::history::{self, HistoryEntry};
use super::stage::{BuildCtx, State, expand};
use super::{BuildError, InvalidValue};
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{
    ArgInstruction, CommandLine, EnvInstruction, ExposeInstruction, Healthcheck, HealthcheckInstruction, Instruction,
    LabelInstruction, Span, VolumeInstruction,
};

/// Applies a metadata instruction to the stage. Layer steps (RUN, COPY, ADD) are not for here.
pub(crate) fn apply(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    instruction: &Instruction,
) -> Result<(), BuildError> {
    let entry = match instruction {
        Instruction::Env(env) => set_env(ctx, state, span, env)?,
        Instruction::Arg(arg) => declare_args(ctx, state, span, arg)?,
        Instruction::Label(label) => set_labels(ctx, state, span, label)?,
        Instruction::Expose(expose) => expose_ports(ctx, state, span, expose)?,
        Instruction::User(user) => {
            let value = expand(ctx, state, span, &user.user)?;
            state.container().user = Some(value.clone());
            history::metadata(format!("USER {value}"))
        }
        Instruction::Cmd(cmd) => {
            let argv = command_argv(&state.shell, &cmd.command);
            state.container().cmd = Some(argv.clone());
            state.cmd_set = true;
            history::metadata(format!("CMD {}", history::go_list(&argv)))
        }
        Instruction::Entrypoint(ep) => set_entrypoint(state, &ep.command),
        Instruction::Volume(v) => add_volumes(ctx, state, span, v)?,
        Instruction::Shell(sh) => {
            state.shell = sh.shell.clone();
            state.container().shell = Some(sh.shell.clone());
            history::metadata(format!("SHELL [{}]", sh.shell.join(" ")))
        }
        Instruction::Stopsignal(s) => {
            let signal = expand(ctx, state, span, &s.signal)?;
            validate_signal(&signal).map_err(|invalid| BuildError::Invalid { span, invalid })?;
            state.container().stop_signal = Some(signal.clone());
            history::metadata(format!("STOPSIGNAL {signal}"))
        }
        Instruction::Healthcheck(h) => set_healthcheck(state, h),
        Instruction::Maintainer(m) => {
            state.config.author = Some(m.name.clone());
            history::metadata(format!("MAINTAINER {}", m.name))
        }
        Instruction::Onbuild(o) => {
            state.container().on_build.get_or_insert_with(Vec::new).push(o.expression.clone());
            history::metadata(format!("ONBUILD {}", o.expression))
        }
        Instruction::From(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Workdir(_) => return Ok(()),
    };
    state.history(state.last_created, entry);
    Ok(())
}

fn set_env(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    env: &EnvInstruction,
) -> Result<HistoryEntry, BuildError> {
    let mut set = Vec::new();
    for kv in &env.vars {
        let key = expand(ctx, state, span, &kv.key)?;
        let value = expand(ctx, state, span, &kv.value)?;
        set.push((key, value));
    }
    for (k, v) in &set {
        state.set_env(k, v);
        state.scope.set_env(k, v);
    }
    Ok(history::env(&set))
}

fn declare_args(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    arg: &ArgInstruction,
) -> Result<HistoryEntry, BuildError> {
    let mut shown = Vec::new();
    for decl in &arg.args {
        let name = expand(ctx, state, span, &decl.name)?;
        state
            .scope
            .declare_raw(&name, decl.default.as_deref(), ctx.plan.graph.escape)
            .map_err(|source| BuildError::expand(span, decl.default.clone().unwrap_or_default(), source))?;
        shown.push(match &decl.default {
            Some(d) => format!("{name}={d}"),
            None => name,
        });
    }
    Ok(history::metadata(format!("ARG {}", shown.join(" "))))
}

fn set_labels(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    label: &LabelInstruction,
) -> Result<HistoryEntry, BuildError> {
    let mut set = Vec::new();
    for kv in &label.labels {
        set.push((expand(ctx, state, span, &kv.key)?, expand(ctx, state, span, &kv.value)?));
    }
    let labels = state.container().labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in &set {
        labels.insert(k.clone(), v.clone());
    }
    Ok(history::label(&set))
}

fn expose_ports(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    expose: &ExposeInstruction,
) -> Result<HistoryEntry, BuildError> {
    let mut ports = Vec::new();
    for raw in &expose.ports {
        // Expanded into words, as BuildKit does: `ARG PORTS="80 443"` / `EXPOSE $PORTS` is two.
        let words = Expander::new(ctx.plan.graph.escape, &state.scope)
            .expand_words(raw)
            .map_err(|source| BuildError::expand(span, raw.clone(), source))?
            .words;
        for port in words {
            ports.extend(port_specs(&port).map_err(|invalid| BuildError::Invalid { span, invalid })?);
        }
    }
    let exposed = state.container().exposed_ports.get_or_insert_with(BTreeMap::new);
    for p in &ports {
        exposed.insert(p.clone(), serde_json::Map::new());
    }
    Ok(history::expose(&ports))
}

/// A new ENTRYPOINT clears a CMD inherited from the base (not one this stage set).
fn set_entrypoint(state: &mut State, command: &CommandLine) -> HistoryEntry {
    let argv = command_argv(&state.shell, command);
    let cmd_set = state.cmd_set;
    let c = state.container();
    c.entrypoint = Some(argv.clone());
    if !cmd_set {
        c.cmd = None;
    }
    history::metadata(format!("ENTRYPOINT {}", history::go_list(&argv)))
}

fn add_volumes(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    span: Span,
    v: &VolumeInstruction,
) -> Result<HistoryEntry, BuildError> {
    let mut paths = Vec::new();
    for raw in &v.paths {
        let p = expand(ctx, state, span, raw)?;
        if p.trim().is_empty() {
            return Err(BuildError::Invalid { span, invalid: InvalidValue::EmptyVolume });
        }
        paths.push(p);
    }
    let volumes = state.container().volumes.get_or_insert_with(BTreeMap::new);
    for p in &paths {
        volumes.insert(p.clone(), serde_json::Map::new());
    }
    Ok(history::metadata(format!("VOLUME [{}]", paths.join(" "))))
}

fn set_healthcheck(state: &mut State, h: &HealthcheckInstruction) -> HistoryEntry {
    let check = match &h.check {
        Healthcheck::None => crate::oci::Healthcheck { test: Some(vec!["NONE".to_string()]), ..Default::default() },
        Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries } => {
            let nanos = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
            crate::oci::Healthcheck {
                test: Some(test.clone()),
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: retries.map(i64::from),
            }
        }
    };
    state.container().healthcheck = Some(check.clone());
    history::healthcheck(&check)
}

/// Exec form as written; shell form as `SHELL + [text]`.
fn command_argv(shell: &[String], command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) => shell.iter().cloned().chain(std::iter::once(text.clone())).collect(),
    }
}
/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, ...
///
/// Docker's mapping form `[[ip:]host-port:]port[/proto]` is accepted as BuildKit accepts it: the
/// container port is exposed (`slipway check` warns with ExposeInvalidFormat).
fn port_specs(spec: &str) -> Result<Vec<String>, InvalidValue> {
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (range, proto) = match container.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (container, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(InvalidValue::PortProtocol(proto));
    }
    let port = |s: &str| s.parse::<u16>().map_err(|_| InvalidValue::Port(s.to_string()));
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if last < first {
        return Err(InvalidValue::PortRange(range.to_string()));
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// A signal name (`SIGTERM`, `TERM`) or number Docker accepts.
fn validate_signal(signal: &str) -> Result<(), InvalidValue> {
    if signal.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
        "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
        "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    let rt = name.strip_prefix("RTMIN").or_else(|| name.strip_prefix("RTMAX"));
    if NAMES.contains(&name)
        || rt.is_some_and(|r| r.is_empty() || r.trim_start_matches(['+', '-']).parse::<u8>().is_ok())
    {
        Ok(())
    } else {
        Err(InvalidValue::Signal(signal.to_string()))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand() {
        assert_eq!(port_specs("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_specs("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(port_specs("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(port_specs("x").is_err());
        assert!(port_specs("80/foo").is_err());
        assert!(port_specs("9-8").is_err());
        assert_eq!(port_specs("127.0.0.1:80:8080").unwrap(), ["8080/tcp"], "BuildKit exposes the container port");
        assert_eq!(port_specs("80:81/UDP").unwrap(), ["81/udp"]);
    }

    #[test]
    fn signals() {
        assert!(validate_signal("SIGTERM").is_ok());
        assert!(validate_signal("KILL").is_ok());
        assert!(validate_signal("9").is_ok());
        assert!(validate_signal("SIGRTMIN+3").is_ok());
        assert!(validate_signal("SIGNOPE").is_err());
        assert!(validate_signal("0").is_err());
    }
}
