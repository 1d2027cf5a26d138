//! Walking one selected item of a source root, fd-relative, for hashing and copying.
//!
//! The item itself is reached through the kernel's in-root resolution (its path is already
//! resolved by `select`); below it nothing is followed: directories are opened `O_NOFOLLOW`
//! relative to their parent, leaves are reported with their parent fd and name. Ignore rules
//! and `--exclude` patterns hide entries; an excluded directory an exception reaches into is
//! walked, and reported only when something below it is. Names with the `.wh.` prefix
//! (catalogue B6) and device nodes (B3) stop the walk; sockets are reported for the caller to
//! skip. Entries come sorted by name, parents before children.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use super::ignore::IgnoreFile;
use super::{ContextError, Selected, SourceRoot};
use crate::dirfd;

const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
}

impl Kind {
    /// A one-byte tag for hashing.
    pub(super) fn tag(self) -> u8 {
        match self {
            Kind::Dir => b'd',
            Kind::File => b'f',
            Kind::Symlink => b'l',
            Kind::Fifo => b'p',
            Kind::Socket => b's',
        }
    }
}

/// Where a leaf is: a name in a parent directory, or (for the item itself) an `O_PATH` handle.
#[derive(Clone, Copy)]
pub(super) enum At<'a> {
    Child { parent: BorrowedFd<'a>, name: &'a [u8] },
    Handle(BorrowedFd<'a>),
}

impl At<'_> {
    /// Opens a regular file for reading and checks it is still the inode `st` describes.
    pub(super) fn open_file(&self, st: &Stat) -> Result<std::fs::File, Errno> {
        let (file, now) = match *self {
            At::Child { parent, name } => dirfd::open_child_read(parent, name)?,
            At::Handle(handle) => {
                let file = dirfd::reopen_read(handle)?;
                let now = rustix::fs::fstat(&file)?;
                (file, now)
            }
        };
        if now.st_ino != st.st_ino || now.st_dev != st.st_dev || dirfd::file_type(&now) != FileType::RegularFile {
            return Err(Errno::STALE);
        }
        Ok(file)
    }

    /// Reads a symlink's target.
    pub(super) fn read_link(&self) -> Result<Vec<u8>, Errno> {
        let target = match *self {
            At::Child { parent, name } => rustix::fs::readlinkat(parent, dirfd::os(name), Vec::new())?,
            At::Handle(handle) => rustix::fs::readlinkat(handle, "", Vec::new())?,
        };
        Ok(target.into_bytes())
    }
}

/// One entry of the walk.
pub(super) struct Node<'a> {
    /// Relative to the selected item ("" = the item itself).
    pub rel: &'a [u8],
    /// Relative to the source root.
    pub src_rel: &'a [u8],
    pub st: &'a Stat,
    pub kind: Kind,
}

/// Receives the walk's entries.
pub(super) trait Visitor {
    /// A directory, before its children.
    fn enter_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError>;
    /// The same directory, after its children.
    fn leave_dir(&mut self, node: &Node<'_>) -> Result<(), ContextError>;
    /// Anything that is not a directory.
    fn leaf(&mut self, node: &Node<'_>, at: At<'_>) -> Result<(), ContextError>;
}

struct Frame {
    rel: Vec<u8>,
    src_rel: Vec<u8>,
    st: Stat,
    emitted: bool,
}

/// The walk's fixed inputs.
pub(super) struct Walk<'a> {
    pub src: &'a SourceRoot<'a>,
    pub root: BorrowedFd<'a>,
    pub excludes: Option<&'a IgnoreFile>,
}

fn read_err(path: &[u8]) -> impl FnOnce(Errno) -> ContextError + '_ {
    move |e| match e {
        Errno::LOOP => ContextError::SymlinkLoop { path: dirfd::display(path) },
        Errno::STALE => ContextError::Changed { path: dirfd::display(path) },
        e => ContextError::Read { path: dirfd::display(path), source: e.into() },
    }
}

/// Kind of a stat'ed entry; devices (and anything unknown) are refused.
fn kind_of(st: &Stat, src_rel: &[u8]) -> Result<Kind, ContextError> {
    match dirfd::file_type(st) {
        FileType::Directory => Ok(Kind::Dir),
        FileType::RegularFile => Ok(Kind::File),
        FileType::Symlink => Ok(Kind::Symlink),
        FileType::Fifo => Ok(Kind::Fifo),
        FileType::Socket => Ok(Kind::Socket),
        _ => Err(ContextError::Device { path: dirfd::display(src_rel) }),
    }
}

/// Refuses names the layer format reserves.
pub(super) fn check_name(name: &[u8], shown: &[u8]) -> Result<(), ContextError> {
    if name.starts_with(WHITEOUT_PREFIX) {
        return Err(ContextError::ReservedName { path: dirfd::display(shown) });
    }
    Ok(())
}

impl Walk<'_> {
    /// Walks `item`, reporting every visible entry to `v`.
    pub(super) fn run(&self, item: &Selected, v: &mut dyn Visitor) -> Result<(), ContextError> {
        let path = item.path.as_bytes();
        let handle = dirfd::path_handle_in_root(self.root, path).map_err(read_err(path))?;
        let st = rustix::fs::fstat(&handle).map_err(read_err(path))?;
        let kind = kind_of(&st, path)?;
        if kind != Kind::Dir {
            check_name(item.name.as_bytes(), path)?;
            return v.leaf(&Node { rel: b"", src_rel: path, st: &st, kind }, At::Handle(handle.as_fd()));
        }
        let dir = dirfd::open_in_root(self.root, path, dirfd::DIR_FLAGS).map_err(read_err(path))?;
        let mut stack = vec![Frame { rel: Vec::new(), src_rel: path.to_vec(), st, emitted: true }];
        v.enter_dir(&Node { rel: b"", src_rel: path, st: &st, kind })?;
        self.dir(dir, &mut stack, v)?;
        v.leave_dir(&Node { rel: b"", src_rel: path, st: &st, kind })
    }

    fn excluded(&self, rel: &[u8], src_rel: &[u8]) -> bool {
        if self.src.ignored(src_rel) {
            return true;
        }
        self.excludes.is_some_and(|ex| {
            ex.matches(&String::from_utf8_lossy(src_rel)).is_some()
                || ex.matches(&String::from_utf8_lossy(rel)).is_some()
        })
    }

    fn can_skip(&self, rel: &[u8], src_rel: &[u8]) -> bool {
        let skip = |ignore: &IgnoreFile, path: &[u8]| {
            let path = String::from_utf8_lossy(path);
            ignore.matches(&path).is_none() || ignore.can_skip_dir(&path)
        };
        let by_ignore = self.src.ignore.is_none_or(|ig| skip(ig, src_rel));
        let by_excludes = self.excludes.is_none_or(|ex| skip(ex, src_rel) && skip(ex, rel));
        by_ignore && by_excludes
    }

    /// Reports the enclosing directories not reported yet (excluded ones an exception reaches into).
    fn flush(stack: &mut [Frame], v: &mut dyn Visitor) -> Result<(), ContextError> {
        for frame in stack.iter_mut().filter(|f| !f.emitted) {
            let name = frame.rel.rsplit(|&b| b == b'/').next().unwrap_or_default();
            check_name(name, &frame.src_rel)?;
            frame.emitted = true;
            v.enter_dir(&Node { rel: &frame.rel, src_rel: &frame.src_rel, st: &frame.st, kind: Kind::Dir })?;
        }
        Ok(())
    }

    fn dir(&self, dir: OwnedFd, stack: &mut Vec<Frame>, v: &mut dyn Visitor) -> Result<(), ContextError> {
        let (rel, src_rel) = {
            let top = stack.last().expect("the walk pushes a frame per directory");
            (top.rel.clone(), top.src_rel.clone())
        };
        let names = dirfd::list_names(dir.as_fd()).map_err(read_err(&src_rel))?;
        for name in names {
            let child_rel = dirfd::join(&rel, &name);
            let child_src = dirfd::join(&src_rel, &name);
            let Some(st) = dirfd::lstat_at(dir.as_fd(), &name).map_err(read_err(&child_src))? else {
                continue; // removed since the listing
            };
            let excluded = self.excluded(&child_rel, &child_src);
            if dirfd::file_type(&st) == FileType::Directory {
                if excluded && self.can_skip(&child_rel, &child_src) {
                    continue;
                }
                let sub = dirfd::open_child_dir(dir.as_fd(), &name).map_err(read_err(&child_src))?;
                stack.push(Frame { rel: child_rel, src_rel: child_src, st, emitted: false });
                if !excluded {
                    Self::flush(stack, v)?;
                }
                self.dir(sub, stack, v)?;
                let frame = stack.pop().expect("pushed above");
                if frame.emitted {
                    v.leave_dir(&Node { rel: &frame.rel, src_rel: &frame.src_rel, st: &frame.st, kind: Kind::Dir })?;
                }
                continue;
            }
            if excluded {
                continue;
            }
            check_name(&name, &child_src)?;
            let kind = kind_of(&st, &child_src)?;
            Self::flush(stack, v)?;
            let node = Node { rel: &child_rel, src_rel: &child_src, st: &st, kind };
            v.leaf(&node, At::Child { parent: dir.as_fd(), name: &name })?;
        }
        Ok(())
    }
}
