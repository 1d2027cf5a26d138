//! Stages in parallel: every needed stage gets a thread that starts as soon as the stages it reads
//! are done; a [`Gate`] bounds the layer steps running at once (`--jobs`). The first failure
//! cancels the build's token, so running steps are killed and waiting stages never start; the
//! error reported is the first one that is not a consequence of that cancellation.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::BuildError;
use super::stage::{BuildCtx, StageResult, run_stage};
use crate::exec::CancelToken;
use crate::graph::StageId;

/// A counting semaphore that gives up when the build is cancelled.
pub(crate) struct Gate {
    free: Mutex<usize>,
    cv: Condvar,
}

/// A held slot of a [`Gate`], released on drop.
pub(crate) struct GateSlot<'g>(&'g Gate);

impl Gate {
    pub(crate) fn new(slots: usize) -> Gate {
        Gate { free: Mutex::new(slots.max(1)), cv: Condvar::new() }
    }

    /// Waits for a free slot.
    pub(crate) fn acquire(&self, cancel: &CancelToken) -> Result<GateSlot<'_>, BuildError> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            if *free > 0 {
                *free -= 1;
                return Ok(GateSlot(self));
            }
            free = self.cv.wait_timeout(free, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for GateSlot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

#[derive(Default)]
struct Progress {
    done: BTreeMap<StageId, StageResult>,
    failed: Option<BuildError>,
}

/// Runs every stage the target needs; returns their results.
pub(crate) fn run(ctx: &BuildCtx<'_>) -> Result<BTreeMap<StageId, StageResult>, BuildError> {
    let graph = &ctx.plan.graph;
    let gate = ctx.gate;
    let shared = Mutex::new(Progress::default());
    let cv = Condvar::new();
    let cancel = ctx.builder.cancel;
    std::thread::scope(|scope| {
        for id in graph.needed() {
            let (shared, cv) = (&shared, &cv);
            let deps = graph.stage(id).map(|s| s.deps.clone()).unwrap_or_default();
            scope.spawn(move || {
                let inputs = {
                    let mut progress = shared.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if progress.failed.is_some() || cancel.is_cancelled() {
                            return;
                        }
                        if deps.iter().all(|d| progress.done.contains_key(d)) {
                            break deps.iter().map(|d| (*d, progress.done[d].clone())).collect::<BTreeMap<_, _>>();
                        }
                        progress =
                            cv.wait_timeout(progress, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
                    }
                };
                let result = run_stage(ctx, id, &inputs, gate);
                let mut progress = shared.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(r) => {
                        progress.done.insert(id, r);
                    }
                    Err(e) => {
                        let replace = match &progress.failed {
                            None => true,
                            Some(previous) => previous.is_cancelled() && !e.is_cancelled(),
                        };
                        if replace {
                            progress.failed = Some(e);
                        }
                        cancel.cancel();
                    }
                }
                cv.notify_all();
            });
        }
    });
    let progress = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = progress.failed {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    Ok(progress.done)
}
