//! A copy written straight into its layer: the tar entries [`copy`](super::copy) followed by a
//! diff of the snapshot would produce, made from the sources without creating a file.
//!
//! [`plan_layer`] walks the selection as `copy` does (same destination resolution, same
//! ownership and permission rules) and answers `None` — "copy it in a snapshot" — whenever the
//! result would depend on what the rootfs under the copy holds beyond its directories: a
//! destination of an item that exists in the lower tree (a replaced file, a merged directory), a
//! symlink or a non-directory on the way, two items writing one path, an item writing into a
//! directory another item made. What is left is the common case — files going to paths the
//! lower tree does not have — and for it the layer is, byte for byte, what the snapshot diff
//! writes (the `build_golden` test pins both):
//! * every entry of the copy, with its metadata after `--chown`/`--chmod`, in tar-path order,
//!   hardlinks within the copy as links to the first path in that order;
//! * every directory on the way: one the lower tree has keeps its metadata (its mtime becomes
//!   "now" when the copy creates an entry right in it), one the copy creates is 0755 (or the
//!   octal `--chmod`), owned by the `--chown` ids, mtime "now"; the rootfs root is no entry.
//!
//! File contents are read when the layer is written; a file that changed since it was planned
//! (another inode, another size) fails the copy as `copy` does.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;

use super::{At, ContextError, CopyOptions, Kind, Node, Prepared, Rules, Visitor, Walk, is_archive};
use crate::context::{COPIED_XATTRS, Chmod, Selection, SourceRoot};
use crate::dirfd::{self, Xattrs};
use crate::layer::{Entry, EntryKind, LayerError, TarWriter};

/// The entries of a copy's layer, planned; [`LayerPlan::write`] writes them.
pub struct LayerPlan {
    src_root: OwnedFd,
    /// Keyed by tar path (a directory's with its trailing `/`): the order they are written in.
    entries: BTreeMap<Vec<u8>, Planned>,
    /// Sockets left out (relative to the source root).
    pub skipped: Vec<String>,
}

/// One planned entry.
struct Planned {
    /// Relative to the rootfs, no trailing `/`.
    rel: Vec<u8>,
    what: What,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Xattrs,
}

enum What {
    Dir,
    /// A directory of the lower tree, written as it is there (mtime aside).
    LowerDir(PathBuf),
    File {
        src_rel: Vec<u8>,
        dev: u64,
        ino: u64,
        size: u64,
        linked: bool,
    },
    Symlink(Vec<u8>),
    Fifo,
}

/// Plans the layer that copying `selection` to `dest` on the tree `lower` (none: an empty tree,
/// `COPY --link`) makes, or says `None` when only a copy in a snapshot gives it (module doc).
/// `now` is the mtime of the directories the copy changes or creates.
pub fn plan_layer(
    src: &SourceRoot,
    selection: &Selection,
    lower: Option<&Path>,
    dest: &str,
    opts: &CopyOptions,
    now: i64,
) -> Result<Option<LayerPlan>, ContextError> {
    if selection.items.is_empty() {
        return Ok(None);
    }
    // Without a lower tree, the destination resolves in an empty directory.
    let empty;
    let lower_root = match lower {
        Some(l) => l,
        None => {
            empty = tempfile::tempdir().map_err(|e| ContextError::Open { path: std::env::temp_dir(), source: e })?;
            empty.path()
        }
    };
    let prepared = Prepared::new(src, selection, lower_root, dest, opts)?;
    let into_dir = prepared.files_go_into_dir(selection)?;
    let parent_mode = opts.chmod.as_ref().map_or(0o755, Chmod::created_dir_mode);
    let parent_ids = opts.chown.unwrap_or((0, 0));
    let mut planner = Planner {
        src_root: prepared.root.as_fd(),
        rules: Rules { chown: opts.chown, chmod: opts.chmod.as_ref(), from_context: opts.from_context },
        base: Vec::new(),
        parent_mode,
        parent_ids,
        entries: BTreeMap::new(),
        collided: false,
        skipped: Vec::new(),
    };
    // Directories on the way: whether the lower tree has them, and whether the copy creates an
    // entry right in them.
    let mut on_the_way: BTreeMap<Vec<u8>, (bool, bool)> = BTreeMap::new();
    let walk = Walk { src, root: prepared.root.as_fd(), excludes: prepared.excludes.as_ref() };
    for item in &selection.items {
        // An archive ADD unpacks: its entries meet the tree as `layer::apply` makes them.
        if !opts.parents
            && !item.is_dir
            && opts.unpack_archives
            && is_archive(prepared.root.as_fd(), item.path.as_bytes())?
        {
            return Ok(None);
        }
        let base = prepared.item_base(item, into_dir, opts.parents);
        if base.is_empty() {
            // Into the root itself: the root's own metadata is no entry of a diff.
            return Ok(None);
        }
        let Some(existing) = lower.map_or(Ok(Some(0)), |_| existing_prefix(prepared.out.root.as_fd(), &base))? else {
            return Ok(None);
        };
        for len in 1..base.len() {
            let path = base[..len].join(&b'/');
            let child_is_new = len + 1 > existing;
            let e = on_the_way.entry(path).or_insert((len <= existing, false));
            e.1 |= child_is_new;
        }
        planner.base = base;
        walk.run(item, &mut planner)?;
        if planner.collided {
            return Ok(None);
        }
    }
    let Planner { entries, skipped, .. } = planner;
    let mut entries = entries;
    for (path, (in_lower, touched)) in on_the_way {
        let mut key = path.clone();
        key.push(b'/');
        // A directory another item made: its times depend on the order of the writes.
        if entries.contains_key(&key) || entries.contains_key(&path) {
            return Ok(None);
        }
        let planned = if in_lower {
            let abs = lower_root.join(dirfd::os(&path));
            let mtime = if touched { now } else { i64::MIN };
            Planned { rel: path, what: What::LowerDir(abs), mode: 0, uid: 0, gid: 0, mtime, xattrs: Vec::new() }
        } else {
            let (uid, gid) = parent_ids;
            Planned { rel: path, what: What::Dir, mode: parent_mode, uid, gid, mtime: now, xattrs: Vec::new() }
        };
        entries.insert(key, planned);
    }
    Ok(Some(LayerPlan { src_root: prepared.root, entries, skipped }))
}

/// How many leading components of `base` are directories of the lower tree (never symlinks);
/// `None` when `base` itself exists or a non-directory is on the way.
fn existing_prefix(root: BorrowedFd<'_>, base: &[Vec<u8>]) -> Result<Option<usize>, ContextError> {
    let mut dir = rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(super::werr(b"", "duplicate fd"))?;
    for (i, comp) in base.iter().enumerate() {
        let shown = base[..=i].join(&b'/');
        match dirfd::lstat_at(dir.as_fd(), comp).map_err(super::werr(&shown, "inspect"))? {
            None => return Ok(Some(i)),
            Some(st) if dirfd::file_type(&st) == FileType::Directory && i + 1 < base.len() => {
                dir = dirfd::open_child_dir(dir.as_fd(), comp).map_err(super::werr(&shown, "open directory"))?;
            }
            Some(_) => return Ok(None),
        }
    }
    // `base` is the root itself (a directory item copied to `/`).
    Ok(None)
}

/// Walk visitor planning the entries.
struct Planner<'d> {
    src_root: BorrowedFd<'d>,
    rules: Rules<'d>,
    base: Vec<Vec<u8>>,
    parent_mode: u32,
    parent_ids: (u32, u32),
    entries: BTreeMap<Vec<u8>, Planned>,
    collided: bool,
    skipped: Vec<String>,
}

impl Planner<'_> {
    fn insert(&mut self, rel: &[u8], planned: Planned) {
        let mut key = self.base.join(&b'/');
        if !rel.is_empty() {
            key = dirfd::join(&key, rel);
        }
        let mut tar_key = key.clone();
        if matches!(planned.what, What::Dir) {
            tar_key.push(b'/');
        }
        let mut other = key.clone();
        if !matches!(planned.what, What::Dir) {
            other.push(b'/');
        }
        if self.entries.contains_key(&other) {
            self.collided = true;
        }
        let planned = Planned { rel: key, ..planned };
        if self.entries.insert(tar_key, planned).is_some() {
            self.collided = true;
        }
    }
}

impl Visitor for Planner<'_> {
    fn enter_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError> {
        let planned = if node.rel.is_empty() {
            // The item's destination directory, created as the parents are, with the source's times.
            let (uid, gid) = self.parent_ids;
            let mode = self.parent_mode;
            Planned { rel: Vec::new(), what: What::Dir, mode, uid, gid, mtime: node.st.st_mtime, xattrs: Vec::new() }
        } else {
            let read_err = |e: Errno| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() };
            let dir = dirfd::open_in_root(self.src_root, node.src_rel, dirfd::DIR_FLAGS | OFlags::NOFOLLOW)
                .map_err(read_err)?;
            let xattrs = dirfd::xattrs(dir.as_fd(), COPIED_XATTRS).map_err(read_err)?;
            let (uid, gid) = self.rules.ids(node.st);
            let mode = self.rules.mode(node.st);
            Planned { rel: Vec::new(), what: What::Dir, mode, uid, gid, mtime: node.st.st_mtime, xattrs }
        };
        self.insert(node.rel, planned);
        Ok(())
    }

    fn leave_dir(&mut self, _node: &Node<'_>) -> Result<(), ContextError> {
        Ok(())
    }

    fn leaf(&mut self, node: &Node<'_>, at: At<'_>) -> Result<(), ContextError> {
        let st = node.st;
        let (uid, gid) = self.rules.ids(st);
        let mtime = st.st_mtime;
        let (what, mode) = match node.kind {
            Kind::Socket => {
                self.skipped.push(dirfd::display(node.src_rel));
                return Ok(());
            }
            Kind::File => {
                let file = What::File {
                    src_rel: node.src_rel.to_vec(),
                    dev: st.st_dev,
                    ino: st.st_ino,
                    size: st.st_size as u64,
                    linked: st.st_nlink > 1,
                };
                (file, self.rules.mode(st))
            }
            Kind::Symlink => {
                let link = at
                    .read_link()
                    .map_err(|e| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() })?;
                (What::Symlink(link), 0o777)
            }
            Kind::Fifo => (What::Fifo, self.rules.mode(st)),
            Kind::Dir => unreachable!("directories are entered, not leaves"),
        };
        self.insert(node.rel, Planned { rel: Vec::new(), what, mode, uid, gid, mtime, xattrs: Vec::new() });
        Ok(())
    }
}

impl LayerPlan {
    /// Writes the planned entries; returns how many were written.
    pub fn write<W: Write>(self, tw: &mut TarWriter<W>) -> Result<u64, ContextError> {
        let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut written = 0u64;
        for (tar_path, p) in &self.entries {
            let layer_err = |source| ContextError::Layer { path: dirfd::display(&p.rel), source };
            let mut entry = Entry {
                path: tar_path.clone(),
                kind: EntryKind::Directory,
                link: Vec::new(),
                mode: p.mode,
                uid: u64::from(p.uid),
                gid: u64::from(p.gid),
                mtime: p.mtime,
                size: 0,
                devmajor: 0,
                devminor: 0,
                xattrs: p.xattrs.clone(),
            };
            match &p.what {
                What::Dir => {
                    tw.add_entry(&entry, &mut |_| Ok(0)).map_err(layer_err)?;
                }
                What::LowerDir(abs) => {
                    let mtime = (p.mtime != i64::MIN).then_some(p.mtime);
                    tw.add_path_with_mtime(Path::new(dirfd::os(&p.rel)), abs, mtime).map_err(layer_err)?;
                }
                What::Symlink(target) => {
                    entry.kind = EntryKind::Symlink;
                    entry.link = target.clone();
                    tw.add_entry(&entry, &mut |_| Ok(0)).map_err(layer_err)?;
                }
                What::Fifo => {
                    entry.kind = EntryKind::Fifo;
                    tw.add_entry(&entry, &mut |_| Ok(0)).map_err(layer_err)?;
                }
                What::File { src_rel, dev, ino, size, linked } => {
                    if *linked {
                        if let Some(first) = links.get(&(*dev, *ino)) {
                            entry.kind = EntryKind::Link;
                            entry.link = first.clone();
                            entry.xattrs = Vec::new();
                            tw.add_entry(&entry, &mut |_| Ok(0)).map_err(layer_err)?;
                            written += 1;
                            continue;
                        }
                        links.insert((*dev, *ino), p.rel.clone());
                    }
                    let mut file = self.open_source(src_rel, (*dev, *ino), *size)?;
                    let read_err = |e: Errno| ContextError::Read { path: dirfd::display(src_rel), source: e.into() };
                    entry.xattrs = dirfd::xattrs(file.as_fd(), COPIED_XATTRS).map_err(read_err)?;
                    entry.kind = EntryKind::Regular;
                    entry.size = *size;
                    let path = PathBuf::from(dirfd::os(src_rel));
                    let mut data = |buf: &mut [u8]| loop {
                        match file.read(buf) {
                            Ok(0) => return Err(LayerError::SourceChanged { path: path.clone() }),
                            Ok(n) => return Ok(n),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(source) => return Err(LayerError::ReadSource { path: path.clone(), source }),
                        }
                    };
                    tw.add_entry(&entry, &mut data).map_err(|e| match e {
                        LayerError::SourceChanged { .. } => ContextError::Changed { path: dirfd::display(src_rel) },
                        source => ContextError::Layer { path: dirfd::display(&p.rel), source },
                    })?;
                }
            }
            written += 1;
        }
        Ok(written)
    }

    /// Opens a planned file, checking it is still the inode and size it was.
    fn open_source(&self, src_rel: &[u8], id: (u64, u64), size: u64) -> Result<File, ContextError> {
        let changed = || ContextError::Changed { path: dirfd::display(src_rel) };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = dirfd::open_in_root(self.src_root.as_fd(), src_rel, flags).map_err(|e| match e {
            Errno::NOENT | Errno::LOOP | Errno::NOTDIR => changed(),
            e => ContextError::Read { path: dirfd::display(src_rel), source: e.into() },
        })?;
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| ContextError::Read { path: dirfd::display(src_rel), source: e.into() })?;
        if (st.st_dev, st.st_ino) != id || st.st_size as u64 != size || dirfd::file_type(&st) != FileType::RegularFile {
            return Err(changed());
        }
        Ok(File::from(fd))
    }
}
