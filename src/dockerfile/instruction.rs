//! The instruction layer's output: a closed [`Instruction`] enum with one typed struct per
//! Dockerfile keyword, grouped into [`Stage`]s. Words are raw (unexpanded): variable
//! expansion is applied later by the builder. Each instruction keeps its span and original
//! text. The rules producing these live in `lower`.

use std::time::Duration;

use super::ast::{Heredoc, Node};
use super::error::Span;
use super::mount::Mount;

/// A Dockerfile after instruction-level validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM` (global build args).
    pub meta_args: Vec<ArgInstruction>,
    /// Build stages in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Stage name from `AS name`, lower-cased.
    pub name: Option<String>,
    /// Base image or stage reference, raw (unexpanded).
    pub base: String,
    /// `--platform` value, raw.
    pub platform: Option<String>,
    /// The instructions of the stage (the `FROM` itself excluded).
    pub commands: Vec<Instruction>,
    /// Span of the `FROM` line.
    pub span: Span,
    /// The `FROM` line's original text.
    pub original: String,
}

/// Exec form (JSON array) or shell form (one string run by the `SHELL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["a", "b"]`.
    Exec(Vec<String>),
    /// `a b`: run as `SHELL + [text]`.
    Shell(String),
}

/// A `key=value` of `ENV` or `LABEL`, raw (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key, raw.
    pub key: String,
    /// Value, raw.
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// One `NAME[=default]` of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// Name, raw.
    pub name: String,
    /// Default value, raw.
    pub default: Option<String>,
}

/// A source of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path, URL or git reference, raw.
    Path(String),
    /// An inline file from a heredoc, named after its delimiter.
    Inline {
        /// File name (the delimiter).
        name: String,
        /// Content, `<<-` tabs already stripped.
        content: String,
        /// Whether variables in the content are to be expanded.
        expand: bool,
    },
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default network.
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// Default confinement.
    Sandbox,
    /// Privileged (needs an entitlement).
    Insecure,
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstruction {
    pub image: String,
    pub stage_name: Option<String>,
    pub platform: Option<String>,
    pub span: Span,
    pub original: String,
}

/// `RUN [flags] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
    pub devices: Vec<String>,
    /// Heredoc bodies (raw), for the builder to turn into scripts or shell input.
    pub heredocs: Vec<Heredoc>,
    pub span: Span,
    pub original: String,
}

/// `CMD command` (may be empty: `CMD []`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdInstruction {
    pub command: CommandLine,
    pub span: Span,
    pub original: String,
}

/// `ENTRYPOINT command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointInstruction {
    pub command: CommandLine,
    pub span: Span,
    pub original: String,
}

/// `SHELL ["exe", "args"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellInstruction {
    pub shell: Vec<String>,
    pub span: Span,
    pub original: String,
}

/// `LABEL k=v ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelInstruction {
    pub labels: Vec<KeyValue>,
    pub span: Span,
    pub original: String,
}

/// `MAINTAINER name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainerInstruction {
    pub name: String,
    pub span: Span,
    pub original: String,
}

/// `EXPOSE port[/proto] ...`, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeInstruction {
    pub ports: Vec<String>,
    pub span: Span,
    pub original: String,
}

/// `ENV k=v ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInstruction {
    pub vars: Vec<KeyValue>,
    pub span: Span,
    pub original: String,
}

/// `ADD [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInstruction {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: Option<bool>,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
    pub excludes: Vec<String>,
    pub span: Span,
    pub original: String,
}

/// `COPY [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from`: stage name, index or image (never expanded).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    pub span: Span,
    pub original: String,
}

/// `VOLUME path ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInstruction {
    pub paths: Vec<String>,
    pub span: Span,
    pub original: String,
}

/// `USER user[:group]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInstruction {
    pub user: String,
    pub span: Span,
    pub original: String,
}

/// `WORKDIR path` (the whole rest of the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkdirInstruction {
    pub path: String,
    pub span: Span,
    pub original: String,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgInstruction {
    pub args: Vec<ArgDecl>,
    pub span: Span,
    pub original: String,
}

/// `ONBUILD trigger`: stored, run when a child image builds from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnbuildInstruction {
    /// The trigger text without `ONBUILD`, heredoc bodies and terminators appended.
    pub expression: String,
    /// The trigger as parsed by the line layer (validated when it runs).
    pub trigger: Box<Node>,
    pub span: Span,
    pub original: String,
}

/// `STOPSIGNAL signal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopsignalInstruction {
    pub signal: String,
    pub span: Span,
    pub original: String,
}

/// What a `HEALTHCHECK` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Cmd {
        /// `["CMD", args...]` (exec form) or `["CMD-SHELL", text]`.
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// `HEALTHCHECK ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckInstruction {
    pub check: Healthcheck,
    pub span: Span,
    pub original: String,
}

/// Every Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(FromInstruction),
    Run(RunInstruction),
    Cmd(CmdInstruction),
    Label(LabelInstruction),
    Maintainer(MaintainerInstruction),
    Expose(ExposeInstruction),
    Env(EnvInstruction),
    Add(AddInstruction),
    Copy(CopyInstruction),
    Entrypoint(EntrypointInstruction),
    Volume(VolumeInstruction),
    User(UserInstruction),
    Workdir(WorkdirInstruction),
    Arg(ArgInstruction),
    Onbuild(OnbuildInstruction),
    Stopsignal(StopsignalInstruction),
    Healthcheck(HealthcheckInstruction),
    Shell(ShellInstruction),
}

macro_rules! each_variant {
    ($self:ident, $i:ident => $e:expr) => {
        match $self {
            Instruction::From($i) => $e,
            Instruction::Run($i) => $e,
            Instruction::Cmd($i) => $e,
            Instruction::Label($i) => $e,
            Instruction::Maintainer($i) => $e,
            Instruction::Expose($i) => $e,
            Instruction::Env($i) => $e,
            Instruction::Add($i) => $e,
            Instruction::Copy($i) => $e,
            Instruction::Entrypoint($i) => $e,
            Instruction::Volume($i) => $e,
            Instruction::User($i) => $e,
            Instruction::Workdir($i) => $e,
            Instruction::Arg($i) => $e,
            Instruction::Onbuild($i) => $e,
            Instruction::Stopsignal($i) => $e,
            Instruction::Healthcheck($i) => $e,
            Instruction::Shell($i) => $e,
        }
    };
}

impl Instruction {
    /// Where the instruction is.
    pub fn span(&self) -> Span {
        each_variant!(self, i => i.span)
    }

    /// The logical line it came from.
    pub fn original(&self) -> &str {
        each_variant!(self, i => &i.original)
    }

    /// The upper-case keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }
}

/// The 18 keywords, upper-case.
pub const KEYWORDS: [&str; 18] = [
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
];
