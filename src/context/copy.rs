//! Copying a selection into a rootfs with Docker/BuildKit's `COPY`/`ADD` rules.
//!
//! Destination rules (`dest` is absolute inside the rootfs, WORKDIR already joined):
//!
//! | source | destination | result |
//! | --- | --- | --- |
//! | directory | any | its *contents* go into `dest` (created when missing) |
//! | file | ends with `/`, `dest_is_dir`, an existing directory, or several items selected | `dest/<name>` |
//! | file | otherwise | `dest` itself (an existing file is replaced; a symlink there is followed and its target written) |
//! | local tar archive, `unpack_archives` | any | unpacked into `dest` (a directory) through `layer::apply` |
//!
//! Several source patterns need a directory destination (Docker's error otherwise). The
//! destination is resolved as BuildKit resolves it: every symlink on its path, the last one and
//! dangling ones included, is followed inside the rootfs and what is missing is created
//! (`COPY f /link/` with `/link -> ../tmp/t` writes `/tmp/t/f`). Directories created on the way
//! — and the destination directory of a directory source when it is missing — are created as
//! BuildKit creates them: mode 0755 (an octal `--chmod`'s bits when given; a symbolic one leaves
//! them 0755), owned by the `--chown` ids, else 0:0; a directory source's own mode, owner and
//! xattrs do not reach its destination directory, only its times. When `--exclude` hid every
//! match, the destination directory is still created. Copied entries keep their mtime (ns) and
//! permission bits (or take `--chmod`, files and directories alike: an octal mode replaces the
//! bits, a symbolic one is applied to each entry's own bits, [`Chmod::apply`]); owners are 0:0
//! for context sources, the source's ids otherwise, the `--chown` ids when given.
//! Extended attributes of files and directories are copied (not overlayfs' own nor
//! `security.selinux`; what the destination refuses is counted in [`CopyReport::xattrs_skipped`]).
//! Symlinks are copied as symlinks (B2), hardlinks within one copy stay hardlinks, FIFOs are
//! recreated, sockets are skipped and reported ([`CopyReport::skipped`]), devices are refused
//! (B3). An existing destination directory given as `dest` keeps its own metadata; directories
//! below it take the source's. A symlink met below the destination, where a source directory
//! goes, is followed *inside the rootfs* too (merged-usr images: `/lib -> usr/lib`) — BuildKit
//! refuses that one with "cannot copy to non-directory"; following it inside the root is what
//! the classic builder did, and is safe.
//!
//! Confinement: the destination root is opened once; every directory is reached with
//! `openat2(RESOLVE_IN_ROOT)` from it and every leaf is created with `O_EXCL | O_NOFOLLOW`
//! after unlinking what was there, so no write ever lands outside `dest_root`. Data moves with
//! `copy_file_range` (reflinks where the filesystem offers them), falling back to read/write.
//!
//! An unpacked archive's entries keep the archive's ids and modes (as `layer::apply` gives them)
//! unless `--chown` is given, which then applies to every entry the archive holds (BuildKit's
//! rule); `--chmod` does not apply to archive entries.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::ignore::clean_path;
use super::walk::{At, Kind, Node, Visitor, Walk, check_name};
use super::{COPIED_XATTRS, Chmod, ContextError, Selected, Selection, SourceRoot, compile_excludes};
use crate::dirfd;
use crate::layer::{ApplyOptions, decompress};

mod archive;
use archive::{is_archive, unpack};

mod layer;
pub use layer::{LayerPlan, plan_layer};

/// How `copy` and `write_inline` behave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `--chown` resolved to ids (None: keep 0:0 for context files — Docker's rule: files from the context are
    /// owned by root unless --chown; from a stage/image they keep their uid/gid).
    pub chown: Option<(u32, u32)>,
    /// `--chmod` for files and dirs copied (BuildKit applies it to both).
    pub chmod: Option<Chmod>,
    /// ADD: a local source that is a tar archive (plain, gzip, bzip2, xz, zstd — detected by content, as Docker)
    /// is unpacked into the destination directory through `layer::apply` (confined) instead of copied.
    pub unpack_archives: bool,
    /// Ownership rule: true for a source that is the build context (owner becomes 0:0 unless chown).
    pub from_context: bool,
    /// `COPY --exclude` patterns.
    pub excludes: Vec<String>,
    /// The instruction has more than one source (or the destination ends with `/`): the destination is a
    /// directory (Docker: "When using COPY with more than one source file, the destination must be a
    /// directory and end with a /" — an error otherwise).
    pub dest_is_dir: bool,
    /// `COPY --parents`: each source lands at `dest/<Selected::keep>` (a directory itself, not
    /// only its contents), the directories on the way created as parents are.
    pub parents: bool,
}

/// What `copy` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Non-directory entries written (files, links, FIFOs; entries of unpacked archives).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Sockets not copied (relative to the source root), for the caller to warn about.
    pub skipped: Vec<String>,
    /// Archives unpacked.
    pub archives: u64,
    /// Extended attributes the destination refused (no support, or not permitted).
    pub xattrs_skipped: u64,
}

/// The destination rootfs, opened once.
struct Dest {
    root: OwnedFd,
    /// Owner of directories created on the way: the `--chown` ids, else 0:0 (BuildKit).
    parent_ids: (u32, u32),
    /// Permission bits of directories created on the way: an octal `--chmod` (its `0o777`
    /// part), else 0755 (BuildKit, [`Chmod::created_dir_mode`]).
    parent_mode: u32,
}

/// How many symlinks resolving a destination may follow (Linux's own limit).
const MAX_LINK_HOPS: u32 = 40;

fn werr<'p>(path: &'p [u8], op: &'static str) -> impl FnOnce(Errno) -> ContextError + 'p {
    move |e| ContextError::Write { path: format!("/{}", dirfd::display(path)), op, source: e.into() }
}

/// Cleans `dest` into components below the rootfs; also says whether it ends with `/`.
fn dest_comps(dest: &str) -> (Vec<Vec<u8>>, bool) {
    let trailing = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let cleaned = clean_path(&format!("/{dest}"));
    let comps = cleaned.split('/').filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec()).collect();
    (comps, trailing)
}

impl Dest {
    fn open(dest_root: &Path, opts: &CopyOptions) -> Result<Dest, ContextError> {
        let root = dirfd::open_root(dest_root)
            .map_err(|e| ContextError::Open { path: dest_root.to_path_buf(), source: e.into() })?;
        let parent_mode = opts.chmod.as_ref().map_or(0o755, Chmod::created_dir_mode);
        Ok(Dest { root, parent_ids: opts.chown.unwrap_or((0, 0)), parent_mode })
    }

    /// Where `comps` really is: every symlink on the way — the last component's too, and
    /// dangling ones — followed inside the root, as BuildKit resolves a destination. The
    /// components from the first missing one on are kept as they are (nothing there to follow).
    /// Every lookup is an `openat2(RESOLVE_IN_ROOT)` of a symlink-free path plus an `lstat` of
    /// one name, so an absolute or `..` target stays clamped at the root.
    fn resolve(&self, comps: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ContextError> {
        let mut real: Vec<Vec<u8>> = Vec::new();
        let mut todo: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut hops = 0;
        let mut missing = false;
        while let Some(comp) = todo.pop_front() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    real.pop();
                    continue;
                }
                _ => {}
            }
            if missing {
                real.push(comp);
                continue;
            }
            let parent_path = real.join(&b'/');
            let parent = match dirfd::open_in_root(self.root.as_fd(), &parent_path, dirfd::DIR_FLAGS) {
                Ok(fd) => fd,
                // A file on the way: left for the caller to report.
                Err(Errno::NOENT | Errno::NOTDIR) => {
                    missing = true;
                    real.push(comp);
                    continue;
                }
                Err(e) => return Err(werr(&parent_path, "open directory")(e)),
            };
            let shown = dirfd::join(&parent_path, &comp);
            match dirfd::lstat_at(parent.as_fd(), &comp).map_err(werr(&shown, "inspect"))? {
                Some(st) if dirfd::file_type(&st) == FileType::Symlink => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(ContextError::SymlinkLoop { path: format!("/{}", dirfd::display(&shown)) });
                    }
                    let target = rustix::fs::readlinkat(&parent, dirfd::os(&comp), Vec::new())
                        .map_err(werr(&shown, "read link"))?
                        .into_bytes();
                    if target.starts_with(b"/") {
                        real.clear();
                    }
                    for c in target.split(|&b| b == b'/').rev() {
                        todo.push_front(c.to_vec());
                    }
                }
                Some(_) => real.push(comp),
                None => {
                    missing = true;
                    real.push(comp);
                }
            }
        }
        Ok(real)
    }

    /// Whether `comps` resolves (inside the root) to an existing directory.
    fn is_dir(&self, comps: &[Vec<u8>]) -> Result<bool, ContextError> {
        let path = comps.join(&b'/');
        match dirfd::path_handle_in_root(self.root.as_fd(), &path) {
            Ok(h) => {
                let st = rustix::fs::fstat(&h).map_err(werr(&path, "inspect"))?;
                Ok(dirfd::file_type(&st) == FileType::Directory)
            }
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(werr(&path, "inspect")(e)),
        }
    }

    /// Opens the directory `comps`, creating what is missing (`parent_mode`, owned by `parent_ids`).
    /// Returns the fd and whether the last component was created.
    fn open_or_create_dir(&self, comps: &[Vec<u8>]) -> Result<(OwnedFd, bool), ContextError> {
        let path = comps.join(&b'/');
        match dirfd::open_in_root(self.root.as_fd(), &path, dirfd::DIR_FLAGS) {
            Ok(fd) => return Ok((fd, false)),
            Err(Errno::NOENT) => {}
            Err(Errno::NOTDIR) => {
                return Err(ContextError::NotADirectory { path: format!("/{}", dirfd::display(&path)) });
            }
            Err(e) => return Err(werr(&path, "open directory")(e)),
        }
        let mut fd =
            dirfd::open_in_root(self.root.as_fd(), b"", dirfd::DIR_FLAGS).map_err(werr(b"", "open directory"))?;
        let mut created = false;
        for i in 0..comps.len() {
            let sub = comps[..=i].join(&b'/');
            match dirfd::open_in_root(self.root.as_fd(), &sub, dirfd::DIR_FLAGS) {
                Ok(next) => {
                    fd = next;
                    created = false;
                }
                Err(Errno::NOENT) => {
                    check_name(&comps[i], &sub)?;
                    let mode = Mode::from_raw_mode(self.parent_mode);
                    match rustix::fs::mkdirat(&fd, dirfd::os(&comps[i]), mode) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(werr(&sub, "create directory")(e)),
                    }
                    let next = dirfd::open_child_dir(fd.as_fd(), &comps[i]).map_err(werr(&sub, "open directory"))?;
                    let (uid, gid) = self.parent_ids;
                    fchown(next.as_fd(), uid, gid).map_err(werr(&sub, "chown"))?;
                    rustix::fs::fchmod(&next, mode).map_err(werr(&sub, "chmod"))?;
                    fd = next;
                    created = true;
                }
                Err(Errno::NOTDIR) => {
                    return Err(ContextError::NotADirectory { path: format!("/{}", dirfd::display(&sub)) });
                }
                Err(e) => return Err(werr(&sub, "open directory")(e)),
            }
        }
        Ok((fd, created))
    }
}

fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    let st = rustix::fs::fstat(fd)?;
    if st.st_uid == uid && st.st_gid == gid {
        return Ok(());
    }
    rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
}

fn lchown_at(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> Result<(), Errno> {
    let (u, g) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    match rustix::fs::chownat(dir, dirfd::os(name), Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW) {
        // Unprivileged and already the owner: nothing to change.
        Err(Errno::PERM) if !rustix::process::geteuid().is_root() => {
            let st = rustix::fs::statat(dir, dirfd::os(name), AtFlags::SYMLINK_NOFOLLOW)?;
            if st.st_uid == uid && st.st_gid == gid { Ok(()) } else { Err(Errno::PERM) }
        }
        other => other,
    }
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    let t = Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ };
    Timestamps { last_access: t, last_modification: t }
}

/// Ownership and permission rules of one copy.
struct Rules<'o> {
    chown: Option<(u32, u32)>,
    chmod: Option<&'o Chmod>,
    from_context: bool,
}

impl Rules<'_> {
    fn ids(&self, st: &rustix::fs::Stat) -> (u32, u32) {
        match (self.chown, self.from_context) {
            (Some(ids), _) => ids,
            (None, true) => (0, 0),
            (None, false) => (st.st_uid, st.st_gid),
        }
    }

    fn mode(&self, st: &rustix::fs::Stat) -> u32 {
        let own = st.st_mode & 0o7777;
        self.chmod.map_or(own, |c| c.apply(own, dirfd::file_type(st) == FileType::Directory))
    }
}

/// What `copy` and [`plan_layer`] share: the destination checked and resolved in a rootfs, the
/// source root opened, the exclude patterns compiled.
struct Prepared {
    comps: Vec<Vec<u8>>,
    forced_dir: bool,
    excludes: Option<super::ignore::IgnoreFile>,
    root: OwnedFd,
    out: Dest,
}

impl Prepared {
    fn new(
        src: &SourceRoot,
        selection: &Selection,
        dest_root: &Path,
        dest: &str,
        opts: &CopyOptions,
    ) -> Result<Prepared, ContextError> {
        let (comps, trailing) = dest_comps(dest);
        let mut patterns: Vec<&str> = selection.items.iter().map(|i| i.pattern.as_str()).collect();
        patterns.dedup();
        let forced_dir = opts.dest_is_dir || trailing || opts.parents;
        if patterns.len() > 1 && !forced_dir {
            return Err(ContextError::DestNotDir { dest: dest.to_owned() });
        }
        for (i, c) in comps.iter().enumerate() {
            check_name(c, &comps[..=i].join(&b'/'))?;
        }
        let excludes = compile_excludes(&opts.excludes)?;
        let (root, _) = src.open()?;
        let out = Dest::open(dest_root, opts)?;
        let comps = out.resolve(&comps)?;
        Ok(Prepared { comps, forced_dir, excludes, root, out })
    }

    /// Whether file items go into the destination as `dest/<name>` (else a file item is `dest`).
    fn files_go_into_dir(&self, selection: &Selection) -> Result<bool, ContextError> {
        let comps = &self.comps;
        Ok(self.forced_dir || selection.items.len() > 1 || comps.is_empty() || self.out.is_dir(comps)?)
    }

    /// Where an item goes (not an archive ADD unpacks): a directory item's contents into the
    /// destination, a file to `dest/<name>` or `dest`, a `--parents` item below its kept path.
    fn item_base(&self, item: &Selected, into_dir: bool, parents: bool) -> Vec<Vec<u8>> {
        let mut base = self.comps.clone();
        if parents {
            base.extend(item.keep.split('/').filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec()));
        } else if !item.is_dir && into_dir {
            base.push(item.name.as_bytes().to_vec());
        }
        base
    }
}

/// Copies the selection into the rootfs at `dest_root`, destination `dest` (absolute inside the rootfs,
/// already joined with WORKDIR by the caller), with Docker/BuildKit's rules (module doc). Every write
/// is confined to `dest_root`.
pub fn copy(
    src: &SourceRoot,
    selection: &Selection,
    dest_root: &Path,
    dest: &str,
    opts: &CopyOptions,
) -> Result<CopyReport, ContextError> {
    let prepared = Prepared::new(src, selection, dest_root, dest, opts)?;
    let Prepared { comps, excludes, root, out, .. } = &prepared;
    if selection.items.is_empty() {
        // `--exclude` hid every match: BuildKit still creates the destination directory.
        out.open_or_create_dir(comps)?;
        return Ok(CopyReport::default());
    }
    let into_dir = prepared.files_go_into_dir(selection)?;
    let rules = Rules { chown: opts.chown, chmod: opts.chmod.as_ref(), from_context: opts.from_context };
    let mut copier = Copier {
        dest: out,
        src_root: root.as_fd(),
        rules,
        base: Vec::new(),
        stack: Vec::new(),
        links: HashMap::new(),
        report: CopyReport::default(),
    };
    let walk = Walk { src, root: root.as_fd(), excludes: excludes.as_ref() };
    for item in &selection.items {
        if !opts.parents && !item.is_dir && opts.unpack_archives && is_archive(root.as_fd(), item.path.as_bytes())? {
            unpack(root.as_fd(), &item.path, out, comps, opts.chown, &mut copier.report)?;
            continue;
        }
        copier.base = prepared.item_base(item, into_dir, opts.parents);
        walk.run(item, &mut copier)?;
    }
    Ok(copier.report)
}

/// Walk visitor writing into the destination.
struct Copier<'d> {
    dest: &'d Dest,
    /// The source root (to read directories' xattrs).
    src_root: BorrowedFd<'d>,
    rules: Rules<'d>,
    /// Destination of the current item's root ("" rel).
    base: Vec<Vec<u8>>,
    /// Open destination directories, with what to apply from the source when leaving them.
    stack: Vec<(OwnedFd, Option<Restore>)>,
    /// (dev, ino) of multiply-linked source files → their first destination path.
    links: HashMap<(u64, u64), Vec<u8>>,
    report: CopyReport,
}

impl Copier<'_> {
    /// Copies a source directory's xattrs onto its destination (after the chown).
    fn copy_dir_xattrs(&mut self, node: &Node<'_>, dest: BorrowedFd<'_>, target: &[u8]) -> Result<(), ContextError> {
        let read_err = |e: Errno| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() };
        let dir =
            dirfd::open_in_root(self.src_root, node.src_rel, dirfd::DIR_FLAGS | OFlags::NOFOLLOW).map_err(read_err)?;
        let xattrs = dirfd::xattrs(dir.as_fd(), COPIED_XATTRS).map_err(read_err)?;
        self.report.xattrs_skipped += dirfd::set_xattrs(dest, &xattrs).map_err(werr(target, "set xattrs of"))?;
        Ok(())
    }

    /// Destination path (relative to the rootfs) of an entry `rel` below the item.
    fn target(&self, rel: &[u8]) -> Vec<u8> {
        let base = self.base.join(&b'/');
        dirfd::join(&base, rel)
    }

    /// Parent fd and name of the destination of a leaf.
    fn leaf_parent(&self, rel: &[u8]) -> Result<(OwnedFd, Vec<u8>, bool), ContextError> {
        if rel.is_empty() {
            // The item itself is a file: `base` is its full destination.
            let (name, parent) = self.base.split_last().ok_or(ContextError::IsADirectory { path: "/".to_owned() })?;
            let (fd, _) = self.dest.open_or_create_dir(parent)?;
            return Ok((fd, name.clone(), true));
        }
        let (_, name) = rel.rsplit_once_byte();
        let top = &self.stack.last().expect("leaves below an item come inside its directory").0;
        let fd = rustix::io::fcntl_dupfd_cloexec(top, 0).map_err(werr(rel, "duplicate fd"))?;
        Ok((fd, name.to_vec(), false))
    }
}

/// What a directory takes from its source once its entries are written.
enum Restore {
    /// The times (the destination directory of an item, created like a parent).
    Times(rustix::fs::Stat),
    /// The permission bits (or `--chmod`) and the times (directories below the item).
    ModeAndTimes(rustix::fs::Stat),
}

trait SplitLast {
    fn rsplit_once_byte(&self) -> (&[u8], &[u8]);
}

impl SplitLast for [u8] {
    fn rsplit_once_byte(&self) -> (&[u8], &[u8]) {
        match self.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self[..i], &self[i + 1..]),
            None => (&[], self),
        }
    }
}

impl Visitor for Copier<'_> {
    fn enter_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError> {
        let target = self.target(node.rel);
        if node.rel.is_empty() {
            // The destination of a directory item: created like the parents on the way (BuildKit
            // makes it before copying the contents), so it takes the source's times only.
            let (fd, created) = self.dest.open_or_create_dir(&self.base)?;
            self.stack.push((fd, created.then_some(Restore::Times(*node.st))));
            return Ok(());
        }
        let (_, name) = node.rel.rsplit_once_byte();
        let parent = self.stack.last().expect("entered the item's directory first").0.as_fd();
        let existing = dirfd::lstat_at(parent, name).map_err(werr(&target, "inspect"))?;
        let (fd, meta) = match existing.as_ref().map(dirfd::file_type) {
            None => {
                rustix::fs::mkdirat(parent, dirfd::os(name), Mode::from_raw_mode(0o700))
                    .map_err(werr(&target, "create directory"))?;
                (dirfd::open_child_dir(parent, name).map_err(werr(&target, "open directory"))?, true)
            }
            Some(FileType::Directory) => {
                (dirfd::open_child_dir(parent, name).map_err(werr(&target, "open directory"))?, true)
            }
            // A symlink in the destination: followed inside the rootfs, its target left alone.
            Some(FileType::Symlink) => match dirfd::open_in_root(self.dest.root.as_fd(), &target, dirfd::DIR_FLAGS) {
                Ok(fd) => (fd, false),
                Err(Errno::NOENT | Errno::NOTDIR) => {
                    return Err(ContextError::NotADirectory { path: format!("/{}", dirfd::display(&target)) });
                }
                Err(e) => return Err(werr(&target, "open directory")(e)),
            },
            Some(_) => return Err(ContextError::NotADirectory { path: format!("/{}", dirfd::display(&target)) }),
        };
        if meta {
            let (uid, gid) = self.rules.ids(node.st);
            fchown(fd.as_fd(), uid, gid).map_err(werr(&target, "chown"))?;
            self.copy_dir_xattrs(node, fd.as_fd(), &target)?;
        }
        self.stack.push((fd, meta.then_some(Restore::ModeAndTimes(*node.st))));
        Ok(())
    }

    fn leave_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError> {
        let (fd, restore) = self.stack.pop().expect("every leave follows its enter");
        let target = self.target(node.rel);
        let st = match restore {
            None => return Ok(()),
            Some(Restore::Times(st)) => st,
            Some(Restore::ModeAndTimes(st)) => {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(self.rules.mode(&st))).map_err(werr(&target, "chmod"))?;
                st
            }
        };
        rustix::fs::futimens(&fd, &times(&st)).map_err(werr(&target, "set times of"))?;
        Ok(())
    }

    fn leaf(&mut self, node: &Node<'_>, at: At<'_>) -> Result<(), ContextError> {
        let target = self.target(node.rel);
        if node.kind == Kind::Socket {
            self.report.skipped.push(dirfd::display(node.src_rel));
            return Ok(());
        }
        let (dir, name, _) = self.leaf_parent(node.rel)?;
        let dir = dir.as_fd();
        check_name(&name, &target)?;
        match dirfd::lstat_at(dir, &name).map_err(werr(&target, "inspect"))? {
            Some(st) if dirfd::file_type(&st) == FileType::Directory => {
                return Err(ContextError::IsADirectory { path: format!("/{}", dirfd::display(&target)) });
            }
            Some(_) => {
                rustix::fs::unlinkat(dir, dirfd::os(&name), AtFlags::empty()).map_err(werr(&target, "replace"))?
            }
            None => {}
        }
        let st = node.st;
        let (uid, gid) = self.rules.ids(st);
        match node.kind {
            Kind::File => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let (fparent, fname) = first.rsplit_once_byte();
                        let pfd = dirfd::open_in_root(self.dest.root.as_fd(), fparent, dirfd::DIR_FLAGS)
                            .map_err(werr(first, "open directory"))?;
                        rustix::fs::linkat(&pfd, dirfd::os(fname), dir, dirfd::os(&name), AtFlags::empty())
                            .map_err(werr(&target, "hardlink"))?;
                        self.report.files += 1;
                        return Ok(());
                    }
                    self.links.insert(key, target.clone());
                }
                let mut input = at.open_file(st).map_err(|e| match e {
                    Errno::STALE => ContextError::Changed { path: dirfd::display(node.src_rel) },
                    e => ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() },
                })?;
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let out = rustix::fs::openat(dir, dirfd::os(&name), flags, Mode::from_raw_mode(0o600))
                    .map_err(werr(&target, "create"))?;
                let mut out = File::from(out);
                let n = copy_data(&mut input, &mut out)
                    .map_err(|source| ContextError::Read { path: dirfd::display(node.src_rel), source })?;
                if n != st.st_size as u64 {
                    return Err(ContextError::Changed { path: dirfd::display(node.src_rel) });
                }
                // chown first: it clears `security.capability` and the setuid bits.
                fchown(out.as_fd(), uid, gid).map_err(werr(&target, "chown"))?;
                let xattrs = dirfd::xattrs(input.as_fd(), COPIED_XATTRS)
                    .map_err(|e| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() })?;
                self.report.xattrs_skipped +=
                    dirfd::set_xattrs(out.as_fd(), &xattrs).map_err(werr(&target, "set xattrs of"))?;
                rustix::fs::fchmod(&out, Mode::from_raw_mode(self.rules.mode(st))).map_err(werr(&target, "chmod"))?;
                rustix::fs::futimens(&out, &times(st)).map_err(werr(&target, "set times of"))?;
                self.report.bytes += n;
            }
            Kind::Symlink => {
                let link = at
                    .read_link()
                    .map_err(|e| ContextError::Read { path: dirfd::display(node.src_rel), source: e.into() })?;
                rustix::fs::symlinkat(dirfd::os(&link), dir, dirfd::os(&name))
                    .map_err(werr(&target, "create symlink"))?;
                lchown_at(dir, &name, uid, gid).map_err(werr(&target, "chown"))?;
                rustix::fs::utimensat(dir, dirfd::os(&name), &times(st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(werr(&target, "set times of"))?;
            }
            Kind::Fifo => {
                let mode = Mode::from_raw_mode(self.rules.mode(st));
                rustix::fs::mknodat(dir, dirfd::os(&name), FileType::Fifo, mode, 0)
                    .map_err(werr(&target, "create fifo"))?;
                lchown_at(dir, &name, uid, gid).map_err(werr(&target, "chown"))?;
                rustix::fs::chmodat(dir, dirfd::os(&name), mode, AtFlags::empty()).map_err(werr(&target, "chmod"))?;
                rustix::fs::utimensat(dir, dirfd::os(&name), &times(st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(werr(&target, "set times of"))?;
            }
            Kind::Dir | Kind::Socket => unreachable!("directories and sockets are handled above"),
        }
        self.report.files += 1;
        Ok(())
    }
}

/// Copies all of `input` to `out`: `copy_file_range` (in-kernel, reflinks where possible), or a
/// read/write loop where the kernel or filesystem cannot.
fn copy_data(input: &mut File, out: &mut File) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        match rustix::fs::copy_file_range(&*input, None, &*out, None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::PERM) if total == 0 => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Opens a selected regular file (by its resolved path) for reading.
fn open_source(root: BorrowedFd<'_>, path: &[u8]) -> Result<Option<File>, ContextError> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let handle = dirfd::path_handle_in_root(root, path)
        .map_err(|e| ContextError::Read { path: dirfd::display(path), source: e.into() })?;
    let st =
        rustix::fs::fstat(&handle).map_err(|e| ContextError::Read { path: dirfd::display(path), source: e.into() })?;
    if dirfd::file_type(&st) != FileType::RegularFile {
        return Ok(None);
    }
    let fd = dirfd::open_in_root(root, path, flags)
        .map_err(|e| ContextError::Read { path: dirfd::display(path), source: e.into() })?;
    Ok(Some(File::from(fd)))
}

/// A heredoc source (`COPY <<EOF /x`): writes `content` as file `name` at `dest` (same dest rules; mode
/// 0644, or `--chmod` applied to 0644 as BuildKit's copy of its 0644 file does; owner 0:0 unless chown,
/// mtime = `mtime`).
pub fn write_inline(
    dest_root: &Path,
    dest: &str,
    name: &str,
    content: &[u8],
    mtime: i64,
    opts: &CopyOptions,
) -> Result<(), ContextError> {
    let (comps, trailing) = dest_comps(dest);
    let out = Dest::open(dest_root, opts)?;
    let mut comps = out.resolve(&comps)?;
    if opts.dest_is_dir || trailing || comps.is_empty() || out.is_dir(&comps)? {
        comps.push(name.as_bytes().to_vec());
    }
    for (i, c) in comps.iter().enumerate() {
        check_name(c, &comps[..=i].join(&b'/'))?;
    }
    let target = comps.join(&b'/');
    let (file_name, parent) = comps.split_last().expect("a file name was pushed or dest names one");
    let (dir, _) = out.open_or_create_dir(parent)?;
    match dirfd::lstat_at(dir.as_fd(), file_name).map_err(werr(&target, "inspect"))? {
        Some(st) if dirfd::file_type(&st) == FileType::Directory => {
            return Err(ContextError::IsADirectory { path: format!("/{}", dirfd::display(&target)) });
        }
        Some(_) => {
            rustix::fs::unlinkat(&dir, dirfd::os(file_name), AtFlags::empty()).map_err(werr(&target, "replace"))?
        }
        None => {}
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, dirfd::os(file_name), flags, Mode::from_raw_mode(0o600))
        .map_err(werr(&target, "create"))?;
    let mut file = File::from(fd);
    file.write_all(content).map_err(|e| ContextError::Write {
        path: format!("/{}", dirfd::display(&target)),
        op: "write",
        source: e,
    })?;
    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    fchown(file.as_fd(), uid, gid).map_err(werr(&target, "chown"))?;
    let mode = opts.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false));
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(werr(&target, "chmod"))?;
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    rustix::fs::futimens(&file, &Timestamps { last_access: t, last_modification: t })
        .map_err(werr(&target, "set times of"))?;
    Ok(())
}

/// `WORKDIR`: creates `path` (absolute, resolved inside `rootfs`) and its missing parents, 0755
/// and owned by `owner` (the stage's `USER`, else root), as BuildKit does; an existing
/// directory is left as it is.
pub fn make_dir(rootfs: &Path, path: &str, owner: Option<(u32, u32)>) -> Result<(), ContextError> {
    let (comps, _) = dest_comps(path);
    let opts = CopyOptions { chown: owner, ..CopyOptions::default() };
    Dest::open(rootfs, &opts)?.open_or_create_dir(&comps).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_components_and_trailing_slash() {
        let table: &[(&str, &[&str], bool)] = &[
            ("/app", &["app"], false),
            ("/app/", &["app"], true),
            ("/app/.", &["app"], true),
            ("/", &[], true),
            ("/a/../b//c/", &["b", "c"], true),
            ("/../../etc/passwd", &["etc", "passwd"], false),
            ("rel/x", &["rel", "x"], false),
        ];
        for (dest, want, trailing) in table {
            let (comps, t) = dest_comps(dest);
            let comps: Vec<&str> = comps.iter().map(|c| std::str::from_utf8(c).unwrap()).collect();
            assert_eq!((comps.as_slice(), t), (*want, *trailing), "{dest}");
        }
    }
}
