//! `<store root>/cache/cache.db`: cache records and what each slot was last built from.
//!
//! SQLite in WAL mode with a busy timeout, so several slipway processes (CI runners sharing a
//! store) read and write it at once; every write is one statement or one transaction. Everything
//! here is disposable: a lost record is a miss, a lost slot a less precise explanation, so a
//! database that is not one is moved aside and recreated, and a malformed row is dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::files;
use super::key::{CacheKey, KEY_VERSION, KeyInputs, Slot};
use super::miss::{self, MissReason, Remembered};
use super::{CacheError, LayerRecord, Record};
use crate::oci::{Descriptor, DiffId, Digest, MediaType};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS records (
    key        TEXT PRIMARY KEY NOT NULL,
    diff_id    TEXT,
    media_type TEXT,
    digest     TEXT,
    size       INTEGER,
    created    INTEGER NOT NULL,
    CHECK ((diff_id IS NULL) = (digest IS NULL))
);
CREATE TABLE IF NOT EXISTS slots (
    slot         TEXT PRIMARY KEY NOT NULL,
    key_version  INTEGER NOT NULL,
    inputs       BLOB NOT NULL,
    files_digest TEXT,
    files        BLOB,
    updated      INTEGER NOT NULL
);
";

#[cfg(test)]
pub(super) const SCHEMA_V1_FOR_TESTS: &str = SCHEMA_V1;

/// Version 2: when a record was last used (written or hit), for `prune --keep-storage`'s least
/// recently used order; `NULL` in rows of version 1 means "at `created`".
const SCHEMA_V2: &str = "ALTER TABLE records ADD COLUMN used INTEGER;";

/// Version 3: the version of each remote source last fetched (`remote.rs`).
const SCHEMA_V3: &str = super::remote::SCHEMA_V3;

/// The record store; `Send + Sync`, one connection behind a mutex (steps of one build share it).
pub struct CacheDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for CacheDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheDb").field("path", &self.path).finish()
    }
}

impl CacheDb {
    /// Opens (creating its directory, the file and the schema) the database at `path`; a file that
    /// is not a SQLite database is moved aside to `<path>.corrupt-<unix ts>` and replaced.
    pub fn open(path: &Path) -> Result<CacheDb, CacheError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| CacheError::Io { op: "create", path: dir.into(), source })?;
        }
        let conn = match open_conn(path) {
            Err(CacheError::Db { source, .. }) if crate::sqlite::is_corruption(&source) => {
                let aside = move_aside(path)?;
                tracing::warn!(path = %path.display(), moved_to = %aside.display(), error = %source,
                    "cache database is corrupt; starting an empty one");
                open_conn(path)?
            }
            other => other?,
        };
        Ok(CacheDb { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    /// `fsck`'s look at the database at `path` (none there is fine): `None` when SQLite finds it
    /// whole, else what it found; with `repair` a damaged one is moved aside as `open` does (the
    /// cache is derivable: a lost record costs a rebuild of its step, never an image).
    pub fn check(path: &Path, repair: bool) -> Result<Option<DbDamage>, CacheError> {
        if !path.exists() {
            return Ok(None);
        }
        let verdict = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).and_then(|conn| {
            let mut stmt = conn.prepare("PRAGMA quick_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        });
        let reason = match verdict {
            Ok(rows) if rows == ["ok"] => return Ok(None),
            Ok(rows) => rows.join("; "),
            Err(e) if crate::sqlite::is_corruption(&e) => e.to_string(),
            Err(source) => return Err(CacheError::Db { path: path.to_path_buf(), source }),
        };
        let moved_to = if repair { Some(move_aside(path)?) } else { None };
        Ok(Some(DbDamage { reason, moved_to }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, CacheError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|source| CacheError::Db { path: self.path.clone(), source })
    }

    /// The record of `key`, if any. A malformed row is deleted and reported as absent.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<Record>, CacheError> {
        type Row = (Option<String>, Option<String>, Option<String>, Option<i64>, i64);
        let row: Option<Row> = self.with(|c| {
            c.query_row(
                "SELECT diff_id, media_type, digest, size, created FROM records WHERE key = ?1",
                [key.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
        })?;
        let Some((diff_id, media_type, digest, size, created)) = row else { return Ok(None) };
        let layer = match (diff_id, media_type, digest, size) {
            (None, _, None, _) => Some(None),
            (Some(diff_id), Some(media_type), Some(digest), Some(size)) => (|| {
                let diff_id: DiffId = diff_id.parse().ok()?;
                let media_type: MediaType = media_type.parse().ok()?;
                let blob = Descriptor::new(media_type, digest.parse().ok()?, u64::try_from(size).ok()?);
                Some(Some(LayerRecord { diff_id, blob }))
            })(),
            _ => None,
        };
        match layer {
            Some(layer) => {
                // A hit is a use: `prune --keep-storage` removes the least recently used first.
                self.with(|c| {
                    c.execute("UPDATE records SET used = ?2 WHERE key = ?1", params![key.to_string(), unix_now()])
                })?;
                Ok(Some(Record { layer, created }))
            }
            None => {
                tracing::warn!(%key, "dropping a malformed cache record");
                self.forget(key)?;
                Ok(None)
            }
        }
    }

    /// Records what `key` produced. When a record exists already (another process built the same
    /// step at the same time) it is kept: the first writer wins, so a record never changes under
    /// a build that read it.
    pub fn insert(&self, key: &CacheKey, record: &Record) -> Result<(), CacheError> {
        let layer = record.layer.as_ref();
        self.with(|c| {
            c.execute(
                "INSERT INTO records (key, diff_id, media_type, digest, size, created, used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (key) DO NOTHING",
                params![
                    key.to_string(),
                    layer.map(|l| l.diff_id.to_string()),
                    layer.map(|l| l.blob.media_type.to_string()),
                    layer.map(|l| l.blob.digest.to_string()),
                    layer.map(|l| l.blob.size as i64),
                    record.created,
                ],
            )
        })?;
        Ok(())
    }

    /// Removes the record of `key` (its blob is gone); absent is fine.
    pub fn forget(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.with(|c| c.execute("DELETE FROM records WHERE key = ?1", [key.to_string()]))?;
        Ok(())
    }

    /// Every layer blob the records reference, with the key referencing it (the builder registers
    /// them as GC roots `cache:<key>`). Malformed rows are skipped.
    pub fn layer_blobs(&self) -> Result<Vec<(CacheKey, Descriptor)>, CacheError> {
        let rows: Vec<(String, String, String, i64)> = self.with(|c| {
            let mut stmt =
                c.prepare("SELECT key, media_type, digest, size FROM records WHERE digest IS NOT NULL ORDER BY key")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, media_type, digest, size)| {
                let blob = Descriptor::new(media_type.parse().ok()?, digest.parse().ok()?, u64::try_from(size).ok()?);
                Some((key.parse().ok()?, blob))
            })
            .collect())
    }

    /// When each record was last used (Unix seconds: written, or its last hit), by key; rows
    /// whose key does not parse are skipped.
    pub fn last_used(&self) -> Result<Vec<(CacheKey, i64)>, CacheError> {
        let rows: Vec<(String, i64)> = self.with(|c| {
            let mut stmt = c.prepare("SELECT key, COALESCE(used, created) FROM records ORDER BY key")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })?;
        Ok(rows.into_iter().filter_map(|(key, used)| Some((key.parse().ok()?, used))).collect())
    }

    /// Remembers what `slot` was last built from: `inputs`, and for COPY/ADD the source `files`
    /// (path → content digest, any order). Called on every hit and miss after the step succeeded.
    /// The compressed file list is rewritten only when the list changed.
    pub fn remember(
        &self,
        slot: &Slot,
        inputs: &KeyInputs,
        files: Option<&[(String, Digest)]>,
    ) -> Result<(), CacheError> {
        let slot_id = slot.digest().to_string();
        let encoded = files.map(|f| files::encode(&files::sorted(f)));
        let files_digest = encoded.as_deref().map(|e| Digest::of(e).to_string());
        let stored: Option<Option<String>> = self.with(|c| {
            c.query_row("SELECT files_digest FROM slots WHERE slot = ?1", [&slot_id], |r| r.get(0)).optional()
        })?;
        let inputs = inputs.encode();
        let now = unix_now();
        if stored.is_some_and(|d| d == files_digest) {
            self.with(|c| {
                c.execute(
                    "UPDATE slots SET key_version = ?2, inputs = ?3, updated = ?4 WHERE slot = ?1",
                    params![slot_id, KEY_VERSION, inputs, now],
                )
            })?;
            return Ok(());
        }
        let compressed = match &encoded {
            Some(e) => Some(files::compress(e).map_err(|source| CacheError::Compress { slot: slot.digest(), source })?),
            None => None,
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO slots (slot, key_version, inputs, files_digest, files, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (slot) DO UPDATE SET key_version = ?2, inputs = ?3, files_digest = ?4, files = ?5,
                     updated = ?6",
                params![slot_id, KEY_VERSION, inputs, files_digest, compressed, now],
            )
        })?;
        Ok(())
    }

    /// Why `inputs` (and `files`) miss, compared with what `slot` was last built from: the first
    /// differing component decides (the builder adds them most-significant first);
    /// [`MissReason::NoRecord`] when the slot is unknown or nothing differs (the record was pruned).
    pub fn explain(
        &self,
        slot: &Slot,
        inputs: &KeyInputs,
        files: Option<&[(String, Digest)]>,
    ) -> Result<MissReason, CacheError> {
        type Row = (i64, Vec<u8>, Option<Vec<u8>>);
        let row: Option<Row> = self.with(|c| {
            c.query_row(
                "SELECT key_version, inputs, files FROM slots WHERE slot = ?1",
                [slot.digest().to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let remembered = row.and_then(|(version, inputs, compressed)| {
            let Some(inputs) = KeyInputs::decode(&inputs) else {
                tracing::warn!(slot = %slot.digest(), "ignoring malformed remembered cache inputs");
                return None;
            };
            Some((Remembered { key_version: u32::try_from(version).unwrap_or(0), inputs }, compressed))
        });
        let Some((remembered, compressed)) = remembered else { return Ok(MissReason::NoRecord) };
        let files = files.map(files::sorted);
        let reason = miss::explain(Some(&remembered), inputs, files.as_deref(), || {
            compressed.as_deref().and_then(files::decompress)
        });
        self.tell_remote_change(reason)
    }
}

fn open_conn(path: &Path) -> Result<Connection, CacheError> {
    let db_err = |source| CacheError::Db { path: path.to_path_buf(), source };
    let mut conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
    crate::sqlite::enable_wal(&conn, Duration::from_secs(30)).map_err(db_err)?;
    // Disposable data: NORMAL may lose the last transactions on power loss, never consistency.
    conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(db_err)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(CacheError::SchemaTooNew { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
    }
    if version < SCHEMA_VERSION {
        // Version 1's tables are created when missing; version 2 only adds a column to them;
        // version 3 adds a table.
        let older = if version < 2 { format!("{SCHEMA_V1} {SCHEMA_V2}") } else { String::new() };
        tx.execute_batch(&format!("{older} {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION};")).map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(conn)
}

/// A cache database SQLite does not find whole ([`CacheDb::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDamage {
    /// What SQLite found.
    pub reason: String,
    /// Where `repair` moved it.
    pub moved_to: Option<PathBuf>,
}

/// Moves a damaged database to `<path>.corrupt-<unix ts>` (its WAL and shared memory go).
fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), unix_now()));
    fs::rename(path, &aside).map_err(|source| CacheError::Io { op: "move aside", path: path.into(), source })?;
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(aside)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
