//! Errors of turning a typed Dockerfile into a [`super::BuildGraph`], each with the span of
//! the line at fault (none only for `--target`, which is not in the file). Knows nothing
//! about how they are printed beyond the message.

use thiserror::Error;

use crate::dockerfile::expand::ExpandError;
use crate::dockerfile::{ParseError, Span};
use crate::oci::PlatformError;

/// One reason a Dockerfile cannot become a build graph.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Only `ARG`s, no `FROM`.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// A word of an instruction does not expand.
    #[error("{source}")]
    Expand {
        span: Span,
        #[source]
        source: ExpandError,
    },
    /// `FROM --platform=` is not a platform.
    #[error("{source}")]
    Platform {
        span: Span,
        #[source]
        source: PlatformError,
    },
    /// `COPY --from=$X`: BuildKit does not expand `--from`.
    #[error(
        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    )]
    FromVariable { span: Span },
    /// `FROM $X` with `X` empty.
    #[error("base name ({base}) should not be blank")]
    BlankBase { span: Span, base: String },
    /// A stage names a stage defined later in the file.
    #[error("stage {name:?} is used before it is defined (a stage can only refer to earlier stages)")]
    ForwardReference { span: Span, name: String },
    /// A stage names itself in `COPY --from` or `--mount=from`.
    #[error("stage {name:?} refers to itself (circular dependency)")]
    SelfReference { span: Span, name: String },
    /// `--from=<n>` with no earlier stage `n`.
    #[error("stage index {index} is not an earlier stage (this is stage {current})")]
    StageIndex { span: Span, index: usize, current: usize },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; stages are: {}", .names.join(", "))]
    UnknownTarget { target: String, names: Vec<String> },
    /// An `ONBUILD` trigger of the base image does not parse.
    #[error("invalid ONBUILD trigger {trigger:?} of the base image: {source}")]
    Trigger {
        span: Span,
        trigger: String,
        #[source]
        source: ParseError,
    },
    /// `ONBUILD FROM`, `ONBUILD MAINTAINER` or `ONBUILD ONBUILD` in the base image.
    #[error("`{keyword}` isn't allowed as an ONBUILD trigger (from the base image)")]
    TriggerNotAllowed { span: Span, keyword: String },
}

impl GraphError {
    /// Where the error was found; `None` for errors about the command line.
    pub fn span(&self) -> Option<Span> {
        use GraphError::*;
        match self {
            NoStages | UnknownTarget { .. } => None,
            Expand { span, .. }
            | BlankBase { span, .. }
            | FromVariable { span }
            | Platform { span, .. }
            | ForwardReference { span, .. }
            | SelfReference { span, .. }
            | StageIndex { span, .. }
            | Trigger { span, .. }
            | TriggerNotAllowed { span, .. } => Some(*span),
        }
    }
}

/// Every graph error of one Dockerfile, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Error)]
#[error("{} error(s) in the build graph, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
pub struct GraphErrors(pub Vec<GraphError>);

impl GraphErrors {
    /// The errors.
    pub fn errors(&self) -> &[GraphError] {
        &self.0
    }
}
