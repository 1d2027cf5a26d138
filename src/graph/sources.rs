//! Where a build reads its context: every `COPY` without `--from`, `ADD` and
//! `RUN --mount=type=bind` without `from` of the stages the target needs (ONBUILD triggers
//! already inserted included), with the source and `--exclude` words expanded as the builder
//! expands them, as far as the Dockerfile alone can say. PURE.
//!
//! The builder expands against the stage's real environment, which starts with the base image's
//! `Env`, unknown here. A word is *resolved* when every variable it looks up is set by the
//! Dockerfile or the build (ARG, ENV, `--build-arg`, the predefined ARGs), or is unset in a stage
//! that starts from `scratch` (through its parent stages), where unset means empty. Otherwise it
//! is [`Expansion::Unresolved`], naming the variables the base image may set; `PATH` is always
//! one, since the builder gives a stage the default `PATH` when its base has none.

use std::collections::BTreeSet;

use crate::dockerfile::args::ArgScope;
use crate::dockerfile::expand::{ExpandError, ExpandErrorKind, Expander};
use crate::dockerfile::{Instruction, MountType, RunMount, Source, Span};

use super::steps::analyse_step;
use super::{Base, BuildGraph, StageId, StepOrigin};

/// The instructions that read the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Copy,
    Add,
    /// `RUN --mount=type=bind` (from the context).
    BindMount,
}

impl ReadKind {
    /// How the instruction is named in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadKind::Copy => "COPY",
            ReadKind::Add => "ADD",
            ReadKind::BindMount => "RUN --mount=type=bind",
        }
    }
}

/// A word after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// The value the builder will use.
    Value(String),
    /// The value depends on these variables, which the base image's environment may set.
    Unresolved { variables: Vec<String> },
    /// The builder will fail on it (`${V:?}` with `V` unset, an invalid `--mount` value).
    Failed { message: String },
}

/// One source or `--exclude` word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// As written (for a bind mount: the `--mount` value).
    pub written: String,
    pub expansion: Expansion,
}

/// One instruction that reads the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRead {
    pub stage: StageId,
    pub kind: ReadKind,
    /// Where it is written (for an ONBUILD trigger: the stage's `FROM`).
    pub span: Span,
    pub origin: StepOrigin,
    /// The instruction as written.
    pub text: String,
    /// Its context sources (heredocs, and `ADD`'s URLs and git sources, are none).
    pub sources: Vec<Word>,
    /// `--exclude` patterns.
    pub excludes: Vec<Word>,
}

impl ContextRead {
    /// Whether every source and exclude word has a value.
    pub fn resolved(&self) -> bool {
        self.sources.iter().chain(&self.excludes).all(|w| matches!(w.expansion, Expansion::Value(_)))
    }
}

/// Whether an `ADD` source is a URL or a git reference rather than a context path (the same
/// rule as `remote::source::parse`, which reads it).
pub fn is_remote_source(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    ["http://", "https://", "git@", "git://", "ssh://"].iter().any(|p| lower.starts_with(p))
        || (lower.starts_with("file://")
            && (lower.contains(".git#") || lower.contains(".git?") || lower.ends_with(".git")))
}

/// Expands words in one stage at one step.
struct StageWords<'s> {
    scope: &'s ArgScope,
    escape: char,
    /// The stage starts from an image (directly or through its parent stages).
    from_image: bool,
}

impl StageWords<'_> {
    /// Whether an unset `name` may be set by the builder's real environment.
    fn may_be_set(&self, name: &str) -> bool {
        self.from_image || name == "PATH"
    }

    /// Expands `word`, collecting the variables that leave it unresolved into `unknown`; an
    /// unresolved `${V:?}` counts as unresolved, not as an error.
    fn expand(&self, word: &str, unknown: &mut BTreeSet<String>) -> Result<String, ExpandError> {
        match Expander::new(self.escape, self.scope).expand_word(word) {
            Ok(e) => {
                unknown.extend(e.unset.into_iter().filter(|n| self.may_be_set(n)));
                Ok(e.value)
            }
            Err(e) => match &e.kind {
                ExpandErrorKind::Required { name, .. } if self.may_be_set(name) => {
                    unknown.insert(name.clone());
                    Ok(String::new())
                }
                _ => Err(e),
            },
        }
    }

    fn word(&self, written: &str) -> Word {
        let mut unknown = BTreeSet::new();
        let expansion = match self.expand(written, &mut unknown) {
            Ok(_) if !unknown.is_empty() => Expansion::Unresolved { variables: unknown.into_iter().collect() },
            Ok(value) => Expansion::Value(value),
            Err(e) => Expansion::Failed { message: e.to_string() },
        };
        Word { written: written.to_owned(), expansion }
    }

    /// The context source of a bind mount; `None` when it is another kind of mount or binds a
    /// stage or image.
    fn bind(&self, mount: &RunMount) -> Option<Word> {
        let mut unknown = BTreeSet::new();
        let resolved = match &mount.parsed {
            Some(m) => Ok(m.clone()),
            None => mount.resolve(&mut |w: &str| self.expand(w, &mut unknown)),
        };
        let expansion = match resolved {
            Ok(m) if m.kind != MountType::Bind || m.from.is_some() => return None,
            Ok(_) if !unknown.is_empty() => Expansion::Unresolved { variables: unknown.into_iter().collect() },
            Ok(m) => Expansion::Value(m.source.filter(|s| !s.is_empty()).unwrap_or_else(|| ".".to_owned())),
            Err(e) => Expansion::Failed { message: e.to_string() },
        };
        Some(Word { written: mount.raw.clone(), expansion })
    }

    fn sources(&self, sources: &[Source], add: bool) -> Vec<Word> {
        let paths = sources.iter().filter_map(|s| match s {
            Source::Path(p) => Some(self.word(p)),
            Source::Inline { .. } => None,
        });
        paths.filter(|w| !(add && matches!(&w.expansion, Expansion::Value(v) if is_remote_source(v)))).collect()
    }
}

impl BuildGraph {
    /// The instructions of the needed stages that read the context, in stage order, each
    /// stage's in step order.
    pub fn context_reads(&self) -> Vec<ContextRead> {
        let needed: BTreeSet<StageId> = self.needed().into_iter().collect();
        let mut finals: Vec<Option<(ArgScope, bool)>> = vec![None; self.stages.len()];
        let mut reads = Vec::new();
        for stage in self.stages.iter().filter(|s| needed.contains(&s.id)) {
            let (mut scope, from_image) = match &stage.base {
                Base::Stage(parent) => match finals.get(parent.0).and_then(Option::as_ref) {
                    Some((scope, from_image)) => (ArgScope::stage_from(&self.global, scope), *from_image),
                    None => (ArgScope::stage(&self.global, []), true),
                },
                Base::Image(_) => (ArgScope::stage(&self.global, []), true),
                Base::Scratch => (ArgScope::stage(&self.global, []), false),
            };
            for step in &stage.instructions {
                let words = StageWords { scope: &scope, escape: self.escape, from_image };
                let read = |kind, sources, excludes| ContextRead {
                    stage: stage.id,
                    kind,
                    span: step.span,
                    origin: step.origin.clone(),
                    text: step.instruction.original().to_owned(),
                    sources,
                    excludes,
                };
                match &step.instruction {
                    Instruction::Copy(c) if c.from.is_none() => {
                        let excludes = c.excludes.iter().map(|e| words.word(e)).collect();
                        reads.push(read(ReadKind::Copy, words.sources(&c.sources, false), excludes));
                    }
                    Instruction::Add(a) => {
                        let sources = words.sources(&a.sources, true);
                        let excludes = a.excludes.iter().map(|e| words.word(e)).collect();
                        if !sources.is_empty() {
                            reads.push(read(ReadKind::Add, sources, excludes));
                        }
                    }
                    Instruction::Run(r) => {
                        for word in r.mounts.iter().filter_map(|m| words.bind(m)) {
                            reads.push(read(ReadKind::BindMount, vec![word], Vec::new()));
                        }
                    }
                    _ => {}
                }
                // The step's effect on the scope (ARG, ENV), as the graph walked it.
                analyse_step(step.instruction.clone(), step.origin.clone(), step.span, &mut scope, self.escape);
            }
            finals[stage.id.0] = Some((scope, from_image));
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dockerfile::parse_dockerfile;
    use crate::graph::GraphOptions;

    fn reads_with(src: &str, build_args: &[(&str, &str)], target: Option<&str>) -> Vec<ContextRead> {
        let dockerfile = parse_dockerfile(src).expect("dockerfile parses");
        let build_args: BTreeMap<String, String> =
            build_args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let options = GraphOptions { build_args, target: target.map(str::to_owned), ..GraphOptions::default() };
        crate::graph::build(&dockerfile, &options).expect("graph builds").context_reads()
    }

    /// Each read as `KIND source,source [exclude,exclude]`, values or `?VAR` / `!message`.
    fn shown(reads: &[ContextRead]) -> Vec<String> {
        let word = |w: &Word| match &w.expansion {
            Expansion::Value(v) => v.clone(),
            Expansion::Unresolved { variables } => format!("?{}", variables.join("+")),
            Expansion::Failed { message } => format!("!{message}"),
        };
        reads
            .iter()
            .map(|r| {
                let sources: Vec<String> = r.sources.iter().map(word).collect();
                let excludes: Vec<String> = r.excludes.iter().map(word).collect();
                let mut s = format!("{} {}", r.kind.as_str(), sources.join(","));
                if !excludes.is_empty() {
                    s.push_str(&format!(" [{}]", excludes.join(",")));
                }
                s
            })
            .collect()
    }

    #[test]
    fn copy_add_and_context_binds_are_reads() {
        let src = "FROM scratch AS a\nFROM scratch\nCOPY a.txt b* /x/\nCOPY --from=a / /y\nADD https://example.com/f arch.tar /z/\n\
                   ADD https://example.com/g /w\nCOPY <<EOF /h\nhi\nEOF\n\
                   RUN --mount=type=bind,target=/src --mount=type=bind,source=tools,target=/t \
                   --mount=type=bind,from=a,target=/s --mount=type=cache,target=/c true\n\
                   COPY --exclude=*.md --exclude=docs docs/ /d/\n";
        assert_eq!(
            shown(&reads_with(src, &[], None)),
            [
                "COPY a.txt,b*",
                "ADD arch.tar",
                "COPY ",
                "RUN --mount=type=bind .",
                "RUN --mount=type=bind tools",
                "COPY docs/ [*.md,docs]",
            ]
        );
    }

    #[test]
    fn words_expand_with_build_args_and_the_stage_scope() {
        let src = "ARG DIR=src\nFROM scratch\nARG DIR\nENV SUB=lib\nCOPY $DIR/$SUB /x\nARG TARGETOS\nARG OS=$TARGETOS\n\
                   RUN --mount=type=bind,source=$DIR/$OS,target=/m true\nCOPY ${UNSET}x /y\n";
        assert_eq!(
            shown(&reads_with(src, &[], None)),
            ["COPY src/lib", "RUN --mount=type=bind src/linux", "COPY x"],
            "unset in a scratch stage is empty"
        );
        assert_eq!(shown(&reads_with(src, &[("DIR", "app")], None))[0], "COPY app/lib");
    }

    #[test]
    fn unset_variables_under_an_image_are_unresolved() {
        let src = "FROM alpine AS base\nENV KNOWN=k\nCOPY $KNOWN $HOME/x ${APP:?noapp} /y/\n\
                   FROM base\nCOPY $HOME /z\nRUN --mount=type=bind,source=$HOME,target=/m true\n\
                   RUN --mount=type=cache,target=$HOME/.cache true\nFROM scratch\nCOPY $PATH/x ${Y:?needed} /p\n";
        assert_eq!(
            shown(&reads_with(src, &[], Some("base"))),
            ["COPY k,?HOME,?APP"],
            "the stages after the target are not needed"
        );
        assert_eq!(
            shown(&reads_with(src, &[], None)),
            ["COPY ?PATH,!failed to process \"${Y:?needed}\": Y: needed"],
            "scratch: only PATH may be set; an unset required variable fails the build"
        );
        let src = src.replace("FROM scratch\nCOPY $PATH/x ${Y:?needed} /p\n", "");
        assert_eq!(
            shown(&reads_with(&src, &[], None)),
            ["COPY k,?HOME,?APP", "COPY ?HOME", "RUN --mount=type=bind ?HOME"],
            "a stage built on one from an image inherits the unknown environment"
        );
    }

    #[test]
    fn reads_keep_their_line_and_text() {
        let reads = reads_with("FROM scratch\n\nCOPY  a  /b\n", &[], None);
        assert_eq!((reads[0].span.start_line, reads[0].text.as_str()), (3, "COPY  a  /b"));
        assert!(reads[0].resolved());
        assert!(is_remote_source("HTTPS://x/y") && is_remote_source("git@github.com:a/b.git"));
        assert!(!is_remote_source("src/https.rs") && !is_remote_source("a.git#main"));
        assert!(is_remote_source("file:///srv/r.git#main") && !is_remote_source("file:///srv/r"));
    }
}
