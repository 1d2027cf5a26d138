//! Snapshot records: `<dir>/metadata.db` (SQLite, WAL) guarded by the flock `<dir>/lock`.
//!
//! Every mutation runs under the exclusive flock, in one SQLite transaction that is committed
//! after the directory work it describes, so two processes sharing a root see each other's
//! snapshots and never interleave a check with a change. Each snapshot owns the directory
//! `<dir>/<id>/`; ids are never reused. An active snapshot or view records the owner token of
//! the process that made it (`owner`); when that process is gone, the next open removes it.
//! Knows nothing of overlay or copying.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};
use rustix::fs::{FlockOperation, flock};

use super::{Info, Kind, SnapshotError};
use crate::oci::DiffId;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT NOT NULL UNIQUE,
    kind    TEXT NOT NULL,
    parent  TEXT,
    diff_id TEXT,
    created INTEGER NOT NULL,
    owner   TEXT
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
";

/// A record with its directory id.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub id: i64,
    pub info: Info,
}

/// The metadata of one backend directory.
#[derive(Debug)]
pub(super) struct Meta {
    dir: PathBuf,
    /// This process's owner token (`owner`), recorded on the active snapshots and views it makes.
    owner: &'static str,
    db_path: PathBuf,
    lock_path: PathBuf,
    conn: std::sync::Mutex<Connection>,
}

/// The exclusive flock, held while alive.
pub(super) struct Locked<'m> {
    _file: File,
    pub conn: std::sync::MutexGuard<'m, Connection>,
    meta: &'m Meta,
}

impl Meta {
    /// Opens (creating) the database under `dir` and removes snapshot directories no record
    /// owns (left by a crash between directory work and the commit of its record), then what
    /// dead processes left: their temporary directories (unmounted first), active snapshots and
    /// views (`Locked::reclaim`, ownership as `owner` tells it).
    pub fn open(dir: &Path) -> Result<Meta, SnapshotError> {
        let meta = Meta::connect(dir)?;
        {
            let mut locked = meta.lock()?;
            // A sweep that fails (another process removing the same trash) is retried next open.
            if let Err(e) = locked.reclaim() {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove leftover snapshot directories");
            }
        }
        Ok(meta)
    }

    /// Opens (creating) the database under `dir`, its schema up to date, and removes nothing.
    pub fn connect(dir: &Path) -> Result<Meta, SnapshotError> {
        super::mkdir_private(dir)?;
        let owner = super::owner::hold(dir)?;
        let db_path = dir.join("metadata.db");
        let db_err = |source| SnapshotError::Db { path: db_path.clone(), source };
        let conn = Connection::open(&db_path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(db_err)?;
        crate::sqlite::enable_wal(&conn, std::time::Duration::from_secs(60)).map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err)?;
        let meta = Meta {
            dir: dir.to_path_buf(),
            owner,
            lock_path: dir.join("lock"),
            db_path: db_path.clone(),
            conn: conn.into(),
        };
        {
            let locked = meta.lock()?;
            locked.conn.execute_batch(SCHEMA).map_err(|source| SnapshotError::Db { path: db_path.clone(), source })?;
            locked.add_owner_column()?;
        }
        Ok(meta)
    }

    /// SQLite's `quick_check` of the database: `ok`, or what it found, joined.
    pub fn quick_check(&self) -> Result<String, SnapshotError> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let db_err = |source| SnapshotError::Db { path: self.db_path.clone(), source };
        let mut stmt = conn.prepare("PRAGMA quick_check").map_err(db_err)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)?;
        let verdict: Vec<String> = rows.collect::<rusqlite::Result<_>>().map_err(db_err)?;
        Ok(verdict.join("; "))
    }

    /// Takes the exclusive flock.
    pub fn lock(&self) -> Result<Locked<'_>, SnapshotError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.lock_path)
            .map_err(|e| SnapshotError::io("open lock file", &self.lock_path, e))?;
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SnapshotError::io("lock", &self.lock_path, e.into())),
            }
        }
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Locked { _file: file, conn, meta: self })
    }

    /// Directory of snapshot `id`.
    pub fn snapshot_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the snapshot `key` (refused while it has children): the record goes and its
    /// directory is moved aside in the same locked transaction, then deleted outside the lock.
    /// A crash in between leaves a `trash-*` directory that the next `open` sweeps.
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let mut locked = self.lock()?;
        let trash = locked.transaction(|tx| {
            let rec = tx.require(key)?;
            let children = tx.children(key)?;
            if children > 0 {
                return Err(SnapshotError::HasChildren { key: key.to_string(), children });
            }
            tx.delete(rec.id)?;
            let dir = self.snapshot_dir(rec.id);
            let trash = self.dir().join(format!("trash-{}", rec.id));
            std::fs::rename(&dir, &trash).map_err(|e| SnapshotError::io("move aside", &dir, e))?;
            Ok(trash)
        })?;
        drop(locked);
        crate::failpoint::io("snapshot.remove.before_delete").map_err(|e| SnapshotError::io("remove", &trash, e))?;
        super::treecopy::remove_tree(&trash)
    }
}

impl Locked<'_> {
    fn db_err(&self) -> impl Fn(rusqlite::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Db { path: self.meta.db_path.clone(), source }
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Record>, SnapshotError> {
        let row = self
            .conn
            .query_row(
                "SELECT id, key, kind, parent, diff_id, created FROM snapshots WHERE key = ?1",
                params![key],
                row_tuple,
            )
            .optional()
            .map_err(self.db_err())?;
        row.map(|r| self.record(r)).transpose()
    }

    /// The record of `key`, or `NotFound`.
    pub fn require(&self, key: &str) -> Result<Record, SnapshotError> {
        match self.get(key)? {
            Some(r) => Ok(r),
            None => Err(SnapshotError::NotFound { key: key.to_string() }),
        }
    }

    /// The committed parent `parent` (checked) and its chain, nearest first.
    pub fn parent_chain(&self, parent: Option<&str>) -> Result<Vec<Record>, SnapshotError> {
        let mut chain = Vec::new();
        let mut next = parent.map(str::to_string);
        while let Some(key) = next {
            let rec = self.require(&key)?;
            if rec.info.kind != Kind::Committed {
                return Err(SnapshotError::ParentNotCommitted { key, kind: rec.info.kind });
            }
            next = rec.info.parent.clone();
            chain.push(rec);
            if chain.len() > 10_000 {
                return Err(SnapshotError::Corrupt { path: self.meta.db_path.clone(), reason: "parent cycle".into() });
            }
        }
        Ok(chain)
    }

    /// Inserts a record; returns its id. Fails with `AlreadyExists` if the key is taken.
    pub fn insert(&self, key: &str, kind: Kind, parent: Option<&str>) -> Result<i64, SnapshotError> {
        if self.get(key)?.is_some() {
            return Err(SnapshotError::AlreadyExists { key: key.to_string() });
        }
        let owner = (kind != Kind::Committed).then_some(self.meta.owner);
        self.conn
            .execute(
                "INSERT INTO snapshots (key, kind, parent, diff_id, created, owner) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
                params![key, kind.as_str(), parent, super::unix_now(), owner],
            )
            .map_err(self.db_err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Renames `key` to the committed `name`.
    pub fn commit(&self, id: i64, name: &str, diff_id: Option<&DiffId>) -> Result<(), SnapshotError> {
        self.conn
            .execute(
                "UPDATE snapshots SET key = ?1, kind = 'committed', diff_id = ?2, owner = NULL WHERE id = ?3",
                params![name, diff_id.map(ToString::to_string), id],
            )
            .map_err(self.db_err())?;
        Ok(())
    }

    pub fn delete(&self, id: i64) -> Result<(), SnapshotError> {
        self.conn.execute("DELETE FROM snapshots WHERE id = ?1", params![id]).map_err(self.db_err())?;
        Ok(())
    }

    /// How many snapshots have `key` as their parent.
    pub fn children(&self, key: &str) -> Result<usize, SnapshotError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM snapshots WHERE parent = ?1", params![key], |r| r.get(0))
            .map_err(self.db_err())?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Every record, sorted by key.
    pub fn all(&self) -> Result<Vec<Record>, SnapshotError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, key, kind, parent, diff_id, created FROM snapshots ORDER BY key")
            .map_err(self.db_err())?;
        let rows = stmt.query_map([], row_tuple).map_err(self.db_err())?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.record(row.map_err(self.db_err())?)?);
        }
        Ok(out)
    }

    /// Runs `f` in a transaction that commits only if `f` succeeds.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Locked<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.db_err())?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(self.db_err())?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::warn!(error = %rollback, "snapshot metadata rollback failed");
                }
                Err(e)
            }
        }
    }

    fn record(&self, (id, key, kind, parent, diff_id, created): RowTuple) -> Result<Record, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt { path: self.meta.db_path.clone(), reason };
        let kind = Kind::from_str(&kind).map_err(corrupt)?;
        let diff_id = match diff_id {
            Some(s) => Some(DiffId::from_str(&s).map_err(|source| SnapshotError::CorruptDiffId {
                path: self.meta.db_path.clone(),
                key: key.clone(),
                source,
            })?),
            None => None,
        };
        Ok(Record { id, info: Info { key, kind, parent, diff_id, created } })
    }

    /// Adds the `owner` column to a database made before it existed (its rows have none: they
    /// are never taken for a dead process's).
    fn add_owner_column(&self) -> Result<(), SnapshotError> {
        let has: bool = self
            .conn
            .query_row("SELECT count(*) FROM pragma_table_info('snapshots') WHERE name = 'owner'", [], |r| r.get(0))
            .map_err(self.db_err())?;
        if !has {
            self.conn.execute_batch("ALTER TABLE snapshots ADD COLUMN owner TEXT").map_err(self.db_err())?;
        }
        Ok(())
    }

    /// What dead owners and interrupted work left, without touching it: dead owners' temporary
    /// directories, their active snapshots and views, and directories no record owns
    /// (`<dir>/<n>` left by a crash between directory work and its record, `trash-*` left by a
    /// removal). Live owners' things are never listed (see `owner`).
    pub fn residue(&self, live: &mut super::owner::Liveness) -> Result<Vec<Residue>, SnapshotError> {
        let dir = &self.meta.dir;
        let mut residue = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| SnapshotError::io("read directory", dir, e))? {
            let entry = entry.map_err(|e| SnapshotError::io("read directory", dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in &names {
            if super::owner::temp_owner(name).is_some_and(|token| !live.is_alive(token)) {
                residue.push(Residue::TempDir { path: dir.join(name) });
            }
        }
        let owned: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, key, owner FROM snapshots WHERE kind != 'committed' AND owner IS NOT NULL")
                .map_err(self.db_err())?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(self.db_err())?;
            rows.collect::<rusqlite::Result<_>>().map_err(self.db_err())?
        };
        for (id, key, _) in owned.into_iter().filter(|(_, _, owner)| !live.is_alive(owner)) {
            residue.push(Residue::Snapshot { id, key, path: self.meta.snapshot_dir(id) });
        }
        let ids: std::collections::HashSet<String> = self.all()?.into_iter().map(|r| r.id.to_string()).collect();
        for name in names {
            if (name.bytes().all(|b| b.is_ascii_digit()) && !ids.contains(&name)) || name.starts_with("trash-") {
                residue.push(Residue::Orphan { path: dir.join(name) });
            }
        }
        Ok(residue)
    }

    /// Removes the [`Locked::residue`] (whatever is mounted in it detached first), then the
    /// owner files nobody holds. Returns what was removed.
    pub fn reclaim(&mut self) -> Result<Vec<Residue>, SnapshotError> {
        let mut live = super::owner::Liveness::new(&self.meta.dir.clone());
        let residue = self.residue(&mut live)?;
        for r in &residue {
            tracing::info!(path = %r.path().display(), what = r.what(), "removing snapshot residue");
            super::owner::unmount_below(r.path());
            // Record first, then the directory: a crash in between leaves a directory without
            // a record, an orphan the next reclaim removes.
            if let Residue::Snapshot { id, .. } = r {
                self.delete(*id)?;
            }
            super::treecopy::remove_tree(r.path())?;
        }
        live.remove_dead_files();
        Ok(residue)
    }
}

/// Something in a snapshotter's directory that nothing live owns (see [`Locked::residue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residue {
    /// A temporary directory (`<purpose>-<token>-<random>`) of a dead process.
    TempDir { path: PathBuf },
    /// An active snapshot or view of a dead process: its record and its directory.
    Snapshot { id: i64, key: String, path: PathBuf },
    /// A snapshot directory without a record, or a `trash-*` directory of a removal.
    Orphan { path: PathBuf },
}

impl Residue {
    pub fn path(&self) -> &Path {
        match self {
            Residue::TempDir { path } | Residue::Snapshot { path, .. } | Residue::Orphan { path } => path,
        }
    }

    /// What it is, for people.
    pub fn what(&self) -> String {
        match self {
            Residue::TempDir { .. } => "temporary directory of a dead process".to_string(),
            Residue::Snapshot { key, .. } => format!("snapshot {key} of a dead process"),
            Residue::Orphan { .. } => "snapshot directory without a record".to_string(),
        }
    }
}

type RowTuple = (i64, String, String, Option<String>, Option<String>, i64);

fn row_tuple(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowTuple> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead process's temporary directory and active snapshot, a directory without a record
    /// and a removal's trash: `check` lists them and leaves them, `check` with repair removes
    /// them (and only them), and a committed snapshot and a live owner's active one stay.
    #[test]
    fn check_lists_residue_without_touching_it_and_repair_removes_only_residue() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("snapshots/copy");
        let meta = Meta::connect(&dir).unwrap();
        let (live, dead, committed) = {
            let mut locked = meta.lock().unwrap();
            locked
                .transaction(|tx| {
                    let committed = tx.insert("c", Kind::Active, None)?;
                    tx.commit(committed, "layer:c", None)?;
                    let live = tx.insert("live", Kind::Active, Some("layer:c"))?;
                    let dead = tx.insert("dead", Kind::Active, Some("layer:c"))?;
                    tx.conn.execute("UPDATE snapshots SET owner = '1-1' WHERE id = ?1", [dead]).map_err(tx.db_err())?;
                    Ok((live, dead, committed))
                })
                .unwrap()
        };
        for id in [live, dead, committed] {
            std::fs::create_dir_all(meta.snapshot_dir(id)).unwrap();
        }
        for name in ["run-1-1-abc", "99", "trash-7"] {
            std::fs::create_dir(dir.join(name)).unwrap();
        }
        let listed = |c: &crate::snapshot::Check| {
            let mut v: Vec<(String, bool)> = c
                .residue
                .iter()
                .map(|(r, removed)| (r.path().strip_prefix(&dir).unwrap().display().to_string(), *removed))
                .collect();
            v.sort();
            v
        };
        let looked = crate::snapshot::check(root.path(), false).unwrap();
        let expected = |removed| {
            let mut v: Vec<(String, bool)> = [dead.to_string(), "99".into(), "run-1-1-abc".into(), "trash-7".into()]
                .into_iter()
                .map(|n| (n, removed))
                .collect();
            v.sort();
            v
        };
        assert_eq!(listed(&looked), expected(false));
        assert!(looked.damaged.is_empty());
        assert!(dir.join("run-1-1-abc").exists() && meta.snapshot_dir(dead).exists(), "a look changes nothing");
        let dead_what = looked.residue.iter().find(|(r, _)| matches!(r, Residue::Snapshot { .. })).unwrap().0.what();
        assert_eq!(dead_what, "snapshot dead of a dead process");

        let repaired = crate::snapshot::check(root.path(), true).unwrap();
        assert_eq!(listed(&repaired), expected(true));
        assert!(crate::snapshot::check(root.path(), false).unwrap().residue.is_empty());
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.retain(|n| !n.starts_with("metadata.db") && n != "lock" && n != "owners");
        names.sort();
        let mut kept = vec![live.to_string(), committed.to_string()];
        kept.sort();
        assert_eq!(names, kept);
        let keys: Vec<String> = meta.lock().unwrap().all().unwrap().into_iter().map(|r| r.info.key).collect();
        assert_eq!(keys, ["layer:c", "live"]);
    }

    /// A database SQLite finds damaged is reported, not repaired, and nothing else is looked at.
    #[test]
    fn a_damaged_database_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("snapshots/copy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata.db"), vec![7u8; 8192]).unwrap();
        let check = crate::snapshot::check(root.path(), true).unwrap();
        assert_eq!(check.damaged.len(), 1, "{check:?}");
        assert_eq!(check.damaged[0].0, dir.join("metadata.db"));
        assert!(check.damaged[0].1.contains("not a database"), "{check:?}");
        assert!(check.residue.is_empty());
    }
}
