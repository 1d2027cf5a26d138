//! Applying an uncompressed layer tar onto a root directory, OCI whiteouts included.
//!
//! Owns the per-layer state (paths this layer created, deferred directory mtimes), whiteout and
//! opaque-directory semantics and the mapping of entries to syscalls; every syscall goes
//! through `target` and `crate::dirfd`, which confine it to the root. Knows nothing about
//! compression or the store. See the `layer` module doc for the duplicate-path and `..` decisions.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::LayerError;
use super::reader::{Entry, EntryInfo, EntryKind, ReadLimits, TarReader};
use super::target::{Comps, Root, chown_nofollow, fchown, join, remove_existing, set_times_nofollow, timestamps};
use crate::dirfd::{self, XattrFilter};

/// Longest entry path accepted (bytes, after cleaning).
const MAX_PATH: usize = 4096;
/// Longest path component accepted.
const MAX_NAME: usize = 255;
const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// xattrs taken from layer data: not overlayfs internals nor the host's SELinux labels.
const APPLIED_XATTRS: XattrFilter = XattrFilter::Portable;

/// How `apply` behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Give entries the uid/gid recorded in the tar (needs `CAP_CHOWN`). Default: when root.
    pub same_owner: bool,
    /// Skip block and character devices instead of failing when they cannot be created
    /// (rootless). Skipped devices are counted in [`ApplyReport::devices_skipped`].
    pub skip_devices: bool,
    /// Largest uncompressed tar stream accepted, in bytes.
    pub max_bytes: u64,
    /// Most tar headers accepted.
    pub max_entries: u64,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        let root = rustix::process::geteuid().is_root();
        ApplyOptions { same_owner: root, skip_devices: !root, max_bytes: 64 << 30, max_entries: 10_000_000 }
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Entries read (whiteouts included).
    pub entries: u64,
    /// Bytes of tar stream consumed.
    pub bytes: u64,
    /// Whiteout and opaque markers processed.
    pub whiteouts: u64,
    pub devices_skipped: u64,
    /// xattrs the target filesystem refused (or that are never applied).
    pub xattrs_skipped: u64,
}

struct State<'o> {
    opts: &'o ApplyOptions,
    /// Every path this layer created, with all its ancestors: whiteouts and opaque markers
    /// only remove what is not in here (lower content).
    created: HashSet<Vec<u8>>,
    /// Directory entries whose exact mode and mtime are set after all content is in place.
    dir_times: Vec<(Vec<u8>, u32, i64)>,
    report: ApplyReport,
}

impl State<'_> {
    fn mark_created(&mut self, comps: &[&[u8]]) {
        for i in 1..=comps.len() {
            self.created.insert(join(&comps[..i]));
        }
    }
}

/// Unpacks the uncompressed layer `layer` onto the existing directory `target`.
///
/// Every write stays under `target` (see the `target` module). A rejected entry aborts the
/// whole apply and leaves `target` partially updated: callers apply into a fresh snapshot and
/// discard it on error.
pub fn apply(layer: impl Read, target: &Path, opts: &ApplyOptions) -> Result<ApplyReport, LayerError> {
    let root = Root::open(target).map_err(|e| LayerError::OpenRoot { path: target.to_path_buf(), source: e.into() })?;
    let mut reader = TarReader::new(layer, ReadLimits { max_bytes: opts.max_bytes, max_entries: opts.max_entries });
    let mut state = State { opts, created: HashSet::new(), dir_times: Vec::new(), report: ApplyReport::default() };
    let mut buf = vec![0u8; ZEROS.len()];
    while let Some(entry) = reader.next_entry()? {
        state.report.entries += 1;
        apply_entry(&root, &mut reader, &entry, &mut state, &mut buf)?;
    }
    // Deepest first: a parent made read-only must not stop us from reaching its children.
    for (path, mode, mtime) in std::mem::take(&mut state.dir_times).into_iter().rev() {
        finish_dir(&root, &path, mode, mtime)?;
    }
    state.report.bytes = reader.offset();
    Ok(state.report)
}

/// Lists the entries of an uncompressed layer without touching any filesystem.
pub fn list(layer: impl Read) -> Result<Vec<EntryInfo>, LayerError> {
    let defaults = ApplyOptions::default();
    let mut reader =
        TarReader::new(layer, ReadLimits { max_bytes: defaults.max_bytes, max_entries: defaults.max_entries });
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        out.push(entry);
    }
    Ok(out)
}

/// Cleans an entry path lexically: `.`/empty components dropped, `..` clamped at the root.
fn clean<'a>(raw: &'a [u8], entry: &Entry) -> Result<Vec<&'a [u8]>, LayerError> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                comps.pop();
            }
            c if c.len() > MAX_NAME => {
                return Err(LayerError::InvalidEntry {
                    entry: entry.display_path(),
                    reason: "path component too long",
                });
            }
            c => comps.push(c),
        }
    }
    if comps.iter().map(|c| c.len() + 1).sum::<usize>() > MAX_PATH {
        return Err(LayerError::InvalidEntry { entry: entry.display_path(), reason: "path too long" });
    }
    Ok(comps)
}

fn op_err<'e>(entry: &'e Entry, op: &'static str) -> impl FnOnce(Errno) -> LayerError + 'e {
    move |e| LayerError::Apply { entry: entry.display_path(), op, source: e.into() }
}

/// A failed chown; EINVAL is the kernel's answer for an id the user namespace does not map.
fn chown_err<'e>(entry: &'e Entry) -> impl FnOnce(Errno) -> LayerError + 'e {
    move |e| match e {
        Errno::INVAL => {
            LayerError::UnmappedOwner { entry: entry.display_path(), uid: entry.uid as u32, gid: entry.gid as u32 }
        }
        e => op_err(entry, "change owner")(e),
    }
}

fn io_err<'e>(entry: &'e Entry, op: &'static str) -> impl FnOnce(std::io::Error) -> LayerError + 'e {
    move |source| LayerError::Apply { entry: entry.display_path(), op, source }
}

fn apply_entry<R: Read>(
    root: &Root,
    reader: &mut TarReader<R>,
    entry: &Entry,
    state: &mut State<'_>,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let comps = clean(&entry.path, entry)?;
    let Some((&name, parent)) = comps.split_last() else {
        if entry.kind == EntryKind::Directory {
            return Ok(()); // `./`: the root itself is not ours to change
        }
        return Err(LayerError::InvalidEntry { entry: entry.display_path(), reason: "entry resolves to the root" });
    };
    if parent.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
        return Err(LayerError::InvalidWhiteout { entry: entry.display_path() });
    }
    if name.starts_with(WHITEOUT_PREFIX) {
        return whiteout_entry(root, parent, name, entry, state);
    }
    if entry.uid >= u64::from(u32::MAX) || entry.gid >= u64::from(u32::MAX) {
        return Err(LayerError::InvalidEntry { entry: entry.display_path(), reason: "uid or gid out of range" });
    }

    let (pfd, n_created) = root.open_or_create_dir(parent).map_err(op_err(entry, "open parent directory"))?;
    if n_created > 0 {
        state.mark_created(parent);
    }
    let at = At { dir: pfd.as_fd(), name };
    // Hardlink targets are resolved before anything at the destination is removed.
    let link_src = match entry.kind {
        EntryKind::Link => Some(hardlink_source(root, &comps, entry)?),
        _ => None,
    };

    // Unlink-then-create unless directory over directory (catalogue C6: last entry wins).
    let existing = dirfd::lstat_at(at.dir, name).map_err(op_err(entry, "inspect existing path"))?;
    let keep_dir = entry.kind == EntryKind::Directory && existing.as_ref().is_some_and(dirfd::is_dir);
    if existing.is_some() && !keep_dir {
        remove_existing(at.dir, name).map_err(op_err(entry, "remove existing path"))?;
    }

    match entry.kind {
        EntryKind::Regular => create_file(reader, &at, entry, state, buf)?,
        EntryKind::Directory => {
            if !keep_dir {
                rustix::fs::mkdirat(at.dir, dirfd::os(name), Mode::from_raw_mode(0o700))
                    .map_err(op_err(entry, "create directory"))?;
            }
            let dfd = dirfd::open_child_dir(at.dir, name).map_err(op_err(entry, "open directory"))?;
            // Owner-writable until the second pass, so an unprivileged apply can fill it.
            finish_fd(dfd.as_fd(), entry, entry.mode | 0o700, state)?;
            state.dir_times.push((join(&comps), entry.mode, entry.mtime));
        }
        EntryKind::Symlink => create_symlink(&at, entry, state)?,
        EntryKind::Link => {
            let (tfd, tname) = link_src.expect("link_src is set for hardlink entries");
            rustix::fs::linkat(&tfd, dirfd::os(tname), at.dir, dirfd::os(name), rustix::fs::AtFlags::empty())
                .map_err(op_err(entry, "create hardlink"))?;
        }
        EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
            if !create_node(&at, entry, state)? {
                return Ok(());
            }
        }
    }
    state.mark_created(&comps);
    Ok(())
}

/// Where an entry is created: its parent directory, and its name there.
struct At<'a> {
    dir: BorrowedFd<'a>,
    name: &'a [u8],
}

/// A `.wh.NAME` entry (deletes NAME from lower layers) or `.wh..wh..opq` (hides the whole
/// directory below).
fn whiteout_entry(
    root: &Root,
    parent: &Comps<'_>,
    name: &[u8],
    entry: &Entry,
    state: &mut State<'_>,
) -> Result<(), LayerError> {
    state.report.whiteouts += 1;
    if name == OPAQUE {
        return opaque(root, parent, entry, state);
    }
    if name.starts_with(b".wh..wh.") {
        // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): meaningless here.
        return Ok(());
    }
    let target = &name[WHITEOUT_PREFIX.len()..];
    if target.is_empty() || target == b"." || target == b".." {
        return Err(LayerError::InvalidWhiteout { entry: entry.display_path() });
    }
    whiteout(root, parent, target, entry, state)
}

/// The directory and name a hardlink entry links to (inside the root, never itself).
fn hardlink_source<'e>(root: &Root, comps: &Comps<'_>, entry: &'e Entry) -> Result<(OwnedFd, &'e [u8]), LayerError> {
    let target = clean(&entry.link, entry)?;
    let Some((&tname, tparent)) = target.split_last() else {
        return Err(LayerError::InvalidEntry { entry: entry.display_path(), reason: "hardlink to the root" });
    };
    if target == comps {
        return Err(LayerError::InvalidEntry { entry: entry.display_path(), reason: "hardlink to itself" });
    }
    let tfd = root.open_dir(tparent).map_err(op_err(entry, "resolve hardlink target"))?;
    Ok((tfd, tname))
}

fn create_file<R: Read>(
    reader: &mut TarReader<R>,
    at: &At<'_>,
    entry: &Entry,
    state: &mut State<'_>,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let fd = rustix::fs::openat(
        at.dir,
        dirfd::os(at.name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(op_err(entry, "create file"))?;
    let mut file = File::from(fd);
    write_data(reader, &mut file, entry, buf)?;
    finish_fd(file.as_fd(), entry, entry.mode, state)?;
    rustix::fs::futimens(&file, &timestamps(entry.mtime)).map_err(op_err(entry, "set times"))
}

fn create_symlink(at: &At<'_>, entry: &Entry, state: &mut State<'_>) -> Result<(), LayerError> {
    rustix::fs::symlinkat(dirfd::os(&entry.link), at.dir, dirfd::os(at.name))
        .map_err(op_err(entry, "create symlink"))?;
    if state.opts.same_owner {
        chown_nofollow(at.dir, at.name, entry.uid as u32, entry.gid as u32).map_err(chown_err(entry))?;
    }
    state.report.xattrs_skipped += entry.xattrs.len() as u64;
    set_times_nofollow(at.dir, at.name, entry.mtime).map_err(op_err(entry, "set times"))
}

/// A device node or FIFO; `false` when a device was skipped (not permitted, and allowed to).
fn create_node(at: &At<'_>, entry: &Entry, state: &mut State<'_>) -> Result<bool, LayerError> {
    let (ft, dev) = match entry.kind {
        EntryKind::CharDevice => (FileType::CharacterDevice, true),
        EntryKind::BlockDevice => (FileType::BlockDevice, true),
        _ => (FileType::Fifo, false),
    };
    let rdev = rustix::fs::makedev(entry.devmajor, entry.devminor);
    match rustix::fs::mknodat(at.dir, dirfd::os(at.name), ft, Mode::from_raw_mode(0o600), rdev) {
        Ok(()) => {}
        Err(Errno::PERM) if dev && state.opts.skip_devices => {
            tracing::warn!(entry = %entry.display_path(), "skipping device node (not permitted)");
            state.report.devices_skipped += 1;
            return Ok(false);
        }
        Err(e) => return Err(op_err(entry, "create device node")(e)),
    }
    if state.opts.same_owner {
        chown_nofollow(at.dir, at.name, entry.uid as u32, entry.gid as u32).map_err(chown_err(entry))?;
    }
    let handle = dirfd::open_path_handle(at.dir, at.name).map_err(op_err(entry, "open device node"))?;
    dirfd::chmod_handle(handle.as_fd(), entry.mode).map_err(op_err(entry, "change mode"))?;
    set_xattrs(entry, state, |k, v| dirfd::setxattr_handle(handle.as_fd(), k, v))?;
    set_times_nofollow(at.dir, at.name, entry.mtime).map_err(op_err(entry, "set times"))?;
    Ok(true)
}

static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];

/// Streams the entry's data into `file`, leaving holes where whole chunks are zero.
fn write_data<R: Read>(
    reader: &mut TarReader<R>,
    file: &mut File,
    entry: &Entry,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    loop {
        let n = reader.read_data(buf)?;
        if n == 0 {
            break;
        }
        if buf[..n] == ZEROS[..n] {
            file.seek(SeekFrom::Current(n as i64)).map_err(io_err(entry, "write file"))?;
        } else {
            file.write_all(&buf[..n]).map_err(io_err(entry, "write file"))?;
        }
    }
    file.set_len(entry.size).map_err(io_err(entry, "write file"))
}

/// Owner, mode and xattrs through an open fd, in that order (chown clears setuid bits and
/// `security.capability`).
fn finish_fd(fd: BorrowedFd<'_>, entry: &Entry, mode: u32, state: &mut State<'_>) -> Result<(), LayerError> {
    if state.opts.same_owner {
        fchown(fd, entry.uid as u32, entry.gid as u32).map_err(chown_err(entry))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(op_err(entry, "change mode"))?;
    set_xattrs(entry, state, |k, v| dirfd::fsetxattr(fd, k, v))
}

fn set_xattrs(
    entry: &Entry,
    state: &mut State<'_>,
    mut set: impl FnMut(&[u8], &[u8]) -> Result<(), Errno>,
) -> Result<(), LayerError> {
    for (key, value) in &entry.xattrs {
        if !APPLIED_XATTRS.keeps(key) {
            state.report.xattrs_skipped += 1;
            continue;
        }
        match set(key, value) {
            Ok(()) => {}
            Err(e @ (Errno::OPNOTSUPP | Errno::PERM)) => {
                tracing::warn!(entry = %entry.display_path(), xattr = %dirfd::display(key), errno = %e, "xattr not applied");
                state.report.xattrs_skipped += 1;
            }
            Err(e) => return Err(op_err(entry, "set xattr")(e)),
        }
    }
    Ok(())
}

/// `dir/.wh.name`: remove lower `dir/name`; a path this layer created is left alone.
fn whiteout(
    root: &Root,
    parent: &[&[u8]],
    target: &[u8],
    entry: &Entry,
    state: &mut State<'_>,
) -> Result<(), LayerError> {
    let mut key_comps = parent.to_vec();
    key_comps.push(target);
    if state.created.contains(&join(&key_comps)) {
        return Ok(());
    }
    let pfd = match root.open_dir(parent) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(op_err(entry, "open whiteout parent")(e)),
    };
    remove_existing(pfd.as_fd(), target).map_err(op_err(entry, "remove whited-out path"))?;
    Ok(())
}

/// `dir/.wh..wh..opq`: remove everything lower under `dir`, wherever the marker sits in the tar.
fn opaque(root: &Root, dir: &[&[u8]], entry: &Entry, state: &mut State<'_>) -> Result<(), LayerError> {
    let dfd = match dir.split_last() {
        None => root.open_dir(&[]),
        Some((&leaf, parent)) => root.open_dir(parent).and_then(|p| dirfd::open_child_dir(p.as_fd(), leaf)),
    };
    let dfd = match dfd {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => return Err(op_err(entry, "open opaque directory")(e)),
    };
    clear_lower(dfd, &join(dir), &state.created).map_err(op_err(entry, "clear opaque directory"))
}

fn clear_lower(dfd: OwnedFd, key: &[u8], created: &HashSet<Vec<u8>>) -> Result<(), Errno> {
    for name in dirfd::list_names(dfd.as_fd())? {
        let mut child = key.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        if !created.contains(&child) {
            remove_existing(dfd.as_fd(), &name)?;
            continue;
        }
        let is_dir = dirfd::lstat_at(dfd.as_fd(), &name)?.as_ref().is_some_and(dirfd::is_dir);
        if is_dir {
            clear_lower(dirfd::open_child_dir(dfd.as_fd(), &name)?, &child, created)?;
        }
    }
    Ok(())
}

/// Second pass: a directory's exact mode and mtime once nothing more is created in it. A
/// directory replaced later in the layer (by a file or a symlink) is skipped.
fn finish_dir(root: &Root, path: &[u8], mode: u32, mtime: i64) -> Result<(), LayerError> {
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let Some((&leaf, parent)) = comps.split_last() else {
        return Ok(());
    };
    let fd = match root.open_dir(parent).and_then(|p| dirfd::open_child_dir(p.as_fd(), leaf)) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => {
            return Err(LayerError::Apply { entry: dirfd::display(path), op: "open directory", source: e.into() });
        }
    };
    let err = |op| move |e: Errno| LayerError::Apply { entry: dirfd::display(path), op, source: e.into() };
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(err("change mode"))?;
    rustix::fs::futimens(&fd, &timestamps(mtime)).map_err(err("set times"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> Entry {
        Entry {
            path: path.to_vec(),
            kind: EntryKind::Regular,
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn clean_clamps_at_the_root() {
        let cases: [(&[u8], &[&[u8]]); 6] = [
            (b"./a/b/", &[b"a", b"b"]),
            (b"/etc/passwd", &[b"etc", b"passwd"]),
            (b"/dummy/../etc", &[b"etc"]),
            (b"../../../x", &[b"x"]),
            (b"a/./b//c/..", &[b"a", b"b"]),
            (b"./", &[]),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw, &entry(raw)).unwrap(), want, "{}", dirfd::display(raw));
        }
        let long = vec![b'x'; 256];
        assert!(clean(&long, &entry(&long)).is_err());
    }

    #[test]
    fn whiteout_names_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ApplyOptions::default();
        for bad in [&b".wh."[..], b".wh..", b".wh...", b"a/.wh..", b".wh.a/b"] {
            let mut t = Vec::new();
            let h = super::super::tarfmt::encode_header(&super::super::tarfmt::UstarFields {
                name: bad,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                typeflag: b'0',
                linkname: b"",
                devmajor: 0,
                devminor: 0,
            });
            t.extend_from_slice(&h);
            t.extend_from_slice(&[0u8; 1024]);
            let err = apply(&t[..], dir.path(), &opts).unwrap_err();
            assert!(matches!(err, LayerError::InvalidWhiteout { .. }), "{}: {err}", dirfd::display(bad));
        }
    }
}
