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
use super::mount::{RunMount, parse_device};

/// Validates the AST and groups it into stages, or returns every error found.
pub fn lower(ast: &Ast) -> Result<Dockerfile, Diagnostics> {
    let mut errors = Vec::new();
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut names = HashSet::new();
    // Set by any FROM, even a rejected one, so its stage's instructions are not also
    // reported as coming before the first FROM.
    let mut seen_from = false;
    for node in &ast.nodes {
        seen_from |= node.cmd == "from";
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
                let doc_comment = from.stage_name.as_deref().and_then(|n| doc_comment(&node.comments, n));
                stages.push(Stage {
                    doc_comment,
                    name: from.stage_name,
                    base: from.image,
                    platform: from.platform,
                    commands: Vec::new(),
                    span: from.span,
                    original: from.original,
                });
            }
            Instruction::Arg(arg) if !seen_from => meta_args.push(arg),
            other => match stages.last_mut() {
                Some(stage) => stage.commands.push(other),
                None if seen_from => {} // the FROM was rejected and reported
                None => errors.push(ParseError::NoBuildStage { span: other.span(), keyword: other.keyword().into() }),
            },
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    Ok(Dockerfile { meta_args, stages })
}

impl OnbuildInstruction {
    /// Validates and types the trigger, as a child build would when it runs it.
    pub fn lower_trigger(&self) -> Result<Instruction, Diagnostics> {
        let mut errors = Vec::new();
        match lower_node(&self.trigger, &mut errors) {
            Some(instruction) => Ok(instruction),
            None => Err(Diagnostics(errors)),
        }
    }
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

/// Dispatches on the instruction keyword; each instruction's rules live in its own function.
fn lower_inner(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    match &node.cmd[..] {
        "from" => lower_from(node, errors),
        "run" => lower_run(node, errors),
        "cmd" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            Some(Instruction::Cmd(CmdInstruction {
                command: command_line(node),
                span: node.span,
                original: original(node),
            }))
        }
        "entrypoint" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let command = command_line(node);
            Some(Instruction::Entrypoint(EntrypointInstruction { command, span: node.span, original: original(node) }))
        }
        "shell" => lower_shell(node, errors),
        "env" | "label" => lower_env_or_label(node, errors),
        "maintainer" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let name = exactly_one(node, "MAINTAINER", errors)?;
            Some(Instruction::Maintainer(MaintainerInstruction { name, span: node.span, original: original(node) }))
        }
        "expose" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            at_least_one(node, "EXPOSE", errors);
            let ports = node.args.clone();
            Some(Instruction::Expose(ExposeInstruction { ports, span: node.span, original: original(node) }))
        }
        "add" => lower_add(node, errors),
        "copy" => lower_copy(node, errors),
        "volume" => lower_volume(node, errors),
        "user" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let user = exactly_one(node, "USER", errors)?;
            Some(Instruction::User(UserInstruction { user, span: node.span, original: original(node) }))
        }
        "workdir" => {
            parse_flags(node, flags::NO_FLAGS, errors);
            let path = exactly_one(node, "WORKDIR", errors)?;
            Some(Instruction::Workdir(WorkdirInstruction { path, span: node.span, original: original(node) }))
        }
        // BuildKit never validates the flags of ARG and STOPSIGNAL: they are ignored.
        "arg" => lower_arg(node, errors),
        "stopsignal" => {
            let signal = exactly_one(node, "STOPSIGNAL", errors)?;
            Some(Instruction::Stopsignal(StopsignalInstruction { signal, span: node.span, original: original(node) }))
        }
        "onbuild" => lower_onbuild(node, errors),
        "healthcheck" => {
            let check = healthcheck(node, errors)?;
            Some(Instruction::Healthcheck(HealthcheckInstruction { check, span: node.span, original: original(node) }))
        }
        _ => {
            let suggestion = suggest(&node.keyword, KEYWORDS);
            errors.push(ParseError::UnknownInstruction { span: node.span, keyword: node.keyword.clone(), suggestion });
            None
        }
    }
}

/// The instruction's source text, kept on every typed instruction.
fn original(node: &Node) -> String {
    node.original.clone()
}

/// Reports an instruction given no argument.
fn at_least_one(node: &Node, keyword: &'static str, errors: &mut Vec<ParseError>) {
    if node.args.is_empty() {
        errors.push(ParseError::AtLeastOneArgument { span: node.span, keyword });
    }
}

/// The one argument of an instruction that takes exactly one; reported otherwise.
fn exactly_one(node: &Node, keyword: &'static str, errors: &mut Vec<ParseError>) -> Option<String> {
    if node.args.len() != 1 {
        errors.push(ParseError::ExactlyOneArgument { span: node.span, keyword });
        return None;
    }
    Some(node.args[0].clone())
}

/// `FROM image [AS name]`: the stage name is lower-cased and must be a valid name.
fn lower_from(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let (span, args) = (node.span, &node.args);
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
    Some(Instruction::From(FromInstruction {
        image: args[0].clone(),
        stage_name,
        platform: flags.string("platform"),
        span,
        original: original(node),
    }))
}

/// `RUN`: its `--mount`, `--network`, `--security` and `--device` flags, each value checked.
fn lower_run(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    let flags = parse_flags(node, flags::RUN_FLAGS, errors);
    let mut mounts = Vec::new();
    for value in flags.strings("mount") {
        match RunMount::new(&value) {
            Ok(m) => mounts.push(m),
            Err(reason) => errors.push(ParseError::Mount { span, value, reason }),
        }
    }
    let network = flags.string("network").and_then(|v| match v.as_str() {
        "default" => Some(NetworkMode::Default),
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
    let mut devices = Vec::new();
    for value in flags.strings("device") {
        match parse_device(&value) {
            Ok(d) => devices.push(d),
            Err(reason) => errors.push(ParseError::Device { span, value, reason }),
        }
    }
    Some(Instruction::Run(RunInstruction {
        command: command_line(node),
        mounts,
        network,
        security,
        devices,
        heredocs: node.heredocs.clone(),
        span,
        original: original(node),
    }))
}

/// `SHELL`: at least one argument, in JSON form only.
fn lower_shell(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    parse_flags(node, flags::NO_FLAGS, errors);
    if node.args.is_empty() {
        errors.push(ParseError::AtLeastOneArgument { span, keyword: "SHELL" });
        return None;
    }
    if !node.json {
        errors.push(ParseError::NotJson { span, keyword: "SHELL" });
        return None;
    }
    Some(Instruction::Shell(ShellInstruction { shell: node.args.clone(), span, original: original(node) }))
}

/// `ENV` and `LABEL`: key/value pairs (the line parser gives them in threes, the third marking
/// the legacy `KEY value` form), no blank key.
fn lower_env_or_label(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    let keyword = if node.cmd == "env" { "ENV" } else { "LABEL" };
    parse_flags(node, flags::NO_FLAGS, errors);
    at_least_one(node, keyword, errors);
    let pairs: Vec<KeyValue> = node
        .args
        .chunks(3)
        .map(|c| KeyValue {
            key: c[0].clone(),
            value: c.get(1).cloned().unwrap_or_default(),
            legacy: c.get(2).is_some_and(String::is_empty),
        })
        .collect();
    if pairs.iter().any(|p| p.key.is_empty()) {
        errors.push(ParseError::BlankName { span, keyword });
    }
    Some(if keyword == "ENV" {
        Instruction::Env(EnvInstruction { vars: pairs, span, original: original(node) })
    } else {
        Instruction::Label(LabelInstruction { labels: pairs, span, original: original(node) })
    })
}

/// `ADD`: sources (heredocs inline) and destination, with ADD's flags.
fn lower_add(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let flags = parse_flags(node, flags::ADD_FLAGS, errors);
    let (sources, dest) = sources_and_dest(node, "ADD", errors)?;
    Some(Instruction::Add(AddInstruction {
        sources,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
        unpack: flags.bool("unpack"),
        excludes: flags.strings("exclude"),
        span: node.span,
        original: original(node),
    }))
}

/// `COPY`: sources (heredocs inline) and destination, with COPY's flags.
fn lower_copy(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let flags = parse_flags(node, flags::COPY_FLAGS, errors);
    let (sources, dest) = sources_and_dest(node, "COPY", errors)?;
    Some(Instruction::Copy(CopyInstruction {
        sources,
        dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        excludes: flags.strings("exclude"),
        span: node.span,
        original: original(node),
    }))
}

/// `VOLUME`: at least one path, none blank; paths are trimmed.
fn lower_volume(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    parse_flags(node, flags::NO_FLAGS, errors);
    at_least_one(node, "VOLUME", errors);
    if node.args.iter().any(|a| a.trim().is_empty()) {
        errors.push(ParseError::EmptyVolume { span });
    }
    let paths = node.args.iter().map(|a| a.trim().to_string()).collect();
    Some(Instruction::Volume(VolumeInstruction { paths, span, original: original(node) }))
}

/// `ARG name[=default] ...`: no blank name; each declaration takes its doc comment.
fn lower_arg(node: &Node, errors: &mut Vec<ParseError>) -> Option<Instruction> {
    let span = node.span;
    at_least_one(node, "ARG", errors);
    let mut decls = Vec::new();
    for arg in &node.args {
        let decl = match arg.split_once('=') {
            Some(("", _)) => {
                errors.push(ParseError::BlankName { span, keyword: "ARG" });
                continue;
            }
            Some((name, value)) => ArgDecl { name: name.into(), default: Some(value.into()), doc_comment: None },
            None => ArgDecl { name: arg.clone(), default: None, doc_comment: None },
        };
        let decl = ArgDecl { doc_comment: doc_comment(&node.comments, &decl.name), ..decl };
        decls.push(decl);
    }
    Some(Instruction::Arg(ArgInstruction { args: decls, span, original: original(node) }))
}

/// The text after `name ` in the first comment line starting with `name` as a word.
fn doc_comment(comments: &[String], name: &str) -> Option<String> {
    comments.iter().find_map(|c| c.strip_prefix(name)?.strip_prefix(' ').map(|rest| rest.trim().to_string()))
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
    // The line parser keeps heredoc bodies on the ONBUILD node; the trigger needs them.
    let mut trigger = sub.clone();
    trigger.heredocs = node.heredocs.clone();
    Some(Instruction::Onbuild(OnbuildInstruction { expression, trigger, span, original: node.original.clone() }))
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
fn interval(
    flags: &Flags,
    name: &'static str,
    span: Span,
    errors: &mut Vec<ParseError>,
) -> Option<std::time::Duration> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dockerfile::{MountType, parse, parse_dockerfile};

    fn errors(src: &str) -> Vec<(u32, String)> {
        let diags = parse_dockerfile(src).expect_err("must be rejected");
        diags.0.iter().map(|e| (e.span().start_line, e.to_string())).collect()
    }

    fn only_command(src: &str) -> Instruction {
        let df = parse_dockerfile(src).unwrap();
        df.stages.into_iter().last().unwrap().commands.pop().unwrap()
    }

    #[test]
    fn stages_and_meta_args() {
        let df = parse_dockerfile("ARG V=1\nFROM --platform=$P img:$V AS Builder\nRUN x\nfrom builder\n").unwrap();
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages[0].name.as_deref(), Some("builder"));
        assert_eq!(df.stages[0].base, "img:$V");
        assert_eq!(df.stages[0].platform.as_deref(), Some("$P"));
        assert_eq!(df.stages[0].commands.len(), 1);
        assert_eq!(df.stages[1].name, None);
    }

    #[test]
    fn doc_comments() {
        let src = "# foo sets foo\nARG foo=bar\n\n# base defines first stage\nFROM busybox AS base\n\
                   # this is irrelevant\nARG foo\n# bar defines bar\n# baz is something else\nARG bar baz=123\n";
        let df = parse_dockerfile(src).unwrap();
        assert_eq!(df.stages[0].doc_comment.as_deref(), Some("defines first stage"));
        assert_eq!(df.meta_args[0].args[0].doc_comment.as_deref(), Some("sets foo"));
        let docs: Vec<Option<&str>> = df.stages[0]
            .commands
            .iter()
            .flat_map(|c| match c {
                Instruction::Arg(a) => a.args.iter().map(|d| d.doc_comment.as_deref()).collect(),
                _ => vec![],
            })
            .collect();
        assert_eq!(docs, vec![None, Some("defines bar"), Some("is something else")]);
    }

    #[test]
    fn stage_rules() {
        assert_eq!(errors("FROM a AS 1bad")[0].0, 1);
        assert!(errors("FROM a b")[0].1.contains("one or three"));
        assert!(errors("FROM a AS x\nFROM b AS X")[0].1.contains("duplicate stage name"));
        assert!(parse_dockerfile("FROM a AS x.y_z-1").is_ok());
    }

    #[test]
    fn a_rejected_from_still_opens_a_stage() {
        assert_eq!(errors("FROM a AS 1bad\nRUN x\nARG y"), vec![(1, errors("FROM a AS 1bad")[0].1.clone())]);
    }

    #[test]
    fn only_arg_before_from() {
        let errs = errors("ENV A=1\nARG B\nRUN x\nFROM a");
        assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn every_error_is_reported() {
        let errs = errors("FROM a\nCOPY --bogus a b\nWORKDIR\nFOOBAR x\nSHELL sh -c\n");
        assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(errors("FROM a\nWORKDIT /x")[0].1, "unknown instruction: WORKDIT (did you mean `WORKDIR`?)");
    }

    #[test]
    fn onbuild_rules() {
        assert!(errors("FROM a\nONBUILD ONBUILD RUN x")[0].1.contains("chaining"));
        assert!(errors("FROM a\nONBUILD FROM b")[0].1.contains("`FROM` isn't allowed"));
        assert!(errors("FROM a\nONBUILD maintainer me")[0].1.contains("`MAINTAINER` isn't allowed"));
        let Instruction::Onbuild(o) = only_command("FROM a\nonbuild  COPY <<F /f\nhi\nF\n") else { panic!() };
        assert_eq!(o.expression, "COPY <<F /f\nhi\nF");
        assert_eq!(o.trigger.cmd, "copy");
        let Ok(Instruction::Copy(c)) = o.lower_trigger() else { panic!() };
        assert_eq!(c.sources, vec![Source::Inline { name: "F".into(), content: "hi\n".into(), expand: true }]);
        let Instruction::Onbuild(o) = only_command("FROM a\nONBUILD COPY --bogus a b") else { panic!() };
        assert!(o.lower_trigger().is_err(), "the trigger is validated only when it runs");
    }

    #[test]
    fn copy_sources_and_heredocs() {
        let Instruction::Copy(c) = only_command("FROM a\nCOPY --link --from=b <<-X src /d/\n\tbody\nX\n") else {
            panic!()
        };
        assert_eq!(c.dest, "/d/");
        assert!(c.link);
        assert_eq!(c.from.as_deref(), Some("b"));
        assert_eq!(c.sources[0], Source::Inline { name: "X".into(), content: "body\n".into(), expand: true });
        assert_eq!(c.sources[1], Source::Path("src".into()));
        assert!(errors("FROM a\nCOPY src <<X\nx\nX")[0].1.contains("heredoc as a destination"));
        assert!(errors("FROM a\nCOPY src")[0].1.contains("at least two"));
    }

    #[test]
    fn run_flags() {
        let Instruction::Run(r) =
            only_command("FROM a\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s --network=none ls")
        else {
            panic!()
        };
        let kinds: Vec<MountType> = r.mounts.iter().filter_map(|m| m.parsed.as_ref()).map(|m| m.kind).collect();
        assert_eq!(kinds, vec![MountType::Cache, MountType::Secret]);
        assert_eq!(r.network, Some(NetworkMode::None));
        assert_eq!(r.command, CommandLine::Shell("ls".into()));
        assert!(errors("FROM a\nRUN --mount=type=bogus x")[0].1.contains("unsupported mount type"));
        assert!(errors("FROM a\nRUN --network=weird x")[0].1.contains("network mode"));
    }

    #[test]
    fn healthcheck_rules() {
        let Instruction::Healthcheck(h) =
            only_command("FROM a\nHEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x")
        else {
            panic!()
        };
        let Healthcheck::Cmd { test, interval, retries, timeout, .. } = h.check else { panic!() };
        assert_eq!(test, vec!["CMD-SHELL", "curl -f x"]);
        assert_eq!((interval, retries, timeout), (Some(Duration::from_secs(90)), Some(3), None));
        let Instruction::Healthcheck(h) = only_command("FROM a\nHEALTHCHECK --timeout=0s CMD [\"a\"]") else {
            panic!()
        };
        assert!(matches!(h.check, Healthcheck::Cmd { ref test, timeout: None, .. } if test == &["CMD", "a"]));
        // BuildKit ignores the flags of HEALTHCHECK NONE.
        let Instruction::Healthcheck(h) = only_command("FROM a\nHEALTHCHECK --bogus NONE") else { panic!() };
        assert_eq!(h.check, Healthcheck::None);
        for bad in [
            "HEALTHCHECK",
            "HEALTHCHECK CMD",
            "HEALTHCHECK NONE x",
            "HEALTHCHECK CONNECT x",
            "HEALTHCHECK --interval=500us CMD x",
            "HEALTHCHECK --interval=5 CMD x",
            "HEALTHCHECK --retries=-1 CMD x",
        ] {
            assert_eq!(errors(&format!("FROM a\n{bad}")).len(), 1, "{bad}");
        }
    }

    #[test]
    fn quirks_and_forms() {
        // ARG and STOPSIGNAL never validate their flags.
        assert!(parse_dockerfile("FROM a\nARG --x=1 A\nSTOPSIGNAL --y SIGTERM").is_ok());
        let Instruction::Workdir(w) = only_command("FROM a\nWORKDIR /a b") else { panic!() };
        assert_eq!(w.path, "/a b");
        let Instruction::Env(e) = only_command("FROM a\nENV A b c") else { panic!() };
        assert_eq!(e.vars, vec![KeyValue { key: "A".into(), value: "b c".into(), legacy: true }]);
        let Instruction::Arg(a) = only_command("FROM a\nARG A B=2") else { panic!() };
        assert_eq!(a.args[1], ArgDecl { name: "B".into(), default: Some("2".into()), doc_comment: None });
        assert!(errors("FROM a\nARG =x")[0].1.contains("blank"));
        assert!(errors("FROM a\nENV =x")[0].1.contains("`ENV` names can not be blank"));
        assert!(errors("FROM a\nLABEL a=1 =x")[0].1.contains("blank"));
        let Instruction::Cmd(c) = only_command("FROM a\nCMD []") else { panic!() };
        assert_eq!(c.command, CommandLine::Exec(vec![]));
        assert!(errors("FROM a\nSHELL sh")[0].1.contains("json form"));
        assert!(errors("FROM a\nSHELL []")[0].1.contains("at least one"));
        assert!(errors("FROM a\nVOLUME [\" \"]")[0].1.contains("empty string"));
    }

    #[test]
    fn lower_node_single() {
        let ast = parse("FROM a\nUSER me").unwrap();
        let mut errs = Vec::new();
        let user = lower_node(&ast.nodes[1], &mut errs).unwrap();
        assert_eq!((user.keyword(), user.original(), user.span().start_line), ("USER", "USER me", 2));
    }
}
