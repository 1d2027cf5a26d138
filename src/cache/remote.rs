//! What each remote source (an `ADD <url>`) was when last fetched: its content digest and the
//! validators (`ETag`, `Last-Modified`) a conditional request sends, so an unchanged resource
//! is a hit without a download; and the version before, so a miss names what changed
//! (`https://… changed (etag "a" → "b")`).
//!
//! Sources are named as the builder shows them (a URL without its password). Like everything
//! in `cache.db` a row is disposable: a lost one costs a download.

use rusqlite::{OptionalExtension, params};

use super::db::CacheDb;
use super::{CacheError, MissReason};
use crate::oci::Digest;

pub(super) const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS remote_sources (
    source             TEXT PRIMARY KEY NOT NULL,
    digest             TEXT NOT NULL,
    etag               TEXT,
    last_modified      TEXT,
    prev_digest        TEXT,
    prev_etag          TEXT,
    prev_last_modified TEXT,
    name               TEXT,
    updated            INTEGER NOT NULL
);
";

/// One version of a remote source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVersion {
    /// The digest of its content.
    pub digest: Digest,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The file name the response gave (`Content-Disposition`), if any.
    pub name: Option<String>,
}

impl RemoteVersion {
    /// How the version shows in a miss: its `ETag`, else its `Last-Modified`, else its digest.
    fn shown(&self, other: &RemoteVersion) -> String {
        match (&self.etag, &other.etag, &self.last_modified, &other.last_modified) {
            (Some(e), Some(_), _, _) => format!("etag {e}"),
            (_, _, Some(l), Some(_)) => format!("last-modified {l}"),
            _ => format!("sha256:{}", self.digest.short()),
        }
    }
}

impl CacheDb {
    /// The version of `source` last fetched, if known (a malformed row reads as unknown).
    pub fn remote_version(&self, source: &str) -> Result<Option<RemoteVersion>, CacheError> {
        type Row = (String, Option<String>, Option<String>, Option<String>);
        let row: Option<Row> = self.with(|c| {
            c.query_row(
                "SELECT digest, etag, last_modified, name FROM remote_sources WHERE source = ?1",
                [source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        Ok(row.and_then(|(digest, etag, last_modified, name)| {
            Some(RemoteVersion { digest: digest.parse().ok()?, etag, last_modified, name })
        }))
    }

    /// Records `version` as what `source` is now; the version it replaces, when its content
    /// differs, is kept to explain the next miss.
    pub fn remember_remote(&self, source: &str, version: &RemoteVersion) -> Result<(), CacheError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO remote_sources (source, digest, etag, last_modified, name, updated)
                 VALUES (?1, ?2, ?3, ?4, ?6, ?5)
                 ON CONFLICT (source) DO UPDATE SET
                     prev_digest = CASE WHEN digest = ?2 THEN prev_digest ELSE digest END,
                     prev_etag = CASE WHEN digest = ?2 THEN prev_etag ELSE etag END,
                     prev_last_modified = CASE WHEN digest = ?2 THEN prev_last_modified ELSE last_modified END,
                     digest = ?2, etag = ?3, last_modified = ?4, name = ?6, updated = ?5",
                params![
                    source,
                    version.digest.to_string(),
                    version.etag,
                    version.last_modified,
                    unix_now(),
                    version.name
                ],
            )
        })?;
        Ok(())
    }

    /// A [`MissReason::SourceChanged`] between two digests of a URL, told with the validators
    /// of both versions when the table knows them.
    pub(super) fn tell_remote_change(&self, reason: MissReason) -> Result<MissReason, CacheError> {
        let MissReason::SourceChanged { source, old, new } = &reason else { return Ok(reason) };
        let (Ok(old_digest), Ok(new_digest)) = (old.parse::<Digest>(), new.parse::<Digest>()) else {
            return Ok(reason);
        };
        type Row = (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
        let row: Option<Row> = self.with(|c| {
            c.query_row(
                "SELECT digest, etag, last_modified, prev_digest, prev_etag, prev_last_modified
                 FROM remote_sources WHERE source = ?1",
                [source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
        })?;
        let Some((digest, etag, last_modified, Some(prev_digest), prev_etag, prev_last_modified)) = row else {
            return Ok(reason);
        };
        if digest != new_digest.to_string() || prev_digest != old_digest.to_string() {
            return Ok(reason);
        }
        let now = RemoteVersion { digest: new_digest, etag, last_modified, name: None };
        let before =
            RemoteVersion { digest: old_digest, etag: prev_etag, last_modified: prev_last_modified, name: None };
        Ok(MissReason::SourceChanged { source: source.clone(), old: before.shown(&now), new: now.shown(&before) })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{KeyInputs, Slot};

    #[test]
    fn versions_are_remembered_and_a_change_is_told_by_its_etags() {
        let tmp = tempfile::tempdir().unwrap();
        let db = CacheDb::open(&tmp.path().join("cache.db")).unwrap();
        let url = "http://127.0.0.1:1/f";
        assert_eq!(db.remote_version(url).unwrap(), None);
        let v1 =
            RemoteVersion { digest: Digest::of(b"1"), etag: Some("\"a\"".into()), last_modified: None, name: None };
        db.remember_remote(url, &v1).unwrap();
        assert_eq!(db.remote_version(url).unwrap(), Some(v1.clone()));
        let slot = Slot::new("s");
        let inputs = |d: &Digest| {
            let mut i = KeyInputs::default();
            i.add("instruction", "ADD x /").add(format!("url:{url}"), d.to_string());
            i
        };
        db.remember(&slot, &inputs(&v1.digest), None).unwrap();
        let v2 =
            RemoteVersion { digest: Digest::of(b"2"), etag: Some("\"b\"".into()), last_modified: None, name: None };
        db.remember_remote(url, &v2).unwrap();
        // The same content again keeps the previous version for the explanation.
        db.remember_remote(url, &v2).unwrap();
        let reason = db.explain(&slot, &inputs(&v2.digest), None).unwrap();
        assert_eq!(reason.to_string(), format!("{url} changed (etag \"a\" → etag \"b\")"));
        let v3 = RemoteVersion { digest: Digest::of(b"3"), etag: None, last_modified: None, name: None };
        db.remember_remote(url, &v3).unwrap();
        let reason = db.explain(&slot, &inputs(&v3.digest), None).unwrap().to_string();
        assert!(reason.starts_with(&format!("{url} changed (sha256:")), "{reason}");
    }
}
