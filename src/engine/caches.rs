//! Where a store keeps its build caches: `<root>/cache/cache.db` (step records, see
//! [`crate::cache`]), `<root>/cache/context-stat.db` (the stat cache of context files, see
//! [`crate::context::StatCache`]) and `<root>/cache/mounts` (the directories of
//! `RUN --mount=type=cache`). All are disposable: losing them costs a rebuild.

use std::time::Duration;

use super::BuildError;
use crate::cache::{CacheDb, CacheMounts, StepLocks};
use crate::context::StatCache;
use crate::store::Store;

/// Directory under the store root holding the build caches.
pub const CACHE_DIR: &str = "cache";

/// Rows of context files no build has looked at for this long are pruned after a build.
const STAT_CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

/// The build caches of one store, opened.
pub struct BuildCaches {
    /// Step records: cache key → layer, and the inputs each step was last built from.
    pub records: CacheDb,
    /// The persistent stat cache of context files (hashing without reading unchanged files).
    pub stat: StatCache,
    /// The cache mounts' directories, kept across builds (never part of a key).
    pub mounts: CacheMounts,
    /// A flock per step being built, so that one step is built once across stages and processes.
    pub steps: StepLocks,
}

impl BuildCaches {
    /// Opens (creating them when missing) the caches under `store`'s root.
    pub fn open(store: &Store) -> Result<BuildCaches, BuildError> {
        let dir = store.root().join(CACHE_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::io("create", &dir, e))?;
        let records = CacheDb::open(&dir.join("cache.db"))?;
        let stat = StatCache::open(&dir.join("context-stat.db"))?;
        let mounts = CacheMounts::open(store.root())?;
        let steps = StepLocks::open(&dir)?;
        Ok(BuildCaches { records, stat, mounts, steps })
    }

    /// Forgets stat-cache rows of files no build has looked at for a month (deleted files, old
    /// checkouts). Best effort: a failure only costs re-reading files later.
    pub fn prune_stale(&self) {
        if let Err(e) = self.stat.prune(STAT_CACHE_MAX_AGE) {
            tracing::debug!(error = %e, "pruning the context stat cache");
        }
    }
}
