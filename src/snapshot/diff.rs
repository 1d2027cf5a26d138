//! An active snapshot's changes as an OCI layer, at the cost of what changed.
//!
//! * **overlay** ([`overlay_diff`]): walks ONLY the upper directory. Overlay whiteouts (0:0
//!   character devices) become `.wh.<name>`, opaque directories (`trusted.overlay.opaque=y`, or
//!   `user.overlay.opaque=y` in user-namespace mounts) become `<dir>/.wh..wh..opq`. A file in
//!   the upper directory whose metadata equals the lower one (copied up by an `O_RDWR` open, or
//!   rewritten with its mtime restored) is compared on content and left out when equal.
//! * **copy** ([`copy_diff`]): walks the parent and the active tree side by side and compares
//!   metadata (type, mode, uid/gid, size, mtime with nanoseconds, nlink, rdev, link target,
//!   xattrs). Where metadata is ambiguous — equal, yet the file's ctime says it was touched
//!   after the copy finished (the `copied` marker's ctime) — contents are compared. Files not
//!   touched since the copy are never read.
//!
//! Both emit the same entries for the same changes: a directory is written when its own
//! metadata changed or anything under it is written (so `apply` restores its mtime after
//! changing its content); a directory replacing a non-directory is opaque, as overlay makes it;
//! a non-directory replacing a directory needs no whiteout (applying it replaces the tree); a
//! directory deleted and re-created is opaque — overlay marks it so, and copy knows it by its
//! birth time, later than the copy (on a filesystem without birth times copy writes
//! whiteouts of the old entries instead: the same tree, other bytes).
//!
//! Entries are written through [`TarWriter`] in byte order of their tar paths, so a diff is
//! deterministic; the DiffID is computed on the way. Names with the reserved `.wh.` prefix
//! cannot be stored in a layer and fail the diff (catalogue B6). Knows nothing of where the
//! layer goes (any `Write`: a store ingest, a file, a `Vec`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::treecopy::read_xattrs;
use super::{SnapshotError, Snapshotter};
use crate::dirfd::{OVERLAY_TRUSTED_XATTRS, OVERLAY_USER_XATTRS};
use crate::layer::{TarWriter, WriteOptions};
use crate::oci::DiffId;

/// What a diff produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOutput {
    /// Digest of the uncompressed tar written.
    pub diff_id: DiffId,
    /// Bytes of tar written.
    pub size: u64,
    /// Entries written (whiteouts and opaque markers included).
    pub entries: u64,
}

/// What a diff wrote, unhashed ([`Snapshotter::diff_unhashed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffWritten {
    /// Bytes of tar written.
    pub size: u64,
    /// Entries written (whiteouts and opaque markers included).
    pub entries: u64,
}

/// Writes the changes of the active snapshot `key` as a layer to `out`, then commits it as
/// `name` with that layer's DiffID, without extracting anything again (the active tree is
/// already the committed content). The snapshot must not be mounted.
pub fn diff_and_commit(
    sn: &dyn Snapshotter,
    name: &str,
    key: &str,
    opts: &WriteOptions,
    out: &mut dyn Write,
) -> Result<DiffOutput, SnapshotError> {
    let diff = sn.diff(key, opts, out)?;
    sn.commit(name, key, Some(diff.diff_id))?;
    Ok(diff)
}

/// One change, keyed by its tar path.
enum Change {
    Add(PathBuf),
    Whiteout,
    Opaque,
}

/// Changes in tar-path order; values carry the relative path the writer needs.
type Changes = BTreeMap<Vec<u8>, (Vec<u8>, Change)>;

fn push_add(changes: &mut Changes, rel: &[u8], abs: &Path, is_dir: bool) {
    let mut key = rel.to_vec();
    if is_dir {
        key.push(b'/');
    }
    changes.insert(key, (rel.to_vec(), Change::Add(abs.to_path_buf())));
}

fn push_whiteout(changes: &mut Changes, rel: &[u8]) {
    let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    };
    let mut key = dir.to_vec();
    key.extend_from_slice(b".wh.");
    key.extend_from_slice(name);
    changes.insert(key, (rel.to_vec(), Change::Whiteout));
}

fn push_opaque(changes: &mut Changes, rel: &[u8]) {
    let mut key = rel.to_vec();
    key.extend_from_slice(b"/.wh..wh..opq");
    changes.insert(key, (rel.to_vec(), Change::Opaque));
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = rel.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn os(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Children of `dir` as (name, metadata), sorted by name.
fn children(dir: &Path) -> Result<Vec<(Vec<u8>, Metadata)>, SnapshotError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| SnapshotError::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| SnapshotError::io("read directory", dir, e))?;
        let md = fs::symlink_metadata(entry.path()).map_err(|e| SnapshotError::io("stat", entry.path(), e))?;
        out.push((entry.file_name().as_bytes().to_vec(), md));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// The overlay xattr namespace of a flavour.
fn overlay_prefix(userxattr: bool) -> &'static [u8] {
    if userxattr { OVERLAY_USER_XATTRS } else { OVERLAY_TRUSTED_XATTRS }
}

/// Whether `path` is an opaque overlay directory.
fn is_opaque(path: &Path, userxattr: bool) -> bool {
    let mut name = overlay_prefix(userxattr).to_vec();
    name.extend_from_slice(b"opaque");
    let mut value = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, OsStr::from_bytes(&name), &mut value[..]), Ok(1) if value[0] == b'y')
}

/// Whether two objects have the same metadata (the overlay namespace of xattrs ignored).
fn same_meta(a_path: &Path, a: &Metadata, b_path: &Path, b: &Metadata, skip: &[u8]) -> Result<bool, SnapshotError> {
    let (fa, fb) = (a.file_type(), b.file_type());
    let same_type =
        (fa.is_dir(), fa.is_file(), fa.is_symlink(), fa.is_char_device(), fa.is_block_device(), fa.is_fifo())
            == (fb.is_dir(), fb.is_file(), fb.is_symlink(), fb.is_char_device(), fb.is_block_device(), fb.is_fifo());
    if !same_type || a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() {
        return Ok(false);
    }
    if (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()) {
        return Ok(false);
    }
    if !fa.is_dir() && (a.size() != b.size() || a.nlink() != b.nlink() || a.rdev() != b.rdev()) {
        return Ok(false);
    }
    if fa.is_symlink() {
        let la = fs::read_link(a_path).map_err(|e| SnapshotError::io("read link", a_path, e))?;
        let lb = fs::read_link(b_path).map_err(|e| SnapshotError::io("read link", b_path, e))?;
        if la != lb {
            return Ok(false);
        }
    }
    let keep = |x: &(Vec<u8>, Vec<u8>)| !x.0.starts_with(skip);
    let xa: Vec<_> = read_xattrs(a_path)?.into_iter().filter(keep).collect();
    let xb: Vec<_> = read_xattrs(b_path)?.into_iter().filter(keep).collect();
    Ok(xa == xb)
}

/// Whether two regular files have the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool, SnapshotError> {
    let mut fa = File::open(a).map_err(|e| SnapshotError::io("open", a, e))?;
    let mut fb = File::open(b).map_err(|e| SnapshotError::io("open", b, e))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(|e| SnapshotError::io("read", a, e))?;
        let m = read_full(&mut fb, &mut bb).map_err(|e| SnapshotError::io("read", b, e))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Looks `rel` up in the merged view of `lowers` (top first), as overlay would.
fn lower_lookup(lowers: &[PathBuf], rel: &[u8], userxattr: bool) -> Option<(PathBuf, Metadata)> {
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    'layers: for lower in lowers {
        let path = lower.join(os(rel));
        if let Ok(md) = fs::symlink_metadata(&path) {
            return if is_whiteout(&md) { None } else { Some((path, md)) };
        }
        // Not here: does an ancestor in this layer hide the layers below?
        let mut anc = lower.clone();
        for comp in &comps[..comps.len() - 1] {
            anc.push(os(comp));
            match fs::symlink_metadata(&anc) {
                Err(_) => continue 'layers,
                Ok(md) if !md.is_dir() => return None,
                Ok(_) if is_opaque(&anc, userxattr) => return None,
                Ok(_) => {}
            }
        }
    }
    None
}

/// Writes the changes of an overlay upper directory over `lowers` (top first).
pub(super) fn overlay_diff(
    key: &str,
    upper: &Path,
    lowers: &[PathBuf],
    userxattr: bool,
    opts: &WriteOptions,
    out: &mut dyn Write,
) -> Result<DiffWritten, SnapshotError> {
    let mut changes = Changes::new();
    walk_upper(&mut changes, b"", upper, lowers, false, userxattr)?;
    write_changes(key, changes, opts, out)
}

/// Collects the changes under the upper directory `abs` (relative path `rel`); `hidden`: the
/// lower content here is hidden (opaque or new directory). Returns whether anything changed.
fn walk_upper(
    changes: &mut Changes,
    rel: &[u8],
    abs: &Path,
    lowers: &[PathBuf],
    hidden: bool,
    userxattr: bool,
) -> Result<bool, SnapshotError> {
    let skip = overlay_prefix(userxattr);
    let mut any = false;
    for (name, md) in children(abs)? {
        let child_rel = join(rel, &name);
        let child_abs = abs.join(os(&name));
        if is_whiteout(&md) {
            push_whiteout(changes, &child_rel);
            any = true;
            continue;
        }
        let lower = if hidden { None } else { lower_lookup(lowers, &child_rel, userxattr) };
        if md.is_dir() {
            let opaque = is_opaque(&child_abs, userxattr);
            let new = opaque || !lower.as_ref().is_some_and(|(_, l)| l.is_dir());
            let sub = walk_upper(changes, &child_rel, &child_abs, lowers, hidden || new, userxattr)?;
            let changed = match &lower {
                Some((lp, lmd)) if !new => !same_meta(&child_abs, &md, lp, lmd, skip)?,
                _ => true,
            };
            if opaque || (new && lower.is_some()) {
                push_opaque(changes, &child_rel);
            }
            if changed || sub {
                push_add(changes, &child_rel, &child_abs, true);
                any = true;
            }
            continue;
        }
        if let Some((lp, lmd)) = &lower {
            // Copied up without a change: same metadata and, for files, the same bytes.
            if same_meta(&child_abs, &md, lp, lmd, skip)? && (!md.is_file() || same_content(&child_abs, lp)?) {
                continue;
            }
        }
        push_add(changes, &child_rel, &child_abs, false);
        any = true;
    }
    Ok(any)
}

/// Writes the changes between the committed tree `lower` (none: empty) and the active tree
/// `upper`; `copied` is the metadata of the marker touched when the copy was complete.
pub(super) fn copy_diff(
    key: &str,
    lower: Option<&Path>,
    upper: &Path,
    copied: &Metadata,
    opts: &WriteOptions,
    out: &mut dyn Write,
) -> Result<DiffWritten, SnapshotError> {
    let mut changes = Changes::new();
    let since = (copied.ctime(), copied.ctime_nsec());
    walk_pair(&mut changes, b"", lower, upper, since)?;
    write_changes(key, changes, opts, out)
}

/// Collects the changes between the directories `lower` and `upper` (relative path `rel`).
fn walk_pair(
    changes: &mut Changes,
    rel: &[u8],
    lower: Option<&Path>,
    upper: &Path,
    since: (i64, i64),
) -> Result<bool, SnapshotError> {
    let mut lower_children: BTreeMap<Vec<u8>, Metadata> = match lower {
        Some(dir) => children(dir)?.into_iter().collect(),
        None => BTreeMap::new(),
    };
    let mut any = false;
    for (name, md) in children(upper)? {
        let child_rel = join(rel, &name);
        let child_abs = upper.join(os(&name));
        let lower_md = lower_children.remove(&name);
        let lower_abs = lower.map(|l| l.join(os(&name)));
        if md.is_dir() {
            let lower_dir = lower_md.as_ref().is_some_and(Metadata::is_dir);
            // A directory born after the copy finished was deleted and created again: like
            // overlay, hide the whole lower directory (opaque) instead of one whiteout per entry.
            let recreated = lower_dir && born_since(&child_abs, since);
            let sub_lower = if lower_dir && !recreated { lower_abs.as_deref() } else { None };
            let sub = walk_pair(changes, &child_rel, sub_lower, &child_abs, since)?;
            let changed = match (&lower_md, &lower_abs) {
                (Some(_), Some(_)) if recreated => {
                    push_opaque(changes, &child_rel);
                    true
                }
                (Some(lmd), Some(lp)) if lower_dir => !same_meta(&child_abs, &md, lp, lmd, OVERLAY_TRUSTED_XATTRS)?,
                (Some(_), _) => {
                    // A directory replacing a non-directory: opaque, as overlay makes it.
                    push_opaque(changes, &child_rel);
                    true
                }
                _ => true,
            };
            if changed || sub {
                push_add(changes, &child_rel, &child_abs, true);
                any = true;
            }
            continue;
        }
        if let (Some(lmd), Some(lp)) = (&lower_md, &lower_abs) {
            if same_meta(&child_abs, &md, lp, lmd, OVERLAY_TRUSTED_XATTRS)? {
                let touched = (md.ctime(), md.ctime_nsec()) >= since;
                if !md.is_file() || !touched || same_content(&child_abs, lp)? {
                    continue;
                }
            }
        }
        push_add(changes, &child_rel, &child_abs, false);
        any = true;
    }
    for name in lower_children.keys() {
        push_whiteout(changes, &join(rel, name));
        any = true;
    }
    Ok(any)
}

/// Whether `path` was created after `since` (its birth time, where the filesystem
/// records one; without it the answer is no, and a re-created directory is written as
/// whiteouts of its old entries — the same tree, other bytes).
fn born_since(path: &Path, since: (i64, i64)) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    match statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME) {
        Ok(st) if st.stx_mask & StatxFlags::BTIME.bits() != 0 => {
            (st.stx_btime.tv_sec, i64::from(st.stx_btime.tv_nsec)) > since
        }
        _ => false,
    }
}

/// Writes collected changes in tar-path order (the writer leaves overlayfs's own xattrs out).
fn write_changes(
    key: &str,
    changes: Changes,
    opts: &WriteOptions,
    out: &mut dyn Write,
) -> Result<DiffWritten, SnapshotError> {
    let layer_err = |source| SnapshotError::Layer { key: key.to_string(), source };
    let mut tw = TarWriter::new(CountingWriter { inner: out, written: 0 }, opts);
    let mut entries = 0u64;
    for (tar_path, (rel, change)) in &changes {
        if rel.split(|&b| b == b'/').any(|c| c.starts_with(b".wh.")) {
            return Err(SnapshotError::ReservedName {
                key: key.to_string(),
                path: String::from_utf8_lossy(tar_path).into_owned(),
            });
        }
        entries += 1;
        match change {
            Change::Add(abs) => tw.add_path(os(rel), abs).map_err(layer_err)?,
            Change::Whiteout => tw.add_whiteout(os(rel)).map_err(layer_err)?,
            Change::Opaque => tw.add_opaque(os(rel)).map_err(layer_err)?,
        }
    }
    let counted = tw.finish().map_err(layer_err)?;
    Ok(DiffWritten { size: counted.written, entries })
}

/// Counts the bytes a diff writes (the hashing, if any, is the caller's).
struct CountingWriter<'w> {
    inner: &'w mut dyn Write,
    written: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whiteout(path: &Path) {
        let dev = rustix::fs::FileType::CharacterDevice;
        rustix::fs::mknodat(rustix::fs::CWD, path, dev, rustix::fs::Mode::empty(), 0).unwrap();
    }

    #[test]
    fn tar_paths_of_changes() {
        let mut changes = Changes::new();
        push_whiteout(&mut changes, b"a/b");
        push_whiteout(&mut changes, b"top");
        push_opaque(&mut changes, b"a");
        push_add(&mut changes, b"a", Path::new("/x/a"), true);
        let keys: Vec<_> = changes.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        assert_eq!(keys, [".wh.top", "a/", "a/.wh..wh..opq", "a/.wh.b"]);
    }

    #[test]
    fn lower_lookup_honours_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, bottom) = (tmp.path().join("top"), tmp.path().join("bottom"));
        for d in [bottom.join("w"), bottom.join("o"), bottom.join("plain"), top.join("o"), top.join("plain")] {
            fs::create_dir_all(d).unwrap();
        }
        for f in ["w/f", "o/f", "plain/f", "gone"] {
            fs::write(bottom.join(f), f).unwrap();
        }
        whiteout(&top.join("gone"));
        whiteout(&top.join("w"));
        rustix::fs::lsetxattr(top.join("o"), "user.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
        let lowers = [top.clone(), bottom.clone()];
        let found = |rel: &[u8]| lower_lookup(&lowers, rel, true).map(|(p, _)| p);
        assert_eq!(found(b"plain/f"), Some(bottom.join("plain/f")));
        assert_eq!(found(b"plain"), Some(top.join("plain")));
        assert_eq!(found(b"gone"), None, "a whiteout hides the file below");
        assert_eq!(found(b"w/f"), None, "a whiteout hides the directory below");
        assert_eq!(found(b"o/f"), None, "an opaque directory hides what is below");
        assert_eq!(found(b"missing"), None);
        // The trusted flavour does not read user xattrs: `o` is not opaque there.
        assert_eq!(lower_lookup(&lowers, b"o/f", false).map(|(p, _)| p), Some(bottom.join("o/f")));
    }
}
