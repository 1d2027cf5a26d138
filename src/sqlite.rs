//! The SQLite details every database of slipway shares (store metadata, snapshot records,
//! build cache, context stat cache): switching a connection to WAL while other processes open
//! the same file; and telling a damaged file from other errors ([`is_corruption`]).
//!
//! Changing the journal mode needs an exclusive lock, and SQLite does not call the busy handler
//! for it (a connection holding a shared lock could deadlock), so several processes opening a new
//! database at once (CI runners sharing a store) get `SQLITE_BUSY` at once. [`enable_wal`] retries
//! until the busy timeout's deadline instead.

use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// Sets `journal_mode=WAL` on `conn`, retrying while another connection holds the lock, for at
/// most `timeout`.
pub fn enable_wal(conn: &Connection, timeout: Duration) -> rusqlite::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `err` says the file is not a database or a damaged one (the databases that are
/// derivable move such a file aside).
pub fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_connections_switch_one_new_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let conn = Connection::open(&path).unwrap();
                    conn.busy_timeout(Duration::from_secs(10)).unwrap();
                    enable_wal(&conn, Duration::from_secs(10)).unwrap();
                    conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1);").unwrap();
                });
            }
        });
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 8);
    }
}
