//! One step of a stage, and what every step needs besides the stage's [`State`]: the build,
//! where the step is (index, total, line), the finished stages it may read, the `--jobs` gate.
//! Layer steps (RUN, COPY, ADD, WORKDIR) take a gate slot and go to [`super::run`] and [`super::copy`],
//! which hand their work to the one layer-step lifecycle ([`super::layers::layer_step`]);
//! everything else is a metadata instruction ([`super::metadata`]).

use std::collections::BTreeMap;

use super::BuildError;
use super::copy::CopySpec;
use super::scheduler::Gate;
use super::stage::{BuildCtx, StageResult, State};
use crate::dockerfile::{Instruction, Span};
use crate::graph::{StageId, StageNode, Step};

/// Where a step is and what it may read.
pub(crate) struct StepCtx<'a> {
    pub build: &'a BuildCtx<'a>,
    pub node: &'a StageNode,
    pub step: &'a Step,
    /// The step's position in its stage (0-based; the stage's `FROM` is not a step).
    pub index: usize,
    /// Stages finished so far, among them every stage this one reads.
    pub done: &'a BTreeMap<StageId, StageResult>,
    /// Bounds the layer steps running at once across stages (`--jobs`).
    pub gate: &'a Gate,
}

impl StepCtx<'_> {
    pub(crate) fn span(&self) -> Span {
        self.step.span
    }

    /// A layer step's task name as BuildKit writes it: `[build 3/5] RUN make` (the stage's
    /// `FROM` is step 1).
    pub(crate) fn title(&self, state: &State, what: &str) -> String {
        let prefix = state.label.as_ref().map(|l| format!("{l} ")).unwrap_or_default();
        format!("[{prefix}{}/{}] {what}", self.index + 2, self.node.instructions.len() + 1)
    }
}

/// Runs one step of the stage.
pub(crate) fn run_step(sc: &StepCtx<'_>, state: &mut State) -> Result<(), BuildError> {
    let instruction = &sc.step.instruction;
    let _slot = match instruction {
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
            Some(sc.gate.acquire(sc.build.builder.cancel)?)
        }
        _ => None,
    };
    match instruction {
        Instruction::Run(run) => super::run::run(sc, state, run),
        Instruction::Copy(copy) => super::copy::copy(sc, state, &CopySpec::from_copy(copy)),
        Instruction::Add(add) => super::copy::copy(sc, state, &CopySpec::from_add(add)),
        Instruction::Workdir(w) => super::workdir::workdir(sc, state, w),
        other => super::metadata::apply(sc.build, state, sc.span(), other),
    }
}
