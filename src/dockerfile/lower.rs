//! The instruction layer's rules: AST [`Node`]s → typed [`Instruction`]s and [`Stage`]s.
//! Flag tables, argument counts, stage names, `ONBUILD` restrictions, `SHELL` must be JSON,
//! only `ARG` before the first `FROM`, unknown instructions (with a suggestion). Every error
//! of the file is collected. Nothing is expanded.

use std::collections::HashSet;

use super::ast::{Ast, Node};
use super::error::{Diagnostics, ParseError, Span, suggest};
use super::flags::{self, Flags, parse_flags, parse_go_duration};
use super::heredoc::parse_heredoc;
use super::instruction::*;
use super::mount::parse_mount;

/// Validates the AST and groups it into stages, or returns every error found.
pub fn lower(ast: &Ast) -> Result<Dockerfile, Diagnostics> {
    let mut errors = Vec::new();
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut names = HashSet::new();
    for node in &ast.nodes {
        let Some(instruction) = lower_node(node, &mut errors) else {
            continue;
        };
        match instruction {
            Instruction::From(from) => {
                if let Some(name) = &from.stage_name {
                    if !names.insert(name.clone()) {
                        errors.push(ParseError::DuplicateStageName { span: from.span, name: name.clone() });
                    }
                }
                stages.push(Stage {
                    name: from.stage_name,
                    base: from.image,
                    platform: from.platform,
                    commands: Vec::new(),
                    span: from.span,
                    original: from.original,
                });
            }
            Instruction::Arg(arg) if stages.is_empty() => meta_args.push(arg),
            other => match stages.last_mut() {
                Some(stage) => stage.commands.push(other),
                None => errors.push(ParseError::NoBuildStage { span: other.span(), keyword: other.keyword().into() }),
            },
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    Ok(Dockerfile { meta_args, stages })
}

/// Lowers one node; errors go to `errors` (all of them), `None` when any was found.
pub fn lower_node(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let before = errors.len();
    let instruction = lower_inner(node, errors);
    if errors.len() > before {
        return None;
    }
    instruction
}

fn lower_inner(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    let original = node.original.clone();
    let args = &node.args;
    let at_least_one = |errors: &mut Vec<ParseError>, keyword| {
        if args.is_empty() {
            errors.push(ParseError::AtLeastOneArgument { span, keyword });
        }
    };
    let exactly_one = |errors: &mut Vec<ParseError>, keyword| -> Option<String> {
        if args.len() != 1 {
            errors.push(ParseError::ExactlyOneArgument { span, keyword });
            return None;
        }
        Some(args[0].clone())
    };
    Some(match &node.cmd[..] {
        "from" => {
            let flags = parse_flags(node, flags::FROM_FLAGS, errors);
            let stage_name = match args.len() {
                1 => None,
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_lowercase();
                    if !valid_stage_name(&name) {
                        errors.push(ParseError::InvalidStageName { span, name: args[2].clone() });
                    }
                    Some(name)
                }
                _ => {
                    errors.push(ParseError::FromArguments { span });
                    return None;
                }
            };
            Instruction::From(FromInstruction {
                image: args[0].clone(),
                stage_name,
                platform: flags.string("platform"),
                span,
                original,
            })
        }
        "run" => {
            let flags = parse_flags(node, flags::RUN_FLAGS, errors);
            let mut mounts = Vec::new();
            for value in flags.strings("mount") {
                match parse_mount(&value) {
                    Ok(m) => mounts.push(m),
                    Err(reason) => errors.push(ParseError::Mount { span, value, reason }),
                }
            }
            let network = flags.string("network").and_then(|v| match v.as_str() {
                "default" | "" => Some(NetworkMode::Default),
                "none" => Some(NetworkMode::None),
                "host" => Some(NetworkMode::Host),
                _ => {
                    errors.push(ParseError::NetworkMode { span, value: v });
                    None
                }
            });
            let security = flags.string("security").and_then(|v| match v.as_str() {
                "sandbox" => Some(SecurityMode::Sandbox),
                "insecure" => Some(SecurityMode::Insecure),
                _ => {
                    errors.push(ParseError::SecurityMode { span, value: v });
                    None
                }
            });
            Instruction::Run(RunInstruction {
                command: command_line(node),
                mounts,
                network,
                security,
                devices: flags.strings("device"),
                heredocs: node.heredocs.clone(),
                span,
                original,
            })
        }
        "cmd" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            Instruction::Cmd(CmdInstruction { command: command_line(node), span, original })
        }
        "entrypoint" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            Instruction::Entrypoint(EntrypointInstruction { command: command_line(node), span, original })
        }
        "shell" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            if !node.json {
                errors.push(ParseError::NotJson { span, keyword: "SHELL" });
                return None;
            }
            at_least_one(errors, "SHELL");
            Instruction::Shell(ShellInstruction { shell: args.clone(), span, original })
        }
        "env" | "label" => {
            let keyword = if node.cmd == "env" { "ENV" } else { "LABEL" };
            parse_flags(node, flags::NO_FLAGS, errors);
            at_least_one(errors, keyword);
            let pairs: Vec<KeyValue> = args
                .chunks(3)
                .map(|c| KeyValue {
                    key: c[0].clone(),
                    value: c.get(1).cloned().unwrap_or_default(),
                    legacy: c.get(2).is_some_and(String::is_empty),
                })
                .collect();
            if keyword == "ENV" {
                Instruction::Env(EnvInstruction { vars: pairs, span, original })
            } else {
                Instruction::Label(LabelInstruction { labels: pairs, span, original })
            }
        }
        "maintainer" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let name = exactly_one(errors, "MAINTAINER")?;
            Instruction::Maintainer(MaintainerInstruction { name, span, original })
        }
        "expose" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            at_least_one(errors, "EXPOSE");
            Instruction::Expose(ExposeInstruction { ports: args.clone(), span, original })
        }
        "add" => {
            let flags = parse_flags(node, flags::ADD_FLAGS, errors);
            let (sources, dest) = sources_and_dest(node, "ADD", errors)?;
            Instruction::Add(AddInstruction {
                sources,
                dest,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                keep_git_dir: flags.bool("keep-git-dir"),
                checksum: flags.string("checksum"),
                unpack: flags.bool("unpack"),
                excludes: flags.strings("exclude"),
                span,
                original,
            })
        }
        "copy" => {
            let flags = parse_flags(node, flags::COPY_FLAGS, errors);
            let (sources, dest) = sources_and_dest(node, "COPY", errors)?;
            Instruction::Copy(CopyInstruction {
                sources,
                dest,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                excludes: flags.strings("exclude"),
                span,
                original,
            })
        }
        "volume" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            at_least_one(errors, "VOLUME");
            if args.iter().any(|a| a.trim().is_empty()) {
                errors.push(ParseError::EmptyVolume { span });
            }
            Instruction::Volume(VolumeInstruction { paths: args.clone(), span, original })
        }
        "user" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let user = exactly_one(errors, "USER")?;
            Instruction::User(UserInstruction { user, span, original })
        }
        "workdir" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let path = exactly_one(errors, "WORKDIR")?;
            Instruction::Workdir(WorkdirInstruction { path, span, original })
        }
        // BuildKit never validates the flags of ARG and STOPSIGNAL: they are ignored.
        "arg" => {
            at_least_one(errors, "ARG");
            let mut decls = Vec::new();
            for arg in args {
                let decl = match arg.split_once('=') {
                    Some(("", _)) => {
                        errors.push(ParseError::BlankArgName { span });
                        continue;
                    }
                    Some((name, value)) => ArgDecl { name: name.into(), default: Some(value.into()) },
                    None => ArgDecl { name: arg.clone(), default: None },
                };
                decls.push(decl);
            }
            Instruction::Arg(ArgInstruction { args: decls, span, original })
        }
        "stopsignal" => {
            let signal = exactly_one(errors, "STOPSIGNAL")?;
            Instruction::Stopsignal(StopsignalInstruction { signal, span, original })
        }
        "onbuild" => lower_onbuild(node, errors)?,
        "healthcheck" => {
            let check = healthcheck(node, errors)?;
            Instruction::Healthcheck(HealthcheckInstruction { check, span, original })
        }
        _ => {
            let suggestion = suggest(&node.keyword, KEYWORDS);
            errors.push(ParseError::UnknownInstruction { span, keyword: node.keyword.clone(), suggestion });
            return None;
        }
    })
}

/// `^[a-z][a-z0-9-_.]*$` (on the lower-cased name).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn command_line(node: &Node) -> CommandLine {
    if node.json {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn sources_and_dest(node: &Node, keyword: &'static str, errors: &mut Vec<ParseError>) -> Option<(Vec<Source>, String)> {
    let span = node.span;
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        errors.push(ParseError::NoDestination { span, keyword });
        return None;
    };
    if parse_heredoc(dest).is_some() {
        errors.push(ParseError::HeredocDestination { span, keyword });
        return None;
    }
    let sources = srcs
        .iter()
        .map(|src| match parse_heredoc(src) {
            Some(doc) => {
                let body = node.heredocs.iter().find(|h| h.name == doc.name);
                let content = body.map(|h| if doc.chomp { h.chomped_content() } else { h.content.clone() });
                Source::Inline { name: doc.name, content: content.unwrap_or_default(), expand: doc.expand }
            }
            None => Source::Path(src.clone()),
        })
        .collect();
    Some((sources, dest.clone()))
}

fn lower_onbuild(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    let Some(sub) = &node.sub else {
        errors.push(ParseError::AtLeastOneArgument { span, keyword: "ONBUILD" });
        return None;
    };
    parse_flags(node, flags::NO_FLAGS, errors);
    match sub.cmd.as_str() {
        "onbuild" => {
            errors.push(ParseError::ChainedOnbuild { span });
            return None;
        }
        "from" | "maintainer" => {
            errors.push(ParseError::OnbuildTrigger { span, keyword: sub.cmd.to_uppercase() });
            return None;
        }
        _ => {}
    }
    let trimmed = node.original.trim_start();
    let mut expression = match trimmed.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => trimmed[7..].trim_start().to_string(),
        _ => trimmed.to_string(),
    };
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Some(Instruction::Onbuild(OnbuildInstruction {
        expression,
        trigger: sub.clone(),
        span,
        original: node.original.clone(),
    }))
}

fn healthcheck(node: &Node, errors: &mut Vec<ParseError>) -> Option<Healthcheck> {
    let span = node.span;
    let Some((kind, rest)) = node.args.split_first() else {
        errors.push(ParseError::AtLeastOneArgument { span, keyword: "HEALTHCHECK" });
        return None;
    };
    let kind = kind.to_uppercase();
    if kind == "NONE" {
        // BuildKit does not look at the flags of `HEALTHCHECK NONE`.
        if !rest.is_empty() {
            errors.push(ParseError::HealthcheckNoneArgs { span });
            return None;
        }
        return Some(Healthcheck::None);
    }
    let flags = parse_flags(node, flags::HEALTHCHECK_FLAGS, errors);
    if kind != "CMD" {
        errors.push(ParseError::HealthcheckType { span, kind });
        return None;
    }
    if rest.is_empty() {
        errors.push(ParseError::HealthcheckMissingCommand { span });
        return None;
    }
    let test = if node.json {
        std::iter::once("CMD".to_string()).chain(rest.iter().cloned()).collect()
    } else {
        vec!["CMD-SHELL".to_string(), rest.join(" ")]
    };
    let mut duration = |name: &'static str| interval(&flags, name, span, errors);
    let interval_v = duration("interval");
    let timeout = duration("timeout");
    let start_period = duration("start-period");
    let start_interval = duration("start-interval");
    let retries = flags.string("retries").and_then(|v| match v.parse::<i64>() {
        Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => u32::try_from(n).ok(),
        _ => {
            errors.push(ParseError::InvalidRetries { span, value: v });
            None
        }
    });
    Some(Healthcheck::Cmd { test, interval: interval_v, timeout, start_period, start_interval, retries })
}

/// A duration flag: absent or zero gives `None` (use the default); under 1ms is an error.
fn interval(flags: &Flags, name: &'static str, span: Span, errors: &mut Vec<ParseError>) -> Option<std::time::Duration> {
    let value = flags.string(name)?;
    match parse_go_duration(&value) {
        Ok(d) if d.is_zero() => None,
        Ok(d) if d < std::time::Duration::from_millis(1) => {
            errors.push(ParseError::DurationTooShort { span, flag: name });
            None
        }
        Ok(d) => Some(d),
        Err(true) => {
            errors.push(ParseError::DurationTooShort { span, flag: name });
            None
        }
        Err(false) => {
            errors.push(ParseError::InvalidDuration { span, flag: name, value });
            None
        }
    }
}
