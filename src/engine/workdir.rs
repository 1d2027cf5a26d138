//! `WORKDIR`: sets the working directory and, as BuildKit does, creates it (and its missing
//! parents, 0755, owned by the stage's `USER`) as a layer step of its own — a step that finds the
//! directory already there makes no layer (`empty_layer` history). `WORKDIR /` creates nothing.

use super::BuildError;
use super::history;
use super::layers::{self, LayerStep};
use super::stage::{State, expand, join_path};
use super::step::StepCtx;
use crate::cache::KeyInputs;
use crate::context;
use crate::dockerfile::WorkdirInstruction;

/// Runs one `WORKDIR` step (or takes it from the cache).
pub(crate) fn workdir(sc: &StepCtx<'_>, state: &mut State, w: &WorkdirInstruction) -> Result<(), BuildError> {
    let value = expand(sc.build, state, sc.span(), &w.path)?;
    let joined = join_path(&state.workdir(), &value);
    let dir = match joined.trim_end_matches('/') {
        "" => "/".to_string(),
        d => d.to_string(),
    };
    state.container().working_dir = Some(dir.clone());
    let created_by = format!("WORKDIR {dir}");
    if dir == "/" {
        state.history(state.last_created, history::metadata(created_by));
        return Ok(());
    }
    let user = state.container_ref().user.unwrap_or_default();
    let mut inputs = KeyInputs::default();
    layers::add_parent(state, &mut inputs);
    inputs.add("instruction", created_by.clone());
    inputs.add("user", user.clone());
    inputs.add("platform", state.platform.to_string());
    let step = LayerStep { inputs, files: None, title: sc.title(state, &created_by), created_by, independent: false };
    layers::layer_step(sc, state, step, |_run, rootfs| {
        let owner = match user.is_empty() {
            true => None,
            false => Some(super::owners::resolve(rootfs, &user, sc.span(), &format!("WORKDIR as USER {user}"))?),
        };
        context::make_dir(rootfs, &dir, owner)?;
        Ok(())
    })
}
