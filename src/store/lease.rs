//! Leases: pins that keep blobs alive while a build, pull or push has not yet written the record
//! (tag, cache entry) that will reference them (N5, containerd's lease model).
//!
//! A lease is a row in `leases` plus its digests in `lease_blobs`. Take it BEFORE the first write;
//! [`Ingest::commit`](super::Ingest::commit) records the blob in it under the shared store lock, in
//! the same critical section as the rename, so GC (exclusive lock) can never sweep a blob between
//! its commit and its pin. Dropping the [`Lease`] deletes the row. A live lease also holds an OFD
//! lock on byte `id` of `<root>/lock` (`lock::LeasePin`): a lease whose holder died (kill -9)
//! pins nothing and prune deletes it, so a crashed build never keeps blobs alive; a lease row
//! also expires after [`LEASE_TTL_SECS`] whatever its pin says. Knows nothing of what the pinned
//! blobs contain.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::db::{parse_digest_row, with_db};
use super::lock::{LeasePin, LeaseProbe, StoreLock};
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
    /// Dropped after the row is deleted (fields drop after `Drop::drop`).
    _pin: LeasePin,
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
    /// Whether its holder is alive (holds the lease's pin).
    pub alive: bool,
}

impl Store {
    /// Takes a new lease labelled `label` (for humans: `build <ctx>`, `pull <ref>`).
    pub fn lease(&self, label: &str) -> Result<Lease, StoreError> {
        let now = unix_now();
        let pid = i64::from(std::process::id());
        // Row and pin appear together under the shared lock: prune (exclusive) never sees a row
        // without its pin and mistakes it for a dead holder's.
        let _lock = StoreLock::shared(&self.inner.paths.lock)?;
        let id = self.with_db(|db| {
            db.execute(
                "INSERT INTO leases (label, pid, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![label, pid, now, now.saturating_add(LEASE_TTL_SECS)],
            )?;
            Ok(db.last_insert_rowid())
        })?;
        let pin = match LeasePin::take(&self.inner.paths.lock, id) {
            Ok(pin) => pin,
            Err(e) => {
                let _ = self.with_db(|db| db.execute("DELETE FROM leases WHERE id = ?1", [id]));
                return Err(e);
            }
        };
        tracing::debug!(id, label, "lease taken");
        Ok(Lease { inner: Arc::clone(&self.inner), id, label: label.to_string(), _pin: pin })
    }

    /// The leases in the database, expired and dead ones included.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        let probe = LeaseProbe::open(&self.inner.paths.lock)?;
        let mut leases = self.with_db(|db| {
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
                    alive: false,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<LeaseInfo>>>()
        })?;
        for lease in &mut leases {
            lease.alive = probe.is_held(lease.id)?;
        }
        Ok(leases)
    }

    /// Digests pinned by leases that are alive and have not expired at `now`.
    pub(super) fn leased_digests(&self, now: i64) -> Result<BTreeSet<Digest>, StoreError> {
        let probe = LeaseProbe::open(&self.inner.paths.lock)?;
        let rows: Vec<(i64, String)> = self.with_db(|db| {
            let mut stmt = db.prepare(
                "SELECT b.lease_id, b.digest FROM lease_blobs b JOIN leases l ON l.id = b.lease_id
                 WHERE l.expires_at > ?1",
            )?;
            let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut live = std::collections::BTreeMap::new();
        let mut out = BTreeSet::new();
        for (id, digest) in rows {
            let alive = match live.get(&id) {
                Some(alive) => *alive,
                None => *live.entry(id).or_insert(probe.is_held(id)?),
            };
            if alive {
                out.extend(parse_digest_row(&digest));
            }
        }
        Ok(out)
    }

    /// Deletes leases expired at `now` or whose holder is gone; returns how many. Called under
    /// the exclusive store lock (lease creation holds the shared one).
    pub(super) fn expire_leases(&self, now: i64) -> Result<usize, StoreError> {
        let probe = LeaseProbe::open(&self.inner.paths.lock)?;
        let ids: Vec<(i64, i64)> = self.with_db(|db| {
            let mut stmt = db.prepare("SELECT id, expires_at FROM leases")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut dead = Vec::new();
        for (id, expires_at) in ids {
            if expires_at <= now || !probe.is_held(id)? {
                dead.push(id);
            }
        }
        self.with_db(|db| {
            let tx = db.transaction()?;
            {
                let mut stmt = tx.prepare("DELETE FROM leases WHERE id = ?1")?;
                for id in &dead {
                    stmt.execute([id])?;
                }
            }
            tx.commit()
        })?;
        if !dead.is_empty() {
            tracing::info!(count = dead.len(), "expired or abandoned leases removed");
        }
        Ok(dead.len())
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
        assert!(infos[0].alive);
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
        drop(lease);
    }

    #[test]
    fn a_lease_whose_holder_is_gone_pins_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let live = s.lease("live").unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        live.add(&a).unwrap();
        // What a kill -9 leaves: the row and its blobs, without the pin.
        s.with_db(|db| {
            db.execute(
                "INSERT INTO leases (label, pid, created_at, expires_at) VALUES ('crashed', 1, 0, ?1)",
                [unix_now() + 100],
            )?;
            let id = db.last_insert_rowid();
            record(db, id, &b)
        })
        .unwrap();
        let pinned = s.leased_digests(unix_now()).unwrap();
        assert!(pinned.contains(&a) && !pinned.contains(&b), "{pinned:?}");
        assert_eq!(s.leases().unwrap().iter().map(|l| l.alive).collect::<Vec<_>>(), vec![true, false]);
        assert_eq!(s.expire_leases(unix_now()).unwrap(), 1);
        assert_eq!(s.leases().unwrap().len(), 1);
    }
}
