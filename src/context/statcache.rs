//! The persistent stat cache: `(dev, ino, size, mtime ns, ctime ns, mode, uid, gid)` → content
//! digest of a regular file, keyed by the canonical source root and the path relative to it,
//! in one SQLite file (WAL, busy timeout: several builds on one machine share it).
//!
//! A row is used only when every stat field is unchanged; a changed file's row is replaced.
//!
//! Racy entries (git's "racily clean" problem): the kernel stamps mtime/ctime with a coarse
//! clock, so a file written again within the same tick *after* we read it could keep its
//! stat. A row therefore also records when the content was read, and a row whose ctime is not
//! at least [`RACY_WINDOW_NS`] older than that read is not trusted (the file is read again, and
//! the new row is trusted next time).
//!
//! Bounded growth: rows of deleted or moved files stay until [`StatCache::prune`] removes rows
//! unused for a given time (a lookup refreshes `used` when it is more than an hour old); the
//! owner of the database (the builder, at the end of a build or with `slipway prune`) calls it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::ContextError;
use crate::oci::Digest;

/// A row younger than this (ctime vs. the time its content was read) is re-read.
pub const RACY_WINDOW_NS: i64 = 50_000_000;

/// `used` is refreshed by a lookup only when older than this (one hour), so warm lookups do not write.
const TOUCH_INTERVAL_NS: i64 = 3_600_000_000_000;

/// Batches of at least this many files are looked up with one scan of their root's rows.
const SCAN_AT: usize = 256;

/// The columns a lookup reads, in [`Row::read`]'s order.
const COLUMNS: &str = "dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid, digest, read_ns, used_ns";

/// A stored row: the stat it is valid for, the digest, when it was read and last used.
#[derive(Debug, Clone)]
struct Row {
    stored: StatKey,
    digest: Digest,
    read_ns: i64,
    used_ns: i64,
}

impl Row {
    /// The row from [`COLUMNS`] starting at column `at`; `None` when its digest is malformed.
    fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<Row>> {
        let stored = StatKey {
            dev: r.get::<_, i64>(at)? as u64,
            ino: r.get::<_, i64>(at + 1)? as u64,
            size: r.get::<_, i64>(at + 2)? as u64,
            mtime_ns: r.get(at + 3)?,
            ctime_ns: r.get(at + 4)?,
            mode: r.get(at + 5)?,
            uid: r.get(at + 6)?,
            gid: r.get(at + 7)?,
        };
        let digest: Vec<u8> = r.get(at + 8)?;
        let Ok(digest) = <[u8; 32]>::try_from(digest) else { return Ok(None) };
        Ok(Some(Row { stored, digest: Digest::from_bytes(digest), read_ns: r.get(at + 9)?, used_ns: r.get(at + 10)? }))
    }
}

/// Rows read ahead by [`StatCache::rows_under`], by path.
pub(super) struct Prefetched(std::collections::HashMap<Vec<u8>, Row>);

/// The stat fields a row is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl StatKey {
    pub(super) fn of(st: &rustix::fs::Stat) -> StatKey {
        StatKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// Persistent (dev, ino, size, mtime, ctime, mode, uid, gid) → content digest, keyed by the canonical source
/// root + relative path, in a SQLite file (see the module doc for racy rows and pruning).
pub struct StatCache {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for StatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatCache").field("path", &self.path).finish_non_exhaustive()
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

impl StatCache {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<StatCache, ContextError> {
        let err = |op| move |source| ContextError::StatCache { path: path.to_path_buf(), op, source };
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err("set the busy timeout"))?;
        crate::sqlite::enable_wal(&conn, Duration::from_secs(30)).map_err(err("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err("set synchronous"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS stat_cache (
                root TEXT NOT NULL,
                path BLOB NOT NULL,
                dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
                mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
                digest BLOB NOT NULL,
                read_ns INTEGER NOT NULL,
                used_ns INTEGER NOT NULL,
                PRIMARY KEY (root, path)
            ) WITHOUT ROWID;",
        )
        .map_err(err("create the schema"))?;
        Ok(StatCache { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> ContextError + '_ {
        move |source| ContextError::StatCache { path: self.path.clone(), op, source }
    }

    /// Looks up many files of one root; `None` for a missing, stale or racy row. A large batch
    /// reads the root's rows in one scan (a point query per file costs a B-tree descent and a
    /// statement step each: most of a no-op rebuild of a big context); a small one queries
    /// each file.
    #[cfg(test)]
    pub(super) fn lookup(&self, root: &str, files: &[(&[u8], StatKey)]) -> Result<Vec<Option<Digest>>, ContextError> {
        self.lookup_with(root, files, None)
    }

    /// [`StatCache::lookup`], with the rows of [`StatCache::rows_under`] read beforehand (while
    /// the walk ran): every file asked for must lie under the directories they were read for.
    pub(super) fn lookup_with(
        &self,
        root: &str,
        files: &[(&[u8], StatKey)],
        prefetched: Option<Prefetched>,
    ) -> Result<Vec<Option<Digest>>, ContextError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.err("begin a lookup"))?;
        let now = now_ns();
        let rows = match prefetched {
            Some(mut rows) => files.iter().map(|(path, _)| rows.0.remove(*path)).collect(),
            None if files.len() >= SCAN_AT => self.scan(&tx, root, files)?,
            None => self.point_queries(&tx, root, files)?,
        };
        let mut out = Vec::with_capacity(files.len());
        {
            let mut touch = tx
                .prepare_cached("UPDATE stat_cache SET used_ns = ?3 WHERE root = ?1 AND path = ?2")
                .map_err(self.err("look up"))?;
            for ((path, key), row) in files.iter().zip(rows) {
                let mut stale_use = false;
                let hit = row.and_then(|Row { stored, digest, read_ns, used_ns }| {
                    let fresh = stored == *key && key.ctime_ns.max(key.mtime_ns) + RACY_WINDOW_NS <= read_ns;
                    stale_use = used_ns < now - TOUCH_INTERVAL_NS;
                    fresh.then_some(digest)
                });
                // A warm lookup writes nothing unless the row's `used` is old: pruning is coarse.
                if hit.is_some() && stale_use {
                    touch.execute(params![root, path, now]).map_err(self.err("look up"))?;
                }
                out.push(hit);
            }
        }
        tx.commit().map_err(self.err("commit a lookup"))?;
        Ok(out)
    }

    /// The row of each file, one query each.
    fn point_queries(
        &self,
        tx: &rusqlite::Transaction<'_>,
        root: &str,
        files: &[(&[u8], StatKey)],
    ) -> Result<Vec<Option<Row>>, ContextError> {
        let mut get = tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM stat_cache WHERE root = ?1 AND path = ?2"))
            .map_err(self.err("look up"))?;
        let mut out = Vec::with_capacity(files.len());
        for (path, _) in files {
            let row =
                get.query_row(params![root, path], |r| Row::read(r, 0)).optional().map_err(self.err("look up"))?;
            out.push(row.flatten());
        }
        Ok(out)
    }

    /// The row of each file, from one scan of the root's rows.
    fn scan(
        &self,
        tx: &rusqlite::Transaction<'_>,
        root: &str,
        files: &[(&[u8], StatKey)],
    ) -> Result<Vec<Option<Row>>, ContextError> {
        let wanted: std::collections::HashMap<&[u8], usize> =
            files.iter().enumerate().map(|(i, (path, _))| (*path, i)).collect();
        let mut out: Vec<Option<Row>> = vec![None; files.len()];
        let mut all = tx
            .prepare_cached(&format!("SELECT path, {COLUMNS} FROM stat_cache WHERE root = ?1"))
            .map_err(self.err("look up"))?;
        let mut rows = all.query(params![root]).map_err(self.err("look up"))?;
        while let Some(r) = rows.next().map_err(self.err("look up"))? {
            let path =
                r.get_ref(0).map_err(self.err("look up"))?.as_blob().map_err(|e| self.err("look up")(e.into()))?;
            if let Some(&i) = wanted.get(path) {
                out[i] = Row::read(r, 1).map_err(self.err("look up"))?;
            }
        }
        Ok(out)
    }
    /// Every row of `root` whose path lies below one of `dirs` (paths relative to the root; ""
    /// is the whole root), in one range scan of the primary key per directory. A big no-op
    /// rebuild reads these on a second core while the context is walked.
    pub(super) fn rows_under(&self, root: &str, dirs: &[&[u8]]) -> Result<Prefetched, ContextError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::collections::HashMap::new();
        let select = format!("SELECT path, {COLUMNS} FROM stat_cache WHERE root = ?1");
        let mut whole = conn.prepare_cached(&select).map_err(self.err("look up"))?;
        let mut range =
            conn.prepare_cached(&format!("{select} AND path >= ?2 AND path < ?3")).map_err(self.err("look up"))?;
        for dir in dirs {
            // Below `dir`: from `dir/` up to, not including, `dir0` ('0' follows '/').
            let mut rows = if dir.is_empty() {
                whole.query(params![root])
            } else {
                range.query(params![root, [dir, &b"/"[..]].concat(), [dir, &b"0"[..]].concat()])
            }
            .map_err(self.err("look up"))?;
            while let Some(r) = rows.next().map_err(self.err("look up"))? {
                let path: Vec<u8> = r.get(0).map_err(self.err("look up"))?;
                if let Some(row) = Row::read(r, 1).map_err(self.err("look up"))? {
                    out.insert(path, row);
                }
            }
        }
        Ok(Prefetched(out))
    }

    /// Records files whose content was read at `read_ns` (before the reads began).
    pub(super) fn store(
        &self,
        root: &str,
        files: &[(&[u8], StatKey, Digest)],
        read_ns: i64,
    ) -> Result<(), ContextError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.err("begin an update"))?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO stat_cache
                     (root, path, dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid, digest, read_ns, used_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
                )
                .map_err(self.err("update"))?;
            for (path, k, digest) in files {
                put.execute(params![
                    root,
                    path,
                    k.dev as i64,
                    k.ino as i64,
                    k.size as i64,
                    k.mtime_ns,
                    k.ctime_ns,
                    k.mode,
                    k.uid,
                    k.gid,
                    &digest.as_bytes()[..],
                    read_ns
                ])
                .map_err(self.err("update"))?;
            }
        }
        tx.commit().map_err(self.err("commit an update"))
    }

    /// Removes rows not used for `unused_for` (deleted files, old contexts); returns how many.
    pub fn prune(&self, unused_for: Duration) -> Result<u64, ContextError> {
        let cutoff = now_ns().saturating_sub(unused_for.as_nanos().min(i64::MAX as u128) as i64);
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let n =
            conn.execute("DELETE FROM stat_cache WHERE used_ns < ?1", params![cutoff]).map_err(self.err("prune"))?;
        Ok(n as u64)
    }

    /// Number of rows (for tests and `slipway info`-like reports).
    pub fn len(&self) -> Result<u64, ContextError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM stat_cache", [], |r| r.get(0)).map_err(self.err("count"))?;
        Ok(n as u64)
    }

    /// Whether the cache holds no row.
    pub fn is_empty(&self) -> Result<bool, ContextError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ctime_ns: i64) -> StatKey {
        StatKey { dev: 1, ino: 2, size: 3, mtime_ns: ctime_ns - 10, ctime_ns, mode: 0o100644, uid: 0, gid: 0 }
    }

    #[test]
    fn rows_answer_only_unchanged_settled_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StatCache::open(&dir.path().join("db")).unwrap();
        let d = Digest::of(b"content");
        let t = 1_000_000_000_000;
        cache.store("/ctx", &[(b"settled", key(t), d), (b"racy", key(t), d)], t + RACY_WINDOW_NS).unwrap();
        cache.store("/ctx", &[(b"racy", key(t), d)], t + RACY_WINDOW_NS - 1).unwrap();
        let got = cache.lookup("/ctx", &[(b"settled", key(t)), (b"racy", key(t))]).unwrap();
        assert_eq!(got, [Some(d), None], "a row read within the racy window is not trusted");
        let mut moved = key(t);
        moved.ino = 9;
        let got = cache.lookup("/ctx", &[(b"settled", moved), (b"missing", key(t))]).unwrap();
        assert_eq!(got, [None, None], "any stat change or no row: read again");
        assert_eq!(cache.lookup("/other", &[(b"settled", key(t))]).unwrap(), [None], "rows belong to one root");
        assert_eq!(cache.len().unwrap(), 2);
        assert_eq!(cache.prune(Duration::from_secs(0)).unwrap(), 2, "rows last used long ago are pruned");
    }

    /// A batch big enough to be answered by one scan answers as file-by-file lookups do:
    /// settled rows, racy rows, changed files, missing rows, another root's rows.
    #[test]
    fn a_scanned_batch_answers_as_point_lookups_do() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StatCache::open(&dir.path().join("db")).unwrap();
        let t = 1_000_000_000_000;
        let names: Vec<Vec<u8>> = (0..SCAN_AT as u32 + 44).map(|i| format!("d/f{i}").into_bytes()).collect();
        let digest = |i: usize| Digest::of(&names[i]);
        let settled: Vec<(&[u8], StatKey, Digest)> =
            (0..names.len()).filter(|i| i % 5 != 0).map(|i| (&names[i][..], key(t), digest(i))).collect();
        cache.store("/ctx", &settled, t + RACY_WINDOW_NS).unwrap();
        let racy: Vec<(&[u8], StatKey, Digest)> =
            (0..names.len()).filter(|i| i % 7 == 0).map(|i| (&names[i][..], key(t), digest(i))).collect();
        cache.store("/ctx", &racy, t).unwrap();
        cache.store("/other", &[(&names[0][..], key(t), digest(0))], t + RACY_WINDOW_NS).unwrap();
        let mut changed = key(t);
        changed.size = 99;
        let asked: Vec<(&[u8], StatKey)> =
            names.iter().enumerate().map(|(i, n)| (&n[..], if i % 11 == 0 { changed } else { key(t) })).collect();
        let scanned = cache.lookup("/ctx", &asked).unwrap();
        let one_by_one: Vec<Option<Digest>> =
            asked.iter().map(|a| cache.lookup("/ctx", std::slice::from_ref(a)).unwrap()[0]).collect();
        assert_eq!(scanned, one_by_one);
        let expected: Vec<Option<Digest>> =
            (0..names.len()).map(|i| (i % 5 != 0 && i % 7 != 0 && i % 11 != 0).then(|| digest(i))).collect();
        assert_eq!(scanned, expected);
    }

    /// Rows read ahead for a directory are exactly that directory's (not `d0/…` nor `d-x` for
    /// `d`, nor another root's), and answer as the lookups without them do.
    #[test]
    fn rows_read_ahead_are_those_below_the_directories_and_answer_alike() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StatCache::open(&dir.path().join("db")).unwrap();
        let t = 1_000_000_000_000;
        let names: [&[u8]; 6] = [b"d/a", b"d/sub/b", b"d0/c", b"d-x", b"e/f", b"top"];
        let rows: Vec<(&[u8], StatKey, Digest)> = names.iter().map(|n| (*n, key(t), Digest::of(n))).collect();
        cache.store("/ctx", &rows, t + RACY_WINDOW_NS).unwrap();
        cache.store("/other", &[(b"d/z", key(t), Digest::of(b"z"))], t + RACY_WINDOW_NS).unwrap();
        let below = |dirs: &[&[u8]]| {
            let mut got: Vec<Vec<u8>> = cache.rows_under("/ctx", dirs).unwrap().0.into_keys().collect();
            got.sort();
            got
        };
        assert_eq!(below(&[b"d"]), [b"d/a".to_vec(), b"d/sub/b".to_vec()]);
        assert_eq!(below(&[b"d", b"e"]).len(), 3);
        assert_eq!(below(&[b""]).len(), names.len(), "\"\" is the whole root");
        let mut changed = key(t);
        changed.size = 7;
        let asked: [(&[u8], StatKey); 3] = [(b"d/a", key(t)), (b"d/sub/b", changed), (b"d/missing", key(t))];
        let ahead = cache.rows_under("/ctx", &[b"d"]).unwrap();
        assert_eq!(cache.lookup_with("/ctx", &asked, Some(ahead)).unwrap(), cache.lookup("/ctx", &asked).unwrap());
        assert_eq!(cache.lookup("/ctx", &asked).unwrap(), [Some(Digest::of(b"d/a")), None, None]);
    }
}
