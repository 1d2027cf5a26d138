//! Remote bookkeeping in `metadata.db` for the registry client: upload sessions in progress and
//! the repositories a blob is known to exist in.
//!
//! The store treats registries, repositories and URLs as opaque text; it never talks to them.
//! Both tables are hints in the sense of the database invariant: losing them costs a re-upload
//! (no resume, no cross-repository mount), never an image. A session is only a promise that the
//! registry *may* still hold the bytes; the registry's own upload status decides.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, unix_now};
use crate::oci::Digest;

/// Schema of the tables, created by the version-2 migration in `db`.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upload_sessions (
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    url        TEXT NOT NULL,
    confirmed  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (registry, repository, digest)
);
CREATE TABLE IF NOT EXISTS blob_sources (
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
";

/// Sessions untouched for longer than this are ignored: registries purge abandoned uploads
/// (distribution after 7 days by default).
pub const UPLOAD_SESSION_MAX_AGE_SECS: i64 = 6 * 24 * 3600;

/// An upload in progress: where its bytes go and how many the registry confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// The registry as in references (`host[:port]`).
    pub registry: String,
    /// The repository the blob is uploaded to.
    pub repository: String,
    /// The blob being uploaded.
    pub digest: Digest,
    /// The upload URL of the last confirmed request (it carries the registry's state).
    pub url: String,
    /// Bytes the registry confirmed (the next `PATCH` starts here).
    pub confirmed: u64,
}

impl Store {
    /// Remembers (or moves forward) an upload session; sessions too old to resume are dropped.
    pub fn record_upload(&self, session: &UploadSession) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.transaction()?;
            tx.execute(
                "DELETE FROM upload_sessions WHERE updated_at < ?1",
                params![unix_now() - UPLOAD_SESSION_MAX_AGE_SECS],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO upload_sessions (registry, repository, digest, url, confirmed, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    session.registry,
                    session.repository,
                    session.digest.to_string(),
                    session.url,
                    i64::try_from(session.confirmed).unwrap_or(i64::MAX),
                    unix_now()
                ],
            )?;
            tx.commit()
        })
    }

    /// The recent upload session of `digest` to `registry`/`repository`, if one is remembered.
    pub fn upload_session(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<UploadSession>, StoreError> {
        let row: Option<(String, i64)> = self.with_db(|db| {
            db.query_row(
                "SELECT url, confirmed FROM upload_sessions
                 WHERE registry = ?1 AND repository = ?2 AND digest = ?3 AND updated_at >= ?4",
                params![registry, repository, digest.to_string(), unix_now() - UPLOAD_SESSION_MAX_AGE_SECS],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(row.map(|(url, confirmed)| UploadSession {
            registry: registry.to_string(),
            repository: repository.to_string(),
            digest: *digest,
            url,
            confirmed: u64::try_from(confirmed).unwrap_or(0),
        }))
    }

    /// Forgets the upload session of `digest` to `registry`/`repository` (done, or dead).
    pub fn forget_upload(&self, registry: &str, repository: &str, digest: &Digest) -> Result<(), StoreError> {
        self.with_db(|db| {
            db.execute(
                "DELETE FROM upload_sessions WHERE registry = ?1 AND repository = ?2 AND digest = ?3",
                params![registry, repository, digest.to_string()],
            )
            .map(|_| ())
        })
    }

    /// Remembers that `registry`/`repository` holds the blobs `digests` (pulled from or pushed
    /// to it).
    pub fn record_blob_sources(&self, registry: &str, repository: &str, digests: &[Digest]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR REPLACE INTO blob_sources (registry, repository, digest, seen_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                let now = unix_now();
                for digest in digests {
                    stmt.execute(params![registry, repository, digest.to_string(), now])?;
                }
            }
            tx.commit()
        })
    }

    /// The repositories of `registry` known to hold `digest`, most recently seen first.
    pub fn blob_sources(&self, registry: &str, digest: &Digest) -> Result<Vec<String>, StoreError> {
        self.with_db(|db| {
            let mut stmt = db.prepare(
                "SELECT repository FROM blob_sources WHERE registry = ?1 AND digest = ?2
                 ORDER BY seen_at DESC, repository",
            )?;
            let rows = stmt.query_map(params![registry, digest.to_string()], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Forgets that `registry`/`repository` holds `digest` (a mount from it failed).
    pub fn forget_blob_source(&self, registry: &str, repository: &str, digest: &Digest) -> Result<(), StoreError> {
        self.with_db(|db| {
            db.execute(
                "DELETE FROM blob_sources WHERE registry = ?1 AND repository = ?2 AND digest = ?3",
                params![registry, repository, digest.to_string()],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testutil::store;

    #[test]
    fn upload_sessions_move_forward_and_are_forgotten() {
        let (_d, s) = store();
        let digest = Digest::of(b"layer");
        assert_eq!(s.upload_session("reg:5000", "a/b", &digest).unwrap(), None);
        let mut session = UploadSession {
            registry: "reg:5000".into(),
            repository: "a/b".into(),
            digest,
            url: "http://reg:5000/v2/a/b/blobs/uploads/u?_state=1".into(),
            confirmed: 0,
        };
        s.record_upload(&session).unwrap();
        session.url = "http://reg:5000/v2/a/b/blobs/uploads/u?_state=2".into();
        session.confirmed = 1 << 20;
        s.record_upload(&session).unwrap();
        assert_eq!(s.upload_session("reg:5000", "a/b", &digest).unwrap(), Some(session.clone()));
        assert_eq!(s.upload_session("reg:5000", "a/c", &digest).unwrap(), None);
        s.forget_upload("reg:5000", "a/b", &digest).unwrap();
        assert_eq!(s.upload_session("reg:5000", "a/b", &digest).unwrap(), None);
    }

    #[test]
    fn old_sessions_are_ignored() {
        let (_d, s) = store();
        let digest = Digest::of(b"layer");
        let session = UploadSession {
            registry: "r".into(),
            repository: "x".into(),
            digest,
            url: "http://r/u".into(),
            confirmed: 5,
        };
        s.record_upload(&session).unwrap();
        s.with_db(|db| db.execute("UPDATE upload_sessions SET updated_at = 0", [])).unwrap();
        assert_eq!(s.upload_session("r", "x", &digest).unwrap(), None);
    }

    #[test]
    fn blob_sources_are_per_registry_and_forgettable() {
        let (_d, s) = store();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        s.record_blob_sources("reg", "one", &[a, b]).unwrap();
        s.record_blob_sources("reg", "two", &[a]).unwrap();
        s.record_blob_sources("other", "three", &[a]).unwrap();
        let mut repos = s.blob_sources("reg", &a).unwrap();
        repos.sort();
        assert_eq!(repos, ["one", "two"]);
        assert_eq!(s.blob_sources("reg", &b).unwrap(), ["one"]);
        s.forget_blob_source("reg", "one", &a).unwrap();
        assert_eq!(s.blob_sources("reg", &a).unwrap(), ["two"]);
    }
}
