//! Leases: pins that keep blobs alive while a build, pull or push has not yet written the record
//! (tag, cache entry) that will reference them (N5, containerd's lease model).
//!
//! A lease is a row in `leases` plus its digests in `lease_blobs`. Take it BEFORE the first write;
//! [`Ingest::commit`](super::Ingest::commit) records the blob in it under the shared store lock, in
//! the same critical section as the rename, so GC (exclusive lock) can never sweep a blob between
//! its commit and its pin. Dropping the [`Lease`] deletes the row; a crashed process leaves a row
//! that expires after [`LEASE_TTL_SECS`]. Knows nothing of what the pinned blobs contain.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::db::{parse_digest_row, with_db};
use super::lock::StoreLock;
use super::{Inner, Store, StoreError, unix_now};
use crate::oci::Digest;

/// How long a lease lives unless dropped first: a crashed process cannot pin forever.
pub const LEASE_TTL_SECS: i64 = 24 * 60 * 60;

/// A live pin on a set of blobs; released on drop.
#[derive(Debug)]
pub struct Lease {
    inner: Arc<Inner>,
    id: i64,
    label: String,
}

/// A lease as listed by [`Store::leases`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub id: i64,
    pub label: String,
    pub pid: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub blobs: u64,
}

impl Store {
    /// Takes a new lease labelled `label` (for humans: `build <ctx>`, `pull <ref>`).
    pub fn lease(&self, label: &str) -> Result<Lease, StoreError> {
        let now = unix_now();
        let pid = i64::from(std::process::id());
        let id = self.with_db(|db| {
            db.execute(
                "INSERT INTO leases (label, pid, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![label, pid, now, now.saturating_add(LEASE_TTL_SECS)],
            )?;
            Ok(db.last_insert_rowid())
        })?;
        tracing::debug!(id, label, "lease taken");
        Ok(Lease { inner: Arc::clone(&self.inner), id, label: label.to_string() })
    }

    /// The leases in the database, expired ones included.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        self.with_db(|db| {
            let mut stmt = db.prepare(
                "SELECT l.id, l.label, l.pid, l.created_at, l.expires_at,
                        (SELECT count(*) FROM lease_blobs b WHERE b.lease_id = l.id)
                 FROM leases l ORDER BY l.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LeaseInfo {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    pid: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    blobs: r.get::<_, i64>(5)?.try_into().unwrap_or(0),
                })
            })?;
            rows.collect()
        })
    }

    /// Digests pinned by leases that have not expired at `now`.
    pub(super) fn leased_digests(&self, now: i64) -> Result<BTreeSet<Digest>, StoreError> {
        let rows: Vec<String> = self.with_db(|db| {
            let mut stmt = db.prepare(
                "SELECT DISTINCT b.digest FROM lease_blobs b JOIN leases l ON l.id = b.lease_id WHERE l.expires_at > ?1",
            )?;
            let rows = stmt.query_map([now], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(rows.iter().filter_map(|d| parse_digest_row(d)).collect())
    }

    /// Deletes leases expired at `now`; returns how many.
    pub(super) fn expire_leases(&self, now: i64) -> Result<usize, StoreError> {
        let n = self.with_db(|db| db.execute("DELETE FROM leases WHERE expires_at <= ?1", [now]))?;
        if n > 0 {
            tracing::info!(count = n, "expired leases removed");
        }
        Ok(n)
    }
}

impl Lease {
    /// The lease's id (its row in the database).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Pins `digest`, whether or not the blob exists yet. Returns whether it exists now; when it
    /// does, it stays until the lease ends (the check and the pin happen under the shared store
    /// lock, so a concurrent GC either ran before, and the caller sees `false`, or runs after).
    pub fn add(&self, digest: &Digest) -> Result<bool, StoreError> {
        let _lock = StoreLock::shared(&self.inner.paths.lock)?;
        self.record(digest)?;
        Ok(self.inner.paths.blob(digest).exists())
    }

    /// Records `digest` in the lease; the caller holds the shared store lock.
    pub(super) fn record(&self, digest: &Digest) -> Result<(), StoreError> {
        with_db(&self.inner, |db| record(db, self.id, digest))
    }
}

fn record(db: &Connection, lease_id: i64, digest: &Digest) -> rusqlite::Result<()> {
    db.execute(
        "INSERT OR IGNORE INTO lease_blobs (lease_id, digest) VALUES (?1, ?2)",
        params![lease_id, digest.to_string()],
    )?;
    Ok(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        let id = self.id;
        if let Err(e) = with_db(&self.inner, |db| db.execute("DELETE FROM leases WHERE id = ?1", [id])) {
            tracing::warn!(id, error = %e, "could not release lease; it expires on its own");
        } else {
            tracing::debug!(id, label = %self.label, "lease released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lists_pins_and_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let lease = s.lease("test").unwrap();
        let d = Digest::of(b"not yet written");
        assert!(!lease.add(&d).unwrap());
        assert!(s.leased_digests(unix_now()).unwrap().contains(&d));
        let infos = s.leases().unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].blobs, 1);
        assert_eq!(infos[0].label, "test");
        drop(lease);
        assert!(s.leases().unwrap().is_empty());
        assert!(s.leased_digests(unix_now()).unwrap().is_empty());
    }

    #[test]
    fn expired_leases_pin_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let lease = s.lease("crashed").unwrap();
        let d = Digest::of(b"x");
        lease.add(&d).unwrap();
        let later = unix_now() + LEASE_TTL_SECS + 1;
        assert!(s.leased_digests(later).unwrap().is_empty());
        assert_eq!(s.expire_leases(later).unwrap(), 1);
        assert!(s.leases().unwrap().is_empty());
    }
}
