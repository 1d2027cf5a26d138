//! `<root>/metadata.db`: the SQLite metadata database (WAL mode, schema in `user_version`).
//!
//! Holds what is derivable or disposable: layer variants (a DiffID's compressed blobs), leases
//! and GC roots registered by other modules (the build cache as `cache:<key>`). It never holds
//! tags (they live in `index.json`), so a corrupt database is moved aside to
//! `metadata.db.corrupt-<unix-ts>` and recreated, losing speed but no image (catalogue E7, N7).
//! Knows nothing of blobs on disk or of the lock; callers hold the lock they need.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::{Store, StoreError, unix_now};
use crate::oci::Descriptor;
use crate::oci::{DiffId, Digest, MediaType};

/// The schema version this code writes.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS layer_blobs (
    diff_id    TEXT NOT NULL,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    PRIMARY KEY (diff_id, digest)
);
CREATE INDEX IF NOT EXISTS layer_blobs_digest ON layer_blobs (digest);
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    label      TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_blobs (
    lease_id INTEGER NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    digest   TEXT NOT NULL,
    PRIMARY KEY (lease_id, digest)
);
CREATE TABLE IF NOT EXISTS gc_roots (
    owner  TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (owner, digest)
);
";

/// Version 2: registry upload sessions and blob sources (`uploads`; derivable, losable).
const SCHEMA_V2: &str = super::uploads::SCHEMA;

/// Opens an existing, healthy database without repairing anything (safe under the shared store
/// lock); `None` when it is absent, empty or corrupt and [`open`] must run under the exclusive one.
pub(super) fn open_existing(path: &Path) -> Result<Option<Connection>, StoreError> {
    if !fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return Ok(None);
    }
    match open_checked(path) {
        Ok(conn) => Ok(Some(conn)),
        Err(StoreError::Db { source, .. }) if crate::sqlite::is_corruption(&source) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens (creating or migrating) the database; a corrupt or zero-length file is moved aside.
/// Called under the exclusive store lock, so no other process is mid-creation.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    if is_zero_length(path) {
        move_aside(path, "zero-length")?;
        return open_checked(path);
    }
    match open_checked(path) {
        Ok(conn) => Ok(conn),
        Err(StoreError::Db { source, .. }) if crate::sqlite::is_corruption(&source) => {
            move_aside(path, &source.to_string())?;
            open_checked(path)
        }
        Err(e) => Err(e),
    }
}

fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    let db_err = |source| StoreError::Db { path: path.to_path_buf(), source };
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(db_err)?;
    if check != "ok" {
        return Err(db_err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(check),
        )));
    }
    crate::sqlite::enable_wal(&conn, std::time::Duration::from_secs(30)).map_err(db_err)?;
    conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;").map_err(db_err)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!("BEGIN; {SCHEMA_V1} {SCHEMA_V2} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
            .map_err(db_err)?;
    }
    Ok(conn)
}

fn is_zero_length(path: &Path) -> bool {
    let len = |p: &Path| fs::metadata(p).map(|m| m.len()).ok();
    len(path) == Some(0) && len(&sidecar(path, "-wal")).unwrap_or(0) == 0
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Moves the database (and its WAL and shm files) to `<name>.corrupt-<ts>`; warns once.
fn move_aside(path: &Path, why: &str) -> Result<(), StoreError> {
    let ts = unix_now();
    let mut aside = sidecar(path, &format!(".corrupt-{ts}"));
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        aside = sidecar(path, &format!(".corrupt-{ts}.{n}"));
        n += 1;
    }
    fs::rename(path, &aside).map_err(|e| StoreError::io("move aside", path, e))?;
    for suffix in ["-wal", "-shm"] {
        let from = sidecar(path, suffix);
        if from.exists() {
            let to = sidecar(&aside, suffix);
            fs::rename(&from, &to).map_err(|e| StoreError::io("move aside", &from, e))?;
        }
    }
    tracing::warn!(
        path = %path.display(),
        moved_to = %aside.display(),
        reason = why,
        "metadata database was corrupt: moved it aside and started a new one (tags are kept in index.json; cached layer variants are forgotten)"
    );
    Ok(())
}

impl Store {
    /// Runs `f` on the database connection.
    pub(super) fn with_db<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        with_db(&self.inner, f)
    }

    /// Records that `blob` is a (compressed) variant of the layer whose uncompressed digest is
    /// `diff_id`. The uncompressed blob itself is stored under the DiffID's digest.
    pub fn record_layer_blob(&self, diff_id: DiffId, blob: &Descriptor) -> Result<(), StoreError> {
        self.with_db(|db| {
            db.execute(
                "INSERT OR REPLACE INTO layer_blobs (diff_id, digest, media_type, size) VALUES (?1, ?2, ?3, ?4)",
                params![diff_id.to_string(), blob.digest.to_string(), blob.media_type.as_str(), blob.size as i64],
            )
            .map(|_| ())
        })
    }

    /// The recorded variants of layer `diff_id`.
    pub fn layer_blobs(&self, diff_id: DiffId) -> Result<Vec<Descriptor>, StoreError> {
        let rows: Vec<(String, String, i64)> = self.with_db(|db| {
            let mut stmt =
                db.prepare("SELECT digest, media_type, size FROM layer_blobs WHERE diff_id = ?1 ORDER BY digest")?;
            let rows = stmt.query_map([diff_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        let mut out = Vec::new();
        for (digest, media_type, size) in rows {
            match (Digest::from_str(&digest), MediaType::from_str(&media_type)) {
                (Ok(d), Ok(m)) => out.push(Descriptor::new(m, d, u64::try_from(size).unwrap_or(0))),
                _ => {
                    tracing::warn!(%diff_id, digest, media_type, "skipping malformed layer variant row")
                }
            }
        }
        Ok(out)
    }

    /// Registers `digest` as a GC root owned by `owner` (e.g. `cache:<key>`).
    pub fn add_root(&self, owner: &str, digest: &Digest) -> Result<(), StoreError> {
        self.with_db(|db| {
            db.execute(
                "INSERT OR IGNORE INTO gc_roots (owner, digest) VALUES (?1, ?2)",
                params![owner, digest.to_string()],
            )
            .map(|_| ())
        })
    }

    /// Drops every GC root whose owner starts with `owner_prefix`; returns how many went.
    pub fn remove_roots(&self, owner_prefix: &str) -> Result<usize, StoreError> {
        self.with_db(|db| {
            db.execute("DELETE FROM gc_roots WHERE substr(owner, 1, length(?1)) = ?1", params![owner_prefix])
        })
    }

    /// The GC roots whose owner starts with `owner_prefix` (`""` = all), as (owner, digest).
    pub fn roots(&self, owner_prefix: &str) -> Result<Vec<(String, Digest)>, StoreError> {
        let rows: Vec<(String, String)> = self.with_db(|db| {
            let mut stmt = db.prepare(
                "SELECT owner, digest FROM gc_roots WHERE substr(owner, 1, length(?1)) = ?1 ORDER BY owner, digest",
            )?;
            let rows = stmt.query_map(params![owner_prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(rows.into_iter().filter_map(|(o, d)| parse_digest_row(&d).map(|d| (o, d))).collect())
    }

    /// Every `(diff_id digest, variant digest)` link.
    pub(super) fn layer_links(&self) -> Result<Vec<(Digest, Digest)>, StoreError> {
        let rows: Vec<(String, String)> = self.with_db(|db| {
            let mut stmt = db.prepare("SELECT diff_id, digest FROM layer_blobs")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(rows.into_iter().filter_map(|(a, b)| Some((parse_digest_row(&a)?, parse_digest_row(&b)?))).collect())
    }

    /// Forgets layer variant rows that name a removed blob.
    pub(super) fn forget_layer_blobs(&self, removed: &[Digest]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.transaction()?;
            {
                let mut stmt = tx.prepare("DELETE FROM layer_blobs WHERE digest = ?1 OR diff_id = ?1")?;
                for d in removed {
                    stmt.execute([d.to_string()])?;
                }
            }
            tx.commit()
        })
    }
}

/// Runs `f` on the connection of `inner` (used by leases, which outlive no store).
pub(super) fn with_db<T>(
    inner: &super::Inner,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut conn = inner.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut conn).map_err(|source| StoreError::Db { path: inner.paths.db.clone(), source })
}

/// Parses a digest column, warning on a malformed row instead of failing the whole query.
pub(super) fn parse_digest_row(s: &str) -> Option<Digest> {
    match Digest::from_str(s) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "skipping malformed digest in metadata database");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    use crate::store::testutil::store;

    #[test]
    fn layer_variants_round_trip() {
        let (_d, s) = store();
        let diff = DiffId(Digest::of(b"tar"));
        let gz = Descriptor::new(MediaType::OciLayerGzip, Digest::of(b"gz"), 2);
        s.record_layer_blob(diff, &gz).unwrap();
        s.record_layer_blob(diff, &gz).unwrap();
        assert_eq!(s.layer_blobs(diff).unwrap(), vec![gz]);
        assert!(s.layer_blobs(DiffId(Digest::of(b"other"))).unwrap().is_empty());
    }

    #[test]
    fn roots_are_removed_by_prefix_only() {
        let (_d, s) = store();
        s.add_root("cache:a", &Digest::of(b"1")).unwrap();
        s.add_root("cache:b", &Digest::of(b"2")).unwrap();
        s.add_root("cach%", &Digest::of(b"3")).unwrap();
        assert_eq!(s.remove_roots("cache:").unwrap(), 2);
        assert_eq!(s.roots("").unwrap().len(), 1);
    }

    #[test]
    fn corrupt_and_empty_databases_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        drop(Store::open(&root).unwrap());
        for garbage in [&b""[..], &[0x5a; 8192][..]] {
            for f in ["metadata.db", "metadata.db-wal", "metadata.db-shm"] {
                let _ = fs::remove_file(root.join(f));
            }
            fs::write(root.join("metadata.db"), garbage).unwrap();
            let s = Store::open(&root).unwrap();
            s.add_root("x", &Digest::of(b"1")).unwrap();
        }
        let aside = fs::read_dir(&root)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("metadata.db.corrupt-"))
            .count();
        assert_eq!(aside, 2, "each damaged database is kept aside");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        drop(Store::open(&root).unwrap());
        let c = Connection::open(root.join("metadata.db")).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(c);
        assert!(matches!(Store::open(&root), Err(StoreError::SchemaTooNew { found: 99, .. })));
    }
}
