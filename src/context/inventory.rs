//! The build context as a whole, for `slipway context`: every entry with its size and what
//! becomes of it — read by the builder itself, selected by a `COPY`/`ADD`/`RUN --mount=type=bind`
//! (a [`Reader`]), sent for nothing, or excluded by an ignore rule (named, with the `!` line that
//! brought a path back when one did) — plus totals and the largest directories.
//!
//! One walk of the context, in place: `getdents` + `lstat`, fd-relative, no symlink followed, no
//! file opened. Entries go to an [`InventorySink`] as they are found, so memory is the listings
//! of the open directories and a few counters each, whatever the size of the context. A
//! directory an ignore rule excludes as a whole (no exception reaches inside: the builder never
//! looks into it) is one entry with the count and size of what lies below, walked to count and
//! never listed; what cannot be read there is left out and said ([`Below::complete`]), since the
//! build would not read it either. Sizes are those of regular files; other entries count 0 bytes.
//!
//! Whether a reader selects a file follows `copy`'s walk: below a selected directory every entry
//! is copied unless an ignore rule or one of the reader's `--exclude` patterns (matched against
//! the path in the context and the path below the selected item) hides it.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use super::ignore::{Decision, IgnoreFile, Rule, clean_path};
use super::{Context, ContextError, Selected, compile_excludes};
use crate::dirfd;

/// What one `COPY`/`ADD`/bind mount selects from the context ([`super::select`]'s items) and
/// the `--exclude` patterns its walk applies.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub items: &'a [Selected],
    pub excludes: &'a [String],
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Symlink,
    Fifo,
    Socket,
    Device,
    /// Only a directory excluded as a whole is an entry; the others are summed in
    /// [`Inventory::largest`].
    Dir,
}

impl EntryKind {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
            EntryKind::Device => "device",
            EntryKind::Dir => "dir",
        }
    }
}

/// A count of files (anything but directories) and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.files += other.files;
        self.bytes += other.bytes;
    }

    fn one(bytes: u64) -> Totals {
        Totals { files: 1, bytes }
    }
}

/// What becomes of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'a> {
    /// Selected by these readers (indices into the readers given to [`inventory`]).
    Used(&'a [usize]),
    /// Read by the builder itself (the Dockerfile, the ignore file) and selected by no reader.
    Builder,
    /// No rule excludes it, and nothing reads it: sent for nothing.
    Unused,
    /// Excluded by this rule.
    Excluded(&'a Rule),
}

/// What lies below a directory excluded as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Below {
    pub totals: Totals,
    /// False when part of it could not be read (it is left out of `totals`).
    pub complete: bool,
}

/// One entry of the context.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Relative to the context root, `/`-separated, non-UTF-8 bytes escaped.
    pub path: &'a str,
    pub kind: EntryKind,
    /// Bytes of a regular file (for an excluded directory, of everything below it); else 0.
    pub size: u64,
    pub status: Status<'a>,
    /// A sent entry an exception brought back: the `!` rule and the excluding rule it overrode.
    pub reincluded: Option<(&'a Rule, &'a Rule)>,
    /// A directory excluded as a whole: what lies below it.
    pub below: Option<Below>,
}

/// Receives the entries of [`inventory`] in walk order: names sorted bytewise in each
/// directory, a directory's entries right after its name.
pub trait InventorySink {
    /// One entry.
    fn entry(&mut self, entry: &Entry<'_>) -> std::io::Result<()>;
}

/// One directory's files, by what becomes of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSummary {
    /// Relative to the context root.
    pub path: String,
    /// Sent: used, unused or read by the builder.
    pub sent: Totals,
    /// Sent for nothing (part of `sent`).
    pub unused: Totals,
    pub excluded: Totals,
}

impl DirSummary {
    /// Everything below it, sent or excluded.
    pub fn total(&self) -> Totals {
        let mut t = self.sent;
        t.add(self.excluded);
        t
    }
}

/// The totals of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub used: Totals,
    pub builder: Totals,
    pub unused: Totals,
    pub excluded: Totals,
    /// What each reader selects (a file two readers select counts for both).
    pub per_reader: Vec<Totals>,
    /// The directories with the most bytes below them (sent and excluded), largest first
    /// (ties by path), at most the number asked for; the root is not one.
    pub largest: Vec<DirSummary>,
    /// False when part of a directory excluded as a whole could not be read.
    pub complete: bool,
}

impl Inventory {
    /// Everything no rule excludes.
    pub fn sent(&self) -> Totals {
        let mut t = self.used;
        t.add(self.builder);
        t.add(self.unused);
        t
    }
}

/// Walks `context` once: each entry to `sink`, the totals returned. `readers` are the context's
/// readers in the build, `builder_files` the context paths the builder reads itself (the
/// Dockerfile and the ignore file, when they lie in the context), `largest` how many directories
/// [`Inventory::largest`] keeps.
pub fn inventory(
    context: &Context,
    readers: &[Reader<'_>],
    builder_files: &[String],
    largest: usize,
    sink: &mut dyn InventorySink,
) -> Result<Inventory, ContextError> {
    let mut selected: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, reader) in readers.iter().enumerate() {
        for item in reader.items {
            let readers = selected.entry(item.path.as_bytes()).or_default();
            if !readers.contains(&i) {
                readers.push(i);
            }
        }
    }
    let excludes = readers.iter().map(|r| compile_excludes(r.excludes)).collect::<Result<Vec<_>, _>>()?;
    let builder = builder_files.iter().map(|f| clean_path(&format!("/{f}")).trim_start_matches('/').to_owned());
    let mut walker = Walker {
        ignore: context.ignore(),
        selected,
        excludes,
        builder: builder.collect(),
        sink,
        largest,
        inventory: Inventory {
            used: Totals::default(),
            builder: Totals::default(),
            unused: Totals::default(),
            excluded: Totals::default(),
            per_reader: vec![Totals::default(); readers.len()],
            largest: Vec::new(),
            complete: true,
        },
    };
    let root = dirfd::open_root(context.root())
        .map_err(|e| ContextError::Open { path: context.root().to_path_buf(), source: e.into() })?;
    walker.dir(root, b"")?;
    Ok(walker.inventory)
}

/// Sums of one directory being walked.
#[derive(Default)]
struct Acc {
    sent: Totals,
    unused: Totals,
    excluded: Totals,
}

impl Acc {
    fn add(&mut self, other: &Acc) {
        self.sent.add(other.sent);
        self.unused.add(other.unused);
        self.excluded.add(other.excluded);
    }
}

struct Walker<'w> {
    ignore: &'w IgnoreFile,
    /// Selected item path → the readers that selected it.
    selected: HashMap<&'w [u8], Vec<usize>>,
    /// Each reader's `--exclude` rules.
    excludes: Vec<Option<IgnoreFile>>,
    builder: HashSet<String>,
    sink: &'w mut dyn InventorySink,
    largest: usize,
    inventory: Inventory,
}

fn read_err(path: &[u8]) -> impl FnOnce(Errno) -> ContextError + '_ {
    move |e| ContextError::Read { path: dirfd::display(path), source: e.into() }
}

fn kind_of(st: &Stat) -> EntryKind {
    match dirfd::file_type(st) {
        FileType::RegularFile => EntryKind::File,
        FileType::Symlink => EntryKind::Symlink,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket => EntryKind::Socket,
        FileType::Directory => EntryKind::Dir,
        _ => EntryKind::Device,
    }
}

fn size_of(st: &Stat) -> u64 {
    match dirfd::file_type(st) {
        FileType::RegularFile => u64::try_from(st.st_size).unwrap_or(0),
        _ => 0,
    }
}

impl Walker<'_> {
    /// Walks directory `rel` (open as `dir`), returning its sums.
    fn dir(&mut self, dir: OwnedFd, rel: &[u8]) -> Result<Acc, ContextError> {
        let mut acc = Acc::default();
        let names = dirfd::list_names(dir.as_fd()).map_err(read_err(rel))?;
        for name in names {
            let path = dirfd::join(rel, &name);
            let Some(st) = dirfd::lstat_at(dir.as_fd(), &name).map_err(read_err(&path))? else {
                continue; // removed since the listing
            };
            let lossy = String::from_utf8_lossy(&path).into_owned();
            let decision = self.ignore.decide(&lossy);
            if !dirfd::is_dir(&st) {
                self.leaf(&path, &lossy, &st, decision, &mut acc)?;
                continue;
            }
            let shown = dirfd::display(&path);
            if let Decision::Excluded(rule) = decision
                && self.ignore.can_skip_dir(&lossy)
            {
                let below = count_below(dir.as_fd(), &name);
                self.inventory.complete &= below.complete;
                self.inventory.excluded.add(below.totals);
                acc.excluded.add(below.totals);
                let entry = Entry {
                    path: &shown,
                    kind: EntryKind::Dir,
                    size: below.totals.bytes,
                    status: Status::Excluded(rule),
                    reincluded: None,
                    below: Some(below),
                };
                self.sink.entry(&entry).map_err(|source| ContextError::Sink { source })?;
                let summary = DirSummary {
                    path: shown,
                    sent: Totals::default(),
                    unused: Totals::default(),
                    excluded: below.totals,
                };
                self.consider(summary);
                continue;
            }
            let sub = dirfd::open_child_dir(dir.as_fd(), &name).map_err(read_err(&path))?;
            let below = self.dir(sub, &path)?;
            acc.add(&below);
            self.consider(DirSummary { path: shown, sent: below.sent, unused: below.unused, excluded: below.excluded });
        }
        Ok(acc)
    }

    /// Anything but a directory.
    fn leaf(
        &mut self,
        path: &[u8],
        lossy: &str,
        st: &Stat,
        decision: Decision<'_>,
        acc: &mut Acc,
    ) -> Result<(), ContextError> {
        let size = size_of(st);
        let one = Totals::one(size);
        let used_by = if matches!(decision, Decision::Excluded(_)) { Vec::new() } else { self.used_by(path) };
        let (status, reincluded) = match decision {
            Decision::Excluded(rule) => (Status::Excluded(rule), None),
            Decision::Included | Decision::Reincluded { .. } => {
                let reincluded = match decision {
                    Decision::Reincluded { by, excluded_by } => Some((by, excluded_by)),
                    _ => None,
                };
                let status = if !used_by.is_empty() {
                    Status::Used(&used_by)
                } else if self.builder.contains(lossy) {
                    Status::Builder
                } else {
                    Status::Unused
                };
                (status, reincluded)
            }
        };
        match status {
            Status::Excluded(_) => {
                acc.excluded.add(one);
                self.inventory.excluded.add(one);
            }
            Status::Used(by) => {
                acc.sent.add(one);
                self.inventory.used.add(one);
                for &r in by {
                    self.inventory.per_reader[r].add(one);
                }
            }
            Status::Builder => {
                acc.sent.add(one);
                self.inventory.builder.add(one);
            }
            Status::Unused => {
                acc.sent.add(one);
                acc.unused.add(one);
                self.inventory.unused.add(one);
            }
        }
        let shown = dirfd::display(path);
        let entry = Entry { path: &shown, kind: kind_of(st), size, status, reincluded, below: None };
        self.sink.entry(&entry).map_err(|source| ContextError::Sink { source })
    }

    /// The readers whose selection copies `path`: one selected it, or selected a directory
    /// above it whose walk reaches it (its `--exclude` patterns do not hide it). Sorted.
    fn used_by(&self, path: &[u8]) -> Vec<usize> {
        let mut by = Vec::new();
        // The item itself: `select` already applied its reader's excludes.
        if let Some(readers) = self.selected.get(path) {
            by.extend(readers.iter().copied());
        }
        let ancestors = path.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(i, _)| i);
        for end in std::iter::once(0).chain(ancestors) {
            let (item, below) = match end {
                0 => (&path[..0], path),
                i => (&path[..i], &path[i + 1..]),
            };
            let Some(readers) = self.selected.get(item) else {
                continue;
            };
            for &r in readers {
                if !by.contains(&r) && !self.excluded_by(r, path, below) {
                    by.push(r);
                }
            }
        }
        by.sort_unstable();
        by
    }

    /// Whether reader `r`'s `--exclude` hides `path` (below its item: `below`).
    fn excluded_by(&self, r: usize, path: &[u8], below: &[u8]) -> bool {
        self.excludes[r].as_ref().is_some_and(|ex| {
            ex.matches(&String::from_utf8_lossy(path)).is_some()
                || ex.matches(&String::from_utf8_lossy(below)).is_some()
        })
    }

    /// Keeps `dir` when it is among the largest.
    fn consider(&mut self, dir: DirSummary) {
        if self.largest == 0 {
            return;
        }
        let list = &mut self.inventory.largest;
        let key = |d: &DirSummary| (std::cmp::Reverse(d.total().bytes), d.path.clone());
        let at = list.partition_point(|d| key(d) < key(&dir));
        if at < self.largest {
            list.insert(at, dir);
            list.truncate(self.largest);
        }
    }
}

/// Counts what lies below directory `name` of `parent`, leaving out what cannot be read.
fn count_below(parent: BorrowedFd<'_>, name: &[u8]) -> Below {
    let mut below = Below { totals: Totals::default(), complete: true };
    match dirfd::open_child_dir(parent, name) {
        Ok(dir) => count_dir(dir, &mut below),
        Err(_) => below.complete = false,
    }
    below
}

fn count_dir(dir: OwnedFd, below: &mut Below) {
    let Ok(names) = dirfd::list_names(dir.as_fd()) else {
        below.complete = false;
        return;
    };
    for name in names {
        match dirfd::lstat_at(dir.as_fd(), &name) {
            Ok(Some(st)) if dirfd::is_dir(&st) => match dirfd::open_child_dir(dir.as_fd(), &name) {
                Ok(sub) => count_dir(sub, below),
                Err(_) => below.complete = false,
            },
            Ok(Some(st)) => below.totals.add(Totals::one(size_of(&st))),
            Ok(None) => {}
            Err(_) => below.complete = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::context::{Context, select};

    /// Every entry as `PATH STATUS[ detail]`.
    #[derive(Default)]
    struct Lines(Vec<String>);

    impl InventorySink for Lines {
        fn entry(&mut self, e: &Entry<'_>) -> std::io::Result<()> {
            let status = match e.status {
                Status::Used(by) => format!("used{by:?}"),
                Status::Builder => "builder".to_owned(),
                Status::Unused => "unused".to_owned(),
                Status::Excluded(rule) => format!("excluded:{}", rule.line),
            };
            let mut line = format!("{} {status} {}", e.path, e.size);
            if let Some(below) = e.below {
                line.push_str(&format!(" below={}", below.totals.files));
            }
            if let Some((by, over)) = e.reincluded {
                line.push_str(&format!(" back:{}>{}", by.line, over.line));
            }
            self.0.push(line);
            Ok(())
        }
    }

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    /// Lists `ctx` with one reader per `(patterns, excludes)`.
    fn list(
        ctx: &Context,
        readers: &[(&[&str], &[&str])],
        builder: &[&str],
        largest: usize,
    ) -> (Vec<String>, Inventory) {
        let owned: Vec<(Vec<Selected>, Vec<String>)> = readers
            .iter()
            .map(|(patterns, excludes)| {
                let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
                let excludes: Vec<String> = excludes.iter().map(|p| (*p).to_owned()).collect();
                (select(&ctx.source(), &patterns, &excludes).unwrap().items, excludes)
            })
            .collect();
        let readers: Vec<Reader<'_>> = owned.iter().map(|(items, excludes)| Reader { items, excludes }).collect();
        let builder: Vec<String> = builder.iter().map(|b| (*b).to_owned()).collect();
        let mut lines = Lines::default();
        let inv = inventory(ctx, &readers, &builder, largest, &mut lines).unwrap();
        (lines.0, inv)
    }

    #[test]
    fn each_entry_says_what_becomes_of_it() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (".dockerignore", "node_modules\n*.log\n!keep.log\ndocs\n!docs/keep\n"),
                ("Dockerfile", "FROM scratch\n"),
                ("node_modules/a/b.js", "12345"),
                ("node_modules/c.js", "1"),
                ("app.log", "x"),
                ("keep.log", "kept"),
                ("docs/old.md", "old"),
                ("docs/keep/new.md", "new"),
                ("src/main.rs", "fn main() {}"),
                ("src/main_test.rs", "#[test]"),
                ("src/gen/out.rs", "//"),
                ("notes.txt", "n"),
            ],
        );
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        let readers: &[(&[&str], &[&str])] =
            &[(&["src"], &["*_test.rs", "src/gen"]), (&["docs/keep/new.md", "Dockerfile"], &[])];
        let (lines, inv) = list(&ctx, readers, &["Dockerfile", ".dockerignore"], 10);
        assert_eq!(
            lines,
            [
                ".dockerignore builder 45",
                "Dockerfile used[1] 13",
                "app.log excluded:2 1",
                "docs/keep/new.md used[1] 3 back:5>4",
                "docs/old.md excluded:4 3",
                "keep.log unused 4 back:3>2",
                "node_modules excluded:1 6 below=2",
                "notes.txt unused 1",
                "src/gen/out.rs unused 2",
                "src/main.rs used[0] 12",
                "src/main_test.rs unused 7",
            ],
            "an exception below docs makes the walk list it; excludes match below the item and in the context"
        );
        assert_eq!((inv.used, inv.builder), (Totals { files: 3, bytes: 28 }, Totals { files: 1, bytes: 45 }));
        assert_eq!(inv.unused, Totals { files: 4, bytes: 14 });
        assert_eq!(inv.excluded, Totals { files: 4, bytes: 10 });
        assert_eq!(inv.sent(), Totals { files: 8, bytes: 87 });
        assert_eq!(inv.per_reader, [Totals { files: 1, bytes: 12 }, Totals { files: 2, bytes: 16 }]);
        assert!(inv.complete);
    }

    #[test]
    fn a_reader_of_the_root_and_overlapping_readers() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("a/x", "1"), ("a/y", "22"), ("b", "333")]);
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        let readers: &[(&[&str], &[&str])] = &[(&["."], &["a/y"]), (&["a/*"], &[]), (&["a"], &["y"])];
        let (lines, inv) = list(&ctx, readers, &[], 10);
        assert_eq!(lines, ["a/x used[0, 1, 2] 1", "a/y used[1] 2", "b used[0] 3"]);
        assert_eq!(inv.per_reader.iter().map(|t| t.files).collect::<Vec<_>>(), [2, 2, 1]);
    }

    #[test]
    fn the_largest_directories_are_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (".dockerignore", "big\n"),
                ("big/x", "0123456789"),
                ("small/x", "1"),
                ("mid/x", "12345"),
                ("mid/deeper/y", "12"),
                ("tie/x", "1"),
            ],
        );
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        let (_, inv) = list(&ctx, &[(&["mid"], &[])], &[], 3);
        let got: Vec<(&str, u64, u64, u64)> =
            inv.largest.iter().map(|d| (d.path.as_str(), d.total().bytes, d.sent.bytes, d.unused.bytes)).collect();
        assert_eq!(got, [("big", 10, 0, 0), ("mid", 7, 7, 0), ("mid/deeper", 2, 2, 0)]);
        let (_, inv) = list(&ctx, &[], &[], 5);
        let paths: Vec<&str> = inv.largest.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["big", "mid", "mid/deeper", "small", "tie"], "ties by path");
        assert!(list(&ctx, &[], &[], 0).1.largest.is_empty());
    }

    #[test]
    fn symlinks_are_entries_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("real/f", "abc")]);
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        let ctx = Context::open_dir(dir.path(), None).unwrap();
        // `link/f` resolves to `real/f`: the selected file is the one the data comes from.
        let (lines, _) = list(&ctx, &[(&["link/f"], &[])], &[], 0);
        assert_eq!(lines, ["link unused 0", "out unused 0", "real/f used[0] 3"]);
    }
}
