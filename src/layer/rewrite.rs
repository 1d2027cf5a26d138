//! Rewriting a layer's timestamps: every entry whose mtime is later than an epoch gets the
//! epoch (BuildKit's `rewrite-timestamp`), everything else as it was read.
//!
//! The input is parsed by the strict [`super::reader`] and written again by [`TarWriter`], so the
//! output is this crate's deterministic encoding of the same entries (PAX records other than
//! path, link, size, ids, mtime and xattrs — atime, ctime — are dropped). Streams; never holds
//! an entry's data in memory.

use std::io::{Read, Write};

use super::LayerError;
use super::apply::ApplyOptions;
use super::reader::{ReadLimits, TarReader};
use super::writer::{TarWriter, WriteOptions};

/// What [`clamp_mtimes`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClampReport {
    /// Entries written.
    pub entries: u64,
    /// Entries whose mtime was later than the epoch.
    pub clamped: u64,
}

/// Copies the uncompressed layer `input` to `out` with every mtime later than `epoch` set to
/// `epoch`. When [`ClampReport::clamped`] is 0 the caller may keep the original layer.
pub fn clamp_mtimes(input: impl Read, epoch: i64, out: impl Write) -> Result<ClampReport, LayerError> {
    let defaults = ApplyOptions::default();
    let mut reader =
        TarReader::new(input, ReadLimits { max_bytes: defaults.max_bytes, max_entries: defaults.max_entries });
    let mut writer = TarWriter::new(out, &WriteOptions { source_date_epoch: Some(epoch) });
    let mut report = ClampReport::default();
    while let Some(entry) = reader.next_entry()? {
        report.entries += 1;
        if writer.add_entry(&entry, &mut |buf| reader.read_data(buf))? {
            report.clamped += 1;
        }
    }
    writer.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::list;

    /// A layer with a directory, a new file, an old file, a symlink, a hardlink and a whiteout.
    fn layer(dir: &std::path::Path) -> Vec<u8> {
        std::fs::create_dir(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/new"), b"new content").unwrap();
        std::fs::write(dir.join("old"), b"old").unwrap();
        std::os::unix::fs::symlink("d/new", dir.join("link")).unwrap();
        std::fs::hard_link(dir.join("old"), dir.join("hard")).unwrap();
        let old = std::fs::File::options().write(true).open(dir.join("old")).unwrap();
        old.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)).unwrap();
        let mut out = Vec::new();
        let mut w = TarWriter::new(&mut out, &WriteOptions::default());
        for name in ["d", "d/new", "hard", "link", "old"] {
            w.add_path(std::path::Path::new(name), &dir.join(name)).unwrap();
        }
        w.add_whiteout(std::path::Path::new("gone")).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn clamps_only_later_mtimes_and_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let original = layer(dir.path());
        let mut rewritten = Vec::new();
        let report = clamp_mtimes(&original[..], 5000, &mut rewritten).unwrap();
        let before = list(&original[..]).unwrap();
        let after = list(&rewritten[..]).unwrap();
        assert_eq!(report.entries, before.len() as u64);
        assert_eq!(before.len(), after.len());
        let mut clamped = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (&b.path, b.kind, &b.link, b.mode, b.uid, b.gid, b.size),
                (&a.path, a.kind, &a.link, a.mode, a.uid, a.gid, a.size)
            );
            assert_eq!(a.mtime, b.mtime.min(5000), "{}", b.display_path());
            clamped += u64::from(b.mtime > 5000);
        }
        assert_eq!(report.clamped, clamped);
        assert!(clamped >= 3, "the new entries are clamped: {report:?}");
        // The data survives.
        let out = tempfile::tempdir().unwrap();
        crate::layer::apply(&rewritten[..], out.path(), &ApplyOptions::default()).unwrap();
        assert_eq!(std::fs::read(out.path().join("d/new")).unwrap(), b"new content");
        assert_eq!(std::fs::read(out.path().join("hard")).unwrap(), b"old");
        // Rewriting again changes nothing.
        let mut again = Vec::new();
        let report = clamp_mtimes(&rewritten[..], 5000, &mut again).unwrap();
        assert_eq!(report.clamped, 0);
        assert!(again == rewritten, "a clamped layer is a fixed point");
    }
}
